//! Cache-blocked copies of a [`Csr`], and the block walks of its two
//! products around the gather kernel, compiled for each CPU level with
//! [`multiversion!`]: `X·Wᵀ` one column block at a time, `Xᵀ·G` one row
//! block at a time.

use super::kernels::gather;
use super::{Csr, Design};
use crate::probe::simd::multiversion;

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
pub(super) struct Blocked {
    pub(super) cols: Vec<Block>,
    pub(super) rows: Vec<Block>,
    /// Stored values per column, prefix-summed (load balance of `Xᵀ·G`).
    pub(super) col_nnz_prefix: Vec<usize>,
}

/// One block: `ptr` has one offset per row (column-block CSR) or per column
/// (row-block CSC) plus one; `idx` holds absolute column (resp. row) indices.
#[derive(Debug, Clone)]
pub(super) struct Block {
    ptr: Vec<usize>,
    idx: Vec<u32>,
    data: Vec<f32>,
}

/// Bytes of a gathered slice (`width × k × 8`) that we aim to keep in L2
/// (half of a 1 MiB L2; 256 KiB and 1 MiB were slower on the bench).
const BLOCK_BYTES: usize = 1 << 19;

impl Blocked {
    /// The blocked copies of `x`, with block sizes chosen for `k` classes
    /// (any other `k` is still correct, merely less cache-friendly). With
    /// `threads > 1` the column and row blocks are built concurrently.
    pub(super) fn new(x: &Csr, k: usize, threads: usize) -> Blocked {
        let width = (BLOCK_BYTES / (8 * k.max(1))).max(64);
        let (cols, rows) = if threads > 1 {
            std::thread::scope(|s| {
                let cols = s.spawn(|| column_blocks(x, width));
                let rows = row_blocks(x, width);
                (cols.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), rows)
            })
        } else {
            (column_blocks(x, width), row_blocks(x, width))
        };
        let d = x.n_cols();
        let mut col_nnz_prefix = vec![0usize; d + 1];
        for &c in x.indices() {
            col_nnz_prefix[c as usize + 1] += 1;
        }
        for j in 0..d {
            col_nnz_prefix[j + 1] += col_nnz_prefix[j];
        }
        Blocked { cols, rows, col_nnz_prefix }
    }
}

/// Column blocks of `width` features, CSR each.
fn column_blocks(x: &Csr, width: usize) -> Vec<Block> {
    let (n, d) = (x.n_rows(), x.n_cols());
    let (indptr, indices, data) = (x.indptr(), x.indices(), x.data());
    let n_cb = d.div_ceil(width).max(1);
    let mut counts = vec![0usize; n_cb];
    for &c in indices {
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
        for p in indptr[r]..indptr[r + 1] {
            let c = indices[p];
            let b = &mut cols[c as usize / width];
            b.idx.push(c);
            b.data.push(data[p]);
        }
        for b in cols.iter_mut() {
            b.ptr.push(b.idx.len());
        }
    }
    cols
}

/// Row blocks of `width` samples, CSC each.
fn row_blocks(x: &Csr, width: usize) -> Vec<Block> {
    let (n, d) = (x.n_rows(), x.n_cols());
    let (indptr, indices, values) = (x.indptr(), x.indices(), x.data());
    let n_rb = n.div_ceil(width).max(1);
    let mut rows = Vec::with_capacity(n_rb);
    for rb in 0..n_rb {
        let (r0, r1) = (rb * width, ((rb + 1) * width).min(n));
        let mut ptr = vec![0usize; d + 1];
        for p in indptr[r0]..indptr[r1] {
            ptr[indices[p] as usize + 1] += 1;
        }
        for j in 0..d {
            ptr[j + 1] += ptr[j];
        }
        let nnz = ptr[d];
        let mut next = ptr.clone();
        let mut idx = vec![0u32; nnz];
        let mut data = vec![0f32; nnz];
        for r in r0..r1 {
            for p in indptr[r]..indptr[r + 1] {
                let c = indices[p] as usize;
                idx[next[c]] = r as u32;
                data[next[c]] = values[p];
                next[c] += 1;
            }
        }
        rows.push(Block { ptr, idx, data });
    }
    rows
}

multiversion! {
    /// `out[(r-a)·k..] += Σ_j x_rj · wt[j·k..]` for rows `a..b` (each row first
    /// set to `init` if given), one column block at a time, with the gather
    /// kernel of `isa`; after the last block, `vals[r-a] = finish(r, row)`.
    pub(super) fn mul_rows<T, F: Fn(usize, &mut [f64]) -> T>(
        isa,
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
                    gather(isa, &blk.idx[p0..p1], &blk.data[p0..p1], wt, z);
                }
                if bi == last {
                    vals[r - a] = finish(r, z);
                }
            }
        }
    }
}

multiversion! {
    /// `out[(j-a)·k..] = Σ_r x_rj · g[r·k..]` for columns `a..b`, one row block
    /// at a time, with the gather kernel of `isa`; after the last block,
    /// `vals[j-a] = finish(j, row)`.
    pub(super) fn tmul_cols<T, F: Fn(usize, &mut [f64]) -> T>(
        isa,
        bl: &Blocked,
        g: &[f64],
        k: usize,
        a: usize,
        b: usize,
        out: &mut [f64],
        vals: &mut [T],
        finish: &F,
    ) {
        out.fill(0.0);
        let last = bl.rows.len() - 1;
        for (bi, blk) in bl.rows.iter().enumerate() {
            for j in a..b {
                let o = &mut out[(j - a) * k..(j - a + 1) * k];
                let (p0, p1) = (blk.ptr[j], blk.ptr[j + 1]);
                if p1 > p0 {
                    gather(isa, &blk.idx[p0..p1], &blk.data[p0..p1], g, o);
                }
                if bi == last {
                    vals[j - a] = finish(j, o);
                }
            }
        }
    }
}
