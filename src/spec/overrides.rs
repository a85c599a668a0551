//! `--set stage.param=value`: a parameter, a matrix axis or a default changed for one command
//! without editing the file, the way `dvc exp run -S` works. An override is applied to the YAML
//! tree before the tree is typed, so it is checked exactly as the same text in the file would be:
//! `--set 'pooled.matrix.method=[sum, top10]'` makes an axis, `--set probe.folds=3` a parameter,
//! `--set defaults.seed=1` a default. The value is YAML (flow style): `[a, b]`, `{k: v}`, `'12'`.

use super::diag::{Diagnostic, Pos, suggest};
use super::yaml::{self, Node, NodeKind};

/// One `--set PATH=VALUE`.
#[derive(Clone, Debug)]
pub struct Override {
    /// What the user wrote (recorded in the run history, shown by `why`).
    pub text: String,
    /// `[stage, field, …]`, or `["defaults", key]`.
    pub path: Vec<String>,
    pub value: Node,
}

const HELP: &str = "write `--set STAGE.PARAM=VALUE` (a parameter), `--set 'STAGE.matrix.AXIS=[a, b]'` (an axis) or \
                    `--set defaults.KEY=VALUE`; the value is YAML";

impl Override {
    /// Parse `stage.param=value`; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Override, String> {
        let (path, value) = text.split_once('=').ok_or_else(|| format!("--set '{text}': no `=`; {HELP}"))?;
        let path: Vec<String> = path.trim().split('.').map(|s| s.trim().to_string()).collect();
        if path.len() < 2 || path.iter().any(|s| !super::reference::is_name(s)) {
            return Err(format!("--set '{text}': '{}' is not a STAGE.PARAM path; {HELP}", path.join(".")));
        }
        let value = yaml::parse(value).map_err(|d| format!("--set '{text}': the value is not YAML: {}; {HELP}", d.message))?;
        Ok(Override { text: text.to_string(), path, value })
    }
}

/// Whether an override, as written (`stage.param=value`, `defaults.key=value`), changes something
/// of `stage`: its own fields, or a default every stage reads.
pub fn touches(text: &str, stage: &str) -> bool {
    let head = text.split(['.', '=']).next().unwrap_or_default().trim();
    head == "defaults" || head == stage
}

/// Apply `o` to a pipeline file's tree. The new value takes the position of what it replaces
/// (or of the map it is added to), so a diagnostic about it points at the place it changed.
pub(super) fn apply(root: &mut Node, o: &Override) -> Result<(), Diagnostic> {
    let fail = |pos: Pos, msg: String, help: Option<String>| {
        Diagnostic::new(pos, format!("--set '{}': {msg}", o.text)).help(help.unwrap_or_else(|| HELP.to_string()))
    };
    let root_pos = root.pos;
    let (mut node, rest): (&mut Node, &[String]) = if o.path[0] == "defaults" {
        (child(root, "defaults", true).ok_or_else(|| fail(root_pos, "the pipeline file is not a map".into(), None))?, &o.path[1..])
    } else {
        let stages = child(root, "stages", false).ok_or_else(|| fail(root_pos, "the pipeline has no `stages`".into(), None))?;
        let names: Vec<String> =
            stages.as_map().map(|m| m.iter().filter_map(|(k, _)| k.scalar().map(str::to_string)).collect()).unwrap_or_default();
        let pos = stages.pos;
        let stage = child(stages, &o.path[0], false).ok_or_else(|| {
            fail(pos, format!("the pipeline has no stage '{}'", o.path[0]), suggest(&o.path[0], names.iter().map(String::as_str)))
        })?;
        (stage, &o.path[1..])
    };
    for (i, name) in rest.iter().enumerate() {
        let pos = node.pos;
        if node.as_map().is_none() && !node.is_null() {
            let at = o.path[..o.path.len() - rest.len() + i].join(".");
            return Err(fail(pos, format!("'{at}' is {}, not a map with a key '{name}'", node.describe()), None));
        }
        node = child(node, name, true).expect("a map takes new keys");
        if i + 1 == rest.len() {
            let mut value = o.value.clone();
            place(&mut value, node.pos);
            *node = value;
        }
    }
    Ok(())
}

/// The value under `key` in a map node; with `create`, an empty value is added when the key is
/// not there (a null node becomes an empty map first).
fn child<'n>(node: &'n mut Node, key: &str, create: bool) -> Option<&'n mut Node> {
    if create && node.is_null() {
        node.kind = NodeKind::Map(Vec::new());
    }
    let at = node.pos;
    let NodeKind::Map(entries) = &mut node.kind else { return None };
    match entries.iter().position(|(k, _)| k.scalar() == Some(key)) {
        Some(i) => Some(&mut entries[i].1),
        None if create => {
            // an added key is placed where the map it joins starts
            entries.push((scalar(key, at), scalar("", at)));
            entries.last_mut().map(|(_, v)| v)
        }
        None => None,
    }
}

fn scalar(text: &str, pos: Pos) -> Node {
    Node { pos, kind: NodeKind::Scalar { text: text.to_string(), plain: true } }
}

/// Give every node of an override's value one position in the pipeline file.
fn place(node: &mut Node, pos: Pos) {
    node.pos = pos;
    match &mut node.kind {
        NodeKind::Scalar { .. } => {}
        NodeKind::Seq(items) => items.iter_mut().for_each(|n| place(n, pos)),
        NodeKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            place(k, pos);
            place(v, pos);
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::{Pipeline, Value};

    const SRC: &str = "name: t\nstages:\n  a: {kind: src, rows: 5}\n  pooled:\n    kind: pool\n    from: a\n    matrix: {method: [sum]}\n";

    fn with(sets: &[&str]) -> Result<Pipeline, String> {
        let o: Vec<Override> = sets.iter().map(|s| Override::parse(s)).collect::<Result<_, _>>()?;
        Pipeline::parse_with("t.yaml", Path::new("t.yaml"), SRC, &o).map_err(|d| d.to_string())
    }

    fn field(p: &Pipeline, stage: &str, name: &str) -> Value {
        p.stage(stage).unwrap().fields.iter().find(|f| f.name == name).unwrap().node.to_value().unwrap()
    }

    #[test]
    fn sets_parameters_axes_and_defaults() {
        let p = with(&["a.rows=7", "pooled.matrix.method=[sum, top10]", "defaults.seed=3", "a.extra='12'"]).unwrap();
        assert_eq!(field(&p, "a", "rows"), Value::Int(7));
        assert_eq!(field(&p, "a", "extra"), Value::Str("12".into()));
        let axis = &p.stage("pooled").unwrap().matrix[0];
        assert_eq!(axis.values.iter().map(|(v, _)| v.to_string()).collect::<Vec<_>>(), ["sum", "top10"]);
        assert_eq!(p.defaults[0].value, Value::Int(3));
        assert_eq!(p.overrides, ["a.rows=7", "pooled.matrix.method=[sum, top10]", "defaults.seed=3", "a.extra='12'"]);
        // the replaced value keeps the position of what it replaced
        assert_eq!(p.stage("a").unwrap().fields.iter().find(|f| f.name == "rows").unwrap().node.pos.line, 3);
    }

    #[test]
    fn mistakes_say_what_is_wrong_and_how_to_write_it() {
        let e = with(&["pooled.method"]).unwrap_err();
        assert!(e.contains("no `=`") && e.contains("--set STAGE.PARAM=VALUE"), "{e}");
        let e = with(&["pool.k=3"]).unwrap_err();
        assert!(e.contains("no stage 'pool'") && e.contains("did you mean 'pooled'"), "{e}");
        let e = with(&["a.rows.x=3"]).unwrap_err();
        assert!(e.contains("'a.rows' is an int, not a map"), "{e}");
        let e = with(&["rows=3"]).unwrap_err();
        assert!(e.contains("not a STAGE.PARAM path"), "{e}");
        let e = with(&["a.rows=[1, 2"]).unwrap_err();
        assert!(e.contains("the value is not YAML"), "{e}");
    }
}
