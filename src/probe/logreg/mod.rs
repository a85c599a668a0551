//! Multinomial logistic regression with an L2 penalty, in parity with
//! scikit-learn's `LogisticRegression(solver="lbfgs")` (penalty `l2`,
//! `l1_ratio=0`).
//!
//! # Objective
//! With `n` samples, the `K'` classes that occur in `y`, weights `W`
//! (`K' × d`) and intercepts `b`, the fit minimises
//!
//! ```text
//! f(W, b) = (1/n) Σᵢ [ logsumexp(W xᵢ + b) − (W xᵢ + b)_{yᵢ} ]  +  ‖W‖²_F / (2·C_eff·n)
//! ```
//!
//! which is scikit-learn's `C·Σᵢ logloss + ½‖W‖²` divided by `C·n`: the same
//! optimum, and exactly the scale scikit-learn's `LinearModelLoss` hands to
//! scipy's L-BFGS-B (`l2_reg_strength = 1/(C·n)`, mean log-loss). The
//! intercept is not penalised. [`LogRegModel::objective`] reports `f` in this
//! scale, and `tol` is compared with the max-norm of its gradient, as
//! scikit-learn's `tol` is passed to scipy as `gtol`.
//!
//! * `K' ≥ 3`: full softmax over `K'` classes (no reference class),
//!   `C_eff = C` — scikit-learn's multinomial loss.
//! * `K' = 2`: scikit-learn fits a *binary* model (one weight vector `v`,
//!   sigmoid loss, penalty `½‖v‖²`). A two-class softmax with penalty
//!   `½(‖w₀‖²+‖w₁‖²)` and `C_eff = C/2` has the same optimum with
//!   `w₁ = −w₀ = v/2`, and its objective equals scikit-learn's binary one, so
//!   we fit that: probabilities and predictions match the binary model, and
//!   `coef[1] − coef[0]` is scikit-learn's `coef_[0]`.
//!
//! # Classes without training samples
//! `n_classes` may exceed the classes seen in `y`. As in scikit-learn (whose
//! `classes_` are the labels seen), such classes take no part in the fit:
//! their coefficient row is 0 and their intercept is `-inf`, so their
//! decision value is `-inf`, their probability exactly 0, and they are never
//! predicted. Fewer than two seen classes is an error, as in scikit-learn.
//!
//! # Optimiser
//! L-BFGS (memory 10 as scipy's `maxcor`, in the compact representation
//! L-BFGS-B uses), first step
//! `1/‖g‖₂` as L-BFGS-B, then unit steps; a line search satisfying the strong
//! Wolfe conditions (`c₁ = 1e-3`, `c₂ = 0.9`, scipy's `dcsrch` constants;
//! at most 50 evaluations, sklearn's `maxls`) with safeguarded cubic
//! interpolation. Stops when `max|∇f| ≤ tol` (scipy's `pgtol`) or when
//! `(f_old − f)/max(|f_old|, |f|, 1) ≤ 64·ε` (the `ftol` sklearn passes), or
//! after `max_iter` iterations. A failed line search drops the memory and
//! retries along the steepest descent once, as L-BFGS-B does. The model
//! records which of these ended the fit ([`Stop`]); `converged` is true only
//! for the gradient criterion (scipy also reports the `ftol` stop as
//! converged, though it can stall well above the optimum).
//!
//! Everything is computed in `f64` with a max-shifted log-sum-exp, and all
//! reductions run in a fixed order, so fits are bit-reproducible and do not
//! depend on `threads`.

mod lbfgs;
mod line_search;
mod model;
mod objective;
mod vector;

pub use model::{LogRegModel, Stop};
pub use objective::objective;

use self::lbfgs::Memory;
use self::line_search::{LineSearch, line_search};
use self::objective::{Problem, check_inputs, class_map};
use super::ProbeError;
use super::matrix::Design;

/// Hyper-parameters of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct LogRegConfig {
    /// Inverse regularisation strength, as scikit-learn's `C` (> 0).
    pub c: f64,
    /// Maximum number of L-BFGS iterations (scikit-learn's `max_iter`).
    pub max_iter: usize,
    /// Gradient max-norm tolerance in the mean-loss scale (scikit-learn's
    /// `tol`, passed to scipy as `gtol`).
    pub tol: f64,
    /// Fit an unpenalised intercept per class.
    pub fit_intercept: bool,
    /// Threads for the matrix products (results do not depend on it).
    pub threads: usize,
}

impl Default for LogRegConfig {
    fn default() -> Self {
        LogRegConfig { c: 1.0, max_iter: 1000, tol: 1e-6, fit_intercept: true, threads: 1 }
    }
}

/// Relative decrease of the objective below which the fit stops (the
/// `ftol` scikit-learn passes to scipy).
const FTOL: f64 = 64.0 * f64::EPSILON;

/// Fit the probe. `y[i]` is the class index (`< n_classes`) of row `i`.
///
/// `warm_start`: start from a previous model's coefficients (same
/// `n_classes` and `n_features`), e.g. one fitted with a neighbouring `C`;
/// rows of classes unseen by that model start at 0.
pub fn fit(
    x: &impl Design,
    y: &[u32],
    n_classes: usize,
    cfg: &LogRegConfig,
    warm_start: Option<&LogRegModel>,
) -> Result<LogRegModel, ProbeError> {
    check_inputs(x, y, cfg)?;
    let map = class_map(y, n_classes)?;
    let mut p = Problem::new(x, y, &map, cfg.c, cfg.fit_intercept, cfg.threads);
    let (k, d) = (p.k, p.d);
    let mut theta = vec![0.0; p.n_params()];
    if let Some(m) = warm_start {
        if m.n_classes != n_classes {
            return Err(ProbeError::WarmStart { what: "n_classes", expected: n_classes, actual: m.n_classes });
        }
        if m.n_features != d || m.coef.len() != n_classes * d || m.intercept.len() != n_classes {
            return Err(ProbeError::WarmStart { what: "n_features", expected: d, actual: m.n_features });
        }
        for (ci, &c) in map.seen.iter().enumerate() {
            for j in 0..d {
                theta[j * k + ci] = m.coef[c * d + j];
            }
            if cfg.fit_intercept && m.intercept[c].is_finite() {
                theta[d * k + ci] = m.intercept[c];
            }
        }
    }

    let np = theta.len();
    let t = p.threads;
    let nw = p.n_weights();
    let mut g = vec![0.0; np];
    let mut f = p.start(&theta, &mut g);
    let mut mem = Memory::new(t);
    let mut dir = vec![0.0; np];
    let (mut x_t, mut g_t) = (vec![0.0; np], vec![0.0; np]);
    let mut n_iter = 0;
    let mut g_max = vector::max_abs(&g);
    let mut stop = if g_max <= cfg.tol { Some(Stop::Gradient) } else { None };
    while stop.is_none() && n_iter < cfg.max_iter {
        let (mut dg0, mut dd, mut formed) = mem.direction(&g, &mut dir, Some((&theta, nw, &mut x_t)));
        if dg0.is_nan() || dg0 >= 0.0 {
            mem.clear();
            (dg0, dd, formed) = mem.direction(&g, &mut dir, None);
        }
        let a0 = if mem.len() == 0 { (1.0 / dd.sqrt()).min(1e10) } else { 1.0 };
        p.prepare(&dir);
        let f_new = match line_search(&mut p, &theta, f, &dir, dg0, (a0, formed), &mut x_t) {
            LineSearch::Ok(f_new) => f_new,
            LineSearch::Failed => {
                if mem.len() == 0 {
                    stop = Some(Stop::LineSearch);
                    break;
                }
                mem.clear();
                continue;
            }
        };
        n_iter += 1;
        p.accept(&x_t, &mut g_t);
        g_max = mem.advance(&x_t, &theta, &g_t, &g);
        let f_old = f;
        f = f_new;
        std::mem::swap(&mut theta, &mut x_t);
        std::mem::swap(&mut g, &mut g_t);
        if g_max <= cfg.tol {
            stop = Some(Stop::Gradient);
        } else if (f_old - f) <= FTOL * f_old.abs().max(f.abs()).max(1.0) {
            stop = Some(Stop::Stalled);
        }
    }
    let stop = stop.unwrap_or(Stop::MaxIter);
    // The objective at the returned parameters from scratch (the iterations'
    // values come from updated logits, equal up to rounding).
    if n_iter > 0 {
        f = p.value(&theta);
    }

    let grad_max_norm = g_max;
    let mut coef = vec![0.0; n_classes * d];
    let mut intercept = vec![f64::NEG_INFINITY; n_classes];
    for (ci, &c) in map.seen.iter().enumerate() {
        for j in 0..d {
            coef[c * d + j] = theta[j * k + ci];
        }
        intercept[c] = if cfg.fit_intercept { theta[d * k + ci] } else { 0.0 };
    }
    Ok(LogRegModel {
        n_classes,
        n_features: d,
        coef,
        intercept,
        n_iter,
        n_fev: p.n_fev,
        converged: stop == Stop::Gradient,
        stop,
        objective: f,
        grad_max_norm,
    })
}
