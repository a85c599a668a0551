//! SAELens-format sparse autoencoders: config, encode, decode, sparsify. No I/O here.
//!
//! On disk an SAE is a folder with `cfg.json` and `sae_weights.safetensors` holding
//! `W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]`, `b_dec [d_in]` and, for JumpReLU,
//! `threshold [d_sae]`. Old files may carry an all-ones `scaling_factor [d_sae]`, which SAELens
//! drops; we do the same (a non-ones one is a fine-tuning factor we do not support).
//!
//! What SAELens computes (`sae_lens/saes/{sae,standard_sae,jumprelu_sae}.py`, v6):
//!
//! ```text
//! pre = (x − b_dec · apply_b_dec_to_input) W_enc + b_enc
//! f   = relu(pre)                         (standard)
//! f   = relu(pre) · (pre > threshold)     (jumprelu)
//! x̂   = f W_dec + b_dec
//! ```
//!
//! With `normalize_activations: expected_average_only_in` SAELens folds a dataset-wide input scale
//! `s` (from its release table, `norm_scaling_factor`) into the weights when loading a release:
//! `W_enc ← s·W_enc`, `W_dec ← W_dec/s`, `b_dec ← b_dec/s`. That is
//! `pre = (s·x − b_dec·apply) W_enc + b_enc` and `x̂ = (f W_dec + b_dec)/s`: the decode comes back
//! in the model's units. [`Sae::new`] folds the scale the same way, so the arithmetic matches
//! SAELens operation for operation. Without a known scale such an SAE is refused
//! ([`SaeError::MissingInputScale`]): SAELens itself would silently skip the scale.
//!
//! The model and its errors live here; `config.rs` reads `cfg.json`, `sparse.rs` turns dense codes
//! into per-token top-k, and `check.rs` holds the plan-time checks against a model.

mod check;
mod config;
mod sparse;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use check::{SaeWarning, check_against_model, check_against_tap, stream_position};
pub use config::{Architecture, CfgStyle, Normalization, SaeConfig, layer_of_hook};
pub use sparse::{Keep, SparseCodes, prune_block, sparsify, sparsify_dense, sparsify_pruned};

/// Errors of SAE configs and computation. Loading errors wrap these
/// ([`super::sae_load::SaeLoadError`]).
#[derive(Debug, thiserror::Error)]
pub enum SaeError {
    /// `cfg.json` is not what SAELens writes.
    #[error("sae cfg.json: {field}: {reason}")]
    Config { field: String, reason: String },
    /// A valid SAELens setting that saeflow does not implement.
    #[error("sae cfg.json: {field} '{value}' is not supported; supported: {supported}")]
    Unsupported { field: &'static str, value: String, supported: &'static str },
    /// The cfg asks for a normalised input but no scale is known.
    #[error(
        "sae {subject}: cfg.json asks for input normalisation (normalize_activations: {normalize}) but no input scale \
         is known; the scale is not in cfg.json: for a release SAE it comes from the release table (SAELens' \
         norm_scaling_factor), for a local or hf:// SAE give it as `input_scale:` (the factor s such that the SAE \
         reads s·x)"
    )]
    MissingInputScale { subject: String, normalize: &'static str },
    /// An explicit scale for an SAE that does not normalise its input.
    #[error(
        "sae {subject}: input_scale {scale} was given but cfg.json says normalize_activations: none, so SAELens would \
         not scale the input; remove input_scale"
    )]
    UnexpectedInputScale { subject: String, scale: f64 },
    /// An input scale that cannot be used.
    #[error("sae {subject}: input_scale must be a finite number > 0, got {scale}")]
    BadInputScale { subject: String, scale: f64 },
    /// The SAE does not fit the model it is applied to.
    #[error(
        "sae d_in {d_in} but the model's hidden size is {width}: this SAE was trained on another model's residual \
         stream; pick an SAE whose d_in is {width}"
    )]
    Width { d_in: usize, width: usize },
    /// A weight with the wrong shape or values.
    #[error("sae weights: {tensor}: {reason}")]
    Weights { tensor: &'static str, reason: String },
    /// An input tensor with the wrong shape.
    #[error("sae {what}: expected shape {expected}, got {actual:?}")]
    Shape { what: &'static str, expected: String, actual: Vec<usize> },
    /// Codes that are not finite.
    #[error("sae codes: token {token}, feature {feature} is {value}; the SAE input probably contains NaN or inf")]
    NotFinite { token: usize, feature: usize, value: f32 },
    /// A candle error (a missing tensor, a wrong shape, a device failure), without the backtrace
    /// candle appends when `RUST_BACKTRACE` is set.
    #[error(transparent)]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for SaeError {
    fn from(e: candle_core::Error) -> SaeError {
        SaeError::Candle(without_backtrace(e))
    }
}

/// Drop the backtrace candle attaches to its errors when `RUST_BACKTRACE` is set: its `Display`
/// would print the whole trace inside a one-line message.
pub fn without_backtrace(mut e: candle_core::Error) -> candle_core::Error {
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = *inner;
    }
    e
}

/// A sparse autoencoder ready to encode and decode on one device (f32).
#[derive(Clone, Debug)]
pub struct Sae {
    w_enc: Tensor,
    b_enc: Tensor,
    w_dec: Tensor,
    b_dec: Tensor,
    threshold: Option<Tensor>,
    apply_b_dec_to_input: bool,
    d_in: usize,
    d_sae: usize,
}

impl Sae {
    /// Build from the weights under `vb` (names as SAELens writes them). The input scale, when
    /// the cfg asks for one, is folded into the weights as SAELens folds it.
    pub fn new(cfg: &SaeConfig, vb: VarBuilder) -> Result<Sae, SaeError> {
        let scale = cfg.effective_input_scale("weights")?;
        let (d_in, d_sae) = (cfg.d_in, cfg.d_sae);
        let mut w_enc = vb.get((d_in, d_sae), "W_enc")?;
        let b_enc = vb.get(d_sae, "b_enc")?;
        let mut w_dec = vb.get((d_sae, d_in), "W_dec")?;
        let mut b_dec = vb.get(d_in, "b_dec")?;
        let threshold = match cfg.architecture {
            Architecture::Standard => None,
            Architecture::JumpRelu => Some(vb.get(d_sae, "threshold")?),
        };
        if vb.contains_tensor("scaling_factor") {
            let factor = vb.get(d_sae, "scaling_factor")?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            // torch.allclose(x, ones): |x − 1| ≤ 1e-8 + 1e-5.
            if let Some((i, v)) = factor.iter().enumerate().find(|(_, v)| ((**v - 1.0).abs() as f64) > 1e-8 + 1e-5) {
                return Err(SaeError::Weights {
                    tensor: "scaling_factor",
                    reason: format!(
                        "entry {i} is {v}, not 1: a fine-tuning scaling factor, which saeflow does not support \
                         (all-ones factors are ignored as SAELens does)"
                    ),
                });
            }
        }
        if scale != 1.0 {
            // SAE.fold_activation_norm_scaling_factor.
            w_enc = w_enc.affine(scale, 0.0)?;
            w_dec = (w_dec / scale)?;
            b_dec = (b_dec / scale)?;
        }
        Ok(Sae { w_enc, b_enc, w_dec, b_dec, threshold, apply_b_dec_to_input: cfg.apply_b_dec_to_input, d_in, d_sae })
    }

    pub fn d_in(&self) -> usize {
        self.d_in
    }

    pub fn d_sae(&self) -> usize {
        self.d_sae
    }

    pub fn device(&self) -> &Device {
        self.w_enc.device()
    }

    /// Pre-activations `(x − b_dec·apply) W_enc + b_enc` of `x [n_tokens, d_in]` (any float dtype;
    /// computed in f32), `[n_tokens, d_sae]`.
    pub fn pre_activations(&self, x: &Tensor) -> Result<Tensor, SaeError> {
        let dims = x.dims();
        if dims.len() != 2 || dims[1] != self.d_in {
            return Err(SaeError::Shape { what: "input", expected: format!("[n_tokens, {}]", self.d_in), actual: dims.to_vec() });
        }
        let x = x.to_dtype(self.w_enc.dtype())?;
        let x = if self.apply_b_dec_to_input { x.broadcast_sub(&self.b_dec)? } else { x };
        Ok(x.matmul(&self.w_enc)?.broadcast_add(&self.b_enc)?)
    }

    /// Dense codes `[n_tokens, d_sae]` of `x [n_tokens, d_in]`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor, SaeError> {
        let pre = self.pre_activations(x)?;
        let base = pre.relu()?;
        Ok(match &self.threshold {
            None => base,
            Some(threshold) => {
                let mask = pre.broadcast_gt(threshold)?.to_dtype(base.dtype())?;
                (base * mask)?
            }
        })
    }

    /// Reconstruction `f W_dec + b_dec` of codes `f [n_tokens, d_sae]`, in the model's units.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor, SaeError> {
        let dims = codes.dims();
        if dims.len() != 2 || dims[1] != self.d_sae {
            return Err(SaeError::Shape { what: "codes", expected: format!("[n_tokens, {}]", self.d_sae), actual: dims.to_vec() });
        }
        let codes = codes.to_dtype(self.w_dec.dtype())?;
        Ok(codes.matmul(&self.w_dec)?.broadcast_add(&self.b_dec)?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A 2-token, d_in 2, d_sae 3 SAE by hand:
    /// W_enc = [[1, 0, -1], [0, 1, 1]], b_enc = [0, -0.5, 0.1], b_dec = [1, 1], W_dec = W_encᵀ.
    fn tiny(architecture: Architecture, apply_b_dec: bool, scale: Option<f64>) -> Sae {
        let dev = Device::Cpu;
        let mut ts = HashMap::new();
        ts.insert("W_enc".into(), Tensor::new(&[[1f32, 0., -1.], [0., 1., 1.]], &dev).unwrap());
        ts.insert("b_enc".into(), Tensor::new(&[0f32, -0.5, 0.1], &dev).unwrap());
        ts.insert("W_dec".into(), Tensor::new(&[[1f32, 0.], [0., 1.], [-1., 1.]], &dev).unwrap());
        ts.insert("b_dec".into(), Tensor::new(&[1f32, 1.], &dev).unwrap());
        ts.insert("threshold".into(), Tensor::new(&[0.5f32, 0.5, 0.5], &dev).unwrap());
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        let cfg = SaeConfig {
            d_in: 2,
            d_sae: 3,
            architecture,
            apply_b_dec_to_input: apply_b_dec,
            normalize: if scale.is_some() { Normalization::ExpectedAverageOnlyIn } else { Normalization::None },
            input_scale: scale,
            hook_name: None,
            hook_layer: None,
            model_name: None,
            neuronpedia_id: None,
            dtype: "float32".into(),
            style: CfgStyle::V6,
            sae_lens_version: None,
        };
        Sae::new(&cfg, vb).unwrap()
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    #[test]
    fn encode_decode_by_hand() {
        let x = Tensor::new(&[[2f32, 1.], [0., 0.]], &Device::Cpu).unwrap();
        // No b_dec: pre = [[2, 0.5, -0.9], [0, -0.5, 0.1]].
        let sae = tiny(Architecture::Standard, false, None);
        assert_eq!(rows(&sae.encode(&x).unwrap()), vec![vec![2., 0.5, 0.], vec![0., 0., 0.1]]);
        // With b_dec: x − 1 = [[1, 0], [-1, -1]] → pre = [[1, -0.5, -0.9], [-1, -1.5, 0.1]].
        let sae = tiny(Architecture::Standard, true, None);
        assert_eq!(rows(&sae.encode(&x).unwrap()), vec![vec![1., 0., 0.], vec![0., 0., 0.1]]);
        // JumpReLU at 0.5 drops 0.5 itself (strict >) and 0.1.
        let sae = tiny(Architecture::JumpRelu, false, None);
        assert_eq!(rows(&sae.encode(&x).unwrap()), vec![vec![2., 0., 0.], vec![0., 0., 0.]]);
        // decode: f W_dec + b_dec.
        let f = Tensor::new(&[[2f32, 0.5, 0.]], &Device::Cpu).unwrap();
        assert_eq!(rows(&sae.decode(&f).unwrap()), vec![vec![3., 1.5]]);
    }

    #[test]
    fn input_scale_is_folded() {
        // s = 0.5: pre = (0.5·x − b_dec) W_enc + b_enc; decode = (f W_dec + b_dec) / 0.5.
        let sae = tiny(Architecture::Standard, true, Some(0.5));
        let x = Tensor::new(&[[4f32, 2.]], &Device::Cpu).unwrap();
        assert_eq!(rows(&sae.encode(&x).unwrap()), vec![vec![1., 0., 0.]]);
        let f = Tensor::new(&[[1f32, 0., 0.]], &Device::Cpu).unwrap();
        assert_eq!(rows(&sae.decode(&f).unwrap()), vec![vec![4., 2.]]);
    }

    #[test]
    fn shape_errors() {
        let sae = tiny(Architecture::Standard, true, None);
        let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(sae.encode(&x).unwrap_err().to_string(), "sae input: expected shape [n_tokens, 2], got [2, 3]");
        let f = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(sae.decode(&f).unwrap_err().to_string(), "sae codes: expected shape [n_tokens, 3], got [2, 2]");
    }

    #[test]
    fn candle_backtraces_stay_out_of_messages() {
        let e = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("cannot find tensor b_enc".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(SaeError::from(e).to_string(), "cannot find tensor b_enc");
    }

    #[test]
    fn non_ones_scaling_factor_is_refused() {
        let dev = Device::Cpu;
        let mut ts = HashMap::new();
        ts.insert("W_enc".into(), Tensor::zeros((2, 3), DType::F32, &dev).unwrap());
        ts.insert("b_enc".into(), Tensor::zeros(3, DType::F32, &dev).unwrap());
        ts.insert("W_dec".into(), Tensor::zeros((3, 2), DType::F32, &dev).unwrap());
        ts.insert("b_dec".into(), Tensor::zeros(2, DType::F32, &dev).unwrap());
        ts.insert("scaling_factor".into(), Tensor::new(&[1f32, 1., 1.], &dev).unwrap());
        let cfg = SaeConfig::from_json(r#"{"d_in": 2, "d_sae": 3}"#).unwrap();
        assert!(Sae::new(&cfg, VarBuilder::from_tensors(ts.clone(), DType::F32, &dev)).is_ok());
        ts.insert("scaling_factor".into(), Tensor::new(&[1f32, 2., 1.], &dev).unwrap());
        let err = Sae::new(&cfg, VarBuilder::from_tensors(ts.clone(), DType::F32, &dev)).unwrap_err().to_string();
        assert!(err.starts_with("sae weights: scaling_factor: entry 1 is 2, not 1"), "{err}");
        ts.remove("W_dec");
        let err = Sae::new(&cfg, VarBuilder::from_tensors(ts, DType::F32, &dev)).unwrap_err().to_string();
        assert!(err.contains("W_dec"), "{err}");
    }
}
