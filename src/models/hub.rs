//! The Hugging Face hub cache, laid out as Python's `huggingface_hub` lays it out, so one cache
//! serves both (and files fetched with `huggingface-cli download` are found here).
//!
//! ```text
//! <cache>/models--<owner>--<name>/refs/<revision>            a file holding the commit sha
//! <cache>/models--<owner>--<name>/snapshots/<commit>/<path>  the file (usually a link into blobs/)
//! ```
//!
//! `<cache>` is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
//! `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` — the order of
//! `huggingface_hub.constants`.
//!
//! Only the offline lookup is implemented: saeflow behaves as if `HF_HUB_OFFLINE=1` were always
//! set, and a file that is not cached is an error that says how to fetch it.
//! TODO(hub-download): downloading (ureq, `HF_TOKEN` sent only as a bearer header and never
//! printed, logged or stored; `HF_HUB_OFFLINE=1` keeps this offline path; blobs + symlinked
//! snapshots + refs written as Python writes them).

use std::path::{Path, PathBuf};

/// Where the cache is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
}

/// A cached file of a repository at a resolved commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFile {
    pub path: PathBuf,
    /// The commit sha the revision resolved to (goes into cache keys).
    pub commit: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A repository id, revision or path that cannot name anything on the hub.
    #[error("hf://{reference}: {reason}")]
    BadName { reference: String, reason: String },
    /// The revision or the file is not in the local cache.
    #[error(
        "hf://{reference}: not in the local Hugging Face cache ({missing}); saeflow does not download yet: fetch it \
         with `{fetch}` using the same HF_HOME/HF_HUB_CACHE, or name a local folder"
    )]
    NotCached { reference: String, missing: String, fetch: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// No cache location can be derived from the environment.
    #[error("hugging face cache: none of HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME or HOME is set; set HF_HOME")]
    NoHome,
}

impl HubCache {
    /// A cache at this folder (the one holding `models--…` folders).
    pub fn at(root: impl Into<PathBuf>) -> HubCache {
        HubCache { root: root.into() }
    }

    /// The cache Python's `huggingface_hub` would use in this environment.
    pub fn from_env() -> Result<HubCache, HubError> {
        HubCache::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`HubCache::from_env`] over any variable lookup (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<HubCache, HubError> {
        let home = var("HOME");
        let expand = |p: String| -> PathBuf {
            match (p.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => Path::new(h).join(rest),
                _ => PathBuf::from(p),
            }
        };
        if let Some(p) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
            return Ok(HubCache::at(expand(p)));
        }
        let hf_home = match var("HF_HOME") {
            Some(p) => expand(p),
            None => match var("XDG_CACHE_HOME") {
                Some(p) => expand(p).join("huggingface"),
                None => Path::new(&home.clone().ok_or(HubError::NoHome)?).join(".cache").join("huggingface"),
            },
        };
        Ok(HubCache::at(hf_home.join("hub")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--owner--name`.
    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit a revision (branch, tag or sha) resolves to in the cache.
    pub fn resolve_commit(&self, repo: &str, revision: &str) -> Result<String, HubError> {
        self.commit_for(repo, revision, "")
    }

    /// [`HubCache::resolve_commit`], naming `path` in a not-cached error.
    fn commit_for(&self, repo: &str, revision: &str, path: &str) -> Result<String, HubError> {
        check_repo(repo)?;
        check_relative(revision, &format!("{repo}@{revision}"), "revision")?;
        if is_commit_sha(revision) {
            return Ok(revision.to_string());
        }
        let ref_path = self.repo_dir(repo).join("refs").join(revision);
        match std::fs::read_to_string(&ref_path) {
            Ok(text) => {
                let commit = text.trim().to_string();
                if is_commit_sha(&commit) {
                    Ok(commit)
                } else {
                    Err(HubError::BadName {
                        reference: format!("{repo}@{revision}"),
                        reason: format!("{} holds {commit:?}, not a commit sha; the cache is damaged", ref_path.display()),
                    })
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.not_cached(repo, revision, path, &format!("refs/{revision}"))),
            Err(source) => Err(HubError::Io { path: ref_path, source }),
        }
    }

    /// The cached file `path` of `repo` at `revision`.
    pub fn file(&self, repo: &str, revision: &str, path: &str) -> Result<HubFile, HubError> {
        check_relative(path, &format!("{repo}@{revision}/{path}"), "path")?;
        let commit = self.commit_for(repo, revision, path)?;
        let file = self.repo_dir(repo).join("snapshots").join(&commit).join(path);
        if file.is_file() {
            Ok(HubFile { path: file, commit })
        } else {
            Err(self.not_cached(repo, revision, path, &format!("snapshots/{}/{path}", &commit[..12.min(commit.len())])))
        }
    }

    fn not_cached(&self, repo: &str, revision: &str, path: &str, missing: &str) -> HubError {
        let reference = if path.is_empty() { format!("{repo}@{revision}") } else { format!("{repo}@{revision}/{path}") };
        let folder = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        let include = if folder.is_empty() { String::new() } else { format!(" --include '{folder}/*'") };
        HubError::NotCached {
            reference,
            missing: format!("no {missing} under {}", self.repo_dir(repo).display()),
            fetch: format!("huggingface-cli download {repo} --revision {revision}{include}"),
        }
    }
}

fn is_commit_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `owner/name` with the hub's characters.
pub fn check_repo(repo: &str) -> Result<(), HubError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(()),
        _ => Err(HubError::BadName {
            reference: repo.into(),
            reason: "expected a repository id owner/name (letters, digits, '-', '_', '.')".into(),
        }),
    }
}

/// A relative path without `..`, empty segments or a leading `/`.
fn check_relative(path: &str, reference: &str, what: &str) -> Result<(), HubError> {
    let bad = path.is_empty() || path.starts_with('/') || path.contains('\\') || path.split('/').any(|s| s.is_empty() || s == "..");
    if bad {
        return Err(HubError::BadName {
            reference: reference.into(),
            reason: format!("{what} {path:?} must be a relative path without '..' or empty segments"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn cache_location_follows_huggingface_hub() {
        let at = |pairs: &[(&str, &str)]| HubCache::from_vars(vars(pairs)).unwrap().root().to_path_buf();
        assert_eq!(at(&[("HOME", "/h")]), PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(at(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]), PathBuf::from("/x/huggingface/hub"));
        assert_eq!(at(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "~/hf")]), PathBuf::from("/h/hf/hub"));
        assert_eq!(at(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old")]), PathBuf::from("/old"));
        assert_eq!(at(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HUB_CACHE", "/new")]), PathBuf::from("/new"));
        assert!(matches!(HubCache::from_vars(vars(&[])), Err(HubError::NoHome)));
    }

    #[test]
    fn finds_a_snapshot_file_through_refs() {
        let dir = tempfile::tempdir().unwrap();
        let repo_dir = dir.path().join("models--o--r");
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), format!("{SHA}\n")).unwrap();
        let snap = repo_dir.join("snapshots").join(SHA).join("f");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("cfg.json"), "{}").unwrap();
        let cache = HubCache::at(dir.path());
        let file = cache.file("o/r", "main", "f/cfg.json").unwrap();
        assert_eq!(file.commit, SHA);
        assert_eq!(file.path, snap.join("cfg.json"));
        assert_eq!(cache.file("o/r", SHA, "f/cfg.json").unwrap(), file, "a sha needs no ref");

        let err = cache.file("o/r", "main", "f/sae_weights.safetensors").unwrap_err().to_string();
        assert!(err.starts_with("hf://o/r@main/f/sae_weights.safetensors: not in the local Hugging Face cache"), "{err}");
        assert!(err.contains("huggingface-cli download o/r --revision main --include 'f/*'"), "{err}");
        let err = cache.file("o/r", "v2", "f/cfg.json").unwrap_err().to_string();
        assert!(err.starts_with("hf://o/r@v2/f/cfg.json: not in the local Hugging Face cache (no refs/v2 under "), "{err}");
        let err = cache.resolve_commit("o/r", "v2").unwrap_err().to_string();
        assert!(err.starts_with("hf://o/r@v2: not in the local Hugging Face cache"), "{err}");
    }

    #[test]
    fn rejects_names_that_escape_the_cache() {
        let cache = HubCache::at("/nowhere");
        assert!(matches!(cache.file("o/r", "main", "../x"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("o/r", "../../x", "f"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("o", "main", "f"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("o/r/s", "main", "f"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("../r", "main", "f"), Err(HubError::BadName { .. })));
    }
}
