//! Where a model or SAE reference from a pipeline points on this machine, and what identifies its
//! content in a cache key.
//!
//! - `hf://owner/repo[@revision]` (a model) or an SAE reference (`release/sae_id`,
//!   `hf://owner/repo[@revision]/folder`): looked up in the Python-compatible Hugging Face cache
//!   ([`super::hub`]); the key gets the **resolved commit**, so a moved branch reruns and an
//!   unchanged one does not.
//! - a local folder (relative to the project): the key gets its content fingerprint.
//!
//! Resolution happens at plan time, so a model that is not there is fetched (only its
//! `config.json`, which pins the commit; an SAE's two files) or, offline, fails `saeflow plan` with
//! the command that fetches it, not a run hours later. [`fetch_checkpoint`] fetches the rest of a
//! model: the safetensors its index names, the tokenizer and the preprocessor config.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::hub::{DownloadOptions, HubCache, HubError, HubFile};
use super::llava::checkpoint::{CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
use super::sae_load::{self, SaeSource};

/// What kind of artifact a parameter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// A LLaVA checkpoint folder (`config.json`, safetensors, tokenizer, preprocessor config).
    Model,
    /// An SAELens SAE folder (`cfg.json`, `sae_weights.safetensors`).
    Sae,
}

impl Artifact {
    pub fn describe(self) -> &'static str {
        match self {
            Artifact::Model => "a model: hf://owner/repo[@revision] or a local checkpoint folder",
            Artifact::Sae => "an SAE: release/sae_id, hf://owner/repo[@revision]/folder or a local SAELens folder",
        }
    }
}

/// A reference resolved on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// In the hub cache: the snapshot folder, and `hf://repo@commit[/folder]` for the key.
    Hub { dir: PathBuf, pinned: String },
    /// A local folder (to be fingerprinted by content).
    Local(PathBuf),
}

/// Resolve `reference` (relative paths against `project_root`).
pub fn locate(
    kind: Artifact,
    reference: &str,
    project_root: &Path,
    cache: impl FnOnce() -> Result<HubCache, String>,
) -> Result<Located, String> {
    let local = |p: &str| {
        let path = Path::new(p);
        let path = if path.is_absolute() { path.to_path_buf() } else { project_root.join(path) };
        if path.is_dir() {
            Ok(Located::Local(path))
        } else {
            Err(format!("'{}' is not a folder; expected {}", path.display(), kind.describe()))
        }
    };
    match kind {
        Artifact::Model => match reference.strip_prefix("hf://") {
            Some(rest) => {
                let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
                let cache = cache()?;
                let file = cache.file(repo, revision, "config.json").map_err(|e| e.to_string())?;
                let dir = file.path.parent().map(Path::to_path_buf).unwrap_or_default();
                Ok(Located::Hub { dir, pinned: format!("hf://{repo}@{}", file.commit) })
            }
            None => local(reference),
        },
        Artifact::Sae => {
            let spec = sae_load::resolve(reference, None).map_err(|e| e.to_string())?;
            match &spec.source {
                SaeSource::Local(p) => local(&p.to_string_lossy()),
                SaeSource::Hub { repo, revision, folder } => {
                    // plan stays cheap: only cfg.json (it pins the commit); the weights come at run
                    // time (`ensure_sae`)
                    let cache = cache()?;
                    let cfg_path =
                        if folder.is_empty() { sae_load::CFG_FILE.to_string() } else { format!("{folder}/{}", sae_load::CFG_FILE) };
                    let file = cache.file(repo, revision, &cfg_path).map_err(|e| e.to_string())?;
                    let found = (file.path.parent().map(Path::to_path_buf).unwrap_or_default(), file.commit);
                    let commit = found.1.clone();
                    let mut pinned =
                        if folder.is_empty() { format!("hf://{repo}@{commit}") } else { format!("hf://{repo}@{commit}/{folder}") };
                    if let Some((release, id)) = &spec.release {
                        // a release also brings its table's input scale and Neuronpedia id
                        pinned = format!("{release}/{id} = {pinned}");
                    }
                    Ok(Located::Hub { dir: found.0, pinned })
                }
            }
        }
    }
}

/// Files of a LLaVA checkpoint fetched besides the weights; a 404 is fine (transformers 5 writes
/// `processor_config.json` instead of `preprocessor_config.json`; `tokenizer.json` is checked by
/// the stage that reads it).
pub const CHECKPOINT_EXTRAS: [&str; 4] = ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json"];

/// A progress report over several files: (file in the repository, bytes so far, total if known).
pub type FileProgress<'a> = &'a dyn Fn(&str, u64, Option<u64>);

/// Fetch what [`super::llava::checkpoint::Checkpoint::open`] and the extraction stage read from a
/// hub model into the cache (each file cache-first, so a complete checkpoint makes no request):
/// `config.json` (which pins the commit: every other file comes from that commit), then
/// `model.safetensors.index.json` and every shard it names, or `model.safetensors` without an
/// index, then [`CHECKPOINT_EXTRAS`]. Returns the snapshot folder and the commit. `progress` gets
/// (file, bytes so far, total) for each file downloaded.
pub fn fetch_checkpoint(cache: &HubCache, repo: &str, revision: &str, progress: Option<FileProgress>) -> Result<HubFile, HubError> {
    let get = |revision: &str, path: &str| {
        let report = |done: u64, total: Option<u64>| {
            if let Some(p) = progress {
                p(path, done, total)
            }
        };
        cache.ensure(repo, revision, path, &DownloadOptions { progress: Some(&report), force: false })
    };
    let config = get(revision, CONFIG_FILE)?;
    let commit = config.commit.clone();
    let dir = config.path.parent().map(Path::to_path_buf).unwrap_or_default();
    match get(&commit, INDEX_FILE) {
        Ok(index) => {
            for shard in index_shards(&index.path)? {
                get(&commit, &shard)?;
            }
        }
        Err(e) if e.is_missing_file() => {
            get(&commit, SINGLE_FILE)?;
        }
        Err(e) => return Err(e),
    }
    for extra in CHECKPOINT_EXTRAS {
        match get(&commit, extra) {
            Ok(_) => {}
            Err(e) if e.is_missing_file() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(HubFile { path: dir, commit })
}

/// The file names an index's `weight_map` points to (the checkpoint reader checks them again).
pub fn index_shards(index: &Path) -> Result<BTreeSet<String>, HubError> {
    read_index(index).map(|(shards, _)| shards)
}

/// A `model.safetensors.index.json`: the shard files its `weight_map` names, and its
/// `metadata.total_size` (the tensors' bytes, a little under the shards' sizes: each shard also has
/// a JSON header) when it has one.
pub fn read_index(index: &Path) -> Result<(BTreeSet<String>, Option<u64>), HubError> {
    let bad =
        |message: String| HubError::Io { path: index.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, message) };
    let text = std::fs::read_to_string(index).map_err(|source| HubError::Io { path: index.to_path_buf(), source })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no \"weight_map\" object: expected {\"weight_map\": {tensor: file}}".into()))?;
    let shards = map
        .iter()
        .map(|(tensor, file)| match file.as_str() {
            Some(f) if !f.is_empty() && !f.starts_with('/') && f.split('/').all(|s| !s.is_empty() && s != "." && s != "..") => {
                Ok(f.to_string())
            }
            _ => Err(bad(format!("weight_map[{tensor:?}] is {file}: expected a file name inside the checkpoint"))),
        })
        .collect::<Result<_, _>>()?;
    let total = value.get("metadata").and_then(|m| m.get("total_size")).and_then(|t| t.as_u64().or_else(|| t.as_f64().map(|f| f as u64)));
    Ok((shards, total))
}

/// Whether `dir` holds every safetensors file its index names (or the single file): then nothing
/// needs fetching, even offline.
fn weights_complete(dir: &Path) -> bool {
    let index = dir.join("model.safetensors.index.json");
    match std::fs::read_to_string(&index).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
        Some(v) => v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .is_some_and(|m| m.values().filter_map(|f| f.as_str()).all(|f| dir.join(f).is_file())),
        None => dir.join("model.safetensors").is_file(),
    }
}

/// Run time: make sure a model parameter's checkpoint is complete on disk. For `hf://` references
/// `dir` is the snapshot the plan resolved (`snapshots/<commit>`): the rest of the checkpoint
/// (index, shards, tokenizer, processor config) is fetched at that commit unless it is there.
pub fn ensure_model(reference: &str, dir: &Path) -> Result<(), String> {
    let Some(rest) = reference.strip_prefix("hf://") else { return Ok(()) };
    if weights_complete(dir) {
        return Ok(());
    }
    let repo = rest.split_once('@').map(|(r, _)| r).unwrap_or(rest);
    let commit = dir.file_name().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    let cache = HubCache::from_env().map_err(|e| e.to_string())?;
    fetch_checkpoint(&cache, repo, &commit, None).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn hub_with_model(root: &Path) {
        let repo = root.join("models--Intel--llava-gemma-2b");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), SHA).unwrap();
        std::fs::create_dir_all(repo.join("snapshots").join(SHA)).unwrap();
        std::fs::write(repo.join("snapshots").join(SHA).join("config.json"), "{}").unwrap();
    }

    #[test]
    fn hub_models_pin_the_commit_and_local_folders_resolve_against_the_project() {
        let tmp = tempfile::tempdir().unwrap();
        hub_with_model(tmp.path());
        let cache = || Ok(HubCache::at(tmp.path()));
        match locate(Artifact::Model, "hf://Intel/llava-gemma-2b", Path::new("/nowhere"), cache).unwrap() {
            Located::Hub { dir, pinned } => {
                assert_eq!(pinned, format!("hf://Intel/llava-gemma-2b@{SHA}"));
                assert!(dir.ends_with(SHA));
            }
            other => panic!("{other:?}"),
        }
        let err = locate(Artifact::Model, "hf://Intel/llava-gemma-2b@v2", Path::new("/"), || Ok(HubCache::at(tmp.path()))).unwrap_err();
        assert!(err.contains("hf download Intel/llava-gemma-2b --revision v2"), "{err}");
        std::fs::create_dir_all(tmp.path().join("models/tiny")).unwrap();
        let got = locate(Artifact::Model, "models/tiny", tmp.path(), || Err("no cache needed".into())).unwrap();
        assert_eq!(got, Located::Local(tmp.path().join("models/tiny")));
        let err = locate(Artifact::Sae, "saes/missing", tmp.path(), || Err("unused".into())).unwrap_err();
        assert!(err.contains("not a folder"), "{err}");
    }

    #[test]
    fn fetch_checkpoint_brings_the_index_its_shards_and_the_tokenizer() {
        use crate::models::hub_mock::{Cdn, FakeFile, FakeHub, FakeRepo, MockHub};
        let shard = |n: u8| FakeFile::lfs(&vec![n; 500 + n as usize], Cdn::SameHost);
        let index = br#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#;
        let mut hub = FakeHub::default();
        hub.repos.insert(
            "Intel/llava-gemma-2b".into(),
            FakeRepo::new(
                SHA,
                &[
                    ("config.json", FakeFile::regular(b"{}")),
                    ("model.safetensors.index.json", FakeFile::regular(index)),
                    ("model-00001-of-00002.safetensors", shard(1)),
                    ("model-00002-of-00002.safetensors", shard(2)),
                    ("model-00003-of-00003.safetensors", shard(3)),
                    ("pytorch_model.bin", shard(4)),
                    ("tokenizer.json", FakeFile::regular(b"{\"model\": {}}")),
                    ("preprocessor_config.json", FakeFile::regular(b"{}")),
                ],
            ),
        );
        hub.repos
            .insert("o/single".into(), FakeRepo::new(SHA, &[("config.json", FakeFile::regular(b"{}")), ("model.safetensors", shard(5))]));
        let mock = MockHub::start(hub);
        let tmp = tempfile::tempdir().unwrap();
        let cache = HubCache::at(tmp.path()).online(&mock.base);
        let seen = std::cell::RefCell::new(BTreeSet::new());
        let progress = |file: &str, done: u64, total: Option<u64>| {
            if Some(done) == total {
                seen.borrow_mut().insert(file.to_string());
            }
        };
        let got = fetch_checkpoint(&cache, "Intel/llava-gemma-2b", "main", Some(&progress)).unwrap();
        assert_eq!(got.commit, SHA);
        assert_eq!(got.path, tmp.path().join("models--Intel--llava-gemma-2b/snapshots").join(SHA));
        let mut files: Vec<String> =
            std::fs::read_dir(&got.path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        files.sort();
        assert_eq!(
            files,
            [
                "config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "preprocessor_config.json",
                "tokenizer.json"
            ]
        );
        assert_eq!(std::fs::read(got.path.join("model-00002-of-00002.safetensors")).unwrap(), vec![2u8; 502]);
        assert!(seen.into_inner().contains("model-00001-of-00002.safetensors"));
        // every file after config.json is asked for at the pinned commit
        let lines = mock.lines();
        assert_eq!(lines[0], "HEAD /Intel/llava-gemma-2b/resolve/main/config.json");
        assert!(lines[2..].iter().filter(|l| l.contains("/resolve/")).all(|l| l.contains(SHA)), "{lines:?}");
        // the located model is that folder, and a second fetch makes no request (404s are remembered)
        let n = mock.count();
        assert_eq!(fetch_checkpoint(&cache, "Intel/llava-gemma-2b", "main", None).unwrap(), got);
        match locate(Artifact::Model, "hf://Intel/llava-gemma-2b", Path::new("/"), || Ok(cache.clone())).unwrap() {
            Located::Hub { dir, pinned } => assert_eq!((dir, pinned), (got.path.clone(), format!("hf://Intel/llava-gemma-2b@{SHA}"))),
            other => panic!("{other:?}"),
        }
        assert_eq!(mock.count(), n, "{:?}", &mock.lines()[n..]);

        // without an index: model.safetensors
        let single = fetch_checkpoint(&cache, "o/single", "main", None).unwrap();
        assert_eq!(std::fs::read(single.path.join("model.safetensors")).unwrap(), vec![5u8; 505]);

        // offline, nothing cached: the error that says how to fetch it
        let offline = HubCache::at(tmp.path());
        let err = fetch_checkpoint(&offline, "o/other", "main", None).unwrap_err().to_string();
        assert!(err.contains("hf download o/other --revision main"), "{err}");
    }
}
