//! Design matrices for the probe: compressed sparse rows ([`Csr`]) and dense
//! row-major ([`Dense`]), the [`Design`] trait with the products the solver
//! needs, row selection, and column scaling without centering.
//!
//! Values are stored as `f32` (pooled SAE activations are `f32`); every
//! product converts them exactly to `f64` and accumulates in `f64`.
//!
//! Both CSR products reduce to one gather kernel: for each stored value,
//! add `value × (a contiguous row of k classes)` to an output row. The
//! kernel keeps the output row in SIMD registers (AVX-512F or AVX2, chosen
//! at run time; a portable loop otherwise) and prefetches the next source
//! rows; each term is still one `f64` multiply and one add, in the same
//! order, so every kernel gives the same bits.
//!
//! # Determinism
//! The products may run on several threads, but each output element is
//! computed by exactly one thread, summing its terms in ascending row (or
//! column) order. The result is therefore bit-identical for any thread count.

mod blocked;
mod csr;
mod dense;
mod kernels;
mod parallel;
mod scale;

pub use csr::Csr;
pub use dense::Dense;
pub use scale::{Scale, Scaling};

use super::ProbeError;

/// What the solver needs from a design matrix.
///
/// Weight matrices are passed *feature-major*: `wt` is `d × k` row-major
/// (that is `Wᵀ` for the usual `k × d` coefficient matrix), so that the
/// inner loops run over the `k` classes contiguously.
pub trait Design: Sync + Sized {
    /// Number of samples.
    fn n_rows(&self) -> usize;
    /// Number of features.
    fn n_cols(&self) -> usize;
    /// `out += X · wt` with `wt` `d × k` and `out` `n × k`, both row-major.
    fn mul_wt(&self, wt: &[f64], k: usize, out: &mut [f64], threads: usize) {
        self.mul_wt_then(wt, k, None, out, &mut vec![(); self.n_rows()], threads, |_, _| ());
    }
    /// `out = Xᵀ · g` with `g` `n × k` and `out` `d × k`, both row-major
    /// (overwritten).
    fn tmul_g(&self, g: &[f64], k: usize, out: &mut [f64], threads: usize) {
        self.tmul_g_then(g, k, out, &mut vec![(); self.n_cols()], threads, |_, _| ());
    }
    /// [`Design::mul_wt`], each row of `out` first set to `init` when given
    /// (e.g. the intercepts), then `row_vals[i] = finish(i, out row i)` for
    /// every row, on the thread that computed the row, while it is still in
    /// cache. `finish` may rewrite the row.
    #[allow(clippy::too_many_arguments)]
    fn mul_wt_then<T, F>(&self, wt: &[f64], k: usize, init: Option<&[f64]>, out: &mut [f64], row_vals: &mut [T], threads: usize, finish: F)
    where
        T: Send,
        F: Fn(usize, &mut [f64]) -> T + Sync;
    /// [`Design::tmul_g`], then `col_vals[j] = finish(j, out row j)` for
    /// every feature `j`, on the thread that computed it. `finish` may
    /// rewrite the row.
    fn tmul_g_then<T, F>(&self, g: &[f64], k: usize, out: &mut [f64], col_vals: &mut [T], threads: usize, finish: F)
    where
        T: Send,
        F: Fn(usize, &mut [f64]) -> T + Sync;
    /// The rows `rows` (in that order; repeats allowed) as a new matrix.
    fn select_rows(&self, rows: &[usize]) -> Result<Self, ProbeError>;
    /// `max_i |x_ij|` per column, in `f64`.
    fn column_max_abs(&self) -> Vec<f64>;
    /// Population mean and variance (ddof=0) per column, in `f64`.
    fn column_mean_var(&self) -> (Vec<f64>, Vec<f64>);
    /// `x_ij ← f32(f64(x_ij) · factors[j])`.
    fn scale_columns(&self, factors: &[f64]) -> Self;
}

/// `z += v · w`, elementwise. Each element sees the same single multiply and
/// add regardless of vector width, so the result is width-independent.
#[inline(always)]
fn axpy(v: f64, w: &[f64], z: &mut [f64]) {
    for (zi, wi) in z.iter_mut().zip(w) {
        *zi += v * *wi;
    }
}

/// The shapes [`Design::mul_wt_then`] requires; panics naming the buffer.
#[track_caller]
fn check_mul_wt<T>(x: &impl Design, wt: &[f64], k: usize, init: Option<&[f64]>, out: &[f64], row_vals: &[T]) {
    assert_eq!(wt.len(), x.n_cols() * k, "mul_wt: wt shape");
    assert_eq!(out.len(), x.n_rows() * k, "mul_wt: out shape");
    assert_eq!(row_vals.len(), x.n_rows(), "mul_wt: row_vals length");
    assert!(init.is_none_or(|b| b.len() == k), "mul_wt: init length");
}

/// The shapes [`Design::tmul_g_then`] requires; panics naming the buffer.
#[track_caller]
fn check_tmul_g<T>(x: &impl Design, g: &[f64], k: usize, out: &[f64], col_vals: &[T]) {
    assert_eq!(g.len(), x.n_rows() * k, "tmul_g: g shape");
    assert_eq!(out.len(), x.n_cols() * k, "tmul_g: out shape");
    assert_eq!(col_vals.len(), x.n_cols(), "tmul_g: col_vals length");
}

fn check_finite(what: &'static str, data: &[f32]) -> Result<(), ProbeError> {
    match data.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(ProbeError::NonFinite { what, index, value: data[index] as f64 }),
        None => Ok(()),
    }
}

fn check_rows(rows: &[usize], n_rows: usize) -> Result<(), ProbeError> {
    match rows.iter().find(|&&r| r >= n_rows) {
        Some(&r) => Err(ProbeError::Shape {
            what: "row selection index",
            expected: n_rows,
            actual: r,
            fix: "row indices must be below the matrix's n_rows (expected is the bound)",
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> (Csr, Dense) {
        // [[1, 0, 2], [0, 0, 0], [0, -3, 4]]
        let csr = Csr::new(3, 3, vec![0, 2, 2, 4], vec![0, 2, 1, 2], vec![1., 2., -3., 4.]).unwrap();
        let dense = Dense::new(3, 3, vec![1., 0., 2., 0., 0., 0., 0., -3., 4.]).unwrap();
        (csr, dense)
    }

    #[test]
    fn csr_rejects_bad_structure() {
        assert!(Csr::new(1, 3, vec![0, 2], vec![2, 1], vec![1., 1.]).is_err());
        assert!(Csr::new(1, 3, vec![0, 2], vec![1, 1], vec![1., 1.]).is_err());
        assert!(Csr::new(1, 3, vec![0, 1], vec![3], vec![1.]).is_err());
        assert!(Csr::new(2, 3, vec![0, 1], vec![0], vec![1.]).is_err());
        assert!(Csr::new(1, 3, vec![0, 1], vec![0], vec![f32::NAN]).is_err());
        assert!(Dense::new(2, 2, vec![0.; 3]).is_err());
    }

    #[test]
    fn products_match_between_layouts_and_threads() {
        let (csr, dense) = small();
        let k = 2;
        let wt: Vec<f64> = (0..6).map(|i| i as f64 * 0.5 - 1.0).collect();
        let g: Vec<f64> = (0..6).map(|i| (i as f64).sin()).collect();
        for threads in 1..4 {
            let mut a = vec![0.0; 6];
            let mut b = vec![0.0; 6];
            csr.mul_wt(&wt, k, &mut a, threads);
            dense.mul_wt(&wt, k, &mut b, threads);
            assert_eq!(a, b);
            // row 0: 1*w[0] + 2*w[2]
            assert_eq!(a[0], wt[0] + 2.0 * wt[4]);
            let mut c = vec![1.0; 6];
            let mut e = vec![1.0; 6];
            csr.tmul_g(&g, k, &mut c, threads);
            dense.tmul_g(&g, k, &mut e, threads);
            assert_eq!(c, e);
            assert_eq!(c[4], 2.0 * g[0] + 4.0 * g[4]);
        }
    }

    #[test]
    fn select_rows_and_scaling() {
        let (csr, dense) = small();
        let s = csr.select_rows(&[2, 0]).unwrap();
        assert_eq!(s.indptr(), &[0, 2, 4]);
        assert_eq!(s.indices(), &[1, 2, 0, 2]);
        assert!(csr.select_rows(&[3]).is_err());
        let ds = dense.select_rows(&[2, 0]).unwrap();
        assert_eq!(ds.data(), &[0., -3., 4., 1., 0., 2.]);
        let m = Scaling::fit(&csr, Scale::MaxAbs);
        assert_eq!(m.scale, vec![1.0, 3.0, 4.0]);
        let scaled = m.apply(&csr).unwrap();
        assert_eq!(scaled.data(), &[1.0, 0.5, -1.0, 1.0]);
        let sd = Scaling::fit(&csr, Scale::Std);
        let sd2 = Scaling::fit(&dense, Scale::Std);
        for (a, b) in sd.scale.iter().zip(&sd2.scale) {
            assert!((a - b).abs() < 1e-12);
        }
        // column 0: values 1, 0, 0 -> var = 2/9
        assert_eq!(sd.scale[0], ((2.0f64 / 9.0) as f32 as f64).sqrt());
        let zero = Csr::new(2, 1, vec![0, 0, 0], vec![], vec![]).unwrap();
        assert_eq!(Scaling::fit(&zero, Scale::Std).scale, vec![1.0]);
        assert_eq!(Scaling::fit(&zero, Scale::MaxAbs).scale, vec![1.0]);
    }
}
