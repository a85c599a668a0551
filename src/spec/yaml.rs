//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml (named by the design card) is archived upstream and its `Value` forgets positions, so
//! errors found after parsing (an unknown stage reference, a bad matrix value) could not name a
//! line. saphyr-parser is the maintained YAML 1.2 parser of the yaml-rust lineage; it yields events
//! with spans, from which this module builds a small tree. Typing happens in `spec/`, by hand, so
//! that each error can name file:line:column and a suggestion.

use std::collections::{BTreeMap, HashMap};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::diag::{Diagnostic, Pos};
use super::value::Value;

/// A YAML node and the position it starts at.
#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A scalar; `plain` is false for quoted and block scalars (which are always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys keep their order and their own positions.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// "a list", "an int", … for messages.
    pub fn describe(&self) -> String {
        let t = self.type_name();
        let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {t}")
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } => match self.to_value() {
                Ok(v) => v.type_name(),
                Err(_) => "scalar",
            },
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "map",
        }
    }

    /// The scalar's text when this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// Convert to a typed value (YAML 1.2 core schema for plain scalars).
    pub fn to_value(&self) -> Result<Value, Diagnostic> {
        Ok(match &self.kind {
            NodeKind::Scalar { text, plain: true } => resolve_plain(text),
            NodeKind::Scalar { text, plain: false } => Value::Str(text.clone()),
            NodeKind::Seq(items) => Value::List(items.iter().map(Node::to_value).collect::<Result<_, _>>()?),
            NodeKind::Map(entries) => {
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    let key = k.scalar().ok_or_else(|| {
                        Diagnostic::new(k.pos, "a map key must be a plain string").help("write the key as a scalar, e.g. `name: value`")
                    })?;
                    map.insert(key.to_string(), v.to_value()?);
                }
                Value::Map(map)
            }
        })
    }
}

/// Resolve a plain scalar as YAML 1.2's core schema does.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    let looks_float = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && body.chars().any(|c| c.is_ascii_digit());
    if looks_float && let Ok(x) = text.parse::<f64>() {
        return Value::Float(x);
    }
    Value::Str(text.to_string())
}

fn pos_of(span: &Span) -> Pos {
    Pos { line: span.start.line(), col: span.start.col() + 1 }
}

/// The most nodes aliases may produce in one file, all aliases together (an alias of a list of 3
/// scalars produces 4). Each alias is expanded into a copy of its anchor's tree, so without a
/// budget a few hundred bytes of nested aliases ("billion laughs") make a tree of billions of
/// nodes. serde_yaml caps alias jumps at 100 per event of the document and go-yaml v3 caps the
/// share of alias-made nodes; saeflow counts the nodes themselves (the memory an alias costs) and
/// allows 100,000: far beyond what a pipeline's shared lists need, a few MB of tree at most.
pub const ALIAS_NODE_LIMIT: usize = 100_000;

/// Parse one YAML document into a positioned tree. Duplicate keys are errors (YAML says so; most
/// parsers silently keep the last one, which hides typos in long pipelines). Aliases are expanded
/// within [`ALIAS_NODE_LIMIT`].
pub fn parse(source: &str) -> Result<Node, Diagnostic> {
    let mut parser = Parser::new_from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    // an anchor's tree and its node count
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut expanded = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    for item in &mut parser {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            Diagnostic::new(Pos { line: m.line(), col: m.col() + 1 }, format!("invalid yaml: {}", e.info()))
                .help("check indentation and quoting around this position (a `key: value` needs a space after the colon)")
        })?;
        let pos = pos_of(&span);
        // a finished node, its anchor id (0: none) and its node count
        let finished: Option<(Node, usize, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::new(pos, "a pipeline file holds one yaml document, found a second")
                        .help("remove the `---` separator or split the pipelines into two files"));
                }
                None
            }
            Event::Alias(id) => {
                let (node, size) = anchors
                    .get(&id)
                    .ok_or_else(|| Diagnostic::new(pos, "alias refers to an unknown anchor").help("define `&name` before using `*name`"))?;
                expanded = expanded.saturating_add(*size);
                if expanded > ALIAS_NODE_LIMIT {
                    return Err(alias_bomb(source, pos, *size, expanded - size));
                }
                Some((Node { pos, ..node.clone() }, 0, *size))
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                Some((Node { pos, kind: NodeKind::Scalar { text: text.into_owned(), plain } }, anchor, 1))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame { pos, anchor, items: Vec::new(), map: false, size: 1 });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame { pos, anchor, items: Vec::new(), map: true, size: 1 });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = stack.pop().ok_or_else(|| Diagnostic::new(pos, "unbalanced yaml collection"))?;
                let kind = if frame.map {
                    let mut entries: Vec<(Node, Node)> = Vec::with_capacity(frame.items.len() / 2);
                    // each key's first position: one look-up per key, not a scan of the map so far
                    let mut seen: HashMap<String, Pos> = HashMap::with_capacity(frame.items.len() / 2);
                    let mut it = frame.items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        if let Some(key) = k.scalar() {
                            if key == "<<" {
                                return Err(Diagnostic::new(k.pos, "yaml merge keys (`<<`) are not supported")
                                    .help("write the keys out, or use a matrix/defaults for shared values"));
                            }
                            if let Some(prev) = seen.get(key) {
                                return Err(Diagnostic::new(k.pos, format!("duplicate key '{key}'"))
                                    .help(format!("'{key}' is already set at line {}; keep one of them", prev.line)));
                            }
                            seen.insert(key.to_string(), k.pos);
                        }
                        entries.push((k, v));
                    }
                    NodeKind::Map(entries)
                } else {
                    NodeKind::Seq(frame.items)
                };
                Some((Node { pos: frame.pos, kind }, frame.anchor, frame.size))
            }
        };
        if let Some((node, anchor, size)) = finished {
            if anchor != 0 {
                anchors.insert(anchor, (node.clone(), size));
            }
            match stack.last_mut() {
                Some(frame) => {
                    frame.items.push(node);
                    frame.size = frame.size.saturating_add(size);
                }
                None => root = Some(node),
            }
        }
    }
    Ok(root.unwrap_or(Node { pos: Pos { line: 1, col: 1 }, kind: NodeKind::Scalar { text: String::new(), plain: true } }))
}

struct Frame {
    pos: Pos,
    anchor: usize,
    items: Vec<Node>,
    map: bool,
    /// Nodes in this collection so far, itself included.
    size: usize,
}

/// The alias at `pos` would take the nodes aliases produce past [`ALIAS_NODE_LIMIT`].
fn alias_bomb(source: &str, pos: Pos, size: usize, before: usize) -> Diagnostic {
    // the alias as written (`*name`), read back from the source for the message
    let name: String = source
        .lines()
        .nth(pos.line.saturating_sub(1))
        .map(|l| l.chars().skip(pos.col.saturating_sub(1)).take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}')).collect())
        .filter(|n: &String| n.starts_with('*'))
        .unwrap_or_else(|| "*…".into());
    Diagnostic::new(
        pos,
        format!(
            "alias '{name}' expands to {size} yaml nodes, which takes the nodes made by aliases past the limit of \
             {ALIAS_NODE_LIMIT} (the aliases before it made {before})"
        ),
    )
    .help(
        "aliases that nest aliases multiply (a few lines can mean billions of nodes); write the shared part once, \
         or use a matrix axis or `defaults:` for values several stages share",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_the_node() {
        let n = parse("a: 1\nb:\n  c: [x, 'y']\n").unwrap();
        let m = n.as_map().unwrap();
        assert_eq!(m[1].0.pos, Pos { line: 2, col: 1 });
        let inner = m[1].1.as_map().unwrap();
        assert_eq!(inner[0].0.pos, Pos { line: 3, col: 3 });
        let seq = inner[0].1.as_seq().unwrap();
        assert_eq!(seq[1].pos, Pos { line: 3, col: 10 });
        assert_eq!(seq[1].to_value().unwrap(), Value::Str("y".into()));
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        assert_eq!(resolve_plain("10"), Value::Int(10));
        assert_eq!(resolve_plain("-3"), Value::Int(-3));
        assert_eq!(resolve_plain("0.5"), Value::Float(0.5));
        assert_eq!(resolve_plain("1e-3"), Value::Float(1e-3));
        assert_eq!(resolve_plain("true"), Value::Bool(true));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("top5"), Value::Str("top5".into()));
        assert_eq!(resolve_plain("1.2.3"), Value::Str("1.2.3".into()));
        assert_eq!(resolve_plain("e5"), Value::Str("e5".into()));
    }

    #[test]
    fn duplicate_keys_are_errors_that_name_both_lines() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.help.unwrap().contains("line 1"));
    }

    #[test]
    fn anchors_and_aliases_expand() {
        let n = parse("x: &v [1, 2]\ny: *v\n").unwrap();
        let v = n.to_value().unwrap();
        let Value::Map(m) = v else { panic!() };
        assert_eq!(m["x"], m["y"]);
    }

    /// Nine levels of nine aliases each: 9^9 leaves from under 600 bytes.
    fn laughs(levels: usize) -> String {
        let names: Vec<char> = ('a'..='z').take(levels).collect();
        let mut s = format!("{}: &{} [x, x, x, x, x, x, x, x, x]\n", names[0], names[0]);
        for w in names.windows(2) {
            let items = vec![format!("*{}", w[0]); 9].join(", ");
            s += &format!("{}: &{} [{items}]\n", w[1], w[1]);
        }
        s
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias_that_crosses_the_budget() {
        let src = laughs(9);
        assert!(src.len() < 600, "{}", src.len());
        let e = parse(&src).unwrap_err();
        // a: 10 nodes, b: 91, c: 820, d: 7381, e: 66430; aliases up to `e` make 74718 nodes, and
        // the first `*e` (line 6, column 5) passes 100,000
        assert_eq!((e.pos.line, e.pos.col), (6, 8), "{e:?}");
        assert!(e.message.starts_with("alias '*e' expands to 66430 yaml nodes"), "{}", e.message);
        assert!(e.message.contains("made 74718"), "{}", e.message);
        assert!(e.message.contains("limit of 100000"), "{}", e.message);
        assert!(e.help.unwrap().contains("write the shared part once"));
    }

    #[test]
    fn aliases_within_the_budget_expand() {
        // five levels: 74718 nodes made by aliases
        let n = parse(&laughs(5)).unwrap();
        let d = &n.as_map().unwrap()[3].1;
        assert_eq!(d.as_seq().unwrap().len(), 9);
        assert_eq!(d.as_seq().unwrap()[0].as_seq().unwrap()[0].as_seq().unwrap().len(), 9);
    }

    #[test]
    fn many_keys_are_checked_for_duplicates_in_one_pass() {
        let src: String = (0..20_000).map(|i| format!("k{i}: {i}\n")).collect::<String>() + "k7: again\n";
        let e = parse(&src).unwrap_err();
        assert_eq!(e.pos.line, 20_001);
        assert!(e.help.unwrap().contains("line 8"));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1);
        assert!(e.message.starts_with("invalid yaml"));
    }
}
