//! Dense codes to per-token sparse codes (CSR), all or the top k: [`sparsify`] and its CPU and
//! device-pruned paths.

use candle_core::{D, DType, Tensor};

use super::SaeError;

/// How many non-zero features to keep per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    All,
    /// The `k` largest (ties: lower feature index first).
    Top(usize),
}

/// Per-token sparse codes in CSR form: token `t` owns `features[offsets[t]..offsets[t + 1]]` and
/// the matching `values`, largest value first (ties: lower feature index first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseCodes {
    pub offsets: Vec<usize>,
    pub features: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseCodes {
    pub fn n_tokens(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Features and values of one token.
    pub fn token(&self, t: usize) -> (&[u32], &[f32]) {
        let range = self.offsets[t]..self.offsets[t + 1];
        (&self.features[range.clone()], &self.values[range])
    }

    /// Number of stored (token, feature) pairs.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }
}

/// The non-zeros of dense codes `[n_tokens, d_sae]`, per token, the `keep` largest of them.
/// A NaN or infinite code is an error naming the token.
///
/// On the CPU the dense codes are scanned in place. On an accelerator, `Keep::Top(k)` first prunes
/// on the device ([`sparsify_pruned`]) so that only `k` blocks of [`prune_block`] features per token
/// cross to the host instead of all `d_sae` (16× less for 16,384 features and `k = 64`).
pub fn sparsify(codes: &Tensor, keep: Keep) -> Result<SparseCodes, SaeError> {
    let dims = codes.dims();
    if dims.len() != 2 {
        return Err(SaeError::Shape { what: "codes", expected: "[n_tokens, d_sae]".into(), actual: dims.to_vec() });
    }
    if u32::try_from(dims[1]).is_err() {
        return Err(SaeError::Shape { what: "codes", expected: "d_sae < 2^32".into(), actual: dims.to_vec() });
    }
    match keep {
        Keep::Top(k) if !codes.device().is_cpu() => match prune_block(dims[1], k) {
            Some(block) => sparsify_pruned(codes, k, block),
            None => sparsify_dense(codes, keep),
        },
        _ => sparsify_dense(codes, keep),
    }
}

/// The block width for pruning `d_sae` features down to `k` per token, if pruning pays: the
/// narrowest width of 8, 16, … that divides `d_sae` into at most 1,024 blocks (the most one
/// device sort handles) and keeps at most half the codes.
pub fn prune_block(d_sae: usize, k: usize) -> Option<usize> {
    (3..=16).map(|p| 1usize << p).find(|&c| d_sae.is_multiple_of(c) && d_sae / c <= 1024).filter(|&c| k > 0 && k * c * 2 <= d_sae)
}

/// [`sparsify`] with the top-k pruned on the codes' device: each token's features are cut into
/// blocks of `block`; the `k` blocks with the largest maxima hold the token's `k` largest codes
/// (any code above the `k`-th largest block maximum lies in a block whose maximum is above it), so
/// only those blocks are copied and ranked on the host. Codes must be ≥ 0 (ReLU, JumpReLU).
/// Equal to [`sparsify_dense`] for every input, ties included, where the device's sort is stable
/// (the CPU's is; a GPU's may order equal block maxima differently, which can change which of two
/// exactly equal codes fills the last slot).
pub fn sparsify_pruned(codes: &Tensor, k: usize, block: usize) -> Result<SparseCodes, SaeError> {
    let (n, d_sae) = codes.dims2()?;
    if block == 0 || d_sae % block != 0 || k * block > d_sae {
        return Err(SaeError::Shape {
            what: "codes",
            expected: format!("d_sae a multiple of the block {block}, at least k × block = {}", k * block),
            actual: vec![n, d_sae],
        });
    }
    let n_blocks = d_sae / block;
    let blocks = codes.to_dtype(DType::F32)?.contiguous()?.reshape((n, n_blocks, block))?;
    let order = blocks.max(D::Minus1)?.contiguous()?.arg_sort_last_dim(false)?;
    let chosen = order.narrow(1, 0, k)?.contiguous()?;
    let index = chosen.unsqueeze(2)?.broadcast_as((n, k, block))?.contiguous()?;
    let kept = blocks.gather(&index, 1)?.flatten_all()?.to_vec1::<f32>()?;
    let chosen = chosen.flatten_all()?.to_vec1::<u32>()?;
    let mut out = SparseCodes { offsets: vec![0], ..SparseCodes::default() };
    let mut row: Vec<(u32, f32)> = Vec::new();
    for t in 0..n {
        row.clear();
        for (slot, &b) in chosen[t * k..(t + 1) * k].iter().enumerate() {
            let values = &kept[(t * k + slot) * block..(t * k + slot + 1) * block];
            for (j, &v) in values.iter().enumerate() {
                let feature = b as usize * block + j;
                if !v.is_finite() {
                    return Err(SaeError::NotFinite { token: t, feature, value: v });
                }
                if v != 0.0 {
                    row.push((feature as u32, v));
                }
            }
        }
        push_ranked(&mut out, &mut row, Keep::Top(k));
    }
    Ok(out)
}

/// [`sparsify`] by scanning every code on the host.
pub fn sparsify_dense(codes: &Tensor, keep: Keep) -> Result<SparseCodes, SaeError> {
    let (n, d_sae) = codes.dims2()?;
    let flat = codes.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = SparseCodes { offsets: vec![0], ..SparseCodes::default() };
    let mut row: Vec<(u32, f32)> = Vec::new();
    for (t, chunk) in flat.chunks(d_sae.max(1)).enumerate().take(n) {
        row.clear();
        for (j, &v) in chunk.iter().enumerate() {
            if !v.is_finite() {
                return Err(SaeError::NotFinite { token: t, feature: j, value: v });
            }
            if v != 0.0 {
                // d_sae fits u32: checked by `sparsify`
                row.push((j as u32, v));
            }
        }
        push_ranked(&mut out, &mut row, keep);
    }
    if n > 0 && d_sae == 0 {
        out.offsets = vec![0; n + 1];
    }
    Ok(out)
}

/// Keep `row`'s `keep` best (value descending, then feature ascending) and append them to `out`.
fn push_ranked(out: &mut SparseCodes, row: &mut Vec<(u32, f32)>, keep: Keep) {
    let by_rank = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if let Keep::Top(k) = keep
        && k < row.len()
    {
        if k > 0 {
            row.select_nth_unstable_by(k - 1, by_rank);
        }
        row.truncate(k);
    }
    row.sort_unstable_by(by_rank);
    out.features.extend(row.iter().map(|p| p.0));
    out.values.extend(row.iter().map(|p| p.1));
    out.offsets.push(out.values.len());
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn sparsify_top_k() {
        let codes = Tensor::new(&[[0f32, 3., 1., 3., 0.], [0., 0., 0., 0., 0.], [5., 0., 0., 0., 2.]], &Device::Cpu).unwrap();
        let all = sparsify(&codes, Keep::All).unwrap();
        assert_eq!(all.offsets, vec![0, 3, 3, 5]);
        assert_eq!(all.token(0), (&[1u32, 3, 2][..], &[3f32, 3., 1.][..]), "ties: lower index first");
        assert_eq!(all.token(1), (&[][..], &[][..]));
        assert_eq!(all.token(2), (&[0u32, 4][..], &[5f32, 2.][..]));
        let top1 = sparsify(&codes, Keep::Top(1)).unwrap();
        assert_eq!(top1.features, vec![1, 0]);
        assert_eq!(top1.offsets, vec![0, 1, 1, 2]);
        let top2 = sparsify(&codes, Keep::Top(2)).unwrap();
        assert_eq!(top2.features, vec![1, 3, 0, 4]);
        assert_eq!(sparsify(&codes, Keep::Top(0)).unwrap().nnz(), 0);
        assert_eq!(sparsify(&codes, Keep::Top(10)).unwrap(), all);
        let bad = Tensor::new(&[[0f32, f32::NAN]], &Device::Cpu).unwrap();
        assert!(matches!(sparsify(&bad, Keep::All), Err(SaeError::NotFinite { token: 0, feature: 1, .. })));
    }

    /// Codes like an SAE's: most zero, some positive, a few exact ties (values on a coarse grid).
    fn sae_like_codes(n: usize, d: usize, seed: u64) -> Tensor {
        use rand_core::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * d)
            .map(|_| {
                let r = rng.next_u32();
                match r % 10 {
                    0..=6 => 0.0,
                    7 => ((r >> 8) % 4) as f32 * 0.5, // ties (and zeros)
                    _ => (r >> 8) as f32 / (1u32 << 24) as f32 * 5.0,
                }
            })
            .collect();
        Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
    }

    #[test]
    fn pruned_top_k_equals_the_dense_scan() {
        for (n, d, seed) in [(40, 256, 1), (7, 64, 2), (33, 1024, 3)] {
            let codes = sae_like_codes(n, d, seed);
            for k in [1, 2, 3, 5, 8, 16] {
                for block in [8, 16, 32] {
                    if d % block != 0 || k * block > d {
                        continue;
                    }
                    let dense = sparsify_dense(&codes, Keep::Top(k)).unwrap();
                    let pruned = sparsify_pruned(&codes, k, block).unwrap();
                    assert_eq!(pruned, dense, "n {n} d {d} k {k} block {block}");
                }
            }
        }
        // every code equal: the tie-break (lower feature first) must survive the pruning
        let flat = Tensor::ones((3, 64), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(sparsify_pruned(&flat, 4, 8).unwrap(), sparsify_dense(&flat, Keep::Top(4)).unwrap());
        assert_eq!(sparsify_pruned(&flat, 4, 8).unwrap().token(0).0, &[0, 1, 2, 3]);
        // fewer non-zeros than k, and none at all
        let sparse = Tensor::new(&[[0f32; 64], [0.; 64]], &Device::Cpu).unwrap();
        assert_eq!(sparsify_pruned(&sparse, 4, 8).unwrap().offsets, vec![0, 0, 0]);
        assert!(sparsify_pruned(&flat, 9, 8).is_err(), "k × block > d_sae");
        let mut bad = vec![0f32; 64];
        bad[17] = f32::INFINITY;
        let bad = Tensor::from_vec(bad, (1, 64), &Device::Cpu).unwrap();
        assert!(matches!(sparsify_pruned(&bad, 2, 8), Err(SaeError::NotFinite { token: 0, feature: 17, .. })));
    }

    #[test]
    fn prune_block_choice() {
        assert_eq!(prune_block(16_384, 64), Some(16), "1,024 blocks of 16: 16× fewer codes cross");
        assert_eq!(prune_block(65_536, 64), Some(64));
        assert_eq!(prune_block(256, 64), None, "would keep every block");
        assert_eq!(prune_block(256, 5), Some(8));
        assert_eq!(prune_block(100, 2), None, "no block width divides it");
        assert_eq!(prune_block(16_384, 0), None);
    }
}
