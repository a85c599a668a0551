//! Where a model or SAE reference from a pipeline points on this machine, and what identifies its
//! content in a cache key.
//!
//! - `hf://owner/repo[@revision]` (a model) or an SAE reference (`release/sae_id`,
//!   `hf://owner/repo[@revision]/folder`): looked up in the Python-compatible Hugging Face cache
//!   ([`super::hub`]); the key gets the **resolved commit**, so a moved branch reruns and an
//!   unchanged one does not.
//! - a local folder (relative to the project): the key gets its content fingerprint.
//!
//! Resolution happens at plan time, so a model that is not there fails `saeflow plan` with the
//! command that fetches it, not a run hours later.

use std::path::{Path, PathBuf};

use super::hub::HubCache;
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
                SaeSource::Hub { repo, folder, .. } => {
                    let cache = cache()?;
                    let found = sae_load::locate(&spec, &cache).map_err(|e| e.to_string())?;
                    let commit = found.commit.unwrap_or_default();
                    let mut pinned =
                        if folder.is_empty() { format!("hf://{repo}@{commit}") } else { format!("hf://{repo}@{commit}/{folder}") };
                    if let Some((release, id)) = &spec.release {
                        // a release also brings its table's input scale and Neuronpedia id
                        pinned = format!("{release}/{id} = {pinned}");
                    }
                    Ok(Located::Hub { dir: found.dir, pinned })
                }
            }
        }
    }
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
        assert!(err.contains("huggingface-cli download Intel/llava-gemma-2b --revision v2"), "{err}");
        std::fs::create_dir_all(tmp.path().join("models/tiny")).unwrap();
        let got = locate(Artifact::Model, "models/tiny", tmp.path(), || Err("no cache needed".into())).unwrap();
        assert_eq!(got, Located::Local(tmp.path().join("models/tiny")));
        let err = locate(Artifact::Sae, "saes/missing", tmp.path(), || Err("unused".into())).unwrap_err();
        assert!(err.contains("not a folder"), "{err}");
    }
}
