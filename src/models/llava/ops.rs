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

/// `gelu_pytorch_tanh`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
///
/// On the CPU in f32 (Gemma's MLP, the largest elementwise op of the forward) the tanh is Eigen's
/// rational approximation (as PyTorch's own vectorized CPU kernels use), evaluated in a loop the
/// compiler vectorizes — candle's `Tensor::gelu` calls libm's scalar `tanhf` per element, ≈ 25×
/// slower. Within 1e-6 of the libm result (6.3e-7 at worst, in the tail near x = −4.8, where
/// `1 + tanh` cancels); every other device and dtype takes `Tensor::gelu`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 { x.contiguous()?.apply_op1_no_bwd(&GeluTanhCpu) } else { x.gelu() }
}

struct GeluTanhCpu;

impl candle_core::CustomOp1 for GeluTanhCpu {
    fn name(&self) -> &'static str {
        "gelu-tanh-f32"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (candle_core::CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("gelu-tanh-f32 expects contiguous f32 input");
        };
        let src = &data[start..end];
        let mut dst = vec![0f32; src.len()];
        gelu_tanh_slice(src, &mut dst);
        Ok((candle_core::CpuStorage::F32(dst), layout.shape().clone()))
    }
}

fn gelu_tanh_slice(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for (checked just above).
        unsafe { gelu_tanh_avx2(src, dst) };
        return;
    }
    gelu_tanh_generic(src, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_tanh_avx2(src: &[f32], dst: &mut [f32]) {
    gelu_tanh_generic(src, dst);
}

#[inline(always)]
fn gelu_tanh_generic(src: &[f32], dst: &mut [f32]) {
    for (y, &x) in dst.iter_mut().zip(src) {
        *y = gelu_tanh_scalar(x);
    }
}

#[inline(always)]
fn gelu_tanh_scalar(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    0.5 * x * (1.0 + tanh_rational(inner))
}

/// Eigen's `generic_fast_tanh_float`: a 13/6-degree rational fit on [−7.9, 7.9] (a few ulp from libm),
/// ±1 from |a| = 9 on; selects, not branches, so loops over it vectorize.
#[inline(always)]
fn tanh_rational(a: f32) -> f32 {
    let x = a.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.760_768_5e-16, 2.000_188e-13);
    p = x2.mul_add(p, -8.604_672e-11);
    p = x2.mul_add(p, 5.122_297e-8);
    p = x2.mul_add(p, 1.485_722_4e-5);
    p = x2.mul_add(p, 6.372_619_3e-4);
    p = x2.mul_add(p, 4.893_524_6e-3);
    p *= x;
    let mut q = x2.mul_add(1.198_258_4e-6, 1.185_347_1e-4);
    q = x2.mul_add(q, 2.268_434_6e-3);
    q = x2.mul_add(q, 4.893_525e-3);
    // beyond |a| ≈ 9, tanh is 1 in f32 (libm's too); the fit's 1 − 1 ulp would leave 0.5·x·1e-7 in GELU's tail
    let ax = a.abs();
    if ax >= 9.0 {
        1f32.copysign(a)
    } else if ax < 0.0004 {
        a
    } else {
        p / q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_tanh_matches_the_libm_version() {
        // every representable step of a dense grid over the interesting range, plus the tails
        let mut xs: Vec<f32> = (-40_000..=40_000).map(|i| i as f32 * 2.5e-4).collect();
        xs.extend([-1e4, -60.0, -9.0, -7.9, 7.9, 9.0, 60.0, 1e4, 0.0, -0.0, 1e-6, -3e-4, 3.9e-4]);
        let t = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
        let ours = gelu_tanh(&t).unwrap().to_vec1::<f32>().unwrap();
        let reference = t.gelu().unwrap().to_vec1::<f32>().unwrap();
        let mut worst = 0f32;
        for ((x, a), b) in xs.iter().zip(&ours).zip(&reference) {
            let err = (a - b).abs() / b.abs().max(1.0);
            assert!(err <= 1e-6, "x {x}: ours {a}, libm {b}");
            worst = worst.max(err);
        }
        assert!(worst > 0.0, "the fast path was not taken");
        // other shapes and strides go through `contiguous`
        let m = Tensor::new(&[[1f32, -2.], [3., 0.5]], &Device::Cpu).unwrap().t().unwrap();
        let a = gelu_tanh(&m).unwrap().to_vec2::<f32>().unwrap();
        let b = m.gelu().unwrap().to_vec2::<f32>().unwrap();
        for (ra, rb) in a.iter().zip(&b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!((x - y).abs() <= 1e-6);
            }
        }
    }
}
