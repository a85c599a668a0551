//! Input references: `stage`, `stage.output`, `stage[layer in (6, 10), pool=top5]`, lists of them,
//! and the map form `{from: REF, over: [axis, ...]}` for inputs that gather variants.

use super::diag::{Diagnostic, Pos};
use super::value::Value;
use super::yaml::{Node, NodeKind, resolve_plain};

/// One reference to another stage's output, optionally filtered by coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRef {
    pub stage: String,
    pub output: Option<String>,
    pub conditions: Vec<Condition>,
    pub pos: Pos,
}

/// A filter on one axis of the referenced stage's variants.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub axis: String,
    pub op: CondOp,
    pub values: Vec<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CondOp {
    Eq,
    Ne,
    In,
    NotIn,
}

impl Condition {
    pub fn matches(&self, v: Option<&Value>) -> bool {
        self.matches_by(v, |a, b| a == b)
    }

    /// [`Condition::matches`] with another notion of equal values (the command line's, where `3`
    /// and `"3"` cannot be told apart).
    pub fn matches_by(&self, v: Option<&Value>, same: impl Fn(&Value, &Value) -> bool) -> bool {
        let hit = v.is_some_and(|v| self.values.iter().any(|w| same(w, v)));
        match self.op {
            CondOp::Eq | CondOp::In => hit,
            CondOp::Ne | CondOp::NotIn => !hit,
        }
    }
}

/// What a stage wrote for one input key: one or more references, and for gathering inputs the
/// axes to gather over (`None`: the slot's default).
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub refs: Vec<InputRef>,
    pub over: Option<Vec<String>>,
    pub pos: Pos,
    pub listed: bool,
}

const SYNTAX_HELP: &str = "write `stage`, `stage.output`, or `stage[axis=value, axis in (a, b)]`";

/// Parse an input field's node: a string, a list of strings, or `{from: ..., over: [...]}`.
pub fn parse_input(node: &Node) -> Result<InputSpec, Diagnostic> {
    match &node.kind {
        NodeKind::Scalar { text, .. } => Ok(InputSpec { refs: vec![parse_ref(text, node.pos)?], over: None, pos: node.pos, listed: false }),
        NodeKind::Seq(items) => {
            let mut refs = Vec::new();
            for item in items {
                let text = item.scalar().ok_or_else(|| {
                    Diagnostic::new(item.pos, format!("expected a stage reference, got {}", item.describe())).help(SYNTAX_HELP)
                })?;
                refs.push(parse_ref(text, item.pos)?);
            }
            if refs.is_empty() {
                return Err(Diagnostic::new(node.pos, "empty list of inputs").help("name at least one stage"));
            }
            Ok(InputSpec { refs, over: None, pos: node.pos, listed: true })
        }
        NodeKind::Map(entries) => {
            let mut spec: Option<InputSpec> = None;
            let mut over = None;
            for (k, v) in entries {
                match k.scalar() {
                    Some("from") => spec = Some(parse_input(v)?),
                    Some("over") => {
                        let axes = match v.to_value()? {
                            Value::Str(s) => vec![s],
                            Value::List(items) => items
                                .into_iter()
                                .map(|i| match i {
                                    Value::Str(s) => Ok(s),
                                    other => Err(Diagnostic::new(v.pos, format!("expected an axis name, got {}", other.type_name()))),
                                })
                                .collect::<Result<_, _>>()?,
                            other => {
                                return Err(Diagnostic::new(
                                    v.pos,
                                    format!("`over` takes an axis name or a list of them, got {}", other.type_name()),
                                )
                                .help("e.g. `over: [layer]`"));
                            }
                        };
                        over = Some(axes);
                    }
                    Some(other) => {
                        return Err(Diagnostic::new(k.pos, format!("unknown key '{other}' in an input map"))
                            .help_opt(super::diag::suggest(other, ["from", "over"])));
                    }
                    None => return Err(Diagnostic::new(k.pos, "an input map's keys must be strings")),
                }
            }
            let mut spec = spec.ok_or_else(|| {
                Diagnostic::new(node.pos, "input map has no `from`").help("e.g. `{from: pooled[layer in (6, 10)], over: [layer]}`")
            })?;
            spec.over = over;
            spec.pos = node.pos;
            Ok(spec)
        }
    }
}

/// Parse `stage.output[axis=value, axis in (a, b), axis != c]`.
pub fn parse_ref(text: &str, pos: Pos) -> Result<InputRef, Diagnostic> {
    let text = text.trim();
    let (head, conds) = match text.find('[') {
        Some(i) => {
            let rest = &text[i + 1..];
            let body = rest
                .strip_suffix(']')
                .ok_or_else(|| Diagnostic::new(pos, format!("unclosed selector in '{text}'")).help("close the selector with `]`"))?;
            (&text[..i], Some(body))
        }
        None => (text, None),
    };
    let (stage, output) = match head.split_once('.') {
        Some((s, o)) => (s.trim(), Some(o.trim().to_string())),
        None => (head.trim(), None),
    };
    if stage.is_empty() || !is_name(stage) || output.as_deref().is_some_and(|o| !is_name(o)) {
        return Err(Diagnostic::new(pos, format!("'{text}' is not a stage reference")).help(SYNTAX_HELP));
    }
    let mut conditions = Vec::new();
    if let Some(body) = conds {
        for part in split_top(body) {
            conditions.push(parse_condition(part.trim(), pos)?);
        }
    }
    Ok(InputRef { stage: stage.to_string(), output, conditions, pos })
}

/// Split on commas that are not inside parentheses or quotes.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn parse_condition(s: &str, pos: Pos) -> Result<Condition, Diagnostic> {
    let bad = || {
        Diagnostic::new(pos, format!("cannot read the selector condition '{s}'"))
            .help("write `axis=value`, `axis!=value`, `axis in (a, b)` or `axis not in (a, b)`")
    };
    if let Some(i) = s.find("!=") {
        return Ok(Condition { axis: axis_name(&s[..i], pos)?, op: CondOp::Ne, values: vec![scalar(&s[i + 2..])] });
    }
    if let Some(i) = s.find('=') {
        return Ok(Condition { axis: axis_name(&s[..i], pos)?, op: CondOp::Eq, values: vec![scalar(&s[i + 1..])] });
    }
    let words: Vec<&str> = s.splitn(2, char::is_whitespace).collect();
    if words.len() != 2 {
        return Err(bad());
    }
    let rest = words[1].trim_start();
    let (op, list) = if let Some(l) = rest.strip_prefix("not in") {
        (CondOp::NotIn, l)
    } else if let Some(l) = rest.strip_prefix("in") {
        (CondOp::In, l)
    } else {
        return Err(bad());
    };
    let list = list.trim();
    let inner = list.strip_prefix('(').and_then(|l| l.strip_suffix(')')).ok_or_else(bad)?;
    let values: Vec<Value> = split_top(inner).into_iter().map(scalar).collect();
    if values.is_empty() {
        return Err(bad());
    }
    Ok(Condition { axis: axis_name(words[0], pos)?, op, values })
}

fn axis_name(s: &str, pos: Pos) -> Result<String, Diagnostic> {
    let s = s.trim();
    if is_name(s) {
        Ok(s.to_string())
    } else {
        Err(Diagnostic::new(pos, format!("'{s}' is not an axis name")).help("axis names are letters, digits, `_` and `-`"))
    }
}

fn scalar(s: &str) -> Value {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return Value::Str(inner.to_string());
        }
    }
    resolve_plain(s)
}

/// Stage, output and axis names: letters, digits, `_`, `-`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Pos = Pos { line: 1, col: 1 };

    #[test]
    fn parses_selectors() {
        let r = parse_ref("pooled.codes[layer in (6, 10), pool=top5, seed != 0]", P).unwrap();
        assert_eq!(r.stage, "pooled");
        assert_eq!(r.output.as_deref(), Some("codes"));
        assert_eq!(r.conditions.len(), 3);
        assert_eq!(r.conditions[0].values, vec![Value::Int(6), Value::Int(10)]);
        assert_eq!(r.conditions[1].values, vec![Value::Str("top5".into())]);
        assert_eq!(r.conditions[2].op, CondOp::Ne);
        assert!(r.conditions[0].matches(Some(&Value::Int(10))));
        assert!(!r.conditions[0].matches(Some(&Value::Int(17))));
    }

    #[test]
    fn quoted_selector_values_stay_strings() {
        let r = parse_ref("x[sae='12', name=\"a,b\"]", P).unwrap();
        assert_eq!(r.conditions[0].values, vec![Value::Str("12".into())]);
        assert_eq!(r.conditions[1].values, vec![Value::Str("a,b".into())]);
    }

    #[test]
    fn rejects_malformed_references() {
        assert!(parse_ref("pooled[layer in 6]", P).is_err());
        assert!(parse_ref("pooled[layer=6", P).is_err());
        assert!(parse_ref("a b", P).is_err());
    }
}
