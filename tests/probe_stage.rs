//! The `split` and `probe` stages end to end: parity with scikit-learn through the whole pipeline
//! (tables in, predictions and macro F1 out), zero-feature images kept, chance on noise.

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, Float32Array, Float64Array, RecordBatch, StringArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use common::Project;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn write(path: &Path, batch: RecordBatch) {
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn pooled(ids: Vec<u32>, feats: Vec<u32>, vals: Vec<f32>) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("feature", DataType::UInt32, false),
        Field::new("value", DataType::Float32, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(UInt32Array::from(ids)), Arc::new(UInt32Array::from(feats)), Arc::new(Float32Array::from(vals))],
    )
    .unwrap()
}

fn split(ids: Vec<u32>, labels: Vec<u16>, train: Vec<bool>) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("label", DataType::UInt16, false),
        Field::new("label_name", DataType::Utf8, false),
        Field::new("fold", DataType::UInt8, false),
        Field::new("role", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from(ids)),
            Arc::new(UInt16Array::from(labels.clone())),
            Arc::new(StringArray::from_iter_values(labels.iter().map(|l| format!("c{l}")))),
            Arc::new(UInt8Array::from_iter_values(train.iter().map(|t| if *t { 0 } else { 1 }))),
            Arc::new(StringArray::from_iter_values(train.iter().map(|t| if *t { "train" } else { "test" }))),
        ],
    )
    .unwrap()
}

/// Read the single-part output `output` of `instance` as one batch.
fn read(p: &Project, file: &str, instance: &str, output: &str) -> RecordBatch {
    let plan = p.run(&["plan", file, "--json"]).json();
    let row = plan.as_array().unwrap().iter().find(|r| r["instance"] == instance).unwrap_or_else(|| panic!("no {instance}")).clone();
    let key = row["outputs"].as_array().unwrap().iter().find(|o| o["name"] == output).unwrap()["key"].as_str().unwrap().to_string();
    let f = File::open(p.cache().join(key).join("part-00000.parquet")).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    arrow_select::concat::concat_batches(&schema, &batches).unwrap()
}

fn f64_col(b: &RecordBatch, name: &str) -> f64 {
    b.column_by_name(name).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().value(0)
}

fn u64_col(b: &RecordBatch, name: &str) -> u64 {
    b.column_by_name(name).unwrap().as_any().downcast_ref::<UInt64Array>().unwrap().value(0)
}

#[test]
fn the_probe_stage_reproduces_scikit_learn_through_the_pipeline() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/probe/sparse15.json")).unwrap())
            .unwrap();
    let p = Project::new();
    std::fs::create_dir_all(p.root().join("data")).unwrap();
    let (mut ids, mut feats, mut vals) = (vec![], vec![], vec![]);
    let mut offset = 0u32;
    for part in ["x_train", "x_test"] {
        let x = &golden[part];
        let indptr: Vec<usize> = x["indptr"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let indices: Vec<u32> = x["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let data: Vec<f32> = x["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        for r in 0..indptr.len() - 1 {
            for j in indptr[r]..indptr[r + 1] {
                ids.push(offset + r as u32);
                feats.push(indices[j]);
                vals.push(data[j]);
            }
        }
        offset += (indptr.len() - 1) as u32;
    }
    write(&p.root().join("data/feats.parquet"), pooled(ids, feats, vals));
    let y_train: Vec<u16> = golden["y_train"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect();
    let y_test: Vec<u16> = golden["y_test"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect();
    let n_train = y_train.len();
    let labels: Vec<u16> = y_train.iter().chain(&y_test).copied().collect();
    let train: Vec<bool> = (0..labels.len()).map(|i| i < n_train).collect();
    write(&p.root().join("data/split.parquet"), split((0..labels.len() as u32).collect(), labels, train));
    let f = p.pipeline(
        "parity",
        "name: parity\nstages:\n  feats: {kind: table, path: data/feats.parquet, type: pooled}\n  split: {kind: table, path: data/split.parquet, type: split}\n  probe: {kind: probe, features: feats, split: split, tol: 1.0e-10, max_iter: 10000}\n",
    );
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let fit = &golden["fits"][0];
    let want: Vec<u16> = fit["pred_test"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect();
    let preds = read(&p, &f, "probe", "predictions");
    let got = preds.column_by_name("pred").unwrap().as_any().downcast_ref::<UInt16Array>().unwrap();
    let agree = (0..want.len()).filter(|&i| got.value(i) == want[i]).count();
    assert!(agree * 100 >= want.len() * 99, "predictions agree on {agree}/{}", want.len());
    let metrics = read(&p, &f, "probe", "metrics");
    let sk_f1 = fit["metrics_test"]["macro_f1"].as_f64().unwrap();
    assert!((f64_col(&metrics, "macro_f1") - sk_f1).abs() <= 0.01, "macro F1 {} vs scikit-learn {sk_f1}", f64_col(&metrics, "macro_f1"));
    assert_eq!(u64_col(&metrics, "n_test"), y_test.len() as u64);
    assert_eq!(u64_col(&metrics, "n_train"), n_train as u64);
    // tol 1e-10 is below what f64 progress reaches here: the fit stalls (honestly not "converged")
    let stop = metrics.column_by_name("stop").unwrap().as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
    let converged = metrics.column_by_name("converged").unwrap().as_any().downcast_ref::<arrow_array::BooleanArray>().unwrap().value(0);
    assert!(stop == "gradient" || stop == "objective_stalled", "{stop}");
    assert_eq!(converged, stop == "gradient");
    assert!(f64_col(&metrics, "grad_norm") > 0.0);

    // the coefficients table is the fitted model: scikit-learn's coef_ and intercept_
    let d = golden["x_train"]["n_cols"].as_u64().unwrap() as usize;
    let k = fit["intercept"].as_array().unwrap().len();
    let (w, b) = coefficients(&read(&p, &f, "probe", "coefficients"), k, d);
    let want_w: Vec<f64> = fit["coef"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let want_b: Vec<f64> = fit["intercept"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let rel =
        |a: &[f64], b: &[f64]| (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / b.iter().map(|y| y * y).sum::<f64>()).sqrt();
    assert!(rel(&w, &want_w) <= 1e-3, "coef differs by {}", rel(&w, &want_w));
    assert!(rel(&b, &want_b) <= 1e-3, "intercept differs by {}", rel(&b, &want_b));

    // with scaled features, weight / scale applies to the raw features: the table predicts what the probe predicted
    let f = p.pipeline(
        "parity",
        "name: parity\nstages:\n  feats: {kind: table, path: data/feats.parquet, type: pooled}\n  split: {kind: table, path: data/split.parquet, type: split}\n  probe: {kind: probe, features: feats, split: split, scale: maxabs}\n",
    );
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (w, b) = coefficients(&read(&p, &f, "probe", "coefficients"), k, d);
    let x = &golden["x_test"];
    let indptr: Vec<usize> = x["indptr"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let indices: Vec<usize> = x["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = x["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32 as f64).collect();
    let preds = read(&p, &f, "probe", "predictions");
    let got = preds.column_by_name("pred").unwrap().as_any().downcast_ref::<UInt16Array>().unwrap();
    for r in 0..indptr.len() - 1 {
        let score = |c: usize| b[c] + (indptr[r]..indptr[r + 1]).map(|j| data[j] * w[c * d + indices[j]]).sum::<f64>();
        let best = (0..k).max_by(|&a, &c| score(a).total_cmp(&score(c)).then(c.cmp(&a))).unwrap();
        assert_eq!(got.value(r) as usize, best, "test image {r}");
    }
}

/// A coefficients table as a dense `k × d` weight matrix on the raw features (weight / scale) and
/// `k` intercepts (the rows without a feature).
fn coefficients(t: &RecordBatch, k: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut w, mut b) = (vec![0.0; k * d], vec![f64::NAN; k]);
    let label = t.column_by_name("label").unwrap().as_any().downcast_ref::<UInt16Array>().unwrap();
    let feature = t.column_by_name("feature").unwrap().as_any().downcast_ref::<UInt32Array>().unwrap();
    let weight = t.column_by_name("weight").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
    let scale = t.column_by_name("scale").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
    for r in 0..t.num_rows() {
        let c = label.value(r) as usize;
        if feature.is_null(r) {
            b[c] = weight.value(r);
        } else {
            w[c * d + feature.value(r) as usize] = weight.value(r) / scale.value(r);
        }
    }
    assert!(b.iter().all(|x| x.is_finite()), "an intercept row per class");
    (w, b)
}

#[test]
fn images_without_features_are_zero_rows_never_dropped() {
    let p = Project::new();
    std::fs::create_dir_all(p.root().join("data")).unwrap();
    // 40 images, 2 classes; odd test images have no feature row at all
    let n = 40u32;
    let labels: Vec<u16> = (0..n).map(|i| (i % 2) as u16).collect();
    let train: Vec<bool> = (0..n).map(|i| i < 20).collect();
    let (mut ids, mut feats, mut vals) = (vec![], vec![], vec![]);
    for i in 0..n {
        if i >= 20 && i % 4 == 3 {
            continue;
        }
        ids.push(i);
        feats.push(labels[i as usize] as u32 * 10 + i % 3);
        vals.push(1.0);
    }
    write(&p.root().join("data/feats.parquet"), pooled(ids, feats, vals));
    write(&p.root().join("data/split.parquet"), split((0..n).collect(), labels, train));
    let f = p.pipeline(
        "zeros",
        "name: zeros\nstages:\n  feats: {kind: table, path: data/feats.parquet, type: pooled}\n  split: {kind: table, path: data/split.parquet, type: split}\n  probe: {kind: probe, features: feats, split: split}\n",
    );
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let metrics = read(&p, &f, "probe", "metrics");
    assert_eq!(u64_col(&metrics, "n_test"), 20, "the 5 featureless test images still count");
    assert_eq!(read(&p, &f, "probe", "predictions").num_rows(), 20);
}

#[test]
fn split_and_probe_sweep_on_mock_features_with_signal_and_on_noise() {
    let p = Project::new();
    let f = p.pipeline(
        "sweep",
        r#"
name: sweep
stages:
  dataset: {kind: mock.dataset, classes: 10, per_class: 30}
  features:
    kind: mock.features
    from: dataset
    matrix: {layer: [6, 10], signal: [0.0, 0.8]}
  split:
    kind: split
    from: dataset
    matrix: {train_folds: [1, 5]}
  probe: {kind: probe, features: features, split: split}
"#,
    );
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for layer in [6, 10] {
        for folds in [1, 5] {
            let noise = read(&p, &f, &format!("probe[layer={layer},signal=0.0,train_folds={folds}]"), "metrics");
            let signal = read(&p, &f, &format!("probe[layer={layer},signal=0.8,train_folds={folds}]"), "metrics");
            assert!(f64_col(&noise, "macro_f1") < 0.3, "noise gives near-chance F1 (0.1): {}", f64_col(&noise, "macro_f1"));
            assert!(f64_col(&signal, "macro_f1") > 0.6, "signal is found: {}", f64_col(&signal, "macro_f1"));
            assert_eq!(u64_col(&signal, "n_train") + u64_col(&signal, "n_test"), 300);
            assert_eq!(u64_col(&signal, "n_train"), 30 * folds as u64, "{folds} of 10 folds train");
            // the variant's coordinates are columns of every result row, as the id writes them
            let layer_col = signal.column_by_name("layer").unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap().value(0);
            assert_eq!(layer_col, layer.to_string());
        }
    }
    let per_class = read(&p, &f, "probe[layer=6,signal=0.8,train_folds=5]", "per_class");
    assert_eq!(per_class.num_rows(), 10);
    assert!(per_class.column_by_name("label_name").is_some());
}

#[test]
fn a_c_grid_is_chosen_by_inner_cross_validation() {
    let p = Project::new();
    let f = p.pipeline(
        "grid",
        r#"
name: grid
stages:
  dataset: {kind: mock.dataset, classes: 6, per_class: 40}
  features: {kind: mock.features, from: dataset, signal: 0.6, features: 512}
  split: {kind: split, from: dataset, folds: 4, train_folds: 2}
  probe: {kind: probe, features: features, split: split, c_grid: [0.001, 0.1, 10.0], cv_folds: 3}
"#,
    );
    let plan = p.run(&["plan", &f]);
    assert!(plan.stdout.contains("1 probe (10 fits)"), "plan counts 3 grid values × 3 folds + the final fit: {}", plan.stdout);
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let cv = read(&p, &f, "probe", "cv");
    assert_eq!(cv.num_rows(), 3 * 3, "one row per grid value and inner fold");
    let cs = cv.column_by_name("c").unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone();
    let f1 = cv.column_by_name("macro_f1").unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone();
    // the chosen C is the grid value with the best mean inner macro F1 (ties: the smaller)
    let mut means: Vec<(f64, f64)> = Vec::new();
    for c in [0.001, 0.1, 10.0] {
        let v: Vec<f64> = (0..cv.num_rows()).filter(|&i| cs.value(i) == c).map(|i| f1.value(i)).collect();
        means.push((c, v.iter().sum::<f64>() / v.len() as f64));
    }
    let best = means.iter().fold(means[0], |b, m| if m.1 > b.1 { *m } else { b });
    let metrics = read(&p, &f, "probe", "metrics");
    assert_eq!(f64_col(&metrics, "c"), best.0, "{means:?}");
    // without a grid, the cv table is empty and C is the fixed one
    let g = p.pipeline(
        "fixed",
        "name: fixed\nstages:\n  dataset: {kind: mock.dataset, classes: 3, per_class: 20}\n  features: {kind: mock.features, from: dataset}\n  split: {kind: split, from: dataset, folds: 4}\n  probe: {kind: probe, features: features, split: split, c: 0.5}\n",
    );
    assert_eq!(p.run(&["run", &g]).code, 0);
    assert_eq!(read(&p, &g, "probe", "cv").num_rows(), 0);
    assert_eq!(f64_col(&read(&p, &g, "probe", "metrics"), "c"), 0.5);
}
