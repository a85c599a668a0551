//! The strong-Wolfe line search of the L-BFGS iterations, with safeguarded
//! cubic interpolation and extrapolation.

use super::objective::Problem;
use super::vector;
use crate::probe::matrix::Design;

/// Most evaluations per line search (scikit-learn's `maxls`).
const MAX_LS: usize = 50;
/// Sufficient-decrease and curvature constants of the strong Wolfe
/// conditions (scipy's `dcsrch`).
const C1: f64 = 1e-3;
const C2: f64 = 0.9;

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

pub(super) enum LineSearch {
    /// Step accepted with this objective value; `x_t` holds the new point
    /// and the problem's last trial is at it.
    Ok(f64),
    Failed,
}

/// Strong-Wolfe line search from `x` along `dir` (prepared in `p`), first
/// trying `a0`; `formed` holds `(ww, wd)` when `x_t = x + a0·dir` is already
/// formed. On success the new point is left in `x_t` and is `p`'s last trial.
#[allow(clippy::too_many_arguments)]
pub(super) fn line_search<D: Design>(
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
            _ => vector::step(t, x_t, x, a, dir, nw),
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
        let sums = vector::step(t, x_t, x, lo.a, dir, nw);
        let (f, _) = p.trial(lo.a, sums);
        LineSearch::Ok(f)
    } else {
        LineSearch::Failed
    }
}
