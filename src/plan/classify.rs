//! A stage's fields sorted into inputs and parameters by its kind's signature, with unknown keys,
//! malformed references and missing inputs reported.

use std::collections::{BTreeMap, BTreeSet};

use super::interpolate::unclosed;
use super::{Builder, Classified, Many, Signature};
use crate::spec::yaml::{Node, NodeKind};
use crate::spec::{Diagnostic, Pos, StageSpec, Value, suggest};

impl Builder<'_> {
    /// Sort a stage's fields into inputs and parameters, per its kind's signature.
    pub(super) fn classify(&mut self, s: &StageSpec, sig: &Signature) -> Option<Classified> {
        let mut c = Classified { inputs: Vec::new(), params: BTreeMap::new(), param_nodes: BTreeMap::new() };
        let n = self.errors.len();
        let mut written: BTreeSet<&str> = BTreeSet::new();
        for f in &s.fields {
            if let Some(slot) = sig.input(&f.name) {
                written.insert(slot.name);
                match crate::spec::reference::parse_input(&f.node) {
                    Ok(spec) => {
                        if slot.many == Many::One && spec.listed {
                            self.err(
                                Diagnostic::new(f.node.pos, format!("input '{}' reads one stage, got a list", f.name))
                                    .stage(&s.name)
                                    .help("name one stage; to read several variants use a selector such as `pooled[layer=6]`"),
                            );
                        } else if slot.many == Many::One && spec.over.is_some() {
                            self.err(
                                Diagnostic::new(
                                    f.node.pos,
                                    format!("input '{}' reads one variant at a time; `over` does not apply", f.name),
                                )
                                .stage(&s.name)
                                .help("remove `over`; shared axes are joined automatically"),
                            );
                        } else {
                            c.inputs.push((f.name.clone(), spec));
                        }
                    }
                    Err(d) => self.err(d.stage(&s.name)),
                }
            } else if sig.param(&f.name).is_some() || sig.open_params {
                if let Some((text, pos)) = unclosed_in(&f.node) {
                    self.err(self.unclosed_reference(&f.name, &text, pos).stage(&s.name));
                    continue;
                }
                match f.node.to_value() {
                    Ok(v) => {
                        c.params.insert(f.name.clone(), (v, f.node.pos));
                        c.param_nodes.insert(f.name.clone(), f.pos);
                    }
                    Err(d) => self.err(d.stage(&s.name)),
                }
            } else {
                let valid: Vec<&str> = crate::spec::STAGE_KEYS
                    .iter()
                    .copied()
                    .chain(sig.inputs.iter().map(|i| i.name))
                    .chain(sig.params.iter().map(|p| p.name))
                    .collect();
                self.err(
                    Diagnostic::new(f.pos, format!("unknown key '{}' for kind '{}'", f.name, sig.kind))
                        .stage(&s.name)
                        .help_opt(suggest(&f.name, valid)),
                );
            }
        }
        // an own axis named like a parameter sets it, and is interpolated like it
        let values = s.matrix.iter().flat_map(|a| a.values.iter().map(move |(v, p)| (a.name.as_str(), v, *p)));
        let rows = s.include.iter().flat_map(|r| r.entries.iter().map(|e| (e.name.as_str(), &e.value, e.value_pos)));
        for (axis, value, pos) in values.chain(rows) {
            if (sig.param(axis).is_some() || sig.open_params)
                && let Value::Str(text) = value
                && unclosed(text).is_some()
            {
                self.err(self.unclosed_reference(axis, text, pos).stage(&s.name));
                break;
            }
        }
        for slot in &sig.inputs {
            if slot.required && !written.contains(slot.name) {
                let accepts = if slot.accepts.is_empty() {
                    String::new()
                } else {
                    format!(" (a {} table)", super::bind::accepts_text(&slot.accepts))
                };
                self.err(
                    Diagnostic::new(s.pos, format!("missing input '{}'{accepts}", slot.name))
                        .stage(&s.name)
                        .help(format!("add `{}: <stage>`; {}", slot.name, slot.doc)),
                );
            }
        }
        (self.errors.len() == n).then_some(c)
    }
}

impl Builder<'_> {
    /// `${` without its `}` in the value of parameter `param`; `pos` is where the string starts.
    fn unclosed_reference(&self, param: &str, text: &str, pos: Pos) -> Diagnostic {
        let at = unclosed(text).unwrap_or(0);
        Diagnostic::new(
            self.reference_pos(text, at, pos),
            format!("parameter '{param}': unclosed `${{` in {}; an axis reference is `${{axis}}`", Value::Str(text.into())),
        )
        .help("close the reference with `}`, e.g. `${layer}`, or write `$${` for a literal `${`")
    }

    /// The position of the `${` at byte `at` of a string that starts at `pos`: found on the
    /// source line when the string is written on one line (plain or quoted), else the string's.
    fn reference_pos(&self, text: &str, at: usize, pos: Pos) -> Pos {
        let nth = text[..at].matches("${").count();
        let Some(line) = self.p.source.lines().nth(pos.line.saturating_sub(1)) else { return pos };
        let start = line.char_indices().nth(pos.col.saturating_sub(1)).map_or(line.len(), |(b, _)| b);
        match line[start..].match_indices("${").nth(nth) {
            Some((b, _)) => Pos { line: pos.line, col: pos.col + line[start..start + b].chars().count() },
            None => pos,
        }
    }
}

/// The first string in a parameter's value with an unclosed `${`, and where that string starts.
fn unclosed_in(node: &Node) -> Option<(String, Pos)> {
    match &node.kind {
        NodeKind::Scalar { text, .. } => unclosed(text).map(|_| (text.clone(), node.pos)),
        NodeKind::Seq(items) => items.iter().find_map(unclosed_in),
        NodeKind::Map(entries) => entries.iter().find_map(|(_, v)| unclosed_in(v)),
    }
}
