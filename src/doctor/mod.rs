//! `saeflow doctor`: what a researcher checks before a long run, without running anything.
//!
//! Given a plan built with [`crate::plan::Externals::Record`] (so every missing input is seen,
//! not only the first), [`examine`] reports:
//!
//! - **artifacts** ([`artifacts`]): each model and SAE reference, which of its files are here
//!   (complete or not) and what a run would download, with sizes where knowable offline;
//! - **dimension checks**: the kinds' own plan-time checks (`Signature::check_files`: an SAE's
//!   `d_in` against the model's hidden size, its hook layer against the tapped layer), called
//!   per instance, not reimplemented;
//! - **disk and time** ([`estimate`]): upper bounds of the extraction's tables next to the free
//!   space of the cache, and an estimated time of the model forwards on the stages' devices;
//! - **blockers**: what would stop the run (a missing input, an artifact that cannot be fetched
//!   offline, an SAE that does not fit the model, too little disk), each with its fix.
//!
//! Only instances that are not cached count for disk and time. Nothing here prints; the CLI
//! renders a [`Report`] as text or JSON ([`Report::to_json`]).

pub mod artifacts;
pub mod estimate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data;
use crate::engine::cache::Cache;
use crate::engine::history::History;
use crate::engine::status::{self, Status};
use crate::models::hub::HubCache;
use crate::models::llava::LlavaConfig;
use crate::models::sae::SaeConfig;
use crate::models::source::Artifact;
use crate::plan::{Instance, Plan};
use crate::spec::{Diagnostic, Value};
pub use artifacts::{ArtifactReport, FileState, Place, Size};
pub use estimate::Assumptions;

/// What the user can set.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Assume this many images for every dataset instead of listing them (`--images`).
    pub images: Option<u64>,
    /// One effective throughput in TFLOP/s for every device (`--tflops`).
    pub tflops: Option<f64>,
}

/// Something that stops the run, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// `file:line:col: stage 's': …` when the pipeline file has a place for it.
    pub what: String,
    pub help: Option<String>,
}

impl Blocker {
    fn from_diagnostic(d: &Diagnostic) -> Blocker {
        Blocker { what: one_line(d), help: d.help.clone() }
    }
}

/// A diagnostic on one line (no source excerpt, no help).
pub fn one_line(d: &Diagnostic) -> String {
    let stage = d.stage.as_ref().map(|s| format!("stage '{s}': ")).unwrap_or_default();
    format!("{}:{}: {stage}{}", d.file, d.pos, d.message)
}

/// The outcome of a kind's plan-time file check on one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Agrees,
    /// It runs, but something is probably not intended (an SAE trained on another layer).
    Warns(Vec<String>),
    /// It cannot run (an SAE of another width): the plan's diagnostic is among the blockers.
    Disagrees(String),
    /// A file the check reads is not here (a hub artifact not cached).
    NotChecked,
}

/// How many images an instance reads, and where the number comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub count: Option<u64>,
    /// Distinct labels (for zero-shot answers), when the dataset was listed.
    pub labels: Option<u64>,
    /// `listed`, `cached table`, `--images`, or why it is unknown.
    pub how: String,
}

/// One table an instance still to run will write.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskRow {
    pub instance: String,
    pub output: &'static str,
    pub images: Option<u64>,
    /// Upper bound; `None`: unknown (see [`estimate`]).
    pub bytes: Option<u64>,
}

/// One computation still to run: an instance, or a fused group of them.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeRow {
    pub stage: String,
    pub kind: &'static str,
    /// The instances it computes (several for a fused group).
    pub instances: Vec<String>,
    pub images: Option<u64>,
    pub flop_per_image: Option<f64>,
    /// Effective FLOP/s assumed, and where that number comes from.
    pub flops: f64,
    pub throughput: String,
    pub seconds: Option<f64>,
    /// What was left out or unknown.
    pub note: Option<String>,
}

/// Everything `saeflow doctor` found.
#[derive(Clone, Debug)]
pub struct Report {
    pub pipeline: String,
    pub file: String,
    pub instances: usize,
    /// Instances not cached.
    pub to_run: usize,
    pub hub_root: Option<PathBuf>,
    pub offline: bool,
    pub artifacts: Vec<ArtifactReport>,
    /// Per instance whose kind has a plan-time file check.
    pub checks: Vec<(String, CheckOutcome)>,
    /// Per dataset instance read by a model stage still to run.
    pub images: BTreeMap<String, Images>,
    pub disk: Vec<DiskRow>,
    pub cache_dir: PathBuf,
    pub cache_free: Option<u64>,
    pub hub_free: Option<u64>,
    pub time: Vec<TimeRow>,
    pub assumptions: Assumptions,
    pub blockers: Vec<Blocker>,
    pub warnings: Vec<String>,
}

impl Report {
    /// Nothing blocks the run.
    pub fn ready(&self) -> bool {
        self.blockers.is_empty()
    }

    /// Bytes every artifact still needs: (known sum, whether some are unknown).
    pub fn download(&self) -> (u64, bool) {
        let known = self.artifacts.iter().filter_map(|a| a.to_download.bytes()).sum();
        (known, self.artifacts.iter().any(|a| !a.unknown.is_empty()))
    }

    /// The extraction's tables: (known sum, whether some are unknown).
    pub fn disk_total(&self) -> (u64, bool) {
        (self.disk.iter().filter_map(|d| d.bytes).sum(), self.disk.iter().any(|d| d.bytes.is_none()))
    }

    /// Estimated seconds: (known sum, whether some are unknown).
    pub fn seconds(&self) -> (f64, bool) {
        (self.time.iter().filter_map(|t| t.seconds).sum(), self.time.iter().any(|t| t.seconds.is_none()))
    }

    /// The report as JSON (what `saeflow doctor --json` prints).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let size = |s: &Size| match s {
            Size::Exact(b) => json!({"bytes": b, "how": "exact"}),
            Size::About { bytes, how } => json!({"bytes": bytes, "how": how}),
            Size::Unknown => json!({"bytes": null, "how": if self.offline { "unknown (offline)" } else { "unknown" }}),
        };
        let artifacts: Vec<_> = self
            .artifacts
            .iter()
            .map(|a| {
                let (location, commit) = match &a.place {
                    Place::Local(dir) => (json!({"local": dir.display().to_string()}), None),
                    Place::Hub { repo, revision, folder, commit } => {
                        (json!({"repo": repo, "revision": revision, "folder": folder}), commit.clone())
                    }
                };
                json!({
                    "kind": match a.kind { Artifact::Model => "model", Artifact::Sae => "sae" },
                    "reference": a.reference,
                    "stages": a.stages,
                    "location": location,
                    "commit": commit,
                    "state": a.state(),
                    "present_bytes": a.present_bytes(),
                    "to_download": size(&a.to_download),
                    "unknown_size": a.unknown,
                    "files": a.files.iter().map(|f| json!({
                        "name": f.name, "required": f.required, "present": f.present, "size": size(&f.size),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|(id, c)| match c {
                CheckOutcome::Agrees => json!({"instance": id, "outcome": "agrees"}),
                CheckOutcome::Warns(w) => json!({"instance": id, "outcome": "warns", "messages": w}),
                CheckOutcome::Disagrees(m) => json!({"instance": id, "outcome": "disagrees", "messages": [m]}),
                CheckOutcome::NotChecked => json!({"instance": id, "outcome": "not checked"}),
            })
            .collect();
        let (download, download_unknown) = self.download();
        let (disk, disk_unknown) = self.disk_total();
        let (seconds, seconds_unknown) = self.seconds();
        let a = &self.assumptions;
        json!({
            "pipeline": self.pipeline,
            "file": self.file,
            "ready": self.ready(),
            "instances": self.instances,
            "to_run": self.to_run,
            "blockers": self.blockers.iter().map(|b| json!({"what": b.what, "help": b.help})).collect::<Vec<_>>(),
            "warnings": self.warnings,
            "hub": {"cache": self.hub_root.as_ref().map(|p| p.display().to_string()), "offline": self.offline, "free_bytes": self.hub_free},
            "artifacts": artifacts,
            "download": {"bytes": download, "some_unknown": download_unknown},
            "checks": checks,
            "images": self.images.iter().map(|(id, i)| (id.clone(), json!({"count": i.count, "labels": i.labels, "how": i.how}))).collect::<serde_json::Map<_, _>>(),
            "disk": {
                "cache": self.cache_dir.display().to_string(),
                "free_bytes": self.cache_free,
                "bytes": disk,
                "some_unknown": disk_unknown,
                "tables": self.disk.iter().map(|d| json!({"instance": d.instance, "output": d.output, "images": d.images, "bytes": d.bytes})).collect::<Vec<_>>(),
            },
            "time": {
                "seconds": seconds,
                "some_unknown": seconds_unknown,
                "computations": self.time.iter().map(|t| json!({
                    "stage": t.stage, "kind": t.kind, "instances": t.instances, "images": t.images,
                    "flop_per_image": t.flop_per_image, "flops_per_second": t.flops, "throughput": t.throughput,
                    "seconds": t.seconds, "note": t.note,
                })).collect::<Vec<_>>(),
            },
            "assumptions": {
                "bytes_per_code": a.bytes_per_code,
                "bytes_per_total_row": a.bytes_per_total,
                "bytes_per_eoi_value": a.bytes_per_eoi_value,
                "prompt_tokens_besides_image": a.prompt_tokens,
                "tokens_per_zeroshot_answer": a.answer_tokens,
                "cpu_flops_per_core": a.cpu_flops_per_core,
                "cpu_cores": a.cores,
                "cuda_flops_bf16": a.cuda_flops_half,
                "cuda_flops_f32": a.cuda_flops_f32,
                "flops_override": a.flops_override,
            },
        })
    }
}

/// Free bytes (for an unprivileged user) on the filesystem holding `path`, or its nearest
/// existing ancestor.
pub fn free_space(path: &Path) -> Option<u64> {
    let abs = std::path::absolute(path).ok()?;
    let existing = abs.ancestors().find(|p| p.exists())?;
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a NUL-terminated path that outlives the call, and `statvfs` only writes
        // the plain struct it is given.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = existing;
        None
    }
}

/// Kinds whose time [`estimate`] covers.
const MODEL_KINDS: [&str; 4] = ["llava_sae", "clip_vit", "zeroshot", "zeroshot_answers"];

/// Look at `plan` (built with `Externals::Record`) against the cache `cache` and the Hugging Face
/// cache `hub` (`None`: no cache location could be derived).
pub fn examine(plan: &Plan, cache: &Cache, hub: Option<&HubCache>, opts: &Options) -> Report {
    let history = History::load(cache, &plan.pipeline.name);
    let assessed = status::assess(plan, cache, &history, &|_| false);
    let to_run: Vec<bool> = assessed.iter().map(|a| a.status == Status::Run).collect();
    let assumptions = Assumptions { flops_override: opts.tflops.map(|t| t * 1e12), ..Assumptions::default() };
    let artifacts = artifacts::inventory(plan, hub);
    let offline = hub.is_none_or(HubCache::is_offline);

    let checks = checks(plan);
    let mut images: BTreeMap<String, Images> = BTreeMap::new();
    let mut count = |inst: &Instance| -> Images {
        let Some(src) = inst.input("from").and_then(|b| b.items.first()).map(|it| &plan.instances[it.instance]) else {
            return Images { count: None, labels: None, how: "no `from` input".into() };
        };
        images.entry(src.id.clone()).or_insert_with(|| dataset_images(src, assessed[src.index].rows, opts)).clone()
    };
    let (mut disk, mut time) = (Vec::new(), Vec::new());
    // fused groups of llava_sae run as one computation
    let mut groups: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
    for inst in plan.instances.iter().filter(|i| to_run[i.index] && MODEL_KINDS.contains(&i.kind)) {
        if inst.kind == "llava_sae" {
            groups.entry(inst.fuse_group.clone().unwrap_or_else(|| inst.id.clone())).or_default().push(inst);
        } else {
            let n = count(inst);
            time.push(time_row(&[inst], &n, &assumptions));
        }
    }
    for members in groups.values() {
        let n = count(members[0]);
        for m in members {
            let cfg = model_config(m);
            let top_k = match m.params.get("top_k") {
                Some(Value::Int(k)) => Some(*k as u64),
                _ => None,
            };
            let d_sae = sae_config(m).map(|c| c.d_sae as u64);
            let bytes = match (n.count, &cfg) {
                (Some(images), Some(cfg)) => estimate::extraction_bytes(images, cfg, top_k, d_sae, &assumptions),
                _ => ["codes", "totals", "eoi"].into_iter().map(|o| (o, None)).collect(),
            };
            for (output, bytes) in bytes {
                disk.push(DiskRow { instance: m.id.clone(), output, images: n.count, bytes });
            }
        }
        time.push(time_row(members, &n, &assumptions));
    }
    // model stages come first in plan order; keep that order
    time.sort_by_key(|t| plan.instances.iter().position(|i| t.instances.first() == Some(&i.id)));

    let cache_free = free_space(cache.root());
    let hub_free = hub.and_then(|h| free_space(h.root()));
    let mut report = Report {
        pipeline: plan.pipeline.name.clone(),
        file: plan.pipeline.file.clone(),
        instances: plan.instances.len(),
        to_run: to_run.iter().filter(|r| **r).count(),
        hub_root: hub.map(|h| h.root().to_path_buf()),
        offline,
        artifacts,
        checks,
        images,
        disk,
        cache_dir: cache.root().to_path_buf(),
        cache_free,
        hub_free,
        time,
        assumptions,
        blockers: Vec::new(),
        warnings: plan.warnings.iter().map(one_line).collect(),
    };
    report.blockers = blockers(&report, plan);
    report
}

/// What blocks the run: the plan's unresolved inputs, hub artifacts a run cannot fetch (one
/// blocker per repository, in place of the plan's one per reference), local artifact folders
/// that lack files, and too little disk.
fn blockers(r: &Report, plan: &Plan) -> Vec<Blocker> {
    let prefix = |d: &Diagnostic| {
        let stage = d.stage.as_ref().map(|s| format!("stage '{s}': ")).unwrap_or_default();
        format!("{}:{}: {stage}", d.file, d.pos)
    };
    let list = |items: Vec<String>| {
        if items.len() > 3 { format!("{}, … ({} in all)", items[..3].join(", "), items.len()) } else { items.join(", ") }
    };
    // hub artifacts missing files while downloads are off, by repository
    let mut by_repo: BTreeMap<(&str, &str), Vec<&ArtifactReport>> = BTreeMap::new();
    for a in r.artifacts.iter().filter(|a| r.offline && !a.complete()) {
        if let Place::Hub { repo, revision, .. } = &a.place {
            by_repo.entry((repo, revision)).or_default().push(a);
        }
    }
    let covered: std::collections::BTreeSet<&str> = by_repo.values().flatten().map(|a| a.reference.as_str()).collect();
    let mut out: Vec<Blocker> = plan
        .unresolved
        .iter()
        .filter(|u| !(u.missing && covered.contains(u.value.as_str())))
        .map(|u| Blocker::from_diagnostic(&u.diagnostic))
        .collect();
    for ((repo, revision), arts) in &by_repo {
        let at = plan
            .unresolved
            .iter()
            .find(|u| u.missing && arts.iter().any(|a| a.reference == u.value))
            .map(|u| prefix(&u.diagnostic))
            .unwrap_or_default();
        let what = match arts.as_slice() {
            [a] => format!(
                "{at}{}: not in the Hugging Face cache, and downloads are off (HF_HUB_OFFLINE): {}",
                a.reference,
                list(a.missing().map(|f| f.name.clone()).collect())
            ),
            _ => format!(
                "{at}hf://{repo}: {} {} not in the Hugging Face cache, and downloads are off (HF_HUB_OFFLINE): {}",
                arts.len(),
                if arts.iter().all(|a| a.kind == Artifact::Sae) { "SAEs" } else { "references" },
                list(arts.iter().map(|a| a.reference.clone()).collect())
            ),
        };
        let folders: Vec<String> = arts
            .iter()
            .filter_map(|a| match &a.place {
                Place::Hub { folder, .. } if !folder.is_empty() => Some(format!("'{folder}/*'")),
                _ => None,
            })
            .collect();
        // today's CLI (`hf`, huggingface_hub ≥ 0.34; `huggingface-cli` is gone): one `--include` per pattern
        let include: String = folders.iter().map(|f| format!(" --include {f}")).collect();
        out.push(Blocker {
            what,
            help: Some(format!(
                "unset HF_HUB_OFFLINE so the run fetches them, or fetch them first with `hf download {repo} --revision {revision}{include}` (same HF_HOME/HF_HUB_CACHE)"
            )),
        });
    }
    for a in r.artifacts.iter().filter(|a| !a.complete()) {
        let Place::Local(dir) = &a.place else { continue };
        // the plan already said the folder is not there
        if plan.unresolved.iter().any(|u| u.missing && u.value == a.reference) {
            continue;
        }
        out.push(Blocker {
            what: format!("{}: the folder {} lacks {}", a.reference, dir.display(), list(a.missing().map(|f| f.name.clone()).collect())),
            help: Some(match a.kind {
                Artifact::Model => "a checkpoint folder holds config.json, the safetensors (an index and its shards, or model.safetensors) and, for the prompt, tokenizer.json".into(),
                Artifact::Sae => "an SAELens folder holds cfg.json and sae_weights.safetensors".into(),
            }),
        });
    }
    let (need, _) = r.disk_total();
    if let Some(free) = r.cache_free
        && need > free
    {
        out.push(Blocker {
            what: format!(
                "the extraction's tables may need up to {} in {}, which has {} free",
                fmt_bytes(need),
                r.cache_dir.display(),
                fmt_bytes(free)
            ),
            help: Some(
                "free space or point --cache / SAEFLOW_CACHE at a larger disk; the figure is an upper bound (codes: every token keeps \
                 top_k features; totals: every image uses every SAE feature), lower top_k to shrink codes"
                    .into(),
            ),
        });
    }
    let (download, _) = r.download();
    if let (Some(free), Some(root)) = (r.hub_free, &r.hub_root)
        && download > free
    {
        out.push(Blocker {
            what: format!(
                "the downloads need {} in the Hugging Face cache {}, which has {} free",
                fmt_bytes(download),
                root.display(),
                fmt_bytes(free)
            ),
            help: Some("free space, or set HF_HUB_CACHE (or HF_HOME) to a larger disk".into()),
        });
    }
    out
}

/// Decimal units, 3 significant digits: `512 B`, `4.1 kB`, `9.06 GB`.
pub fn fmt_bytes(b: u64) -> String {
    decimal(b as f64, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// FLOPs in decimal units: `830 MFLOP`, `3.21 TFLOP`.
pub fn fmt_flop(f: f64) -> String {
    decimal(f, &["FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP"])
}

fn decimal(mut x: f64, units: &[&str]) -> String {
    let mut u = 0;
    while x >= 1000.0 && u + 1 < units.len() {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{} {}", x.round(), units[0]) } else { format!("{} {}", estimate::fmt_g(x), units[u]) }
}

/// Seconds as `42 s`, `12 min`, `3.4 h`, `2.1 days`.
pub fn fmt_duration(s: f64) -> String {
    match s {
        s if s < 90.0 => format!("{} s", estimate::fmt_g(s.max(0.0))),
        s if s < 90.0 * 60.0 => format!("{} min", estimate::fmt_g(s / 60.0)),
        s if s < 48.0 * 3600.0 => format!("{} h", estimate::fmt_g(s / 3600.0)),
        s => format!("{} days", estimate::fmt_g(s / 86400.0)),
    }
}

/// The plan-time file check of every instance whose kind has one.
fn checks(plan: &Plan) -> Vec<(String, CheckOutcome)> {
    let mut out = Vec::new();
    for stage in &plan.stages {
        let Some(check) = stage.signature.check_files else { continue };
        let artifacts: Vec<&str> = stage
            .signature
            .params
            .iter()
            .filter(|p| matches!(p.ty, crate::plan::signature::ParamType::Artifact(_)))
            .map(|p| p.name)
            .collect();
        for &i in &stage.instances {
            let inst = &plan.instances[i];
            let outcome = if artifacts.iter().any(|a| !inst.paths.contains_key(*a)) {
                CheckOutcome::NotChecked
            } else {
                match check(&inst.params, &inst.paths) {
                    Ok(w) if w.is_empty() => CheckOutcome::Agrees,
                    Ok(w) => CheckOutcome::Warns(w.into_iter().map(|p| format!("parameter '{}': {}", p.param, p.message)).collect()),
                    Err(p) => CheckOutcome::Disagrees(format!("parameter '{}': {}", p.param, p.message)),
                }
            };
            out.push((inst.id.clone(), outcome));
        }
    }
    out
}

/// The images a dataset instance yields: `--images`, its cached table's rows, or a listing of the
/// source (nothing decoded).
fn dataset_images(src: &Instance, cached_rows: Option<u64>, opts: &Options) -> Images {
    if let Some(n) = opts.images {
        return Images { count: Some(n), labels: None, how: "--images".into() };
    }
    if src.kind == "dataset" {
        let listed = crate::stages::dataset::parse_params(&src.id, &src.params, &src.paths)
            .map_err(|e| e.to_string())
            .and_then(|(spec, sel)| data::open(&spec).map(|s| (s, sel)).map_err(|e| e.to_string()));
        match listed {
            Ok((source, sel)) => {
                let ids = data::select::select(source.records(), &sel);
                let labels: std::collections::BTreeSet<u16> = ids.iter().map(|&i| source.records()[i as usize].label).collect();
                return Images { count: Some(ids.len() as u64), labels: Some(labels.len() as u64), how: "listed".into() };
            }
            Err(e) if cached_rows.is_none() => {
                return Images { count: None, labels: None, how: format!("unknown: {e}; give --images N") };
            }
            Err(_) => {}
        }
    }
    match cached_rows {
        Some(rows) => Images { count: Some(rows), labels: None, how: "cached table".into() },
        None => {
            Images { count: None, labels: None, how: format!("unknown: {} is not a dataset stage and not cached; give --images N", src.id) }
        }
    }
}

/// The LLaVA config a model parameter resolved to, when its `config.json` is here.
fn model_config(inst: &Instance) -> Option<LlavaConfig> {
    let text = std::fs::read_to_string(inst.paths.get("model")?.join("config.json")).ok()?;
    LlavaConfig::from_json(&text, "config.json").ok()
}

/// The SAE config an `sae` parameter resolved to, when its `cfg.json` is here.
fn sae_config(inst: &Instance) -> Option<SaeConfig> {
    let text = std::fs::read_to_string(inst.paths.get("sae")?.join(crate::models::sae_load::CFG_FILE)).ok()?;
    SaeConfig::from_json(&text).ok()
}

/// The time of one computation: one instance, or a fused `llava_sae` group.
fn time_row(members: &[&Instance], n: &Images, a: &Assumptions) -> TimeRow {
    let first = members[0];
    let str_param = |name: &str| first.params.get(name).and_then(Value::as_str).unwrap_or("").to_string();
    let (flops, throughput) = a.throughput(&str_param("device"), &str_param("dtype"));
    let cfg = model_config(first);
    let mut note = None;
    let per_image = cfg.as_ref().and_then(|cfg| match first.kind {
        "llava_sae" => {
            // blocks up to the deepest tap: resid_post of L runs L + 1 blocks, resid_pre L
            let blocks = members
                .iter()
                .map(|m| {
                    let layer = m.params.get("layer").and_then(Value::as_i64).unwrap_or(0) as usize;
                    layer + usize::from(m.params.get("hook").and_then(Value::as_str) != Some("resid_pre"))
                })
                .max()
                .unwrap_or(0)
                .min(cfg.text.num_hidden_layers);
            let saes: Vec<Option<usize>> = members.iter().map(|m| sae_config(m).map(|c| c.d_sae)).collect();
            let unknown = saes.iter().filter(|s| s.is_none()).count();
            if unknown > 0 {
                note = Some(format!("{unknown} SAE(s) left out: cfg.json not here"));
            }
            Some(estimate::llava_sae_flops(cfg, blocks, &saes, a))
        }
        "clip_vit" => Some(estimate::clip_vit_flops(cfg)),
        kind @ ("zeroshot" | "zeroshot_answers") => {
            let open =
                (str_param("mode") == "open").then(|| first.params.get("max_new_tokens").and_then(Value::as_i64).unwrap_or(10) as u64);
            // `zeroshot` answers a split's test images only; `zeroshot_answers` every image, once
            let only_test =
                if kind == "zeroshot" { "upper bound: every image; only the split's test images run" } else { "every image, once" };
            match (open, n.labels) {
                (Some(_), _) => {
                    note = Some(format!("{only_test}; max_new_tokens each"));
                    Some(estimate::zeroshot_flops(cfg, open, 0, a))
                }
                (None, Some(labels)) => {
                    note = Some(only_test.into());
                    Some(estimate::zeroshot_flops(cfg, None, labels, a))
                }
                (None, None) => {
                    note = Some("the number of labels is unknown".into());
                    None
                }
            }
        }
        _ => None,
    });
    if cfg.is_none() {
        note = Some("the model's config.json is not here".into());
    }
    if n.count.is_none() {
        note = Some("the number of images is unknown: see `images`".into());
    }
    let seconds = match (per_image, n.count) {
        (Some(f), Some(images)) => Some(f * images as f64 / flops),
        _ => None,
    };
    TimeRow {
        stage: first.stage.clone(),
        kind: first.kind,
        instances: members.iter().map(|m| m.id.clone()).collect(),
        images: n.count,
        flop_per_image: per_image,
        flops,
        throughput,
        seconds,
        note,
    }
}
