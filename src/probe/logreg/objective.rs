//! The fit's objective over the seen classes: class mapping, input checks,
//! and [`Problem`], the logits, softmax and gradient passes the solver
//! drives; plus [`objective`] for arbitrary coefficients.

use super::{LogRegConfig, vector};
use crate::probe::ProbeError;
use crate::probe::matrix::Design;

/// Samples per group in the per-sample pass: the unit of work split over
/// threads, and of the partial sums of the intercepts' gradient.
const ROW_GROUP: usize = 64;

/// The classes seen in `y`, their compact index, and the effective C.
pub(super) struct ClassMap {
    /// `compact[c]` is `Some(i)` for a seen class `c`.
    compact: Vec<Option<usize>>,
    /// Seen classes in increasing order.
    pub(super) seen: Vec<usize>,
}

pub(super) fn class_map(y: &[u32], n_classes: usize) -> Result<ClassMap, ProbeError> {
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

pub(super) fn check_inputs(x: &impl Design, y: &[u32], cfg: &LogRegConfig) -> Result<(), ProbeError> {
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
pub(super) struct Problem<'a, D: Design> {
    x: &'a D,
    /// Compact labels.
    y: Vec<usize>,
    pub(super) k: usize,
    pub(super) d: usize,
    /// `1 / (C_eff · n)`.
    l2: f64,
    fit_intercept: bool,
    pub(super) threads: usize,
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
    pub(super) n_fev: usize,
}

impl<'a, D: Design> Problem<'a, D> {
    pub(super) fn new(x: &'a D, y: &[u32], map: &ClassMap, c: f64, fit_intercept: bool, threads: usize) -> Self {
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

    pub(super) fn n_params(&self) -> usize {
        self.d * self.k + if self.fit_intercept { self.k } else { 0 }
    }

    /// Number of weights (the penalised parameters, before the intercepts).
    pub(super) fn n_weights(&self) -> usize {
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
            let m = vector::max(zt);
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
            [m + s.ln() - zt[yi], if a.is_some() { vector::dot(g, xr) } else { 0.0 }]
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
    pub(super) fn value(&mut self, theta: &[f64]) -> f64 {
        self.n_fev += 1;
        Self::forward(self.x, self.k, self.fit_intercept, theta, &mut self.z_t, self.threads);
        std::mem::swap(&mut self.z, &mut self.z_t);
        let (loss, _) = self.rows(None);
        let w = &theta[..self.n_weights()];
        loss + 0.5 * self.l2 * vector::dot(w, w)
    }

    /// Objective value at `theta` from scratch, and its gradient into
    /// `grad`; `theta` becomes the current point.
    pub(super) fn start(&mut self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let f = self.value(theta);
        self.accept(theta, grad);
        f
    }

    /// `XD = X·D_Wᵀ + D_b` for the search direction `dir`.
    pub(super) fn prepare(&mut self, dir: &[f64]) {
        Self::forward(self.x, self.k, self.fit_intercept, dir, &mut self.xd, self.threads);
    }

    /// Value and directional derivative at step `a` along the prepared
    /// direction, given `‖W_t‖²` and `W_t · D_W` at the trial point.
    pub(super) fn trial(&mut self, a: f64, (ww, wd): (f64, f64)) -> (f64, f64) {
        self.n_fev += 1;
        let (loss, dgz) = self.rows(Some(a));
        (loss + 0.5 * self.l2 * ww, dgz + self.l2 * wd)
    }

    /// Make the last trial (or [`Problem::value`]'s point) `theta` the
    /// current point, writing its gradient `Xᵀ·G + W/(C·n)` (and `Σ G` for
    /// the intercepts) into `grad`.
    pub(super) fn accept(&mut self, theta: &[f64], grad: &mut [f64]) {
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

/// The objective of the [`logreg`](super) docs for arbitrary coefficients (e.g.
/// scikit-learn's), on `x`, `y`, with `cfg.c` and `cfg.fit_intercept`.
///
/// `coef` is `n_classes × d`, `intercept` has `n_classes` entries (ignored
/// when `fit_intercept` is false); rows of classes absent from `y` are
/// ignored, as in [`fit`](super::fit).
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
