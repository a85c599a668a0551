//! Dense row-major design matrices ([`Dense`]) and their [`Design`]
//! products, row selection and column statistics.

use super::parallel::{balanced_bounds, par_ranges};
use super::{Design, axpy, check_finite, check_mul_wt, check_rows, check_tmul_g};
use crate::probe::ProbeError;

/// Dense row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    n_rows: usize,
    n_cols: usize,
    data: Vec<f32>,
}

impl Dense {
    /// Checked constructor: `data.len() == n_rows * n_cols`, finite values.
    pub fn new(n_rows: usize, n_cols: usize, data: Vec<f32>) -> Result<Self, ProbeError> {
        let expected = n_rows.checked_mul(n_cols).ok_or(ProbeError::Shape {
            what: "dense shape",
            expected: usize::MAX,
            actual: n_rows,
            fix: "n_rows * n_cols overflows usize",
        })?;
        if data.len() != expected {
            return Err(ProbeError::Shape {
                what: "dense data",
                expected,
                actual: data.len(),
                fix: "data must hold n_rows * n_cols values in row-major order",
            });
        }
        check_finite("dense data", &data)?;
        Ok(Dense { n_rows, n_cols, data })
    }
    /// Row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

impl Design for Dense {
    fn n_rows(&self) -> usize {
        self.n_rows
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn mul_wt_then<T, F>(&self, wt: &[f64], k: usize, init: Option<&[f64]>, out: &mut [f64], row_vals: &mut [T], threads: usize, finish: F)
    where
        T: Send,
        F: Fn(usize, &mut [f64]) -> T + Sync,
    {
        check_mul_wt(self, wt, k, init, out, row_vals);
        let d = self.n_cols;
        let prefix: Vec<usize> = (0..=self.n_rows).map(|i| i * d).collect();
        let bounds = balanced_bounds(&prefix, threads);
        par_ranges(&bounds, k, out, row_vals, |a, b, chunk, vals| {
            for r in a..b {
                let z = &mut chunk[(r - a) * k..(r - a + 1) * k];
                if let Some(init) = init {
                    z.copy_from_slice(init);
                }
                let row = &self.data[r * d..(r + 1) * d];
                for (j, &v) in row.iter().enumerate() {
                    axpy(v as f64, &wt[j * k..(j + 1) * k], z);
                }
                vals[r - a] = finish(r, z);
            }
        });
    }

    fn tmul_g_then<T, F>(&self, g: &[f64], k: usize, out: &mut [f64], col_vals: &mut [T], threads: usize, finish: F)
    where
        T: Send,
        F: Fn(usize, &mut [f64]) -> T + Sync,
    {
        check_tmul_g(self, g, k, out, col_vals);
        let d = self.n_cols;
        let prefix: Vec<usize> = (0..=d).map(|j| j * self.n_rows).collect();
        let bounds = balanced_bounds(&prefix, threads);
        par_ranges(&bounds, k, out, col_vals, |a, b, chunk, vals| {
            chunk.fill(0.0);
            for r in 0..self.n_rows {
                let gr = &g[r * k..(r + 1) * k];
                for j in a..b {
                    let o = &mut chunk[(j - a) * k..(j - a + 1) * k];
                    axpy(self.data[r * d + j] as f64, gr, o);
                }
            }
            for j in a..b {
                vals[j - a] = finish(j, &mut chunk[(j - a) * k..(j - a + 1) * k]);
            }
        });
    }

    fn select_rows(&self, rows: &[usize]) -> Result<Self, ProbeError> {
        check_rows(rows, self.n_rows)?;
        let d = self.n_cols;
        let mut data = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            data.extend_from_slice(&self.data[r * d..(r + 1) * d]);
        }
        Ok(Dense { n_rows: rows.len(), n_cols: d, data })
    }

    fn column_max_abs(&self) -> Vec<f64> {
        let mut m = vec![0f64; self.n_cols];
        for row in self.data.chunks_exact(self.n_cols.max(1)) {
            for (mj, &v) in m.iter_mut().zip(row) {
                *mj = mj.max((v as f64).abs());
            }
        }
        m
    }

    fn column_mean_var(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.n_rows as f64;
        let d = self.n_cols;
        let mut mean = vec![0f64; d];
        for row in self.data.chunks_exact(d.max(1)) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        if n > 0.0 {
            mean.iter_mut().for_each(|m| *m /= n);
        }
        let mut var = vec![0f64; d];
        for row in self.data.chunks_exact(d.max(1)) {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                let dlt = v as f64 - m;
                *s += dlt * dlt;
            }
        }
        if n > 0.0 {
            var.iter_mut().for_each(|s| *s /= n);
        }
        (mean, var)
    }

    fn scale_columns(&self, factors: &[f64]) -> Self {
        let d = self.n_cols;
        let data = self.data.iter().enumerate().map(|(p, &v)| (v as f64 * factors[p % d]) as f32).collect();
        Dense { n_rows: self.n_rows, n_cols: d, data }
    }
}
