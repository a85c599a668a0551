//! What the pipeline's models and SAEs need on this machine: for every distinct reference, the
//! files a run reads (the ones [`crate::models::source::fetch_checkpoint`] and the SAE loader
//! read), which are here with their sizes, and which a run would download, with a size where one
//! can be known offline:
//!
//! - a file in the cache or a local folder: its size on disk;
//! - the shards of a checkpoint whose `model.safetensors.index.json` is cached: together, the
//!   index's `metadata.total_size` less the shards already here (the tensors' bytes; each shard
//!   adds a small JSON header);
//! - an SAE's `sae_weights.safetensors` when its `cfg.json` is cached: its tensors' bytes from the
//!   cfg's `d_in`, `d_sae`, architecture and dtype;
//! - online (no `HF_HUB_OFFLINE`): what the hub announces for each missing file (one `HEAD` per
//!   file, [`HubCache::remote_size`]); a missing index is fetched first (a small JSON, as `plan`
//!   fetches `config.json`) so that its shards can be named;
//! - otherwise: unknown.
//!
//! Presence is looked up in the cache without any request ([`HubCache::at`] is offline).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::models::hub::HubCache;
use crate::models::llava::checkpoint::{CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
use crate::models::sae::{Architecture, SaeConfig};
use crate::models::sae_load::{self, CFG_FILE, SaeSource, WEIGHTS_FILE};
use crate::models::source::{self, Artifact, CHECKPOINT_EXTRAS};
use crate::plan::Plan;
use crate::plan::signature::ParamType;
use crate::spec::Value;

/// How many bytes, and how sure.
#[derive(Clone, Debug, PartialEq)]
pub enum Size {
    /// On disk, or announced by the hub.
    Exact(u64),
    /// Derived from metadata (`how` says which).
    About {
        bytes: u64,
        how: &'static str,
    },
    Unknown,
}

impl Size {
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Size::Exact(b) | Size::About { bytes: b, .. } => Some(*b),
            Size::Unknown => None,
        }
    }
}

/// One file an artifact needs.
#[derive(Clone, Debug, PartialEq)]
pub struct FileState {
    /// The path inside the repository or folder (`weights` when not even the layout is known).
    pub name: String,
    /// A run fails without it (optional files are fetched if the hub has them).
    pub required: bool,
    pub present: bool,
    pub size: Size,
}

/// Where an artifact lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A folder on this machine.
    Local(PathBuf),
    /// A hub repository (folder: inside it, for SAEs); `commit` when the cache knows the revision.
    Hub { repo: String, revision: String, folder: String, commit: Option<String> },
}

/// One model or SAE reference of the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactReport {
    pub kind: Artifact,
    /// As the pipeline names it (after `${axis}` interpolation).
    pub reference: String,
    /// The stages whose instances use it.
    pub stages: BTreeSet<String>,
    pub place: Place,
    pub files: Vec<FileState>,
    /// What the missing files whose size is known come to (with the index's remainder for
    /// shards of unknown size): see the module docs.
    pub to_download: Size,
    /// Missing required files whose size is not known.
    pub unknown: Vec<String>,
}

impl ArtifactReport {
    /// Every required file is here.
    pub fn complete(&self) -> bool {
        self.files.iter().all(|f| f.present || !f.required)
    }

    /// Required files that are not here.
    pub fn missing(&self) -> impl Iterator<Item = &FileState> {
        self.files.iter().filter(|f| f.required && !f.present)
    }

    /// Bytes of the files that are here.
    pub fn present_bytes(&self) -> u64 {
        self.files.iter().filter(|f| f.present).filter_map(|f| f.size.bytes()).sum()
    }

    /// `complete`, `partial`, `not cached` (hub) or `incomplete` (a local folder missing files).
    pub fn state(&self) -> &'static str {
        match (&self.place, self.complete(), self.files.iter().any(|f| f.present)) {
            (_, true, _) => "complete",
            (Place::Local(_), false, _) => "incomplete",
            (Place::Hub { .. }, false, true) => "partial",
            (Place::Hub { .. }, false, false) => "not cached",
        }
    }
}

/// Every distinct model and SAE reference of `plan`, in plan order. `hub` is the Hugging Face
/// cache of this environment (`None`: no cache location; hub references are then all unknown).
pub fn inventory(plan: &Plan, hub: Option<&HubCache>) -> Vec<ArtifactReport> {
    let mut seen: Vec<(Artifact, String, BTreeSet<String>, BTreeSet<&str>)> = Vec::new();
    for inst in &plan.instances {
        let Some(stage) = plan.stages.iter().find(|s| s.name == inst.stage) else { continue };
        for ps in &stage.signature.params {
            let (ParamType::Artifact(kind), Some(Value::Str(reference))) = (&ps.ty, inst.params.get(ps.name)) else { continue };
            match seen.iter_mut().find(|(k, r, _, _)| k == kind && r == reference) {
                Some((_, _, stages, kinds)) => {
                    stages.insert(inst.stage.clone());
                    kinds.insert(inst.kind);
                }
                None => seen.push((*kind, reference.clone(), BTreeSet::from([inst.stage.clone()]), BTreeSet::from([inst.kind]))),
            }
        }
    }
    seen.into_iter()
        .map(|(kind, reference, stages, kinds)| {
            // the stages that build a prompt read tokenizer.json; a vision-only stage does not
            let tokenizer = kinds.iter().any(|k| TOKENIZER_KINDS.contains(k));
            examine(kind, &reference, stages, &plan.project_root, hub, tokenizer)
        })
        .collect()
}

/// Where a file of an artifact is, without any request.
enum Lookup {
    Here(PathBuf),
    /// The hub said 404 for this commit (remembered in the cache's `.no_exist/`).
    Absent,
    NotHere,
}

/// A view of the artifact's files: a local folder, or a repository folder in the hub cache.
struct Files<'a> {
    place: &'a Place,
    /// Offline view of the cache: lookups make no request.
    offline: Option<HubCache>,
    /// The cache as the environment configures it (online unless HF_HUB_OFFLINE).
    hub: Option<&'a HubCache>,
}

impl Files<'_> {
    fn path_in_repo(folder: &str, name: &str) -> String {
        if folder.is_empty() { name.to_string() } else { format!("{folder}/{name}") }
    }

    fn lookup(&self, name: &str) -> Lookup {
        match self.place {
            Place::Local(dir) => {
                let p = dir.join(name);
                if p.is_file() { Lookup::Here(p) } else { Lookup::NotHere }
            }
            Place::Hub { repo, folder, commit: Some(commit), .. } => {
                let Some(cache) = &self.offline else { return Lookup::NotHere };
                match cache.file(repo, commit, &Self::path_in_repo(folder, name)) {
                    Ok(f) => Lookup::Here(f.path),
                    Err(e) if e.is_missing_file() => Lookup::Absent,
                    Err(_) => Lookup::NotHere,
                }
            }
            Place::Hub { commit: None, .. } => Lookup::NotHere,
        }
    }

    /// The revision to ask the hub about: the cached commit, else the named revision.
    fn revision(&self) -> Option<(&str, &str, &str)> {
        match self.place {
            Place::Hub { repo, revision, folder, commit } => Some((repo, commit.as_deref().unwrap_or(revision), folder)),
            Place::Local(_) => None,
        }
    }

    /// What the hub announces for a missing file, when online.
    fn remote_size(&self, name: &str) -> Size {
        let (Some(hub), Some((repo, revision, folder))) = (self.hub, self.revision()) else { return Size::Unknown };
        match hub.remote_size(repo, revision, &Self::path_in_repo(folder, name)) {
            Ok(Some(bytes)) => Size::Exact(bytes),
            _ => Size::Unknown,
        }
    }

    /// Online only: bring a small metadata file (the index) into the cache, as `plan` brings
    /// `config.json`. `None` offline, on a 404 or any failure.
    fn fetch_small(&self, name: &str) -> Option<PathBuf> {
        let (hub, (repo, revision, folder)) = (self.hub?, self.revision()?);
        if hub.is_offline() {
            return None;
        }
        hub.file(repo, revision, &Self::path_in_repo(folder, name)).ok().map(|f| f.path)
    }

    /// A file's state: present with its size, or missing with what can be known of its size.
    fn state(&self, name: &str, required: bool, missing_size: impl FnOnce() -> Size) -> FileState {
        match self.lookup(name) {
            Lookup::Here(p) => {
                let size = std::fs::metadata(&p).map(|m| Size::Exact(m.len())).unwrap_or(Size::Unknown);
                FileState { name: name.into(), required, present: true, size }
            }
            Lookup::Absent | Lookup::NotHere => {
                let size = match self.remote_size(name) {
                    Size::Unknown => missing_size(),
                    known => known,
                };
                FileState { name: name.into(), required, present: false, size }
            }
        }
    }
}

/// Kinds that tokenize a prompt with the checkpoint's `tokenizer.json`.
const TOKENIZER_KINDS: [&str; 3] = ["llava_sae", "zeroshot", "zeroshot_answers"];

fn examine(
    kind: Artifact,
    reference: &str,
    stages: BTreeSet<String>,
    project_root: &Path,
    hub: Option<&HubCache>,
    tokenizer: bool,
) -> ArtifactReport {
    let local = |p: &Path| Place::Local(if p.is_absolute() { p.to_path_buf() } else { project_root.join(p) });
    let commit = |repo: &str, revision: &str| hub.and_then(|h| HubCache::at(h.root()).resolve_commit(repo, revision).ok());
    let place = match kind {
        Artifact::Model => match reference.strip_prefix("hf://") {
            Some(rest) => {
                let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
                Place::Hub { repo: repo.into(), revision: revision.into(), folder: String::new(), commit: commit(repo, revision) }
            }
            None => local(Path::new(reference)),
        },
        Artifact::Sae => match sae_load::resolve(reference, None).map(|s| s.source) {
            Ok(SaeSource::Hub { repo, revision, folder }) => {
                let commit = commit(&repo, &revision);
                Place::Hub { repo, revision, folder, commit }
            }
            Ok(SaeSource::Local(p)) => local(&p),
            // plan reported the reference; nothing to look up
            Err(_) => local(Path::new(reference)),
        },
    };
    let files = Files { place: &place, offline: hub.map(|h| HubCache::at(h.root())), hub };
    let (files, (to_download, unknown)) = match kind {
        Artifact::Model => model_files(&files, tokenizer),
        Artifact::Sae => sae_files(&files),
    };
    ArtifactReport { kind, reference: reference.into(), stages, place, files, to_download, unknown }
}

/// The missing files: the sum of the known sizes, and the required files of unknown size.
fn missing_total<'a>(files: impl IntoIterator<Item = &'a FileState>) -> (Size, Vec<String>) {
    let mut total = 0u64;
    let mut about = None;
    let mut unknown = Vec::new();
    for f in files.into_iter().filter(|f| !f.present) {
        match &f.size {
            Size::Exact(b) => total += b,
            Size::About { bytes, how } => {
                total += bytes;
                about = Some(*how);
            }
            Size::Unknown if f.required => unknown.push(f.name.clone()),
            Size::Unknown => {}
        }
    }
    let size = match about {
        Some(how) => Size::About { bytes: total, how },
        None => Size::Exact(total),
    };
    (size, unknown)
}

/// A LLaVA checkpoint: `config.json`, the index and its shards (or `model.safetensors`), the
/// tokenizer, and the optional processor files.
fn model_files(f: &Files, tokenizer: bool) -> (Vec<FileState>, (Size, Vec<String>)) {
    let mut out = vec![f.state(CONFIG_FILE, true, || Size::Unknown)];
    let index = match f.lookup(INDEX_FILE) {
        Lookup::Here(p) => Some(p),
        Lookup::Absent => None,
        Lookup::NotHere => f.fetch_small(INDEX_FILE),
    };
    let mut shards_remaining = None;
    match index.as_deref().map(source::read_index) {
        Some(Ok((shards, total))) => {
            let bytes = index.as_deref().and_then(|p| std::fs::metadata(p).ok()).map(|m| Size::Exact(m.len())).unwrap_or(Size::Unknown);
            out.push(FileState { name: INDEX_FILE.into(), required: true, present: true, size: bytes });
            let states: Vec<FileState> = shards.iter().map(|s| f.state(s, true, || Size::Unknown)).collect();
            let here: u64 = states.iter().filter(|s| s.present).filter_map(|s| s.size.bytes()).sum();
            if states.iter().any(|s| !s.present && s.size == Size::Unknown) {
                shards_remaining = total.map(|t| t.saturating_sub(here));
            }
            out.extend(states);
        }
        Some(Err(_)) => out.push(FileState { name: INDEX_FILE.into(), required: true, present: true, size: Size::Unknown }),
        None => {
            let index_absent = matches!(f.lookup(INDEX_FILE), Lookup::Absent);
            let online = f.hub.is_some_and(|h| !h.is_offline());
            let single = f.state(SINGLE_FILE, true, || Size::Unknown);
            // the single file when it is here, when the hub said the index does not exist, or
            // when the hub announces it; otherwise the layout is not known yet
            if single.present || index_absent || (online && single.size != Size::Unknown) {
                out.push(single);
            } else {
                out.push(FileState {
                    name: format!("weights ({INDEX_FILE} and its shards, or {SINGLE_FILE})"),
                    required: true,
                    present: false,
                    size: Size::Unknown,
                });
            }
        }
    }
    for extra in CHECKPOINT_EXTRAS {
        // the processor configs are read when there (transformers 5 writes only one of them)
        let required = tokenizer && extra == "tokenizer.json";
        let state = f.state(extra, required, || Size::Unknown);
        if state.present || required || matches!(f.place, Place::Hub { .. }) {
            out.push(state);
        }
    }
    // a local folder's absent optional files are not listed (nothing would fetch them)
    let (mut total, unknown) = missing_total(out.iter().filter(|s| !(shards_remaining.is_some() && is_shard(s))));
    if let (Some(rest), Some(known)) = (shards_remaining, total.bytes()) {
        total = Size::About { bytes: known + rest, how: "the index's total_size" };
    }
    (out, (total, unknown))
}

fn is_shard(s: &FileState) -> bool {
    s.name.ends_with(".safetensors") && s.name != SINGLE_FILE
}

/// An SAELens folder: `cfg.json` and `sae_weights.safetensors` (sized from the cfg when missing).
fn sae_files(f: &Files) -> (Vec<FileState>, (Size, Vec<String>)) {
    let cfg = f.state(CFG_FILE, true, || Size::Unknown);
    let from_cfg = match f.lookup(CFG_FILE) {
        Lookup::Here(p) => std::fs::read_to_string(p).ok().and_then(|t| SaeConfig::from_json(&t).ok()).map(|c| sae_weight_bytes(&c)),
        _ => None,
    };
    let weights = f.state(WEIGHTS_FILE, true, || match from_cfg {
        Some(bytes) => Size::About { bytes, how: "cfg.json's d_in × d_sae" },
        None => Size::Unknown,
    });
    let out = vec![cfg, weights];
    let total = missing_total(&out);
    (out, total)
}

/// The tensors' bytes of an SAE: `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc [d_sae]`,
/// `b_dec [d_in]` (and `threshold [d_sae]` for JumpReLU), in the cfg's dtype.
pub fn sae_weight_bytes(cfg: &SaeConfig) -> u64 {
    let (d_in, d_sae) = (cfg.d_in as u64, cfg.d_sae as u64);
    let threshold = if cfg.architecture == Architecture::JumpRelu { d_sae } else { 0 };
    let width = match cfg.dtype.trim_start_matches("torch.") {
        "float16" | "bfloat16" | "half" | "bf16" | "fp16" => 2,
        "float64" | "double" => 8,
        _ => 4,
    };
    (2 * d_in * d_sae + d_sae + d_in + threshold) * width
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::models::hub_mock::{Cdn, FakeFile, FakeHub, FakeRepo, MockHub};

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    /// A model repository: config, an index naming two shards, the shards, a tokenizer.
    fn model_repo() -> FakeRepo {
        let index = br#"{"metadata": {"total_size": 1500}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
        FakeRepo::new(
            SHA,
            &[
                ("config.json", FakeFile::regular(b"{}")),
                ("model.safetensors.index.json", FakeFile::regular(index)),
                ("model-00001-of-00002.safetensors", FakeFile::lfs(&[1u8; 700], Cdn::SameHost)),
                ("model-00002-of-00002.safetensors", FakeFile::lfs(&[2u8; 900], Cdn::SameHost)),
                ("tokenizer.json", FakeFile::regular(b"{\"model\": {}}")),
            ],
        )
    }

    fn stages() -> BTreeSet<String> {
        BTreeSet::from(["codes".to_string()])
    }

    #[test]
    fn online_the_hub_announces_each_missing_files_size() {
        let mut hub = FakeHub::default();
        hub.repos.insert("o/m".into(), model_repo());
        let mock = MockHub::start(hub);
        let tmp = tempfile::tempdir().unwrap();
        let cache = HubCache::at(tmp.path()).online(&mock.base);
        let got = examine(Artifact::Model, "hf://o/m", stages(), Path::new("/"), Some(&cache), true);
        let sizes: BTreeMap<&str, (bool, Size)> = got.files.iter().map(|f| (f.name.as_str(), (f.present, f.size.clone()))).collect();
        // the index is fetched (a small JSON, as plan fetches config.json) to name the shards
        assert!(sizes["model.safetensors.index.json"].0);
        assert_eq!(sizes["config.json"], (false, Size::Exact(2)));
        assert_eq!(sizes["model-00001-of-00002.safetensors"], (false, Size::Exact(700)));
        assert_eq!(sizes["model-00002-of-00002.safetensors"], (false, Size::Exact(900)));
        assert_eq!(sizes["tokenizer.json"], (false, Size::Exact(13)));
        // optional files the hub does not have count for nothing
        assert_eq!(sizes["preprocessor_config.json"], (false, Size::Unknown));
        assert_eq!(got.to_download, Size::Exact(2 + 700 + 900 + 13));
        assert!(got.unknown.is_empty());
        assert_eq!(got.state(), "partial");
        // no weights were downloaded: only HEADs, and the index's GET
        let gets: Vec<String> = mock.lines().into_iter().filter(|l| l.starts_with("GET ")).collect();
        assert!(gets.len() == 1 && gets[0].ends_with("/model.safetensors.index.json"), "{gets:?}");
        assert!(!tmp.path().join("models--o--m/snapshots").join(SHA).join("model-00001-of-00002.safetensors").exists());
    }

    #[test]
    fn offline_sizes_come_from_the_index_and_the_sae_cfg_and_nothing_is_asked() {
        let mut hub = FakeHub::default();
        hub.repos.insert("o/m".into(), model_repo());
        let cfg = br#"{"d_in": 2048, "d_sae": 16384, "dtype": "float32", "apply_b_dec_to_input": false, "normalize_activations": "none",
            "architecture": "standard", "metadata": {"hook_name": "blocks.6.hook_resid_post", "hook_layer": 6}}"#;
        hub.repos.insert(
            "o/s".into(),
            FakeRepo::new(
                SHA,
                &[("l6/cfg.json", FakeFile::regular(cfg)), ("l6/sae_weights.safetensors", FakeFile::lfs(&[0u8; 64], Cdn::SameHost))],
            ),
        );
        let mock = MockHub::start(hub);
        let tmp = tempfile::tempdir().unwrap();
        // a partial cache: config, index, the first shard; the SAE's cfg only
        let online = HubCache::at(tmp.path()).online(&mock.base);
        for f in ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"] {
            online.file("o/m", "main", f).unwrap();
        }
        online.file("o/s", "main", "l6/cfg.json").unwrap();
        let n = mock.count();
        let offline = HubCache::at(tmp.path());
        let model = examine(Artifact::Model, "hf://o/m", stages(), Path::new("/"), Some(&offline), true);
        assert_eq!(
            model.place,
            Place::Hub { repo: "o/m".into(), revision: "main".into(), folder: String::new(), commit: Some(SHA.into()) }
        );
        assert_eq!(model.state(), "partial");
        assert_eq!(
            model.present_bytes(),
            2 + 700
                + std::fs::metadata(tmp.path().join("models--o--m/snapshots").join(SHA).join("model.safetensors.index.json"))
                    .unwrap()
                    .len()
        );
        // the second shard: the index's total_size less the shard that is here
        assert_eq!(model.to_download, Size::About { bytes: 1500 - 700, how: "the index's total_size" });
        assert_eq!(model.unknown, ["tokenizer.json"], "a file the index does not size");
        let missing: Vec<&str> = model.missing().map(|f| f.name.as_str()).collect();
        assert_eq!(missing, ["model-00002-of-00002.safetensors", "tokenizer.json"]);

        let sae = examine(Artifact::Sae, "hf://o/s/l6", stages(), Path::new("/"), Some(&offline), true);
        assert_eq!(sae.state(), "partial");
        let weights = (2 * 2048 * 16384 + 16384 + 2048) * 4;
        assert_eq!(sae.to_download, Size::About { bytes: weights, how: "cfg.json's d_in × d_sae" });
        assert_eq!(mock.count(), n, "offline: no request");

        // a vision-only use does not need the tokenizer
        let vision = examine(Artifact::Model, "hf://o/m", stages(), Path::new("/"), Some(&offline), false);
        assert_eq!(vision.missing().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["model-00002-of-00002.safetensors"]);
        // no cache at all: nothing is known, and the layout of the weights is not guessed
        let none = examine(Artifact::Model, "hf://o/m", stages(), Path::new("/"), None, true);
        assert_eq!(none.state(), "not cached");
        assert_eq!(none.to_download, Size::Exact(0));
        assert_eq!(none.unknown.len(), 3, "{:?}", none.unknown);
        assert!(none.files.iter().any(|f| f.name.starts_with("weights (")), "{:?}", none.files);
    }
}
