//! pool, binarize, clean and fuse against numpy goldens (tests/fixtures/features/
//! make_feature_goldens.py) on a hand-made code table: counts exact, sums to 1e-6 relative.

mod common;

use std::fs::File;
use std::sync::Arc;

use arrow_array::{Array, Float32Array, RecordBatch, UInt16Array, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use common::Project;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/features/goldens.json")).unwrap())
        .unwrap()
}

fn write(path: &std::path::Path, batch: RecordBatch) {
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn setup(p: &Project, g: &Value) {
    std::fs::create_dir_all(p.root().join("data")).unwrap();
    let codes = g["codes"].as_array().unwrap();
    let col = |i: usize| codes.iter().map(move |r| r[i].clone());
    let schema = Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("token", DataType::UInt16, false),
        Field::new("feature", DataType::UInt32, false),
        Field::new("value", DataType::Float32, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from_iter_values(col(0).map(|v| v.as_u64().unwrap() as u32))),
            Arc::new(UInt16Array::from_iter_values(col(1).map(|v| v.as_u64().unwrap() as u16))),
            Arc::new(UInt32Array::from_iter_values(col(2).map(|v| v.as_u64().unwrap() as u32))),
            Arc::new(Float32Array::from_iter_values(col(3).map(|v| v.as_f64().unwrap() as f32))),
        ],
    )
    .unwrap();
    write(&p.root().join("data/codes.parquet"), batch);
    let t = g["totals"].as_array().unwrap();
    let tc = |i: usize| t.iter().map(move |r| r[i].clone());
    let schema = Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("feature", DataType::UInt32, false),
        Field::new("sum", DataType::Float32, false),
        Field::new("max", DataType::Float32, false),
        Field::new("count", DataType::UInt32, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from_iter_values(tc(0).map(|v| v.as_u64().unwrap() as u32))),
            Arc::new(UInt32Array::from_iter_values(tc(1).map(|v| v.as_u64().unwrap() as u32))),
            Arc::new(Float32Array::from_iter_values(tc(2).map(|v| v.as_f64().unwrap() as f32))),
            Arc::new(Float32Array::from_iter_values(tc(3).map(|v| v.as_f64().unwrap() as f32))),
            Arc::new(UInt32Array::from_iter_values(tc(4).map(|v| v.as_u64().unwrap() as u32))),
        ],
    )
    .unwrap();
    write(&p.root().join("data/totals.parquet"), batch);
}

fn output(p: &Project, file: &str, instance: &str, out: &str) -> Vec<RecordBatch> {
    let plan = p.run(&["plan", file, "--json"]).json();
    let row =
        plan.as_array().unwrap().iter().find(|r| r["instance"] == instance).unwrap_or_else(|| panic!("no instance {instance}")).clone();
    let key = row["outputs"].as_array().unwrap().iter().find(|o| o["name"] == out).unwrap()["key"].as_str().unwrap().to_string();
    let mut batches = Vec::new();
    let mut parts: Vec<_> = std::fs::read_dir(p.cache().join(&key))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    parts.sort();
    for part in parts {
        batches.extend(ParquetRecordBatchReaderBuilder::try_new(File::open(part).unwrap()).unwrap().build().unwrap().map(|b| b.unwrap()));
    }
    batches
}

fn pooled_rows(batches: &[RecordBatch]) -> Vec<(u32, u32, f32)> {
    let mut rows = Vec::new();
    for b in batches {
        let c = |n: &str| b.column_by_name(n).unwrap().clone();
        let (i, f, v) = (c("image_id"), c("feature"), c("value"));
        let (i, f, v) = (
            i.as_any().downcast_ref::<UInt32Array>().unwrap(),
            f.as_any().downcast_ref::<UInt32Array>().unwrap(),
            v.as_any().downcast_ref::<Float32Array>().unwrap(),
        );
        for r in 0..b.num_rows() {
            rows.push((i.value(r), f.value(r), v.value(r)));
        }
    }
    rows
}

fn golden_rows(v: &Value) -> Vec<(u32, u32, f32)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap() as u32, r[1].as_u64().unwrap() as u32, r[2].as_f64().unwrap() as f32))
        .collect()
}

fn assert_pooled(got: &[(u32, u32, f32)], want: &[(u32, u32, f32)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0, g.1), (w.0, w.1), "{what}: ids");
        let tol = 1e-6 * w.2.abs().max(1.0);
        assert!((g.2 - w.2).abs() <= tol, "{what}: image {} feature {}: {} vs numpy {}", g.0, g.1, g.2, w.2);
    }
}

const PIPELINE: &str = r#"
name: feats
stages:
  codes: {kind: table, path: data/codes.parquet, type: codes}
  totals: {kind: table, path: data/totals.parquet, type: totals}
  from_totals: {kind: pool, totals: totals, tokens: 8, matrix: {method: [sum, mean, max, count]}}
  from_codes: {kind: pool, codes: codes, tokens: 8, matrix: {method: [top1, top3, sum, count]}}
  bin: {kind: binarize, from: "from_totals[method=sum]", matrix: {mode: [threshold, cap]}}
  clean: {kind: clean, from: codes, matrix: {occurrence: [top1, any], max_images: [5, 0.2]}}
  layers: {kind: pool, codes: codes, totals: totals, include: [{layer: 6, method: top1}, {layer: 10, method: sum}]}
  fused: {kind: fuse, from: {from: layers, over: [layer, method]}}
"#;

#[test]
fn pool_binarize_clean_and_fuse_match_numpy() {
    let g = golden();
    let p = Project::new();
    setup(&p, &g);
    let f = p.pipeline("feats", PIPELINE);
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for m in ["sum", "mean", "max", "count"] {
        let got = pooled_rows(&output(&p, &f, &format!("from_totals[method={m}]"), "pooled"));
        assert_pooled(&got, &golden_rows(&g["pooled"][m]), &format!("pool {m} (totals)"));
    }
    for m in ["top1", "top3", "sum", "count"] {
        let got = pooled_rows(&output(&p, &f, &format!("from_codes[method={m}]"), "pooled"));
        assert_pooled(&got, &golden_rows(&g["pooled"][m]), &format!("pool {m} (codes)"));
    }
    for mode in ["threshold", "cap"] {
        let got = pooled_rows(&output(&p, &f, &format!("bin[method=sum,mode={mode}]"), "pooled"));
        assert_pooled(&got, &golden_rows(&g["binarized"][mode]), &format!("binarize {mode}"));
    }
    for occ in ["top1", "any"] {
        for max in ["5", "0.2"] {
            let id = format!("clean[max_images={max},occurrence={occ}]");
            let want = &g["clean"][format!("{occ}-{max}")];
            let keep: Vec<u32> = output(&p, &f, &id, "keep")
                .iter()
                .flat_map(|b| b.column(0).as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec())
                .collect();
            let want_keep: Vec<u32> = want["keep"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(keep, want_keep, "{id}: kept features");
            let stats = &output(&p, &f, &id, "stats")[0];
            for field in ["images", "unique_before", "unique_after", "images_with_features"] {
                let got = stats.column_by_name(field).unwrap().as_any().downcast_ref::<UInt64Array>().unwrap().value(0);
                assert_eq!(got, want[field].as_u64().unwrap(), "{id}: {field}");
            }
        }
    }
    let fused = pooled_rows(&output(&p, &f, "fused[method=sum+top1,layer=6+10]", "pooled"));
    assert_pooled(&fused, &golden_rows(&g["fused"]), "fuse");
}

#[test]
fn pooling_a_cleaned_table_keeps_only_kept_features_and_bad_methods_fail_at_plan() {
    let g = golden();
    let p = Project::new();
    setup(&p, &g);
    let f = p.pipeline(
        "kept",
        "name: kept\nstages:\n  codes: {kind: table, path: data/codes.parquet, type: codes}\n  clean: {kind: clean, from: codes, max_images: 5}\n  pooled: {kind: pool, codes: codes, keep: clean.keep, method: top1}\n",
    );
    assert_eq!(p.run(&["run", &f]).code, 0);
    let keep: std::collections::BTreeSet<u32> =
        g["clean"]["top1-5"]["keep"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let want: Vec<(u32, u32, f32)> = golden_rows(&g["pooled"]["top1"]).into_iter().filter(|r| keep.contains(&r.1)).collect();
    assert_pooled(&pooled_rows(&output(&p, &f, "pooled", "pooled")), &want, "pool after clean");
    let bad = p.pipeline("bad", "name: bad\nstages:\n  codes: {kind: table, path: data/codes.parquet, type: codes}\n  pooled: {kind: pool, codes: codes, method: top}\n");
    let r = p.run(&["plan", &bad]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown pooling 'top'"), "{}", r.stderr);
}

fn write_labels(p: &Project, names: &[&str]) {
    let n = 30u32;
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
            Arc::new(UInt32Array::from_iter_values(0..n)),
            Arc::new(UInt16Array::from_iter_values((0..n).map(|i| (i % 3) as u16))),
            Arc::new(arrow_array::StringArray::from_iter_values((0..n).map(|i| names[(i % 3) as usize]))),
            Arc::new(arrow_array::StringArray::from_iter_values((0..n).map(|_| "test"))),
            Arc::new(arrow_array::StringArray::from_iter_values((0..n).map(|i| format!("img:{i}")))),
        ],
    )
    .unwrap();
    write(&p.root().join("data/labels.parquet"), batch);
    let ex = p.root().join("data/explanations");
    std::fs::create_dir_all(&ex).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/features/explanations/batch-0.jsonl.gz"),
        ex.join("batch-0.jsonl.gz"),
    )
    .unwrap();
}

#[test]
fn class_feature_tables_match_numpy_with_neuronpedia_explanations() {
    let g = golden();
    let p = Project::new();
    setup(&p, &g);
    let names: Vec<&str> = g["label_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    write_labels(&p, &names);
    let f = p.pipeline(
        "classes",
        r#"
name: classes
stages:
  codes: {kind: table, path: data/codes.parquet, type: codes}
  labels: {kind: table, path: data/labels.parquet, type: dataset}
  classes:
    kind: class_features
    codes: codes
    labels: labels
    top_k: 3
    explanations: data/explanations
    neuronpedia: gemma-2b/6-res-jb
    matrix: {occurrence: [top1, any]}
  dolphin: {kind: class_features, codes: codes, labels: labels, top_k: 3, only: [dolphin]}
"#,
    );
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for occ in ["top1", "any"] {
        let b = &output(&p, &f, &format!("classes[occurrence={occ}]"), "classes")[0];
        let want = g["class_tables"][occ].as_array().unwrap();
        assert_eq!(b.num_rows(), want.len(), "{occ}");
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let (label, name, rank, feat, n_img, l_img, expl) =
            (col("label"), col("label_name"), col("rank"), col("feature"), col("n_images"), col("label_images"), col("explanation"));
        let s = |a: &arrow_array::ArrayRef, i: usize| a.as_any().downcast_ref::<arrow_array::StringArray>().unwrap().value(i).to_string();
        for (i, w) in want.iter().enumerate() {
            assert_eq!(label.as_any().downcast_ref::<UInt16Array>().unwrap().value(i) as u64, w[0].as_u64().unwrap());
            assert_eq!(s(&name, i), w[1].as_str().unwrap());
            assert_eq!(rank.as_any().downcast_ref::<UInt16Array>().unwrap().value(i) as u64, w[2].as_u64().unwrap());
            assert_eq!(feat.as_any().downcast_ref::<UInt32Array>().unwrap().value(i) as u64, w[3].as_u64().unwrap(), "{occ} row {i}");
            assert_eq!(n_img.as_any().downcast_ref::<UInt32Array>().unwrap().value(i) as u64, w[4].as_u64().unwrap(), "{occ} row {i}");
            assert_eq!(l_img.as_any().downcast_ref::<UInt32Array>().unwrap().value(i) as u64, w[5].as_u64().unwrap());
            match w[6].as_str() {
                Some(text) => assert_eq!(s(&expl, i), text, "{occ} row {i}"),
                None => assert!(expl.is_null(i), "{occ} row {i}: no explanation is a null"),
            }
        }
    }
    let only = &output(&p, &f, "dolphin", "classes")[0];
    assert_eq!(only.num_rows(), 3);
    let bad = p.pipeline(
        "bad",
        "name: bad\nstages:\n  codes: {kind: table, path: data/codes.parquet, type: codes}\n  labels: {kind: table, path: data/labels.parquet, type: dataset}\n  c: {kind: class_features, codes: codes, labels: labels, only: [dolphn]}\n",
    );
    let r = p.run(&["run", &bad]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("label 'dolphn' is not in the dataset; did you mean 'dolphin'?"), "{}", r.stdout);
}
