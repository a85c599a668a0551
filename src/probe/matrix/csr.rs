//! Compressed sparse rows ([`Csr`]): the checked constructor, accessors,
//! and the [`Design`] products, row selection and column statistics.

use std::sync::OnceLock;

use super::blocked::{Blocked, mul_rows, tmul_cols};
use super::parallel::{balanced_bounds, par_ranges};
use super::{Design, check_finite, check_mul_wt, check_rows, check_tmul_g};
use crate::probe::ProbeError;
use crate::probe::simd::Isa;

/// Sparse matrix in CSR form (the layout of `scipy.sparse.csr_matrix` with
/// sorted indices and no duplicates).
///
/// Fields are private so that the invariants checked by [`Csr::new`] (and the
/// cached transpose) cannot be broken after construction; read them with the
/// accessors.
#[derive(Debug, Clone)]
pub struct Csr {
    n_rows: usize,
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    data: Vec<f32>,
    blocked: OnceLock<Blocked>,
}

impl PartialEq for Csr {
    fn eq(&self, other: &Self) -> bool {
        self.n_rows == other.n_rows
            && self.n_cols == other.n_cols
            && self.indptr == other.indptr
            && self.indices == other.indices
            && self.data == other.data
    }
}

impl Csr {
    /// Checked constructor.
    ///
    /// Requires `indptr.len() == n_rows + 1`, `indptr[0] == 0`, `indptr`
    /// non-decreasing, `indptr[n_rows] == indices.len() == data.len()`,
    /// column indices strictly increasing within each row (sorted, no
    /// duplicates) and below `n_cols`, and finite values. Explicit zeros are
    /// allowed.
    pub fn new(n_rows: usize, n_cols: usize, indptr: Vec<usize>, indices: Vec<u32>, data: Vec<f32>) -> Result<Self, ProbeError> {
        if indptr.len() != n_rows + 1 {
            return Err(ProbeError::Shape {
                what: "csr indptr",
                expected: n_rows + 1,
                actual: indptr.len(),
                fix: "indptr must hold n_rows + 1 offsets",
            });
        }
        if indices.len() != data.len() {
            return Err(ProbeError::Shape {
                what: "csr data",
                expected: indices.len(),
                actual: data.len(),
                fix: "indices and data must have one entry per stored value",
            });
        }
        if n_cols > u32::MAX as usize {
            return Err(ProbeError::Shape {
                what: "csr n_cols",
                expected: u32::MAX as usize,
                actual: n_cols,
                fix: "column indices are u32; split the feature space",
            });
        }
        if indptr[0] != 0 {
            return Err(ProbeError::Csr {
                what: "indptr start",
                row: 0,
                expected: "0".into(),
                actual: indptr[0].to_string(),
                fix: "indptr[0] must be 0",
            });
        }
        if indptr[n_rows] != indices.len() {
            return Err(ProbeError::Csr {
                what: "indptr end",
                row: n_rows,
                expected: indices.len().to_string(),
                actual: indptr[n_rows].to_string(),
                fix: "indptr[n_rows] must equal the number of stored values",
            });
        }
        for r in 0..n_rows {
            let (a, b) = (indptr[r], indptr[r + 1]);
            if b < a {
                return Err(ProbeError::Csr {
                    what: "indptr",
                    row: r,
                    expected: format!("a value >= {a}"),
                    actual: b.to_string(),
                    fix: "indptr must be non-decreasing",
                });
            }
            let mut prev: Option<u32> = None;
            for &c in &indices[a..b] {
                if c as usize >= n_cols {
                    return Err(ProbeError::Csr {
                        what: "column index",
                        row: r,
                        expected: format!("a value below n_cols={n_cols}"),
                        actual: c.to_string(),
                        fix: "drop out-of-range columns or raise n_cols",
                    });
                }
                if let Some(p) = prev
                    && c <= p
                {
                    return Err(ProbeError::Csr {
                        what: "column order",
                        row: r,
                        expected: format!("a column index above {p}"),
                        actual: c.to_string(),
                        fix: "sort column indices within each row and sum duplicates \
                                  (scipy: X.sum_duplicates(); X.sort_indices())",
                    });
                }
                prev = Some(c);
            }
        }
        check_finite("csr data", &data)?;
        Ok(Csr { n_rows, n_cols, indptr, indices, data, blocked: OnceLock::new() })
    }

    /// Row offsets (`n_rows + 1` entries).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }
    /// Column index of each stored value.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    /// Stored values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// The blocked copies; block sizes are chosen for the `k` of the first
    /// call (any later `k` is still correct, merely less cache-friendly).
    /// With `threads > 1` the column and row blocks are built concurrently.
    pub(super) fn blocked(&self, k: usize, threads: usize) -> &Blocked {
        self.blocked.get_or_init(|| Blocked::new(self, k, threads))
    }
}

impl Design for Csr {
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
        let bl = self.blocked(k, threads);
        let isa = Isa::detect();
        let bounds = balanced_bounds(&self.indptr, threads);
        par_ranges(&bounds, k, out, row_vals, |a, b, chunk, vals| mul_rows(isa, bl, wt, k, a, b, init, chunk, vals, &finish));
    }

    fn tmul_g_then<T, F>(&self, g: &[f64], k: usize, out: &mut [f64], col_vals: &mut [T], threads: usize, finish: F)
    where
        T: Send,
        F: Fn(usize, &mut [f64]) -> T + Sync,
    {
        check_tmul_g(self, g, k, out, col_vals);
        let bl = self.blocked(k, threads);
        let isa = Isa::detect();
        let bounds = balanced_bounds(&bl.col_nnz_prefix, threads);
        par_ranges(&bounds, k, out, col_vals, |a, b, chunk, vals| tmul_cols(isa, bl, g, k, a, b, chunk, vals, &finish));
    }

    fn select_rows(&self, rows: &[usize]) -> Result<Self, ProbeError> {
        check_rows(rows, self.n_rows)?;
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        indptr.push(0);
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for &r in rows {
            let (a, b) = (self.indptr[r], self.indptr[r + 1]);
            indices.extend_from_slice(&self.indices[a..b]);
            data.extend_from_slice(&self.data[a..b]);
            indptr.push(indices.len());
        }
        Ok(Csr { n_rows: rows.len(), n_cols: self.n_cols, indptr, indices, data, blocked: OnceLock::new() })
    }

    fn column_max_abs(&self) -> Vec<f64> {
        let mut m = vec![0f64; self.n_cols];
        for (&c, &v) in self.indices.iter().zip(&self.data) {
            let a = (v as f64).abs();
            if a > m[c as usize] {
                m[c as usize] = a;
            }
        }
        m
    }

    /// scikit-learn's `_csr_mean_variance_axis0` (corrected two-pass
    /// algorithm of Chan, Golub & LeVeque, in `f64`).
    fn column_mean_var(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.n_cols;
        let n = self.n_rows as f64;
        if self.n_rows == 0 {
            return (vec![0.0; d], vec![0.0; d]);
        }
        let mut mean = vec![0f64; d];
        let mut count = vec![0usize; d];
        for (&c, &v) in self.indices.iter().zip(&self.data) {
            mean[c as usize] += v as f64;
            count[c as usize] += 1;
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; d];
        let mut corr = vec![0f64; d];
        for (&c, &v) in self.indices.iter().zip(&self.data) {
            let diff = v as f64 - mean[c as usize];
            corr[c as usize] += diff;
            var[c as usize] += diff * diff;
        }
        for j in 0..d {
            let zeros = (self.n_rows - count[j]) as f64;
            if count[j] != self.n_rows {
                corr[j] -= zeros * mean[j];
            }
            let c2 = corr[j] * corr[j] / n;
            if count[j] != self.n_rows {
                var[j] += zeros * mean[j] * mean[j];
            }
            var[j] = (var[j] - c2) / n;
        }
        (mean, var)
    }

    fn scale_columns(&self, factors: &[f64]) -> Self {
        let data = self.indices.iter().zip(&self.data).map(|(&c, &v)| (v as f64 * factors[c as usize]) as f32).collect();
        Csr {
            n_rows: self.n_rows,
            n_cols: self.n_cols,
            indptr: self.indptr.clone(),
            indices: self.indices.clone(),
            data,
            blocked: OnceLock::new(),
        }
    }
}
