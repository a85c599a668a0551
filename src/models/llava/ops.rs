//! The numerically sensitive pieces, kept in f32 whatever the weights' dtype: layer norm,
//! Gemma's RMSNorm, softmax and the rotary tables — as transformers computes them.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

/// `nn.LayerNorm` with statistics in f32 (the weights as the run's dtype rounds them, then f32).
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get(dim, "weight")?.to_dtype(DType::F32)?,
            bias: vb.get(dim, "bias")?.to_dtype(DType::F32)?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let y = candle_nn::ops::layer_norm(&x.to_dtype(DType::F32)?.contiguous()?, &self.weight, &self.bias, self.eps)?;
        y.to_dtype(dtype)
    }
}

/// Gemma's RMSNorm: `x / sqrt(mean(x²) + eps) * (1 + w)`, all in f32, cast back at the end.
pub struct GemmaRmsNorm {
    /// `1 + w`, f32.
    scale: Tensor,
    eps: f32,
}

impl GemmaRmsNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let w = vb.get(dim, "weight")?.to_dtype(DType::F32)?;
        Ok(GemmaRmsNorm { scale: (w + 1.0)?, eps: eps as f32 })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let y = candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?.contiguous()?, &self.scale, self.eps)?;
        y.to_dtype(dtype)
    }
}

/// Softmax over the last dimension in f32, returned in the input's dtype.
pub fn softmax_f32(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    candle_nn::ops::softmax_last_dim(&x.to_dtype(DType::F32)?.contiguous()?)?.to_dtype(dtype)
}

/// RoPE tables `cos`, `sin`: `[positions, head_dim / 2]` in f32, as transformers' default rotary
/// embedding builds them (`inv_freq = 1 / theta^(2i / d)`, angles `position · inv_freq` in f32).
pub fn rope_tables(head_dim: usize, theta: f64, positions: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half).map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32).collect();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for &f in &inv_freq {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((Tensor::from_vec(cos, (positions, half), device)?, Tensor::from_vec(sin, (positions, half), device)?))
}
