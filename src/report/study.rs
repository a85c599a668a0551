//! What a report is drawn from: the probe results of every gathered variant (with coordinates),
//! the SAE health of every extraction variant, and the per-class feature tables — read from
//! record batches, so the `report` stage (its inputs) and `saeflow report` (cache entries) build
//! the same [`Study`].

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::RecordBatch;

use super::ReportError;
use super::repeats::{MeanSd, Variant, variants};
use super::table::{Cell, Table};
use crate::health::Summary;
use crate::spec::Coords;
use crate::spec::Value;

/// One gathered table: the instance that produced it (in this pipeline), its coordinates and
/// its rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Gathered {
    pub instance: String,
    pub coords: Coords,
    pub batches: Vec<RecordBatch>,
}

/// One probe variant's scores (a row of a `probe_metrics` table).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub instance: String,
    /// The stage: the instance id up to its coordinates.
    pub stage: String,
    pub coords: Coords,
    pub macro_f1: f64,
    pub accuracy: f64,
    pub n_train: u64,
    pub n_test: u64,
    /// The row's other columns, in table order (macro precision/recall, n_features, c, …).
    pub other: Vec<(String, Cell)>,
}

impl ProbeResult {
    /// The share of the split's images that trained the probe: `n_train / (n_train + n_test)`
    /// (exactly `train_folds / folds` when every class divides into the folds).
    pub fn train_fraction(&self) -> f64 {
        let total = self.n_train + self.n_test;
        if total == 0 { 0.0 } else { self.n_train as f64 / total as f64 }
    }
}

/// The SAE's fit on one extraction variant, per scope (image tokens, text tokens).
#[derive(Clone, Debug, PartialEq)]
pub struct HealthResult {
    pub instance: String,
    pub coords: Coords,
    pub scopes: Vec<Summary>,
}

/// One row of a `class_features` table.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassRow {
    pub label: u16,
    pub label_name: String,
    pub rank: u16,
    pub feature: u32,
    pub n_images: u32,
    pub label_images: u32,
    pub explanation: Option<String>,
}

/// One `class_features` variant (one layer's tables).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassResult {
    pub instance: String,
    pub coords: Coords,
    pub rows: Vec<ClassRow>,
}

/// One `clean` variant's statistics (a row of its `stats` table): what cleaning left per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanResult {
    pub instance: String,
    pub coords: Coords,
    /// Images present in the codes.
    pub images: u64,
    /// Distinct features occurring in any image, before and after dropping the over-frequent ones.
    pub unique_before: u64,
    pub unique_after: u64,
    /// Images with at least one kept feature occurring, and their share of `images`.
    pub images_with_features: u64,
    pub fraction_images_with_features: f64,
    /// The threshold in images (a fraction already multiplied out).
    pub max_images: f64,
}

/// Everything a report shows, in the canonical gather order (stage, then coordinates).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Study {
    pub probes: Vec<ProbeResult>,
    pub health: Vec<HealthResult>,
    pub classes: Vec<ClassResult>,
    pub clean: Vec<CleanResult>,
    /// The probes' fitted weights (their `coefficients` tables), by instance.
    pub weights: Vec<Gathered>,
}

/// The columns of a `clean` stage's `stats` table the report reads.
const CLEAN_COLUMNS: [&str; 6] =
    ["images", "unique_before", "unique_after", "images_with_features", "fraction_images_with_features", "max_images"];

fn stage_of(instance: &str) -> String {
    instance.split('[').next().unwrap_or(instance).to_string()
}

fn bad(instance: &str, problem: impl Into<String>) -> ReportError {
    ReportError::Table { what: instance.to_string(), problem: problem.into() }
}

impl Study {
    /// Read the gathered tables. Metrics tables must be `probe_metrics` tables (checked column by
    /// column); every row is one result, identified by the gathered instance (not the table's
    /// own `instance` column, which names whichever pipeline first computed the entry). `weights`:
    /// the probes' `coefficients` tables, kept as they are (read by [`Study::best_weights`]).
    pub fn from_tables(
        metrics: &[Gathered],
        health: &[Gathered],
        classes: &[Gathered],
        clean: &[Gathered],
        weights: &[Gathered],
    ) -> Result<Study, ReportError> {
        let axes: BTreeSet<&str> = metrics.iter().flat_map(|g| g.coords.keys().map(String::as_str)).collect();
        let mut study = Study::default();
        for g in metrics {
            for b in &g.batches {
                crate::tables::TableType::ProbeMetrics.check(&b.schema(), &g.instance).map_err(|e| bad(&g.instance, e))?;
                let schema = b.schema();
                let get = |name: &str, r: usize| b.column_by_name(name).map(|c| Cell::from_array(c.as_ref(), r)).unwrap_or(Cell::Null);
                for r in 0..b.num_rows() {
                    let f64_of = |name: &str| get(name, r).as_f64().ok_or_else(|| bad(&g.instance, format!("{name} is null in row {r}")));
                    let u64_of = |name: &str| match get(name, r) {
                        Cell::UInt(u) => Ok(u),
                        _ => Err(bad(&g.instance, format!("{name} is null in row {r}"))),
                    };
                    let fixed = ["instance", "macro_f1", "accuracy", "n_train", "n_test"];
                    let other = schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .filter(|n| !fixed.contains(n) && !axes.contains(n))
                        .map(|n| (n.to_string(), get(n, r)))
                        .collect();
                    study.probes.push(ProbeResult {
                        instance: g.instance.clone(),
                        stage: stage_of(&g.instance),
                        coords: g.coords.clone(),
                        macro_f1: f64_of("macro_f1")?,
                        accuracy: f64_of("accuracy")?,
                        n_train: u64_of("n_train")?,
                        n_test: u64_of("n_test")?,
                        other,
                    });
                }
            }
        }
        for g in health {
            for b in &g.batches {
                crate::tables::TableType::Health.check(&b.schema(), &g.instance).map_err(|e| bad(&g.instance, e))?;
            }
            let scopes = crate::health::summarize(&g.batches).map_err(|e| bad(&g.instance, e.to_string()))?;
            study.health.push(HealthResult { instance: g.instance.clone(), coords: g.coords.clone(), scopes });
        }
        for g in classes {
            let mut rows = Vec::new();
            for b in &g.batches {
                crate::tables::TableType::ClassFeatures.check(&b.schema(), &g.instance).map_err(|e| bad(&g.instance, e))?;
                let get = |name: &str, r: usize| b.column_by_name(name).map(|c| Cell::from_array(c.as_ref(), r)).unwrap_or(Cell::Null);
                let uint = |name: &str, r: usize| match get(name, r) {
                    Cell::UInt(u) => Ok(u),
                    _ => Err(bad(&g.instance, format!("{name} is null in row {r}"))),
                };
                for r in 0..b.num_rows() {
                    rows.push(ClassRow {
                        label: uint("label", r)? as u16,
                        label_name: get("label_name", r).csv(),
                        rank: uint("rank", r)? as u16,
                        feature: uint("feature", r)? as u32,
                        n_images: uint("n_images", r)? as u32,
                        label_images: uint("label_images", r)? as u32,
                        explanation: match get("explanation", r) {
                            Cell::Str(s) => Some(s),
                            _ => None,
                        },
                    });
                }
            }
            study.classes.push(ClassResult { instance: g.instance.clone(), coords: g.coords.clone(), rows });
        }
        for g in clean {
            for b in &g.batches {
                let have: Vec<&str> = b.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
                if let Some(missing) = CLEAN_COLUMNS.iter().find(|c| !have.contains(c)) {
                    return Err(bad(
                        &g.instance,
                        format!(
                            "a clean_stats table needs a column '{missing}', found only {} (feed the report `clean: clean.stats`)",
                            have.join(", ")
                        ),
                    ));
                }
                let get = |name: &str, r: usize| b.column_by_name(name).map(|c| Cell::from_array(c.as_ref(), r)).unwrap_or(Cell::Null);
                for r in 0..b.num_rows() {
                    let uint = |name: &str| match get(name, r) {
                        Cell::UInt(u) => Ok(u),
                        other => Err(bad(&g.instance, format!("{name} must be an unsigned integer in row {r}, got {other:?}"))),
                    };
                    let float = |name: &str| get(name, r).as_f64().ok_or_else(|| bad(&g.instance, format!("{name} is null in row {r}")));
                    study.clean.push(CleanResult {
                        instance: g.instance.clone(),
                        coords: g.coords.clone(),
                        images: uint("images")?,
                        unique_before: uint("unique_before")?,
                        unique_after: uint("unique_after")?,
                        images_with_features: uint("images_with_features")?,
                        fraction_images_with_features: float("fraction_images_with_features")?,
                        max_images: float("max_images")?,
                    });
                }
            }
        }
        study.weights = weights.to_vec();
        Ok(study)
    }

    /// Every coordinate axis of the probe variants, by name.
    pub fn probe_axes(&self) -> Vec<String> {
        self.probes.iter().flat_map(|p| p.coords.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// The `summary` output: one row per probe variant — `stage`, `instance`, one column per
    /// coordinate axis (null where a variant lacks it), `train_fraction`, then the metrics.
    pub fn summary(&self) -> Table {
        let axes = self.probe_axes();
        let mut others: Vec<String> = Vec::new();
        for p in &self.probes {
            for (name, _) in &p.other {
                if !others.contains(name) {
                    others.push(name.clone());
                }
            }
        }
        let mut columns: Vec<String> = vec!["stage".into(), "instance".into()];
        columns.extend(axes.iter().cloned());
        columns.extend(["train_fraction", "macro_f1", "accuracy", "n_train", "n_test"].map(String::from));
        columns.extend(others.iter().cloned());
        let mut t = Table::new(columns);
        for p in &self.probes {
            let mut row = vec![Cell::Str(p.stage.clone()), Cell::Str(p.instance.clone())];
            row.extend(axes.iter().map(|a| p.coords.get(a).map(|v| Cell::Str(v.plain_text())).unwrap_or(Cell::Null)));
            row.extend([
                Cell::Float(p.train_fraction()),
                Cell::Float(p.macro_f1),
                Cell::Float(p.accuracy),
                Cell::UInt(p.n_train),
                Cell::UInt(p.n_test),
            ]);
            row.extend(others.iter().map(|o| p.other.iter().find(|(n, _)| n == o).map(|(_, c)| c.clone()).unwrap_or(Cell::Null)));
            t.push(row);
        }
        t
    }

    /// Whether some probe variant was measured more than once (over a repeat axis such as `seed`).
    pub fn has_repeats(&self) -> bool {
        variants(&self.probes).iter().any(|v| v.members.len() > 1)
    }

    /// One row per probe variant over its repeats (see `repeats.rs`): `stage`, one column per
    /// coordinate axis but the repeat axes, `n`, `train_fraction`, mean and sample sd of macro F1
    /// and accuracy (sd empty for n = 1), and the `instances` averaged (`;`-separated). `display`:
    /// the scores as people read them, `0.712 ± 0.013 (n=3)`, instead of the numbers.
    pub fn repeats_table(&self, display: bool) -> Table {
        let vs = variants(&self.probes);
        let axes: Vec<String> = vs.iter().flat_map(|v| v.coords.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut columns: Vec<String> = vec!["stage".into()];
        columns.extend(axes.iter().cloned());
        if display {
            columns.extend(["macro_f1", "accuracy"].map(String::from));
        } else {
            columns.extend(
                ["n", "train_fraction", "macro_f1_mean", "macro_f1_sd", "accuracy_mean", "accuracy_sd", "instances"].map(String::from),
            );
        }
        let mut t = Table::new(columns);
        for v in &vs {
            let mut row = vec![Cell::Str(v.stage.clone())];
            row.extend(axes.iter().map(|a| v.coords.get(a).map(|v| Cell::Str(v.plain_text())).unwrap_or(Cell::Null)));
            if display {
                row.extend([Cell::Str(v.macro_f1.display()), Cell::Str(v.accuracy.display())]);
            } else {
                let sd = |m: &MeanSd| m.sd.map(Cell::Float).unwrap_or(Cell::Null);
                row.extend([
                    Cell::UInt(v.members.len() as u64),
                    Cell::Float(v.train_fraction()),
                    Cell::Float(v.macro_f1.mean),
                    sd(&v.macro_f1),
                    Cell::Float(v.accuracy.mean),
                    sd(&v.accuracy),
                    Cell::Str(v.members.iter().map(|p| p.instance.as_str()).collect::<Vec<_>>().join(";")),
                ]);
            }
            t.push(row);
        }
        t
    }

    /// The row of [`Study::repeats_table`] with the best mean macro F1 (the first one at ties).
    pub fn best_variant(&self) -> Option<usize> {
        let vs = variants(&self.probes);
        (0..vs.len()).fold(None, |best, i| match best {
            Some(b) if vs[b].macro_f1.mean >= vs[i].macro_f1.mean => Some(b),
            _ => Some(i),
        })
    }

    /// The index (into `probes`) of the best macro F1 (the first one at ties).
    pub fn best_probe(&self) -> Option<usize> {
        (0..self.probes.len()).fold(None, |best, i| match best {
            Some(b) if self.probes[b].macro_f1 >= self.probes[i].macro_f1 => Some(b),
            _ => Some(i),
        })
    }

    /// The health table: one row per extraction variant and scope.
    pub fn health_table(&self) -> Table {
        let axes: Vec<String> = self.health.iter().flat_map(|h| h.coords.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut columns: Vec<String> = vec!["instance".into()];
        columns.extend(axes.iter().cloned());
        columns.extend(
            ["scope", "tokens", "l0_mean", "l0_p10", "l0_p50", "l0_p90", "l0_p99", "mse", "variance_explained", "norm_mean", "norm_ratio"]
                .map(String::from),
        );
        let mut t = Table::new(columns);
        for h in &self.health {
            for s in &h.scopes {
                let mut row = vec![Cell::Str(h.instance.clone())];
                row.extend(axes.iter().map(|a| h.coords.get(a).map(|v| Cell::Str(v.plain_text())).unwrap_or(Cell::Null)));
                row.extend([
                    Cell::Str(s.scope.clone()),
                    Cell::UInt(s.tokens),
                    Cell::Float(s.l0_mean),
                    Cell::UInt(s.l0_quantiles[0] as u64),
                    Cell::UInt(s.l0_quantiles[1] as u64),
                    Cell::UInt(s.l0_quantiles[2] as u64),
                    Cell::UInt(s.l0_quantiles[3] as u64),
                    Cell::Float(s.mse),
                    Cell::Float(s.variance_explained),
                    Cell::Float(s.norm_mean),
                    s.norm_ratio.map(Cell::Float).unwrap_or(Cell::Null),
                ]);
                t.push(row);
            }
        }
        t
    }

    /// One class-features variant as a table (its coordinates as columns first).
    pub fn classes_table(c: &ClassResult) -> Table {
        let axes: Vec<&String> = c.coords.keys().collect();
        let mut columns: Vec<String> = axes.iter().map(|a| a.to_string()).collect();
        columns.extend(["label", "label_name", "rank", "feature", "n_images", "label_images", "explanation"].map(String::from));
        let mut t = Table::new(columns);
        for r in &c.rows {
            let mut row: Vec<Cell> = c.coords.values().map(|v| Cell::Str(v.plain_text())).collect();
            row.extend([
                Cell::UInt(r.label as u64),
                Cell::Str(r.label_name.clone()),
                Cell::UInt(r.rank as u64),
                Cell::UInt(r.feature as u64),
                Cell::UInt(r.n_images as u64),
                Cell::UInt(r.label_images as u64),
                r.explanation.clone().map(Cell::Str).unwrap_or(Cell::Null),
            ]);
            t.push(row);
        }
        t
    }
}

/// `layer=1, mode=none` — coordinates as people read them (empty for none).
pub fn coords_label(coords: &Coords) -> String {
    coords.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// A file-name stem from a name and coordinates: `classes_layer-3`, `f1_by_pooling_train_folds-1`
/// (letters, digits, `.`, `+`, `-` and `_` only).
pub fn slug(name: &str, coords: &[(String, Value)]) -> String {
    let mut s = name.to_string();
    for (k, v) in coords {
        s += &format!("_{k}-{v}");
    }
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_plain_file_names() {
        let c = vec![("layer".to_string(), Value::Str("6+10".into())), ("label".to_string(), Value::Str("red circle".into()))];
        assert_eq!(slug("classes", &c), "classes_layer-6+10_label-_red_circle_");
        assert_eq!(slug("summary", &[]), "summary");
    }
}

/// One class's heaviest features in a probe: (feature, weight on the raw feature), largest first.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassWeights {
    pub label: u16,
    pub label_name: String,
    pub top: Vec<(u32, f64)>,
}

impl Study {
    /// For each layer (and once for variants without one): the best probe variant (highest mean
    /// macro F1) among those whose weights were gathered, the instance whose weights are shown
    /// (its first repeat), and each class's `n` heaviest positive features (weight / scale: on the
    /// raw features; ties to the lower feature id).
    pub fn best_weights(&self, n: usize) -> Vec<(String, Option<String>, Vec<ClassWeights>)> {
        use arrow_array::{Array, Float64Array, StringArray, UInt16Array, UInt32Array};
        let with_weights: BTreeSet<&str> = self.weights.iter().map(|g| g.instance.as_str()).collect();
        let vs: Vec<Variant> = variants(&self.probes)
            .into_iter()
            .filter(|v| v.members.first().is_some_and(|m| with_weights.contains(m.instance.as_str())))
            .collect();
        let mut best: Vec<(Option<String>, &Variant)> = Vec::new();
        for v in &vs {
            let layer = v.coords.get("layer").map(|l| l.plain_text());
            match best.iter_mut().find(|(l, _)| *l == layer) {
                Some((_, b)) if b.macro_f1.mean >= v.macro_f1.mean => {}
                Some(slot) => slot.1 = v,
                None => best.push((layer, v)),
            }
        }
        let mut out = Vec::new();
        for (layer, v) in best {
            let instance = &v.members[0].instance;
            let Some(g) = self.weights.iter().find(|g| &g.instance == instance) else { continue };
            let mut per_class: BTreeMap<u16, (String, Vec<(u32, f64)>)> = BTreeMap::new();
            for b in &g.batches {
                let col = |name: &str| b.column_by_name(name);
                let (Some(label), Some(name), Some(feature), Some(weight), Some(scale)) = (
                    col("label").and_then(|c| c.as_any().downcast_ref::<UInt16Array>()),
                    col("label_name").and_then(|c| c.as_any().downcast_ref::<StringArray>()),
                    col("feature").and_then(|c| c.as_any().downcast_ref::<UInt32Array>()),
                    col("weight").and_then(|c| c.as_any().downcast_ref::<Float64Array>()),
                    col("scale").and_then(|c| c.as_any().downcast_ref::<Float64Array>()),
                ) else {
                    continue;
                };
                for r in 0..b.num_rows() {
                    if feature.is_null(r) {
                        continue;
                    }
                    let w = weight.value(r) / scale.value(r);
                    if w > 0.0 {
                        per_class
                            .entry(label.value(r))
                            .or_insert_with(|| (name.value(r).to_string(), Vec::new()))
                            .1
                            .push((feature.value(r), w));
                    }
                }
            }
            let classes = per_class
                .into_iter()
                .map(|(label, (label_name, mut top))| {
                    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    top.truncate(n);
                    ClassWeights { label, label_name, top }
                })
                .collect();
            out.push((instance.clone(), layer, classes));
        }
        out
    }
}

#[cfg(test)]
mod weight_tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt16Array, UInt32Array};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn result(stage: &str, instance: &str, layer: i64, seed: i64, f1: f64) -> ProbeResult {
        let coords: Coords = [("layer".to_string(), Value::Int(layer)), ("seed".to_string(), Value::Int(seed))].into_iter().collect();
        ProbeResult {
            instance: instance.into(),
            stage: stage.into(),
            coords,
            macro_f1: f1,
            accuracy: f1,
            n_train: 10,
            n_test: 10,
            other: vec![],
        }
    }

    fn weights(instance: &str, rows: &[(u16, Option<u32>, f64, f64)]) -> Gathered {
        let schema = Schema::new(vec![
            Field::new("label", DataType::UInt16, false),
            Field::new("label_name", DataType::Utf8, false),
            Field::new("feature", DataType::UInt32, true),
            Field::new("weight", DataType::Float64, false),
            Field::new("scale", DataType::Float64, false),
        ]);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| format!("c{}", r.0)))),
            Arc::new(UInt32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ];
        Gathered { instance: instance.into(), coords: Coords::new(), batches: vec![RecordBatch::try_new(Arc::new(schema), cols).unwrap()] }
    }

    #[test]
    fn the_best_probe_of_each_layer_shows_each_class_heaviest_raw_weights() {
        // layer 1: variant a (mean 0.6 over two seeds) beats b (0.5); layer 3: only c
        let probes = vec![
            result("a", "a[layer=1,seed=0]", 1, 0, 0.5),
            result("a", "a[layer=1,seed=1]", 1, 1, 0.7),
            result("b", "b[layer=1,seed=0]", 1, 0, 0.5),
            result("c", "c[layer=3,seed=0]", 3, 0, 0.4),
        ];
        let study = Study {
            probes,
            weights: vec![
                // weight / scale: feature 7 is 0.8 / 2 = 0.4, feature 3 is 0.3; the intercept and negatives never show
                weights(
                    "a[layer=1,seed=0]",
                    &[(0, None, 5.0, 1.0), (0, Some(7), 0.8, 2.0), (0, Some(3), 0.3, 1.0), (0, Some(9), -1.0, 1.0)],
                ),
                weights("b[layer=1,seed=0]", &[(0, Some(1), 9.0, 1.0)]),
                weights("c[layer=3,seed=0]", &[(1, Some(2), 0.1, 1.0), (1, Some(4), 0.1, 1.0)]),
            ],
            ..Study::default()
        };
        let best = study.best_weights(5);
        assert_eq!(best.len(), 2);
        assert_eq!(best[0].0, "a[layer=1,seed=0]", "the best mean, its first repeat's weights");
        assert_eq!(best[0].1.as_deref(), Some("1"));
        assert_eq!(best[0].2[0].top, vec![(7, 0.4), (3, 0.3)]);
        assert_eq!(best[1].2[0].top, vec![(2, 0.1), (4, 0.1)], "ties to the lower feature id");
        assert_eq!(study.best_weights(1)[1].2[0].top.len(), 1);
    }
}
