//! Pipeline files → typed spec. Knows YAML and positions; knows nothing of stage kinds, the
//! cache or models. What each stage's fields mean (input or parameter) is decided in `plan/`,
//! which has the stage registry.

// Diagnostics are the cold path and carry a file name, a message, a help and a source line;
// boxing them would buy nothing.
#![allow(clippy::result_large_err)]

pub mod diag;
pub mod overrides;
pub mod reference;
pub mod value;
pub mod yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, Pos, suggest};
pub use overrides::Override;
pub use reference::{CondOp, Condition, InputRef, InputSpec};
pub use value::{Coords, Value, canonical_coords};
use yaml::Node;

/// Keys a pipeline file may have at the top level.
pub const TOP_KEYS: &[&str] = &["name", "description", "defaults", "stages"];
/// Keys of `defaults:`.
pub const DEFAULT_KEYS: &[&str] = &["device", "dtype", "seed", "batch_size"];
/// Keys every stage has, whatever its kind.
pub const STAGE_KEYS: &[&str] = &["kind", "description", "matrix", "include", "exclude"];

/// A parsed pipeline file.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The file as the user named it (used in messages).
    pub file: String,
    pub path: PathBuf,
    pub source: String,
    pub name: String,
    pub description: Option<String>,
    pub defaults: Vec<Setting>,
    pub stages: Vec<StageSpec>,
    /// The `--set` overrides applied to the file's text, as written.
    pub overrides: Vec<String>,
}

/// A `key: value` with the key's position.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: String,
    pub pos: Pos,
    pub value: Value,
    pub value_pos: Pos,
}

/// One entry of `stages:` before its kind gives its fields meaning.
#[derive(Clone, Debug)]
pub struct StageSpec {
    pub name: String,
    pub pos: Pos,
    pub kind: String,
    pub kind_pos: Pos,
    pub description: Option<String>,
    /// Everything that is not a common stage key: inputs and parameters of the kind.
    pub fields: Vec<Field>,
    pub matrix: Vec<Axis>,
    pub include: Vec<Row>,
    pub exclude: Vec<Row>,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub pos: Pos,
    pub node: Node,
}

/// One `matrix:` axis and its values, in file order.
#[derive(Clone, Debug)]
pub struct Axis {
    pub name: String,
    pub pos: Pos,
    pub values: Vec<(Value, Pos)>,
}

/// One `include:` or `exclude:` row: a partial assignment of axes.
#[derive(Clone, Debug)]
pub struct Row {
    pub pos: Pos,
    pub entries: Vec<Setting>,
}

impl Pipeline {
    /// Read and parse a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, Diagnostics> {
        Pipeline::load_with(path, &[])
    }

    /// Read and parse a pipeline file with `--set` overrides applied (see [`overrides`]).
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Pipeline, Diagnostics> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: file.clone(),
                pos: Pos::default(),
                stage: None,
                message: format!("cannot read the pipeline file: {e}"),
                help: Some("check the path; pipelines usually live under pipelines/".into()),
                source_line: None,
            }])
        })?;
        let source = String::from_utf8(bytes).map_err(|e| Diagnostics(vec![not_utf8(&file, e.as_bytes(), e.utf8_error())]))?;
        Pipeline::parse_with(&file, path, &source, overrides)
    }

    /// Parse pipeline text; `file` is the name used in messages.
    pub fn parse(file: &str, path: &Path, source: &str) -> Result<Pipeline, Diagnostics> {
        Pipeline::parse_with(file, path, source, &[])
    }

    /// Parse pipeline text with `--set` overrides applied to its tree before it is typed.
    pub fn parse_with(file: &str, path: &Path, source: &str, overrides: &[Override]) -> Result<Pipeline, Diagnostics> {
        let locate = |d: Diagnostic| d.locate(file, source);
        let mut root = yaml::parse(source).map_err(|d| Diagnostics(vec![locate(d)]))?;
        for o in overrides {
            overrides::apply(&mut root, o).map_err(|d| Diagnostics(vec![locate(d)]))?;
        }
        let mut errors = Vec::new();
        let mut p = Pipeline {
            file: file.to_string(),
            path: path.to_path_buf(),
            source: source.to_string(),
            name: String::new(),
            description: None,
            defaults: Vec::new(),
            stages: Vec::new(),
            overrides: overrides.iter().map(|o| o.text.clone()).collect(),
        };
        let Some(top) = root.as_map() else {
            return Err(Diagnostics(vec![locate(
                Diagnostic::new(root.pos, format!("a pipeline file is a map, got {}", root.describe()))
                    .help("start with `name: my-study` and `stages:`"),
            )]));
        };
        let mut seen_name = false;
        let mut seen_stages = false;
        for (k, v) in top {
            let Some(key) = k.scalar() else {
                errors.push(Diagnostic::new(k.pos, "top-level keys must be strings"));
                continue;
            };
            match key {
                "name" => {
                    seen_name = true;
                    match v.to_value() {
                        Ok(Value::Str(s)) if reference::is_name(&s) => p.name = s,
                        Ok(other) => errors.push(
                            Diagnostic::new(v.pos, format!("`name` must be a name of letters, digits, `_` and `-`, got '{other}'"))
                                .help("e.g. `name: cifar100-study`"),
                        ),
                        Err(d) => errors.push(d),
                    }
                }
                "description" => p.description = string_or_err(v, &mut errors),
                "defaults" => parse_defaults(v, &mut p.defaults, &mut errors),
                "stages" => {
                    seen_stages = true;
                    parse_stages(v, &mut p.stages, &mut errors);
                }
                other => errors.push(
                    Diagnostic::new(k.pos, format!("unknown top-level key '{other}'")).help_opt(suggest(other, TOP_KEYS.iter().copied())),
                ),
            }
        }
        // a misspelt `stages:` already has its own did-you-mean; do not also say it is missing
        let suggested = |errors: &[Diagnostic], key: &str| {
            errors.iter().any(|d| d.help.as_deref().is_some_and(|h| h.starts_with(&format!("did you mean '{key}'"))))
        };
        if !seen_name && !suggested(&errors, "name") {
            errors.push(Diagnostic::new(root.pos, "the pipeline has no `name`").help("add `name: my-study` at the top"));
        }
        if !seen_stages && !suggested(&errors, "stages") {
            errors.push(Diagnostic::new(root.pos, "the pipeline has no `stages`").help("add `stages:` with at least one stage"));
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            errors.sort_by_key(|d| d.pos);
            Err(Diagnostics(errors.into_iter().map(locate).collect()))
        }
    }

    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Position information for a diagnostic raised outside this module.
    pub fn locate(&self, d: Diagnostic) -> Diagnostic {
        d.locate(&self.file, &self.source)
    }
}

/// A pipeline file that is not UTF-8: where its first invalid byte is (line:column, counting
/// characters of the valid text before it) and what that byte is.
fn not_utf8(file: &str, bytes: &[u8], e: std::str::Utf8Error) -> Diagnostic {
    let at = e.valid_up_to();
    let before = &bytes[..at];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    // everything before `at` is valid UTF-8
    let col = std::str::from_utf8(&before[line_start..]).map_or(1, |s| s.chars().count() + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let bad: Vec<String> = bytes[at..at + e.error_len().unwrap_or(bytes.len() - at)].iter().map(|b| format!("0x{b:02x}")).collect();
    Diagnostic::new(Pos { line, col }, format!("the pipeline file is not utf-8: byte {} at offset {at} is not valid utf-8", bad.join(" ")))
        .help("pipeline files must be utf-8; re-save the file as utf-8 (e.g. `iconv -f latin1 -t utf-8 in.yaml > out.yaml`)")
        .locate(file, &String::from_utf8_lossy(bytes))
}

fn string_or_err(v: &Node, errors: &mut Vec<Diagnostic>) -> Option<String> {
    match v.to_value() {
        Ok(Value::Str(s)) => Some(s),
        Ok(Value::Null) => None,
        Ok(other) => {
            errors.push(Diagnostic::new(v.pos, format!("expected a string, got {}", other.type_name())));
            None
        }
        Err(d) => {
            errors.push(d);
            None
        }
    }
}

fn parse_defaults(node: &Node, out: &mut Vec<Setting>, errors: &mut Vec<Diagnostic>) {
    if node.is_null() {
        return;
    }
    let Some(entries) = node.as_map() else {
        errors.push(
            Diagnostic::new(node.pos, format!("`defaults` is a map, got {}", node.describe()))
                .help("e.g. `defaults: {device: auto, seed: 0}`"),
        );
        return;
    };
    for (k, v) in entries {
        let name = k.scalar().unwrap_or_default().to_string();
        if !DEFAULT_KEYS.contains(&name.as_str()) {
            errors.push(
                Diagnostic::new(k.pos, format!("unknown key '{name}' in defaults")).help_opt(suggest(&name, DEFAULT_KEYS.iter().copied())),
            );
            continue;
        }
        match v.to_value() {
            Ok(value) => {
                if let Err(msg) = check_default(&name, &value) {
                    errors.push(Diagnostic::new(v.pos, msg.0).help(msg.1));
                } else {
                    out.push(Setting { name, pos: k.pos, value, value_pos: v.pos });
                }
            }
            Err(d) => errors.push(d),
        }
    }
}

/// Validate one `defaults:` entry. Returns (message, help) on error.
fn check_default(name: &str, value: &Value) -> Result<(), (String, String)> {
    match (name, value) {
        ("device", Value::Str(s)) if is_device(s) => Ok(()),
        ("device", v) => Err((format!("unknown device '{v}'"), "valid: auto, cpu, cuda, cuda:N".into())),
        ("dtype", Value::Str(s)) if matches!(s.as_str(), "f32" | "bf16" | "f16") => Ok(()),
        ("dtype", v) => Err((format!("unknown dtype '{v}'"), "valid: f32, bf16, f16 (use f32 on cpu)".into())),
        ("seed", Value::Int(i)) if *i >= 0 => Ok(()),
        ("seed", v) => Err((format!("seed must be a non-negative integer, got '{v}'"), "e.g. `seed: 0`".into())),
        ("batch_size", Value::Int(i)) if *i > 0 => Ok(()),
        ("batch_size", v) => Err((format!("batch_size must be a positive integer, got '{v}'"), "e.g. `batch_size: 32`".into())),
        _ => Ok(()),
    }
}

/// `auto`, `cpu`, `cuda` or `cuda:N`.
pub fn is_device(s: &str) -> bool {
    matches!(s, "auto" | "cpu" | "cuda") || s.strip_prefix("cuda:").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_stages(node: &Node, out: &mut Vec<StageSpec>, errors: &mut Vec<Diagnostic>) {
    let Some(entries) = node.as_map() else {
        errors.push(
            Diagnostic::new(node.pos, format!("`stages` is a map from stage name to stage, got {}", node.describe()))
                .help("write `stages:` then `  my_stage: {kind: ...}` indented below it"),
        );
        return;
    };
    if entries.is_empty() {
        errors.push(Diagnostic::new(node.pos, "`stages` is empty").help("add at least one stage"));
    }
    for (k, v) in entries {
        let name = k.scalar().unwrap_or_default().to_string();
        if !reference::is_name(&name) {
            errors.push(
                Diagnostic::new(k.pos, format!("'{name}' is not a valid stage name"))
                    .help("stage names are letters, digits, `_` and `-` (they appear in references like `pooled[layer=6]`)"),
            );
            continue;
        }
        if let Some(s) = parse_stage(&name, k.pos, v, errors) {
            out.push(s);
        }
    }
}

fn parse_stage(name: &str, pos: Pos, node: &Node, errors: &mut Vec<Diagnostic>) -> Option<StageSpec> {
    let Some(entries) = node.as_map() else {
        errors.push(
            Diagnostic::new(node.pos, format!("a stage is a map with at least `kind`, got {}", node.describe()))
                .stage(name)
                .help("e.g. `pool: {kind: pool, from: codes}`"),
        );
        return None;
    };
    let mut s = StageSpec {
        name: name.to_string(),
        pos,
        kind: String::new(),
        kind_pos: node.pos,
        description: None,
        fields: Vec::new(),
        matrix: Vec::new(),
        include: Vec::new(),
        exclude: Vec::new(),
    };
    let n_errors = errors.len();
    let push = |d: Diagnostic, errors: &mut Vec<Diagnostic>| errors.push(d.stage(name));
    for (k, v) in entries {
        let Some(key) = k.scalar() else {
            push(Diagnostic::new(k.pos, "stage keys must be strings"), errors);
            continue;
        };
        match key {
            "kind" => match v.to_value() {
                Ok(Value::Str(kind)) => {
                    s.kind = kind;
                    s.kind_pos = v.pos;
                }
                _ => push(Diagnostic::new(v.pos, "`kind` must be a stage kind name").help("run `saeflow kinds` to list them"), errors),
            },
            "description" => s.description = string_or_err(v, errors),
            "matrix" => match parse_matrix(v) {
                Ok(m) => s.matrix = m,
                Err(d) => push(d, errors),
            },
            "include" | "exclude" => match parse_rows(key, v) {
                Ok(rows) if key == "include" => s.include = rows,
                Ok(rows) => s.exclude = rows,
                Err(d) => push(d, errors),
            },
            _ => s.fields.push(Field { name: key.to_string(), pos: k.pos, node: v.clone() }),
        }
    }
    if s.kind.is_empty() && errors.len() == n_errors {
        push(Diagnostic::new(pos, "the stage has no `kind`").help("add `kind: ...`; run `saeflow kinds` to list them"), errors);
    }
    (errors.len() == n_errors).then_some(s)
}

fn parse_matrix(node: &Node) -> Result<Vec<Axis>, Diagnostic> {
    let entries = node.as_map().ok_or_else(|| {
        Diagnostic::new(node.pos, format!("`matrix` is a map from axis to a list of values, got {}", node.describe()))
            .help("e.g. `matrix: {layer: [6, 10, 17]}`")
    })?;
    let mut axes = Vec::new();
    for (k, v) in entries {
        let name = k.scalar().unwrap_or_default().to_string();
        if !reference::is_name(&name) {
            return Err(
                Diagnostic::new(k.pos, format!("'{name}' is not a valid axis name")).help("axis names are letters, digits, `_` and `-`")
            );
        }
        let items = v.as_seq().ok_or_else(|| {
            Diagnostic::new(v.pos, format!("matrix axis '{name}' needs a list of values, got {}", v.describe()))
                .help(format!("write `{name}: [a, b]`, or set a single value as a parameter instead"))
        })?;
        if items.is_empty() {
            return Err(
                Diagnostic::new(v.pos, format!("matrix axis '{name}' has no values")).help("give at least one value or remove the axis")
            );
        }
        let mut values: Vec<(Value, Pos)> = Vec::with_capacity(items.len());
        // each value's canonical form and first position: one look-up per value
        let mut seen: HashMap<String, Pos> = HashMap::with_capacity(items.len());
        for item in items {
            let value = item.to_value()?;
            if let Some(first) = seen.get(&value.canonical()) {
                return Err(Diagnostic::new(item.pos, format!("matrix axis '{name}' lists {value} twice"))
                    .help(format!("it is already listed at line {}; remove one", first.line)));
            }
            seen.insert(value.canonical(), item.pos);
            values.push((value, item.pos));
        }
        axes.push(Axis { name, pos: k.pos, values });
    }
    Ok(axes)
}

fn parse_rows(key: &str, node: &Node) -> Result<Vec<Row>, Diagnostic> {
    let items = node.as_seq().ok_or_else(|| {
        Diagnostic::new(node.pos, format!("`{key}` is a list of axis assignments, got {}", node.describe()))
            .help(format!("e.g. `{key}: [{{layer: 12, sae: gemma-2b-it-res-jb}}]`"))
    })?;
    let mut rows = Vec::new();
    for item in items {
        let entries = item
            .as_map()
            .ok_or_else(|| Diagnostic::new(item.pos, format!("each `{key}` row is a map of axis: value, got {}", item.describe())))?;
        let mut row = Row { pos: item.pos, entries: Vec::new() };
        for (k, v) in entries {
            row.entries.push(Setting {
                name: k.scalar().unwrap_or_default().to_string(),
                pos: k.pos,
                value: v.to_value()?,
                value_pos: v.pos,
            });
        }
        if row.entries.is_empty() {
            return Err(Diagnostic::new(item.pos, format!("empty `{key}` row")).help("name at least one axis"));
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Pipeline, Diagnostics> {
        Pipeline::parse("p.yaml", Path::new("p.yaml"), src)
    }

    #[test]
    fn parses_a_small_pipeline() {
        let p = parse(
            "name: demo\ndefaults: {device: cpu, seed: 3}\nstages:\n  a: {kind: mock.source, rows: 5}\n  b:\n    kind: mock.map\n    from: a\n    matrix: {k: [1, 2]}\n    exclude: [{k: 2}]\n",
        )
        .unwrap();
        assert_eq!(p.name, "demo");
        assert_eq!(p.defaults.len(), 2);
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.stages[1].matrix[0].values.len(), 2);
        assert_eq!(p.stages[1].exclude.len(), 1);
        assert_eq!(p.stages[1].fields[0].name, "from");
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_line_and_column_of_its_first_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, b"name: demo\nstages:\n  a: {kind: k, note: caf\xe9}\n").unwrap();
        let e = Pipeline::load(&path).unwrap_err();
        let d = &e.0[0];
        assert_eq!(d.pos, Pos { line: 3, col: 25 });
        assert_eq!(d.message, "the pipeline file is not utf-8: byte 0xe9 at offset 43 is not valid utf-8");
        assert!(d.help.as_deref().unwrap().starts_with("pipeline files must be utf-8"));
        assert!(d.to_string().contains(" 3 |   a: {kind: k, note: caf\u{fffd}}"), "{d}");
    }

    #[test]
    fn a_long_matrix_axis_is_checked_for_repeats_in_one_pass() {
        let values: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
        let src = format!("name: d\nstages:\n  a: {{kind: k, matrix: {{n: [{}, 17]}}}}\n", values.join(", "));
        let e = parse(&src).unwrap_err();
        assert!(e.0[0].message.contains("lists 17 twice"), "{}", e.0[0].message);
        let ok = format!("name: d\nstages:\n  a: {{kind: k, matrix: {{n: [{}]}}}}\n", values.join(", "));
        assert_eq!(parse(&ok).unwrap().stages[0].matrix[0].values.len(), 20_000);
    }

    #[test]
    fn reports_several_problems_at_once_in_file_order() {
        let e = parse("nme: x\nstages:\n  a: {kind: k}\n  b: 3\ndefaults: {devise: cpu}\n").unwrap_err();
        let lines: Vec<usize> = e.0.iter().map(|d| d.pos.line).collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
        assert!(e.0.iter().any(|d| d.message.contains("unknown top-level key 'nme'")));
        assert!(e.0.iter().any(|d| d.help.as_deref().is_some_and(|h| h.contains("did you mean 'device'"))));
        assert!(e.0.iter().any(|d| d.stage.as_deref() == Some("b")));
    }
}
