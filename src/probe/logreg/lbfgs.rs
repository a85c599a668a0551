//! The L-BFGS memory in compact form: the stored pairs, their dot
//! products, and the search direction `−H·g`.

use super::vector;

/// Pairs kept (scipy's `maxcor`).
pub(super) const MEMORY: usize = 10;

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
pub(super) struct Memory {
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
    pub(super) fn new(threads: usize) -> Self {
        Memory { s: vec![], y: vec![], sy: vec![], yy: vec![], sg: vec![], yg: vec![], spare: vec![], gamma: 1.0, threads }
    }

    pub(super) fn len(&self) -> usize {
        self.s.len()
    }

    pub(super) fn clear(&mut self) {
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
    pub(super) fn advance(&mut self, x_new: &[f64], x: &[f64], g_new: &[f64], g: &[f64]) -> f64 {
        let n = x.len();
        let (mut s, mut y) = (self.buffer(n), self.buffer(n));
        let dots = vector::new_pair(self.threads, &mut s, &mut y, (x_new, x), (g_new, g), &self.s, &self.y);
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
    /// step `x_t = x + d` was formed too, its `(ww, wd)` as [`vector::step`]
    /// returns them. That step is formed in the same pass when
    /// `step = (x, nw, x_t)` is given and the memory is not empty (with an
    /// empty memory the first step is `1/‖d‖₂`).
    #[allow(clippy::type_complexity)]
    pub(super) fn direction(&self, g: &[f64], d: &mut [f64], step: Option<(&[f64], usize, &mut [f64])>) -> (f64, f64, Option<(f64, f64)>) {
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
        let [gd, dd, ww, wd] = vector::combine(self.threads, d, cg, g, (&cs, &self.s), (&cy, &self.y), step);
        (gd, dd, stepped.then_some((ww, wd)))
    }
}

#[cfg(test)]
mod tests {
    use super::Memory;
    use crate::probe::logreg::vector;

    fn vecs(n: usize) -> (Vec<f64>, Vec<f64>) {
        let a: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 * 1e-3 - 0.4).collect();
        let b: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.37).sin()).collect();
        (a, b)
    }

    #[test]
    fn vector_passes_do_not_depend_on_threads() {
        let n = 5 * vector::BLOCK + 123;
        let (a, b) = vecs(n);
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((vector::dot(&a, &b) - naive).abs() < 1e-9 * naive.abs().max(1.0));
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
                    let sums = vector::step(threads, &mut stepped, &x, 1.0, &d, nw);
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
            let (ww, wd) = vector::step(threads, &mut stepped, &a, 0.25, &b, n / 2);
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
        let n = 3 * vector::BLOCK + 7;
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
                let rho = 1.0 / vector::dot(&ss[i], &ys[i]);
                alpha[i] = rho * vector::dot(&ss[i], &q);
                q.iter_mut().zip(&ys[i]).for_each(|(q, y)| *q -= alpha[i] * y);
            }
            if let (Some(s), Some(y)) = (ss.last(), ys.last()) {
                let gamma = vector::dot(s, y) / vector::dot(y, y);
                q.iter_mut().for_each(|v| *v *= gamma);
            }
            for i in 0..ss.len() {
                let rho = 1.0 / vector::dot(&ss[i], &ys[i]);
                let beta = rho * vector::dot(&ys[i], &q);
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
