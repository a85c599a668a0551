//! Addressing instances from the command line (`show`, `why`, `export`, `status`, `ls`): an exact
//! instance id, a selector in the syntax `from:` takes (`probe[layer=3, method=top5]`: coordinates
//! in any order, any subset of them, `in (a, b)`, `!=`, `stage.output[...]`), a stage name, or a
//! glob over ids and stage names (`probe[layer=1*`, `pool*`).

use std::collections::BTreeMap;

use crate::glob::glob_match;
use crate::spec::reference::parse_ref;
use crate::spec::{Condition, Pos, Value, suggest};

use super::{Instance, Plan};

/// What a query matched: instances in plan order, and the output a `stage.output` selector named.
#[derive(Debug)]
pub struct Selection<'p> {
    pub matches: Vec<&'p Instance>,
    pub output: Option<String>,
}

/// A query that matches nothing, or cannot be read; the message names the query and the help
/// what would match.
#[derive(Debug, thiserror::Error)]
#[error("{message}; {help}")]
pub struct SelectError {
    pub message: String,
    pub help: String,
}

impl Plan {
    /// The instances `query` addresses (never empty: no match is an error that says what exists).
    pub fn select(&self, query: &str) -> Result<Selection<'_>, SelectError> {
        let q = query.trim();
        let pipeline = &self.pipeline.name;
        if let Some(i) = self.instance(q) {
            return Ok(Selection { matches: vec![i], output: None });
        }
        if q.contains(['*', '?']) {
            let matches: Vec<&Instance> = self.instances.iter().filter(|i| glob_match(q, &i.id) || glob_match(q, &i.stage)).collect();
            if matches.is_empty() {
                return Err(SelectError {
                    message: format!("no instance of pipeline '{pipeline}' matches the glob '{q}'"),
                    help: format!("its stages: {}", self.stage_names()),
                });
            }
            return Ok(Selection { matches, output: None });
        }
        let r = parse_ref(q, Pos::default()).map_err(|d| SelectError {
            message: format!("cannot read '{q}' as an instance: {}", d.message),
            help: "name an instance id, a stage, a selector like `probe[layer=3, method=top5]` or a glob like `probe*`".into(),
        })?;
        let Some(stage) = self.stages.iter().find(|s| s.name == r.stage) else {
            let hint = suggest(&r.stage, self.stages.iter().map(|s| s.name.as_str()))
                .filter(|s| s.starts_with("did you mean"))
                .map(|s| s.split(" valid:").next().unwrap_or(&s).to_string() + "; ")
                .unwrap_or_default();
            return Err(SelectError {
                message: format!("pipeline '{pipeline}' has no stage '{}'", r.stage),
                help: format!("{hint}its stages: {}", self.stage_names()),
            });
        };
        if let Some(o) = &r.output
            && !stage.signature.outputs.iter().any(|s| s.name == o.as_str())
        {
            let names: Vec<&str> = stage.signature.outputs.iter().map(|s| s.name).collect();
            return Err(SelectError {
                message: format!("stage '{}' has no output '{o}'", stage.name),
                help: format!("its outputs: {}", names.join(", ")),
            });
        }
        let members: Vec<&Instance> = stage.instances.iter().map(|&i| &self.instances[i]).collect();
        let axes = axis_values(&members);
        for c in &r.conditions {
            if !axes.contains_key(&c.axis) {
                let help = if axes.is_empty() {
                    format!("'{}' has no axes; write just `{}`", stage.name, stage.name)
                } else {
                    let hint = suggest(&c.axis, axes.keys().map(String::as_str))
                        .filter(|s| s.starts_with("did you mean"))
                        .map(|s| s.split(" valid:").next().unwrap_or(&s).to_string() + "; ")
                        .unwrap_or_default();
                    format!("{hint}its axes: {}", describe_axes(&axes))
                };
                return Err(SelectError { message: format!("stage '{}' has no axis '{}'", stage.name, c.axis), help });
            }
        }
        let matches: Vec<&Instance> =
            members.into_iter().filter(|i| r.conditions.iter().all(|c| loosely(c, i.coords.get(&c.axis)))).collect();
        if matches.is_empty() {
            // a value the axis does not have: the closest one it has
            let hint = r
                .conditions
                .iter()
                .filter(|c| matches!(c.op, crate::spec::CondOp::Eq | crate::spec::CondOp::In))
                .find_map(|c| {
                    let have: Vec<String> = axes[&c.axis].iter().map(|v| v.to_string()).collect();
                    c.values.iter().map(|v| v.to_string()).find(|v| !have.contains(v)).and_then(|v| {
                        suggest(&v, have.iter().map(String::as_str))
                            .filter(|s| s.starts_with("did you mean"))
                            .and_then(|s| s.split('\'').nth(1).map(|best| format!("did you mean {}={best}? ", c.axis)))
                    })
                })
                .unwrap_or_default();
            return Err(SelectError {
                message: format!("no instance of stage '{}' matches '{q}'", stage.name),
                help: format!("{hint}its axes: {}", describe_axes(&axes)),
            });
        }
        Ok(Selection { matches, output: r.output })
    }

    fn stage_names(&self) -> String {
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        names.join(", ")
    }
}

/// A condition where `3` also matches the string `"3"` (what the user typed at a shell cannot
/// say which of the two the YAML had).
fn loosely(c: &Condition, v: Option<&Value>) -> bool {
    c.matches_by(v, |a, b| a == b || a.plain_text() == b.plain_text())
}

/// Each axis of a stage's instances and its values, sorted.
fn axis_values(members: &[&Instance]) -> BTreeMap<String, Vec<Value>> {
    let mut axes: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for i in members {
        for (a, v) in &i.coords {
            let vs = axes.entry(a.clone()).or_default();
            if !vs.contains(v) {
                vs.push(v.clone());
            }
        }
    }
    for vs in axes.values_mut() {
        vs.sort_by(|a, b| a.total_cmp(b));
    }
    axes
}

/// `layer (1, 3), method (sum, top5 … 6 values)`: short, whatever the matrix's size.
fn describe_axes(axes: &BTreeMap<String, Vec<Value>>) -> String {
    if axes.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = axes
        .iter()
        .map(|(a, vs)| {
            let shown: Vec<String> = vs.iter().take(6).map(|v| v.to_string()).collect();
            let more = if vs.len() > 6 { format!(" … {} values", vs.len()) } else { String::new() };
            format!("{a} ({}{more})", shown.join(", "))
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use crate::plan::signature::{Signature, input};
    use crate::plan::{Plan, PlanOptions};
    use crate::spec::Pipeline;
    use crate::tables::TableType;

    const ROWS: TableType = TableType::Custom("rows");

    fn kinds() -> Vec<Signature> {
        vec![
            Signature::new("src", 1, "a source").output("rows", ROWS, "rows").build(),
            Signature::new("map", 1, "a map").input(input("from", &[ROWS], "rows")).output("rows", ROWS, "rows").build(),
        ]
    }

    fn plan() -> Plan {
        let src = "name: t\nstages:\n  a: {kind: src, matrix: {layer: [1, 3, 10]}}\n  probe: {kind: map, from: a, matrix: {method: [sum, top5]}}\n";
        let p = Pipeline::parse("t.yaml", std::path::Path::new("/nowhere/t.yaml"), src).unwrap();
        Plan::build(p, &kinds(), &PlanOptions::default()).unwrap()
    }

    fn ids(plan: &Plan, q: &str) -> Vec<String> {
        plan.select(q).unwrap().matches.iter().map(|i| i.id.clone()).collect()
    }

    #[test]
    fn selectors_take_coordinates_in_any_order_and_any_subset() {
        let p = plan();
        assert_eq!(ids(&p, "probe[layer=3,method=top5]"), ["probe[layer=3,method=top5]"]);
        assert_eq!(ids(&p, "probe[method=top5, layer=3]"), ["probe[layer=3,method=top5]"]);
        assert_eq!(ids(&p, "probe[layer=3]"), ["probe[layer=3,method=sum]", "probe[layer=3,method=top5]"]);
        assert_eq!(ids(&p, "probe[layer in (1, 10), method != sum]").len(), 2);
        assert_eq!(ids(&p, "a").len(), 3);
        assert_eq!(ids(&p, "probe[layer='3']").len(), 2, "a quoted number matches the number");
        assert_eq!(p.select("probe.rows[layer=1]").unwrap().output.as_deref(), Some("rows"));
    }

    #[test]
    fn globs_match_ids_and_stage_names() {
        let p = plan();
        assert_eq!(ids(&p, "probe[layer=1*").len(), 4, "layer=1 and layer=10: a glob is text");
        assert_eq!(ids(&p, "probe[layer=1,*").len(), 2);
        assert_eq!(ids(&p, "pro*").len(), 6);
        assert_eq!(ids(&p, "*method=sum]").len(), 3);
    }

    #[test]
    fn no_match_says_what_exists_in_one_short_line() {
        let p = plan();
        let e = p.select("probe[layer=7]").unwrap_err().to_string();
        assert!(e.contains("no instance of stage 'probe' matches") && e.contains("layer (1, 3, 10), method (sum, top5)"), "{e}");
        let e = p.select("probe[layr=3]").unwrap_err().to_string();
        assert!(e.contains("has no axis 'layr'") && e.contains("did you mean 'layer'"), "{e}");
        let e = p.select("prob[layer=3]").unwrap_err().to_string();
        assert!(e.contains("no stage 'prob'") && e.contains("did you mean 'probe'"), "{e}");
        assert!(!e.contains("a[layer"), "suggests a stage, not an unrelated instance: {e}");
        let e = p.select("probe.codes").unwrap_err().to_string();
        assert!(e.contains("no output 'codes'") && e.contains("its outputs: rows"), "{e}");
        let e = p.select("zzz*").unwrap_err().to_string();
        assert!(e.contains("its stages: a, probe"), "{e}");
        assert!(p.select("probe[layer=").is_err());
        let e = p.select("probe[method=summ]").unwrap_err().to_string();
        assert!(e.contains("did you mean method=sum?"), "{e}");
    }
}
