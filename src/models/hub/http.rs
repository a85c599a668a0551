//! The hub's HTTP side: the resolve URL, the `HEAD` that announces a file (commit, blob name,
//! size, where to `GET` it), the hub's error answers, and the token's one way out.
//!
//! A `HEAD {endpoint}/{repo}/resolve/{revision}/{path}`, following only relative redirects (a
//! renamed repository), gives the commit (`X-Repo-Commit`), the blob name (`X-Linked-Etag` for LFS
//! files — their sha256 — else `ETag`, unquoted), the size (`X-Linked-Size`, else
//! `Content-Length`) and, for LFS files, the CDN location. The token goes only into the
//! `Authorization` header, only to the endpoint's host, and is cut out of any server text an error
//! quotes.

use std::time::Duration;

use super::names::{is_commit_sha, reference};
use super::{HubCache, HubError, Missing, Token};

impl HubCache {
    /// `{endpoint}/{repo}/resolve/{revision}/{path}`, quoted as `hf_hub_url` quotes.
    pub(super) fn resolve_url(&self, repo: &str, revision: &str, path: &str) -> String {
        format!("{}/{repo}/resolve/{}/{}", self.endpoint, quote(revision, false), quote(path, true))
    }

    pub(super) fn agent(&self, redirects: u32, read_timeout: Duration) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .redirects(redirects)
            // like httpx: the token follows a redirect only to the same host
            .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(read_timeout)
            .user_agent(concat!("saeflow/", env!("CARGO_PKG_VERSION"), "; hf_hub-compatible"))
            .build()
    }

    pub(super) fn authorize(&self, request: ureq::Request) -> ureq::Request {
        match &self.token {
            Some(Token(t)) => request.set("Authorization", &format!("Bearer {t}")),
            None => request,
        }
    }

    /// Server text, the token cut out (a server may echo what it was sent).
    pub(super) fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(Token(t)) => text.replace(t.as_str(), "<token>"),
            None => text.to_string(),
        }
    }

    /// `get_hf_file_metadata`: `HEAD` the resolve URL, following relative redirects only.
    pub(super) fn head(&self, repo: &str, revision: &str, path: &str) -> Result<Meta, HubError> {
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
                             private, log in with `hf auth login` or set HF_TOKEN"
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
}

/// What a `HEAD` said about a file.
#[derive(Debug)]
pub(super) struct Meta {
    pub(super) commit: String,
    pub(super) etag: String,
    pub(super) size: u64,
    /// Where to `GET` it (the CDN for LFS files).
    pub(super) location: String,
    /// Whether `location` is on the endpoint's host.
    pub(super) send_token: bool,
    /// The announced sha256, for LFS files.
    pub(super) sha256: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::hub::mock::{COMMIT, TOKEN, config, hub, online, vars};

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
        assert!(cache.has_token(), "the token file of `hf auth login`");

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
        assert!(display.contains("`hf auth login` or set HF_TOKEN"), "{display}");
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
    fn etags_and_hosts_read_as_huggingface_hub_reads_them() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(netloc("http://a.b:8/x/y?z"), "a.b:8");
    }
}
