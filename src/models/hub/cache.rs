//! The cache's layout (`refs/`, `snapshots/`, `.no_exist/`, `CACHEDIR.TAG`) and the cache-first
//! lookup.
//!
//! **Lookup** ([`HubCache::file`], [`HubCache::ensure`]) is cache-first: a revision that `refs/`
//! resolves and a file under its snapshot are used without any request (a branch stays where the
//! cache last saw it; the resolved commit goes into cache keys). Anything missing is fetched at the
//! cached commit, or, for a revision not seen yet, at whatever the hub resolves it to.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::names::{check_relative, check_repo, is_commit_sha, reference};
use super::{DownloadOptions, HubCache, HubError, HubFile, Missing, io_err};

impl HubCache {
    /// `models--owner--name`.
    pub(super) fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit a revision (branch, tag or sha) resolves to in the cache.
    pub fn resolve_commit(&self, repo: &str, revision: &str) -> Result<String, HubError> {
        self.commit_for(repo, revision, "")
    }

    /// [`HubCache::resolve_commit`], naming `path` in a not-cached error.
    pub(super) fn commit_for(&self, repo: &str, revision: &str, path: &str) -> Result<String, HubError> {
        match self.cached_commit(repo, revision)? {
            Some(commit) => Ok(commit),
            None => Err(self.not_cached(repo, revision, path, &format!("refs/{revision}"))),
        }
    }

    /// The commit of `revision` if it is a sha or the cache has its ref; `None` if no ref.
    fn cached_commit(&self, repo: &str, revision: &str) -> Result<Option<String>, HubError> {
        check_repo(repo)?;
        check_relative(revision, &format!("{repo}@{revision}"), "revision")?;
        if is_commit_sha(revision) {
            return Ok(Some(revision.to_string()));
        }
        let ref_path = self.repo_dir(repo).join("refs").join(revision);
        match std::fs::read_to_string(&ref_path) {
            Ok(text) => {
                let commit = text.trim().to_string();
                if is_commit_sha(&commit) {
                    Ok(Some(commit))
                } else {
                    Err(HubError::BadName {
                        reference: format!("{repo}@{revision}"),
                        reason: format!("{} holds {commit:?}, not a commit sha; the cache is damaged", ref_path.display()),
                    })
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(HubError::Io { path: ref_path, source }),
        }
    }

    pub(super) fn pointer(&self, repo: &str, commit: &str, path: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit).join(path)
    }

    pub(super) fn no_exist(&self, repo: &str, commit: &str, path: &str) -> PathBuf {
        self.repo_dir(repo).join(".no_exist").join(commit).join(path)
    }

    /// The file `path` of `repo` at `revision`: from the cache, else downloaded (unless offline).
    pub fn file(&self, repo: &str, revision: &str, path: &str) -> Result<HubFile, HubError> {
        self.ensure(repo, revision, path, &DownloadOptions::default())
    }

    /// The cached file, or `None` (no request, no error for a missing file). Like
    /// `try_to_load_from_cache`.
    pub fn cached(&self, repo: &str, revision: &str, path: &str) -> Result<Option<HubFile>, HubError> {
        check_relative(path, &format!("{repo}@{revision}/{path}"), "path")?;
        let Some(commit) = self.cached_commit(repo, revision)? else { return Ok(None) };
        let file = self.pointer(repo, &commit, path);
        Ok(file.is_file().then_some(HubFile { path: file, commit }))
    }

    /// Cache-first: a cached file is returned without a request; a file the hub said is missing
    /// at the cached commit is [`HubError::NotFound`] without a request; anything else is
    /// downloaded (at the cached commit when the cache knows the revision).
    pub fn ensure(&self, repo: &str, revision: &str, path: &str, opts: &DownloadOptions) -> Result<HubFile, HubError> {
        check_relative(path, &format!("{repo}@{revision}/{path}"), "path")?;
        let cached = self.cached_commit(repo, revision)?;
        if let Some(commit) = &cached
            && !opts.force
        {
            let file = self.pointer(repo, commit, path);
            if file.is_file() {
                return Ok(HubFile { path: file, commit: commit.clone() });
            }
            if self.no_exist(repo, commit, path).is_file() {
                let message = format!("file '{path}' not found in {repo} at {revision} (commit {commit}; remembered from an earlier 404)");
                return Err(HubError::NotFound { reference: reference(repo, revision, path), missing: Missing::Entry, message });
            }
        }
        if self.offline {
            let commit = self.commit_for(repo, revision, path)?;
            return Err(self.not_cached(repo, revision, path, &format!("snapshots/{}/{path}", &commit[..12.min(commit.len())])));
        }
        match cached {
            Some(commit) if !opts.force => self.download(repo, &commit, path, opts),
            _ => self.download(repo, revision, path, opts),
        }
    }

    /// `snapshots/<commit>/<path>` → `../../blobs/<etag>` (relative, like `_create_symlink`), or
    /// without symlinks the file itself (a new blob is moved, a shared one copied).
    pub(super) fn link(&self, blob: &Path, pointer: &Path, path: &str, etag: &str, new_blob: bool) -> Result<(), HubError> {
        if std::fs::symlink_metadata(pointer).is_ok() {
            std::fs::remove_file(pointer).map_err(io_err(pointer))?;
        }
        #[cfg(unix)]
        if self.symlinks {
            let target = format!("{}blobs/{etag}", "../".repeat(path.split('/').count() + 1));
            return match std::os::unix::fs::symlink(&target, pointer) {
                Ok(()) => Ok(()),
                // another process linked it between the remove and here
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && pointer.canonicalize().ok() == blob.canonicalize().ok() => {
                    Ok(())
                }
                Err(source) => Err(HubError::Io { path: pointer.to_path_buf(), source }),
            };
        }
        let _ = (path, etag);
        if new_blob {
            std::fs::rename(blob, pointer).map_err(io_err(pointer))
        } else {
            std::fs::copy(blob, pointer).map(|_| ()).map_err(io_err(pointer))
        }
    }

    /// `refs/<revision>` ← commit, when the revision is not the commit itself; atomic, and only
    /// when it changes (a read-only cache that is current is fine).
    pub(super) fn write_ref(&self, repo: &str, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit {
            return Ok(());
        }
        let ref_path = self.repo_dir(repo).join("refs").join(revision);
        if std::fs::read_to_string(&ref_path).is_ok_and(|t| t == commit) {
            return Ok(());
        }
        let dir = ref_path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let name = ref_path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!("{name}.{}.tmp", unique_suffix()));
        std::fs::write(&tmp, commit).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &ref_path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            HubError::Io { path: ref_path.clone(), source }
        })
    }

    /// `CACHEDIR.TAG`, so backup tools skip the cache (as `huggingface_hub` writes it).
    pub(super) fn write_cachedir_tag(&self) {
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = std::fs::write(
                tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n\
                 # This file is a cache directory tag created by huggingface_hub.\n\
                 # For information about cache directory tags, see:\n\
                 #\thttps://bford.info/cachedir/\n",
            );
        }
    }

    pub(super) fn not_cached(&self, repo: &str, revision: &str, path: &str, missing: &str) -> HubError {
        let folder = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        let include = if folder.is_empty() { String::new() } else { format!(" --include '{folder}/*'") };
        HubError::NotCached {
            reference: reference(repo, revision, path),
            missing: format!("no {missing} under {}", self.repo_dir(repo).display()),
            fetch: format!("hf download {repo} --revision {revision}{include}"),
        }
    }
}

/// Eight hex digits, different for each call in this process and across processes.
pub(super) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:08x}", (x ^ (x >> 31)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::hub::mock::{config, hub, vars};

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

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
        assert!(err.contains("hf download o/r --revision main --include 'f/*'"), "{err}");
        let err = cache.file("o/r", "v2", "f/cfg.json").unwrap_err().to_string();
        assert!(err.starts_with("hf://o/r@v2/f/cfg.json: not in the local Hugging Face cache (no refs/v2 under "), "{err}");
        let err = cache.resolve_commit("o/r", "v2").unwrap_err().to_string();
        assert!(err.starts_with("hf://o/r@v2: not in the local Hugging Face cache"), "{err}");
    }

    #[test]
    fn offline_makes_no_request_and_an_unreachable_hub_falls_back_to_the_cache() {
        let mock = hub(&[("config.json", config())]);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().to_string();
        for flag in ["1", "true", "YES", "on"] {
            let cache =
                HubCache::from_vars(vars(&[("HF_HUB_CACHE", &root), ("HF_ENDPOINT", &mock.base), ("HF_HUB_OFFLINE", flag)])).unwrap();
            assert!(cache.is_offline());
            let err = cache.file("o/r", "main", "config.json").unwrap_err();
            assert!(matches!(err, HubError::NotCached { .. }), "{err:?}");
            let err = cache.download("o/r", "main", "config.json", &DownloadOptions::default()).unwrap_err().to_string();
            assert!(err.contains("downloads are off (HF_HUB_OFFLINE is set)"), "{err}");
            assert!(err.contains("hf download o/r --revision main"), "{err}");
        }
        let cache = HubCache::from_vars(vars(&[("HF_HUB_CACHE", &root), ("TRANSFORMERS_OFFLINE", "1")])).unwrap();
        assert!(cache.is_offline());
        assert_eq!(mock.count(), 0, "offline means no request: {:?}", mock.lines());

        let online = HubCache::from_vars(vars(&[("HF_HUB_CACHE", &root), ("HF_ENDPOINT", &mock.base), ("HF_HUB_OFFLINE", "0")])).unwrap();
        assert!(!online.is_offline());
        let fetched = online.file("o/r", "main", "config.json").unwrap();
        let offline = online.clone().with_token(None);
        let offline = HubCache { offline: true, ..offline };
        assert_eq!(offline.file("o/r", "main", "config.json").unwrap(), fetched);
        assert_eq!(offline.download("o/r", "main", "config.json", &DownloadOptions::default()).unwrap(), fetched);
        assert_eq!(mock.count(), 2);

        // a hub that cannot be reached: download() uses the cache as huggingface_hub does
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let dead = HubCache::at(dir.path()).online(&format!("http://{closed}"));
        assert_eq!(dead.download("o/r", "main", "config.json", &DownloadOptions::default()).unwrap(), fetched);
    }
}
