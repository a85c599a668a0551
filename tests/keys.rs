//! Cache keys are a promise: a cache built by an earlier saeflow stays `cached` after a change that
//! does not change what a stage computes (a refactor, a new command, a faster kernel). This test
//! plans the demo and the study-sweep fixture and compares every output's key with the keys
//! recorded in `tests/fixtures/keys/` (the demo's in full, the sweep's 4,000-odd as a digest).
//! A deliberate change (a kind's version bump, a new default) is blessed with
//! `SAEFLOW_BLESS=1 cargo test --test keys`, and its commit says why.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

/// instance → output → key, from `plan --json` run in the repository.
fn planned_keys(pipeline: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["plan", pipeline, "--json", "--cache"])
        .arg(cache.path())
        .env_remove("SAEFLOW_CACHE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{pipeline} plans, with everything to run on an empty cache: {stderr}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let outputs = r["outputs"].as_array().unwrap();
            let keys = outputs.iter().map(|o| (o["name"].as_str().unwrap().to_string(), o["key"].as_str().unwrap().to_string()));
            (r["instance"].as_str().unwrap().to_string(), keys.collect())
        })
        .collect()
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys").join(name)
}

fn bless() -> bool {
    std::env::var_os("SAEFLOW_BLESS").is_some()
}

#[test]
fn the_demo_keeps_every_cache_key() {
    let keys = planned_keys("pipelines/demo.yaml");
    let text = serde_json::to_string_pretty(&keys).unwrap() + "\n";
    if bless() {
        std::fs::write(fixture("demo.json"), &text).unwrap();
        return;
    }
    let recorded: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&std::fs::read_to_string(fixture("demo.json")).unwrap()).unwrap();
    let changed: Vec<String> = recorded
        .iter()
        .filter(|(id, outs)| keys.get(*id) != Some(outs))
        .map(|(id, _)| id.clone())
        .chain(keys.keys().filter(|id| !recorded.contains_key(*id)).cloned())
        .collect();
    assert!(
        changed.is_empty(),
        "{} of the demo's {} instances changed keys (a cache built before would recompute them): {:?}\n\
         if the change is deliberate, run SAEFLOW_BLESS=1 cargo test --test keys and say why in the commit",
        changed.len(),
        recorded.len(),
        &changed[..changed.len().min(10)]
    );
}

#[test]
fn the_study_sweep_keeps_every_cache_key() {
    let p = common::Project::new();
    let file = p.pipeline("study", include_str!("fixtures/study_sweep.yaml"));
    let cache = p.root().join("cache");
    let out = p.run(&["plan", &file, "--json", "--cache", cache.to_str().unwrap()]);
    assert_eq!(out.code, 10, "{}", out.stderr);
    let mut lines = Vec::new();
    for r in out.json().as_array().unwrap() {
        for o in r["outputs"].as_array().unwrap() {
            lines.push(format!("{} {} {}", r["instance"].as_str().unwrap(), o["name"].as_str().unwrap(), o["key"].as_str().unwrap()));
        }
    }
    lines.sort();
    let digest = format!("{} outputs, blake3 {}\n", lines.len(), blake3::hash(lines.join("\n").as_bytes()).to_hex());
    if bless() {
        std::fs::write(fixture("study_sweep.txt"), &digest).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(fixture("study_sweep.txt")).unwrap();
    assert_eq!(digest, recorded, "the study sweep's keys changed; if deliberate, SAEFLOW_BLESS=1 cargo test --test keys");
}
