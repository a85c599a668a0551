//! The gather-accumulate kernel of both sparse products: portable, and in
//! SIMD registers (AVX-512F, AVX2) with the portable loop's bits.

use super::axpy;
use crate::probe::simd::{Isa, Level};

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

/// The gather kernel `isa` names: [`gather_portable`] or its SIMD version.
/// Inside a `multiversion!` copy `isa` is a constant and the branch folds.
#[inline(always)]
pub(super) fn gather(isa: Isa, idx: &[u32], vals: &[f32], src: &[f64], acc: &mut [f64]) {
    match isa.level() {
        // SAFETY: the token proves the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::gather512(idx, vals, src, acc) },
        // SAFETY: the token proves the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::gather256(idx, vals, src, acc) },
        Level::Portable => gather_portable(idx, vals, src, acc),
    }
}

/// SIMD versions of [`gather_portable`], called through [`gather`].
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

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

    /// The body of a SIMD gather: `acc` in tiles of at most `$max` classes,
    /// each run by `$tile::<R>` with `R` registers of `$lanes` lanes (`R` one
    /// of `$n`). Expands inside a function with `$tile`'s target feature.
    macro_rules! tiled {
        ($tile:ident, $lanes:literal, $max:literal, $($n:literal)+; $idx:ident, $vals:ident, $src:ident, $acc:ident) => {{
            let k = $acc.len();
            debug_assert!($idx.iter().all(|&j| (j as usize + 1) * k <= $src.len()));
            let mut c0 = 0;
            while c0 < k {
                let width = (k - c0).min($max);
                // SAFETY: the enclosing function enables `$tile`'s feature;
                // `c0 + width ≤ k` and every `idx[p]·k + k ≤ src.len()` (the
                // products' shape checks and the validated CSR indices).
                unsafe {
                    let (s, a) = ($src.as_ptr().add(c0), $acc.as_mut_ptr().add(c0));
                    match width.div_ceil($lanes) {
                        $($n => $tile::<$n>($idx, $vals, s, k, a, width),)+
                        _ => unreachable!("tile register count"),
                    }
                }
                c0 += width;
            }
        }};
    }

    /// [`super::gather_portable`] with AVX-512F, tiles of up to 128
    /// classes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn gather512(idx: &[u32], vals: &[f32], src: &[f64], acc: &mut [f64]) {
        tiled!(tile512, 8, 128, 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; idx, vals, src, acc)
    }

    /// [`super::gather_portable`] with AVX2, tiles of up to 48 classes.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn gather256(idx: &[u32], vals: &[f32], src: &[f64], acc: &mut [f64]) {
        tiled!(tile256, 4, 48, 1 2 3 4 5 6 7 8 9 10 11 12; idx, vals, src, acc)
    }
}

#[cfg(test)]
mod tests {
    use crate::probe::matrix::Csr;
    use crate::probe::matrix::blocked::{mul_rows, tmul_cols};
    use crate::probe::simd::Isa;

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
        let isas: Vec<Isa> = Isa::available().collect();
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
            let base = run(Isa::PORTABLE);
            for &isa in &isas[1..] {
                assert!(run(isa) == base, "k={k}: {isa:?} differs from the portable kernel");
            }
        }
    }
}
