//! Spec → plan: stage kinds resolved, matrices expanded into instances, inputs bound (shared axes
//! joined, disjoint axes crossed), a DAG of instances, and a cache key per output. Nothing here
//! loads a model or reads a table, so `saeflow plan` stays cheap.

#![allow(clippy::result_large_err)] // see spec/mod.rs

pub mod fingerprint;
pub mod key;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use petgraph::graph::{DiGraph, NodeIndex};

use crate::spec::{Diagnostic, Diagnostics, InputSpec, Pipeline, Pos, StageSpec, Value, suggest};
use crate::stages::Registry;
use crate::stages::signature::{Many, ParamType, Signature};
use fingerprint::FingerprintMemo;

/// Coordinates of a variant: every axis of the stage and its ancestors, with typed values.
pub type Coords = BTreeMap<String, Value>;

/// The expanded pipeline.
#[derive(Debug)]
pub struct Plan {
    pub pipeline: Pipeline,
    pub project_root: PathBuf,
    /// Stages in execution order (topological; ties in file order).
    pub stages: Vec<PlannedStage>,
    /// Every stage instance, grouped by stage in execution order.
    pub instances: Vec<Instance>,
    /// Axis display order: by the depth of the stage that introduces the axis, then by name.
    pub axes: Vec<String>,
    /// Instance graph: node i is `instances[i]`, edges point from producer to consumer.
    pub graph: DiGraph<usize, ()>,
    pub warnings: Vec<Diagnostic>,
    /// External inputs that could not be read, with [`Externals::Record`] (always empty
    /// otherwise, where each of them fails the plan): a path that is not there, a hub artifact
    /// not in the cache while offline, a plan-time file check that failed. Each blocks a run.
    pub unresolved: Vec<Unresolved>,
}

/// An external input a plan with [`Externals::Record`] could not use.
#[derive(Debug, Clone)]
pub struct Unresolved {
    /// The parameter, and its value as resolved (a path or a model/SAE reference).
    pub param: String,
    pub value: String,
    /// The input is not there (a path, a hub artifact not cached); `false`: it is there and a
    /// plan-time check of its files failed.
    pub missing: bool,
    pub diagnostic: Diagnostic,
}

#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub name: String,
    pub signature: Signature,
    pub instances: Vec<usize>,
    pub description: Option<String>,
}

/// One stage instance: a stage at one point of its (and its ancestors') matrix.
#[derive(Debug, Clone)]
pub struct Instance {
    pub index: usize,
    /// `stage` or `stage[axis=value,...]`, axes in display order: stable under list reordering.
    pub id: String,
    pub stage: String,
    pub kind: &'static str,
    pub version: u32,
    pub coords: Coords,
    /// Every resolved parameter (defaults filled, `${axis}` interpolated), including those kept
    /// out of the key.
    pub params: BTreeMap<String, Value>,
    /// Parameters that are files to read, resolved against the project root.
    pub paths: BTreeMap<String, PathBuf>,
    pub inputs: Vec<BoundInput>,
    /// Content fingerprints of external inputs, by parameter name.
    pub externals: BTreeMap<String, String>,
    /// The JSON whose hash is the key (without the output name): what `why` diffs.
    pub preimage: serde_json::Value,
    pub outputs: Vec<OutputEntry>,
    /// Instances with the same group run as one fused computation.
    pub fuse_group: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BoundInput {
    pub slot: String,
    pub many: bool,
    pub items: Vec<InputItem>,
}

/// One table an input receives.
#[derive(Debug, Clone)]
pub struct InputItem {
    pub instance: usize,
    pub output: String,
    pub key: String,
    pub coords: Coords,
}

#[derive(Debug, Clone)]
pub struct OutputEntry {
    pub name: String,
    pub table: String,
    pub key: String,
}

impl Instance {
    /// Key of the named output, or of the first output.
    pub fn key(&self, output: Option<&str>) -> Option<&str> {
        match output {
            Some(name) => self.outputs.iter().find(|o| o.name == name).map(|o| o.key.as_str()),
            None => self.outputs.first().map(|o| o.key.as_str()),
        }
    }

    pub fn input(&self, slot: &str) -> Option<&BoundInput> {
        self.inputs.iter().find(|i| i.slot == slot)
    }
}

/// Where relative paths resolve and where the fingerprint memo lives.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Defaults to the folder above `pipelines/` (or the pipeline file's folder).
    pub project_root: Option<PathBuf>,
    /// Memo of file fingerprints (normally `cache/.fingerprints.json`).
    pub fingerprint_memo: Option<PathBuf>,
    /// What an external input that cannot be read does to the plan.
    pub externals: Externals,
}

/// What a plan does with an external input it cannot read: a dataset path that is not there, a
/// hub model or SAE that is not in the Hugging Face cache while offline, or a plan-time file
/// check (`Signature::check_files`: an SAE whose width is not the model's) that fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Externals {
    /// Fail the plan with a diagnostic naming the line (`plan`, `run` and every other command).
    #[default]
    Required,
    /// Record the diagnostic in [`Plan::unresolved`] and go on with a stand-in fingerprint
    /// (`unresolved:<value>`, which no cache entry has), so the whole pipeline is expanded and
    /// every missing input is seen at once (`saeflow doctor`). Such a plan must not be run.
    Record,
}

/// The project a pipeline belongs to: the parent of its `pipelines/` folder, else its own folder.
pub fn project_root_of(pipeline: &Path) -> PathBuf {
    let abs = std::path::absolute(pipeline).unwrap_or_else(|_| pipeline.to_path_buf());
    let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "pipelines") { dir.parent().map(Path::to_path_buf).unwrap_or(dir) } else { dir }
}

/// Working state of one stage during expansion.
struct Variant {
    coords: Coords,
    inputs: Vec<BoundInput>,
    /// Where each own-axis value came from (for error positions).
    axis_pos: BTreeMap<String, Pos>,
}

impl Plan {
    pub fn build(pipeline: Pipeline, registry: &Registry, opts: &PlanOptions) -> Result<Plan, Diagnostics> {
        let project_root = opts.project_root.clone().unwrap_or_else(|| project_root_of(&pipeline.path));
        let mut builder = Builder {
            p: &pipeline,
            registry,
            errors: Vec::new(),
            warnings: Vec::new(),
            record_externals: opts.externals == Externals::Record,
            unresolved: Vec::new(),
        };
        let result = builder.build(&project_root, opts);
        let (errors, warnings, unresolved) = (builder.errors, builder.warnings, builder.unresolved);
        let locate = |d: Diagnostic| pipeline.locate(d);
        match result {
            Some((stages, instances, axes, graph)) if errors.is_empty() => {
                let unresolved = unresolved.into_iter().map(|u| Unresolved { diagnostic: locate(u.diagnostic), ..u }).collect();
                let warnings = warnings.into_iter().map(locate).collect();
                Ok(Plan { warnings, pipeline, project_root, stages, instances, axes, graph, unresolved })
            }
            _ => {
                let mut errors = errors;
                errors.sort_by_key(|d| d.pos);
                errors.dedup_by(|a, b| a.pos == b.pos && a.message == b.message);
                Err(Diagnostics(errors.into_iter().map(locate).collect()))
            }
        }
    }

    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// Suggest instance ids close to a mistyped one.
    pub fn suggest_instance(&self, id: &str) -> Option<String> {
        suggest(id, self.instances.iter().map(|i| i.id.as_str()))
    }

    /// Indices of the instances `i` depends on, transitively, in execution order.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![i];
        while let Some(j) = stack.pop() {
            for input in &self.instances[j].inputs {
                for item in &input.items {
                    if seen.insert(item.instance) {
                        stack.push(item.instance);
                    }
                }
            }
        }
        seen.into_iter().collect()
    }
}

type Built = (Vec<PlannedStage>, Vec<Instance>, Vec<String>, DiGraph<usize, ()>);

struct Builder<'a> {
    p: &'a Pipeline,
    registry: &'a Registry,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// [`Externals::Record`]: problems with external inputs go to `unresolved`, not `errors`.
    record_externals: bool,
    unresolved: Vec<Unresolved>,
}

/// Fields of one stage after its kind gave them meaning.
struct Classified {
    inputs: Vec<(String, InputSpec)>,
    params: BTreeMap<String, (Value, Pos)>,
    param_nodes: BTreeMap<String, Pos>,
}

impl<'a> Builder<'a> {
    fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    /// A problem with an external input: an error, or recorded (see [`Externals`]). Returns
    /// whether the instance can go on (with a stand-in).
    fn external(&mut self, d: Diagnostic, param: &str, value: &str, missing: bool) -> bool {
        if self.record_externals {
            if !self.unresolved.iter().any(|x| x.diagnostic.pos == d.pos && x.diagnostic.message == d.message) {
                self.unresolved.push(Unresolved { param: param.into(), value: value.into(), missing, diagnostic: d });
            }
            true
        } else {
            self.errors.push(d);
            false
        }
    }

    fn build(&mut self, project_root: &Path, opts: &PlanOptions) -> Option<Built> {
        let p = self.p;
        // 1. kinds and fields
        let mut sigs: Vec<Option<Signature>> = Vec::new();
        let mut classified: Vec<Option<Classified>> = Vec::new();
        for s in &p.stages {
            let sig = match self.registry.signature(&s.kind) {
                Some(sig) => Some(sig),
                None => {
                    self.err(
                        Diagnostic::new(s.kind_pos, format!("unknown stage kind '{}'", s.kind))
                            .stage(&s.name)
                            .help(kind_help(&s.kind, self.registry)),
                    );
                    None
                }
            };
            classified.push(sig.as_ref().and_then(|sig| self.classify(s, sig)));
            sigs.push(sig);
        }
        // 2. stage graph: references, cycles, order
        let index: BTreeMap<&str, usize> = p.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); p.stages.len()];
        let mut stage_graph = DiGraph::<usize, ()>::new();
        let nodes: Vec<NodeIndex> = (0..p.stages.len()).map(|i| stage_graph.add_node(i)).collect();
        for (i, c) in classified.iter().enumerate() {
            let Some(c) = c else { continue };
            for (_, spec) in &c.inputs {
                for r in &spec.refs {
                    match index.get(r.stage.as_str()) {
                        Some(&j) => {
                            if deps[i].insert(j) {
                                stage_graph.add_edge(nodes[j], nodes[i], ());
                            }
                        }
                        None => {
                            let others = p.stages.iter().map(|s| s.name.as_str()).filter(|n| *n != p.stages[i].name);
                            self.err(
                                Diagnostic::new(r.pos, format!("unknown stage '{}'", r.stage))
                                    .stage(&p.stages[i].name)
                                    .help_opt(suggest(&r.stage, others)),
                            );
                        }
                    }
                }
            }
        }
        if let Err(cycle) = petgraph::algo::toposort(&stage_graph, None) {
            let start = stage_graph[cycle.node_id()];
            let path = find_cycle(&deps, start);
            let names: Vec<&str> = path.iter().map(|&i| p.stages[i].name.as_str()).collect();
            self.err(
                Diagnostic::new(p.stages[start].pos, format!("stages form a cycle: {}", names.join(" → ")))
                    .stage(&p.stages[start].name)
                    .help("a stage cannot read its own output, directly or through others; break the cycle"),
            );
            return None;
        }
        if !self.errors.is_empty() {
            return None;
        }
        let order = topo_order(&deps);
        // depth of each stage: longest path from a source
        let mut depth = vec![0usize; p.stages.len()];
        for &i in &order {
            depth[i] = deps[i].iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
        }
        // axis order: (depth, stage name, axis name) of the first stage introducing it
        let mut axis_rank: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for &i in &order {
            let s = &p.stages[i];
            for name in own_axes(s) {
                let rank = (depth[i], s.name.clone());
                axis_rank.entry(name).and_modify(|r| *r = r.clone().min(rank.clone())).or_insert(rank);
            }
        }
        let mut axes: Vec<String> = axis_rank.keys().cloned().collect();
        axes.sort_by(|a, b| axis_rank[a].cmp(&axis_rank[b]).then_with(|| a.cmp(b)));

        // 3. expansion in topological order
        let mut memo = FingerprintMemo::open(opts.fingerprint_memo.clone());
        let mut instances: Vec<Instance> = Vec::new();
        let mut stage_instances: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut planned = Vec::new();
        for &i in &order {
            let (Some(sig), Some(c)) = (&sigs[i], &classified[i]) else { return None };
            let s = &p.stages[i];
            let variants = self.expand(s, sig, c, &instances, &stage_instances, &index, &axes)?;
            let mut made = Vec::new();
            for v in variants {
                if let Some(inst) = self.instantiate(s, sig, c, v, &axes, project_root, &mut memo, instances.len()) {
                    made.push(instances.len());
                    instances.push(inst);
                }
            }
            if !self.errors.is_empty() {
                return None;
            }
            stage_instances.insert(i, made.clone());
            planned.push(PlannedStage {
                name: s.name.clone(),
                signature: sig.clone(),
                instances: made,
                description: s.description.clone(),
            });
        }
        memo.save();
        let mut graph = DiGraph::<usize, ()>::new();
        let nodes: Vec<NodeIndex> = (0..instances.len()).map(|i| graph.add_node(i)).collect();
        for inst in &instances {
            let mut seen = BTreeSet::new();
            for input in &inst.inputs {
                for item in &input.items {
                    if seen.insert(item.instance) {
                        graph.add_edge(nodes[item.instance], nodes[inst.index], ());
                    }
                }
            }
        }
        Some((planned, instances, axes, graph))
    }

    /// Sort a stage's fields into inputs and parameters, per its kind's signature.
    fn classify(&mut self, s: &StageSpec, sig: &Signature) -> Option<Classified> {
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
                let accepts = if slot.accepts.is_empty() { String::new() } else { format!(" (a {} table)", slot.accepts.join(" or ")) };
                self.err(
                    Diagnostic::new(s.pos, format!("missing input '{}'{accepts}", slot.name))
                        .stage(&s.name)
                        .help(format!("add `{}: <stage>`; {}", slot.name, slot.doc)),
                );
            }
        }
        (self.errors.len() == n).then_some(c)
    }

    /// Bind inputs (join shared axes, cross the rest) and multiply in the stage's own matrix.
    #[allow(clippy::too_many_arguments)]
    fn expand(
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
                let src_sig = self.registry.signature(&src.kind)?;
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
                            .filter(|o| !slot.accepts.is_empty() && !slot.accepts.contains(&o.table.as_str()))
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
                                slot.accepts.join(" or "),
                                if r.output.is_some() { format!("{}.{}", r.stage, out.name) } else { r.stage.clone() },
                                table
                            ),
                        )
                        .stage(&s.name)
                        .help(match src_sig.outputs.iter().find(|o| slot.accepts.contains(&o.table)) {
                            Some(o) => format!("did you mean `{}.{}`?", r.stage, o.name),
                            None => format!("feed '{}' from a stage that outputs {}", slot.name, slot.accepts.join(" or ")),
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
            for v in &combos {
                for (coords, bound) in &candidates {
                    if compatible(&v.coords, coords) {
                        let mut merged = v.coords.clone();
                        merged.extend(coords.iter().map(|(k, v)| (k.clone(), v.clone())));
                        let mut inputs = v.inputs.clone();
                        inputs.push(bound.clone());
                        next.push(Variant { coords: merged, inputs, axis_pos: BTreeMap::new() });
                    }
                }
            }
            if next.is_empty() {
                let shared: BTreeSet<&String> =
                    combos.iter().flat_map(|v| v.coords.keys()).filter(|k| candidates.iter().any(|(c, _)| c.contains_key(*k))).collect();
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
            if !own.iter().any(|(c, _)| canonical_coords(c) == canonical_coords(&coords)) {
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

    /// Resolve parameters, fingerprints and keys of one variant.
    #[allow(clippy::too_many_arguments)]
    fn instantiate(
        &mut self,
        s: &StageSpec,
        sig: &Signature,
        c: &Classified,
        v: Variant,
        axes: &[String],
        project_root: &Path,
        memo: &mut FingerprintMemo,
        index: usize,
    ) -> Option<Instance> {
        let name = &s.name;
        let mut params: BTreeMap<String, (Value, Pos)> = BTreeMap::new();
        for ps in &sig.params {
            if let Some(d) = &ps.default {
                params.insert(ps.name.to_string(), (d.clone(), s.pos));
            }
            if let Some(setting) = self.p.defaults.iter().find(|d| d.name == ps.name) {
                params.insert(ps.name.to_string(), (setting.value.clone(), setting.value_pos));
            }
        }
        for (k, (val, pos)) in &c.params {
            params.insert(k.clone(), (val.clone(), *pos));
        }
        let mut interpolated_axes: BTreeSet<String> = BTreeSet::new();
        // an own axis named like a parameter sets it
        for axis in own_axes(s) {
            if sig.param(&axis).is_none() && !sig.open_params {
                continue;
            }
            if let Some(node) = c.param_nodes.get(&axis) {
                self.err(
                    Diagnostic::new(*node, format!("parameter '{axis}' is set both here and as a matrix axis"))
                        .stage(name)
                        .help("remove one of the two"),
                );
                return None;
            }
            if let (Some(val), Some(pos)) = (v.coords.get(&axis), v.axis_pos.get(&axis)) {
                params.insert(axis.clone(), (val.clone(), *pos));
                interpolated_axes.insert(axis);
            }
        }
        // ${axis} interpolation; `${pipeline}` is the pipeline's name unless an axis has that name
        let mut vars = v.coords.clone();
        vars.entry("pipeline".to_string()).or_insert_with(|| Value::Str(self.p.name.clone()));
        for (k, (val, pos)) in params.iter_mut() {
            match interpolate(val, &vars, &mut interpolated_axes) {
                Ok(new) => *val = new,
                Err(var) => {
                    let avail: Vec<&str> = v.coords.keys().map(String::as_str).collect();
                    self.errors.push(
                        Diagnostic::new(*pos, format!("parameter '{k}' uses ${{{var}}}, but this stage's variants have no axis '{var}'"))
                            .stage(name)
                            .help(if avail.is_empty() {
                                "this stage has no matrix axes; add one with `matrix:` or write the value out".to_string()
                            } else {
                                suggest(&var, avail).unwrap_or_default()
                            }),
                    );
                    return None;
                }
            }
        }
        // types and required
        let mut resolved = BTreeMap::new();
        let mut paths = BTreeMap::new();
        let mut externals = BTreeMap::new();
        for ps in &sig.params {
            match params.get(ps.name) {
                None => {
                    self.err(
                        Diagnostic::new(s.pos, format!("missing parameter '{}' ({})", ps.name, ps.ty.describe()))
                            .stage(name)
                            .help(format!("add `{}: ...`; {}", ps.name, ps.doc)),
                    );
                    return None;
                }
                // an optional parameter left unset
                Some((Value::Null, _)) if ps.default == Some(Value::Null) => {
                    resolved.insert(ps.name.to_string(), Value::Null);
                }
                Some((val, pos)) => match ps.ty.check(val) {
                    Ok(checked) => {
                        if let (ParamType::InputPath | ParamType::InputPathOr(_), Value::Str(rel)) = (&ps.ty, &checked)
                            && !ps.ty.is_word(&checked)
                        {
                            let path = if Path::new(rel).is_absolute() { PathBuf::from(rel) } else { project_root.join(rel) };
                            match memo.fingerprint(&path) {
                                Ok(fp) => {
                                    externals.insert(ps.name.to_string(), fp);
                                }
                                Err(e) => {
                                    // a parameter that also takes words (`explanations: api`) names them
                                    let or_words = match &ps.ty {
                                        ParamType::InputPathOr(words) => format!(", or write {}", words.join(" or ")),
                                        _ => String::new(),
                                    };
                                    let d = if e.kind() == std::io::ErrorKind::NotFound {
                                        Diagnostic::new(*pos, format!("parameter '{}': '{rel}' does not exist", ps.name))
                                            .stage(name)
                                            .help(format!(
                                                "relative paths resolve against the project folder (the one holding pipelines/); put the data \
                                                 there (the pipeline's comments and docs/datasets.md say how) or fix the path{or_words}"
                                            ))
                                    } else {
                                        Diagnostic::new(*pos, format!("cannot read '{rel}' for parameter '{}': {e}", ps.name)).stage(name).help(
                                            format!("relative paths resolve against the project folder (the one holding pipelines/); check the path{or_words}"),
                                        )
                                    };
                                    if !self.external(d, ps.name, rel, true) {
                                        return None;
                                    }
                                    externals.insert(ps.name.to_string(), format!("unresolved:{rel}"));
                                }
                            }
                            paths.insert(ps.name.to_string(), path);
                        }
                        if let (ParamType::Artifact(kind), Value::Str(text)) = (&ps.ty, &checked) {
                            let located = crate::models::source::locate(*kind, text, project_root, || {
                                crate::models::hub::HubCache::from_env().map_err(|e| e.to_string())
                            });
                            let resolved = match located {
                                Ok(crate::models::source::Located::Hub { dir, pinned }) => Ok((dir, pinned)),
                                Ok(crate::models::source::Located::Local(dir)) => {
                                    memo.fingerprint(&dir).map(|fp| (dir, fp)).map_err(|e| format!("cannot read '{text}': {e}"))
                                }
                                Err(e) => Err(e),
                            };
                            match resolved {
                                Ok((dir, external)) => {
                                    externals.insert(ps.name.to_string(), external);
                                    paths.insert(ps.name.to_string(), dir);
                                }
                                Err(e) => {
                                    let d = Diagnostic::new(*pos, format!("parameter '{}': {e}", ps.name))
                                        .stage(name)
                                        .help(format!("expected {}; relative folders resolve against the project folder", kind.describe()));
                                    if !self.external(d, ps.name, text, true) {
                                        return None;
                                    }
                                    externals.insert(ps.name.to_string(), format!("unresolved:{text}"));
                                }
                            }
                        }
                        if let (ParamType::OutputDir, Value::Str(rel)) = (&ps.ty, &checked) {
                            if !stays_inside(rel) {
                                self.err(
                                    Diagnostic::new(*pos, format!("output folder '{rel}' leaves the project"))
                                        .stage(name)
                                        .help("use a relative path without `..` that stays inside the project, e.g. `reports/study`"),
                                );
                                return None;
                            }
                            paths.insert(ps.name.to_string(), project_root.join(rel));
                        }
                        resolved.insert(ps.name.to_string(), checked);
                    }
                    Err(msg) => {
                        self.err(Diagnostic::new(*pos, format!("parameter '{}': {msg}", ps.name)).stage(name).help(ps.doc));
                        return None;
                    }
                },
            }
        }
        if sig.open_params {
            for (k, (val, _)) in &params {
                resolved.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
        if let Some(check) = sig.validate
            && let Err(problem) = check(&resolved)
        {
            let pos = params.get(problem.param).map(|(_, p)| *p).unwrap_or(s.pos);
            self.err(Diagnostic::new(pos, format!("parameter '{}': {}", problem.param, problem.message)).stage(name).help(problem.help));
            return None;
        }
        if let Some(check) = sig.check_files {
            let at = |param: &str| params.get(param).map(|(_, p)| *p).unwrap_or(s.pos);
            match check(&resolved, &paths) {
                Ok(found) => {
                    for w in found {
                        let w = Diagnostic::new(at(w.param), format!("parameter '{}': {}", w.param, w.message)).stage(name).help(w.help);
                        if !self.warnings.iter().any(|x| x.message == w.message && x.stage == w.stage) {
                            self.warnings.push(w);
                        }
                    }
                }
                Err(problem) => {
                    let d = Diagnostic::new(at(problem.param), format!("parameter '{}': {}", problem.param, problem.message))
                        .stage(name)
                        .help(problem.help);
                    let value = resolved.get(problem.param).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                    if !self.external(d, problem.param, &value.unwrap_or_default(), false) {
                        return None;
                    }
                }
            }
        }
        for a in &s.matrix {
            if !interpolated_axes.contains(&a.name) {
                let w = Diagnostic::new(a.pos, format!("matrix axis '{}' changes nothing in this stage", a.name)).stage(name).help(
                    format!("no parameter is named '{}' and no parameter uses ${{{}}}: its variants share one cache entry", a.name, a.name),
                );
                if !self.warnings.iter().any(|x| x.message == w.message && x.stage == w.stage) {
                    self.warnings.push(w);
                }
            }
        }
        let id = instance_id(name, &v.coords, axes);
        let in_key: BTreeMap<String, Value> = sig
            .params
            .iter()
            .filter(|ps| ps.in_key)
            .filter_map(|ps| resolved.get(ps.name).map(|v| (ps, v)))
            // a path enters the key by its content fingerprint (externals), a word as itself
            .filter(|(ps, v)| match ps.ty {
                ParamType::InputPath | ParamType::Artifact(_) => false,
                ParamType::InputPathOr(_) => ps.ty.is_word(v),
                _ => true,
            })
            .map(|(ps, v)| (ps.name.to_string(), v.clone()))
            .chain(if sig.open_params {
                resolved.iter().filter(|(k, _)| sig.param(k).is_none()).map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
            } else {
                Vec::new()
            })
            .collect();
        let preimage = key::preimage(sig, &in_key, &v.inputs, &externals);
        let outputs = sig
            .outputs
            .iter()
            .map(|o| {
                // `$param`: the table type is the value of that parameter (the `table` kind)
                let table = match o.table.strip_prefix('$') {
                    Some(p) => resolved.get(p).and_then(Value::as_str).unwrap_or_default().to_string(),
                    None => o.table.to_string(),
                };
                OutputEntry { name: o.name.to_string(), table, key: key::output_key(&preimage, o.name) }
            })
            .collect();
        let fuse_group = (!sig.fuse_axes.is_empty()).then(|| {
            let rest: Coords =
                v.coords.iter().filter(|(k, _)| !sig.fuse_axes.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
            // members must read the same inputs: one computation serves them all
            let inputs: Vec<(&str, Vec<&str>)> =
                v.inputs.iter().map(|b| (b.slot.as_str(), b.items.iter().map(|it| it.key.as_str()).collect())).collect();
            format!("{name}{}{inputs:?}", canonical_coords(&rest))
        });
        Some(Instance {
            index,
            id,
            stage: name.clone(),
            kind: sig.kind,
            version: sig.version,
            coords: v.coords,
            params: resolved,
            paths,
            inputs: v.inputs,
            externals,
            preimage,
            outputs,
            fuse_group,
        })
    }
}

/// "did you mean 'x'?" for a close kind, else the list; always where to read more.
fn kind_help(kind: &str, registry: &Registry) -> String {
    match suggest(kind, registry.kinds()) {
        Some(s) if s.starts_with("did you mean") => {
            format!("{}; `saeflow kinds` lists every kind", s.split(" valid:").next().unwrap_or(&s))
        }
        Some(s) => format!("{s}; `saeflow kinds` describes them"),
        None => "`saeflow kinds` lists every kind".into(),
    }
}

/// Axes a stage introduces: its matrix axes and include-row axes.
fn own_axes(s: &StageSpec) -> Vec<String> {
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
fn cmp_coords(a: &Coords, b: &Coords, axes: &[String]) -> std::cmp::Ordering {
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

fn compatible(a: &Coords, b: &Coords) -> bool {
    b.iter().all(|(k, v)| a.get(k).is_none_or(|w| w == v))
}

pub fn canonical_coords(c: &Coords) -> String {
    Value::Map(c.clone()).canonical()
}

/// `stage[a=1,b=x]` with axes in display order.
pub fn instance_id(stage: &str, coords: &Coords, axes: &[String]) -> String {
    if coords.is_empty() {
        return stage.to_string();
    }
    let parts: Vec<String> = axes.iter().filter_map(|a| coords.get(a).map(|v| format!("{a}={v}"))).collect();
    format!("{stage}[{}]", parts.join(","))
}

/// Replace `${axis}` in every string; `$${` escapes a literal `${`. A string that is exactly
/// `${axis}` takes the coordinate's typed value (so an inherited `layer` can set an int parameter).
fn interpolate(v: &Value, coords: &Coords, used: &mut BTreeSet<String>) -> Result<Value, String> {
    if let Value::Str(s) = v
        && let Some(var) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !var.contains(['$', '{', '}'])
    {
        let var = var.trim();
        let val = coords.get(var).ok_or_else(|| var.to_string())?;
        used.insert(var.to_string());
        return Ok(val.clone());
    }
    Ok(match v {
        Value::Str(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                if i > 0 && rest.as_bytes()[i - 1] == b'$' {
                    out.push_str(&rest[..i - 1]);
                    out.push_str("${");
                    rest = &rest[i + 2..];
                    continue;
                }
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let end = after.find('}').ok_or_else(|| after.to_string())?;
                let var = after[..end].trim();
                let val = coords.get(var).ok_or_else(|| var.to_string())?;
                used.insert(var.to_string());
                match val {
                    Value::Str(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Value::Str(out)
        }
        Value::List(items) => Value::List(items.iter().map(|i| interpolate(i, coords, used)).collect::<Result<_, _>>()?),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| Ok((k.clone(), interpolate(v, coords, used)?))).collect::<Result<_, String>>()?),
        other => other.clone(),
    })
}

/// A relative path without `..` components that would leave its base.
pub fn stays_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    if p.is_absolute() {
        return false;
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Kahn's algorithm with ties broken by file order.
fn topo_order(deps: &[BTreeSet<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut indeg: Vec<usize> = deps.iter().map(BTreeSet::len).collect();
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for j in 0..n {
            if deps[j].contains(&i) {
                indeg[j] -= 1;
                if indeg[j] == 0 {
                    ready.insert(j);
                }
            }
        }
    }
    order
}

/// A cycle through `start`, as stage indices from `start` back to `start`.
fn find_cycle(deps: &[BTreeSet<usize>], start: usize) -> Vec<usize> {
    // walk dependencies until a stage repeats
    fn dfs(deps: &[BTreeSet<usize>], node: usize, path: &mut Vec<usize>, on: &mut BTreeSet<usize>) -> Option<Vec<usize>> {
        path.push(node);
        on.insert(node);
        for &d in &deps[node] {
            if on.contains(&d) {
                let i = path.iter().position(|&x| x == d).unwrap_or(0);
                let mut cycle: Vec<usize> = path[i..].to_vec();
                cycle.reverse();
                // data-flow order: d feeds the last stage on the path, ..., which feeds d
                cycle.insert(0, d);
                return Some(cycle);
            }
            if let Some(c) = dfs(deps, d, path, on) {
                return Some(c);
            }
        }
        path.pop();
        on.remove(&node);
        None
    }
    dfs(deps, start, &mut Vec::new(), &mut BTreeSet::new()).unwrap_or_else(|| vec![start, start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_out_are_rejected() {
        assert!(stays_inside("reports/x"));
        assert!(stays_inside("a/../b"));
        assert!(!stays_inside("../x"));
        assert!(!stays_inside("a/../../x"));
        assert!(!stays_inside("/etc"));
    }

    #[test]
    fn interpolation_replaces_axes_and_keeps_escapes() {
        let mut c = Coords::new();
        c.insert("layer".into(), Value::Int(6));
        let mut used = BTreeSet::new();
        let v = interpolate(&Value::Str("blocks.${layer}.hook $${x}".into()), &c, &mut used).unwrap();
        assert_eq!(v, Value::Str("blocks.6.hook ${x}".into()));
        assert_eq!(
            interpolate(&Value::Str("${layer}".into()), &c, &mut used).unwrap(),
            Value::Int(6),
            "a whole-string reference keeps its type"
        );
        assert!(used.contains("layer"));
        assert_eq!(interpolate(&Value::Str("${nope}".into()), &c, &mut used), Err("nope".into()));
    }

    #[test]
    fn cycles_are_reported_in_order() {
        // 0 <- 2, 1 <- 0, 2 <- 1  (deps[i] = stages i reads)
        let deps = vec![BTreeSet::from([2]), BTreeSet::from([0]), BTreeSet::from([1])];
        let c = find_cycle(&deps, 0);
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
    }
}
