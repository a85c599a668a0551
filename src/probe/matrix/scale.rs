//! Column scaling without centering, as scikit-learn's `MaxAbsScaler` and
//! `StandardScaler(with_mean=False)`: [`Scale`] and the fitted [`Scaling`].

use super::Design;
use crate::probe::ProbeError;

/// Which column scaling to apply before fitting. No variant centers the data,
/// so sparsity is preserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// No scaling.
    #[default]
    None,
    /// Divide each column by its maximum absolute value, as
    /// `sklearn.preprocessing.MaxAbsScaler`.
    MaxAbs,
    /// Divide each column by its population standard deviation (ddof=0),
    /// as `sklearn.preprocessing.StandardScaler(with_mean=False)`.
    Std,
}

/// Fitted per-column divisors (scikit-learn's `scale_`); fit on the training
/// rows, apply to train and test alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    /// One divisor per column; 1.0 for columns left untouched.
    pub scale: Vec<f64>,
}

impl Scaling {
    /// Fit the divisors on `x`.
    ///
    /// * `MaxAbs`: `max_j |x_ij|`; columns whose max is below
    ///   `10 * f32::EPSILON` (sklearn's `_handle_zeros_in_scale` in the data's
    ///   dtype) get 1.
    /// * `Std`: `sqrt(var_j)` with `var_j` the population variance computed in
    ///   `f64` and then rounded to `f32`, as scikit-learn's
    ///   `mean_variance_axis` returns it for `f32` data; constant columns get
    ///   1, using sklearn's `_is_constant_feature` test
    ///   `var <= n·eps·var + (n·mean·eps)²`. For CSR input this reproduces
    ///   `StandardScaler(with_mean=False).fit(X_f32).scale_` bit for bit; the
    ///   dense path uses a plain two-pass variance (sklearn's dense path uses
    ///   an incremental one), equal to rounding.
    pub fn fit(x: &impl Design, scale: Scale) -> Scaling {
        let d = x.n_cols();
        let scale = match scale {
            Scale::None => vec![1.0; d],
            Scale::MaxAbs => x.column_max_abs().into_iter().map(|m| if m < 10.0 * f32::EPSILON as f64 { 1.0 } else { m }).collect(),
            Scale::Std => {
                let (mean, var) = x.column_mean_var();
                let n = x.n_rows() as f64;
                let eps = f64::EPSILON;
                mean.iter()
                    .zip(&var)
                    .map(|(&m, &v)| {
                        let (m, v) = (m as f32 as f64, v as f32 as f64);
                        let bound = n * eps * v + (n * m * eps).powi(2);
                        if v <= bound { 1.0 } else { v.sqrt() }
                    })
                    .collect()
            }
        };
        Scaling { scale }
    }

    /// Divide every column of `x` by its divisor: `f32(f64(x) * (1 / s))`,
    /// the rounding sklearn's in-place `inplace_column_scale` performs on
    /// `f32` data.
    pub fn apply<D: Design>(&self, x: &D) -> Result<D, ProbeError> {
        if self.scale.len() != x.n_cols() {
            return Err(ProbeError::Shape {
                what: "scaling columns",
                expected: x.n_cols(),
                actual: self.scale.len(),
                fix: "fit the scaling on a matrix with the same columns",
            });
        }
        let inv: Vec<f64> = self.scale.iter().map(|s| 1.0 / s).collect();
        Ok(x.scale_columns(&inv))
    }
}
