//! [`HubCache::download`], as `hf_hub_download` does it.
//!
//! A branch or tag is re-resolved by a `HEAD` (a sha with its file cached needs none), and a hub
//! that cannot be reached falls back to the cache. The `HEAD` (`http.rs`) gives the commit, the
//! blob name, the size and, for LFS files, the CDN location the `GET` then follows. The bytes go to
//! `blobs/<etag>.<random>.incomplete` (resumed with `Range` after a dropped connection), are
//! checked (size; sha256 for LFS), and are renamed into place under the lock; then the snapshot
//! link and `refs/<revision>` are written. A failed check keeps nothing.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use super::cache::unique_suffix;
use super::http::Meta;
use super::names::{check_relative, check_repo, is_commit_sha, reference};
use super::{DownloadOptions, HubCache, HubError, HubFile, Missing, io_err};

/// How many times a dropped download is resumed without progress before giving up (as
/// `huggingface_hub`'s `http_get`).
const RESUME_TRIES: u32 = 5;

impl HubCache {
    /// `hf_hub_download`: a sha whose file is cached needs no request; otherwise a `HEAD` resolves
    /// the revision (a branch or tag is re-resolved, and its ref updated), and the file is fetched
    /// unless that commit's file is cached. Offline, or when the hub cannot be reached (or answers
    /// 5xx or 401), the cached file is returned if there is one.
    pub fn download(&self, repo: &str, revision: &str, path: &str, opts: &DownloadOptions) -> Result<HubFile, HubError> {
        check_repo(repo)?;
        check_relative(revision, &format!("{repo}@{revision}"), "revision")?;
        check_relative(path, &format!("{repo}@{revision}/{path}"), "path")?;
        if is_commit_sha(revision) && !opts.force {
            let file = self.pointer(repo, revision, path);
            if file.is_file() {
                return Ok(HubFile { path: file, commit: revision.to_string() });
            }
        }
        if self.offline {
            let commit = self.commit_for(repo, revision, path)?;
            let file = self.pointer(repo, &commit, path);
            if file.is_file() && !opts.force {
                return Ok(HubFile { path: file, commit });
            }
            return Err(self.not_cached(repo, revision, path, &format!("snapshots/{}/{path}", &commit[..12.min(commit.len())])));
        }
        let meta = match self.head(repo, revision, path) {
            Ok(meta) => meta,
            Err(e @ HubError::NotFound { missing: Missing::Entry | Missing::Revision, .. }) => return Err(e),
            Err(e) => {
                // Unreachable, 5xx, denied, no such repository (private?): the cache may still
                // have it (as huggingface_hub falls back).
                if !opts.force
                    && let Ok(Some(file)) = self.cached(repo, revision, path)
                {
                    return Ok(file);
                }
                return Err(e);
            }
        };
        let storage = self.repo_dir(repo);
        let pointer = self.pointer(repo, &meta.commit, path);
        if !opts.force && pointer.is_file() {
            let _ = self.write_ref(repo, revision, &meta.commit); // best effort: the cache may be read-only
            return Ok(HubFile { path: pointer, commit: meta.commit });
        }
        let blobs = storage.join("blobs");
        let blob = blobs.join(&meta.etag);
        for dir in [&blobs, &pointer.parent().map(Path::to_path_buf).unwrap_or_default()] {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        self.write_cachedir_tag();
        self.write_ref(repo, revision, &meta.commit)?;
        let locks = self.root.join(".locks").join(storage.file_name().unwrap_or_default());
        std::fs::create_dir_all(&locks).map_err(io_err(&locks))?;
        let _lock = lock(&locks.join(format!("{}.lock", meta.etag)));
        if !opts.force && blob.is_file() {
            if !pointer.is_file() {
                self.link(&blob, &pointer, path, &meta.etag, false)?;
            }
            return Ok(HubFile { path: pointer, commit: meta.commit });
        }
        let reference = reference(repo, revision, path);
        let tmp = blobs.join(format!("{}.{}.incomplete", meta.etag, unique_suffix()));
        let fetched = self.fetch(&reference, &meta, &tmp, opts);
        let fetched = fetched.and_then(|()| std::fs::rename(&tmp, &blob).map_err(io_err(&blob)));
        if let Err(e) = fetched {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if opts.force || !pointer.is_file() {
            self.link(&blob, &pointer, path, &meta.etag, true)?;
        }
        Ok(HubFile { path: pointer, commit: meta.commit })
    }

    /// The size the hub announces for `path` at `revision` (one `HEAD`, as a download starts;
    /// nothing is fetched), or `None` offline, where no request is made. `saeflow doctor` uses it
    /// to say what a run would download.
    pub fn remote_size(&self, repo: &str, revision: &str, path: &str) -> Result<Option<u64>, HubError> {
        check_repo(repo)?;
        check_relative(revision, &format!("{repo}@{revision}"), "revision")?;
        check_relative(path, &format!("{repo}@{revision}/{path}"), "path")?;
        if self.offline {
            return Ok(None);
        }
        self.head(repo, revision, path).map(|meta| Some(meta.size))
    }

    /// `http_get`: stream `meta.location` into `tmp`, resuming with `Range` after a dropped
    /// connection, then check the size and (LFS) the sha256.
    fn fetch(&self, reference: &str, meta: &Meta, tmp: &Path, opts: &DownloadOptions) -> Result<(), HubError> {
        let agent = self.agent(10, self.download_timeout);
        let url = &meta.location;
        let http = |message: String| HubError::Http { reference: reference.to_string(), url: url.clone(), message };
        let mut file = File::create(tmp).map_err(io_err(tmp))?;
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        let mut written: u64 = 0;
        let mut tries = RESUME_TRIES;
        let mut buf = vec![0u8; 1 << 20];
        'request: loop {
            let mut request = agent.get(url).set("Accept-Encoding", "identity");
            if meta.send_token {
                request = self.authorize(request);
            }
            if written > 0 {
                request = request.set("Range", &format!("bytes={written}-"));
            }
            let response = match request.call() {
                Ok(r) => r,
                Err(ureq::Error::Status(status, r)) => {
                    let server = r.header("X-Error-Message").map(|m| format!(": {}", self.scrub(m))).unwrap_or_default();
                    return Err(http(format!("the download answered {status}{server}")));
                }
                Err(ureq::Error::Transport(_)) if written > 0 && tries > 0 => {
                    tries -= 1;
                    std::thread::sleep(Duration::from_millis(500));
                    continue 'request;
                }
                Err(ureq::Error::Transport(t)) => return Err(http(format!("download failed: {}", self.scrub(&t.to_string())))),
            };
            if written > 0 && response.status() != 206 {
                // the server ignored the Range: start over
                file.set_len(0).map_err(io_err(tmp))?;
                file.rewind().map_err(io_err(tmp))?;
                hasher = ring::digest::Context::new(&ring::digest::SHA256);
                written = 0;
            }
            let total = response
                .header("Content-Range")
                .and_then(|r| r.rsplit('/').next())
                .and_then(|t| t.trim().parse::<u64>().ok())
                .or_else(|| response.header("Content-Length").and_then(|l| l.trim().parse::<u64>().ok()).map(|l| l + written))
                .or(Some(meta.size));
            let mut reader = response.into_reader();
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break 'request,
                    Ok(n) => {
                        file.write_all(&buf[..n]).map_err(io_err(tmp))?;
                        hasher.update(&buf[..n]);
                        written += n as u64;
                        tries = RESUME_TRIES;
                        if let Some(progress) = opts.progress {
                            progress(written, total);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) if tries > 0 => {
                        tries -= 1;
                        std::thread::sleep(Duration::from_millis(500));
                        continue 'request;
                    }
                    Err(e) => return Err(http(format!("download failed after {written} bytes: {}", self.scrub(&e.to_string())))),
                }
            }
        }
        file.sync_all().map_err(io_err(tmp))?;
        drop(file);
        let corrupt = |message: String| HubError::Corrupt { reference: reference.to_string(), url: url.clone(), message };
        if written != meta.size {
            return Err(corrupt(format!("has {written} bytes, but the hub announced {}", meta.size)));
        }
        if let Some(expected) = &meta.sha256 {
            let got: String = hasher.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
            if &got != expected {
                return Err(corrupt(format!("has sha256 {got}, but the hub announced {expected} (X-Linked-Etag)")));
            }
        }
        Ok(())
    }
}

/// An exclusive lock on `path` held until dropped (flock, as Python's `filelock`); best effort:
/// a filesystem without locks downloads unlocked (the unique `.incomplete` keeps that correct).
fn lock(path: &Path) -> Option<File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
    file.lock().ok()?;
    Some(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    use super::*;
    use crate::models::hub::mock::{COMMIT, Cdn, TOKEN, config, hub, online, weights};

    /// Every entry under `root`, sorted: `path` for folders, `path = contents` for files,
    /// `path -> target` for symlinks.
    fn tree(root: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().to_string();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.file_type().is_symlink() {
                    out.push(format!("{rel} -> {}", std::fs::read_link(&path).unwrap().display()));
                } else if meta.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &path, out);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    let shown = if bytes.len() > 64 || rel.ends_with("CACHEDIR.TAG") {
                        format!("<{} bytes>", bytes.len())
                    } else {
                        format!("{:?}", String::from_utf8_lossy(&bytes))
                    };
                    out.push(format!("{rel} = {shown}"));
                }
            }
        }
        let mut out = vec![];
        walk(root, root, &mut out);
        out.sort();
        out
    }

    #[test]
    fn downloads_lay_out_the_cache_as_huggingface_hub_does() {
        let mut cross = weights();
        cross.body.reverse();
        cross.lfs = Some(Cdn::OtherHost);
        let mock = hub(&[("config.json", config()), ("model.safetensors", weights()), ("sub/w.safetensors", cross.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = online(dir.path(), &mock);

        let cfg = cache.file("o/r", "main", "config.json").unwrap();
        assert_eq!(cfg.commit, COMMIT);
        assert_eq!(std::fs::read(&cfg.path).unwrap(), config().body);
        let etag = config().git_sha1();
        let tag = "<191 bytes>";
        assert_eq!(
            tree(dir.path()),
            [
                ".locks/".to_string(),
                ".locks/models--o--r/".into(),
                format!(".locks/models--o--r/{etag}.lock = \"\""),
                format!("CACHEDIR.TAG = {tag}"),
                "models--o--r/".into(),
                "models--o--r/blobs/".into(),
                format!("models--o--r/blobs/{etag} = {:?}", String::from_utf8_lossy(&config().body)),
                "models--o--r/refs/".into(),
                format!("models--o--r/refs/main = \"{COMMIT}\""),
                "models--o--r/snapshots/".into(),
                format!("models--o--r/snapshots/{COMMIT}/"),
                format!("models--o--r/snapshots/{COMMIT}/config.json -> ../../blobs/{etag}"),
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("CACHEDIR.TAG")).unwrap(),
            "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by huggingface_hub.\n\
             # For information about cache directory tags, see:\n#\thttps://bford.info/cachedir/\n"
        );
        // a regular file: HEAD then GET of the resolve URL, both with the token
        let resolve = "/o/r/resolve/main/config.json";
        assert_eq!(mock.lines(), [format!("HEAD {resolve}"), format!("GET {resolve}")]);
        for r in mock.requests() {
            assert_eq!(r.header("Authorization"), Some(format!("Bearer {TOKEN}").as_str()));
            assert_eq!(r.header("Accept-Encoding"), Some("identity"));
        }

        // LFS on the same host: the blob is named by the sha256 and the token follows (as
        // huggingface_hub keeps it for a same-host location); refs/main is known now, so the file
        // is asked for at that commit
        let w = cache.file("o/r", "main", "model.safetensors").unwrap();
        assert_eq!(w.path, dir.path().join(format!("models--o--r/snapshots/{COMMIT}/model.safetensors")));
        assert_eq!(std::fs::read(&w.path).unwrap(), weights().body);
        let sha = weights().sha256();
        assert_eq!(std::fs::read_link(&w.path).unwrap(), PathBuf::from(format!("../../blobs/{sha}")));
        assert_eq!(std::fs::read(dir.path().join(format!("models--o--r/blobs/{sha}"))).unwrap(), weights().body);
        let lines = mock.lines();
        assert_eq!(lines[2..], [format!("HEAD /o/r/resolve/{COMMIT}/model.safetensors"), format!("GET /cdn/{sha}?X-Amz-Signature=abc")]);
        assert!(mock.requests()[3].header("Authorization").is_some());

        // LFS on another host (a CDN): no token; a nested path links three levels up
        let s = cache.file("o/r", "main", "sub/w.safetensors").unwrap();
        assert_eq!(std::fs::read(&s.path).unwrap(), cross.body);
        assert_eq!(std::fs::read_link(&s.path).unwrap(), PathBuf::from(format!("../../../blobs/{}", cross.sha256())));
        let requests = mock.requests();
        assert_eq!(requests[4].header("Authorization"), Some(format!("Bearer {TOKEN}").as_str()), "the HEAD goes to the hub");
        assert_eq!(requests[5].path, format!("/cdn/{}?X-Amz-Signature=abc", cross.sha256()));
        assert!(requests[5].header("Host").unwrap().starts_with("localhost:"));
        assert_eq!(requests[5].header("Authorization"), None, "the token never goes to another host");

        // blobs are files with the umask's mode, links are links
        let blob_meta = std::fs::metadata(dir.path().join(format!("models--o--r/blobs/{sha}"))).unwrap();
        assert!(blob_meta.is_file() && blob_meta.mode() & 0o600 == 0o600);
        let leftovers: Vec<String> = tree(dir.path()).into_iter().filter(|l| l.contains(".incomplete") || l.contains(".tmp")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // cached: no request at all, through file(), ensure() or a sha revision
        let before = mock.count();
        assert_eq!(cache.file("o/r", "main", "config.json").unwrap(), cfg);
        assert_eq!(cache.file("o/r", "main", "model.safetensors").unwrap(), w);
        assert_eq!(cache.download("o/r", COMMIT, "sub/w.safetensors", &DownloadOptions::default()).unwrap(), s);
        assert_eq!(mock.count(), before, "{:?}", &mock.lines()[before..]);

        // download() re-resolves a branch with one HEAD, and fetches nothing it has
        assert_eq!(cache.download("o/r", "main", "model.safetensors", &DownloadOptions::default()).unwrap(), w);
        assert_eq!(mock.lines()[before..], ["HEAD /o/r/resolve/main/model.safetensors"]);

        // force fetches again and ends with the same layout
        let layout = tree(dir.path());
        cache.download("o/r", "main", "config.json", &DownloadOptions { force: true, ..Default::default() }).unwrap();
        assert_eq!(tree(dir.path()), layout);
        assert_eq!(mock.count(), before + 3);
    }

    #[test]
    fn a_download_that_fails_its_check_keeps_nothing() {
        let mut bad_sha = weights();
        bad_sha.lie_sha256 = Some("f".repeat(64));
        let mut short = weights();
        short.body.truncate(1000);
        short.lie_size = Some(1200);
        let mock = hub(&[("bad.safetensors", bad_sha), ("short.safetensors", short)]);
        let dir = tempfile::tempdir().unwrap();
        let cache = online(dir.path(), &mock);

        let err = cache.file("o/r", "main", "bad.safetensors").unwrap_err();
        assert!(matches!(err, HubError::Corrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("hf://o/r@main/bad.safetensors: the download from http://127.0.0.1:"), "{text}");
        assert!(
            text.contains(&format!("has sha256 {}, but the hub announced {} (X-Linked-Etag)", weights().sha256(), "f".repeat(64))),
            "{text}"
        );
        assert!(text.ends_with("nothing was kept, run again to retry"), "{text}");

        let err = cache.file("o/r", "main", "short.safetensors").unwrap_err().to_string();
        assert!(err.contains("has 1000 bytes, but the hub announced 1200"), "{err}");

        let blobs = std::fs::read_dir(dir.path().join("models--o--r/blobs")).unwrap().count();
        assert_eq!(blobs, 0, "{:?}", tree(dir.path()));
        assert!(!dir.path().join(format!("models--o--r/snapshots/{COMMIT}/bad.safetensors")).exists());
        assert!(tree(dir.path()).iter().all(|l| !l.contains("incomplete")), "{:?}", tree(dir.path()));
    }

    #[test]
    fn a_dropped_download_resumes_with_a_range() {
        let mut big = weights();
        big.drop_after = Some(1234);
        let mock = hub(&[("big.bin", big.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = online(dir.path(), &mock);
        let seen = std::cell::RefCell::new(vec![]);
        let progress = |done: u64, total: Option<u64>| seen.borrow_mut().push((done, total));
        let opts = DownloadOptions { progress: Some(&progress), force: false };
        let f = cache.ensure("o/r", "main", "big.bin", &opts).unwrap();
        assert_eq!(std::fs::read(&f.path).unwrap(), big.body);
        let requests = mock.requests();
        assert_eq!(requests.len(), 3, "{:?}", mock.lines());
        assert_eq!(requests[1].header("Range"), None);
        assert_eq!(requests[2].header("Range"), Some("bytes=1234-"));
        let seen = seen.into_inner();
        assert_eq!(seen.first().unwrap().1, Some(3000));
        assert_eq!(*seen.last().unwrap(), (3000, Some(3000)));
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    }

    #[test]
    fn without_symlinks_the_snapshot_holds_the_file() {
        let mock = hub(&[("config.json", config()), ("model.safetensors", weights())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = online(dir.path(), &mock).with_symlinks(false);
        let f = cache.file("o/r", "main", "model.safetensors").unwrap();
        let meta = std::fs::symlink_metadata(&f.path).unwrap();
        assert!(meta.is_file(), "a file, not a link");
        assert_eq!(std::fs::read(&f.path).unwrap(), weights().body);
        // as huggingface_hub does, a new blob is moved into the snapshot
        assert!(!dir.path().join(format!("models--o--r/blobs/{}", weights().sha256())).exists());
        assert_eq!(cache.file("o/r", "main", "model.safetensors").unwrap(), f);
    }
}
