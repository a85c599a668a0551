//! Feature explanations from Neuronpedia's live API, `GET {endpoint}/api/feature/{modelId}/{source}/{index}`,
//! for exactly the features a stage asks about, kept in an on-disk cache under the project's cache
//! folder: `<cache>/neuronpedia/{modelId}/{source}/{index}.json`.
//!
//! - **The answer.** The feature's JSON carries an `explanations` array of objects with a
//!   `description` (and `typeName`, `explanationModelName`, …; activations and the rest are not
//!   kept). Several explanations: [`pick`] — the alphabetically first non-blank description, as
//!   the bulk-export reader chooses. An empty array is an answer: the feature has no explanation.
//! - **The cache pins answers.** A cached feature is never requested again, so a second run and an
//!   offline run read the same text. Only well-formed answers are cached (written to a temporary
//!   file in the same folder, fsynced, renamed: never a partial file); a 404, a rate limit, a
//!   timeout or a malformed body leaves nothing, and the feature is asked again next time.
//!   Refetch by deleting `<cache>/neuronpedia/{modelId}/{source}/` (or one file).
//! - **Failures are per feature.** Each missing explanation has a [`Missing`] reason; the caller
//!   turns [`Fetched::summary`] into one warning line. 429 and 5xx are retried (at most
//!   [`ATTEMPTS`] tries, waiting `Retry-After` seconds, capped, or 1, 2, 4 s); after
//!   [`GIVE_UP_AFTER`] features in a row fail on the network or stay rate-limited, the remaining
//!   features are not requested (a dead network or a spent quota costs seconds, not hours).
//! - **The environment.** `NEURONPEDIA_ENDPOINT` (default `https://www.neuronpedia.org`, must be
//!   http or https), `NEURONPEDIA_API_KEY` (optional, sent as `x-api-key` to the endpoint's origin
//!   only; never printed, logged, cached or part of any key), `SAEFLOW_OFFLINE` or `HF_HUB_OFFLINE`
//!   (cache only: no request at all). The endpoint and the key are not part of the cache path: a
//!   mirror serves the same features.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::neuronpedia::pick;
use crate::progress::Progress;

/// `NEURONPEDIA_ENDPOINT`'s default.
pub const DEFAULT_ENDPOINT: &str = "https://www.neuronpedia.org";
/// Tries per feature when the server answers 429 or 5xx.
pub const ATTEMPTS: u32 = 4;
/// Features in a row that failed on the network (timeouts, refused connections) or stayed
/// rate-limited, after which no more requests are made.
pub const GIVE_UP_AFTER: u32 = 3;
/// The longest wait a `Retry-After` may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The largest answer read (a feature's JSON with its activations is a few MB).
const MAX_BODY: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "neuronpedia endpoint '{0}' (NEURONPEDIA_ENDPOINT) is not an http:// or https:// URL with a host; \
         set it to e.g. {DEFAULT_ENDPOINT}, or unset it"
    )]
    Endpoint(String),
    #[error("neuronpedia source '{0}': {1}")]
    Source(String, String),
}

/// Why a feature's explanation is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Missing {
    /// The answer lists no explanation (cached: it is an answer).
    NonePublished,
    /// 404: Neuronpedia has no such feature (or source).
    NotFound,
    /// 429 on every try.
    RateLimited,
    /// Another HTTP status (5xx after every try).
    Status(u16),
    TimedOut,
    /// The connection failed or broke.
    Network,
    /// The body is not the API's JSON (no `explanations` array, or another feature's).
    Malformed,
    /// Offline and not in the cache.
    NotCached,
    /// Not requested: too many failed features in a row before it.
    GaveUp,
}

impl Missing {
    /// Whether asking again later may help (nothing was cached for it).
    pub fn transient(self) -> bool {
        !matches!(self, Missing::NonePublished | Missing::NotFound | Missing::NotCached)
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::NonePublished => write!(f, "none published"),
            Missing::NotFound => write!(f, "not found (404)"),
            Missing::RateLimited => write!(f, "rate-limited (429) {ATTEMPTS} times"),
            Missing::Status(s) => write!(f, "HTTP {s}"),
            Missing::TimedOut => write!(f, "timed out"),
            Missing::Network => write!(f, "network error"),
            Missing::Malformed => write!(f, "malformed answer"),
            Missing::NotCached => write!(f, "not in the cache (offline)"),
            Missing::GaveUp => write!(f, "not requested after {GIVE_UP_AFTER} failures in a row"),
        }
    }
}

/// What [`Client::explanations`] found.
#[derive(Debug, Default)]
pub struct Fetched {
    pub by_feature: BTreeMap<u32, String>,
    /// Reason → how many features.
    pub missing: BTreeMap<Missing, u32>,
    /// Features read from the disk cache, and requests made (retries included).
    pub cached: u32,
    pub requests: u32,
    /// Answers that could not be written to the cache (they are used all the same), and the first error.
    pub unsaved: u32,
    pub unsaved_error: Option<String>,
}

impl Fetched {
    /// One line saying how many of `asked` explanations are missing and why (`None`: none missing
    /// and every answer cached).
    pub fn summary(&self, asked: usize) -> Option<String> {
        let n: u32 = self.missing.values().sum();
        let mut parts = Vec::new();
        if n > 0 {
            let why: Vec<String> = self.missing.iter().map(|(r, c)| format!("{c} {r}")).collect();
            let mut s = format!("{n} of {asked} neuronpedia explanations missing: {}", why.join(", "));
            if self.missing.keys().any(|r| r.transient()) {
                s += "; nothing was cached for those, rerun with --force on this instance to ask again";
            } else if self.missing.contains_key(&Missing::NotCached) {
                s += "; run once online to fill the cache";
            }
            parts.push(s);
        }
        if self.unsaved > 0 {
            parts.push(format!(
                "{} answers could not be cached ({}); they were used, and will be asked again next time",
                self.unsaved,
                self.unsaved_error.as_deref().unwrap_or("unknown error")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The API key: never shown, not even by `Debug`.
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

/// A Neuronpedia client over an on-disk cache.
#[derive(Debug)]
pub struct Client {
    endpoint: String,
    key: Option<ApiKey>,
    offline: bool,
    /// `<cache>/neuronpedia`
    dir: PathBuf,
    connect_timeout: Duration,
    read_timeout: Duration,
}

/// The cache file: the kept part of an answer.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    #[serde(rename = "modelId")]
    model_id: String,
    source: String,
    index: u32,
    explanations: Vec<Explanation>,
}

/// One explanation as the API lists it (other fields are dropped).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Explanation {
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "typeName", default, skip_serializing_if = "Option::is_none")]
    type_name: Option<String>,
    #[serde(rename = "explanationModelName", default, skip_serializing_if = "Option::is_none")]
    explanation_model_name: Option<String>,
}

/// The part of `GET /api/feature/…`'s answer read.
#[derive(Deserialize)]
struct Answer {
    explanations: Vec<Explanation>,
    #[serde(default)]
    index: Option<serde_json::Value>,
}

fn is_true(v: Option<String>) -> bool {
    v.is_some_and(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

/// `modelId` or source as one path component and URL segment: letters, digits, `.`, `_`, `-`,
/// not `.` or `..` (the text comes from a pipeline file and becomes a cache folder).
pub fn check_component(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s == "." || s == ".." || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!(
            "{what} '{s}' must be letters, digits, '.', '_' or '-' (it names a cache folder and a URL segment), e.g. gemma-2b/6-res-jb"
        ));
    }
    Ok(())
}

/// `modelId/source` → the two parts, checked with [`check_component`].
pub fn parse_source(id: &str) -> Result<(&str, &str), ApiError> {
    let (m, s) = super::neuronpedia::split_source(id).map_err(|e| ApiError::Source(id.into(), e))?;
    check_component("modelId", m).and_then(|()| check_component("source", s)).map_err(|e| ApiError::Source(id.into(), e))?;
    Ok((m, s))
}

/// `http(s)://host[:port][/prefix]` without a trailing slash, or an error.
fn check_endpoint(e: &str) -> Result<String, ApiError> {
    let e = e.trim().trim_end_matches('/');
    let rest = e.strip_prefix("https://").or_else(|| e.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(['?', '#', ' ', '@']) => Ok(e.to_string()),
        _ => Err(ApiError::Endpoint(e.to_string())),
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(j) => &url[..after + j],
        None => url,
    }
}

/// What one feature's request came to.
enum Outcome {
    Answer(Vec<Explanation>),
    Missing(Missing),
}

impl Client {
    /// From the process environment; the cache lives under `cache_root/neuronpedia`.
    pub fn from_env(cache_root: &Path) -> Result<Client, ApiError> {
        Client::from_vars(cache_root, |k| std::env::var(k).ok())
    }

    /// From given variables (tests).
    pub fn from_vars(cache_root: &Path, var: impl Fn(&str) -> Option<String>) -> Result<Client, ApiError> {
        let endpoint = check_endpoint(&var("NEURONPEDIA_ENDPOINT").filter(|v| !v.trim().is_empty()).unwrap_or(DEFAULT_ENDPOINT.into()))?;
        let key = var("NEURONPEDIA_API_KEY").map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).map(ApiKey);
        Ok(Client {
            endpoint,
            key,
            offline: is_true(var("SAEFLOW_OFFLINE")) || is_true(var("HF_HUB_OFFLINE")),
            dir: cache_root.join("neuronpedia"),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        })
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Where one feature's answer is cached.
    pub fn cache_file(&self, model: &str, source: &str, index: u32) -> PathBuf {
        self.dir.join(model).join(source).join(format!("{index}.json"))
    }

    /// The explanation of each of `features` of `modelId/source`: from the cache, else (online)
    /// from the API, one request per feature in index order.
    pub fn explanations(&self, source_id: &str, features: &BTreeSet<u32>, progress: &dyn Progress) -> Result<Fetched, ApiError> {
        let (model, source) = parse_source(source_id)?;
        let mut out = Fetched::default();
        progress.add_total(features.len() as u64, "explanations");
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(self.connect_timeout)
            .timeout_read(self.read_timeout)
            .timeout_write(self.read_timeout)
            .user_agent(concat!("saeflow/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut failures_in_a_row = 0;
        for &index in features {
            let path = self.cache_file(model, source, index);
            let outcome = match read_cache(&path, model, source, index) {
                Some(expl) => {
                    out.cached += 1;
                    Outcome::Answer(expl)
                }
                None if self.offline => Outcome::Missing(Missing::NotCached),
                None if failures_in_a_row >= GIVE_UP_AFTER => Outcome::Missing(Missing::GaveUp),
                None => {
                    let o = self.request(&agent, model, source, index, &mut out.requests);
                    match &o {
                        Outcome::Missing(Missing::TimedOut | Missing::Network | Missing::RateLimited) => failures_in_a_row += 1,
                        _ => failures_in_a_row = 0,
                    }
                    if let Outcome::Answer(expl) = &o {
                        let file = CacheFile { model_id: model.into(), source: source.into(), index, explanations: expl.clone() };
                        if let Err(e) = write_atomic(&path, &file) {
                            out.unsaved += 1;
                            out.unsaved_error.get_or_insert_with(|| format!("{}: {e}", path.display()));
                        }
                    }
                    o
                }
            };
            match outcome {
                Outcome::Answer(expl) => match pick(expl.iter().filter_map(|e| e.description.as_deref())) {
                    Some(d) => {
                        out.by_feature.insert(index, d);
                    }
                    None => *out.missing.entry(Missing::NonePublished).or_default() += 1,
                },
                Outcome::Missing(r) => *out.missing.entry(r).or_default() += 1,
            }
            progress.advance(1);
        }
        Ok(out)
    }

    /// One feature from the API: retries 429/5xx, follows redirects (the key only to the
    /// endpoint's origin), reads and checks the body. Every failure is a [`Missing`].
    fn request(&self, agent: &ureq::Agent, model: &str, source: &str, index: u32, requests: &mut u32) -> Outcome {
        let first = format!("{}/api/feature/{model}/{source}/{index}", self.endpoint);
        let home = origin(&self.endpoint).to_string();
        let mut last = Missing::Network;
        for attempt in 0..ATTEMPTS {
            let mut url = first.clone();
            let mut hops = 0;
            let result = loop {
                *requests += 1;
                let mut req = agent.get(&url).set("Accept", "application/json");
                if let Some(ApiKey(k)) = &self.key
                    && origin(&url) == home
                {
                    req = req.set("x-api-key", k);
                }
                match req.call() {
                    Ok(resp) if (300..400).contains(&resp.status()) => match resp.header("location") {
                        Some(loc) if hops < 5 => {
                            hops += 1;
                            url = if loc.starts_with("http://") || loc.starts_with("https://") {
                                loc.to_string()
                            } else if loc.starts_with('/') {
                                format!("{}{loc}", origin(&url))
                            } else {
                                break Err((Missing::Status(resp.status()), None));
                            };
                        }
                        _ => break Err((Missing::Status(resp.status()), None)),
                    },
                    Ok(resp) => break Ok(resp),
                    Err(ureq::Error::Status(code, resp)) => {
                        let wait = resp.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
                        let reason = match code {
                            404 | 410 => Missing::NotFound,
                            429 => Missing::RateLimited,
                            c => Missing::Status(c),
                        };
                        break Err((reason, wait));
                    }
                    Err(ureq::Error::Transport(t)) => break Err((transport(&t), None)),
                }
            };
            match result {
                Ok(resp) => {
                    let mut body = Vec::new();
                    return match resp.into_reader().take(MAX_BODY + 1).read_to_end(&mut body) {
                        Err(e) => Outcome::Missing(io_reason(&e)),
                        Ok(_) if body.len() as u64 > MAX_BODY => Outcome::Missing(Missing::Malformed),
                        Ok(_) => match parse_answer(&body, index) {
                            Some(expl) => Outcome::Answer(self.scrub(expl)),
                            None => Outcome::Missing(Missing::Malformed),
                        },
                    };
                }
                Err((reason, wait)) => {
                    let retry = matches!(reason, Missing::RateLimited) || matches!(reason, Missing::Status(c) if c >= 500);
                    if !retry {
                        return Outcome::Missing(reason);
                    }
                    last = reason;
                    if attempt + 1 < ATTEMPTS {
                        std::thread::sleep(wait.unwrap_or(Duration::from_secs(1 << attempt)).min(MAX_WAIT));
                    }
                }
            }
        }
        Outcome::Missing(last)
    }

    /// A server that echoes the key into a description does not get it into the cache or a table.
    fn scrub(&self, mut expl: Vec<Explanation>) -> Vec<Explanation> {
        if let Some(ApiKey(k)) = &self.key {
            for e in &mut expl {
                for f in [&mut e.description, &mut e.type_name, &mut e.explanation_model_name].into_iter().flatten() {
                    if f.contains(k.as_str()) {
                        *f = f.replace(k.as_str(), "<api key>");
                    }
                }
            }
        }
        expl
    }
}

/// A feature's answer: its explanations, or `None` when the body is not the API's JSON for it.
fn parse_answer(body: &[u8], index: u32) -> Option<Vec<Explanation>> {
    let a: Answer = serde_json::from_slice(body).ok()?;
    let same = match &a.index {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::String(s)) => s.trim().parse::<u32>().ok() == Some(index),
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(index as u64),
        Some(_) => false,
    };
    same.then_some(a.explanations)
}

fn io_reason(e: &std::io::Error) -> Missing {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Missing::TimedOut,
        _ => Missing::Network,
    }
}

fn transport(t: &ureq::Transport) -> Missing {
    let mut source = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        source = e.source();
    }
    if t.to_string().contains("timed out") { Missing::TimedOut } else { Missing::Network }
}

/// A cached answer, if the file is there and is one (a damaged file counts as absent and is replaced).
fn read_cache(path: &Path, model: &str, source: &str, index: u32) -> Option<Vec<Explanation>> {
    let bytes = std::fs::read(path).ok()?;
    let f: CacheFile = serde_json::from_slice(&bytes).ok()?;
    (f.model_id == model && f.source == source && f.index == index).then_some(f.explanations)
}

/// Write `file` as `path` through a temporary file in the same folder, fsynced, then renamed: a
/// reader sees the old file, the new one, or none — never part of one.
fn write_atomic(path: &Path, file: &CacheFile) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let mut bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn endpoints_must_be_http_or_https_with_a_host() {
        let root = Path::new("/nonexistent");
        let ok = |e: &str| Client::from_vars(root, vars(&[("NEURONPEDIA_ENDPOINT", e)])).map(|c| c.endpoint);
        assert_eq!(ok("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(ok("https://mirror.example/np").unwrap(), "https://mirror.example/np");
        assert_eq!(Client::from_vars(root, vars(&[])).unwrap().endpoint, DEFAULT_ENDPOINT);
        for bad in ["ftp://x", "www.neuronpedia.org", "http://", "https:///path", "http://user@host", "file:///etc"] {
            let e = ok(bad).unwrap_err().to_string();
            assert!(e.contains("NEURONPEDIA_ENDPOINT") && e.contains("not an http"), "{bad}: {e}");
        }
    }

    #[test]
    fn offline_from_either_variable_and_the_key_never_shows_in_debug() {
        let root = Path::new("/c");
        assert!(Client::from_vars(root, vars(&[("SAEFLOW_OFFLINE", "1")])).unwrap().is_offline());
        assert!(Client::from_vars(root, vars(&[("HF_HUB_OFFLINE", "true")])).unwrap().is_offline());
        assert!(!Client::from_vars(root, vars(&[("HF_HUB_OFFLINE", "0")])).unwrap().is_offline());
        let c = Client::from_vars(root, vars(&[("NEURONPEDIA_API_KEY", " sk-secret-123 ")])).unwrap();
        assert!(matches!(&c.key, Some(ApiKey(k)) if k == "sk-secret-123"));
        assert!(!format!("{c:?}").contains("sk-secret-123"), "{c:?}");
        assert_eq!(c.cache_file("gemma-2b", "6-res-jb", 7), Path::new("/c/neuronpedia/gemma-2b/6-res-jb/7.json"));
    }

    #[test]
    fn sources_that_would_leave_the_cache_folder_are_refused() {
        assert_eq!(parse_source("gemma-2b/6-res-jb").unwrap(), ("gemma-2b", "6-res-jb"));
        for bad in ["../x/6", "gemma-2b/..", "gemma-2b/6/res", "a b/6", "/6-res-jb", "gemma-2b/"] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_keep_explanations_and_refuse_another_feature_or_a_wrong_shape() {
        let body = br#"{"modelId":"gemma-2b","layer":"6-res-jb","index":"12","activations":[{"x":1}],
            "explanations":[{"description":" zebra","typeName":"oai_token-act-pair"},{"description":"apple","authorId":"u"}]}"#;
        let e = parse_answer(body, 12).unwrap();
        assert_eq!(pick(e.iter().filter_map(|e| e.description.as_deref())).as_deref(), Some("apple"));
        assert!(parse_answer(body, 13).is_none(), "another feature's answer");
        assert!(parse_answer(br#"{"index":12,"explanations":[]}"#, 12).unwrap().is_empty());
        assert!(parse_answer(br#"{"error":"Not found"}"#, 12).is_none());
        assert!(parse_answer(b"<html>", 12).is_none());
        assert!(parse_answer(br#"{"explanations":{"description":"x"}}"#, 12).is_none());
    }

    #[test]
    fn origins_and_summaries() {
        assert_eq!(origin("https://www.neuronpedia.org/api/feature/a/b/1"), "https://www.neuronpedia.org");
        assert_eq!(origin("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
        let mut f = Fetched::default();
        assert_eq!(f.summary(3), None);
        f.missing.insert(Missing::NotFound, 2);
        assert_eq!(f.summary(5).unwrap(), "2 of 5 neuronpedia explanations missing: 2 not found (404)");
        f.missing.insert(Missing::RateLimited, 1);
        let s = f.summary(5).unwrap();
        assert!(s.starts_with("3 of 5 neuronpedia explanations missing: 2 not found (404), 1 rate-limited (429) 4 times;"), "{s}");
        assert!(s.contains("--force"), "{s}");
    }

    #[test]
    fn cache_files_are_written_whole_and_read_back_only_for_their_feature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m/s/5.json");
        let file = CacheFile {
            model_id: "m".into(),
            source: "s".into(),
            index: 5,
            explanations: vec![Explanation { description: Some("dogs".into()), type_name: None, explanation_model_name: None }],
        };
        write_atomic(&path, &file).unwrap();
        let names: Vec<String> =
            std::fs::read_dir(dir.path().join("m/s")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["5.json"], "no temporary file left");
        assert_eq!(read_cache(&path, "m", "s", 5).unwrap()[0].description.as_deref(), Some("dogs"));
        assert!(read_cache(&path, "m", "s", 6).is_none());
        std::fs::write(&path, b"{\"modelId\":\"m\",").unwrap();
        assert!(read_cache(&path, "m", "s", 5).is_none(), "a damaged file counts as absent");
    }
}
