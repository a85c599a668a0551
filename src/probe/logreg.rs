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
/// Samples per group in the per-sample pass: the unit of work split over
/// threads, and of the partial sums of the intercepts' gradient.
const ROW_GROUP: usize = 64;

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
///
/// The logits are linear in the parameters, so along a search direction
/// `D` they are `Z(a) = Z + a·(X·D)`: each iteration computes one product
/// `X·D` ([`Problem::prepare`]), every line-search trial is then a pass over
/// the `n × k` logits ([`Problem::trial`]), and only the accepted point
/// needs the product `Xᵀ·G` for its gradient ([`Problem::accept`]). The
/// value and the directional derivative at a trial are exactly those of a
/// full evaluation up to the rounding of `Z + a·(X·D)` against `X·W(a)`.
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
    /// `n × k` logits at the current point.
    z: Vec<f64>,
    /// `n × k` logits at the last trial.
    z_t: Vec<f64>,
    /// `n × k` pointwise gradient `(softmax(Z_t) − onehot(y)) / n` at the
    /// last trial.
    g_t: Vec<f64>,
    /// `n × k`: `X·D_Wᵀ + D_b`, the logits' derivative along the direction.
    xd: Vec<f64>,
    /// Per sample: loss `logsumexp(zᵢ) − z_{i,yᵢ}` and `gᵢ · xdᵢ`.
    per_row: Vec<[f64; 2]>,
    /// Per group of `ROW_GROUP` samples: `Σ g_t` over the group (`k` each).
    g_sums: Vec<f64>,
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
            z_t: vec![0.0; n * k],
            g_t: vec![0.0; n * k],
            xd: vec![0.0; n * k],
            per_row: vec![[0.0; 2]; n],
            g_sums: vec![0.0; n.div_ceil(ROW_GROUP).max(1) * k],
            n_fev: 0,
        }
    }

    fn n_params(&self) -> usize {
        self.d * self.k + if self.fit_intercept { self.k } else { 0 }
    }

    /// Number of weights (the penalised parameters, before the intercepts).
    fn n_weights(&self) -> usize {
        self.d * self.k
    }

    /// `out = X·vᵀ + v_b` for parameters `v` (`v_b = 0` without intercept).
    fn forward(x: &D, k: usize, fit_intercept: bool, v: &[f64], out: &mut [f64], threads: usize) {
        let (vw, vb) = v.split_at(x.n_cols() * k);
        let zeros = vec![0.0; k];
        let init = if fit_intercept { vb } else { &zeros };
        x.mul_wt_then(vw, k, Some(init), out, &mut vec![(); x.n_rows()], threads, |_, _| ());
    }

    /// The per-sample pass at step `a`: `Z_t = Z + a·XD` (`Z_t = Z` when
    /// `a` is `None`), then per sample the max-shifted softmax, the loss and
    /// the pointwise gradient into `g_t`, and `g_t · XD`. Rows are split
    /// over threads; the sums run in row order. Returns the mean loss and
    /// `Σ g_t · XD`.
    fn rows(&mut self, a: Option<f64>) -> (f64, f64) {
        let (k, n) = (self.k, self.x.n_rows());
        let inv_n = 1.0 / n as f64;
        let (z, xd, labels) = (&self.z, &self.xd, &self.y);
        let row = |r: usize, zt: &mut [f64], g: &mut [f64]| -> [f64; 2] {
            let zr = &z[r * k..(r + 1) * k];
            let xr = &xd[r * k..(r + 1) * k];
            match a {
                Some(a) => zt.iter_mut().zip(zr).zip(xr).for_each(|((t, &zv), &xv)| *t = zv + a * xv),
                None => zt.copy_from_slice(zr),
            }
            let yi = labels[r];
            let m = vops::max(zt);
            let mut s = 0.0;
            for (gv, &zv) in g.iter_mut().zip(zt.iter()) {
                *gv = (zv - m).exp();
                s += *gv;
            }
            let inv_s = 1.0 / s;
            for gv in g.iter_mut() {
                *gv *= inv_s * inv_n;
            }
            g[yi] -= inv_n;
            [m + s.ln() - zt[yi], if a.is_some() { vops::dot(g, xr) } else { 0.0 }]
        };
        // Threads take whole groups of rows; each group also sums its rows
        // of `g_t` (for the intercepts' gradient), so no sum depends on the
        // split.
        let n_groups = n.div_ceil(ROW_GROUP).max(1);
        let threads = self.threads.clamp(1, n_groups);
        let per = n_groups.div_ceil(threads) * ROW_GROUP;
        std::thread::scope(|s| {
            let chunks = self
                .z_t
                .chunks_mut(per * k)
                .zip(self.g_t.chunks_mut(per * k))
                .zip(self.per_row.chunks_mut(per))
                .zip(self.g_sums.chunks_mut(per / ROW_GROUP * k));
            for (t, (((zt, g), out), sums)) in chunks.enumerate() {
                let row = &row;
                let mut work = move || {
                    let groups = zt
                        .chunks_mut(ROW_GROUP * k)
                        .zip(g.chunks_mut(ROW_GROUP * k))
                        .zip(out.chunks_mut(ROW_GROUP))
                        .zip(sums.chunks_exact_mut(k));
                    for (gi, (((zt, g), out), sum)) in groups.enumerate() {
                        sum.fill(0.0);
                        for (i, ((zr, gr), o)) in zt.chunks_exact_mut(k).zip(g.chunks_exact_mut(k)).zip(out.iter_mut()).enumerate() {
                            *o = row(t * per + gi * ROW_GROUP + i, zr, gr);
                            sum.iter_mut().zip(gr.iter()).for_each(|(a, &v)| *a += v);
                        }
                    }
                };
                if threads == 1 {
                    work();
                } else {
                    s.spawn(work);
                }
            }
        });
        let (loss, dg) = self.per_row.iter().fold((0.0, 0.0), |(l, g), r| (l + r[0], g + r[1]));
        (loss * inv_n, dg)
    }

    /// The objective at `theta`, from scratch; leaves `Z`, and `G` in
    /// `g_t`, for [`Problem::accept`].
    fn value(&mut self, theta: &[f64]) -> f64 {
        self.n_fev += 1;
        Self::forward(self.x, self.k, self.fit_intercept, theta, &mut self.z_t, self.threads);
        std::mem::swap(&mut self.z, &mut self.z_t);
        let (loss, _) = self.rows(None);
        let w = &theta[..self.n_weights()];
        loss + 0.5 * self.l2 * vops::dot(w, w)
    }

    /// Objective value at `theta` from scratch, and its gradient into
    /// `grad`; `theta` becomes the current point.
    fn start(&mut self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let f = self.value(theta);
        self.accept(theta, grad);
        f
    }

    /// `XD = X·D_Wᵀ + D_b` for the search direction `dir`.
    fn prepare(&mut self, dir: &[f64]) {
        Self::forward(self.x, self.k, self.fit_intercept, dir, &mut self.xd, self.threads);
    }

    /// Value and directional derivative at step `a` along the prepared
    /// direction, given `‖W_t‖²` and `W_t · D_W` at the trial point.
    fn trial(&mut self, a: f64, (ww, wd): (f64, f64)) -> (f64, f64) {
        self.n_fev += 1;
        let (loss, dgz) = self.rows(Some(a));
        (loss + 0.5 * self.l2 * ww, dgz + self.l2 * wd)
    }

    /// Make the last trial (or [`Problem::value`]'s point) `theta` the
    /// current point, writing its gradient `Xᵀ·G + W/(C·n)` (and `Σ G` for
    /// the intercepts) into `grad`.
    fn accept(&mut self, theta: &[f64], grad: &mut [f64]) {
        let (k, nw) = (self.k, self.n_weights());
        std::mem::swap(&mut self.z, &mut self.z_t);
        let (gw, gb) = grad.split_at_mut(nw);
        let (l2, wt) = (self.l2, &theta[..nw]);
        self.x.tmul_g_then(&self.g_t, k, gw, &mut vec![(); self.d], self.threads, |j, grow| {
            for (g, &wv) in grow.iter_mut().zip(&wt[j * k..(j + 1) * k]) {
                *g += l2 * wv;
            }
        });
        if self.fit_intercept {
            gb.fill(0.0);
            for part in self.g_sums.chunks_exact(k) {
                gb.iter_mut().zip(part).for_each(|(g, &v)| *g += v);
            }
        }
    }
}

/// Vector kernels of the optimiser, optionally on several threads.
///
/// Vectors are cut into fixed blocks of `BLOCK` elements; reductions are
/// summed per block (in a fixed lane order, see [`dot`]) and the block sums
/// then added in block order, whatever the number of threads: results are
/// bit-identical for any thread count.
mod vops {
    pub(super) const BLOCK: usize = 1 << 14;
    /// Sub-block of the memory passes ([`combine`], [`new_pair`]), whose
    /// vectors are read one after the other within it (measured on the
    /// bench: whole blocks beat 1–8 Ki chunks that interleave the vectors).
    const CHUNK: usize = BLOCK;

    /// `Σ aᵢ·bᵢ` over 8 interleaved lanes, added in a fixed tree, then the
    /// tail: vectorisable, and the same bits on every CPU.
    #[inline(always)]
    pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0.0f64; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
        let mut tail = 0.0;
        for (x, y) in ra.iter().zip(rb) {
            tail += x * y;
        }
        (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) + tail
    }

    /// A dot product in progress, summed as [`dot`] sums it: 8 interleaved
    /// lanes, then the tail. Feeding a vector piecewise gives [`dot`]'s bits
    /// when every piece but the last has a length divisible by 8.
    #[derive(Clone, Copy, Default)]
    pub(super) struct Lanes {
        acc: [f64; 8],
        tail: f64,
    }

    impl Lanes {
        #[inline(always)]
        fn total(&self) -> f64 {
            let s = &self.acc;
            (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))) + self.tail
        }
    }

    /// Add `a·b` into `p` and `a·c` into `q`, one pass over `a`.
    #[inline(always)]
    fn dot2_into(a: &[f64], b: &[f64], c: &[f64], mut p: Lanes, mut q: Lanes) -> (Lanes, Lanes) {
        let n = a.len().min(b.len()).min(c.len());
        let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
        let (ca, cb, cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
        let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
        for ((x, y), z) in ca.zip(cb).zip(cc) {
            for l in 0..8 {
                p.acc[l] += x[l] * y[l];
                q.acc[l] += x[l] * z[l];
            }
        }
        for ((x, y), z) in ra.iter().zip(rb).zip(rc) {
            p.tail += x * y;
            q.tail += x * z;
        }
        (p, q)
    }

    /// `(a·b, a·c)` in one pass over `a`, each as [`dot`] computes it.
    #[inline(always)]
    fn dot2(a: &[f64], b: &[f64], c: &[f64]) -> (f64, f64) {
        let (p, q) = dot2_into(a, b, c, Lanes::default(), Lanes::default());
        (p.total(), q.total())
    }

    /// Run `f(lo, hi, outs, partials)` on every block `lo..hi` of `0..n`,
    /// with `outs` the block's part of each output vector and `partials`
    /// the block's `n_red` reduction slots. Contiguous runs of blocks go to
    /// scoped threads. Returns the partials, block-major.
    fn blocks<F>(threads: usize, n: usize, outs: Vec<&mut [f64]>, n_red: usize, f: F) -> Vec<f64>
    where
        F: Fn(usize, usize, &mut [&mut [f64]], &mut [f64]) + Sync,
    {
        let nb = n.div_ceil(BLOCK).max(1);
        let mut partials = vec![0.0; nb * n_red];
        let work = |b0: usize, b1: usize, mut outs: Vec<&mut [f64]>, part: &mut [f64]| {
            let base = b0 * BLOCK;
            for bi in b0..b1 {
                let (lo, hi) = (bi * BLOCK, ((bi + 1) * BLOCK).min(n));
                let mut sub: Vec<&mut [f64]> = outs.iter_mut().map(|o| &mut o[lo - base..hi - base]).collect();
                f(lo, hi, &mut sub, &mut part[(bi - b0) * n_red..(bi - b0 + 1) * n_red]);
            }
        };
        let threads = threads.clamp(1, nb);
        if threads == 1 {
            work(0, nb, outs, &mut partials);
            return partials;
        }
        let per = nb.div_ceil(threads);
        std::thread::scope(|s| {
            let (mut rest, mut prest) = (outs, partials.as_mut_slice());
            let mut b0 = 0;
            while b0 < nb {
                let b1 = (b0 + per).min(nb);
                let len = (b1 * BLOCK).min(n) - b0 * BLOCK;
                let (mut heads, mut tails) = (Vec::with_capacity(rest.len()), Vec::with_capacity(rest.len()));
                for o in rest {
                    let (h, t) = o.split_at_mut(len);
                    heads.push(h);
                    tails.push(t);
                }
                rest = tails;
                let (p, pt) = prest.split_at_mut((b1 - b0) * n_red);
                prest = pt;
                let work = &work;
                s.spawn(move || work(b0, b1, heads, p));
                b0 = b1;
            }
        });
        partials
    }

    /// Column `r` of block-major `partials` with `n_red` columns, summed in
    /// block order.
    fn total(partials: &[f64], n_red: usize, r: usize) -> f64 {
        partials.chunks_exact(n_red).fold(0.0, |a, p| a + p[r])
    }

    /// Define `fn $name(args)` running `$body` compiled for AVX-512F or
    /// AVX2 when the CPU has it, portable code otherwise. The bodies keep
    /// their lanes explicit (see [`dot`]), so every path gives the same bits;
    /// the wider paths just vectorise them.
    macro_rules! multiversion {
        ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
            $(#[$doc])*
            #[allow(clippy::too_many_arguments)]
            fn $name($($arg: $ty),*) {
                #[inline(always)]
                #[allow(clippy::too_many_arguments)]
                fn body($($arg: $ty),*) $body
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx512f")]
                    #[allow(clippy::too_many_arguments)]
                    fn v512($($arg: $ty),*) {
                        body($($arg),*)
                    }
                    #[target_feature(enable = "avx2")]
                    #[allow(clippy::too_many_arguments)]
                    fn v256($($arg: $ty),*) {
                        body($($arg),*)
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: the feature was just detected.
                        return unsafe { v512($($arg),*) };
                    }
                    if std::arch::is_x86_feature_detected!("avx2") {
                        // SAFETY: the feature was just detected.
                        return unsafe { v256($($arg),*) };
                    }
                }
                body($($arg),*)
            }
        };
    }

    multiversion! {
        /// One block of [`step`]; its first `nw` elements are weights.
        fn step_block(x: &[f64], dir: &[f64], a: f64, nw: usize, o: &mut [f64], p: &mut [f64]) {
            for ((v, &xi), &di) in o.iter_mut().zip(x).zip(dir) {
                *v = xi + a * di;
            }
            let w = nw.min(o.len());
            let o: &[f64] = o;
            let (ww, wd) = dot2(&o[..w], &o[..w], &dir[..w]);
            p.copy_from_slice(&[ww, wd]);
        }
    }

    /// `out = x + a·dir`; returns `(out·out, out·dir)` over the first `nw`
    /// elements (the weights: the penalty and its derivative along `dir`).
    pub(super) fn step(threads: usize, out: &mut [f64], x: &[f64], a: f64, dir: &[f64], nw: usize) -> (f64, f64) {
        let n = out.len();
        let partials =
            blocks(threads, n, vec![out], 2, |lo, hi, o, p| step_block(&x[lo..hi], &dir[lo..hi], a, nw.saturating_sub(lo), o[0], p));
        (total(&partials, 2, 0), total(&partials, 2, 1))
    }

    /// `max_i a_i` (`-inf` for none; NaN ignored, as `f64::max` does):
    /// exact, so the lane order does not matter.
    #[inline(always)]
    pub(super) fn max(a: &[f64]) -> f64 {
        let mut acc = [f64::NEG_INFINITY; 8];
        let c = a.chunks_exact(8);
        let tail = c.remainder().iter().fold(f64::NEG_INFINITY, |m: f64, &v| m.max(v));
        for x in c {
            for l in 0..8 {
                acc[l] = acc[l].max(x[l]);
            }
        }
        acc.iter().fold(tail, |m, &v| m.max(v))
    }

    /// `max_i |a_i|` (NaN ignored, as `f64::max` does).
    #[inline(always)]
    pub(super) fn max_abs(a: &[f64]) -> f64 {
        let mut acc = [0.0f64; 8];
        let c = a.chunks_exact(8);
        let tail = c.remainder().iter().fold(0.0, |m: f64, v| m.max(v.abs()));
        for x in c {
            for l in 0..8 {
                acc[l] = acc[l].max(x[l].abs());
            }
        }
        acc.iter().fold(tail, |m, &v| m.max(v))
    }

    /// The dot products of a new L-BFGS pair with the memory, in one pass.
    pub(super) struct PairDots {
        /// `s_i·y_new`, `y_i·y_new`, `s_i·g_new`, `y_i·g_new` for each
        /// stored pair `i` (oldest first).
        pub(super) sy: Vec<f64>,
        pub(super) yy: Vec<f64>,
        pub(super) sg: Vec<f64>,
        pub(super) yg: Vec<f64>,
        /// The same four for the new pair itself.
        pub(super) new: [f64; 4],
        /// `max_i |g_new,i|`.
        pub(super) g_max: f64,
    }

    multiversion! {
        /// One block of [`new_pair`], starting at element `lo`.
        fn pair_block(x_new: &[f64], x: &[f64], g_new: &[f64], g: &[f64], ss: &[Vec<f64>], ys: &[Vec<f64>], lo: usize, sb: &mut [f64], yb: &mut [f64], p: &mut [f64]) {
            // Chunk by chunk, all vectors at once (many concurrent streams
            // read memory faster than one vector after the other); the lanes
            // carry over between chunks, so the sums are [`dot`]'s.
            let m = ss.len();
            let mut acc = vec![Lanes::default(); 4 * m + 4];
            let len = sb.len();
            let mut c0 = 0;
            while c0 < len {
                let c1 = (c0 + CHUNK).min(len);
                let (sc, yc) = (&mut sb[c0..c1], &mut yb[c0..c1]);
                for (((sv, &a), &b), (yv, (&c, &d))) in sc.iter_mut().zip(&x_new[c0..c1]).zip(&x[c0..c1]).zip(yc.iter_mut().zip(g_new[c0..c1].iter().zip(&g[c0..c1]))) {
                    *sv = a - b;
                    *yv = c - d;
                }
                let (sc, yc, gc): (&[f64], &[f64], &[f64]) = (sc, yc, &g_new[c0..c1]);
                let (a0, a1) = (lo + c0, lo + c1);
                for i in 0..=m {
                    let (s_i, y_i) = if i < m { (&ss[i][a0..a1], &ys[i][a0..a1]) } else { (sc, yc) };
                    (acc[4 * i], acc[4 * i + 2]) = dot2_into(s_i, yc, gc, acc[4 * i], acc[4 * i + 2]);
                    (acc[4 * i + 1], acc[4 * i + 3]) = dot2_into(y_i, yc, gc, acc[4 * i + 1], acc[4 * i + 3]);
                }
                c0 = c1;
            }
            for (r, l) in acc.iter().enumerate() {
                p[r] = l.total();
            }
            p[4 * m + 4] = max_abs(g_new);
        }
    }

    /// `s = x_new − x`, `y = g_new − g`, and their dot products with the
    /// stored pairs and `g_new` (see [`PairDots`]), in one pass.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_pair(
        threads: usize,
        s: &mut [f64],
        y: &mut [f64],
        (x_new, x): (&[f64], &[f64]),
        (g_new, g): (&[f64], &[f64]),
        ss: &[Vec<f64>],
        ys: &[Vec<f64>],
    ) -> PairDots {
        let m = ss.len();
        let n_red = 4 * m + 5;
        let n = s.len();
        let partials = blocks(threads, n, vec![s, y], n_red, |lo, hi, o, p| {
            let [sb, yb] = o else { unreachable!("two outputs") };
            pair_block(&x_new[lo..hi], &x[lo..hi], &g_new[lo..hi], &g[lo..hi], ss, ys, lo, sb, yb, p)
        });
        let col = |r| total(&partials, n_red, r);
        PairDots {
            sy: (0..m).map(|i| col(4 * i)).collect(),
            yy: (0..m).map(|i| col(4 * i + 1)).collect(),
            sg: (0..m).map(|i| col(4 * i + 2)).collect(),
            yg: (0..m).map(|i| col(4 * i + 3)).collect(),
            new: [col(4 * m), col(4 * m + 1), col(4 * m + 2), col(4 * m + 3)],
            g_max: partials.chunks_exact(n_red).fold(0.0, |a, p| a.max(p[n_red - 1])),
        }
    }

    multiversion! {
        /// One block of [`combine`], starting at element `lo`; `g` and the
        /// memory vectors are whole, the step's `x` and `x_t` the block's.
        fn combine_block(g: &[f64], cg: f64, cs: &[f64], ss: &[Vec<f64>], cy: &[f64], ys: &[Vec<f64>], lo: usize, db: &mut [f64], step: Option<(&[f64], f64, usize, &mut [f64])>, p: &mut [f64]) {
            let hi = lo + db.len();
            let mut step = step;
            let mut c0 = lo;
            while c0 < hi {
                let c1 = (c0 + CHUNK).min(hi);
                let dc = &mut db[c0 - lo..c1 - lo];
                for (v, &gi) in dc.iter_mut().zip(&g[c0..c1]) {
                    *v = cg * gi;
                }
                for (&c, v) in cs.iter().zip(ss).chain(cy.iter().zip(ys)) {
                    for (di, &vi) in dc.iter_mut().zip(&v[c0..c1]) {
                        *di += c * vi;
                    }
                }
                if let Some((x, a, _, xt)) = step.as_mut() {
                    for ((v, &xi), &di) in xt[c0 - lo..c1 - lo].iter_mut().zip(&x[c0 - lo..c1 - lo]).zip(&*dc) {
                        *v = xi + *a * di;
                    }
                }
                c0 = c1;
            }
            let db: &[f64] = db;
            let (gd, dd) = dot2(db, &g[lo..hi], db);
            let (ww, wd) = match step {
                // as `step_block` computes them
                Some((_, _, nw, xt)) => {
                    let w = nw.min(db.len());
                    let xt: &[f64] = xt;
                    dot2(&xt[..w], &xt[..w], &db[..w])
                }
                None => (0.0, 0.0),
            };
            p.copy_from_slice(&[gd, dd, ww, wd]);
        }
    }

    /// `d = cg·g + Σ cs_i·s_i + Σ cy_i·y_i` (terms added in that order);
    /// returns `[g·d, d·d, ww, wd]`. With `step = (x, a, nw, x_t)`, also
    /// `x_t = x + a·d` and its `(ww, wd)` as [`step`] computes them, while
    /// `d` is in cache (zeros without).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn combine(
        threads: usize,
        d: &mut [f64],
        cg: f64,
        g: &[f64],
        (cs, ss): (&[f64], &[Vec<f64>]),
        (cy, ys): (&[f64], &[Vec<f64>]),
        step: Option<(&[f64], f64, usize, &mut [f64])>,
    ) -> [f64; 4] {
        let n = d.len();
        let (x, a, nw, outs) = match step {
            Some((x, a, nw, x_t)) => (x, a, nw, vec![d, x_t]),
            None => (&[][..], 0.0, 0, vec![d]),
        };
        let partials = blocks(threads, n, outs, 4, |lo, hi, o, p| match o {
            [db, xt] => combine_block(g, cg, cs, ss, cy, ys, lo, db, Some((&x[lo..hi], a, nw.saturating_sub(lo), xt)), p),
            [db] => combine_block(g, cg, cs, ss, cy, ys, lo, db, None, p),
            _ => unreachable!("one or two outputs"),
        });
        [0, 1, 2, 3].map(|r| total(&partials, 4, r))
    }
}

/// L-BFGS memory in the compact form of Byrd, Nocedal & Schnabel (1994),
/// as L-BFGS-B keeps it: the last `MEMORY` pairs `(s, y)` plus their dot
/// products `sᵢ·yⱼ` (`i ≤ j`) and `yᵢ·yⱼ`, and `Sᵀg`, `Yᵀg` for the
/// current gradient. With `γ = sᵀy / yᵀy` of the newest pair,
///
/// ```text
/// H·g = γ·g + S·p − γ·Y·u,   u = R⁻¹·Sᵀg,   p = R⁻ᵀ·((D + γ·YᵀY)·u − γ·Yᵀg)
/// ```
///
/// (`R` upper triangular with `Rᵢⱼ = sᵢ·yⱼ`, `D` its diagonal) is exactly
/// the two-loop recursion's `H·g` in exact arithmetic, but costs two passes
/// over the memory per iteration (one for the new pair's dot products, one
/// for the direction) instead of four. Buffers are recycled, never
/// reallocated once the memory is full.
struct Memory {
    /// Oldest first.
    s: Vec<Vec<f64>>,
    y: Vec<Vec<f64>>,
    /// `sy[j][i] = sᵢ·yⱼ` and `yy[j][i] = yᵢ·yⱼ` for `i ≤ j`.
    sy: Vec<Vec<f64>>,
    yy: Vec<Vec<f64>>,
    /// `sᵢ·g` and `yᵢ·g` for the current gradient `g`.
    sg: Vec<f64>,
    yg: Vec<f64>,
    /// Buffers of dropped pairs, reused for new ones.
    spare: Vec<Vec<f64>>,
    /// Initial inverse-Hessian scale `sᵀy / yᵀy` of the newest pair.
    gamma: f64,
    threads: usize,
}

impl Memory {
    fn new(threads: usize) -> Self {
        Memory { s: vec![], y: vec![], sy: vec![], yy: vec![], sg: vec![], yg: vec![], spare: vec![], gamma: 1.0, threads }
    }

    fn len(&self) -> usize {
        self.s.len()
    }

    fn clear(&mut self) {
        self.spare.append(&mut self.s);
        self.spare.append(&mut self.y);
        for v in [&mut self.sy, &mut self.yy] {
            v.clear();
        }
        self.sg.clear();
        self.yg.clear();
    }

    fn buffer(&mut self, n: usize) -> Vec<f64> {
        self.spare.pop().unwrap_or_else(|| vec![0.0; n])
    }

    /// Move to the accepted point: form `s = x_new − x`, `y = g_new − g`
    /// and store the pair if `sᵀy > ε·yᵀy` (L-BFGS-B's curvature test),
    /// dropping the oldest when full; either way `Sᵀg_new` and `Yᵀg_new` are
    /// brought up to date. Returns `max|g_new|`.
    fn advance(&mut self, x_new: &[f64], x: &[f64], g_new: &[f64], g: &[f64]) -> f64 {
        let n = x.len();
        let (mut s, mut y) = (self.buffer(n), self.buffer(n));
        let dots = vops::new_pair(self.threads, &mut s, &mut y, (x_new, x), (g_new, g), &self.s, &self.y);
        let [sy, yy, sg, yg] = dots.new;
        (self.sg, self.yg) = (dots.sg, dots.yg);
        if sy.is_nan() || sy <= f64::EPSILON * yy {
            self.spare.push(s);
            self.spare.push(y);
            return dots.g_max;
        }
        let (mut col_sy, mut col_yy) = (dots.sy, dots.yy);
        if self.s.len() == MEMORY {
            self.spare.push(self.s.remove(0));
            self.spare.push(self.y.remove(0));
            for v in [&mut self.sy, &mut self.yy] {
                v.remove(0);
                v.iter_mut().for_each(|c| {
                    c.remove(0);
                });
            }
            for v in [&mut self.sg, &mut self.yg, &mut col_sy, &mut col_yy] {
                v.remove(0);
            }
        }
        col_sy.push(sy);
        col_yy.push(yy);
        self.s.push(s);
        self.y.push(y);
        self.sy.push(col_sy);
        self.yy.push(col_yy);
        self.sg.push(sg);
        self.yg.push(yg);
        self.gamma = sy / yy;
        dots.g_max
    }

    /// `d = −H·g` for the current gradient `g` (the one of the last
    /// [`Memory::advance`]); returns `(g·d, d·d)` and, if the unit first
    /// step `x_t = x + d` was formed too, its `(ww, wd)` as [`vops::step`]
    /// returns them. That step is formed in the same pass when
    /// `step = (x, nw, x_t)` is given and the memory is not empty (with an
    /// empty memory the first step is `1/‖d‖₂`).
    #[allow(clippy::type_complexity)]
    fn direction(&self, g: &[f64], d: &mut [f64], step: Option<(&[f64], usize, &mut [f64])>) -> (f64, f64, Option<(f64, f64)>) {
        let m = self.len();
        let gamma = self.gamma;
        let r = |i: usize, j: usize| self.sy[j][i];
        let yy = |i: usize, j: usize| if i <= j { self.yy[j][i] } else { self.yy[i][j] };
        // u = R⁻¹·Sᵀg (back substitution)
        let mut u = vec![0.0; m];
        for i in (0..m).rev() {
            let acc = (i + 1..m).fold(self.sg[i], |a, j| a - r(i, j) * u[j]);
            u[i] = acc / r(i, i);
        }
        // p = R⁻ᵀ·((D + γ·YᵀY)·u − γ·Yᵀg) (forward substitution)
        let mut p = vec![0.0; m];
        for i in 0..m {
            let yyu = (0..m).fold(0.0, |a, j| a + yy(i, j) * u[j]);
            let v = r(i, i) * u[i] + gamma * yyu - gamma * self.yg[i];
            let acc = (0..i).fold(v, |a, j| a - r(j, i) * p[j]);
            p[i] = acc / r(i, i);
        }
        // d = −γ·g − S·p + γ·Y·u
        let cs: Vec<f64> = p.iter().map(|v| -v).collect();
        let cy: Vec<f64> = u.iter().map(|v| gamma * v).collect();
        let cg = if m == 0 { -1.0 } else { -gamma };
        let step = if m > 0 { step.map(|(x, nw, x_t)| (x, 1.0, nw, x_t)) } else { None };
        let stepped = step.is_some();
        let [gd, dd, ww, wd] = vops::combine(self.threads, d, cg, g, (&cs, &self.s), (&cy, &self.y), step);
        (gd, dd, stepped.then_some((ww, wd)))
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
    /// Step accepted with this objective value; `x_t` holds the new point
    /// and the problem's last trial is at it.
    Ok(f64),
    Failed,
}

/// Strong-Wolfe line search from `x` along `dir` (prepared in `p`), first
/// trying `a0`; `formed` holds `(ww, wd)` when `x_t = x + a0·dir` is already
/// formed. On success the new point is left in `x_t` and is `p`'s last trial.
#[allow(clippy::too_many_arguments)]
fn line_search<D: Design>(
    p: &mut Problem<'_, D>,
    x: &[f64],
    f0: f64,
    dir: &[f64],
    dg0: f64,
    (a0, formed): (f64, Option<(f64, f64)>),
    x_t: &mut [f64],
) -> LineSearch {
    let (t, nw) = (p.threads, p.n_weights());
    let mut lo = Pt { a: 0.0, f: f0, dg: dg0 };
    // The Armijo point before `lo`, for cubic extrapolation.
    let mut prev = lo;
    let mut hi: Option<Pt> = None;
    let mut a = a0;
    for n_trial in 0..MAX_LS {
        let sums = match formed {
            Some(sums) if n_trial == 0 => sums,
            _ => vops::step(t, x_t, x, a, dir, nw),
        };
        let (f, dg) = p.trial(a, sums);
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
    // Out of evaluations: accept the best Armijo point, if any (its trial
    // is repeated, giving the same value).
    if lo.a > 0.0 {
        let sums = vops::step(t, x_t, x, lo.a, dir, nw);
        let (f, _) = p.trial(lo.a, sums);
        LineSearch::Ok(f)
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
    let nw = p.n_weights();
    let mut g = vec![0.0; np];
    let mut f = p.start(&theta, &mut g);
    let mut mem = Memory::new(t);
    let mut dir = vec![0.0; np];
    let (mut x_t, mut g_t) = (vec![0.0; np], vec![0.0; np]);
    let mut n_iter = 0;
    let mut g_max = vops::max_abs(&g);
    let mut converged = g_max <= cfg.tol;
    while !converged && n_iter < cfg.max_iter {
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
        if g_max <= cfg.tol || (f_old - f) <= FTOL * f_old.abs().max(f.abs()).max(1.0) {
            converged = true;
        }
    }
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
    Ok(p.value(&theta))
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
    use super::{Memory, vops};

    fn vecs(n: usize) -> (Vec<f64>, Vec<f64>) {
        let a: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 * 1e-3 - 0.4).collect();
        let b: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.37).sin()).collect();
        (a, b)
    }

    #[test]
    fn vector_passes_do_not_depend_on_threads() {
        let n = 5 * vops::BLOCK + 123;
        let (a, b) = vecs(n);
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((vops::dot(&a, &b) - naive).abs() < 1e-9 * naive.abs().max(1.0));
        let run = |threads: usize| {
            let mut m = Memory::new(threads);
            let (mut x, mut g) = (a.clone(), b.clone());
            let mut d = vec![0.0; n];
            let mut out = Vec::new();
            for it in 0..4 {
                let mut x_t = vec![0.0; n];
                let nw = n - 77;
                let (gd, dd, formed) = m.direction(&g, &mut d, Some((&x, nw, &mut x_t)));
                assert_eq!(formed.is_some(), it > 0, "the unit step is formed with a non-empty memory");
                if let Some((ww, wd)) = formed {
                    let mut stepped = vec![0.0; n];
                    let sums = vops::step(threads, &mut stepped, &x, 1.0, &d, nw);
                    assert!(stepped == x_t, "fused and separate steps differ");
                    assert_eq!((ww.to_bits(), wd.to_bits()), (sums.0.to_bits(), sums.1.to_bits()));
                    out.extend([ww, wd]);
                }
                let x_new: Vec<f64> = x.iter().zip(&d).map(|(x, d)| x + 0.1 * d).collect();
                let g_new: Vec<f64> = g.iter().zip(&x_new).map(|(g, x)| 0.5 * g + 0.01 * x * (it as f64 + 1.0)).collect();
                let gmax = m.advance(&x_new, &x, &g_new, &g);
                out.extend([gd, dd, gmax]);
                out.extend_from_slice(&d);
                (x, g) = (x_new, g_new);
            }
            let mut stepped = vec![0.0; n];
            let (ww, wd) = vops::step(threads, &mut stepped, &a, 0.25, &b, n / 2);
            out.extend([ww, wd]);
            out.extend_from_slice(&stepped);
            out.into_iter().map(f64::to_bits).collect::<Vec<_>>()
        };
        let base = run(1);
        for t in 2..6 {
            assert!(run(t) == base, "threads={t} changed a vector pass");
        }
    }

    /// The compact form gives the two-loop recursion's direction.
    #[test]
    fn compact_direction_matches_two_loop_recursion() {
        let n = 3 * vops::BLOCK + 7;
        let (a, b) = vecs(n);
        let mut m = Memory::new(2);
        let (mut x, mut g) = (a.clone(), b.clone());
        let (mut ss, mut ys): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (vec![], vec![]);
        let mut d = vec![0.0; n];
        // a quadratic with a diagonal Hessian keeps sᵀy > 0
        let h: Vec<f64> = (0..n).map(|i| 1.0 + (i % 17) as f64 * 0.3).collect();
        for _ in 0..(super::MEMORY + 3) {
            m.direction(&g, &mut d, None);
            // two-loop reference
            let mut q: Vec<f64> = g.clone();
            let mut alpha = vec![0.0; ss.len()];
            for i in (0..ss.len()).rev() {
                let rho = 1.0 / vops::dot(&ss[i], &ys[i]);
                alpha[i] = rho * vops::dot(&ss[i], &q);
                q.iter_mut().zip(&ys[i]).for_each(|(q, y)| *q -= alpha[i] * y);
            }
            if let (Some(s), Some(y)) = (ss.last(), ys.last()) {
                let gamma = vops::dot(s, y) / vops::dot(y, y);
                q.iter_mut().for_each(|v| *v *= gamma);
            }
            for i in 0..ss.len() {
                let rho = 1.0 / vops::dot(&ss[i], &ys[i]);
                let beta = rho * vops::dot(&ys[i], &q);
                q.iter_mut().zip(&ss[i]).for_each(|(q, s)| *q += (alpha[i] - beta) * s);
            }
            let scale = q.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let err = d.iter().zip(&q).fold(0.0f64, |a, (d, q)| a.max((d + q).abs()));
            assert!(err <= 1e-10 * scale, "compact vs two-loop: {err} (scale {scale})");
            let x_new: Vec<f64> = x.iter().zip(&d).map(|(x, d)| x + 0.5 * d).collect();
            let g_new: Vec<f64> = x_new.iter().zip(&h).map(|(x, h)| h * x).collect();
            m.advance(&x_new, &x, &g_new, &g);
            ss.push(x_new.iter().zip(&x).map(|(a, b)| a - b).collect());
            ys.push(g_new.iter().zip(&g).map(|(a, b)| a - b).collect());
            if ss.len() > super::MEMORY {
                ss.remove(0);
                ys.remove(0);
            }
            (x, g) = (x_new, g_new);
        }
        assert_eq!(m.len(), super::MEMORY);
    }
}
