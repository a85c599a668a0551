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
//! L-BFGS (two-loop recursion, memory 10 as scipy's `maxcor`), first step
//! `1/‖g‖₂` as L-BFGS-B, then unit steps; a line search satisfying the strong
//! Wolfe conditions (`c₁ = 1e-3`, `c₂ = 0.9`, scipy's `dcsrch` constants;
//! at most 50 evaluations, sklearn's `maxls`) with safeguarded cubic
//! interpolation. Stops when `max|∇f| ≤ tol` (scipy's `pgtol`) or when
//! `(f_old − f)/max(|f_old|, |f|, 1) ≤ 64·ε` (the `ftol` sklearn passes), or
//! after `max_iter` iterations. A failed line search drops the memory and
//! retries along the steepest descent once, as L-BFGS-B does.
//!
//! Everything is computed in `f64` with a max-shifted log-sum-exp, and all
//! reductions run in a fixed order, so fits are bit-reproducible and do not
//! depend on `threads`.

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

/// A fitted probe.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRegModel {
    /// Number of classes (rows of `coef`), including classes unseen in training.
    pub n_classes: usize,
    /// Number of features.
    pub n_features: usize,
    /// `n_classes × n_features`, row-major (scikit-learn's `coef_`, except in
    /// the binary case, see the module docs).
    pub coef: Vec<f64>,
    /// One per class; `-inf` for classes without training samples; 0 when
    /// `fit_intercept` is false.
    pub intercept: Vec<f64>,
    /// L-BFGS iterations performed (scikit-learn's `n_iter_`).
    pub n_iter: usize,
    /// Objective/gradient evaluations performed.
    pub n_fev: usize,
    /// Whether a stopping criterion other than `max_iter` (or a failed line
    /// search) ended the fit.
    pub converged: bool,
    /// The objective at the returned parameters, in the scale of the module
    /// docs.
    pub objective: f64,
    /// Max-norm of the objective's gradient at the returned parameters.
    pub grad_max_norm: f64,
}

const MEMORY: usize = 10;
const MAX_LS: usize = 50;
const C1: f64 = 1e-3;
const C2: f64 = 0.9;
const FTOL: f64 = 64.0 * f64::EPSILON;

/// The classes seen in `y`, their compact index, and the effective C.
struct ClassMap {
    /// `compact[c]` is `Some(i)` for a seen class `c`.
    compact: Vec<Option<usize>>,
    /// Seen classes in increasing order.
    seen: Vec<usize>,
}

fn class_map(y: &[u32], n_classes: usize) -> Result<ClassMap, ProbeError> {
    let mut count = vec![0usize; n_classes];
    for (row, &label) in y.iter().enumerate() {
        if label as usize >= n_classes {
            return Err(ProbeError::Label { row, label, n_classes });
        }
        count[label as usize] += 1;
    }
    let seen: Vec<usize> = (0..n_classes).filter(|&c| count[c] > 0).collect();
    if seen.len() < 2 {
        return Err(ProbeError::TooFewClasses { found: seen.len() });
    }
    let mut compact = vec![None; n_classes];
    for (i, &c) in seen.iter().enumerate() {
        compact[c] = Some(i);
    }
    Ok(ClassMap { compact, seen })
}

fn check_inputs(x: &impl Design, y: &[u32], cfg: &LogRegConfig) -> Result<(), ProbeError> {
    if y.len() != x.n_rows() {
        return Err(ProbeError::Shape {
            what: "labels",
            expected: x.n_rows(),
            actual: y.len(),
            fix: "pass one label per row of the design matrix",
        });
    }
    if !(cfg.c.is_finite() && cfg.c > 0.0) {
        return Err(ProbeError::Config { what: "c", expected: "a finite value > 0", actual: cfg.c.to_string(), fix: "use e.g. c = 1.0" });
    }
    if cfg.tol.is_nan() || cfg.tol < 0.0 {
        return Err(ProbeError::Config { what: "tol", expected: "a value >= 0", actual: cfg.tol.to_string(), fix: "use e.g. tol = 1e-6" });
    }
    Ok(())
}

/// The optimisation problem over the seen classes. Parameters are laid out as
/// `[Wᵀ (d × k, row-major) ; b (k, only with intercept)]`.
struct Problem<'a, D: Design> {
    x: &'a D,
    /// Compact labels.
    y: Vec<usize>,
    k: usize,
    d: usize,
    /// `1 / (C_eff · n)`.
    l2: f64,
    fit_intercept: bool,
    threads: usize,
    /// `n × k` scratch: logits, then the pointwise gradient.
    z: Vec<f64>,
    n_fev: usize,
}

impl<'a, D: Design> Problem<'a, D> {
    fn new(x: &'a D, y: &[u32], map: &ClassMap, c: f64, fit_intercept: bool, threads: usize) -> Self {
        let k = map.seen.len();
        let c_eff = if k == 2 { c / 2.0 } else { c };
        let n = x.n_rows();
        Problem {
            x,
            // class_map validated every label, so the lookup is Some.
            y: y.iter().map(|&l| map.compact[l as usize].unwrap_or(0)).collect(),
            k,
            d: x.n_cols(),
            l2: 1.0 / (c_eff * n as f64),
            fit_intercept,
            threads: threads.max(1),
            z: vec![0.0; n * k],
            n_fev: 0,
        }
    }

    fn n_params(&self) -> usize {
        self.d * self.k + if self.fit_intercept { self.k } else { 0 }
    }

    /// Objective value; writes the gradient into `grad`.
    fn eval(&mut self, theta: &[f64], grad: &mut [f64]) -> f64 {
        self.n_fev += 1;
        let (k, d) = (self.k, self.d);
        let n = self.x.n_rows();
        let (wt, b) = theta.split_at(d * k);
        for row in self.z.chunks_exact_mut(k) {
            if self.fit_intercept {
                row.copy_from_slice(b);
            } else {
                row.fill(0.0);
            }
        }
        self.x.mul_wt(wt, k, &mut self.z, self.threads);
        let inv_n = 1.0 / n as f64;
        let mut loss = 0.0;
        for (row, &yi) in self.z.chunks_exact_mut(k).zip(&self.y) {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
            let zy = row[yi];
            let mut s = 0.0;
            for v in row.iter_mut() {
                *v = (*v - m).exp();
                s += *v;
            }
            loss += m + s.ln() - zy;
            let inv_s = 1.0 / s;
            for v in row.iter_mut() {
                *v *= inv_s * inv_n;
            }
            row[yi] -= inv_n;
        }
        let (gw, gb) = grad.split_at_mut(d * k);
        self.x.tmul_g(&self.z, k, gw, self.threads);
        let mut sq = 0.0;
        for (g, &w) in gw.iter_mut().zip(wt) {
            *g += self.l2 * w;
            sq += w * w;
        }
        if self.fit_intercept {
            gb.fill(0.0);
            for row in self.z.chunks_exact(k) {
                for (g, &v) in gb.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
        loss * inv_n + 0.5 * self.l2 * sq
    }
}

/// Vector kernels of the optimiser, optionally on several threads.
///
/// Reductions (dot products) are summed per fixed block of `BLOCK` elements
/// and the block sums are then added in block order, whatever the number of
/// threads: results are bit-identical for any thread count.
mod vops {
    pub(super) const BLOCK: usize = 1 << 14;

    /// Run `f(offset, chunks...)` on contiguous block-aligned ranges of
    /// `out`, collecting one partial per `BLOCK` into `partials`.
    fn run<F>(threads: usize, out: &mut [f64], partials: &mut [f64], f: F)
    where
        F: Fn(usize, &mut [f64], &mut [f64]) + Sync,
    {
        let n_blocks = partials.len();
        let threads = threads.clamp(1, n_blocks.max(1));
        if threads == 1 {
            f(0, out, partials);
            return;
        }
        let per = n_blocks.div_ceil(threads);
        std::thread::scope(|s| {
            let mut o = out;
            let mut p = partials;
            let mut start = 0;
            while !p.is_empty() {
                let nb = per.min(p.len());
                let len = (nb * BLOCK).min(o.len());
                let (oc, ot) = o.split_at_mut(len);
                let (pc, pt) = p.split_at_mut(nb);
                o = ot;
                p = pt;
                let f = &f;
                s.spawn(move || f(start, oc, pc));
                start += len;
            }
        });
    }

    fn blocks(n: usize) -> usize {
        n.div_ceil(BLOCK).max(1)
    }

    /// `a · b`.
    pub(super) fn dot(threads: usize, a: &[f64], b: &[f64]) -> f64 {
        let mut partials = vec![0.0; blocks(a.len())];
        dot_into(threads, a, b, &mut partials);
        partials.iter().sum()
    }

    fn dot_into(threads: usize, a: &[f64], b: &[f64], partials: &mut [f64]) {
        let n_blocks = partials.len();
        let threads = threads.clamp(1, n_blocks);
        let work = |first: usize, part: &mut [f64]| {
            for (i, p) in part.iter_mut().enumerate() {
                let lo = (first + i) * BLOCK;
                let hi = (lo + BLOCK).min(a.len());
                *p = a[lo..hi].iter().zip(&b[lo..hi]).map(|(x, y)| x * y).sum();
            }
        };
        if threads == 1 {
            work(0, partials);
            return;
        }
        let per = n_blocks.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, part) in partials.chunks_mut(per).enumerate() {
                let work = &work;
                s.spawn(move || work(t * per, part));
            }
        });
    }

    /// `out[i] = f(i, out[i])` elementwise, then `Σ out[i]·w[i]` if `w` is
    /// given (0 otherwise).
    pub(super) fn map_dot<F>(threads: usize, out: &mut [f64], w: Option<&[f64]>, f: F) -> f64
    where
        F: Fn(usize, f64) -> f64 + Sync,
    {
        let mut partials = vec![0.0; blocks(out.len())];
        run(threads, out, &mut partials, |off, o, part| {
            for (bi, (chunk, p)) in o.chunks_mut(BLOCK).zip(part.iter_mut()).enumerate() {
                let base = off + bi * BLOCK;
                for (i, v) in chunk.iter_mut().enumerate() {
                    *v = f(base + i, *v);
                }
                if let Some(w) = w {
                    *p = chunk.iter().zip(&w[base..base + chunk.len()]).map(|(x, y)| x * y).sum();
                }
            }
        });
        partials.iter().sum()
    }

    /// `max_i |a_i|`.
    pub(super) fn max_abs(a: &[f64]) -> f64 {
        a.iter().fold(0.0, |m, v| m.max(v.abs()))
    }
}

/// L-BFGS memory: the last `MEMORY` pairs `(s, y)` with `ρ = 1/(sᵀy)`.
/// Buffers are recycled, never reallocated once the memory is full.
struct Memory {
    s: Vec<Vec<f64>>,
    y: Vec<Vec<f64>>,
    rho: Vec<f64>,
    /// Buffers of dropped pairs, reused by `push`.
    spare: Vec<Vec<f64>>,
    /// Initial inverse-Hessian scale `sᵀy / yᵀy` of the newest pair.
    gamma: f64,
    threads: usize,
}

impl Memory {
    fn len(&self) -> usize {
        self.s.len()
    }

    fn clear(&mut self) {
        self.spare.append(&mut self.s);
        self.spare.append(&mut self.y);
        self.rho.clear();
    }

    fn buffer(&mut self, n: usize) -> Vec<f64> {
        self.spare.pop().unwrap_or_else(|| vec![0.0; n])
    }

    /// Store `s = x_new − x`, `y = g_new − g` if `sᵀy > ε·yᵀy` (L-BFGS-B's
    /// curvature test). Returns whether the pair was stored.
    fn push(&mut self, x_new: &[f64], x: &[f64], g_new: &[f64], g: &[f64]) -> bool {
        let n = x.len();
        let t = self.threads;
        let mut s = self.buffer(n);
        let mut y = self.buffer(n);
        vops::map_dot(t, &mut s, None, |i, _| x_new[i] - x[i]);
        let sy = vops::map_dot(t, &mut y, Some(&s), |i, _| g_new[i] - g[i]);
        let yy = vops::dot(t, &y, &y);
        if sy.is_nan() || sy <= f64::EPSILON * yy {
            self.spare.push(s);
            self.spare.push(y);
            return false;
        }
        if self.s.len() == MEMORY {
            self.spare.push(self.s.remove(0));
            self.spare.push(self.y.remove(0));
            self.rho.remove(0);
        }
        self.s.push(s);
        self.y.push(y);
        self.rho.push(1.0 / sy);
        self.gamma = sy / yy;
        true
    }

    /// `d = −H g` by the two-loop recursion, with each update fused with
    /// the next dot product (one pass per pair and loop).
    fn direction(&self, g: &[f64], d: &mut [f64]) {
        let t = self.threads;
        let m = self.s.len();
        if m == 0 {
            vops::map_dot(t, d, None, |i, _| -g[i]);
            return;
        }
        let mut alpha = vec![0.0; m];
        // first loop, newest to oldest: α_i = ρ_i s_iᵀd; d −= α_i y_i
        let mut sd = vops::map_dot(t, d, Some(&self.s[m - 1]), |i, _| -g[i]);
        for i in (0..m).rev() {
            alpha[i] = self.rho[i] * sd;
            let yi = &self.y[i];
            let a = alpha[i];
            let next = if i > 0 { Some(self.s[i - 1].as_slice()) } else { None };
            sd = vops::map_dot(t, d, next, |j, v| v - a * yi[j]);
        }
        // scaling γ = sᵀy / yᵀy of the newest pair, fused with y_0ᵀd
        let gamma = self.gamma;
        let mut yd = vops::map_dot(t, d, Some(&self.y[0]), |_, v| v * gamma);
        // second loop, oldest to newest: β_i = ρ_i y_iᵀd; d += (α_i − β_i) s_i
        for (i, (&a, &rho)) in alpha.iter().zip(&self.rho).enumerate() {
            let c = a - rho * yd;
            let si = &self.s[i];
            let next = if i + 1 < m { Some(self.y[i + 1].as_slice()) } else { None };
            yd = vops::map_dot(t, d, next, |j, v| v + c * si[j]);
        }
    }
}

/// A point of the line search: step, value, directional derivative.
#[derive(Clone, Copy)]
struct Pt {
    a: f64,
    f: f64,
    dg: f64,
}

/// Minimiser of the cubic interpolating `lo` and `hi`, kept at least 10% of
/// the interval away from both ends; bisection when the cubic is unusable.
fn interpolate(lo: Pt, hi: Pt) -> f64 {
    let width = hi.a - lo.a;
    let mid = lo.a + 0.5 * width;
    if !(hi.f.is_finite() && hi.dg.is_finite()) {
        return lo.a + 0.1 * width;
    }
    let d1 = lo.dg + hi.dg - 3.0 * (lo.f - hi.f) / (lo.a - hi.a);
    let disc = d1 * d1 - lo.dg * hi.dg;
    if disc.is_nan() || disc < 0.0 {
        return mid;
    }
    let d2 = width.signum() * disc.sqrt();
    let a = hi.a - width * (hi.dg + d2 - d1) / (hi.dg - lo.dg + 2.0 * d2);
    let (l, h) = (lo.a + 0.1 * width, hi.a - 0.1 * width);
    let (l, h) = if l <= h { (l, h) } else { (h, l) };
    if a.is_finite() && a >= l && a <= h { a } else { mid }
}

/// Work vectors of the line search: the trial point and gradient, and the
/// best Armijo point seen so far.
struct Buffers {
    x_t: Vec<f64>,
    g_t: Vec<f64>,
    x_lo: Vec<f64>,
    g_lo: Vec<f64>,
}

/// Next trial step while no minimiser is bracketed: `cur` satisfies the
/// sufficient decrease but still descends. As Moré–Thuente's `dcstep`
/// (case 3), extrapolate with the cubic through `prev` and `cur`, kept within
/// `[cur + 1.1·Δ, cur + 4·Δ]`, `Δ = cur − prev`; the upper end when the cubic
/// has no minimiser beyond `cur`.
fn extrapolate(prev: Pt, cur: Pt) -> f64 {
    let delta = cur.a - prev.a;
    let (lo, hi) = (cur.a + 1.1 * delta, cur.a + 4.0 * delta);
    let theta = 3.0 * (prev.f - cur.f) / delta + prev.dg + cur.dg;
    let s = theta.abs().max(prev.dg.abs()).max(cur.dg.abs());
    let gamma = -s * ((theta / s).powi(2) - (prev.dg / s) * (cur.dg / s)).max(0.0).sqrt();
    let p = (gamma - cur.dg) + theta;
    let q = (gamma + (prev.dg - cur.dg)) + gamma;
    let r = p / q;
    let a = if r < 0.0 && gamma != 0.0 { cur.a + r * (prev.a - cur.a) } else { hi };
    if a.is_finite() { a.clamp(lo, hi) } else { hi }
}

enum LineSearch {
    /// Step accepted with this objective value; `x_t`/`g_t` hold the new
    /// point and its gradient.
    Ok(f64),
    Failed,
}

/// Strong-Wolfe line search from `x` along `dir`. On success the new point
/// and gradient are left in `x_t` and `g_t`.
#[allow(clippy::too_many_arguments)]
fn line_search<D: Design>(p: &mut Problem<'_, D>, x: &[f64], f0: f64, dir: &[f64], dg0: f64, a0: f64, bufs: &mut Buffers) -> LineSearch {
    let t = p.threads;
    let mut lo = Pt { a: 0.0, f: f0, dg: dg0 };
    // Whether `bufs.x_lo`/`g_lo` hold the point at `lo` (lo.a > 0).
    let mut have_lo = false;
    // The Armijo point before `lo`, for cubic extrapolation.
    let mut prev = lo;
    let mut hi: Option<Pt> = None;
    let mut a = a0;
    for _ in 0..MAX_LS {
        vops::map_dot(t, &mut bufs.x_t, None, |i, _| x[i] + a * dir[i]);
        let f = p.eval(&bufs.x_t, &mut bufs.g_t);
        let dg = vops::dot(t, &bufs.g_t, dir);
        let trial = Pt { a, f, dg };
        let armijo_fails = !f.is_finite() || f > f0 + C1 * a * dg0 || (lo.a > 0.0 && f >= lo.f);
        if armijo_fails {
            hi = Some(trial);
        } else {
            if dg.abs() <= -C2 * dg0 {
                return LineSearch::Ok(f);
            }
            match hi {
                None if dg >= 0.0 => hi = Some(lo),
                Some(h) if dg * (h.a - a) >= 0.0 => hi = Some(lo),
                _ => {}
            }
            prev = lo;
            lo = trial;
            std::mem::swap(&mut bufs.x_t, &mut bufs.x_lo);
            std::mem::swap(&mut bufs.g_t, &mut bufs.g_lo);
            have_lo = true;
        }
        a = match hi {
            None => extrapolate(prev, lo),
            Some(h) => {
                if (h.a - lo.a).abs() <= 1e-14 * h.a.abs().max(lo.a.abs()) {
                    break;
                }
                interpolate(lo, h)
            }
        };
    }
    // Out of evaluations: accept the best Armijo point, if any.
    if have_lo {
        std::mem::swap(&mut bufs.x_t, &mut bufs.x_lo);
        std::mem::swap(&mut bufs.g_t, &mut bufs.g_lo);
        LineSearch::Ok(lo.f)
    } else {
        LineSearch::Failed
    }
}

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
    let mut g = vec![0.0; np];
    let mut f = p.eval(&theta, &mut g);
    let mut mem = Memory { s: Vec::new(), y: Vec::new(), rho: Vec::new(), spare: Vec::new(), gamma: 1.0, threads: t };
    let mut dir = vec![0.0; np];
    let mut bufs = Buffers { x_t: vec![0.0; np], g_t: vec![0.0; np], x_lo: vec![0.0; np], g_lo: vec![0.0; np] };
    let mut n_iter = 0;
    let mut converged = vops::max_abs(&g) <= cfg.tol;
    while !converged && n_iter < cfg.max_iter {
        mem.direction(&g, &mut dir);
        let mut dg0 = vops::dot(t, &g, &dir);
        if dg0.is_nan() || dg0 >= 0.0 {
            mem.clear();
            mem.direction(&g, &mut dir);
            dg0 = vops::dot(t, &g, &dir);
        }
        let a0 = if mem.len() == 0 { (1.0 / vops::dot(t, &dir, &dir).sqrt()).min(1e10) } else { 1.0 };
        let f_new = match line_search(&mut p, &theta, f, &dir, dg0, a0, &mut bufs) {
            LineSearch::Ok(f_new) => f_new,
            LineSearch::Failed => {
                if mem.len() == 0 {
                    break;
                }
                mem.clear();
                continue;
            }
        };
        n_iter += 1;
        mem.push(&bufs.x_t, &theta, &bufs.g_t, &g);
        let f_old = f;
        f = f_new;
        std::mem::swap(&mut theta, &mut bufs.x_t);
        std::mem::swap(&mut g, &mut bufs.g_t);
        if vops::max_abs(&g) <= cfg.tol || (f_old - f) <= FTOL * f_old.abs().max(f.abs()).max(1.0) {
            converged = true;
        }
    }

    let grad_max_norm = vops::max_abs(&g);
    let mut coef = vec![0.0; n_classes * d];
    let mut intercept = vec![f64::NEG_INFINITY; n_classes];
    for (ci, &c) in map.seen.iter().enumerate() {
        for j in 0..d {
            coef[c * d + j] = theta[j * k + ci];
        }
        intercept[c] = if cfg.fit_intercept { theta[d * k + ci] } else { 0.0 };
    }
    Ok(LogRegModel { n_classes, n_features: d, coef, intercept, n_iter, n_fev: p.n_fev, converged, objective: f, grad_max_norm })
}

/// The objective of the module docs for arbitrary coefficients (e.g.
/// scikit-learn's), on `x`, `y`, with `cfg.c` and `cfg.fit_intercept`.
///
/// `coef` is `n_classes × d`, `intercept` has `n_classes` entries (ignored
/// when `fit_intercept` is false); rows of classes absent from `y` are
/// ignored, as in [`fit`].
pub fn objective(
    x: &impl Design,
    y: &[u32],
    n_classes: usize,
    cfg: &LogRegConfig,
    coef: &[f64],
    intercept: &[f64],
) -> Result<f64, ProbeError> {
    check_inputs(x, y, cfg)?;
    let map = class_map(y, n_classes)?;
    let d = x.n_cols();
    if coef.len() != n_classes * d {
        return Err(ProbeError::Shape {
            what: "coef",
            expected: n_classes * d,
            actual: coef.len(),
            fix: "coef must be n_classes × n_features, row-major",
        });
    }
    if intercept.len() != n_classes {
        return Err(ProbeError::Shape {
            what: "intercept",
            expected: n_classes,
            actual: intercept.len(),
            fix: "pass one intercept per class",
        });
    }
    let mut p = Problem::new(x, y, &map, cfg.c, cfg.fit_intercept, cfg.threads);
    let k = p.k;
    let mut theta = vec![0.0; p.n_params()];
    for (ci, &c) in map.seen.iter().enumerate() {
        for j in 0..d {
            theta[j * k + ci] = coef[c * d + j];
        }
        if cfg.fit_intercept {
            theta[d * k + ci] = intercept[c];
        }
    }
    let mut g = vec![0.0; theta.len()];
    Ok(p.eval(&theta, &mut g))
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

#[cfg(test)]
mod tests {
    use super::vops;

    #[test]
    fn vector_reductions_do_not_depend_on_threads() {
        let n = 5 * vops::BLOCK + 123;
        let a: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 * 1e-3 - 0.4).collect();
        let b: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.37).sin()).collect();
        let base = vops::dot(1, &a, &b);
        let mut out1 = b.clone();
        let m1 = vops::map_dot(1, &mut out1, Some(&a), |i, v| v * 0.5 + a[i]);
        for t in 2..6 {
            assert_eq!(vops::dot(t, &a, &b).to_bits(), base.to_bits());
            let mut out = b.clone();
            let m = vops::map_dot(t, &mut out, Some(&a), |i, v| v * 0.5 + a[i]);
            assert_eq!(m.to_bits(), m1.to_bits());
            assert_eq!(out, out1);
        }
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((base - naive).abs() < 1e-9 * naive.abs().max(1.0));
    }
}
