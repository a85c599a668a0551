//! `probe`: a multinomial logistic-regression probe (scikit-learn's objective, see `probe/`) on
//! features of the images of a split, scored on the split's test images.
//!
//! Rows come from the split table: every image in it is a row, and an image with no feature row
//! is a zero vector, never dropped, so `n_test` always equals the split's test count. Features are
//! either long sparse tables (`image_id, feature, value`: pooled SAE features; duplicates summed)
//! or dense ones (`image_id, resid fixed_size_list<f32>`: End-of-Image residuals, ViT features).
//! Classes are the labels present in the split table, in label order; macro F1 is scikit-learn's
//! (`average="macro"`, `zero_division=0`, labels = those in the test truth and predictions).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StringArray, UInt16Array, UInt32Array,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};

use crate::engine::EngineError;
use crate::engine::job::{Job, Member, TableInput};
use crate::engine::stage::Stage;
use crate::plan::params::{choice, params};
use crate::plan::signature::{ParamType, Signature, input};
use crate::probe::logreg::Stop;
use crate::probe::{Csr, Dense, Design, LogRegConfig, Scale, Scaling, classification_metrics, fit};
use crate::spec::Coords;
use crate::spec::Value;
use crate::tables::{TableType, column};

pub struct Probe;

choice! {
    /// Column scaling fitted on the training rows, without centering.
    pub enum ScaleChoice { None = "none", MaxAbs = "maxabs", Std = "std" }
}

params! {
    /// `probe`'s parameters.
    pub struct ProbeParams {
        /// inverse L2 strength, as scikit-learn's C
        pub c: f64, ParamType::Float, default(1.0);
        /// L-BFGS iteration limit
        pub max_iter: usize, ParamType::min(1), default(1000);
        /// gradient max-norm tolerance (scikit-learn's tol; its default is 1e-4)
        pub tol: f64, ParamType::Float, default(1e-6);
        /// column scaling fitted on the training rows, without centering
        pub scale: ScaleChoice, ScaleChoice::param_type(), default("none");
        /// fit an unpenalised intercept per class
        pub fit_intercept: bool, ParamType::Bool, default(true);
        /// choose C from these values by inner stratified cross-validation on the training rows (warm starts along the grid);
        /// unset: use `c`
        pub c_grid: Option<Vec<f64>>, ParamType::List(Box::new(ParamType::Float)), default(Value::Null);
        /// inner folds for `c_grid`
        pub cv_folds: usize, ParamType::range(2, 50), default(5);
        /// seed of the inner folds
        pub seed: u64, ParamType::min(0), default(0);
        /// threads for the sparse products (results do not depend on it)
        pub threads: usize, ParamType::range(1, 256), default(2), not_in_key;
    }
}

/// A split row.
pub(crate) struct Row {
    pub image_id: u32,
    pub label: u16,
    pub label_name: String,
    pub train: bool,
}

pub(crate) fn read_split(t: &TableInput) -> Result<Vec<Row>, EngineError> {
    TableType::Split.check(t.schema()?.as_ref(), &t.instance).map_err(EngineError::Stage)?;
    let mut rows = Vec::new();
    for b in t.read() {
        let b = b?;
        let ids = column::<UInt32Array>(&b, "image_id", &t.instance)?;
        let labels = column::<UInt16Array>(&b, "label", &t.instance)?;
        let names = column::<StringArray>(&b, "label_name", &t.instance)?;
        let roles = column::<StringArray>(&b, "role", &t.instance)?;
        for i in 0..b.num_rows() {
            rows.push(Row {
                image_id: ids.value(i),
                label: labels.value(i),
                label_name: names.value(i).to_string(),
                train: roles.value(i) == "train",
            });
        }
    }
    rows.sort_by_key(|r| r.image_id);
    Ok(rows)
}

enum Features {
    Sparse { per_row: Vec<Vec<(u32, f32)>>, n_cols: usize, nnz: usize },
    Dense { data: Vec<f32>, width: usize },
}

/// A NaN or infinity in the features, named by image and feature (not a position in a buffer).
fn non_finite(instance: &str, image_id: u32, what: &str, v: f32) -> EngineError {
    EngineError::Stage(format!(
        "{instance}: image {image_id} has {what} = {v}; a probe needs finite features: find where it came from \
         (`saeflow show` on the upstream tables) and drop or fix that image"
    ))
}

/// Read a feature table into per-row features for the split's images (others are ignored).
fn read_features(t: &TableInput, row_of: &BTreeMap<u32, usize>, n_rows: usize) -> Result<Features, EngineError> {
    let schema = t.schema()?;
    let bad = |e: String| EngineError::Stage(e);
    if schema.field_with_name("feature").is_ok() {
        TableType::Pooled.check(&schema, &t.instance).map_err(bad)?;
        let mut per_row: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_rows];
        let mut n_cols = 0usize;
        for b in t.read() {
            let b = b?;
            let ids = b.column_by_name("image_id").and_then(|c| c.as_any().downcast_ref::<UInt32Array>().cloned());
            let feats = b.column_by_name("feature").and_then(|c| c.as_any().downcast_ref::<UInt32Array>().cloned());
            let vals = b.column_by_name("value").and_then(|c| c.as_any().downcast_ref::<Float32Array>().cloned());
            let (Some(ids), Some(feats), Some(vals)) = (ids, feats, vals) else {
                return Err(bad(format!("{}: unreadable pooled columns", t.instance)));
            };
            for i in 0..b.num_rows() {
                if let Some(&r) = row_of.get(&ids.value(i)) {
                    let v = vals.value(i);
                    if !v.is_finite() {
                        return Err(non_finite(&t.instance, ids.value(i), &format!("feature {}", feats.value(i)), v));
                    }
                    per_row[r].push((feats.value(i), v));
                }
                n_cols = n_cols.max(feats.value(i) as usize + 1);
            }
        }
        let mut nnz = 0;
        for r in &mut per_row {
            r.sort_by_key(|x| x.0);
            let mut merged: Vec<(u32, f32)> = Vec::with_capacity(r.len());
            for &(f, v) in r.iter() {
                match merged.last_mut() {
                    Some(last) if last.0 == f => last.1 += v,
                    _ => merged.push((f, v)),
                }
            }
            merged.retain(|x| x.1 != 0.0);
            nnz += merged.len();
            *r = merged;
        }
        Ok(Features::Sparse { per_row, n_cols, nnz })
    } else {
        // `resid` (eoi, vit) or `features` (dense)
        let column = if schema.field_with_name("resid").is_ok() { "resid" } else { TableType::Dense.vector_column() };
        let ty = if column == "resid" { TableType::Eoi } else { TableType::Dense };
        ty.check(&schema, &t.instance).map_err(bad)?;
        let width = match schema.field_with_name(column).map(|f| f.data_type().clone()) {
            Ok(DataType::FixedSizeList(_, w)) => w as usize,
            _ => return Err(bad(format!("{}: {column} is not a fixed-size list", t.instance))),
        };
        let mut data = vec![0f32; n_rows * width];
        for b in t.read() {
            let b = b?;
            let ids = b.column_by_name("image_id").and_then(|c| c.as_any().downcast_ref::<UInt32Array>().cloned());
            let lists = b.column_by_name(column).and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>().cloned());
            let (Some(ids), Some(lists)) = (ids, lists) else {
                return Err(bad(format!("{}: unreadable dense columns", t.instance)));
            };
            let values =
                lists.values().as_any().downcast_ref::<Float32Array>().cloned().ok_or_else(|| bad("resid values are not f32".into()))?;
            for i in 0..b.num_rows() {
                if let Some(&r) = row_of.get(&ids.value(i)) {
                    let start = lists.value_offset_at(i);
                    let row = &values.values()[start..start + width];
                    if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                        return Err(non_finite(&t.instance, ids.value(i), &format!("resid[{j}]"), row[j]));
                    }
                    data[r * width..(r + 1) * width].copy_from_slice(row);
                }
            }
        }
        Ok(Features::Dense { data, width })
    }
}

fn csr(per_row: &[Vec<(u32, f32)>], rows: &[usize], n_cols: usize) -> Result<Csr, EngineError> {
    let mut indptr = vec![0usize];
    let (mut indices, mut data) = (Vec::new(), Vec::new());
    for &r in rows {
        for &(f, v) in &per_row[r] {
            indices.push(f);
            data.push(v);
        }
        indptr.push(indices.len());
    }
    Csr::new(rows.len(), n_cols, indptr, indices, data).map_err(|e| EngineError::Stage(e.to_string()))
}

fn dense(data: &[f32], width: usize, rows: &[usize]) -> Result<Dense, EngineError> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&data[r * width..(r + 1) * width]);
    }
    Dense::new(rows.len(), width, out).map_err(|e| EngineError::Stage(e.to_string()))
}

/// One column per coordinate axis, plus `instance`, repeated `n` times: every result row carries
/// the variant it belongs to. Every coordinate column is a string, the value as the instance id
/// writes it (`1`, `top5`, `1+3`): an axis has one type in every table of every stage — a fused
/// probe's `layer` is `1+3`, a probe's `1` — so tables of several stages concatenate (polars'
/// diagonal concat, duckdb's `union_by_name`); cast a numeric axis where numbers are needed.
pub(crate) fn coord_columns(id: &str, coords: &Coords, n: usize) -> Vec<(Field, ArrayRef)> {
    let mut cols: Vec<(Field, ArrayRef)> = vec![(Field::new("instance", DataType::Utf8, false), Arc::new(StringArray::from(vec![id; n])))];
    for (axis, v) in coords {
        let text = v.plain_text();
        cols.push((Field::new(axis, DataType::Utf8, false), Arc::new(StringArray::from(vec![text.as_str(); n]))));
    }
    cols
}

fn batch(mut cols: Vec<(Field, ArrayRef)>, more: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, EngineError> {
    for (name, arr) in more {
        cols.push((Field::new(name, arr.data_type().clone(), false), arr));
    }
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = cols.into_iter().unzip();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

impl Stage for Probe {
    fn signature(&self) -> Signature {
        Signature::new(
            "probe",
            2,
            "multinomial logistic-regression probe (scikit-learn's objective) scored by macro F1 on the split's test images",
        )
        .input(input(
            "features",
            &[TableType::Pooled, TableType::Eoi, TableType::Vit, TableType::Dense],
            "per-image features: sparse (image_id, feature, value) or dense (image_id, resid or features)",
        ))
        .input(input("split", &[TableType::Split], "which images train and which test, with their labels"))
        .params::<ProbeParams>()
        .output(
            "metrics",
            TableType::ProbeMetrics,
            "one row: coordinates, macro_f1, accuracy, macro precision/recall, n_train, n_test, n_features, c, iterations, converged \
             (the gradient criterion was met), stop (gradient, objective_stalled, max_iter, line_search_failed), grad_norm \
             (the final max|gradient|), objective",
        )
        .output("per_class", TableType::ProbeClasses, "coordinates, label, label_name, precision, recall, f1, support")
        .output("confusion", TableType::ProbeConfusion, "coordinates, true_label, pred_label, count (non-zero cells)")
        .output("predictions", TableType::ProbePredictions, "image_id, label, pred, prob (of the prediction) for every test image")
        .output(
            "coefficients",
            TableType::ProbeCoefficients,
            "coordinates, label, label_name, feature (null: the class's intercept), weight, scale — the fitted weights that are \
             not zero, on the scaled features (weight / scale is the weight of the raw feature); `feature` is the SAE feature \
             (or residual dimension) the probe read, offset by layer for a fused input (see its offsets)",
        )
        .output(
            "cv",
            TableType::ProbeCv,
            "coordinates, c, fold, macro_f1, chosen — one row per grid value and inner fold (empty without `c_grid`)",
        )
        .estimate(|p| {
            let grid = match p.get("c_grid") {
                Some(Value::List(g)) => g.len() as u64,
                _ => 0,
            };
            let folds = p.get("cv_folds").and_then(Value::as_i64).unwrap_or(5) as u64;
            (1 + grid * folds, "fits")
        })
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        job.progress.add_total(job.members.len() as u64, "fits");
        for m in &mut job.members {
            if let Some(warning) = run_one(m)? {
                job.notes.push(warning);
            }
            job.progress.advance(1);
        }
        Ok(())
    }
}

/// How `C` is chosen: fixed (`grid: None`), or the grid value with the best mean macro F1 over
/// `folds` stratified inner folds of the training rows (ties: the smaller C), fitted along the
/// grid in ascending order with warm starts.
struct CvSpec {
    grid: Option<Vec<f64>>,
    folds: usize,
    seed: u64,
}

struct Fitted {
    model: crate::probe::LogRegModel,
    /// The divisor each feature column was scaled by before the fit (1 where unscaled).
    scale: Vec<f64>,
    pred: Vec<u32>,
    proba: Vec<f64>,
    c: f64,
    /// (C, inner fold, macro F1) for every grid point and fold.
    cv_scores: Vec<(f64, usize, f64)>,
}

fn fit_and_predict<D: Design>(
    xtr: &D,
    xte: &D,
    y_train: &[u32],
    k: usize,
    cfg: &LogRegConfig,
    scale: Scale,
    cv: &CvSpec,
) -> Result<Fitted, crate::probe::ProbeError> {
    let mut cfg = cfg.clone();
    let mut cv_scores = Vec::new();
    if let Some(grid) = &cv.grid {
        let mut grid = grid.clone();
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        // stratified inner folds of the training rows
        let rows: Vec<crate::stages::split::Labelled> = y_train
            .iter()
            .enumerate()
            .map(|(i, &c)| crate::stages::split::Labelled {
                image_id: i as u32,
                label: c as u16,
                label_name: String::new(),
                split: String::new(),
            })
            .collect();
        let folds = crate::stages::split::assign(&rows, crate::stages::split::Method::Folds, cv.folds, 1, 0.0, cv.seed).map_err(|e| {
            crate::probe::ProbeError::Config {
                what: "cv_folds",
                expected: "a stratified fold assignment",
                actual: e,
                fix: "check cv_folds",
            }
        })?;
        let mut mean = vec![0.0; grid.len()];
        for f in 0..cv.folds {
            let val: Vec<usize> = (0..rows.len()).filter(|&i| folds[i].0 as usize == f).collect();
            let fit_rows: Vec<usize> = (0..rows.len()).filter(|&i| folds[i].0 as usize != f).collect();
            if val.is_empty() || fit_rows.is_empty() {
                continue;
            }
            let (xf, xv) = (xtr.select_rows(&fit_rows)?, xtr.select_rows(&val)?);
            let sc = Scaling::fit(&xf, scale);
            let (xf, xv) = (sc.apply(&xf)?, sc.apply(&xv)?);
            let yf: Vec<u32> = fit_rows.iter().map(|&i| y_train[i]).collect();
            let yv: Vec<u32> = val.iter().map(|&i| y_train[i]).collect();
            let mut warm: Option<crate::probe::LogRegModel> = None;
            for (g, &c) in grid.iter().enumerate() {
                cfg.c = c;
                let model = fit(&xf, &yf, k, &cfg, warm.as_ref())?;
                let score = classification_metrics(&yv, &model.predict(&xv)?, None)?.macro_f1;
                mean[g] += score / cv.folds as f64;
                cv_scores.push((c, f, score));
                warm = Some(model);
            }
        }
        let best = (0..grid.len()).fold(0, |b, g| if mean[g] > mean[b] { g } else { b });
        cfg.c = grid[best];
    }
    let sc = Scaling::fit(xtr, scale);
    let (xtr, xte) = (sc.apply(xtr)?, sc.apply(xte)?);
    let model = fit(&xtr, y_train, k, &cfg, None)?;
    let pred = model.predict(&xte)?;
    let proba = model.predict_proba(&xte)?;
    Ok(Fitted { model, pred, proba, c: cfg.c, cv_scores, scale: sc.scale })
}

/// Fit, score and write one probe; a fit that ran out of iterations comes back as a warning (as
/// scikit-learn's `ConvergenceWarning`).
fn run_one(m: &mut Member) -> Result<Option<String>, EngineError> {
    let err = |e: String| EngineError::Stage(e);
    let p: ProbeParams = m.params()?;
    let rows = read_split(m.input("split")?)?;
    let row_of: BTreeMap<u32, usize> = rows.iter().enumerate().map(|(i, r)| (r.image_id, i)).collect();
    let classes: Vec<u16> = {
        let mut c: Vec<u16> = rows.iter().map(|r| r.label).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let names: BTreeMap<u16, &str> = rows.iter().map(|r| (r.label, r.label_name.as_str())).collect();
    let class_of: BTreeMap<u16, u32> = classes.iter().enumerate().map(|(i, &l)| (l, i as u32)).collect();
    let train: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].train).collect();
    let test: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].train).collect();
    if train.is_empty() || test.is_empty() {
        return Err(err(format!(
            "{}: the split has {} training and {} test images; both must be non-empty",
            m.id,
            train.len(),
            test.len()
        )));
    }
    let y = |idx: &[usize]| idx.iter().map(|&i| class_of[&rows[i].label]).collect::<Vec<u32>>();
    let (y_train, y_test) = (y(&train), y(&test));
    let cfg = LogRegConfig { c: p.c, max_iter: p.max_iter, tol: p.tol, fit_intercept: p.fit_intercept, threads: p.threads };
    let scale = match p.scale {
        ScaleChoice::MaxAbs => Scale::MaxAbs,
        ScaleChoice::Std => Scale::Std,
        ScaleChoice::None => Scale::None,
    };
    let features = read_features(m.input("features")?, &row_of, rows.len())?;
    let k = classes.len();
    let cv = CvSpec { grid: p.c_grid, folds: p.cv_folds, seed: p.seed };
    let (fitted, n_features) = match &features {
        Features::Sparse { per_row, n_cols, .. } => {
            let (xtr, xte) = (csr(per_row, &train, *n_cols)?, csr(per_row, &test, *n_cols)?);
            (fit_and_predict(&xtr, &xte, &y_train, k, &cfg, scale, &cv).map_err(|e| err(format!("{}: {e}", m.id)))?, *n_cols)
        }
        Features::Dense { data, width } => {
            let (xtr, xte) = (dense(data, *width, &train)?, dense(data, *width, &test)?);
            (fit_and_predict(&xtr, &xte, &y_train, k, &cfg, scale, &cv).map_err(|e| err(format!("{}: {e}", m.id)))?, *width)
        }
    };
    let Fitted { model, pred, proba, c: chosen_c, cv_scores, scale: scaling } = fitted;
    let metrics = classification_metrics(&y_test, &pred, None).map_err(|e| err(e.to_string()))?;
    let label = |c: u32| classes[c as usize];

    let one = coord_columns(&m.id, &m.coords, 1);
    let nnz = match &features {
        Features::Sparse { nnz, .. } => *nnz as u64,
        Features::Dense { data, .. } => data.iter().filter(|v| **v != 0.0).count() as u64,
    };
    let metrics_batch = batch(
        one,
        vec![
            ("macro_f1", Arc::new(Float64Array::from(vec![metrics.macro_f1])) as ArrayRef),
            ("accuracy", Arc::new(Float64Array::from(vec![metrics.accuracy]))),
            ("macro_precision", Arc::new(Float64Array::from(vec![metrics.macro_precision]))),
            ("macro_recall", Arc::new(Float64Array::from(vec![metrics.macro_recall]))),
            ("n_train", Arc::new(UInt64Array::from(vec![train.len() as u64]))),
            ("n_test", Arc::new(UInt64Array::from(vec![test.len() as u64]))),
            ("n_features", Arc::new(UInt64Array::from(vec![n_features as u64]))),
            ("n_classes", Arc::new(UInt64Array::from(vec![k as u64]))),
            ("nnz", Arc::new(UInt64Array::from(vec![nnz]))),
            ("c", Arc::new(Float64Array::from(vec![chosen_c]))),
            ("iterations", Arc::new(UInt64Array::from(vec![model.n_iter as u64]))),
            ("converged", Arc::new(BooleanArray::from(vec![model.converged]))),
            ("stop", Arc::new(StringArray::from(vec![model.stop.as_str()]))),
            ("grad_norm", Arc::new(Float64Array::from(vec![model.grad_max_norm]))),
            ("objective", Arc::new(Float64Array::from(vec![model.objective]))),
        ],
    )?;
    let nl = metrics.labels.len();
    let per_class = batch(
        coord_columns(&m.id, &m.coords, nl),
        vec![
            ("label", Arc::new(UInt16Array::from_iter_values(metrics.labels.iter().map(|&c| label(c)))) as ArrayRef),
            ("label_name", Arc::new(StringArray::from_iter_values(metrics.labels.iter().map(|&c| names[&label(c)])))),
            ("precision", Arc::new(Float64Array::from(metrics.precision.clone()))),
            ("recall", Arc::new(Float64Array::from(metrics.recall.clone()))),
            ("f1", Arc::new(Float64Array::from(metrics.f1.clone()))),
            ("support", Arc::new(UInt64Array::from(metrics.support.clone()))),
        ],
    )?;
    let cells: Vec<(u16, u16, u64)> = (0..nl * nl)
        .filter(|&i| metrics.confusion[i] > 0)
        .map(|i| (label(metrics.labels[i / nl]), label(metrics.labels[i % nl]), metrics.confusion[i]))
        .collect();
    let confusion = batch(
        coord_columns(&m.id, &m.coords, cells.len()),
        vec![
            ("true_label", Arc::new(UInt16Array::from_iter_values(cells.iter().map(|c| c.0))) as ArrayRef),
            ("pred_label", Arc::new(UInt16Array::from_iter_values(cells.iter().map(|c| c.1)))),
            ("count", Arc::new(UInt64Array::from_iter_values(cells.iter().map(|c| c.2)))),
        ],
    )?;
    let predictions = RecordBatch::try_new(
        TableType::ProbePredictions.schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(test.iter().map(|&i| rows[i].image_id))) as ArrayRef,
            Arc::new(UInt16Array::from_iter_values(test.iter().map(|&i| rows[i].label))),
            Arc::new(UInt16Array::from_iter_values(pred.iter().map(|&c| label(c)))),
            Arc::new(Float32Array::from_iter_values(pred.iter().enumerate().map(|(j, &c)| proba[j * k + c as usize] as f32))),
        ],
    )?;
    let cv_batch = batch(
        coord_columns(&m.id, &m.coords, cv_scores.len()),
        vec![
            ("c", Arc::new(Float64Array::from_iter_values(cv_scores.iter().map(|x| x.0))) as ArrayRef),
            ("fold", Arc::new(UInt64Array::from_iter_values(cv_scores.iter().map(|x| x.1 as u64)))),
            ("macro_f1", Arc::new(Float64Array::from_iter_values(cv_scores.iter().map(|x| x.2)))),
            ("chosen", Arc::new(BooleanArray::from_iter(cv_scores.iter().map(|x| Some(x.0 == chosen_c))))),
        ],
    )?;
    // the fitted weights: non-zero ones (a feature no training image has keeps weight 0), and each
    // class's intercept as the row with a null feature
    let d = model.n_features;
    let mut cells: Vec<(u16, Option<u32>, f64, f64)> = Vec::new();
    for (ci, &c) in classes.iter().enumerate() {
        if model.intercept[ci].is_finite() {
            cells.push((c, None, model.intercept[ci], 1.0));
        }
        for (j, (&w, &sc)) in model.coef[ci * d..(ci + 1) * d].iter().zip(&scaling).enumerate() {
            if w != 0.0 {
                cells.push((c, Some(j as u32), w, sc));
            }
        }
    }
    // `feature` is nullable (the intercept rows): its field is written here, the rest by `batch`
    let mut cols = coord_columns(&m.id, &m.coords, cells.len());
    cols.push((Field::new("label", DataType::UInt16, false), Arc::new(UInt16Array::from_iter_values(cells.iter().map(|c| c.0)))));
    cols.push((
        Field::new("label_name", DataType::Utf8, false),
        Arc::new(StringArray::from_iter_values(cells.iter().map(|c| names[&c.0]))),
    ));
    cols.push((Field::new("feature", DataType::UInt32, true), Arc::new(UInt32Array::from(cells.iter().map(|c| c.1).collect::<Vec<_>>()))));
    let coefficients = batch(
        cols,
        vec![
            ("weight", Arc::new(Float64Array::from_iter_values(cells.iter().map(|c| c.2))) as ArrayRef),
            ("scale", Arc::new(Float64Array::from_iter_values(cells.iter().map(|c| c.3)))),
        ],
    )?;
    for (name, b) in [
        ("metrics", metrics_batch),
        ("per_class", per_class),
        ("confusion", confusion),
        ("predictions", predictions),
        ("cv", cv_batch),
        ("coefficients", coefficients),
    ] {
        let schema = b.schema();
        m.output(name)?.write_part(0, schema, &[b])?;
    }
    Ok((model.stop == Stop::MaxIter).then(|| {
        let fix = match p.scale {
            ScaleChoice::None => "raise `max_iter`, or scale the features (`scale: maxabs`)",
            _ => "raise `max_iter`, or regularise more (a smaller `c`)",
        };
        format!(
            "warning: {}: the probe stopped after max_iter={} iterations without converging (max|gradient| {:.2e} > tol {:.0e}); {fix}",
            m.id, p.max_iter, model.grad_max_norm, p.tol
        )
    }))
}
