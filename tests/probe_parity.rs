//! Parity with scikit-learn, against goldens written by
//! `tests/fixtures/probe/make_probe_goldens.py`, plus determinism, warm-start and
//! sanity properties of the fit.

use std::collections::BTreeMap as HashMap;
use std::path::PathBuf;

use saeflow::probe::{
    ClassificationMetrics, Csr, Dense, Design, LogRegConfig, LogRegModel, ProbeError, Scale, Scaling, classification_metrics, fit,
    objective,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Mat {
    format: String,
    n_rows: usize,
    n_cols: usize,
    data: Vec<f64>,
    indptr: Option<Vec<usize>>,
    indices: Option<Vec<u32>>,
}

#[derive(Deserialize, Debug)]
struct Metrics {
    labels: Vec<u32>,
    accuracy: f64,
    precision: Vec<f64>,
    recall: Vec<f64>,
    f1: Vec<f64>,
    support: Vec<u64>,
    macro_f1: f64,
    macro_precision: f64,
    macro_recall: f64,
    confusion_nz: Vec<[u64; 3]>,
}

#[derive(Deserialize)]
struct Fit {
    c: f64,
    n_iter: usize,
    coef: Vec<f64>,
    intercept: Vec<f64>,
    objective: f64,
    pred_test: Vec<u32>,
    proba_test: Vec<f64>,
    metrics_test: Metrics,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    versions: HashMap<String, String>,
    n_classes: usize,
    fit_intercept: bool,
    x_train: Mat,
    y_train: Vec<u32>,
    x_test: Mat,
    y_test: Vec<u32>,
    fits: Vec<Fit>,
    scale_maxabs: Option<Vec<f64>>,
    scale_std: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct MetricCase {
    name: String,
    y_true: Vec<u32>,
    y_pred: Vec<u32>,
    labels: Option<Vec<u32>>,
    expected: Metrics,
}

#[derive(Deserialize)]
struct MetricFile {
    cases: Vec<MetricCase>,
}

fn fixture(name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/probe", &format!("{name}.json")].iter().collect();
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("fixture {}: {e}; run `python3 tests/fixtures/probe/make_probe_goldens.py`", p.display()))
}

fn load(name: &str) -> Case {
    let case: Case = serde_json::from_str(&fixture(name)).expect("fixture json");
    assert!(case.versions.contains_key("sklearn"));
    case
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter()
        .map(|&x| {
            let y = x as f32;
            assert_eq!(y as f64, x, "fixture value not exact in f32");
            y
        })
        .collect()
}

fn dense(m: &Mat) -> Dense {
    assert_eq!(m.format, "dense");
    Dense::new(m.n_rows, m.n_cols, f32s(&m.data)).unwrap()
}

fn csr(m: &Mat) -> Csr {
    if m.format == "csr" {
        return Csr::new(m.n_rows, m.n_cols, m.indptr.clone().unwrap(), m.indices.clone().unwrap(), f32s(&m.data)).unwrap();
    }
    // dense -> csr (drop zeros)
    let (mut indptr, mut indices, mut data) = (vec![0], vec![], vec![]);
    for r in 0..m.n_rows {
        for c in 0..m.n_cols {
            let v = m.data[r * m.n_cols + c];
            if v != 0.0 {
                indices.push(c as u32);
                data.push(v as f32);
            }
        }
        indptr.push(indices.len());
    }
    Csr::new(m.n_rows, m.n_cols, indptr, indices, data).unwrap()
}

fn confusion_dense(m: &Metrics) -> Vec<u64> {
    let n = m.labels.len();
    let mut c = vec![0u64; n * n];
    for &[i, j, v] in &m.confusion_nz {
        c[i as usize * n + j as usize] = v;
    }
    c
}

/// Exact (bitwise) equality with scikit-learn's metrics.
fn assert_metrics_exact(name: &str, got: &ClassificationMetrics, exp: &Metrics) {
    assert_eq!(got.labels, exp.labels, "{name}: labels");
    assert_eq!(got.support, exp.support, "{name}: support");
    assert_eq!(got.confusion, confusion_dense(exp), "{name}: confusion");
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got.precision), bits(&exp.precision), "{name}: precision");
    assert_eq!(bits(&got.recall), bits(&exp.recall), "{name}: recall");
    assert_eq!(bits(&got.f1), bits(&exp.f1), "{name}: f1");
    assert_eq!(got.accuracy.to_bits(), exp.accuracy.to_bits(), "{name}: accuracy");
    assert_eq!(got.macro_f1.to_bits(), exp.macro_f1.to_bits(), "{name}: macro f1");
    assert_eq!(got.macro_precision.to_bits(), exp.macro_precision.to_bits(), "{name}: macro precision");
    assert_eq!(got.macro_recall.to_bits(), exp.macro_recall.to_bits(), "{name}: macro recall");
}

#[test]
fn metrics_match_sklearn_bit_for_bit() {
    let file: MetricFile = serde_json::from_str(&fixture("metrics")).unwrap();
    assert!(file.cases.len() >= 10);
    for c in &file.cases {
        let got = classification_metrics(&c.y_true, &c.y_pred, c.labels.as_deref()).unwrap();
        assert_metrics_exact(&c.name, &got, &c.expected);
    }
}

fn cfg(c: f64, fit_intercept: bool) -> LogRegConfig {
    LogRegConfig { c, max_iter: 10_000, tol: 1e-10, fit_intercept, threads: 1 }
}

/// Fit each C of a fixture and compare with scikit-learn. Returns the models.
fn check_fits<D: Design>(case: &Case, x_tr: &D, x_te: &D) -> Vec<LogRegModel> {
    let k = case.n_classes;
    let mut models = Vec::new();
    for f in &case.fits {
        let cfg = cfg(f.c, case.fit_intercept);
        let m = fit(x_tr, &case.y_train, k, &cfg, None).unwrap();
        let name = format!("{} C={}", case.name, f.c);
        // Our objective function reproduces the Python-side number at
        // scikit-learn's coefficients: both sides use the same objective.
        let sk_obj = objective(x_tr, &case.y_train, k, &cfg, &f.coef, &f.intercept).unwrap();
        assert!(
            (sk_obj - f.objective).abs() <= 1e-12 * f.objective.abs(),
            "{name}: objective definitions differ: rust {sk_obj} vs python {}",
            f.objective
        );
        assert!(
            (m.objective - objective(x_tr, &case.y_train, k, &cfg, &m.coef, &m.intercept).unwrap()).abs() <= 1e-14 * m.objective.abs(),
            "{name}: reported objective is not the objective at the returned coefficients"
        );
        let rel_gap = (m.objective - sk_obj) / sk_obj.abs();
        assert!(m.objective <= sk_obj * (1.0 + 1e-6), "{name}: objective {} above sklearn's {sk_obj}", m.objective);

        let pred = m.predict(x_te).unwrap();
        let agree = pred.iter().zip(&f.pred_test).filter(|(a, b)| a == b).count();
        let agreement = agree as f64 / pred.len() as f64;
        assert!(agreement >= 0.99, "{name}: prediction agreement {agreement}");

        // metrics on scikit-learn's predictions: exact
        let on_sk = classification_metrics(&case.y_test, &f.pred_test, None).unwrap();
        assert_metrics_exact(&name, &on_sk, &f.metrics_test);
        // metrics on ours: macro F1 within 0.01
        let ours = classification_metrics(&case.y_test, &pred, None).unwrap();
        let df1 = (ours.macro_f1 - f.metrics_test.macro_f1).abs();
        assert!(df1 <= 0.01, "{name}: macro F1 differs by {df1}");

        let proba = m.predict_proba(x_te).unwrap();
        assert_eq!(proba.len(), f.proba_test.len());
        let dp = proba.iter().zip(&f.proba_test).fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
        assert!(dp <= 1e-4, "{name}: probabilities differ by up to {dp}");

        let num: f64 = m.coef.iter().zip(&f.coef).map(|(a, b)| (a - b).powi(2)).sum();
        let den: f64 = f.coef.iter().map(|b| b * b).sum();
        let dcoef = (num / den).sqrt();
        assert!(dcoef <= 1e-3, "{name}: relative coef distance {dcoef}");
        assert_ne!(m.stop, saeflow::probe::logreg::Stop::MaxIter, "{name}: stopped on max_iter");
        assert_eq!(m.converged, m.stop == saeflow::probe::logreg::Stop::Gradient, "{name}: converged means the gradient criterion");
        eprintln!(
            "{name}: obj rust {:.15e} sklearn {sk_obj:.15e} rel gap {rel_gap:.3e}; \
             agreement {agreement}; |dF1| {df1:.2e}; max|dproba| {dp:.2e}; \
             rel coef dist {dcoef:.2e}; iters rust {} (fev {}, stop {}, max|g| {:.1e}) sklearn {}",
            m.objective,
            m.n_iter,
            m.n_fev,
            m.stop.as_str(),
            m.grad_max_norm,
            f.n_iter
        );
        models.push(m);
    }
    models
}

fn check_case(name: &str) {
    let case = load(name);
    let (tr, te) = (csr(&case.x_train), csr(&case.x_test));
    let sparse_models = check_fits(&case, &tr, &te);
    if case.x_train.format == "dense" {
        let dense_models = check_fits(&case, &dense(&case.x_train), &dense(&case.x_test));
        // same sums in the same order: identical fits
        assert_eq!(sparse_models, dense_models, "{name}: dense and csr fits differ");
    }
}

#[test]
fn parity_dense12() {
    check_case("dense12");
}

#[test]
fn parity_sparse15_with_class_absent_from_test() {
    let case = load("sparse15");
    let absent = (case.n_classes - 1) as u32;
    assert!(!case.y_test.contains(&absent) && case.y_train.contains(&absent));
    check_case("sparse15");
}

#[test]
fn parity_tiny3() {
    check_case("tiny3");
    check_case("tiny3_nointercept");
}

#[test]
fn parity_multiple_c() {
    check_case("multic");
}

#[test]
fn parity_binary_maps_to_sklearn_binary_model() {
    check_case("binary");
}

#[test]
fn scaling_matches_sklearn_scalers() {
    let case = load("sparse15");
    let x = csr(&case.x_train);
    let maxabs = Scaling::fit(&x, Scale::MaxAbs);
    assert_eq!(Some(&maxabs.scale), case.scale_maxabs.as_ref());
    let std = Scaling::fit(&x, Scale::Std);
    assert_eq!(Some(&std.scale), case.scale_std.as_ref());
    // scaled data has max |x| = 1 in every non-empty column
    let scaled = maxabs.apply(&x).unwrap();
    let m = scaled.column_max_abs();
    assert!(m.iter().all(|&v| v == 0.0 || v == 1.0));
}

/// Small deterministic permutation (LCG-driven Fisher–Yates).
fn shuffled(y: &[u32], seed: u64) -> Vec<u32> {
    let mut v = y.to_vec();
    let mut s = seed;
    for i in (1..v.len()).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let j = ((s >> 33) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

#[test]
fn shuffled_labels_give_chance_macro_f1() {
    let case = load("sparse15");
    let (tr, te) = (csr(&case.x_train), csr(&case.x_test));
    let k = case.n_classes;
    let real = fit(&tr, &case.y_train, k, &LogRegConfig::default(), None).unwrap();
    let real_f1 = classification_metrics(&case.y_test, &real.predict(&te).unwrap(), None).unwrap().macro_f1;
    let mut f1s = Vec::new();
    for seed in 1..4 {
        let y = shuffled(&case.y_train, seed);
        let m = fit(&tr, &y, k, &LogRegConfig::default(), None).unwrap();
        let p = m.predict(&te).unwrap();
        f1s.push(classification_metrics(&case.y_test, &p, None).unwrap().macro_f1);
    }
    let mean = f1s.iter().sum::<f64>() / f1s.len() as f64;
    eprintln!("macro F1 real {real_f1:.3}, shuffled {f1s:?} (chance ~ {:.3})", 1.0 / k as f64);
    assert!(real_f1 > 0.4, "real labels should be learnable: {real_f1}");
    assert!(mean < 0.15, "shuffled labels should score near chance: {f1s:?}");
}

#[test]
fn warm_start_from_neighbouring_c_is_faster_and_same_optimum() {
    let case = load("multic");
    let x = csr(&case.x_train);
    let k = case.n_classes;
    let c1 = LogRegConfig { tol: 1e-8, ..cfg(1.0, true) };
    let c2 = LogRegConfig { c: 1.25, ..c1.clone() };
    let m1 = fit(&x, &case.y_train, k, &c1, None).unwrap();
    let cold = fit(&x, &case.y_train, k, &c2, None).unwrap();
    let warm = fit(&x, &case.y_train, k, &c2, Some(&m1)).unwrap();
    eprintln!("warm start: cold {} iters, warm {} iters, objectives {} {}", cold.n_iter, warm.n_iter, cold.objective, warm.objective);
    assert!(warm.n_iter < cold.n_iter);
    assert!((warm.objective - cold.objective).abs() <= 1e-10 * cold.objective);
    let dp = cold.predict_proba(&x).unwrap().iter().zip(warm.predict_proba(&x).unwrap()).fold(0.0f64, |a, (p, q)| a.max((p - q).abs()));
    assert!(dp < 1e-5, "warm and cold probabilities differ by {dp}");
}

#[test]
fn fits_are_reproducible_and_thread_count_invariant() {
    let case = load("sparse15");
    let x = csr(&case.x_train);
    let base = LogRegConfig::default();
    let a = fit(&x, &case.y_train, case.n_classes, &base, None).unwrap();
    let b = fit(&x, &case.y_train, case.n_classes, &base, None).unwrap();
    assert_eq!(a, b);
    for threads in [2, 3, 7] {
        let c = fit(&x, &case.y_train, case.n_classes, &LogRegConfig { threads, ..base.clone() }, None).unwrap();
        assert_eq!(a, c, "threads={threads} changed the fit");
    }
}

#[test]
fn class_without_training_samples_is_never_predicted() {
    let case = load("dense12");
    let (tr, te) = (csr(&case.x_train), csr(&case.x_test));
    let k = case.n_classes;
    let c = LogRegConfig::default();
    let m = fit(&tr, &case.y_train, k, &c, None).unwrap();
    // one extra class, in the middle of the index range: shift labels >= 5 up
    let y_shift: Vec<u32> = case.y_train.iter().map(|&l| if l >= 5 { l + 1 } else { l }).collect();
    let m2 = fit(&tr, &y_shift, k + 1, &c, None).unwrap();
    let d = m.n_features;
    assert_eq!(m2.intercept[5], f64::NEG_INFINITY);
    assert!(m2.coef[5 * d..6 * d].iter().all(|&v| v == 0.0));
    for cls in 0..k {
        let c2 = if cls >= 5 { cls + 1 } else { cls };
        assert_eq!(&m.coef[cls * d..(cls + 1) * d], &m2.coef[c2 * d..(c2 + 1) * d]);
        assert_eq!(m.intercept[cls], m2.intercept[c2]);
    }
    assert_eq!(m.objective, m2.objective);
    let p2 = m2.predict_proba(&te).unwrap();
    assert!(p2.chunks(k + 1).all(|r| r[5] == 0.0 && (r.iter().sum::<f64>() - 1.0).abs() < 1e-12));
    assert!(!m2.predict(&te).unwrap().contains(&5));
}

#[test]
fn invalid_inputs_are_rejected_with_errors() {
    let case = load("tiny3");
    let x = csr(&case.x_train);
    let y = &case.y_train;
    let c = LogRegConfig::default();
    assert!(matches!(fit(&x, &y[1..], 3, &c, None), Err(ProbeError::Shape { .. })));
    assert!(matches!(fit(&x, y, 2, &c, None), Err(ProbeError::Label { .. })));
    let one = vec![1u32; y.len()];
    assert!(matches!(fit(&x, &one, 3, &c, None), Err(ProbeError::TooFewClasses { found: 1 })));
    let bad = LogRegConfig { c: 0.0, ..c.clone() };
    assert!(matches!(fit(&x, y, 3, &bad, None), Err(ProbeError::Config { .. })));
    let m = fit(&x, y, 3, &c, None).unwrap();
    assert!(matches!(fit(&x, y, 4, &c, Some(&m)), Err(ProbeError::WarmStart { .. })));
    let wrong = Csr::new(1, 2, vec![0, 0], vec![], vec![]).unwrap();
    assert!(matches!(m.predict(&wrong), Err(ProbeError::Shape { .. })));
    let msg = fit(&x, y, 2, &c, None).unwrap_err().to_string();
    assert!(msg.contains("expected") && msg.contains("got"), "{msg}");
}
