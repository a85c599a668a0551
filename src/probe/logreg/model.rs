//! A fitted probe ([`LogRegModel`]) and its scoring: decision function,
//! class probabilities and predictions.

use crate::probe::ProbeError;
use crate::probe::matrix::Design;

/// A fitted probe.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRegModel {
    /// Number of classes (rows of `coef`), including classes unseen in training.
    pub n_classes: usize,
    /// Number of features.
    pub n_features: usize,
    /// `n_classes × n_features`, row-major (scikit-learn's `coef_`, except in
    /// the binary case, see the [`logreg`](super) docs).
    pub coef: Vec<f64>,
    /// One per class; `-inf` for classes without training samples; 0 when
    /// `fit_intercept` is false.
    pub intercept: Vec<f64>,
    /// L-BFGS iterations performed (scikit-learn's `n_iter_`).
    pub n_iter: usize,
    /// Objective/gradient evaluations performed.
    pub n_fev: usize,
    /// Whether the gradient criterion (`max|∇f| ≤ tol`) ended the fit.
    pub converged: bool,
    /// What ended the fit.
    pub stop: Stop,
    /// The objective at the returned parameters, in the scale of the
    /// [`logreg`](super) docs.
    pub objective: f64,
    /// Max-norm of the objective's gradient at the returned parameters.
    pub grad_max_norm: f64,
}

/// What ended a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `max|∇f| ≤ tol`: converged.
    Gradient,
    /// The objective's relative decrease fell below `64·ε` (scipy's `ftol`): progress stalled,
    /// which is not proof of an optimum.
    Stalled,
    /// `max_iter` iterations ran out (scikit-learn warns `ConvergenceWarning`).
    MaxIter,
    /// No step along the steepest descent satisfied the line search.
    LineSearch,
}

impl Stop {
    /// The name written in the probe's metrics (`stop` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Gradient => "gradient",
            Stop::Stalled => "objective_stalled",
            Stop::MaxIter => "max_iter",
            Stop::LineSearch => "line_search_failed",
        }
    }
}

impl LogRegModel {
    fn check_x(&self, x: &impl Design) -> Result<(), ProbeError> {
        if x.n_cols() != self.n_features {
            return Err(ProbeError::Shape {
                what: "design matrix columns",
                expected: self.n_features,
                actual: x.n_cols(),
                fix: "score with the features (and scaling) the probe was fitted on",
            });
        }
        Ok(())
    }

    /// `X·coefᵀ + intercept`, `n × n_classes` row-major; `-inf` for classes
    /// unseen in training.
    pub fn decision_function(&self, x: &impl Design) -> Result<Vec<f64>, ProbeError> {
        self.check_x(x)?;
        let (k, d) = (self.n_classes, self.n_features);
        let mut wt = vec![0.0; d * k];
        for c in 0..k {
            for j in 0..d {
                wt[j * k + c] = self.coef[c * d + j];
            }
        }
        let mut z = vec![0.0; x.n_rows() * k];
        x.mul_wt(&wt, k, &mut z, 1);
        for row in z.chunks_exact_mut(k) {
            for (v, &b) in row.iter_mut().zip(&self.intercept) {
                *v += b;
            }
        }
        Ok(z)
    }

    /// Class probabilities (softmax of the decision function),
    /// `n × n_classes` row-major; exactly 0 for classes unseen in training.
    pub fn predict_proba(&self, x: &impl Design) -> Result<Vec<f64>, ProbeError> {
        let mut z = self.decision_function(x)?;
        for row in z.chunks_exact_mut(self.n_classes) {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
            let mut s = 0.0;
            for v in row.iter_mut() {
                *v = (*v - m).exp();
                s += *v;
            }
            row.iter_mut().for_each(|v| *v /= s);
        }
        Ok(z)
    }

    /// Predicted class per row: argmax of the decision function, ties to the
    /// lowest class index (numpy's `argmax`).
    pub fn predict(&self, x: &impl Design) -> Result<Vec<u32>, ProbeError> {
        let z = self.decision_function(x)?;
        Ok(z.chunks_exact(self.n_classes)
            .map(|row| {
                let mut best = 0;
                for (c, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = c;
                    }
                }
                best as u32
            })
            .collect())
    }
}
