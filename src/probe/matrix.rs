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

use std::sync::OnceLock;

use super::ProbeError;

/// Cache-blocked copies of a [`Csr`], built once on first use by the
/// products (they cost two extra copies of indices and values).
///
/// * `cols`: the matrix split into column blocks of `width` features,
///   each stored as CSR. `X·Wᵀ` walks one block at a time so that the
///   `width × k` slice of `Wᵀ` it gathers from stays in L2.
/// * `rows`: the matrix split into row blocks of `width` samples, each
///   stored column-compressed (CSC). `Xᵀ·G` walks one block at a time so that
///   the `width × k` slice of `G` it gathers from stays in L2.
///
/// Within an output element the terms are still added in ascending column
/// (resp. row) order, so blocking does not change any result bit.
#[derive(Debug, Clone)]
struct Blocked {
    cols: Vec<Block>,
    rows: Vec<Block>,
    /// Stored values per column, prefix-summed (load balance of `Xᵀ·G`).
    col_nnz_prefix: Vec<usize>,
}

/// One block: `ptr` has one offset per row (column-block CSR) or per column
/// (row-block CSC) plus one; `idx` holds absolute column (resp. row) indices.
#[derive(Debug, Clone)]
struct Block {
    ptr: Vec<usize>,
    idx: Vec<u32>,
    data: Vec<f32>,
}

/// Bytes of a gathered slice (`width × k × 8`) that we aim to keep in L2
/// (half of a 1 MiB L2; 256 KiB and 1 MiB were slower on the bench).
const BLOCK_BYTES: usize = 1 << 19;

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
    fn blocked(&self, k: usize, threads: usize) -> &Blocked {
        self.blocked.get_or_init(|| {
            let width = (BLOCK_BYTES / (8 * k.max(1))).max(64);
            let (cols, rows) = if threads > 1 {
                std::thread::scope(|s| {
                    let cols = s.spawn(|| self.column_blocks(width));
                    let rows = self.row_blocks(width);
                    (cols.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), rows)
                })
            } else {
                (self.column_blocks(width), self.row_blocks(width))
            };
            let d = self.n_cols;
            let mut col_nnz_prefix = vec![0usize; d + 1];
            for &c in &self.indices {
                col_nnz_prefix[c as usize + 1] += 1;
            }
            for j in 0..d {
                col_nnz_prefix[j + 1] += col_nnz_prefix[j];
            }
            Blocked { cols, rows, col_nnz_prefix }
        })
    }

    /// Column blocks of `width` features, CSR each.
    fn column_blocks(&self, width: usize) -> Vec<Block> {
        let (n, d) = (self.n_rows, self.n_cols);
        let n_cb = d.div_ceil(width).max(1);
        let mut counts = vec![0usize; n_cb];
        for &c in &self.indices {
            counts[c as usize / width] += 1;
        }
        let mut cols: Vec<Block> = counts
            .iter()
            .map(|&nnz| Block { ptr: Vec::with_capacity(n + 1), idx: Vec::with_capacity(nnz), data: Vec::with_capacity(nnz) })
            .collect();
        for b in cols.iter_mut() {
            b.ptr.push(0);
        }
        for r in 0..n {
            for p in self.indptr[r]..self.indptr[r + 1] {
                let c = self.indices[p];
                let b = &mut cols[c as usize / width];
                b.idx.push(c);
                b.data.push(self.data[p]);
            }
            for b in cols.iter_mut() {
                b.ptr.push(b.idx.len());
            }
        }
        cols
    }

    /// Row blocks of `width` samples, CSC each.
    fn row_blocks(&self, width: usize) -> Vec<Block> {
        let (n, d) = (self.n_rows, self.n_cols);
        let n_rb = n.div_ceil(width).max(1);
        let mut rows = Vec::with_capacity(n_rb);
        for rb in 0..n_rb {
            let (r0, r1) = (rb * width, ((rb + 1) * width).min(n));
            let mut ptr = vec![0usize; d + 1];
            for p in self.indptr[r0]..self.indptr[r1] {
                ptr[self.indices[p] as usize + 1] += 1;
            }
            for j in 0..d {
                ptr[j + 1] += ptr[j];
            }
            let nnz = ptr[d];
            let mut next = ptr.clone();
            let mut idx = vec![0u32; nnz];
            let mut data = vec![0f32; nnz];
            for r in r0..r1 {
                for p in self.indptr[r]..self.indptr[r + 1] {
                    let c = self.indices[p] as usize;
                    idx[next[c]] = r as u32;
                    data[next[c]] = self.data[p];
                    next[c] += 1;
                }
            }
            rows.push(Block { ptr, idx, data });
        }
        rows
    }
}

/// `out[(r-a)·k..] += Σ_j x_rj · wt[j·k..]` for rows `a..b` (each row first
/// set to `init` if given), one column block at a time; after the last
/// block, `vals[r-a] = finish(r, row)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn csr_mul_rows<T, F>(
    g: impl Fn(&[u32], &[f32], &[f64], &mut [f64]),
    bl: &Blocked,
    wt: &[f64],
    k: usize,
    a: usize,
    b: usize,
    init: Option<&[f64]>,
    out: &mut [f64],
    vals: &mut [T],
    finish: &F,
) where
    F: Fn(usize, &mut [f64]) -> T,
{
    let last = bl.cols.len() - 1;
    for (bi, blk) in bl.cols.iter().enumerate() {
        for r in a..b {
            let z = &mut out[(r - a) * k..(r - a + 1) * k];
            if bi == 0
                && let Some(init) = init
            {
                z.copy_from_slice(init);
            }
            let (p0, p1) = (blk.ptr[r], blk.ptr[r + 1]);
            if p1 > p0 {
                g(&blk.idx[p0..p1], &blk.data[p0..p1], wt, z);
            }
            if bi == last {
                vals[r - a] = finish(r, z);
            }
        }
    }
}

/// `out[(j-a)·k..] = Σ_r x_rj · g[r·k..]` for columns `a..b`, one row block at
/// a time; after the last block, `vals[j-a] = finish(j, row)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn csr_tmul_cols<T, F>(
    gat: impl Fn(&[u32], &[f32], &[f64], &mut [f64]),
    bl: &Blocked,
    g: &[f64],
    k: usize,
    a: usize,
    b: usize,
    out: &mut [f64],
    vals: &mut [T],
    finish: &F,
) where
    F: Fn(usize, &mut [f64]) -> T,
{
    out.fill(0.0);
    let last = bl.rows.len() - 1;
    for (bi, blk) in bl.rows.iter().enumerate() {
        for j in a..b {
            let o = &mut out[(j - a) * k..(j - a + 1) * k];
            let (p0, p1) = (blk.ptr[j], blk.ptr[j + 1]);
            if p1 > p0 {
                gat(&blk.idx[p0..p1], &blk.data[p0..p1], g, o);
            }
            if bi == last {
                vals[j - a] = finish(j, o);
            }
        }
    }
}

/// The gather-accumulate kernel of both products:
/// `acc[c] += vals[p] · src[idx[p]·k + c]` for `p` in order, where
/// `k = acc.len()` and every `idx[p]·k + k ≤ src.len()`.
///
/// Each term is one multiply and one add in `f64` (no FMA), added in entry
/// order, so the SIMD kernels give exactly the bits of [`gather_portable`];
/// they only keep `acc` in registers, one tile of classes at a time.
#[inline(always)]
fn gather_portable(idx: &[u32], vals: &[f32], src: &[f64], acc: &mut [f64]) {
    let k = acc.len();
    for (&j, &v) in idx.iter().zip(vals) {
        let j = j as usize;
        axpy(v as f64, &src[j * k..(j + 1) * k], acc);
    }
}

/// Which gather kernel this CPU runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// SIMD versions of [`gather_portable`] and the products compiled around
/// them.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::Blocked;

    /// Entries ahead whose source row is prefetched into L1 (measured on
    /// the bench matrix: ~10% faster products than none, 1 or 8).
    const PREFETCH: usize = 4;

    /// Prefetch the `width` values at `p` into L1.
    ///
    /// # Safety
    /// SSE (every x86_64 CPU); `p` is only used as a prefetch hint and is
    /// never dereferenced, but must stay within the allocation it points into.
    #[inline(always)]
    unsafe fn prefetch(p: *const f64, width: usize) {
        let p = p as *const i8;
        let mut off = 0;
        while off < width * 8 {
            // SAFETY: `p + off` lies within the source row (see the contract).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
            off += 64;
        }
    }

    /// One tile of `width` classes (`8·(R-1) < width ≤ 8·R`) in `R` zmm
    /// registers.
    ///
    /// # Safety
    /// AVX-512F; `acc` valid for `width` values; `src + idx[p]·k` valid for
    /// `width` values for every `p`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile512<const R: usize>(idx: &[u32], vals: &[f32], src: *const f64, k: usize, acc: *mut f64, width: usize) {
        let tail = width - 8 * (R - 1);
        let mask: __mmask8 = (0xffu32 >> (8 - tail)) as u8;
        // SAFETY (whole body): pointer ranges as in the contract; the last
        // register is loaded and stored under `mask`, so no lane beyond
        // `width` is touched.
        unsafe {
            let mut r = [_mm512_setzero_pd(); R];
            for (t, reg) in r.iter_mut().enumerate().take(R - 1) {
                *reg = _mm512_loadu_pd(acc.add(8 * t));
            }
            r[R - 1] = _mm512_maskz_loadu_pd(mask, acc.add(8 * (R - 1)));
            for (p, (&j, &v)) in idx.iter().zip(vals).enumerate() {
                if let Some(&jn) = idx.get(p + PREFETCH) {
                    prefetch(src.add(jn as usize * k), width);
                }
                let vb = _mm512_set1_pd(v as f64);
                let w = src.add(j as usize * k);
                for (t, reg) in r.iter_mut().enumerate().take(R - 1) {
                    *reg = _mm512_add_pd(*reg, _mm512_mul_pd(vb, _mm512_loadu_pd(w.add(8 * t))));
                }
                r[R - 1] = _mm512_add_pd(r[R - 1], _mm512_mul_pd(vb, _mm512_maskz_loadu_pd(mask, w.add(8 * (R - 1)))));
            }
            for (t, reg) in r.iter().enumerate().take(R - 1) {
                _mm512_storeu_pd(acc.add(8 * t), *reg);
            }
            _mm512_mask_storeu_pd(acc.add(8 * (R - 1)), mask, r[R - 1]);
        }
    }

    /// One tile of `width` classes (`4·(R-1) < width ≤ 4·R`) in `R` ymm
    /// registers.
    ///
    /// # Safety
    /// AVX2; pointer contract as [`tile512`].
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn tile256<const R: usize>(idx: &[u32], vals: &[f32], src: *const f64, k: usize, acc: *mut f64, width: usize) {
        let tail = (width - 4 * (R - 1)) as i64;
        let mask = _mm256_setr_epi64x(-((tail > 0) as i64), -((tail > 1) as i64), -((tail > 2) as i64), -((tail > 3) as i64));
        // SAFETY (whole body): as in `tile512`, with masked loads/stores.
        unsafe {
            let mut r = [_mm256_setzero_pd(); R];
            for (t, reg) in r.iter_mut().enumerate().take(R - 1) {
                *reg = _mm256_loadu_pd(acc.add(4 * t));
            }
            r[R - 1] = _mm256_maskload_pd(acc.add(4 * (R - 1)), mask);
            for (p, (&j, &v)) in idx.iter().zip(vals).enumerate() {
                if let Some(&jn) = idx.get(p + PREFETCH) {
                    prefetch(src.add(jn as usize * k), width);
                }
                let vb = _mm256_set1_pd(v as f64);
                let w = src.add(j as usize * k);
                for (t, reg) in r.iter_mut().enumerate().take(R - 1) {
                    *reg = _mm256_add_pd(*reg, _mm256_mul_pd(vb, _mm256_loadu_pd(w.add(4 * t))));
                }
                r[R - 1] = _mm256_add_pd(r[R - 1], _mm256_mul_pd(vb, _mm256_maskload_pd(w.add(4 * (R - 1)), mask)));
            }
            for (t, reg) in r.iter().enumerate().take(R - 1) {
                _mm256_storeu_pd(acc.add(4 * t), *reg);
            }
            _mm256_maskstore_pd(acc.add(4 * (R - 1)), mask, r[R - 1]);
        }
    }

    macro_rules! dispatch {
        ($tile:ident, $regs:expr, $($n:literal)+; $args:tt) => {
            match $regs {
                $($n => $tile::<$n> $args,)+
                _ => unreachable!("tile register count"),
            }
        };
    }

    /// [`super::gather_portable`] with AVX-512F, tiles of up to 128
    /// classes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn gather512(idx: &[u32], vals: &[f32], src: &[f64], acc: &mut [f64]) {
        let k = acc.len();
        debug_assert!(idx.iter().all(|&j| (j as usize + 1) * k <= src.len()));
        let mut c0 = 0;
        while c0 < k {
            let width = (k - c0).min(128);
            // SAFETY: AVX-512F is enabled here; `c0 + width ≤ k` and every
            // `idx[p]·k + k ≤ src.len()` (the products' shape checks and the
            // validated CSR indices).
            unsafe {
                let (s, a) = (src.as_ptr().add(c0), acc.as_mut_ptr().add(c0));
                dispatch!(tile512, width.div_ceil(8), 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; (idx, vals, s, k, a, width));
            }
            c0 += width;
        }
    }

    /// [`super::gather_portable`] with AVX2, tiles of up to 48 classes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn gather256(idx: &[u32], vals: &[f32], src: &[f64], acc: &mut [f64]) {
        let k = acc.len();
        debug_assert!(idx.iter().all(|&j| (j as usize + 1) * k <= src.len()));
        let mut c0 = 0;
        while c0 < k {
            let width = (k - c0).min(48);
            // SAFETY: as in `gather512`, with AVX2.
            unsafe {
                let (s, a) = (src.as_ptr().add(c0), acc.as_mut_ptr().add(c0));
                dispatch!(tile256, width.div_ceil(4), 1 2 3 4 5 6 7 8 9 10 11 12; (idx, vals, s, k, a, width));
            }
            c0 += width;
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mul_rows512<T, F: Fn(usize, &mut [f64]) -> T>(
        bl: &Blocked,
        wt: &[f64],
        k: usize,
        a: usize,
        b: usize,
        init: Option<&[f64]>,
        out: &mut [f64],
        vals: &mut [T],
        finish: &F,
    ) {
        super::csr_mul_rows(|i, v, s, z| gather512(i, v, s, z), bl, wt, k, a, b, init, out, vals, finish)
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tmul_cols512<T, F: Fn(usize, &mut [f64]) -> T>(
        bl: &Blocked,
        g: &[f64],
        k: usize,
        a: usize,
        b: usize,
        out: &mut [f64],
        vals: &mut [T],
        finish: &F,
    ) {
        super::csr_tmul_cols(|i, v, s, z| gather512(i, v, s, z), bl, g, k, a, b, out, vals, finish)
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mul_rows256<T, F: Fn(usize, &mut [f64]) -> T>(
        bl: &Blocked,
        wt: &[f64],
        k: usize,
        a: usize,
        b: usize,
        init: Option<&[f64]>,
        out: &mut [f64],
        vals: &mut [T],
        finish: &F,
    ) {
        super::csr_mul_rows(|i, v, s, z| gather256(i, v, s, z), bl, wt, k, a, b, init, out, vals, finish)
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tmul_cols256<T, F: Fn(usize, &mut [f64]) -> T>(
        bl: &Blocked,
        g: &[f64],
        k: usize,
        a: usize,
        b: usize,
        out: &mut [f64],
        vals: &mut [T],
        finish: &F,
    ) {
        super::csr_tmul_cols(|i, v, s, z| gather256(i, v, s, z), bl, g, k, a, b, out, vals, finish)
    }
}

#[allow(clippy::too_many_arguments)]
fn mul_rows<T, F: Fn(usize, &mut [f64]) -> T>(
    isa: Isa,
    bl: &Blocked,
    wt: &[f64],
    k: usize,
    a: usize,
    b: usize,
    init: Option<&[f64]>,
    out: &mut [f64],
    vals: &mut [T],
    finish: &F,
) {
    match isa {
        // SAFETY: `isa()` detected the feature.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { simd::mul_rows512(bl, wt, k, a, b, init, out, vals, finish) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::mul_rows256(bl, wt, k, a, b, init, out, vals, finish) },
        Isa::Portable => csr_mul_rows(gather_portable, bl, wt, k, a, b, init, out, vals, finish),
    }
}

#[allow(clippy::too_many_arguments)]
fn tmul_cols<T, F: Fn(usize, &mut [f64]) -> T>(
    isa: Isa,
    bl: &Blocked,
    g: &[f64],
    k: usize,
    a: usize,
    b: usize,
    out: &mut [f64],
    vals: &mut [T],
    finish: &F,
) {
    match isa {
        // SAFETY: `isa()` detected the feature.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { simd::tmul_cols512(bl, g, k, a, b, out, vals, finish) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::tmul_cols256(bl, g, k, a, b, out, vals, finish) },
        Isa::Portable => csr_tmul_cols(gather_portable, bl, g, k, a, b, out, vals, finish),
    }
}

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

/// Which column scaling to apply before fitting. No variant centers the data,
/// so sparsity is preserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// No scaling.
    #[default]
    None,
    /// Divide each column by its maximum absolute value, as
    /// `sklearn.preprocessing.MaxAbsScaler`.
    MaxAbs,
    /// Divide each column by its population standard deviation (ddof=0),
    /// as `sklearn.preprocessing.StandardScaler(with_mean=False)`.
    Std,
}

/// Fitted per-column divisors (scikit-learn's `scale_`); fit on the training
/// rows, apply to train and test alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    /// One divisor per column; 1.0 for columns left untouched.
    pub scale: Vec<f64>,
}

impl Scaling {
    /// Fit the divisors on `x`.
    ///
    /// * `MaxAbs`: `max_j |x_ij|`; columns whose max is below
    ///   `10 * f32::EPSILON` (sklearn's `_handle_zeros_in_scale` in the data's
    ///   dtype) get 1.
    /// * `Std`: `sqrt(var_j)` with `var_j` the population variance computed in
    ///   `f64` and then rounded to `f32`, as scikit-learn's
    ///   `mean_variance_axis` returns it for `f32` data; constant columns get
    ///   1, using sklearn's `_is_constant_feature` test
    ///   `var <= n·eps·var + (n·mean·eps)²`. For CSR input this reproduces
    ///   `StandardScaler(with_mean=False).fit(X_f32).scale_` bit for bit; the
    ///   dense path uses a plain two-pass variance (sklearn's dense path uses
    ///   an incremental one), equal to rounding.
    pub fn fit(x: &impl Design, scale: Scale) -> Scaling {
        let d = x.n_cols();
        let scale = match scale {
            Scale::None => vec![1.0; d],
            Scale::MaxAbs => x.column_max_abs().into_iter().map(|m| if m < 10.0 * f32::EPSILON as f64 { 1.0 } else { m }).collect(),
            Scale::Std => {
                let (mean, var) = x.column_mean_var();
                let n = x.n_rows() as f64;
                let eps = f64::EPSILON;
                mean.iter()
                    .zip(&var)
                    .map(|(&m, &v)| {
                        let (m, v) = (m as f32 as f64, v as f32 as f64);
                        let bound = n * eps * v + (n * m * eps).powi(2);
                        if v <= bound { 1.0 } else { v.sqrt() }
                    })
                    .collect()
            }
        };
        Scaling { scale }
    }

    /// Divide every column of `x` by its divisor: `f32(f64(x) * (1 / s))`,
    /// the rounding sklearn's in-place `inplace_column_scale` performs on
    /// `f32` data.
    pub fn apply<D: Design>(&self, x: &D) -> Result<D, ProbeError> {
        if self.scale.len() != x.n_cols() {
            return Err(ProbeError::Shape {
                what: "scaling columns",
                expected: x.n_cols(),
                actual: self.scale.len(),
                fix: "fit the scaling on a matrix with the same columns",
            });
        }
        let inv: Vec<f64> = self.scale.iter().map(|s| 1.0 / s).collect();
        Ok(x.scale_columns(&inv))
    }
}

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

/// Split `0..n` into at most `parts` contiguous ranges of roughly equal
/// `cost`, where `prefix[i]` is the cumulative cost of items `0..i`.
fn balanced_bounds(prefix: &[usize], parts: usize) -> Vec<usize> {
    let n = prefix.len() - 1;
    let parts = parts.max(1).min(n.max(1));
    let total = prefix[n];
    let mut bounds = vec![0usize];
    for t in 1..parts {
        let target = total / parts * t + (total % parts) * t / parts;
        let pos = prefix.partition_point(|&c| c < target).min(n);
        let last = *bounds.last().unwrap_or(&0);
        bounds.push(pos.max(last));
    }
    bounds.push(n);
    bounds
}

/// Run `f(start, end, out_chunk, vals_chunk)` over item ranges given by
/// `bounds`, where item `i` owns `out[i*k..(i+1)*k]` and `vals[i]`; ranges
/// run on scoped threads.
fn par_ranges<T, F>(bounds: &[usize], k: usize, out: &mut [f64], vals: &mut [T], f: F)
where
    T: Send,
    F: Fn(usize, usize, &mut [f64], &mut [T]) + Sync,
{
    if bounds.len() <= 2 {
        f(bounds[0], bounds[bounds.len() - 1], out, vals);
        return;
    }
    std::thread::scope(|s| {
        let (mut rest, mut vrest) = (out, vals);
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (chunk, tail) = rest.split_at_mut((b - a) * k);
            let (vchunk, vtail) = vrest.split_at_mut(b - a);
            rest = tail;
            vrest = vtail;
            let f = &f;
            s.spawn(move || f(a, b, chunk, vchunk));
        }
    });
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
        assert_eq!(wt.len(), self.n_cols * k, "mul_wt: wt shape");
        assert_eq!(out.len(), self.n_rows * k, "mul_wt: out shape");
        assert_eq!(row_vals.len(), self.n_rows, "mul_wt: row_vals length");
        assert!(init.is_none_or(|b| b.len() == k), "mul_wt: init length");
        let bl = self.blocked(k, threads);
        let isa = isa();
        let bounds = balanced_bounds(&self.indptr, threads);
        par_ranges(&bounds, k, out, row_vals, |a, b, chunk, vals| mul_rows(isa, bl, wt, k, a, b, init, chunk, vals, &finish));
    }

    fn tmul_g_then<T, F>(&self, g: &[f64], k: usize, out: &mut [f64], col_vals: &mut [T], threads: usize, finish: F)
    where
        T: Send,
        F: Fn(usize, &mut [f64]) -> T + Sync,
    {
        assert_eq!(g.len(), self.n_rows * k, "tmul_g: g shape");
        assert_eq!(out.len(), self.n_cols * k, "tmul_g: out shape");
        assert_eq!(col_vals.len(), self.n_cols, "tmul_g: col_vals length");
        let bl = self.blocked(k, threads);
        let isa = isa();
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
        assert_eq!(wt.len(), self.n_cols * k, "mul_wt: wt shape");
        assert_eq!(out.len(), self.n_rows * k, "mul_wt: out shape");
        assert_eq!(row_vals.len(), self.n_rows, "mul_wt: row_vals length");
        assert!(init.is_none_or(|b| b.len() == k), "mul_wt: init length");
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
        assert_eq!(g.len(), self.n_rows * k, "tmul_g: g shape");
        assert_eq!(out.len(), self.n_cols * k, "tmul_g: out shape");
        assert_eq!(col_vals.len(), self.n_cols, "tmul_g: col_vals length");
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

    /// A CSR matrix with several column and row blocks for `k` classes, and
    /// values whose products round.
    fn blocky(n: usize, d: usize) -> Csr {
        let (mut indptr, mut indices, mut data) = (vec![0], vec![], vec![]);
        for r in 0..n {
            for c in 0..d {
                if (r * 7919 + c * 104_729) % 29 == 0 {
                    indices.push(c as u32);
                    data.push(((r * 31 + c * 17) % 23) as f32 / 7.0 - 1.5);
                }
            }
            indptr.push(indices.len());
        }
        Csr::new(n, d, indptr, indices, data).unwrap()
    }

    fn wavy(len: usize, seed: usize) -> Vec<f64> {
        (0..len).map(|i| ((i * 7919 + seed) % 1000) as f64 * 1e-3 - 0.5 + (i as f64 * 0.37).sin() * 1e-7).collect()
    }

    /// Every kernel this CPU has (AVX-512F, AVX2, portable) gives the same
    /// bits, for class counts that exercise full tiles, several tiles and
    /// masked tails, over partial row/column ranges, with the finish
    /// callback seeing the completed rows.
    #[test]
    fn simd_kernels_match_portable_bit_for_bit() {
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                isas.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                isas.push(Isa::Avx512);
            }
        }
        let (n, d) = (700, 1500);
        let x = blocky(n, d);
        // blocks sized for the largest k (any later k reuses them)
        let bl = x.blocked(200, 2);
        assert!(bl.cols.len() > 1 && bl.rows.len() > 1, "the test matrix should span several blocks");
        for k in [200, 1, 3, 4, 5, 8, 9, 13, 47, 48, 49, 100, 128, 129] {
            let (wt, g) = (wavy(d * k, k), wavy(n * k, 3 * k));
            let (ra, rb, ca, cb) = (5, n - 3, 2, d - 7);
            let finish = |i: usize, row: &mut [f64]| {
                row[0] += 1.0;
                row.iter().fold(i as f64, |a, v| a + v)
            };
            let run = |isa: Isa| {
                let mut z = wavy((rb - ra) * k, 7);
                let mut zv = vec![0.0; rb - ra];
                mul_rows(isa, bl, &wt, k, ra, rb, None, &mut z, &mut zv, &finish);
                let mut o = vec![f64::NAN; (cb - ca) * k];
                let mut ov = vec![0.0; cb - ca];
                tmul_cols(isa, bl, &g, k, ca, cb, &mut o, &mut ov, &finish);
                [z, zv, o, ov].concat().into_iter().map(f64::to_bits).collect::<Vec<_>>()
            };
            let base = run(Isa::Portable);
            for &isa in &isas[1..] {
                assert!(run(isa) == base, "k={k}: {isa:?} differs from the portable kernel");
            }
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
