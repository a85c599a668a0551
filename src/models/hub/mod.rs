//! The Hugging Face hub cache, laid out as Python's `huggingface_hub` lays it out, so one cache
//! serves both (files fetched with `hf download` are found here, and files saeflow
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
//! This module holds the types ([`HubCache`], [`HubFile`], [`DownloadOptions`], [`HubError`]) and
//! the builder; the rest is one concept per file:
//!
//! - `cache.rs`: the layout above and the cache-first lookup ([`HubCache::file`],
//!   [`HubCache::ensure`], [`HubCache::cached`]);
//! - `download.rs`: [`HubCache::download`] (`hf_hub_download`): blob, check, rename, link, ref;
//! - `http.rs`: the requests (`HEAD` metadata, the hub's error answers, the token header);
//! - `env.rs`: [`HubCache::from_env`], the variables `huggingface_hub` reads;
//! - `names.rs`: repository ids, revisions and paths that cannot escape the cache;
//! - `mock.rs` (tests only): a fake hub on 127.0.0.1.
//!
//! The token is sent only as `Authorization: Bearer …`, only to the endpoint's host (not to a CDN
//! on another host), and never printed, logged, stored or put in an error: server text quoted in
//! errors is scrubbed of it. No proxy variables are read.

mod cache;
mod download;
mod env;
mod http;
#[cfg(test)]
pub(crate) mod mock;
mod names;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use names::check_repo;

/// `HF_ENDPOINT`'s default.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

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
         accept its conditions on its hub page with your account, then log in with `hf auth login` or set \
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
}
