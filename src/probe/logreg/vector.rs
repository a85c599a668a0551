//! Vector kernels of the optimiser, optionally on several threads.
//!
//! Vectors are cut into fixed blocks of `BLOCK` elements; reductions are
//! summed per block (in a fixed lane order, see [`dot`]) and the block sums
//! then added in block order, whatever the number of threads: results are
//! bit-identical for any thread count. The per-block passes are compiled
//! for each CPU level with [`multiversion!`]; their bodies keep their lanes
//! explicit (see [`dot`]), so every level gives the same bits, the wider
//! ones just vectorise them.

use crate::probe::simd::{Isa, multiversion};

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

multiversion! {
    /// One block of [`step`]; its first `nw` elements are weights.
    fn step_block(_isa, x: &[f64], dir: &[f64], a: f64, nw: usize, o: &mut [f64], p: &mut [f64]) {
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
    let isa = Isa::detect();
    let partials =
        blocks(threads, n, vec![out], 2, |lo, hi, o, p| step_block(isa, &x[lo..hi], &dir[lo..hi], a, nw.saturating_sub(lo), o[0], p));
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
    fn pair_block(
        _isa,
        x_new: &[f64],
        x: &[f64],
        g_new: &[f64],
        g: &[f64],
        ss: &[Vec<f64>],
        ys: &[Vec<f64>],
        lo: usize,
        sb: &mut [f64],
        yb: &mut [f64],
        p: &mut [f64],
    ) {
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
            let ys_new = yc.iter_mut().zip(g_new[c0..c1].iter().zip(&g[c0..c1]));
            for (((sv, &a), &b), (yv, (&c, &d))) in sc.iter_mut().zip(&x_new[c0..c1]).zip(&x[c0..c1]).zip(ys_new) {
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
    let isa = Isa::detect();
    let partials = blocks(threads, n, vec![s, y], n_red, |lo, hi, o, p| {
        let [sb, yb] = o else { unreachable!("two outputs") };
        pair_block(isa, &x_new[lo..hi], &x[lo..hi], &g_new[lo..hi], &g[lo..hi], ss, ys, lo, sb, yb, p)
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
    fn combine_block(
        _isa,
        g: &[f64],
        cg: f64,
        cs: &[f64],
        ss: &[Vec<f64>],
        cy: &[f64],
        ys: &[Vec<f64>],
        lo: usize,
        db: &mut [f64],
        step: Option<(&[f64], f64, usize, &mut [f64])>,
        p: &mut [f64],
    ) {
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
    let isa = Isa::detect();
    let (x, a, nw, outs) = match step {
        Some((x, a, nw, x_t)) => (x, a, nw, vec![d, x_t]),
        None => (&[][..], 0.0, 0, vec![d]),
    };
    let partials = blocks(threads, n, outs, 4, |lo, hi, o, p| match o {
        [db, xt] => combine_block(isa, g, cg, cs, ss, cy, ys, lo, db, Some((&x[lo..hi], a, nw.saturating_sub(lo), xt)), p),
        [db] => combine_block(isa, g, cg, cs, ss, cy, ys, lo, db, None, p),
        _ => unreachable!("one or two outputs"),
    });
    [0, 1, 2, 3].map(|r| total(&partials, 4, r))
}
