//! `class_features` with `explanations: api`: Neuronpedia's live API against a mock server on
//! 127.0.0.1 (HTTP/1.1 by hand, every request logged), the on-disk cache under
//! `cache/neuronpedia/`, offline mode, and the API key kept out of output, cache and metadata.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arrow_array::{Float32Array, RecordBatch, StringArray, UInt16Array, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use common::{Project, Run, column, instance_outputs, read_entry};
use parquet::arrow::ArrowWriter;

const SECRET: &str = "np-test-SECRET-7f3a";
const SOURCE: &str = "/api/feature/gemma-2b/6-res-jb/";

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, headers: Vec::new(), body: body.to_string() }
}

/// A feature's answer as the API gives it (activations and all), explanations in this order.
fn feature(index: u32, descriptions: &[&str]) -> Reply {
    let ex: Vec<serde_json::Value> = descriptions
        .iter()
        .map(|d| {
            serde_json::json!({"id": "x", "modelId": "gemma-2b", "layer": "6-res-jb", "index": index.to_string(),
            "description": d, "typeName": "oai_token-act-pair", "explanationModelName": "gpt-4o-mini", "authorId": "a"})
        })
        .collect();
    let body = serde_json::json!({"modelId": "gemma-2b", "layer": "6-res-jb", "index": index.to_string(),
        "activations": [{"tokens": ["a", "b"], "values": [0.0, 1.5]}], "explanations": ex});
    reply(200, &body.to_string())
}

/// A request's headers (names lowercased), and (path, headers) of one request as the mock saw it.
type Headers = Vec<(String, String)>;
type Logged = (String, Headers);

/// A Neuronpedia stand-in: path → answers in order (the last one repeats); unknown paths 404.
struct Mock {
    addr: SocketAddr,
    /// (path, headers) of every request, in order.
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mock {
    fn start(script: BTreeMap<String, Vec<Reply>>) -> Mock {
        Mock::start_with(|_| script)
    }

    /// A script that may name the server's own address.
    fn start_with(script: impl FnOnce(SocketAddr) -> BTreeMap<String, Vec<Reply>>) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let script = script(addr);
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut script: BTreeMap<String, VecDeque<Reply>> = script.into_iter().map(|(k, v)| (k, v.into())).collect();
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Some((path, headers)) = read_request(&stream) else { continue };
                log2.lock().unwrap().push((path.clone(), headers));
                let r = match script.get_mut(&path) {
                    Some(q) if q.len() > 1 => q.pop_front().unwrap(),
                    Some(q) => q[0].clone(),
                    None => reply(404, r#"{"error":"Not Found"}"#),
                };
                let _ = write_reply(stream, &r);
            }
        });
        Mock { addr, log, stop, thread: Some(thread) }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests so far (path → count) and each one's headers, and clear the log.
    fn take(&self) -> (BTreeMap<String, usize>, Vec<Headers>) {
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        let mut counts = BTreeMap::new();
        for (p, _) in &log {
            *counts.entry(p.clone()).or_insert(0) += 1;
        }
        (counts, log.into_iter().map(|(_, h)| h).collect())
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<Logged> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Some((path, headers))
}

fn write_reply(mut stream: TcpStream, r: &Reply) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        302 => "Found",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes())?;
    stream.write_all(r.body.as_bytes())?;
    stream.flush()
}

fn write(path: &Path, batch: RecordBatch) {
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Four images: cats 0 and 1 share features 10 and 11 (image 0 also has 99); dogs 2 and 3
/// share 20 and 21 (image 2 also has 98). With `top_k: 2` the table lists 10, 11, 20, 21 only.
fn project(explanations: &str) -> (Project, String) {
    let p = Project::new();
    std::fs::create_dir_all(p.root().join("data")).unwrap();
    let codes: &[(u32, u32)] = &[(0, 10), (0, 11), (0, 99), (1, 10), (1, 11), (2, 20), (2, 21), (2, 98), (3, 20), (3, 21)];
    let schema = Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("token", DataType::UInt16, false),
        Field::new("feature", DataType::UInt32, false),
        Field::new("value", DataType::Float32, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from_iter_values(codes.iter().map(|c| c.0))),
            Arc::new(UInt16Array::from_iter_values(codes.iter().map(|_| 0))),
            Arc::new(UInt32Array::from_iter_values(codes.iter().map(|c| c.1))),
            Arc::new(Float32Array::from_iter_values(codes.iter().map(|_| 1.0))),
        ],
    )
    .unwrap();
    write(&p.root().join("data/codes.parquet"), batch);
    let schema = Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("label", DataType::UInt16, false),
        Field::new("label_name", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from_iter_values(0..4)),
            Arc::new(UInt16Array::from_iter_values([0, 0, 1, 1])),
            Arc::new(StringArray::from_iter_values(["cat", "cat", "dog", "dog"])),
            Arc::new(StringArray::from_iter_values(["test"; 4])),
            Arc::new(StringArray::from_iter_values((0..4).map(|i| format!("img:{i}")))),
        ],
    )
    .unwrap();
    write(&p.root().join("data/labels.parquet"), batch);
    let f = p.pipeline(
        "np",
        &format!(
            "name: np\nstages:\n  codes: {{kind: table, path: data/codes.parquet, type: codes}}\n  \
             labels: {{kind: table, path: data/labels.parquet, type: dataset}}\n  \
             classes: {{kind: class_features, codes: codes, labels: labels, top_k: 2, occurrence: any, {explanations}}}\n"
        ),
    );
    (p, f)
}

/// Run saeflow with these variables, and none of the offline switches or Neuronpedia variables
/// the calling environment may have.
fn run(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = p.command(args);
    for k in ["HF_HUB_OFFLINE", "SAEFLOW_OFFLINE", "NEURONPEDIA_ENDPOINT", "NEURONPEDIA_API_KEY"] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// feature → explanation of the `classes` table, in row order.
fn explanations(p: &Project, f: &str) -> Vec<(u32, Option<String>)> {
    let key = &instance_outputs(p, f, "classes")["classes"];
    let b = &read_entry(p, key)[0];
    let (feat, ex) = (column::<UInt32Array>(b, "feature"), column::<StringArray>(b, "explanation"));
    (0..b.num_rows()).map(|i| (feat.value(i), (!arrow_array::Array::is_null(ex, i)).then(|| ex.value(i).to_string()))).collect()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    common::files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(name, _)| name)
        .collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn live_api_fetches_only_listed_features_caches_answers_and_reads_the_cache_offline() {
    let (p, f) = project("explanations: api, neuronpedia: gemma-2b/6-res-jb");
    let path = |i: u32| format!("{SOURCE}{i}");
    let mut retry = reply(429, r#"{"error":"rate limited"}"#);
    retry.headers.push(("Retry-After", "0".into()));
    let mock = Mock::start(BTreeMap::from([
        // two explanations, listed out of order: the alphabetically first is kept
        (path(10), vec![feature(10, &["whiskers and fur", "cats and kittens"])]),
        (path(11), vec![reply(404, r#"{"error":"Not Found"}"#)]),
        (path(20), vec![retry, feature(20, &["dogs"])]),
        (path(21), vec![reply(200, "<html>maintenance</html>")]),
        // in the data, not in the table: never asked
        (path(98), vec![feature(98, &["never asked"])]),
        (path(99), vec![feature(99, &["never asked"])]),
    ]));
    let endpoint = mock.endpoint();
    let env = [("NEURONPEDIA_ENDPOINT", endpoint.as_str()), ("NEURONPEDIA_API_KEY", SECRET)];

    let r = run(&p, &["run", &f], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let want = vec![(10, Some("cats and kittens".to_string())), (11, None), (20, Some("dogs".to_string())), (21, None)];
    assert_eq!(explanations(&p, &f), want);
    let (counts, headers) = mock.take();
    assert_eq!(counts, BTreeMap::from([(path(10), 1), (path(11), 1), (path(20), 2), (path(21), 1)]), "only the listed features");
    assert!(headers.iter().all(|h| h.iter().any(|(k, v)| k == "x-api-key" && v == SECRET)), "the key is sent: {headers:?}");
    assert!(
        r.stderr
            .contains("note: classes: 2 of 4 neuronpedia explanations missing: 1 not found (404), 1 malformed answer; nothing was cached"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.matches("neuronpedia explanations missing").count(), 1, "one line: {}", r.stderr);
    assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET));
    // answers cached whole, one file per answered feature; failures leave nothing
    let dir = p.cache().join("neuronpedia/gemma-2b/6-res-jb");
    assert_eq!(listing(&dir), ["10.json", "20.json"]);
    let cached: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("10.json")).unwrap()).unwrap();
    assert_eq!(cached["explanations"].as_array().unwrap().len(), 2);
    assert!(cached.get("activations").is_none(), "only explanations are kept");
    // the key is nowhere on disk: not in cache files, Parquet data or metadata, manifests, history
    assert_eq!(files_containing(p.root(), SECRET), Vec::<String>::new());
    let key = &instance_outputs(&p, &f, "classes")["classes"];
    let part = File::open(p.cache().join(key).join("part-00000.parquet")).unwrap();
    let meta = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(part).unwrap().metadata().clone();
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    assert!(kv.iter().any(|e| e.key == "saeflow.params" && e.value.as_deref().is_some_and(|v| v.contains("\"api\""))));
    assert!(
        kv.iter().all(
            |e| !e.value.as_deref().unwrap_or_default().contains(SECRET) && !e.value.as_deref().unwrap_or_default().contains(&endpoint)
        )
    );

    // the key holds the word, not the endpoint or the API key
    let keys = p.keys(&f);
    assert_eq!(&keys["classes"], key, "the environment is not part of the key");

    // a second run online: the cached features cost no request, the others are asked again
    let r = run(&p, &["run", &f, "--force", "classes"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(mock.take().0, BTreeMap::from([(path(11), 1), (path(21), 1)]));
    assert_eq!(explanations(&p, &f), want);

    // the server gone and offline: the cache alone, no request (a request would be a network error)
    drop(mock);
    for offline in ["SAEFLOW_OFFLINE", "HF_HUB_OFFLINE"] {
        let r = run(&p, &["run", &f, "--force", "classes"], &[env[0], env[1], (offline, "1")]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert_eq!(explanations(&p, &f), want, "{offline}");
        assert!(
            r.stderr.contains("2 of 4 neuronpedia explanations missing: 2 not in the cache (offline); run once online to fill the cache"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(listing(&dir), ["10.json", "20.json"], "no temporary files left");
}

#[test]
fn rate_limits_are_retried_a_bounded_number_of_times_and_network_failures_stop_requests() {
    let (p, f) = project("explanations: api, neuronpedia: gemma-2b/6-res-jb");
    let mut limited = reply(429, "{}");
    limited.headers.push(("Retry-After", "0".into()));
    let mock = Mock::start(BTreeMap::from([
        (format!("{SOURCE}10"), vec![limited]),
        (format!("{SOURCE}11"), vec![feature(11, &[])]),
        (format!("{SOURCE}20"), vec![feature(20, &["  ", "dogs"])]),
        (format!("{SOURCE}21"), vec![feature(999, &["another feature's answer"])]),
    ]));
    let r = run(&p, &["run", &f], &[("NEURONPEDIA_ENDPOINT", &mock.endpoint())]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(explanations(&p, &f), vec![(10, None), (11, None), (20, Some("dogs".into())), (21, None)]);
    let (counts, headers) = mock.take();
    assert_eq!(counts[&format!("{SOURCE}10")], 4, "429 is tried 4 times, no more");
    assert!(headers.iter().all(|h| h.iter().all(|(k, _)| k != "x-api-key")), "no key, no header");
    assert!(
        r.stderr.contains("3 of 4 neuronpedia explanations missing: 1 none published, 1 rate-limited (429) 4 times, 1 malformed answer"),
        "{}",
        r.stderr
    );
    // an answer without explanations is an answer: cached; the others are not
    assert_eq!(listing(&p.cache().join("neuronpedia/gemma-2b/6-res-jb")), ["11.json", "20.json"]);

    // nobody listening: three features fail in a row, then no more requests
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    std::fs::remove_dir_all(p.cache().join("neuronpedia")).unwrap();
    let r = run(&p, &["run", &f, "--force", "classes"], &[("NEURONPEDIA_ENDPOINT", &format!("http://{closed}"))]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("4 of 4 neuronpedia explanations missing: 3 network error, 1 not requested after 3 failures in a row"),
        "{}",
        r.stderr
    );
    assert!(!p.cache().join("neuronpedia/gemma-2b/6-res-jb").exists());
}

#[test]
fn bad_endpoints_and_sources_are_refused_without_showing_the_key() {
    let (p, f) = project("explanations: api, neuronpedia: gemma-2b/6-res-jb");
    let r = run(&p, &["run", &f], &[("NEURONPEDIA_ENDPOINT", "ftp://mirror.example"), ("NEURONPEDIA_API_KEY", SECRET)]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("neuronpedia endpoint 'ftp://mirror.example' (NEURONPEDIA_ENDPOINT) is not an http:// or https:// URL"),
        "the failed instance's line: {}",
        r.stdout
    );
    assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET));

    // a source that would leave the cache folder is a plan error
    let (p, f) = project("explanations: api, neuronpedia: ../6-res-jb");
    let r = run(&p, &["plan", &f], &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("modelId '..' must be letters, digits"), "{}", r.stderr);

    // `api` needs the source; a path is still a path, and its error names the word
    let (p, f) = project("explanations: api");
    assert_eq!(run(&p, &["plan", &f], &[]).code, 1);
    let (p, f) = project("explanations: data/nothing-here, neuronpedia: gemma-2b/6-res-jb");
    let r = run(&p, &["plan", &f], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("'data/nothing-here' does not exist") && r.stderr.contains("or write api"), "{}", r.stderr);
}

#[test]
fn the_word_api_enters_the_key_and_files_keep_their_content_keys() {
    let (p, f) = project("explanations: api, neuronpedia: gemma-2b/6-res-jb");
    let api = p.keys(&f)["classes"].clone();
    p.pipeline(
        "np",
        "name: np\nstages:\n  codes: {kind: table, path: data/codes.parquet, type: codes}\n  \
         labels: {kind: table, path: data/labels.parquet, type: dataset}\n  \
         classes: {kind: class_features, codes: codes, labels: labels, top_k: 2, occurrence: any, neuronpedia: gemma-2b/6-res-jb}\n",
    );
    let none = p.keys(&f)["classes"].clone();
    assert_ne!(api, none, "explanations from the API are another table than none");
    std::fs::write(p.root().join("data/ex.json"), r#"{"10": "cats"}"#).unwrap();
    let file = |text: &str| {
        std::fs::write(p.root().join("data/ex.json"), text).unwrap();
        p.pipeline(
            "np",
            "name: np\nstages:\n  codes: {kind: table, path: data/codes.parquet, type: codes}\n  \
             labels: {kind: table, path: data/labels.parquet, type: dataset}\n  \
             classes: {kind: class_features, codes: codes, labels: labels, top_k: 2, occurrence: any, explanations: data/ex.json, neuronpedia: gemma-2b/6-res-jb}\n",
        );
        p.keys(&f)["classes"].clone()
    };
    let (a, b) = (file(r#"{"10": "cats"}"#), file(r#"{"10": "felines"}"#));
    assert_ne!(a, b, "a file enters the key by its content");
    assert!(a != api && a != none);
}

#[test]
fn redirects_carry_the_key_only_to_the_endpoints_origin() {
    let (p, f) = project("explanations: api, neuronpedia: gemma-2b/6-res-jb");
    let moved = |to: String| Reply { status: 302, headers: vec![("Location", to)], body: String::new() };
    let mock = Mock::start_with(|addr| {
        BTreeMap::from([
            // same origin (a relative location): the key follows
            (format!("{SOURCE}10"), vec![moved("/mirror/10".into())]),
            ("/mirror/10".to_string(), vec![feature(10, &["cats"])]),
            // another host name for the same server: another origin, the key stays behind
            (format!("{SOURCE}11"), vec![moved(format!("http://localhost:{}{SOURCE}11", addr.port())), feature(11, &["whiskers"])]),
        ])
    });
    let r = run(&p, &["run", &f], &[("NEURONPEDIA_ENDPOINT", &mock.endpoint()), ("NEURONPEDIA_API_KEY", SECRET)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let got = explanations(&p, &f);
    assert_eq!(&got[..2], &[(10, Some("cats".to_string())), (11, Some("whiskers".to_string()))]);
    let log = std::mem::take(&mut *mock.log.lock().unwrap());
    let key_of = |path: &str, host: &str| {
        log.iter()
            .find(|(p, h)| p == path && h.iter().any(|(k, v)| k == "host" && v.starts_with(host)))
            .map(|(_, h)| h.iter().any(|(k, v)| k == "x-api-key" && v == SECRET))
    };
    assert_eq!(key_of("/mirror/10", "127.0.0.1"), Some(true));
    assert_eq!(key_of(&format!("{SOURCE}11"), "127.0.0.1"), Some(true));
    assert_eq!(key_of(&format!("{SOURCE}11"), "localhost"), Some(false), "{log:?}");
}
