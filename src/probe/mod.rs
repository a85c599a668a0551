//! Linear probe for saeflow: multinomial logistic regression on sparse (CSR)
//! or dense features, and classification metrics, both in parity with
//! scikit-learn.
//!
//! * [`matrix`]: [`Csr`] and [`Dense`] design matrices, the [`Design`] trait
//!   with the two products the solver needs, row selection and column scaling
//!   (`MaxAbsScaler` / `StandardScaler(with_mean=False)`).
//! * [`logreg`]: `LogisticRegression(solver="lbfgs")` with the multinomial
//!   (softmax) loss, L2 penalty on the weights only, solved by an in-house
//!   L-BFGS with a strong-Wolfe line search.
//! * [`metrics`]: accuracy, per-class precision/recall/F1/support, macro
//!   averages and the confusion matrix, computed as scikit-learn does
//!   (`zero_division=0`), bit for bit.
//! * `simd`: the one run-time choice of CPU features (AVX-512F, AVX2 or
//!   portable) for the products' gather kernel and the solver's vector passes.
//!
//! Everything is single-process and deterministic: the products may use
//! several threads, but every output element is computed by exactly one
//! thread in a fixed order, so results do not depend on the thread count.

pub mod logreg;
pub mod matrix;
pub mod metrics;
mod simd;

pub use logreg::{LogRegConfig, LogRegModel, fit, objective};
pub use matrix::{Csr, Dense, Design, Scale, Scaling};
pub use metrics::{ClassificationMetrics, classification_metrics};

/// Errors of the probe stage. Every message names the subject, what was
/// expected, what was found, and how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    /// A buffer or dimension does not have the size the other inputs imply.
    #[error("{what}: expected length {expected}, got {actual}; {fix}")]
    Shape { what: &'static str, expected: usize, actual: usize, fix: &'static str },
    /// CSR structure is invalid (indptr not monotone, column out of range,
    /// unsorted or duplicate column indices in a row).
    #[error("csr matrix {what} at row {row}: expected {expected}, got {actual}; {fix}")]
    Csr { what: &'static str, row: usize, expected: String, actual: String, fix: &'static str },
    /// A value in the data is NaN or infinite.
    #[error("{what}: expected finite values, got {value} at position {index}; remove or impute non-finite values before probing")]
    NonFinite { what: &'static str, index: usize, value: f64 },
    /// A class label is outside `0..n_classes`.
    #[error(
        "label at row {row}: expected a class index below n_classes={n_classes}, got {label}; re-encode labels as 0..n_classes or raise n_classes"
    )]
    Label { row: usize, label: u32, n_classes: usize },
    /// Training labels contain fewer than two distinct classes.
    #[error(
        "training labels: expected at least 2 distinct classes, got {found}; the probe needs samples of at least two classes (check the train/test split)"
    )]
    TooFewClasses { found: usize },
    /// An invalid hyper-parameter.
    #[error("logistic regression config {what}: expected {expected}, got {actual}; {fix}")]
    Config { what: &'static str, expected: &'static str, actual: String, fix: &'static str },
    /// A warm-start model whose shape does not match the problem.
    #[error("warm start model {what}: expected {expected}, got {actual}; pass a model fitted on the same features and classes, or None")]
    WarmStart { what: &'static str, expected: usize, actual: usize },
    /// Metric inputs that cannot be scored.
    #[error("metrics {what}: expected {expected}, got {actual}; {fix}")]
    Metrics { what: &'static str, expected: String, actual: String, fix: &'static str },
}
