//! The Hugging Face hub cache, laid out as Python's `huggingface_hub` lays it out, so one cache
//! serves both (files fetched with `huggingface-cli download` are found here, and files saeflow
//! fetches are found by transformers), and downloads into it as `hf_hub_download` does.
//!
//! ```text
//! <cache>/CACHEDIR.TAG
//! <cache>/.locks/models--<owner>--<name>/<etag>.lock          one download of a blob at a time
//! <cache>/models--<owner>--<name>/refs/<revision>             the commit sha (no newline)
//! <cache>/models--<owner>--<name>/blobs/<etag>                the bytes
//! <cache>/models--<owner>--<name>/snapshots/<commit>/<path>   relative symlink ../../blobs/<etag>
//! <cache>/models--<owner>--<name>/.no_exist/<commit>/<path>   empty: the hub said 404
//! ```
//!
//! `<cache>` is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
//! `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` — the order of
//! `huggingface_hub.constants`.
//!
//! **Lookup** ([`HubCache::file`], [`HubCache::ensure`]) is cache-first: a revision that `refs/`
//! resolves and a file under its snapshot are used without any request (a branch stays where the
//! cache last saw it; the resolved commit goes into cache keys). Anything missing is fetched at the
//! cached commit, or, for a revision not seen yet, at whatever the hub resolves it to.
//! [`HubCache::download`] is `hf_hub_download`: a branch or tag is re-resolved by a `HEAD` (a sha
//! with its file cached needs none), and a hub that cannot be reached falls back to the cache.
//!
//! A download: `HEAD {endpoint}/{repo}/resolve/{revision}/{path}`, following only relative
//! redirects (a renamed repository), gives the commit (`X-Repo-Commit`), the blob name
//! (`X-Linked-Etag` for LFS files — their sha256 — else `ETag`, unquoted), the size
//! (`X-Linked-Size`, else `Content-Length`) and, for LFS files, the CDN location the `GET` then
//! follows. The bytes go to `blobs/<etag>.<random>.incomplete` (resumed with `Range` after a
//! dropped connection), are checked (size; sha256 for LFS), and are renamed into place under the
//! lock; then the snapshot link and `refs/<revision>` are written. A failed check keeps nothing.
//!
//! The environment ([`HubCache::from_env`]): `HF_ENDPOINT` (default `https://huggingface.co`),
//! `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` (no request at all; a file not cached is an error
//! that says how to fetch it), `HF_TOKEN` / `HUGGING_FACE_HUB_TOKEN`, else the token file
//! (`HF_TOKEN_PATH`, else `$HF_HOME/token`; not with `HF_HUB_DISABLE_IMPLICIT_TOKEN`),
//! `HF_HUB_DISABLE_SYMLINKS` (the snapshot holds the file itself), `HF_HUB_ETAG_TIMEOUT` and
//! `HF_HUB_DOWNLOAD_TIMEOUT` (seconds, default 10). The token is sent only as
//! `Authorization: Bearer …`, only to the endpoint's host (not to a CDN on another host), and
//! never printed, logged, stored or put in an error: server text quoted in errors is scrubbed
//! of it. No proxy variables are read.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `HF_ENDPOINT`'s default.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How many times a dropped download is resumed without progress before giving up (as
/// `huggingface_hub`'s `http_get`).
const RESUME_TRIES: u32 = 5;

/// A hub token. Its `Debug` shows nothing of it; it leaves the process only in an
/// `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// Where the cache is, and whether and where to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
    /// Without a trailing `/`.
    endpoint: String,
    offline: bool,
    token: Option<Token>,
    symlinks: bool,
    etag_timeout: Duration,
    download_timeout: Duration,
}

/// A cached file of a repository at a resolved commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFile {
    pub path: PathBuf,
    /// The commit sha the revision resolved to (goes into cache keys).
    pub commit: String,
}

/// Options of one download.
#[derive(Clone, Copy, Default)]
pub struct DownloadOptions<'a> {
    /// Called as bytes arrive: (bytes written so far, total if known). Not called for a file
    /// already cached.
    pub progress: Option<&'a dyn Fn(u64, Option<u64>)>,
    /// Fetch again even if cached (`force_download`).
    pub force: bool,
}

/// What a 404 said was missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    Repo,
    Revision,
    /// The file (the repository and revision exist).
    Entry,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A repository id, revision or path that cannot name anything on the hub.
    #[error("hf://{reference}: {reason}")]
    BadName { reference: String, reason: String },
    /// Offline (`HF_HUB_OFFLINE`) and the revision or the file is not in the local cache.
    #[error(
        "hf://{reference}: not in the local Hugging Face cache ({missing}) and downloads are off (HF_HUB_OFFLINE is set): \
         unset HF_HUB_OFFLINE to let saeflow fetch it, or fetch it with `{fetch}` using the same HF_HOME/HF_HUB_CACHE, \
         or name a local folder"
    )]
    NotCached { reference: String, missing: String, fetch: String },
    /// The hub answered 404 (or the cache remembers that it did, for this commit).
    #[error("hf://{reference}: {message}")]
    NotFound { reference: String, missing: Missing, message: String },
    /// 401/403: gated, private, or a token without access.
    #[error(
        "hf://{reference}: access denied ({status} from {url}{server}): the repository may be gated or private; \
         accept its conditions on its hub page with your account, then log in with `huggingface-cli login` or set \
         HF_TOKEN; {token_note}"
    )]
    Denied { reference: String, status: u16, url: String, server: String, token_note: &'static str },
    /// Any other failure to talk to the hub: unreachable, 5xx, an answer that is not the hub's.
    #[error("hf://{reference}: {url}: {message}")]
    Http { reference: String, url: String, message: String },
    /// A download that does not match what the hub announced; nothing was kept.
    #[error("hf://{reference}: the download from {url} {message}; nothing was kept, run again to retry")]
    Corrupt { reference: String, url: String, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// No cache location can be derived from the environment.
    #[error("hugging face cache: none of HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME or HOME is set; set HF_HOME")]
    NoHome,
}

impl HubError {
    /// The hub (or the cache's memory of it) says the file does not exist at this revision.
    pub fn is_missing_file(&self) -> bool {
        matches!(self, HubError::NotFound { missing: Missing::Entry, .. })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io { path: path.to_path_buf(), source }
}

/// `huggingface_hub.constants._is_true`.
fn is_true(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

/// `huggingface_hub.utils._auth._clean_token`.
fn clean_token(token: &str) -> Option<Token> {
    let t = token.replace(['\r', '\n'], "");
    let t = t.trim();
    (!t.is_empty()).then(|| Token(t.to_string()))
}

impl HubCache {
    /// A cache at this folder (the one holding `models--…` folders), offline: lookups only, no
    /// request. [`HubCache::online`] turns downloads on.
    pub fn at(root: impl Into<PathBuf>) -> HubCache {
        HubCache {
            root: root.into(),
            endpoint: DEFAULT_ENDPOINT.into(),
            offline: true,
            token: None,
            symlinks: cfg!(unix),
            etag_timeout: Duration::from_secs(10),
            download_timeout: Duration::from_secs(10),
        }
    }

    /// Download what is missing from `endpoint` (`https://huggingface.co`, or a mirror).
    pub fn online(mut self, endpoint: &str) -> HubCache {
        self.endpoint = endpoint.trim_end_matches('/').to_string();
        self.offline = false;
        self
    }

    /// Send this token (as `Authorization: Bearer …`); `None` sends none.
    pub fn with_token(mut self, token: Option<&str>) -> HubCache {
        self.token = token.and_then(clean_token);
        self
    }

    /// Store files in snapshots as symlinks into `blobs/` (the default on unix), or as the files
    /// themselves (`HF_HUB_DISABLE_SYMLINKS`).
    pub fn with_symlinks(mut self, symlinks: bool) -> HubCache {
        self.symlinks = symlinks && cfg!(unix);
        self
    }

    /// The read timeouts: of the metadata `HEAD` and of each read of a download.
    pub fn with_timeouts(mut self, etag: Duration, download: Duration) -> HubCache {
        self.etag_timeout = etag;
        self.download_timeout = download;
        self
    }

    /// The cache, endpoint, token and switches Python's `huggingface_hub` would use in this
    /// environment.
    pub fn from_env() -> Result<HubCache, HubError> {
        HubCache::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`HubCache::from_env`] over any variable lookup (for tests). Reads the token file.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<HubCache, HubError> {
        let home = var("HOME");
        let expand = |p: String| -> PathBuf {
            match (p.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => Path::new(h).join(rest),
                _ => PathBuf::from(p),
            }
        };
        let hf_home = || -> Result<PathBuf, HubError> {
            Ok(match var("HF_HOME") {
                Some(p) => expand(p),
                None => match var("XDG_CACHE_HOME") {
                    Some(p) => expand(p).join("huggingface"),
                    None => Path::new(&home.clone().ok_or(HubError::NoHome)?).join(".cache").join("huggingface"),
                },
            })
        };
        let root = match var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
            Some(p) => expand(p),
            None => hf_home()?.join("hub"),
        };
        let mut cache = HubCache::at(root);
        cache.offline = is_true(var("HF_HUB_OFFLINE").or_else(|| var("TRANSFORMERS_OFFLINE")));
        cache.endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()).trim_end_matches('/').to_string();
        cache.symlinks = cfg!(unix) && !is_true(var("HF_HUB_DISABLE_SYMLINKS"));
        let seconds = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|&s| s > 0).map(Duration::from_secs);
        cache.etag_timeout = seconds("HF_HUB_ETAG_TIMEOUT").unwrap_or(cache.etag_timeout);
        cache.download_timeout = seconds("HF_HUB_DOWNLOAD_TIMEOUT").unwrap_or(cache.download_timeout);
        // `get_token`: the environment, then the token file `huggingface-cli login` writes.
        cache.token = match var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")) {
            Some(t) => clean_token(&t),
            None if is_true(var("HF_HUB_DISABLE_IMPLICIT_TOKEN")) => None,
            None => {
                let path = match var("HF_TOKEN_PATH") {
                    Some(p) => Some(expand(p)),
                    None => hf_home().ok().map(|h| h.join("token")),
                };
                path.and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| clean_token(&t))
            }
        };
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this cache may make requests.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether a token will be sent (never the token itself).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
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

    fn pointer(&self, repo: &str, commit: &str, path: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit).join(path)
    }

    fn no_exist(&self, repo: &str, commit: &str, path: &str) -> PathBuf {
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

    /// `{endpoint}/{repo}/resolve/{revision}/{path}`, quoted as `hf_hub_url` quotes.
    fn resolve_url(&self, repo: &str, revision: &str, path: &str) -> String {
        format!("{}/{repo}/resolve/{}/{}", self.endpoint, quote(revision, false), quote(path, true))
    }

    fn agent(&self, redirects: u32, read_timeout: Duration) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .redirects(redirects)
            // like httpx: the token follows a redirect only to the same host
            .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(read_timeout)
            .user_agent(concat!("saeflow/", env!("CARGO_PKG_VERSION"), "; hf_hub-compatible"))
            .build()
    }

    fn authorize(&self, request: ureq::Request) -> ureq::Request {
        match &self.token {
            Some(Token(t)) => request.set("Authorization", &format!("Bearer {t}")),
            None => request,
        }
    }

    /// Server text, the token cut out (a server may echo what it was sent).
    fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(Token(t)) => text.replace(t.as_str(), "<token>"),
            None => text.to_string(),
        }
    }

    /// `get_hf_file_metadata`: `HEAD` the resolve URL, following relative redirects only.
    fn head(&self, repo: &str, revision: &str, path: &str) -> Result<Meta, HubError> {
        let reference = reference(repo, revision, path);
        let agent = self.agent(0, self.etag_timeout);
        let first_url = self.resolve_url(repo, revision, path);
        let mut url = first_url.clone();
        let mut hops = 0;
        let response = loop {
            let request = self.authorize(agent.head(&url)).set("Accept-Encoding", "identity");
            let response = match request.call() {
                Ok(r) => r,
                Err(ureq::Error::Status(status, r)) => return Err(self.status_error(repo, revision, path, &url, status, &r)),
                Err(ureq::Error::Transport(t)) => {
                    return Err(HubError::Http {
                        reference,
                        url,
                        message: format!(
                            "cannot reach the hub ({}); check the connection and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the local cache",
                            self.scrub(&t.to_string())
                        ),
                    });
                }
            };
            if (300..400).contains(&response.status())
                && let Some(location) = response.header("Location")
                && !location.contains("://")
                && !location.starts_with("//")
                && hops < 10
            {
                // a renamed repository: same host, new path
                let target = location.split(['?', '#']).next().unwrap_or("");
                url = format!("{}/{}", origin(&url), target.trim_start_matches('/'));
                hops += 1;
                continue;
            }
            break response;
        };
        let bad = |what: &str| HubError::Http {
            reference: reference.clone(),
            url: url.clone(),
            message: format!("{what}: this does not look like the Hugging Face hub; check HF_ENDPOINT ({}) and any proxy", self.endpoint),
        };
        let commit = response.header("X-Repo-Commit").map(str::trim).ok_or_else(|| bad("no X-Repo-Commit header"))?;
        if !is_commit_sha(commit) {
            return Err(bad(&format!("X-Repo-Commit {:?} is not a commit sha", self.scrub(commit))));
        }
        let linked = response.header("X-Linked-Etag");
        let etag = linked.or_else(|| response.header("ETag")).map(normalize_etag).ok_or_else(|| bad("no ETag header"))?;
        if etag.is_empty() || etag.starts_with('.') || etag.contains(['/', '\\']) {
            return Err(bad(&format!("ETag {:?} cannot name a blob", self.scrub(&etag))));
        }
        let redirect = (300..400).contains(&response.status());
        let size = response
            .header("X-Linked-Size")
            .or(if redirect { None } else { response.header("Content-Length") })
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| bad("no size (X-Linked-Size or Content-Length)"))?;
        let location = match response.header("Location") {
            Some(l) if l.contains("://") => l.to_string(),
            _ => url.clone(),
        };
        // a CDN on another host gets a signed URL, never the token
        let send_token = netloc(&location) == netloc(&first_url);
        let sha256 =
            (linked.is_some() && etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit())).then(|| etag.to_ascii_lowercase());
        Ok(Meta { commit: commit.to_string(), etag, size, location, send_token, sha256 })
    }

    /// The error for a `>= 400` answer (`hf_raise_for_status`); a 404 with `X-Repo-Commit` is
    /// remembered in `.no_exist/` like `huggingface_hub` does.
    fn status_error(&self, repo: &str, revision: &str, path: &str, url: &str, status: u16, response: &ureq::Response) -> HubError {
        let reference = reference(repo, revision, path);
        let code = response.header("X-Error-Code").unwrap_or("");
        let server = response.header("X-Error-Message").map(|m| format!(": {}", self.scrub(m))).unwrap_or_default();
        let url = url.to_string();
        match status {
            401 | 403 => HubError::Denied {
                reference,
                status,
                url,
                server,
                token_note: if self.token.is_some() {
                    "a token was sent: check that it has access to this repository"
                } else {
                    "no token was sent"
                },
            },
            404 => {
                let (missing, message) = match code {
                    "RepoNotFound" => (
                        Missing::Repo,
                        format!(
                            "repository '{repo}' not found ({status} from {url}{server}); check the id (owner/name), or if it is \
                             private, log in with `huggingface-cli login` or set HF_TOKEN"
                        ),
                    ),
                    "RevisionNotFound" => (
                        Missing::Revision,
                        format!("revision '{revision}' not found in {repo} ({status} from {url}{server}); check the branch, tag or commit"),
                    ),
                    _ => (
                        Missing::Entry,
                        format!("file '{path}' not found in {repo} at revision {revision} ({status} from {url}{server}); check the path"),
                    ),
                };
                if missing == Missing::Entry
                    && let Some(commit) = response.header("X-Repo-Commit").map(str::trim).filter(|c| is_commit_sha(c))
                {
                    let marker = self.no_exist(repo, commit, path);
                    if let Some(dir) = marker.parent()
                        && std::fs::create_dir_all(dir).is_ok()
                    {
                        let _ = std::fs::OpenOptions::new().create(true).append(true).open(&marker);
                    }
                    let _ = self.write_ref(repo, revision, commit);
                }
                HubError::NotFound { reference, missing, message }
            }
            _ => HubError::Http { reference, url, message: format!("the hub answered {status}{server}") },
        }
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

    /// `snapshots/<commit>/<path>` → `../../blobs/<etag>` (relative, like `_create_symlink`), or
    /// without symlinks the file itself (a new blob is moved, a shared one copied).
    fn link(&self, blob: &Path, pointer: &Path, path: &str, etag: &str, new_blob: bool) -> Result<(), HubError> {
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
    fn write_ref(&self, repo: &str, revision: &str, commit: &str) -> Result<(), HubError> {
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
    fn write_cachedir_tag(&self) {
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

    fn not_cached(&self, repo: &str, revision: &str, path: &str, missing: &str) -> HubError {
        let folder = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        let include = if folder.is_empty() { String::new() } else { format!(" --include '{folder}/*'") };
        HubError::NotCached {
            reference: reference(repo, revision, path),
            missing: format!("no {missing} under {}", self.repo_dir(repo).display()),
            fetch: format!("huggingface-cli download {repo} --revision {revision}{include}"),
        }
    }
}

/// What a `HEAD` said about a file.
#[derive(Debug)]
struct Meta {
    commit: String,
    etag: String,
    size: u64,
    /// Where to `GET` it (the CDN for LFS files).
    location: String,
    /// Whether `location` is on the endpoint's host.
    send_token: bool,
    /// The announced sha256, for LFS files.
    sha256: Option<String>,
}

/// How errors name a file: `owner/name@revision[/path]`.
fn reference(repo: &str, revision: &str, path: &str) -> String {
    if path.is_empty() { format!("{repo}@{revision}") } else { format!("{repo}@{revision}/{path}") }
}

/// `_normalize_etag`: `W/"x"` or `"x"` → `x`.
fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_start_matches(['W', '/']).trim_matches('"').to_string()
}

/// `urllib.parse.quote`: keep letters, digits, `_.-~` (and `/` in paths), percent-encode the rest.
fn quote(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// `host[:port]` of a URL (`urlparse(url).netloc`).
fn netloc(url: &str) -> &str {
    let o = origin(url);
    o.find("://").map(|i| &o[i + 3..]).unwrap_or(o)
}

/// Eight hex digits, different for each call in this process and across processes.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:08x}", (x ^ (x >> 31)) as u32)
}

/// An exclusive lock on `path` held until dropped (flock, as Python's `filelock`); best effort:
/// a filesystem without locks downloads unlocked (the unique `.incomplete` keeps that correct).
fn lock(path: &Path) -> Option<File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
    file.lock().ok()?;
    Some(file)
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

/// A relative path without `.` or `..` segments, empty segments or a leading `/`.
fn check_relative(path: &str, reference: &str, what: &str) -> Result<(), HubError> {
    let bad =
        path.is_empty() || path.starts_with('/') || path.contains('\\') || path.split('/').any(|s| s.is_empty() || s == ".." || s == ".");
    if bad {
        return Err(HubError::BadName {
            reference: reference.into(),
            reason: format!("{what} {path:?} must be a relative path without '.', '..' or empty segments"),
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

    // ---- downloads, against the fake hub in `super::super::hub_mock` ----

    use std::os::unix::fs::MetadataExt;

    use crate::models::hub_mock::{Cdn, FakeFile, FakeHub, FakeRepo, MockHub};

    const COMMIT: &str = "aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd";
    const TOKEN: &str = "hf_SeCrEtToKeN0123456789";

    fn config() -> FakeFile {
        FakeFile::regular(b"{\"model_type\": \"llava\"}\n")
    }

    fn weights() -> FakeFile {
        FakeFile::lfs(&(0u8..=255).cycle().take(3000).collect::<Vec<u8>>(), Cdn::SameHost)
    }

    fn hub(files: &[(&str, FakeFile)]) -> MockHub {
        let mut hub = FakeHub::default();
        hub.repos.insert("o/r".into(), FakeRepo::new(COMMIT, files));
        let mut gated = FakeRepo::new(COMMIT, &[("config.json", config())]);
        gated.gated = true;
        hub.repos.insert("g/gated".into(), gated);
        hub.renamed.insert("old/r".into(), "o/r".into());
        MockHub::start(hub)
    }

    fn online(dir: &Path, mock: &MockHub) -> HubCache {
        HubCache::at(dir).online(&format!("{}/", mock.base)).with_token(Some(TOKEN))
    }

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
    fn missing_files_revisions_and_repos_are_named_and_remembered() {
        let mock = hub(&[("config.json", config())]);
        let dir = tempfile::tempdir().unwrap();
        let cache = online(dir.path(), &mock);

        let err = cache.file("o/r", "main", "tokenizer_config.json").unwrap_err();
        assert!(err.is_missing_file());
        let text = err.to_string();
        assert!(
            text.starts_with("hf://o/r@main/tokenizer_config.json: file 'tokenizer_config.json' not found in o/r at revision main (404 from http://127.0.0.1:"),
            "{text}"
        );
        assert!(text.ends_with("/o/r/resolve/main/tokenizer_config.json: Entry not found); check the path"), "{text}");
        // remembered as huggingface_hub remembers it, with the ref
        assert_eq!(std::fs::read(dir.path().join(format!("models--o--r/.no_exist/{COMMIT}/tokenizer_config.json"))).unwrap(), b"");
        assert_eq!(std::fs::read_to_string(dir.path().join("models--o--r/refs/main")).unwrap(), COMMIT);
        let n = mock.count();
        assert!(cache.file("o/r", "main", "tokenizer_config.json").unwrap_err().is_missing_file());
        assert_eq!(mock.count(), n, "a remembered 404 makes no request");

        let err = cache.file("o/r", "v9", "config.json").unwrap_err();
        assert!(matches!(err, HubError::NotFound { missing: Missing::Revision, .. }));
        assert!(err.to_string().starts_with("hf://o/r@v9/config.json: revision 'v9' not found in o/r (404 from "), "{err}");
        let err = cache.file("no/such", "main", "config.json").unwrap_err();
        assert!(matches!(err, HubError::NotFound { missing: Missing::Repo, .. }));
        assert!(err.to_string().starts_with("hf://no/such@main/config.json: repository 'no/such' not found (404 from "), "{err}");
        assert!(!err.is_missing_file());
        assert!(!dir.path().join("models--no--such").exists(), "nothing is written for a repository that does not exist");

        // revisions are quoted like hf_hub_url quotes them
        let _ = cache.file("o/r", "refs/pr/1", "config.json");
        assert_eq!(mock.lines().last().unwrap(), "HEAD /o/r/resolve/refs%2Fpr%2F1/config.json");

        // a renamed repository: the hub's relative redirect is followed, the files land under the
        // name asked for
        let f = cache.file("old/r", "main", "config.json").unwrap();
        assert_eq!(f.path, dir.path().join(format!("models--old--r/snapshots/{COMMIT}/config.json")));
        assert_eq!(std::fs::read(&f.path).unwrap(), config().body);
        let lines = mock.lines();
        assert_eq!(
            lines[lines.len() - 3..],
            ["HEAD /old/r/resolve/main/config.json", "HEAD /o/r/resolve/main/config.json", "GET /o/r/resolve/main/config.json"]
        );
    }

    #[test]
    fn a_gated_repo_says_how_to_log_in_and_never_shows_the_token() {
        let mock = hub(&[]);
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let endpoint = mock.base.clone();
        let hf_home = dir.path().to_string_lossy().to_string();
        let cache = HubCache::from_vars(vars(&[("HF_HOME", &hf_home), ("HF_ENDPOINT", &endpoint)])).unwrap();
        assert!(cache.has_token(), "the token file of `huggingface-cli login`");

        let err = cache.file("g/gated", "main", "config.json").unwrap_err();
        assert_eq!(mock.requests()[0].header("Authorization"), Some(format!("Bearer {TOKEN}").as_str()));
        let (display, debug) = (err.to_string(), format!("{err:?}"));
        assert!(matches!(err, HubError::Denied { status: 401, .. }), "{debug}");
        for text in [&display, &debug] {
            assert!(!text.contains(TOKEN), "the token leaked: {text}");
            assert!(!text.contains("SeCrEt"), "part of the token leaked: {text}");
        }
        assert!(display.starts_with("hf://g/gated@main/config.json: access denied (401 from http://127.0.0.1:"), "{display}");
        assert!(display.contains("Access to model g/gated is restricted"), "the hub's message is kept: {display}");
        assert!(display.contains("You sent Bearer <token>"), "the hub's echo of the token is cut out: {display}");
        assert!(display.contains("may be gated or private"), "{display}");
        assert!(display.contains("`huggingface-cli login` or set HF_TOKEN"), "{display}");
        assert!(display.ends_with("a token was sent: check that it has access to this repository"), "{display}");
        assert!(!format!("{cache:?}").contains(TOKEN), "{cache:?}");

        // the other failures do not carry it either: unreachable, corrupt, not found
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let dead = HubCache::at(dir.path()).online(&format!("http://{closed}")).with_token(Some(TOKEN));
        let err = dead.file("o/r", "main", "config.json").unwrap_err();
        assert!(matches!(err, HubError::Http { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot reach the hub"), "{err}");
        assert!(!err.to_string().contains(TOKEN) && !format!("{err:?}").contains(TOKEN));

        let anonymous = HubCache::at(dir.path()).online(&mock.base);
        let err = anonymous.file("g/gated", "main", "config.json").unwrap_err().to_string();
        assert!(err.ends_with("no token was sent"), "{err}");
        assert_eq!(mock.requests().last().unwrap().header("Authorization"), None);
        assert!(err.contains("You sent nothing"), "{err}");
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
            assert!(err.contains("huggingface-cli download o/r --revision main"), "{err}");
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

    #[test]
    fn the_environment_sets_endpoint_token_and_switches() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_string_lossy().to_string();
        std::fs::create_dir_all(dir.path().join(".cache/huggingface")).unwrap();
        std::fs::write(dir.path().join(".cache/huggingface/token"), "  from-file\r\n").unwrap();
        std::fs::write(dir.path().join("other-token"), "from-path").unwrap();
        let token = |pairs: &[(&str, &str)]| {
            let mut all = vec![("HOME", home.as_str())];
            all.extend_from_slice(pairs);
            HubCache::from_vars(vars(&all)).unwrap().token.map(|t| t.0)
        };
        assert_eq!(token(&[]).as_deref(), Some("from-file"));
        assert_eq!(token(&[("HF_TOKEN", "hf_env")]).as_deref(), Some("hf_env"));
        assert_eq!(token(&[("HUGGING_FACE_HUB_TOKEN", "old_env")]).as_deref(), Some("old_env"));
        assert_eq!(token(&[("HF_TOKEN_PATH", "~/other-token")]).as_deref(), Some("from-path"));
        assert_eq!(token(&[("HF_HOME", "/nowhere")]), None);
        assert_eq!(token(&[("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")]), None);
        assert_eq!(token(&[("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1"), ("HF_TOKEN", "hf_env")]).as_deref(), Some("hf_env"));

        let cache = HubCache::from_vars(vars(&[("HOME", &home)])).unwrap();
        assert_eq!((cache.endpoint(), cache.is_offline(), cache.symlinks), (DEFAULT_ENDPOINT, false, true));
        let cache = HubCache::from_vars(vars(&[
            ("HOME", &home),
            ("HF_ENDPOINT", "https://mirror.example/hf/"),
            ("HF_HUB_DISABLE_SYMLINKS", "1"),
            ("HF_HUB_ETAG_TIMEOUT", "3"),
            ("HF_HUB_DOWNLOAD_TIMEOUT", "60"),
        ]))
        .unwrap();
        assert_eq!(cache.endpoint(), "https://mirror.example/hf");
        assert_eq!(cache.resolve_url("o/r", "main", "a b/c.json"), "https://mirror.example/hf/o/r/resolve/main/a%20b/c.json");
        assert!(!cache.symlinks);
        assert_eq!((cache.etag_timeout, cache.download_timeout), (Duration::from_secs(3), Duration::from_secs(60)));
        assert!(HubCache::at("/x").is_offline(), "at() never makes requests");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(netloc("http://a.b:8/x/y?z"), "a.b:8");
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
