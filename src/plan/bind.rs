//! Input binding and matrix expansion: each input's selected variants joined on shared axes and
//! crossed on the others (or gathered: all, or `over` some axes), then the stage's own matrix,
//! `include` and `exclude` rows multiplied in.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{BoundInput, Builder, Classified, InputItem, Instance, Many, Signature, Variant};
use crate::spec::{Coords, Diagnostic, Pos, StageSpec, Value, canonical_coords, suggest};

impl Builder<'_> {
    /// Bind inputs (join shared axes, cross the rest) and multiply in the stage's own matrix.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn expand(
        &mut self,
        s: &StageSpec,
        sig: &Signature,
        c: &Classified,
        instances: &[Instance],
        stage_instances: &BTreeMap<usize, Vec<usize>>,
        index: &BTreeMap<&str, usize>,
        axes: &[String],
    ) -> Option<Vec<Variant>> {
        let mut combos: Vec<Variant> = vec![Variant { coords: Coords::new(), inputs: Vec::new(), axis_pos: BTreeMap::new() }];
        // inputs in declaration order of the kind
        for slot in &sig.inputs {
            let Some((_, spec)) = c.inputs.iter().find(|(n, _)| n == slot.name) else { continue };
            let mut items: Vec<InputItem> = Vec::new();
            for r in &spec.refs {
                let j = index[r.stage.as_str()];
                let src = &self.p.stages[j];
                let src_sig = self.kinds.signature(&src.kind)?.clone();
                let out = match &r.output {
                    Some(o) => match src_sig.output(o) {
                        Some(out) => out.clone(),
                        None => {
                            self.err(
                                Diagnostic::new(r.pos, format!("stage '{}' (kind '{}') has no output '{o}'", src.name, src.kind))
                                    .stage(&s.name)
                                    .help_opt(suggest(o, src_sig.outputs.iter().map(|o| o.name))),
                            );
                            return None;
                        }
                    },
                    None => src_sig.outputs.first()?.clone(),
                };
                let src_insts = &stage_instances[&j];
                // every selector axis must exist on the referenced stage
                let known: BTreeSet<&str> = src_insts.iter().flat_map(|&k| instances[k].coords.keys().map(String::as_str)).collect();
                for cond in &r.conditions {
                    if !known.contains(cond.axis.as_str()) {
                        let help = if known.is_empty() {
                            Some(format!("'{}' has no matrix axes; remove the selector", r.stage))
                        } else {
                            suggest(&cond.axis, known.iter().copied())
                        };
                        self.err(
                            Diagnostic::new(r.pos, format!("stage '{}' has no axis '{}'", r.stage, cond.axis))
                                .stage(&s.name)
                                .help_opt(help),
                        );
                        return None;
                    }
                }
                let selected: Vec<usize> = src_insts
                    .iter()
                    .copied()
                    .filter(|&k| r.conditions.iter().all(|cond| cond.matches(instances[k].coords.get(&cond.axis))))
                    .collect();
                if selected.is_empty() {
                    let axis = &r.conditions[0].axis;
                    let mut values: Vec<&Value> = src_insts.iter().filter_map(|&k| instances[k].coords.get(axis)).collect();
                    values.sort_by(|a, b| a.total_cmp(b));
                    values.dedup();
                    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                    self.err(
                        Diagnostic::new(r.pos, format!("the selector on '{}' matches no variant", r.stage))
                            .stage(&s.name)
                            .help(format!("'{axis}' takes the values {}", values.join(", "))),
                    );
                    return None;
                }
                // the table type of each selected variant (a kind may take it from a parameter)
                let table = selected
                    .iter()
                    .find_map(|&k| {
                        instances[k]
                            .outputs
                            .iter()
                            .find(|o| o.name == out.name)
                            .filter(|o| !slot.accepts.is_empty() && !slot.accepts.iter().any(|t| t.name() == o.table))
                    })
                    .map(|o| o.table.clone());
                if let Some(table) = table {
                    self.err(
                        Diagnostic::new(
                            r.pos,
                            format!(
                                "input '{}' of kind '{}' takes a {} table, but '{}' gives a {} table",
                                slot.name,
                                sig.kind,
                                accepts_text(&slot.accepts),
                                if r.output.is_some() { format!("{}.{}", r.stage, out.name) } else { r.stage.clone() },
                                table
                            ),
                        )
                        .stage(&s.name)
                        .help(match src_sig.outputs.iter().find(|o| slot.accepts.contains(&o.table)) {
                            Some(o) => format!("did you mean `{}.{}`?", r.stage, o.name),
                            None => format!("feed '{}' from a stage that outputs {}", slot.name, accepts_text(&slot.accepts)),
                        }),
                    );
                    return None;
                }
                for k in selected {
                    let key = instances[k].key(Some(out.name)).unwrap_or_default().to_string();
                    items.push(InputItem { instance: k, output: out.name.to_string(), key, coords: instances[k].coords.clone() });
                }
            }
            // a gathering input sees its variants in one canonical order, whatever the order of
            // matrix lists, keys, stages or references in the file
            items.sort_by(|a, b| {
                instances[a.instance]
                    .stage
                    .cmp(&instances[b.instance].stage)
                    .then_with(|| cmp_coords(&a.coords, &b.coords, axes))
                    .then_with(|| a.output.cmp(&b.output))
            });
            let mode = match (&spec.over, &slot.many) {
                (Some(axes), Many::All | Many::Over(_)) => Many::Over(axes.clone()),
                (_, m) => m.clone(),
            };
            // candidates: (coords contributed, bound input)
            let candidates: Vec<(Coords, BoundInput)> = match &mode {
                Many::One => items
                    .into_iter()
                    .map(|it| (it.coords.clone(), BoundInput { slot: slot.name.into(), many: false, items: vec![it] }))
                    .collect(),
                Many::All => vec![(Coords::new(), BoundInput { slot: slot.name.into(), many: true, items })],
                Many::Over(over) => {
                    let present: BTreeSet<&str> = items.iter().flat_map(|it| it.coords.keys().map(String::as_str)).collect();
                    for a in over {
                        if !present.contains(a.as_str()) {
                            self.err(
                                Diagnostic::new(
                                    spec.pos,
                                    format!("input '{}' gathers over axis '{a}', which its stages do not have", slot.name),
                                )
                                .stage(&s.name)
                                .help_opt(suggest(a, present.iter().copied())),
                            );
                            return None;
                        }
                    }
                    let mut groups: BTreeMap<String, (Coords, Vec<InputItem>)> = BTreeMap::new();
                    for it in items {
                        let rest: Coords =
                            it.coords.iter().filter(|(k, _)| !over.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
                        groups.entry(canonical_coords(&rest)).or_insert_with(|| (rest, Vec::new())).1.push(it);
                    }
                    groups
                        .into_values()
                        .map(|(mut coords, items)| {
                            for a in over {
                                let mut vals: Vec<&Value> = items.iter().filter_map(|it| it.coords.get(a)).collect();
                                vals.sort_by(|x, y| x.total_cmp(y));
                                vals.dedup();
                                let label = vals.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("+");
                                coords.insert(a.clone(), Value::Str(label));
                            }
                            (coords, BoundInput { slot: slot.name.into(), many: true, items })
                        })
                        .collect()
                }
            };
            let mut next = Vec::new();
            let room = self.max_instances.saturating_sub(self.planned);
            let mut join = Join::new(&candidates);
            for v in &combos {
                for &c in &join.matches(&v.coords) {
                    let (coords, bound) = &candidates[c];
                    if compatible(&v.coords, coords) {
                        if next.len() == room {
                            let what = format!(
                                "this stage's input '{}' ({} variants) combined with its inputs before it ({} variants) makes more than {room}",
                                slot.name,
                                candidates.len(),
                                combos.len()
                            );
                            self.too_many(s, what);
                            return None;
                        }
                        let mut merged = v.coords.clone();
                        merged.extend(coords.iter().map(|(k, v)| (k.clone(), v.clone())));
                        let mut inputs = v.inputs.clone();
                        inputs.push(bound.clone());
                        next.push(Variant { coords: merged, inputs, axis_pos: BTreeMap::new() });
                    }
                }
            }
            if next.is_empty() {
                let offered: BTreeSet<&String> = candidates.iter().flat_map(|(c, _)| c.keys()).collect();
                let shared: BTreeSet<&String> = combos.iter().flat_map(|v| v.coords.keys()).filter(|k| offered.contains(k)).collect();
                let names: Vec<String> = shared.iter().map(|s| format!("'{s}'")).collect();
                let what = if names.len() == 1 { format!("axis {}", names[0]) } else { format!("axes {}", names.join(", ")) };
                self.err(
                    Diagnostic::new(
                        spec.pos,
                        format!("input '{}' shares {what} with the other inputs, but no variants agree on it", slot.name),
                    )
                    .stage(&s.name)
                    .help("inputs that carry the same axis are joined on it; select variants whose values overlap"),
                );
                return None;
            }
            combos = next;
        }
        // own matrix
        let inherited: BTreeSet<String> = combos.iter().flat_map(|v| v.coords.keys().cloned()).collect();
        for a in &s.matrix {
            if inherited.contains(&a.name) {
                self.err(
                    Diagnostic::new(a.pos, format!("axis '{}' is already set by an upstream stage", a.name))
                        .stage(&s.name)
                        .help("variants of the inputs already carry this axis; rename the axis or pick upstream variants with a selector"),
                );
                return None;
            }
        }
        // count before making: inputs' variants × each axis's values (+ include rows)
        let room = self.max_instances.saturating_sub(self.planned);
        let own_count = s.matrix.iter().fold(1usize, |n, a| n.saturating_mul(a.values.len())).saturating_add(s.include.len());
        if combos.len().saturating_mul(own_count) > room {
            let mut how = String::new();
            if combos.len() > 1 {
                how += &format!("{} input variants × ", combos.len());
            }
            if !s.matrix.is_empty() {
                let axes: Vec<String> = s.matrix.iter().map(|a| format!("{}: {}", a.name, a.values.len())).collect();
                how += &format!("matrix {}", axes.join(" × "));
            }
            if !s.include.is_empty() {
                how += &format!(" + {} `include` rows", s.include.len());
            }
            if !s.exclude.is_empty() {
                how += ", before `exclude` rows";
            }
            let up_to = if s.include.is_empty() && s.exclude.is_empty() { "" } else { "up to " };
            let what = format!("this stage makes {up_to}{} ({})", combos.len().saturating_mul(own_count), how.trim_start_matches(" + "));
            self.too_many(s, what);
            return None;
        }
        let mut own: Vec<(Coords, BTreeMap<String, Pos>)> = vec![(Coords::new(), BTreeMap::new())];
        for a in &s.matrix {
            let mut next = Vec::new();
            for (coords, pos) in &own {
                for (value, vpos) in &a.values {
                    let (mut c2, mut p2) = (coords.clone(), pos.clone());
                    c2.insert(a.name.clone(), value.clone());
                    p2.insert(a.name.clone(), *vpos);
                    next.push((c2, p2));
                }
            }
            own = next;
        }
        let own_names: BTreeSet<String> = own_axes(s).into_iter().collect();
        // the variants so far, so that an `include` row repeating one adds nothing (one look-up per row)
        let mut seen: HashSet<String> =
            if s.include.is_empty() { HashSet::new() } else { own.iter().map(|(c, _)| canonical_coords(c)).collect() };
        for row in &s.include {
            let keys: BTreeSet<String> = row.entries.iter().map(|e| e.name.clone()).collect();
            if !s.matrix.is_empty() && keys != s.matrix.iter().map(|a| a.name.clone()).collect::<BTreeSet<_>>() {
                let want: Vec<&str> = s.matrix.iter().map(|a| a.name.as_str()).collect();
                self.err(
                    Diagnostic::new(row.pos, "an `include` row must set every matrix axis, and only those")
                        .stage(&s.name)
                        .help(format!("set exactly: {}", want.join(", "))),
                );
                return None;
            }
            if let Some(e) = row.entries.iter().find(|e| inherited.contains(&e.name)) {
                self.err(
                    Diagnostic::new(
                        e.pos,
                        format!("axis '{}' is set by an upstream stage; `include` adds variants of this stage's own axes", e.name),
                    )
                    .stage(&s.name),
                );
                return None;
            }
            let coords: Coords = row.entries.iter().map(|e| (e.name.clone(), e.value.clone())).collect();
            let pos: BTreeMap<String, Pos> = row.entries.iter().map(|e| (e.name.clone(), e.value_pos)).collect();
            if seen.insert(canonical_coords(&coords)) {
                own.push((coords, pos));
            }
        }
        if s.matrix.is_empty() && !s.include.is_empty() {
            own.remove(0); // with include only, the rows are the variants
            let first: BTreeSet<&String> = own[0].0.keys().collect();
            if let Some(row) = s.include.iter().find(|r| r.entries.iter().map(|e| &e.name).collect::<BTreeSet<_>>() != first) {
                self.err(Diagnostic::new(row.pos, "every `include` row must set the same axes").stage(&s.name));
                return None;
            }
        }
        let mut out = Vec::new();
        for v in &combos {
            for (coords, pos) in &own {
                let mut merged = v.coords.clone();
                merged.extend(coords.iter().map(|(k, v)| (k.clone(), v.clone())));
                out.push(Variant { coords: merged, inputs: v.inputs.clone(), axis_pos: pos.clone() });
            }
        }
        for row in &s.exclude {
            for e in &row.entries {
                if !own_names.contains(&e.name) && !inherited.contains(&e.name) {
                    let all: Vec<&str> = own_names.iter().chain(inherited.iter()).map(String::as_str).collect();
                    self.err(
                        Diagnostic::new(e.pos, format!("`exclude` names axis '{}', which this stage's variants do not have", e.name))
                            .stage(&s.name)
                            .help_opt(suggest(&e.name, all)),
                    );
                    return None;
                }
            }
            let before = out.len();
            out.retain(|v| !row.entries.iter().all(|e| v.coords.get(&e.name) == Some(&e.value)));
            if out.len() == before {
                let e = &row.entries[0];
                let mut values: Vec<&Value> =
                    combos.iter().filter_map(|v| v.coords.get(&e.name)).chain(own.iter().filter_map(|(c, _)| c.get(&e.name))).collect();
                values.sort_by(|a, b| a.total_cmp(b));
                values.dedup();
                let shown: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                self.err(Diagnostic::new(row.pos, "this `exclude` row matches no variant").stage(&s.name).help(format!(
                    "'{}' takes the values {} (values are typed: 6 and \"6\" differ)",
                    e.name,
                    shown.join(", ")
                )));
                return None;
            }
        }
        if out.is_empty() {
            self.err(
                Diagnostic::new(s.pos, "`exclude` removes every variant of this stage").stage(&s.name).help("loosen the exclude rows"),
            );
            return None;
        }
        out.sort_by(|a, b| cmp_coords(&a.coords, &b.coords, axes));
        Some(out)
    }
}

impl Builder<'_> {
    /// Stage `s` would take the plan past its instance limit; `what` says how many it makes and
    /// from which factors.
    fn too_many(&mut self, s: &StageSpec, what: String) {
        let before = if self.planned == 0 { String::new() } else { format!(" (the stages before it have {})", self.planned) };
        self.err(
            Diagnostic::new(s.pos, format!("the plan would have more than {} instances: {what}{before}", self.max_instances))
                .stage(&s.name)
                .help(
                    "use fewer axis values or add `exclude` rows; if the plan is meant to be this large, raise the limit with \
                 `saeflow --max-instances N` (or SAEFLOW_MAX_INSTANCES=N)",
                ),
        );
    }
}

/// A hash join of the variants bound so far with an input's candidates: which candidates agree
/// with a variant on the axes both carry. Candidates are grouped by their set of axes, and each
/// group is indexed by its values on the axes it shares with a variant (built once per distinct
/// set of shared axes), so binding costs one look-up per variant and group, not a scan of every
/// candidate. Matches come back in candidate order; the caller still checks [`compatible`].
struct Join<'c> {
    /// (axes, indices of the candidates with exactly these axes)
    groups: Vec<(BTreeSet<&'c str>, Vec<usize>)>,
    candidates: &'c [(Coords, BoundInput)],
    /// (group, shared axes) → candidates by their values on those axes
    index: HashMap<(usize, Vec<&'c str>), ByValues>,
}

/// Candidate indices by their values on some axes (see [`projection`]).
type ByValues = HashMap<String, Vec<usize>>;

impl<'c> Join<'c> {
    fn new(candidates: &'c [(Coords, BoundInput)]) -> Join<'c> {
        let mut groups: Vec<(BTreeSet<&str>, Vec<usize>)> = Vec::new();
        for (i, (coords, _)) in candidates.iter().enumerate() {
            let axes: BTreeSet<&str> = coords.keys().map(String::as_str).collect();
            match groups.iter_mut().find(|(a, _)| *a == axes) {
                Some((_, members)) => members.push(i),
                None => groups.push((axes, vec![i])),
            }
        }
        Join { groups, candidates, index: HashMap::new() }
    }

    /// Indices of the candidates whose values on the axes they share with `coords` are equal.
    fn matches(&mut self, coords: &Coords) -> Vec<usize> {
        let mut found = Vec::new();
        for (g, (axes, members)) in self.groups.iter().enumerate() {
            let shared: Vec<&'c str> = axes.iter().copied().filter(|a| coords.contains_key(*a)).collect();
            let candidates = self.candidates;
            let index = self.index.entry((g, shared.clone())).or_insert_with(|| {
                let mut by = ByValues::new();
                for &i in members {
                    by.entry(projection(&candidates[i].0, &shared)).or_default().push(i);
                }
                by
            });
            if let Some(hits) = index.get(&projection(coords, &shared)) {
                found.extend_from_slice(hits);
            }
        }
        if self.groups.len() > 1 {
            found.sort_unstable();
        }
        found
    }
}

/// The values of `coords` on `axes`, as one canonical string (a JSON list).
fn projection(coords: &Coords, axes: &[&str]) -> String {
    Value::List(axes.iter().map(|a| coords.get(*a).cloned().unwrap_or(Value::Null)).collect()).canonical()
}

/// Axes a stage introduces: its matrix axes and include-row axes.
pub(super) fn own_axes(s: &StageSpec) -> Vec<String> {
    let mut names: Vec<String> = s.matrix.iter().map(|a| a.name.clone()).collect();
    for row in &s.include {
        for e in &row.entries {
            if !names.contains(&e.name) {
                names.push(e.name.clone());
            }
        }
    }
    names
}

/// Order coordinates by the display order of axes, then by typed value.
pub(super) fn cmp_coords(a: &Coords, b: &Coords, axes: &[String]) -> std::cmp::Ordering {
    for axis in axes {
        let o = match (a.get(axis), b.get(axis)) {
            (Some(x), Some(y)) => x.total_cmp(y),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        if o.is_ne() {
            return o;
        }
    }
    canonical_coords(a).cmp(&canonical_coords(b))
}

pub(super) fn compatible(a: &Coords, b: &Coords) -> bool {
    b.iter().all(|(k, v)| a.get(k).is_none_or(|w| w == v))
}

/// The table types an input accepts, as messages name them: `dataset or split`.
pub(super) fn accepts_text(accepts: &[crate::tables::TableType]) -> String {
    accepts.iter().map(|t| t.name()).collect::<Vec<_>>().join(" or ")
}
