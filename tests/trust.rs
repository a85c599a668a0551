//! Trust (issue 15): a good entry is never lost. A forced recompute keeps the old entry until its
//! replacement is published; a crash between the publishes of a multi-output instance leaves the
//! published siblings in place; `gc` of another pipeline never removes what a live run reads.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{Project, files};

/// The bytes of every file of an entry.
fn entry(p: &Project, key: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    files(&p.cache().join(key))
}

#[test]
fn an_interrupted_force_keeps_the_old_entry() {
    let p = Project::new();
    let f = p.pipeline("x", "name: x\nstages:\n  s: {kind: mock.source, parts: 4}\n");
    assert_eq!(p.run(&["run", &f]).code, 0);
    let key = p.keys(&f)["s"].clone();
    let before = entry(&p, &key);
    p.executed();
    // the forced recompute dies after its second part, as a Ctrl-C or a crash would
    let r = p.run_env(&["run", &f, "--force", "s"], &[("SAEFLOW_FAULT", "exit-after-part:s:1")]);
    assert_eq!(r.code, 86, "{}{}", r.stdout, r.stderr);
    assert_eq!(p.run(&["plan", &f]).code, 0, "the old entry is still there and cached");
    assert_eq!(entry(&p, &key), before, "untouched, byte for byte");
    // a forced run that completes swaps in the new entry (same bytes: the stage is deterministic)
    let r = p.run(&["run", &f, "--force", "s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(p.executed(), vec!["s", "s"], "the interrupted and the complete forced run");
    assert_eq!(entry(&p, &key).keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    assert!(!p.cache().join(".corrupt").exists(), "a replaced entry is not 'corrupt'");
    assert_eq!(p.run(&["verify"]).code, 0);
}

#[test]
fn a_crash_between_two_publishes_keeps_the_published_sibling() {
    let p = Project::new();
    let f = p.pipeline("x", "name: x\nstages:\n  m: {kind: mock.fused, layer: 1}\n");
    assert_eq!(p.run(&["run", &f]).code, 0);
    let outs = common::instance_outputs(&p, &f, "m");
    let (table, summary) = (outs["table"].clone(), outs["summary"].clone());
    let kept = entry(&p, &table);
    // what a kill between the two publishes leaves: the first output published, the second not
    fs::remove_dir_all(p.cache().join(&summary)).unwrap();
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("damaged") && !r.stderr.contains("damaged"), "{}{}", r.stdout, r.stderr);
    assert!(!p.cache().join(".corrupt").exists(), "the intact sibling is not quarantined");
    assert_eq!(entry(&p, &table), kept, "the published sibling is kept as it was");
    assert!(p.cache().join(&summary).join("manifest.json").is_file(), "the missing output is published");
    assert_eq!(p.run(&["plan", &f]).code, 0);
    assert_eq!(p.run(&["verify"]).code, 0);
}

#[test]
fn gc_of_another_pipeline_never_removes_what_a_live_run_reads() {
    let p = Project::new();
    // `a` reads `s` for a while; `b` reads `s` after it
    let x = p.pipeline(
        "x",
        "name: x\nstages:\n  s: {kind: mock.source}\n  a: {kind: mock.map, from: s, delay_ms: 1500}\n  b: {kind: mock.map, from: s, k: 2}\n",
    );
    let y = p.pipeline("y", "name: y\nstages:\n  t: {kind: mock.source, rows: 7}\n");
    assert_eq!(p.run(&["run", &y]).code, 0);
    let s_key = p.keys(&x)["s"].clone();
    let run = p.command(&["run", &x]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // wait until `s` is published and `a` is computing
    let start = Instant::now();
    while !(p.cache().join(&s_key).join("manifest.json").is_file() && p.executed_so_far().contains(&"a".to_string())) {
        assert!(start.elapsed() < Duration::from_secs(60), "the run did not reach stage a");
        std::thread::sleep(Duration::from_millis(20));
    }
    // gc with only pipeline y: x's entries are unreachable from it
    let gc = p.run(&["gc", &y]);
    assert_eq!(gc.code, 0, "{}{}", gc.stdout, gc.stderr);
    let out = run.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the run survives a gc of another pipeline:\n{stdout}{stderr}");
    assert_eq!(p.run(&["plan", &x]).code, 0, "everything x computed is in the cache");
}
