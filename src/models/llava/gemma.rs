//! Gemma-1's decoder (transformers' `GemmaModel`) with residual taps and early exit.
//!
//! The input is the merged embedding sequence, already multiplied by Gemma's `√hidden` where it
//! should be (see [`normalizer`]); [`Gemma::forward`] runs the blocks up to the deepest tap and
//! returns, per requested block, the residual stream before (`resid_pre`) or after (`resid_post`)
//! it. The final norm runs only when asked.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::{Activation, GemmaConfig};
use super::ops::{GemmaRmsNorm, rope_tables, softmax_f32};

/// Which side of a block a tap reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TapPoint {
    /// The input of block L (`hidden_states[L]`; what MOSAIC reads for layer L).
    ResidPre,
    /// The output of block L (`blocks.L.hook_resid_post`, the SAE's hook point).
    ResidPost,
}

impl TapPoint {
    pub fn parse(s: &str) -> Option<TapPoint> {
        match s {
            "resid_pre" => Some(TapPoint::ResidPre),
            "resid_post" => Some(TapPoint::ResidPost),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TapPoint::ResidPre => "resid_pre",
            TapPoint::ResidPost => "resid_post",
        }
    }

    /// How many blocks must run to read block `block` at this point.
    pub fn blocks_needed(self, block: usize) -> usize {
        match self {
            TapPoint::ResidPre => block,
            TapPoint::ResidPost => block + 1,
        }
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &GemmaConfig, vb: VarBuilder) -> Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let lin = |i, o, name: &str| {
            if cfg.attention_bias { candle_nn::linear(i, o, vb.pp(name)) } else { candle_nn::linear_no_bias(i, o, vb.pp(name)) }
        };
        Ok(Attention {
            q: lin(d, cfg.num_attention_heads * hd, "q_proj")?,
            k: lin(d, cfg.num_key_value_heads * hd, "k_proj")?,
            v: lin(d, cfg.num_key_value_heads * hd, "v_proj")?,
            o: lin(cfg.num_attention_heads * hd, d, "o_proj")?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
            scale: (hd as f64).powf(-0.5),
        })
    }

    /// `x`: `[B, T, hidden]`; `cos`/`sin`: `[T, head_dim/2]` f32 for the new positions; `mask`:
    /// `[T, past + T]` additive f32; `past`: cached keys and values `[B, kv, past, head_dim]`.
    /// Returns the output and this layer's keys and values including the past.
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        past: Option<&(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, _) = x.dims3()?;
        let (h, kv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let dtype = x.dtype();
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
        let rope = |y: Tensor| candle_nn::rotary_emb::rope(&y.to_dtype(DType::F32)?, cos, sin)?.to_dtype(dtype);
        let q = rope(heads(self.q.forward(x)?, h)?)?;
        let mut k = rope(heads(self.k.forward(x)?, kv)?)?;
        let mut v = heads(self.v.forward(x)?, kv)?;
        if let Some((pk, pv)) = past {
            k = Tensor::cat(&[pk, &k], 2)?;
            v = Tensor::cat(&[pv, &v], 2)?;
        }
        let tk = k.dim(2)?;
        // Grouped-query attention without copying K/V: the query heads that share a KV head are
        // stacked along the sequence axis, [B, kv, group·T, hd].
        let group = h / kv;
        let q = q.reshape((b, kv, group * t, hd))?;
        let scores = (q.matmul(&k.t()?)? * self.scale)?.to_dtype(DType::F32)?;
        let scores = scores.reshape((b, kv, group, t, tk))?.broadcast_add(mask)?;
        let probs = softmax_f32(&scores)?.to_dtype(dtype)?.reshape((b, kv, group * t, tk))?;
        let o = probs.matmul(&v)?.reshape((b, h, t, hd))?.transpose(1, 2)?.reshape((b, t, h * hd))?;
        Ok((self.o.forward(&o)?, (k, v)))
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    act: Activation,
}

impl Mlp {
    fn new(cfg: &GemmaConfig, vb: VarBuilder) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate: candle_nn::linear_no_bias(d, i, vb.pp("gate_proj"))?,
            up: candle_nn::linear_no_bias(d, i, vb.pp("up_proj"))?,
            down: candle_nn::linear_no_bias(i, d, vb.pp("down_proj"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.act.forward(&self.gate.forward(x)?)?;
        self.down.forward(&(g * self.up.forward(x)?)?)
    }
}

struct Block {
    input_layernorm: GemmaRmsNorm,
    attn: Attention,
    post_attention_layernorm: GemmaRmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &GemmaConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Block {
            input_layernorm: GemmaRmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: GemmaRmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        past: Option<&(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (a, kv) = self.attn.forward(&self.input_layernorm.forward(x)?, cos, sin, mask, past)?;
        let x = (x + a)?;
        Ok(((&x + self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?)?, kv))
    }
}

/// The residual streams a forward returns: `taps[i]` for the i-th requested block, `[B, T, hidden]`.
pub struct GemmaOutput {
    pub taps: Vec<Tensor>,
    /// After the final RMSNorm (when built with it and every block ran).
    pub final_norm: Option<Tensor>,
}

/// Gemma's decoder, built up to the blocks it needs (`vb` at `language_model.model`).
pub struct Gemma {
    blocks: Vec<Block>,
    norm: Option<GemmaRmsNorm>,
    cfg: GemmaConfig,
    /// RoPE tables and causal mask of the last sequence length [`Gemma::forward`] saw (every batch
    /// of an extraction has the same prompt length), built once instead of per batch.
    tables: std::sync::Mutex<Option<Tables>>,
}

/// `cos`, `sin` and the causal mask for positions `0..t` on one device.
#[derive(Clone)]
struct Tables {
    t: usize,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
}

impl Gemma {
    /// Build `blocks` decoder blocks, and the final norm when `final_norm` (which needs them all).
    pub fn new(cfg: &GemmaConfig, vb: VarBuilder, blocks: usize, final_norm: bool) -> Result<Self> {
        let n = if final_norm { cfg.num_hidden_layers } else { blocks.min(cfg.num_hidden_layers) };
        let blocks = (0..n).map(|l| Block::new(cfg, vb.pp(format!("layers.{l}")))).collect::<Result<Vec<_>>>()?;
        let norm = if final_norm { Some(GemmaRmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?) } else { None };
        Ok(Gemma { blocks, norm, cfg: cfg.clone(), tables: std::sync::Mutex::new(None) })
    }

    /// The tables for `t` positions, from the memo when the last call had the same length and device.
    fn tables(&self, t: usize, device: &candle_core::Device) -> Result<Tables> {
        let mut memo = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tables) = memo.as_ref().filter(|m| m.t == t && m.mask.device().same_device(device)) {
            return Ok(tables.clone());
        }
        let (cos, sin) = rope_tables(self.cfg.head_dim, self.cfg.rope_theta, t, device)?;
        let tables = Tables { t, cos, sin, mask: causal_mask(0, t, device)? };
        *memo = Some(tables.clone());
        Ok(tables)
    }

    /// Blocks built (what a forward costs).
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Run on merged, scaled embeddings `[B, T, hidden]`, returning the residual at each of
    /// `taps` (block, point), in that order. Stops after the last block any tap needs unless the
    /// final norm was built.
    pub fn forward(&self, embeds: &Tensor, taps: &[(usize, TapPoint)]) -> Result<GemmaOutput> {
        let (_, t, _) = embeds.dims3()?;
        let device = embeds.device();
        for &(block, point) in taps {
            if point.blocks_needed(block) > self.blocks.len() {
                candle_core::bail!("tap {} of block {block} needs blocks this model was not built with", point.name());
            }
        }
        let run = match &self.norm {
            Some(_) => self.blocks.len(),
            None => taps.iter().map(|&(b, p)| p.blocks_needed(b)).max().unwrap_or(0),
        };
        let mut x = embeds.clone();
        let Tables { cos, sin, mask, .. } = self.tables(t, device)?;
        let mut out: Vec<Option<Tensor>> = vec![None; taps.len()];
        let mut record = |x: &Tensor, block: usize, point: TapPoint| {
            for (slot, &(b, p)) in out.iter_mut().zip(taps) {
                if b == block && p == point {
                    *slot = Some(x.clone());
                }
            }
        };
        for (l, block) in self.blocks.iter().enumerate().take(run) {
            record(&x, l, TapPoint::ResidPre);
            x = block.forward(&x, &cos, &sin, &mask, None)?.0;
            record(&x, l, TapPoint::ResidPost);
        }
        // The input of the first block not run (`resid_pre` of the deepest block needs no more).
        record(&x, run, TapPoint::ResidPre);
        let final_norm = match &self.norm {
            Some(norm) if run == self.cfg.num_hidden_layers => Some(norm.forward(&x)?),
            _ => None,
        };
        let taps =
            out.into_iter().map(|t| t.ok_or_else(|| candle_core::Error::Msg("a tap was not reached".into()))).collect::<Result<_>>()?;
        Ok(GemmaOutput { taps, final_norm })
    }
}

impl Gemma {
    /// Run every block on `embeds` (`[B, T, hidden]`, scaled) after the positions in `past`, and
    /// return the sequence after the final norm with the cache extended by these positions.
    /// Needs the model built with every block and the final norm.
    pub fn forward_cached(&self, embeds: &Tensor, past: Option<&KvCache>) -> Result<(Tensor, KvCache)> {
        let norm = match &self.norm {
            Some(n) if self.blocks.len() == self.cfg.num_hidden_layers => n,
            _ => candle_core::bail!("forward_cached needs every block and the final norm: build Gemma with final_norm"),
        };
        let (_, t, _) = embeds.dims3()?;
        let device = embeds.device();
        let offset = past.map(KvCache::len).unwrap_or(0);
        let (cos, sin) = rope_tables(self.cfg.head_dim, self.cfg.rope_theta, offset + t, device)?;
        let (cos, sin) = (cos.narrow(0, offset, t)?, sin.narrow(0, offset, t)?);
        let mask = causal_mask(offset, t, device)?;
        let mut x = embeds.clone();
        let mut layers = Vec::with_capacity(self.blocks.len());
        for (l, block) in self.blocks.iter().enumerate() {
            let (y, kv) = block.forward(&x, &cos, &sin, &mask, past.map(|p| &p.layers[l]))?;
            x = y;
            layers.push(kv);
        }
        Ok((norm.forward(&x)?, KvCache { layers }))
    }
}

/// Gemma's embedding scale `√hidden` as a 1-element tensor of `dtype` (transformers rounds it to
/// the hidden states' dtype before multiplying: 45.25 in bf16 for hidden 2048).
pub fn normalizer(hidden: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
    Tensor::new(&[(hidden as f64).sqrt() as f32], device)?.to_dtype(dtype)
}

/// `[T, past + T]` additive causal mask in f32: new token `i` (at position `past + i`) sees every
/// position up to its own (0), nothing after it (−∞).
fn causal_mask(past: usize, t: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t).flat_map(|i| (0..past + t).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (t, past + t), device)
}

/// Keys and values of every block for the positions seen so far, `[B, kv, positions, head_dim]`.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|(k, _)| k.dim(2).ok()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` of the batch, repeated `n` times (one image's prompt, scored against `n` answers).
    pub fn repeat_row(&self, i: usize, n: usize) -> Result<KvCache> {
        let rep = |t: &Tensor| -> Result<Tensor> {
            let row = t.narrow(0, i, 1)?;
            let mut dims = row.dims().to_vec();
            dims[0] = n;
            row.broadcast_as(dims)?.contiguous()
        };
        Ok(KvCache { layers: self.layers.iter().map(|(k, v)| Ok((rep(k)?, rep(v)?))).collect::<Result<_>>()? })
    }
}
