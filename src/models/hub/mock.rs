//! A fake Hugging Face hub for tests: a `TcpListener` on 127.0.0.1 answering `HEAD`/`GET
//! /{owner}/{name}/resolve/{revision}/{path}` with the hub's headers (`X-Repo-Commit`, `ETag`,
//! `X-Linked-Etag`/`X-Linked-Size` and a redirect to `/cdn/<sha256>` for LFS files,
//! `X-Error-Code` on errors), and logging every request; at the end, the fixtures the hub's own
//! tests share (a hub with a plain, a gated and a renamed repository; a cache online to it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::HubCache;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Where an LFS file's redirect points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cdn {
    /// `http://127.0.0.1:port/cdn/…`: the same host as the endpoint.
    SameHost,
    /// `http://localhost:port/cdn/…`: the same server under another host name.
    OtherHost,
}

#[derive(Clone, Debug)]
pub struct FakeFile {
    pub body: Vec<u8>,
    /// Served as an LFS file (sha256 etag, redirect to the CDN) when set.
    pub lfs: Option<Cdn>,
    /// Announce this sha256 instead of the real one.
    pub lie_sha256: Option<String>,
    /// Announce this size instead of the real one.
    pub lie_size: Option<u64>,
    /// Close the connection after this many body bytes on the first `GET`.
    pub drop_after: Option<usize>,
}

impl FakeFile {
    pub fn regular(body: &[u8]) -> FakeFile {
        FakeFile { body: body.to_vec(), lfs: None, lie_sha256: None, lie_size: None, drop_after: None }
    }

    pub fn lfs(body: &[u8], cdn: Cdn) -> FakeFile {
        FakeFile { lfs: Some(cdn), ..FakeFile::regular(body) }
    }

    /// The git blob sha1 (the hub's `ETag` of a regular file).
    pub fn git_sha1(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(format!("blob {}\0", self.body.len()).as_bytes());
        ctx.update(&self.body);
        hex(ctx.finish().as_ref())
    }

    pub fn sha256(&self) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, &self.body).as_ref())
    }

    /// The blob name the cache should use.
    pub fn etag(&self) -> String {
        if self.lfs.is_some() { self.lie_sha256.clone().unwrap_or_else(|| self.sha256()) } else { self.git_sha1() }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Debug)]
pub struct FakeRepo {
    pub commit: String,
    pub files: BTreeMap<String, FakeFile>,
    /// Every resolve answers 401 GatedRepo (echoing the Authorization header it got, as a
    /// careless server might).
    pub gated: bool,
}

impl FakeRepo {
    pub fn new(commit: &str, files: &[(&str, FakeFile)]) -> FakeRepo {
        FakeRepo { commit: commit.into(), files: files.iter().map(|(p, f)| (p.to_string(), f.clone())).collect(), gated: false }
    }
}

/// The served hub: repositories by id, and renamed ids (old → new, answered with a relative 307).
#[derive(Clone, Debug, Default)]
pub struct FakeHub {
    pub repos: BTreeMap<String, FakeRepo>,
    pub renamed: BTreeMap<String, String>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then close.
    cut: Option<usize>,
}

impl Answer {
    fn new(status: u16) -> Answer {
        Answer { status, headers: vec![], body: vec![], cut: None }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Answer {
        self.headers.push((k.into(), v.into()));
        self
    }

    fn error(status: u16, code: &str, message: &str) -> Answer {
        let mut a = Answer::new(status).header("X-Error-Code", code).header("X-Error-Message", message);
        a.body = format!("{{\"error\":\"{message}\"}}").into_bytes();
        a
    }
}

pub struct MockHub {
    /// `http://127.0.0.1:port`.
    pub base: String,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockHub {
    pub fn start(hub: FakeHub) -> MockHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let cut_done = Mutex::new(HashSet::new());
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                serve(stream, &hub, addr.port(), &log2, &cut_done);
            }
        });
        MockHub { base: format!("http://127.0.0.1:{}", addr.port()), addr, log, stop, thread: Some(thread) }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// `METHOD path` of each request, in order.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, hub: &FakeHub, port: u16, log: &Mutex<Vec<Request>>, cut_done: &Mutex<HashSet<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let request = Request { method, path, headers };
    log.lock().unwrap().push(request.clone());
    let answer = answer(&request, hub, port, cut_done);
    let mut out = stream;
    let reason = match answer.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !answer.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("Content-Length")) {
        head.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = out.write_all(head.as_bytes());
    if request.method != "HEAD" {
        let body = &answer.body[..answer.cut.unwrap_or(answer.body.len()).min(answer.body.len())];
        let _ = out.write_all(body);
    }
    let _ = out.flush();
    let _ = out.shutdown(std::net::Shutdown::Both);
}

fn answer(request: &Request, hub: &FakeHub, port: u16, cut_done: &Mutex<HashSet<String>>) -> Answer {
    let target = request.path.split('?').next().unwrap_or("");
    if let Some(sha) = target.strip_prefix("/cdn/") {
        let file = hub.repos.values().flat_map(|r| r.files.values()).find(|f| f.sha256() == sha);
        let Some(file) = file else { return Answer::new(404) };
        let mut start = 0usize;
        let mut a = Answer::new(200);
        if let Some(range) = request.header("Range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')) {
            start = range.parse().unwrap();
            a = Answer::new(206).header("Content-Range", format!("bytes {start}-{}/{}", file.body.len() - 1, file.body.len()));
        }
        a.body = file.body[start..].to_vec();
        if let Some(n) = file.drop_after
            && cut_done.lock().unwrap().insert(sha.to_string())
        {
            a.cut = Some(n);
        }
        return a;
    }
    // /owner/name/resolve/revision/path
    let segments: Vec<&str> = target.trim_start_matches('/').splitn(5, '/').collect();
    let [owner, name, "resolve", revision, path] = segments[..] else { return Answer::new(404) };
    let id = format!("{owner}/{name}");
    if let Some(new) = hub.renamed.get(&id) {
        return Answer::new(307).header("Location", format!("/{new}/resolve/{revision}/{path}"));
    }
    let Some(repo) = hub.repos.get(&id) else {
        return Answer::error(404, "RepoNotFound", "Repository not found");
    };
    if repo.gated {
        let sent = request.header("Authorization").unwrap_or("nothing");
        return Answer::error(
            401,
            "GatedRepo",
            &format!("Access to model {id} is restricted. You must have access to it and be authenticated. You sent {sent}"),
        );
    }
    let revision = revision.replace("%2F", "/");
    if revision != "main" && revision != repo.commit {
        return Answer::error(404, "RevisionNotFound", "Invalid rev id");
    }
    let Some(file) = repo.files.get(path) else {
        return Answer::error(404, "EntryNotFound", "Entry not found").header("X-Repo-Commit", repo.commit.clone());
    };
    let answer = match file.lfs {
        Some(cdn) => {
            let host = if cdn == Cdn::SameHost { "127.0.0.1" } else { "localhost" };
            let sha = file.sha256();
            Answer::new(302)
                .header("Location", format!("http://{host}:{port}/cdn/{sha}?X-Amz-Signature=abc"))
                .header("X-Linked-Etag", format!("\"{}\"", file.etag()))
                .header("X-Linked-Size", file.lie_size.unwrap_or(file.body.len() as u64).to_string())
                .header("ETag", "\"0000000000000000000000000000000000000000\"")
        }
        None => {
            let mut a = Answer::new(200).header("ETag", format!("\"{}\"", file.etag()));
            a.body = file.body.clone();
            a
        }
    };
    answer.header("X-Repo-Commit", repo.commit.clone())
}

// ---- the fixtures of the hub's own tests ----

/// The commit of every repository of [`hub`].
pub const COMMIT: &str = "aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd";
/// The token [`online`] sends; no error may show it.
pub const TOKEN: &str = "hf_SeCrEtToKeN0123456789";

/// A variable lookup for [`HubCache::from_vars`] over these pairs.
pub fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

/// A small regular (not LFS) file.
pub fn config() -> FakeFile {
    FakeFile::regular(b"{\"model_type\": \"llava\"}\n")
}

/// A 3,000-byte LFS file behind a CDN on the endpoint's host.
pub fn weights() -> FakeFile {
    FakeFile::lfs(&(0u8..=255).cycle().take(3000).collect::<Vec<u8>>(), Cdn::SameHost)
}

/// A hub serving `files` as `o/r` at [`COMMIT`], a gated `g/gated` and `old/r` renamed to `o/r`.
pub fn hub(files: &[(&str, FakeFile)]) -> MockHub {
    let mut hub = FakeHub::default();
    hub.repos.insert("o/r".into(), FakeRepo::new(COMMIT, files));
    let mut gated = FakeRepo::new(COMMIT, &[("config.json", config())]);
    gated.gated = true;
    hub.repos.insert("g/gated".into(), gated);
    hub.renamed.insert("old/r".into(), "o/r".into());
    MockHub::start(hub)
}

/// A cache at `dir`, online to `mock`, sending [`TOKEN`].
pub fn online(dir: &Path, mock: &MockHub) -> HubCache {
    HubCache::at(dir).online(&format!("{}/", mock.base)).with_token(Some(TOKEN))
}
