//! The `dataset` stage kind end to end: `saeflow run` on a pipeline over the fixtures, then the
//! published Parquet tables.

mod common;

use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray, UInt16Array, UInt32Array};
use common::Project;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn pipeline() -> String {
    let f = fixtures();
    format!(
        r#"
name: datasets
stages:
  cifar:
    kind: dataset
    format: cifar100
    path: {cifar}
  hub:
    kind: dataset
    format: cifar100
    path: {hub}
    split: test
  folder:
    kind: dataset
    format: imagefolder
    path: {folder}
    label_names: {synsets}
    per_class: 2
  table:
    kind: dataset
    format: parquet
    path: {table}
    limit: 3
  shapes:
    kind: dataset
    format: synthetic
    classes: 3
    train_per_class: 4
    test_per_class: 2
    per_class: 2
    sample: 7
"#,
        cifar = f.join("cifar-100-binary").display(),
        hub = f.join("cifar100_hub").display(),
        folder = f.join("folder").display(),
        synsets = f.join("synsets.txt").display(),
        table = f.join("labels_str.parquet").display(),
    )
}

/// The `images` table of an instance, read from the cache.
fn table(p: &Project, file: &str, instance: &str) -> (Vec<RecordBatch>, Vec<u8>) {
    let r = p.run(&["plan", file, "--json"]);
    let plan = r.json();
    let inst = plan.as_array().unwrap().iter().find(|o| o["instance"] == instance).unwrap();
    let key = inst["outputs"][0]["key"].as_str().unwrap();
    let part = p.cache().join(key).join("part-00000.parquet");
    let bytes = std::fs::read(&part).unwrap_or_else(|e| panic!("{}: {e}", part.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(std::fs::File::open(&part).unwrap(), 1024).unwrap();
    (reader.map(Result::unwrap).collect(), bytes)
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name).unwrap().as_any().downcast_ref::<T>().unwrap()
}

fn strings(b: &RecordBatch, name: &str) -> Vec<String> {
    col::<StringArray>(b, name).iter().map(|s| s.unwrap().to_string()).collect()
}

#[test]
fn dataset_stages_write_the_dataset_table() {
    let p = Project::new();
    let f = p.pipeline("datasets", &pipeline());
    let run = p.run(&["run", &f]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("done: 5 ran, 0 cached"), "{}", run.stdout);

    let (batches, bytes) = table(&p, &f, "cifar");
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["image_id", "label", "label_name", "split", "source"]);
    assert_eq!(col::<UInt32Array>(b, "image_id").values().to_vec(), (0..9).collect::<Vec<u32>>());
    assert_eq!(col::<UInt16Array>(b, "label").values().to_vec(), [3, 26, 3, 97, 26, 3, 26, 97, 3]);
    assert_eq!(strings(b, "label_name")[..2], ["bear", "crab"]);
    assert_eq!(strings(b, "split")[5..7], ["train", "test"]);
    assert_eq!(strings(b, "source")[6], "test.bin#0");

    let (hub, _) = table(&p, &f, "hub");
    assert_eq!(col::<UInt32Array>(&hub[0], "image_id").values().to_vec(), [6, 7, 8], "test ids follow train ids");
    assert_eq!(strings(&hub[0], "label_name"), ["crab", "wolf", "bear"]);

    let (folder, _) = table(&p, &f, "folder");
    let b = &folder[0];
    assert_eq!(b.num_rows(), 7);
    assert_eq!(strings(b, "label_name")[..2], ["tabby, tabby cat", "tabby, tabby cat"]);
    assert!(strings(b, "source").contains(&"test/n09999999/very_wide.png".to_string()));

    let (t, _) = table(&p, &f, "table");
    assert_eq!(strings(&t[0], "label_name"), ["rocket", "cat", "cat"]);

    let (shapes, _) = table(&p, &f, "shapes");
    let ids = col::<UInt32Array>(&shapes[0], "image_id").values().to_vec();
    assert_eq!(ids.len(), 12, "2 per class per split");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(strings(&shapes[0], "source").iter().all(|s| s.starts_with("synthetic:")));

    // rerunning from scratch gives the same bytes
    let q = Project::new();
    let g = q.pipeline("datasets", &pipeline());
    assert_eq!(q.run(&["run", &g]).code, 0);
    assert_eq!(table(&q, &g, "cifar").1, bytes, "deterministic bytes");
    let again = p.run(&["run", &f]);
    assert!(again.stdout.contains("done: 0 ran, 5 cached"), "{}", again.stdout);
}

#[test]
fn dataset_parameter_mistakes_are_reported() {
    let p = Project::new();
    let f = p.pipeline("bad", "name: bad\nstages:\n  d:\n    kind: dataset\n    format: cifar100\n");
    // cross-parameter rules are checked by `plan`, with a position
    let r = p.run(&["plan", &f]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.yaml:5:13: stage 'd': parameter 'format': a cifar100 dataset needs `path`"), "{}", r.stderr);

    let f = p.pipeline("bad2", "name: bad2\nstages:\n  d:\n    kind: dataset\n    format: synthetic\n    sample: 3\n");
    let r = p.run(&["plan", &f]);
    assert!(r.stderr.contains("parameter 'sample': `sample` draws per_class/limit records at random"), "{}", r.stderr);

    let f = p.pipeline("bad4", "name: bad4\nstages:\n  d:\n    kind: dataset\n    format: synthetic\n    labels: coarse\n");
    let r = p.run(&["plan", &f]);
    assert!(r.stderr.contains("only cifar100 datasets read `labels`, this one is synthetic"), "{}", r.stderr);

    let f = p.pipeline("bad3", "name: bad3\nstages:\n  d:\n    kind: dataset\n    format: cifar10\n");
    let r = p.run(&["plan", &f]);
    assert!(r.stderr.contains("expected one of cifar100, imagefolder, parquet, synthetic"), "{}", r.stderr);
}
