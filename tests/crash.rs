//! Crashes, kills, concurrent runs and damaged cache files: nothing corrupt is ever used, and a
//! resumed run yields the same bytes as an uninterrupted one.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Project, files};

const FIFTY: &str =
    "name: crash\nstages:\n  src: {kind: mock.source, rows: 5000, parts: 50, delay_ms: DELAY}\n  down: {kind: mock.map, from: src}\n";

fn fifty(delay: u64) -> String {
    FIFTY.replace("DELAY", &delay.to_string())
}

fn key_of(p: &Project, file: &str, instance: &str) -> String {
    p.keys(file)[instance].clone()
}

/// The Parquet parts of a published entry (manifests hold timings, so they are left out).
fn parts(p: &Project, key: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    files(&p.cache().join(key)).into_iter().filter(|(k, _)| k.ends_with(".parquet")).collect()
}

fn tmp_parts(p: &Project, key: &str) -> Vec<PathBuf> {
    let dir = p.cache().join(".tmp").join(key);
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn reference_parts() -> std::collections::BTreeMap<String, Vec<u8>> {
    let r = Project::new();
    let f = r.pipeline("crash", &fifty(0));
    assert_eq!(r.run(&["run", &f]).code, 0);
    let key = key_of(&r, &f, "src");
    parts(&r, &key)
}

#[test]
fn an_injected_fault_mid_stage_resumes_to_identical_bytes() {
    let p = Project::new();
    let f = p.pipeline("crash", &fifty(0));
    let key = key_of(&p, &f, "src");
    let r = p.run_env(&["run", &f], &[("SAEFLOW_FAULT", "exit-after-part:src:20")]);
    assert_eq!(r.code, 86, "the fault kills the run: {}{}", r.stdout, r.stderr);
    assert!(!p.cache().join(&key).exists(), "a killed stage publishes nothing");
    let kept = tmp_parts(&p, &key);
    assert_eq!(kept.len(), 21, "parts 0..=20 are complete and kept");
    let mtimes: Vec<_> = kept.iter().map(|k| fs::metadata(k).unwrap().modified().unwrap()).collect();
    assert_eq!(p.run(&["plan", &f]).code, 10);
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // the first 21 parts were not rewritten: the rename kept their mtimes
    for (i, m) in mtimes.iter().enumerate() {
        let published = p.cache().join(&key).join(format!("part-{i:05}.parquet"));
        assert_eq!(fs::metadata(&published).unwrap().modified().unwrap(), *m, "part {i} was recomputed");
    }
    assert_eq!(parts(&p, &key), reference_parts(), "resumed bytes equal an uninterrupted run's");
    assert_eq!(p.run(&["plan", &f]).code, 0);
}

#[test]
fn a_real_sigkill_mid_stage_resumes_to_identical_bytes() {
    let p = Project::new();
    let f = p.pipeline("crash", &fifty(60));
    let key = key_of(&p, &f, "src");
    let mut child = p.command(&["run", &f]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while tmp_parts(&p, &key).len() < 10 {
        assert!(t0.elapsed() < Duration::from_secs(60), "the run never got to part 10");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = tmp_parts(&p, &key);
    assert!((10..50).contains(&kept.len()), "killed mid-stage with {} parts", kept.len());
    assert!(!p.cache().join(&key).exists());
    let mtimes: Vec<_> = kept.iter().map(|k| (k.file_name().unwrap().to_owned(), fs::metadata(k).unwrap().modified().unwrap())).collect();
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for (name, m) in mtimes {
        assert_eq!(fs::metadata(p.cache().join(&key).join(&name)).unwrap().modified().unwrap(), m, "{name:?} was recomputed, not resumed");
    }
    assert_eq!(parts(&p, &key), reference_parts());
}

#[test]
fn two_concurrent_runs_both_succeed_and_compute_each_instance_once() {
    let p = Project::new();
    let f = p.pipeline(
        "conc",
        "name: conc\nstages:\n  a: {kind: mock.source, parts: 5, delay_ms: 40}\n  b: {kind: mock.source, parts: 5, delay_ms: 40, x: 1}\n  c: {kind: mock.map, from: a, with: b}\n  d: {kind: mock.map, from: c}\n",
    );
    let spawn = || p.command(&["run", &f]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (c1, c2) = (spawn(), spawn());
    let (o1, o2) = (c1.wait_with_output().unwrap(), c2.wait_with_output().unwrap());
    assert!(o1.status.success(), "{}", String::from_utf8_lossy(&o1.stderr));
    assert!(o2.status.success(), "{}", String::from_utf8_lossy(&o2.stderr));
    let mut ran = p.executed();
    ran.sort();
    assert_eq!(ran, vec!["a", "b", "c", "d"], "each instance computed exactly once across both runs");
    assert_eq!(p.run(&["plan", &f]).code, 0);
    assert_eq!(p.run(&["verify"]).code, 0);
}

fn flip_byte(path: &Path, keep_mtime: bool) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    fs::write(path, bytes).unwrap();
    if keep_mtime {
        fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
    }
}

#[test]
fn a_damaged_file_is_detected_reported_and_recomputed_never_used() {
    let p = Project::new();
    let f = p.pipeline("crash", &fifty(0));
    assert_eq!(p.run(&["run", &f]).code, 0);
    p.executed();
    let key = key_of(&p, &f, "src");
    let good = parts(&p, &key);
    // 1. a visible change (mtime moved): plan hashes and reports it
    flip_byte(&p.cache().join(&key).join("part-00007.parquet"), false);
    let plan = p.run(&["plan", &f]);
    assert_eq!(plan.code, 10);
    assert!(plan.stdout.contains("cache entry damaged") && plan.stdout.contains("part-00007.parquet"), "{}", plan.stdout);
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(p.executed(), vec!["src"], "only the damaged entry is recomputed");
    assert_eq!(parts(&p, &key), good);
    assert!(fs::read_dir(p.cache().join(".corrupt")).unwrap().count() >= 1, "the damaged entry is kept aside for inspection");
    // 2. a silent change (same size, same mtime): the cheap check passes, but a stage reading it hashes it
    flip_byte(&p.cache().join(&key).join("part-00003.parquet"), true);
    assert_eq!(p.run(&["plan", &f]).code, 0, "size and mtime look fine");
    let r = p.run(&["run", &f, "--force", "down"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("input src of down is damaged"), "a note, on stderr: {}", r.stderr);
    assert_eq!(p.executed(), vec!["src", "down"]);
    assert_eq!(parts(&p, &key), good);
    // 3. verify finds silent damage too
    flip_byte(&p.cache().join(&key).join("part-00001.parquet"), true);
    let v = p.run(&["verify"]);
    assert_eq!(v.code, 1);
    assert!(v.stdout.contains("1 damaged"), "{}", v.stdout);
    assert_eq!(p.run(&["plan", &f]).code, 10, "a quarantined entry is recomputed by the next run");
}
