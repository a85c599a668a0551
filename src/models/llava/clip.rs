//! The CLIP vision tower (transformers' `CLIPVisionTransformer`), stoppable after any layer.
//!
//! `hidden_states[0]` is the embeddings after `pre_layrnorm`, `hidden_states[i]` the output of
//! encoder layer `i - 1`; LLaVA reads `hidden_states[-2]`, so only the first `n - 1` layers are
//! built unless the pooled CLS (the last layer's CLS through `post_layernorm`) is asked for too.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::{Activation, ClipVisionConfig};
use super::ops::{LayerNorm, softmax_f32};

struct Embeddings {
    /// The patch convolution as a matrix `[hidden, channels·patch·patch]` (stride = kernel, no bias).
    patch: Tensor,
    class: Tensor,
    position: Tensor,
    patch_size: usize,
    channels: usize,
}

impl Embeddings {
    fn new(cfg: &ClipVisionConfig, vb: VarBuilder) -> Result<Self> {
        let (d, c, p) = (cfg.hidden_size, cfg.num_channels, cfg.patch_size);
        let patch = vb.get((d, c, p, p), "patch_embedding.weight")?.reshape((d, c * p * p))?;
        Ok(Embeddings {
            patch,
            class: vb.get(d, "class_embedding")?,
            position: vb.get((cfg.num_patches() + 1, d), "position_embedding.weight")?,
            patch_size: p,
            channels: c,
        })
    }

    /// `[B, C, H, W]` pixels → `[B, 1 + patches, hidden]`.
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        let p = self.patch_size;
        if c != self.channels || h % p != 0 || w % p != 0 {
            candle_core::bail!("pixel_values {:?} do not fit {} channels and patch size {p}", pixels.dims(), self.channels);
        }
        let (gh, gw) = (h / p, w / p);
        // A stride-p convolution with a p×p kernel is a matmul over non-overlapping patches.
        let patches = pixels.reshape((b, c, gh, p, gw, p))?.permute((0, 2, 4, 1, 3, 5))?.contiguous()?.reshape((b * gh * gw, c * p * p))?;
        let embeds = patches.matmul(&self.patch.t()?)?.reshape((b, gh * gw, ()))?;
        let d = embeds.dim(2)?;
        let class = self.class.reshape((1, 1, d))?.broadcast_as((b, 1, d))?;
        let x = Tensor::cat(&[&class, &embeds], 1)?;
        x.broadcast_add(&self.position.unsqueeze(0)?)
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &ClipVisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Attention {
            q: candle_nn::linear(d, d, vb.pp("q_proj"))?,
            k: candle_nn::linear(d, d, vb.pp("k_proj"))?,
            v: candle_nn::linear(d, d, vb.pp("v_proj"))?,
            out: candle_nn::linear(d, d, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            scale: (cfg.head_dim() as f64).powf(-0.5),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        let split = |t: Tensor| t.reshape((b, n, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split(self.q.forward(x)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? * self.scale)?;
        let probs = softmax_f32(&scores)?;
        let o = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.out.forward(&o)
    }
}

struct Layer {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl Layer {
    fn new(cfg: &ClipVisionConfig, vb: VarBuilder) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Layer {
            ln1: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            attn: Attention::new(cfg, vb.pp("self_attn"))?,
            ln2: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: candle_nn::linear(d, i, vb.pp("mlp.fc1"))?,
            fc2: candle_nn::linear(i, d, vb.pp("mlp.fc2"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln1.forward(x)?)?)?;
        let h = self.fc2.forward(&self.act.forward(&self.fc1.forward(&self.ln2.forward(&x)?)?)?)?;
        x + h
    }
}

/// What one pass of the tower returns.
pub struct ClipOutput {
    /// `hidden_states[index]`: `[B, 1 + patches, hidden]`.
    pub selected: Tensor,
    /// The pooled CLS (`post_layernorm` of the last layer's CLS), `[B, hidden]`, when built with it.
    pub pooled: Option<Tensor>,
}

/// The vision tower, built up to the layers it needs.
pub struct ClipVision {
    embeddings: Embeddings,
    pre_layrnorm: LayerNorm,
    layers: Vec<Layer>,
    post_layernorm: Option<LayerNorm>,
    select: usize,
}

impl ClipVision {
    /// Build the tower to return `hidden_states[select]` and, with `pooled`, the pooled CLS (which
    /// needs every layer). `vb` is at `vision_tower.vision_model`.
    pub fn new(cfg: &ClipVisionConfig, vb: VarBuilder, select: usize, pooled: bool) -> Result<Self> {
        let n = if pooled { cfg.num_hidden_layers } else { select };
        let layers = (0..n).map(|l| Layer::new(cfg, vb.pp(format!("encoder.layers.{l}")))).collect::<Result<Vec<_>>>()?;
        Ok(ClipVision {
            embeddings: Embeddings::new(cfg, vb.pp("embeddings"))?,
            pre_layrnorm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            layers,
            post_layernorm: if pooled { Some(LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("post_layernorm"))?) } else { None },
            select,
        })
    }

    /// Layers built (what a forward costs).
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<ClipOutput> {
        let mut x = self.pre_layrnorm.forward(&self.embeddings.forward(pixels)?)?;
        let mut selected = if self.select == 0 { Some(x.clone()) } else { None };
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i + 1 == self.select {
                selected = Some(x.clone());
            }
        }
        let pooled = match &self.post_layernorm {
            Some(ln) => Some(ln.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?),
            None => None,
        };
        let selected = selected.ok_or_else(|| candle_core::Error::Msg(format!("hidden state {} was not computed", self.select)))?;
        Ok(ClipOutput { selected, pooled })
    }
}

/// Mean over the patch tokens (CLS excluded) of `[B, 1 + patches, hidden]`, in f32.
pub fn patch_mean(hidden: &Tensor) -> Result<Tensor> {
    let n = hidden.dim(1)?;
    hidden.narrow(1, 1, n - 1)?.to_dtype(DType::F32)?.mean(D::Minus2)
}
