//! `split`: stratified, seeded train/test assignment of a dataset's images.
//!
//! - `method: folds` (default): each class's images are shuffled (ChaCha8, `seed`) and dealt
//!   round-robin into `folds` folds, the dealing offset carried from class to class so fold sizes
//!   stay balanced overall; the first `train_folds` folds train, the rest test. `folds: 10` with
//!   `train_folds: 1..5` gives the post's 1:9 … 5:5, and a smaller training set is always tested on
//!   a superset of a larger one's test set.
//! - `method: fraction`: per class, `round(n · test_fraction)` shuffled images test, the rest train
//!   (the authors' 80/20 with `test_fraction: 0.2`).
//! - `method: predefined`: the dataset's own `split` column (`train`/`test`) decides.
//!
//! Output `split` table: `image_id u32, label u16, label_name utf8, fold u8, role utf8`, sorted by
//! image_id.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, UInt8Array, UInt16Array, UInt32Array};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::engine::EngineError;
use crate::engine::job::{Job, TableInput};
use crate::engine::stage::Stage;
use crate::plan::params::{choice, params};
use crate::plan::signature::{ParamProblem, ParamType, Signature, input};
use crate::spec::Value;
use crate::tables::{TableType, column};

pub struct Split;

choice! {
    /// How `split` assigns train and test roles.
    pub enum Method { Folds = "folds", Fraction = "fraction", Predefined = "predefined" }
}

params! {
    /// `split`'s parameters.
    pub struct SplitParams {
        /// how to split
        pub method: Method, Method::param_type(), default("folds");
        /// number of stratified folds (method: folds)
        pub folds: usize, ParamType::range(2, 255), default(10);
        /// how many folds train; the rest test (1 of 10 is the post's 1:9)
        pub train_folds: usize, ParamType::range(1, 254), default(1);
        /// fraction of each class that tests (method: fraction)
        pub test_fraction: f64, ParamType::Float, default(0.2);
        /// shuffling seed (a `seed` axis gives repeats)
        pub seed: u64, ParamType::min(0), default(0);
    }
}

/// One dataset row as the split needs it.
pub struct Labelled {
    pub image_id: u32,
    pub label: u16,
    pub label_name: String,
    pub split: String,
}

/// Read `image_id, label, label_name, split` of a dataset table.
pub fn read_labels(t: &TableInput) -> Result<Vec<Labelled>, EngineError> {
    TableType::Dataset.check(t.schema()?.as_ref(), &t.instance).map_err(EngineError::Stage)?;
    let mut out = Vec::new();
    for b in t.read() {
        let b = b?;
        let ids = column::<UInt32Array>(&b, "image_id", &t.instance)?;
        let labels = column::<UInt16Array>(&b, "label", &t.instance)?;
        let names = column::<StringArray>(&b, "label_name", &t.instance)?;
        let splits = column::<StringArray>(&b, "split", &t.instance)?;
        for i in 0..b.num_rows() {
            out.push(Labelled {
                image_id: ids.value(i),
                label: labels.value(i),
                label_name: names.value(i).to_string(),
                split: splits.value(i).to_string(),
            });
        }
    }
    out.sort_by_key(|r| r.image_id);
    if let Some(w) = out.windows(2).find(|w| w[0].image_id == w[1].image_id) {
        return Err(EngineError::Stage(format!("{}: image_id {} appears twice in the dataset table", t.instance, w[0].image_id)));
    }
    Ok(out)
}

/// (image_id, label, label_name) of a dataset or split table.
pub fn read_labels_any(t: &TableInput) -> Result<Vec<(u32, u16, String)>, EngineError> {
    let mut out = Vec::new();
    for b in t.read() {
        let b = b?;
        let ids = column::<UInt32Array>(&b, "image_id", &t.instance)?;
        let labels = column::<UInt16Array>(&b, "label", &t.instance)?;
        let names = column::<StringArray>(&b, "label_name", &t.instance)?;
        for i in 0..b.num_rows() {
            out.push((ids.value(i), labels.value(i), names.value(i).to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// Fisher–Yates with a ChaCha stream (bias of `% (i+1)` on 64-bit draws is < 2⁻⁴⁰ for any dataset).
fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// (fold, role) per row of `rows` (which is sorted by image_id).
pub(crate) fn assign(
    rows: &[Labelled],
    method: Method,
    folds: usize,
    train_folds: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<Vec<(u8, bool)>, String> {
    let mut out = vec![(0u8, false); rows.len()];
    match method {
        Method::Predefined => {
            for (i, r) in rows.iter().enumerate() {
                let train = match r.split.as_str() {
                    "train" => true,
                    "test" => false,
                    other => return Err(format!("image {} has split '{other}'; predefined splits need 'train' or 'test'", r.image_id)),
                };
                out[i] = (if train { 0 } else { 1 }, train);
            }
        }
        Method::Folds | Method::Fraction => {
            let mut by_class: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
            for (i, r) in rows.iter().enumerate() {
                by_class.entry(r.label).or_default().push(i);
            }
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut offset = 0usize;
            for idx in by_class.values_mut() {
                shuffle(idx, &mut rng);
                if method == Method::Folds {
                    for (j, &i) in idx.iter().enumerate() {
                        let fold = (offset + j) % folds;
                        out[i] = (fold as u8, fold < train_folds);
                    }
                    offset = (offset + idx.len()) % folds;
                } else {
                    let n_test = (idx.len() as f64 * test_fraction).round() as usize;
                    for (j, &i) in idx.iter().enumerate() {
                        let test = j < n_test;
                        out[i] = (if test { 1 } else { 0 }, !test);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Plan-time checks: the training folds leave a test fold; the test fraction is a fraction.
fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    let int = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(0);
    if p.get("method").and_then(Value::as_str) == Some("folds") && int("train_folds") >= int("folds") {
        return Err(ParamProblem {
            param: "train_folds",
            message: format!("{} training folds leave no test fold out of {}", int("train_folds"), int("folds")),
            help: format!("use train_folds in 1..={}", int("folds") - 1),
        });
    }
    let f = p.get("test_fraction").and_then(Value::as_f64).unwrap_or(0.2);
    if !(f > 0.0 && f < 1.0) {
        return Err(ParamProblem {
            param: "test_fraction",
            message: format!("{f} is not a fraction in (0, 1)"),
            help: "e.g. `test_fraction: 0.2` for 80/20".into(),
        });
    }
    Ok(())
}

impl Stage for Split {
    fn signature(&self) -> Signature {
        Signature::new("split", 1, "stratified, seeded train/test split of a dataset (folds, fraction or the dataset's own)")
            .input(input("from", &[TableType::Dataset], "the dataset whose images to split"))
            .params::<SplitParams>()
            .output("split", TableType::Split, "image_id u32, label u16, label_name utf8, fold u8, role utf8 (train|test)")
            .validate(validate)
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let p: SplitParams = m.params()?;
            validate(&m.params).map_err(|p| EngineError::Stage(format!("{}: {}: {}", m.id, p.param, p.message)))?;
            let rows = read_labels(m.input("from")?)?;
            let roles = assign(&rows, p.method, p.folds, p.train_folds, p.test_fraction, p.seed)
                .map_err(|e| EngineError::Stage(format!("{}: {e}", m.id)))?;
            let batch = RecordBatch::try_new(
                TableType::Split.schema(),
                vec![
                    Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.image_id))),
                    Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.label))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.label_name.as_str()))),
                    Arc::new(UInt8Array::from_iter_values(roles.iter().map(|r| r.0))),
                    Arc::new(StringArray::from_iter_values(roles.iter().map(|r| if r.1 { "train" } else { "test" }))),
                ],
            )?;
            m.output("split")?.write_part(0, batch.schema(), &[batch])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(per_class: &[usize]) -> Vec<Labelled> {
        let mut v = Vec::new();
        for (label, &n) in per_class.iter().enumerate() {
            for _ in 0..n {
                v.push(Labelled { image_id: v.len() as u32, label: label as u16, label_name: format!("c{label}"), split: "test".into() });
            }
        }
        v
    }

    #[test]
    fn folds_are_stratified_balanced_and_nested() {
        let r = rows(&[100, 100, 37]);
        let one = assign(&r, Method::Folds, 10, 1, 0.0, 7).unwrap();
        let three = assign(&r, Method::Folds, 10, 3, 0.0, 7).unwrap();
        for label in 0..2u16 {
            let train = r.iter().zip(&one).filter(|(x, a)| x.label == label && a.1).count();
            assert_eq!(train, 10, "1:9 of 100 images is 10 per class");
        }
        let mut sizes = [0usize; 10];
        for a in &one {
            sizes[a.0 as usize] += 1;
        }
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        // the 3-fold training set contains the 1-fold one: smaller sets test on supersets
        for (a, b) in one.iter().zip(&three) {
            assert_eq!(a.0, b.0);
            assert!(!a.1 || b.1);
        }
    }

    #[test]
    fn seeds_change_the_assignment_and_repeat_exactly() {
        let r = rows(&[50, 50]);
        assert_eq!(assign(&r, Method::Folds, 5, 1, 0.0, 1).unwrap(), assign(&r, Method::Folds, 5, 1, 0.0, 1).unwrap());
        assert_ne!(assign(&r, Method::Folds, 5, 1, 0.0, 1).unwrap(), assign(&r, Method::Folds, 5, 1, 0.0, 2).unwrap());
    }

    #[test]
    fn fraction_and_predefined() {
        let r = rows(&[10, 20]);
        let a = assign(&r, Method::Fraction, 0, 0, 0.2, 0).unwrap();
        assert_eq!(a.iter().filter(|x| !x.1).count(), 2 + 4);
        let mut p = rows(&[2]);
        p[0].split = "train".into();
        let a = assign(&p, Method::Predefined, 0, 0, 0.0, 0).unwrap();
        assert_eq!(a, vec![(0, true), (1, false)]);
        p[1].split = "val".into();
        assert!(assign(&p, Method::Predefined, 0, 0, 0.0, 0).unwrap_err().contains("'val'"));
    }
}
