//! Classification metrics, computed exactly as scikit-learn does.
//!
//! For each label `l` (scikit-learn's `multilabel_confusion_matrix`):
//! `tp = #(true = l ∧ pred = l)`, `pred_sum = #(pred = l)`,
//! `true_sum = #(true = l)` (the support). Then, as in
//! `precision_recall_fscore_support(..., zero_division=0)`:
//!
//! * precision `= tp / pred_sum`, 0 when `pred_sum = 0`;
//! * recall `= tp / true_sum`, 0 when `true_sum = 0`;
//! * F1 `= 2·tp / (true_sum + pred_sum)` — scikit-learn ≥ 1.3 computes the
//!   F-score from counts, `(1+β²)·tp / (β²·true_sum + pred_sum)`, not from the
//!   rounded precision and recall — 0 when the denominator is 0.
//!
//! Macro averages are numpy's `mean` of the per-label values, reproduced with
//! numpy's pairwise summation (8-way unrolled blocks of at most 128) so that
//! the last bit matches. Accuracy is `#correct / n`. Default labels are the
//! sorted union of the values in `y_true` and `y_pred` (`unique_labels`).
//! The confusion matrix has true labels in rows and predictions in columns;
//! pairs whose label is not among `labels` are left out, as in
//! `confusion_matrix(labels=...)`.

use super::ProbeError;

/// Metrics for one pair of label vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationMetrics {
    /// The labels the per-label vectors refer to, in order.
    pub labels: Vec<u32>,
    /// Fraction of rows with `y_true == y_pred`.
    pub accuracy: f64,
    /// Per-label precision.
    pub precision: Vec<f64>,
    /// Per-label recall.
    pub recall: Vec<f64>,
    /// Per-label F1.
    pub f1: Vec<f64>,
    /// Per-label number of true occurrences.
    pub support: Vec<u64>,
    /// `f1_score(average="macro", zero_division=0)`.
    pub macro_f1: f64,
    /// `precision_score(average="macro", zero_division=0)`.
    pub macro_precision: f64,
    /// `recall_score(average="macro", zero_division=0)`.
    pub macro_recall: f64,
    /// `labels.len()²` counts, row = true label, column = predicted label.
    pub confusion: Vec<u64>,
}

/// numpy's pairwise summation for contiguous `float64` (`pairwise_sum_DOUBLE`).
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// numpy's `mean` of a 1-d `float64` array.
fn np_mean(a: &[f64]) -> f64 {
    pairwise_sum(a) / a.len() as f64
}

/// Compute all metrics. `labels = None` uses the sorted union of the values
/// in `y_true` and `y_pred`; explicit labels must be distinct and may include
/// labels absent from both (they score 0 and count in macro averages, as in
/// scikit-learn).
pub fn classification_metrics(y_true: &[u32], y_pred: &[u32], labels: Option<&[u32]>) -> Result<ClassificationMetrics, ProbeError> {
    if y_true.len() != y_pred.len() {
        return Err(ProbeError::Metrics {
            what: "y_pred length",
            expected: y_true.len().to_string(),
            actual: y_pred.len().to_string(),
            fix: "pass one prediction per true label",
        });
    }
    if y_true.is_empty() {
        return Err(ProbeError::Metrics {
            what: "y_true",
            expected: "at least one sample".into(),
            actual: "0 samples".into(),
            fix: "score a non-empty test split",
        });
    }
    let labels: Vec<u32> = match labels {
        Some(l) => {
            let mut sorted = l.to_vec();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(ProbeError::Metrics {
                    what: "labels",
                    expected: "distinct labels".into(),
                    actual: format!("label {} repeated", w[0]),
                    fix: "remove duplicate labels",
                });
            }
            if l.is_empty() {
                return Err(ProbeError::Metrics {
                    what: "labels",
                    expected: "at least one label".into(),
                    actual: "an empty list".into(),
                    fix: "pass None to use the labels present in the data",
                });
            }
            l.to_vec()
        }
        None => {
            let mut u: Vec<u32> = y_true.iter().chain(y_pred).copied().collect();
            u.sort_unstable();
            u.dedup();
            u
        }
    };
    let nl = labels.len();
    // Position of each label value, for the confusion matrix.
    let mut order: Vec<(u32, usize)> = labels.iter().copied().zip(0..).collect();
    order.sort_unstable();
    let pos = |v: u32| order.binary_search_by_key(&v, |&(l, _)| l).ok().map(|i| order[i].1);

    let mut confusion = vec![0u64; nl * nl];
    let mut tp = vec![0u64; nl];
    let mut true_sum = vec![0u64; nl];
    let mut pred_sum = vec![0u64; nl];
    let mut correct = 0u64;
    for (&t, &p) in y_true.iter().zip(y_pred) {
        if t == p {
            correct += 1;
        }
        let (pt, pp) = (pos(t), pos(p));
        if let Some(i) = pt {
            true_sum[i] += 1;
        }
        if let Some(j) = pp {
            pred_sum[j] += 1;
        }
        if let (Some(i), Some(j)) = (pt, pp) {
            confusion[i * nl + j] += 1;
            if i == j {
                tp[i] += 1;
            }
        }
    }
    let div = |num: f64, den: f64| if den == 0.0 { 0.0 } else { num / den };
    let precision: Vec<f64> = (0..nl).map(|i| div(tp[i] as f64, pred_sum[i] as f64)).collect();
    let recall: Vec<f64> = (0..nl).map(|i| div(tp[i] as f64, true_sum[i] as f64)).collect();
    let f1: Vec<f64> = (0..nl).map(|i| div(2.0 * tp[i] as f64, 1.0 * true_sum[i] as f64 + pred_sum[i] as f64)).collect();
    Ok(ClassificationMetrics {
        accuracy: correct as f64 / y_true.len() as f64,
        macro_f1: np_mean(&f1),
        macro_precision: np_mean(&precision),
        macro_recall: np_mean(&recall),
        labels,
        precision,
        recall,
        f1,
        support: true_sum,
        confusion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_naive_on_exact_values() {
        let a: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(pairwise_sum(&a), 499_500.0);
        assert_eq!(pairwise_sum(&a[..5]), 10.0);
        assert_eq!(pairwise_sum(&[]), 0.0);
    }

    #[test]
    fn zero_division_and_absent_labels() {
        // label 2 only predicted, label 3 only true.
        let m = classification_metrics(&[0, 0, 1, 3], &[0, 1, 1, 2], None).unwrap();
        assert_eq!(m.labels, vec![0, 1, 2, 3]);
        assert_eq!(m.precision, vec![1.0, 0.5, 0.0, 0.0]);
        assert_eq!(m.recall, vec![0.5, 1.0, 0.0, 0.0]);
        assert_eq!(m.support, vec![2, 1, 0, 1]);
        assert_eq!(m.accuracy, 0.5);
        assert_eq!(m.confusion[3 * 4 + 2], 1);
        assert!(classification_metrics(&[0], &[0, 1], None).is_err());
        assert!(classification_metrics(&[], &[], None).is_err());
        assert!(classification_metrics(&[0], &[0], Some(&[1, 1])).is_err());
    }
}
