//! A stage's fields sorted into inputs and parameters by its kind's signature, with unknown keys,
//! malformed references and missing inputs reported.

use std::collections::{BTreeMap, BTreeSet};

use super::{Builder, Classified, Many, Signature};
use crate::spec::{Diagnostic, StageSpec, suggest};

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
