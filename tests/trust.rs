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

/// Flip one byte in the middle of a file and put its mtime back: the cheap check cannot see it.
fn flip_silently(path: &std::path::Path) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    fs::write(path, bytes).unwrap();
    fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
}

#[test]
fn commands_that_show_data_hash_what_they_read() {
    let p = Project::new();
    let f = p.pipeline("x", "name: x\nstages:\n  s: {kind: mock.source, parts: 2}\n");
    assert_eq!(p.run(&["run", &f]).code, 0);
    let key = p.keys(&f)["s"].clone();
    flip_silently(&p.cache().join(&key).join("part-00000.parquet"));
    assert_eq!(p.run(&["plan", &f]).code, 0, "size and mtime look fine: plan only stats");
    let show = p.run(&["show", &f, "s"]);
    assert_eq!(show.code, 1, "show refuses what does not hash:\n{}{}", show.stdout, show.stderr);
    assert!(show.stderr.contains("does not hash"), "{}", show.stderr);
    assert!(!show.stdout.contains("first "), "no damaged row is printed: {}", show.stdout);
    let notebook = p.run(&["report", &f]);
    assert_eq!(notebook.code, 0, "{}", notebook.stderr);
    let html = fs::read_to_string(p.root().join("reports/x.html")).or_else(|_| fs::read_to_string(p.root().join("reports/x/index.html")));
    if let Ok(html) = html {
        assert!(html.contains("damaged"), "the notebook says the cell's entry is damaged");
    }
    let out = p.root().join("out");
    let export = p.run(&["export", &f, "s", "--to", out.to_str().unwrap()]);
    assert_eq!(export.code, 1, "export refuses it too: {}", export.stderr);
}

/// Rewrite an entry's manifest.json through `edit`, keeping the file's mtime.
fn edit_manifest(p: &Project, key: &str, edit: impl Fn(&mut serde_json::Value)) {
    let path = p.cache().join(key).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

type Edit = dyn Fn(&mut serde_json::Value);

#[test]
fn a_manifest_is_checked_not_trusted() {
    let cases: Vec<(&str, Box<Edit>)> = vec![
        ("no files", Box::new(|m| m["files"] = serde_json::json!([]))),
        ("a file listed twice", Box::new(|m| m["files"][1] = m["files"][0].clone())),
        ("rows that are not the files' sum", Box::new(|m| m["rows"] = serde_json::json!(1_000_000_000_000u64))),
        (
            "rows claimed by every file",
            Box::new(|m| {
                m["files"][0]["rows"] = serde_json::json!(999_999_999_950u64);
                m["rows"] = serde_json::json!(1_000_000_000_000u64);
            }),
        ),
        ("another table type", Box::new(|m| m["table"] = serde_json::json!("pooled"))),
    ];
    for (what, edit) in cases {
        let p = Project::new();
        let f = p.pipeline("x", "name: x\nstages:\n  s: {kind: mock.source, parts: 2}\n  m: {kind: mock.map, from: s}\n");
        assert_eq!(p.run(&["run", &f]).code, 0);
        let key = p.keys(&f)["s"].clone();
        edit_manifest(&p, &key, edit);
        let show = p.run(&["show", &f, "s"]);
        assert_eq!(show.code, 1, "{what}: show refuses the entry, no panic:\n{}{}", show.stdout, show.stderr);
        assert!(!show.stderr.contains("panicked"), "{what}: {}", show.stderr);
        // a stage reading it (forced) gets it recomputed first, never the bad manifest's view
        p.executed();
        let r = p.run(&["run", &f, "--force", "m"]);
        assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
        assert_eq!(p.executed(), vec!["s", "m"], "{what}: the entry is recomputed before it is read");
        assert_eq!(p.run(&["verify"]).code, 0, "{what}");
        assert_eq!(p.run(&["plan", &f]).code, 0, "{what}");
    }
}

#[test]
fn import_derives_identity_from_footers_and_is_all_or_nothing() {
    let a = Project::new();
    let f = a.pipeline(
        "x",
        "name: x\nstages:\n  s: {kind: mock.source, parts: 2}\n  t: {kind: mock.source, rows: 9}\n  d: {kind: mock.dataset}\n",
    );
    assert_eq!(a.run(&["run", &f]).code, 0);
    let out = a.root().join("out");
    for id in ["s", "t", "d"] {
        assert_eq!(a.run(&["export", &f, id, "--to", out.to_str().unwrap()]).code, 0);
    }
    // a part altered after export, with the manifest re-hashed to match: its pages no longer decode
    let part = out.join("stage=s/output=table/part-00001.parquet");
    let mut bytes = fs::read(&part).unwrap();
    let at = bytes.len() / 3;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5A;
    }
    fs::write(&part, &bytes).unwrap();
    let man = common::exported_manifest(&out, "s");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&man).unwrap()).unwrap();
    m["files"][1]["blake3"] = serde_json::json!(blake3::hash(&bytes).to_hex().to_string());
    fs::write(&man, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let b = Project::new();
    let r = b.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 1, "the altered table is refused: {}{}", r.stdout, r.stderr);
    assert!(
        !b.cache().exists() || fs::read_dir(b.cache()).unwrap().flatten().all(|e| e.file_name().to_string_lossy().starts_with('.')),
        "all or nothing: the intact tables were not imported either"
    );
    // a table whose footers claim a type its columns are not (dataset rows under a `mock` table, and back)
    fs::remove_dir_all(out.join("stage=s")).unwrap();
    let dm = common::exported_manifest(&out, "d");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&dm).unwrap()).unwrap();
    m["table"] = serde_json::json!("codes");
    fs::write(&dm, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let r = b.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 1, "a manifest that disagrees with the footers is refused: {}{}", r.stdout, r.stderr);
    fs::remove_dir_all(out.join("stage=d")).unwrap();
    let r = b.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(b.run(&["verify"]).code, 0);
}

#[test]
fn a_manifest_records_where_its_numbers_were_computed() {
    let p = Project::new();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet/models/a");
    let f = p.pipeline(
        "x",
        &format!(
            "name: x\nstages:\n  d: {{kind: dataset, format: synthetic, classes: 2, per_class: 2, image_size: 32}}\n  r: {{kind: resnet, from: d.images, model: {}, dtype: f32, device: cpu}}\n",
            model.display()
        ),
    );
    let run = p.run(&["run", &f]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let manifest = |id: &str| -> serde_json::Value {
        let key = p.keys(&f)[id].clone();
        serde_json::from_slice(&fs::read(p.cache().join(key).join("manifest.json")).unwrap()).unwrap()
    };
    let r = manifest("r");
    assert_eq!(r["computed_on"]["device"], "cpu f32", "{r}");
    assert_eq!(r["computed_on"]["arch"], std::env::consts::ARCH);
    assert!(r["computed_on"]["isa"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    let d = manifest("d");
    assert!(d["computed_on"]["isa"].is_string() && d["computed_on"].get("device").is_none(), "no model, no device: {d}");
    // an entry written before manifests recorded it is still read as cached
    let key = p.keys(&f)["d"].clone();
    edit_manifest(&p, &key, |m| {
        m.as_object_mut().unwrap().remove("computed_on");
    });
    assert_eq!(p.run(&["plan", &f]).code, 0);
    assert_eq!(p.run(&["verify"]).code, 0);
}

#[test]
fn a_report_folder_always_shows_the_cached_report() {
    use arrow_array::{Float32Array, RecordBatch, UInt32Array};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let p = Project::new();
    // a small probe on features from elsewhere (a `table` stage), enough for a report
    let schema = Arc::new(Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("feature", DataType::UInt32, false),
        Field::new("value", DataType::Float32, false),
    ]));
    let ids: Vec<u32> = (0..16).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt32Array::from(ids.clone())),
            Arc::new(UInt32Array::from(ids.iter().map(|i| i % 3).collect::<Vec<_>>())),
            Arc::new(Float32Array::from(ids.iter().map(|&i| i as f32 / 16.0).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(fs::File::create(p.root().join("f.parquet")).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let yaml = |title: &str| {
        format!(
            "name: x\nstages:\n  d: {{kind: dataset, format: synthetic, classes: 2, train_per_class: 6, test_per_class: 2, image_size: 8}}\n  \
             s: {{kind: split, from: d.images, method: predefined}}\n  f: {{kind: table, path: f.parquet, type: pooled}}\n  \
             p: {{kind: probe, features: f, split: s}}\n  r: {{kind: report, metrics: p.metrics, title: {title}}}\n"
        )
    };
    let index = || fs::read_to_string(p.root().join("reports/x/index.html")).unwrap_or_default();
    let f = p.pipeline("x", &yaml("Alpha"));
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(index().contains("Alpha"));
    p.pipeline("x", &yaml("Beta"));
    assert_eq!(p.run(&["run", &f]).code, 0);
    assert!(index().contains("Beta"));
    // the edit reverted: the entry is cached again, but the folder shows Beta's run
    p.pipeline("x", &yaml("Alpha"));
    let plan = p.run(&["plan", &f]);
    assert_eq!(plan.code, 10, "the stale folder makes the report run: {}", plan.stdout);
    assert!(plan.stdout.contains("shows another run"), "{}", plan.stdout);
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(index().contains("Alpha") && !index().contains("Beta"), "the folder shows the cached report again");
    assert_eq!(p.run(&["plan", &f]).code, 0);
    // a removed folder is written again
    fs::remove_dir_all(p.root().join("reports/x")).unwrap();
    assert_eq!(p.run(&["plan", &f]).code, 10);
    assert_eq!(p.run(&["run", &f]).code, 0);
    assert!(index().contains("Alpha"));
    assert_eq!(p.run(&["plan", &f]).code, 0);
    assert!(!p.cache().join(".corrupt").exists());
}
