//! Behaviours found in review: gathering order, copied caches, reasons for file and default
//! changes, typed interpolation, import without a manifest, concurrent runs meeting damage,
//! --force hygiene, plan-time parameter checks.

mod common;

use std::fs;

use common::{Project, files};

#[test]
fn gathering_inputs_do_not_depend_on_list_order() {
    let p = Project::new();
    let a = p.pipeline(
        "a",
        "name: g\nstages:\n  s: {kind: mock.source, matrix: {layer: [6, 10, 17], pool: [sum, top5]}}\n  r: {kind: mock.gather, from: s}\n  c: {kind: mock.concat, from: {from: \"s[layer in (6, 10)]\", over: [layer]}}\n  both: {kind: mock.gather, from: [c, s]}\n",
    );
    let b = p.pipeline(
        "b",
        "name: g\nstages:\n  both: {kind: mock.gather, from: [s, c]}\n  c: {kind: mock.concat, from: {from: \"s[layer in (10, 6)]\", over: [layer]}}\n  r: {kind: mock.gather, from: s}\n  s: {kind: mock.source, matrix: {pool: [top5, sum], layer: [17, 10, 6]}}\n",
    );
    assert_eq!(p.keys(&a), p.keys(&b));
    // and the bytes agree too: run both into separate caches
    assert_eq!(p.run(&["run", &a, "--cache", "c1"]).code, 0);
    assert_eq!(p.run(&["run", &b, "--cache", "c2"]).code, 0);
    let parquet = |dir: &str| -> Vec<Vec<u8>> {
        files(&p.root().join(dir)).into_iter().filter(|(k, _)| k.ends_with(".parquet") && !k.starts_with(".")).map(|(_, v)| v).collect()
    };
    assert_eq!(parquet("c1"), parquet("c2"));
}

#[test]
fn a_copied_cache_is_found_cached_and_refreshed() {
    let p = Project::new();
    let f = p.pipeline("x", "name: x\nstages:\n  s: {kind: mock.source, parts: 3}\n  m: {kind: mock.map, from: s}\n");
    assert_eq!(p.run(&["run", &f]).code, 0);
    // a copy without preserved mtimes (cp -r), as when a cache is moved to another disk
    let copy = p.root().join("copy");
    for (rel, bytes) in files(&p.cache()) {
        let dst = copy.join(&rel);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::write(dst, bytes).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let plan = p.run(&["plan", &f, "--cache", "copy"]);
    assert_eq!(plan.code, 0, "sizes match and hashes verify: {}", plan.stdout);
    p.executed();
    let r = p.run(&["run", &f, "--cache", "copy"]);
    assert!(r.stdout.contains("0 ran, 2 cached"), "{}", r.stdout);
    assert!(p.executed().is_empty());
    assert_eq!(p.run(&["plan", &f, "--cache", "copy"]).code, 0);
}

#[test]
fn reasons_name_a_changed_file_and_a_changed_default() {
    let p = Project::new();
    fs::create_dir_all(p.root().join("data")).unwrap();
    fs::write(p.root().join("data/seed.bin"), b"one").unwrap();
    let yaml = "name: r\ndefaults: {seed: 1}\nstages:\n  d: {kind: mock.dataset}\n  s: {kind: mock.source, data: data/seed.bin}\n  sp: {kind: split, from: d, folds: 5}\n";
    let f = p.pipeline("r", yaml);
    assert_eq!(p.run(&["run", &f]).code, 0);
    fs::write(p.root().join("data/seed.bin"), b"two").unwrap();
    p.pipeline("r", &yaml.replace("seed: 1", "seed: 2"));
    let plan = p.run(&["plan", &f]);
    assert!(plan.stdout.contains("run     s ") && plan.stdout.contains("file changed: data"), "{}", plan.stdout);
    assert!(plan.stdout.contains("params changed: seed (1 → 2)"), "defaults reach keys: {}", plan.stdout);
    assert!(plan.stdout.contains("cached  d"), "{}", plan.stdout);
    // moving the file elsewhere with the same content changes nothing
    assert_eq!(p.run(&["run", &f]).code, 0);
    fs::rename(p.root().join("data/seed.bin"), p.root().join("data/moved.bin")).unwrap();
    p.pipeline("r", &yaml.replace("seed: 1", "seed: 2").replace("data/seed.bin", "data/moved.bin"));
    assert_eq!(p.run(&["plan", &f]).code, 0, "content, not location, is in the key");
}

#[test]
fn an_exact_axis_reference_keeps_its_type() {
    let p = Project::new();
    let f = p.pipeline(
        "t",
        "name: t\nstages:\n  s: {kind: mock.source, matrix: {layer: [6, 10]}}\n  e: {kind: mock.fused, from: s, layer: \"${layer}\"}\n",
    );
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("as one fused computation"), "instances reading different inputs are not fused: {}", r.stdout);
    assert!(p.keys(&f).contains_key("e[layer=10]"));
}

#[test]
fn import_refuses_a_table_with_a_missing_part() {
    let a = Project::new();
    let f = a.pipeline("x", "name: x\nstages:\n  s: {kind: mock.source, rows: 100, parts: 4}\n");
    assert_eq!(a.run(&["run", &f]).code, 0);
    let out = a.root().join("out");
    assert_eq!(a.run(&["export", &f, "s", "--to", out.to_str().unwrap()]).code, 0);
    let table = out.join("stage=s").join("output=table");
    fs::remove_file(table.join("part-00003.parquet")).unwrap();
    let b = Project::new();
    let r = b.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("do not match its manifest.json"), "{}", r.stderr);
    fs::remove_file(common::exported_manifest(&out, "s")).unwrap();
    let r = b.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no manifest (_saeflow/"), "{}", r.stderr);
}

#[test]
fn two_runs_meeting_the_same_damaged_input_both_succeed() {
    let p = Project::new();
    let f = p.pipeline("x", "name: x\nstages:\n  s: {kind: mock.source, parts: 4, delay_ms: 20}\n  m: {kind: mock.map, from: s}\n");
    assert_eq!(p.run(&["run", &f]).code, 0);
    let key = p.keys(&f)["s"].clone();
    let part = p.cache().join(&key).join("part-00001.parquet");
    let mtime = fs::metadata(&part).unwrap().modified().unwrap();
    let mut bytes = fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    fs::write(&part, bytes).unwrap();
    fs::File::options().write(true).open(&part).unwrap().set_modified(mtime).unwrap();
    p.executed();
    let spawn = || {
        p.command(&["run", &f, "--force", "m"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(oa.status.success(), "{}{}", String::from_utf8_lossy(&oa.stdout), String::from_utf8_lossy(&oa.stderr));
    assert!(ob.status.success(), "{}{}", String::from_utf8_lossy(&ob.stdout), String::from_utf8_lossy(&ob.stderr));
    assert_eq!(p.executed().iter().filter(|x| *x == "s").count(), 1, "the damaged input is recomputed once");
    assert_eq!(p.run(&["verify"]).code, 0);
}

#[test]
fn force_recomputes_without_piling_up_copies() {
    let p = Project::new();
    let f = p.pipeline("x", "name: x\nstages:\n  s: {kind: mock.source}\n");
    assert_eq!(p.run(&["run", &f]).code, 0);
    for _ in 0..2 {
        assert_eq!(p.run(&["run", &f, "--force", "s"]).code, 0);
    }
    assert!(!p.cache().join(".corrupt").exists(), "a healthy entry replaced by --force is not 'corrupt'");
    assert_eq!(p.run(&["plan", &f]).code, 0);
}

#[test]
fn a_gathering_stage_names_only_the_variants_that_changed() {
    let p = Project::new();
    fs::create_dir_all(p.root().join("data")).unwrap();
    for l in [6, 10, 17] {
        fs::write(p.root().join(format!("data/{l}.bin")), format!("layer {l}")).unwrap();
    }
    let f = p.pipeline("g", "name: g\nstages:\n  s: {kind: mock.source, matrix: {layer: [6, 10, 17]}, data: \"data/${layer}.bin\"}\n  r: {kind: mock.gather, from: s}\n");
    assert_eq!(p.run(&["run", &f]).code, 0);
    fs::write(p.root().join("data/10.bin"), "changed").unwrap();
    let plan = p.run(&["plan", &f]);
    assert!(plan.stdout.contains("  run     s[layer=10]  file changed: data"), "the instance that runs: {}", plan.stdout);
    assert!(plan.stdout.contains("  run     r  1 to run: input changed: from (s[layer=10])"), "{}", plan.stdout);
    let plan = p.run(&["plan", &f, "-v"]);
    assert!(plan.stdout.contains("run     s[layer=10]  file changed: data"), "{}", plan.stdout);
    assert!(plan.stdout.contains("cached  s[layer=6]"), "{}", plan.stdout);
    assert!(plan.stdout.contains("run     r            input changed: from (s[layer=10])"), "{}", plan.stdout);
}
