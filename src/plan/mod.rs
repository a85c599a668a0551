//! Spec → plan: stage kinds resolved, matrices expanded into instances, inputs bound (shared axes
//! joined, disjoint axes crossed), a DAG of instances, and a cache key per output. Nothing here
//! loads a model or reads a table, so `saeflow plan` stays cheap.

#![allow(clippy::result_large_err)] // see spec/mod.rs

mod bind;
mod classify;
pub mod fingerprint;
mod interpolate;
pub mod key;
mod order;
pub mod params;
mod resolve;
pub mod select;
pub mod signature;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

use crate::spec::{Coords, Diagnostic, Diagnostics, InputSpec, Pipeline, Pos, Value, suggest};
use fingerprint::FingerprintMemo;
use order::StageGraph;
pub use resolve::stays_inside;
pub use select::{SelectError, Selection};
pub use signature::{Many, ParamType, Signature};

/// The kinds a plan can use: their signatures, looked up by name. The plan needs nothing else of
/// a kind; the engine's registry implements it, and so does a plain list of signatures (tests).
pub trait Kinds {
    fn signature(&self, kind: &str) -> Option<&Signature>;
    /// Every kind's name, sorted (for suggestions).
    fn names(&self) -> Vec<&'static str>;
}

impl Kinds for [Signature] {
    fn signature(&self, kind: &str) -> Option<&Signature> {
        self.iter().find(|s| s.kind == kind)
    }

    fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.iter().map(|s| s.kind).collect();
        v.sort_unstable();
        v
    }
}

/// A list of signatures as a `&dyn Kinds` (a slice cannot be one: it is unsized).
impl Kinds for Vec<Signature> {
    fn signature(&self, kind: &str) -> Option<&Signature> {
        self.as_slice().signature(kind)
    }

    fn names(&self) -> Vec<&'static str> {
        self.as_slice().names()
    }
}

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
    /// The most instances the plan may have (`None`: [`DEFAULT_MAX_INSTANCES`]); a stage whose
    /// variants would take the plan past it is refused before they are made.
    pub max_instances: Option<usize>,
}

/// The instance limit of a plan unless raised (`saeflow --max-instances N`, `SAEFLOW_MAX_INSTANCES`).
/// The full study sweep has 2,218 instances; every instance is a job and a cache entry, and a
/// plan of 100,000 takes seconds and about half a GB to build, so a larger one is more likely a
/// matrix written by mistake (an axis too many) than a study.
pub const DEFAULT_MAX_INSTANCES: usize = 100_000;

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
    pub fn build(pipeline: Pipeline, kinds: &dyn Kinds, opts: &PlanOptions) -> Result<Plan, Diagnostics> {
        let project_root = opts.project_root.clone().unwrap_or_else(|| project_root_of(&pipeline.path));
        let mut builder = Builder {
            p: &pipeline,
            kinds,
            errors: Vec::new(),
            warnings: Vec::new(),
            record_externals: opts.externals == Externals::Record,
            unresolved: Vec::new(),
            max_instances: opts.max_instances.unwrap_or(DEFAULT_MAX_INSTANCES),
            planned: 0,
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
        let reversed = Reversed(&self.graph);
        let mut dfs = Dfs::new(reversed, NodeIndex::new(i));
        let mut seen = Vec::new();
        while let Some(n) = dfs.next(reversed) {
            if n.index() != i {
                seen.push(self.graph[n]);
            }
        }
        seen.sort_unstable();
        seen
    }
}

type Built = (Vec<PlannedStage>, Vec<Instance>, Vec<String>, DiGraph<usize, ()>);

struct Builder<'a> {
    p: &'a Pipeline,
    kinds: &'a dyn Kinds,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// [`Externals::Record`]: problems with external inputs go to `unresolved`, not `errors`.
    record_externals: bool,
    unresolved: Vec<Unresolved>,
    /// The instance limit, and the instances of the stages expanded so far.
    max_instances: usize,
    planned: usize,
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
            let sig = match self.kinds.signature(&s.kind) {
                Some(sig) => Some(sig.clone()),
                None => {
                    self.err(
                        Diagnostic::new(s.kind_pos, format!("unknown stage kind '{}'", s.kind))
                            .stage(&s.name)
                            .help(kind_help(&s.kind, self.kinds)),
                    );
                    None
                }
            };
            classified.push(sig.as_ref().and_then(|sig| self.classify(s, sig)));
            sigs.push(sig);
        }
        // 2. stage graph: references, cycles, order
        let index: BTreeMap<&str, usize> = p.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let mut stage_graph = StageGraph::new(p.stages.len());
        for (i, c) in classified.iter().enumerate() {
            let Some(c) = c else { continue };
            for (_, spec) in &c.inputs {
                for r in &spec.refs {
                    match index.get(r.stage.as_str()) {
                        Some(&j) => stage_graph.read(i, j),
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
        if let Some(path) = stage_graph.cycle() {
            let start = path[0];
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
        let order = stage_graph.order();
        let axes = order::axis_order(&p.stages, &order, &stage_graph.depths(&order));

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
            self.planned += made.len();
            stage_instances.insert(i, made.clone());
            planned.push(PlannedStage {
                name: s.name.clone(),
                signature: sig.clone(),
                instances: made,
                description: s.description.clone(),
            });
        }
        memo.save();
        let graph = order::instance_graph(&instances);
        Some((planned, instances, axes, graph))
    }
}

/// "did you mean 'x'?" for a close kind, else the list; always where to read more.
fn kind_help(kind: &str, kinds: &dyn Kinds) -> String {
    match suggest(kind, kinds.names()) {
        Some(s) if s.starts_with("did you mean") => {
            format!("{}; `saeflow kinds` lists every kind", s.split(" valid:").next().unwrap_or(&s))
        }
        Some(s) => format!("{s}; `saeflow kinds` describes them"),
        None => "`saeflow kinds` lists every kind".into(),
    }
}

/// `stage[a=1,b=x]` with axes in display order.
pub fn instance_id(stage: &str, coords: &Coords, axes: &[String]) -> String {
    if coords.is_empty() {
        return stage.to_string();
    }
    let parts: Vec<String> = axes.iter().filter_map(|a| coords.get(a).map(|v| format!("{a}={v}"))).collect();
    format!("{stage}[{}]", parts.join(","))
}
