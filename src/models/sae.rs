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

use std::fmt;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::{Map, Value};

/// Which `cfg.json` style a config was read from (SAELens decides by `sae_lens_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfgStyle {
    /// No `sae_lens_version`, or one before 6.0: flat keys, `hook_point`/`hook_name`,
    /// `hook_point_layer`/`hook_layer`, `activation_fn(_str)`, boolean or string
    /// `normalize_activations`, `apply_b_dec_to_input` defaulting to true.
    Pre6,
    /// SAELens ≥ 6: `architecture` at the top, model facts (`hook_name`, …) under `metadata`.
    V6,
}

/// The encoder's non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `relu(pre)`.
    Standard,
    /// `relu(pre) · (pre > threshold)`, with a `threshold [d_sae]` tensor.
    JumpRelu,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::JumpRelu => "jumprelu",
        }
    }
}

/// How the SAE expects its input to be normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// Raw activations.
    None,
    /// Activations times a dataset-wide scale `s` (SAELens' `expected_average_only_in`, pre-6.0
    /// `normalize_activations: true`). The scale is not in `cfg.json`.
    ExpectedAverageOnlyIn,
}

impl Normalization {
    pub fn as_str(self) -> &'static str {
        match self {
            Normalization::None => "none",
            Normalization::ExpectedAverageOnlyIn => "expected_average_only_in",
        }
    }
}

/// An SAE's configuration, read from its `cfg.json` ([`SaeConfig::from_json`]), plus the input
/// scale that the loader found for it (release table or an `input_scale:` parameter).
#[derive(Clone, Debug, PartialEq)]
pub struct SaeConfig {
    pub d_in: usize,
    pub d_sae: usize,
    pub architecture: Architecture,
    pub apply_b_dec_to_input: bool,
    pub normalize: Normalization,
    /// The input scale `s` (see the module docs); `None` until the loader sets it.
    pub input_scale: Option<f64>,
    /// `hook_name` (pre-6.0: `hook_point`), e.g. `blocks.12.hook_resid_post`.
    pub hook_name: Option<String>,
    /// `hook_layer` / `hook_point_layer`, else the `N` of `blocks.N.` in the hook name.
    pub hook_layer: Option<usize>,
    pub model_name: Option<String>,
    pub neuronpedia_id: Option<String>,
    /// The checkpoint's dtype as written (`torch.float32`, `float32`, …); we compute in f32.
    pub dtype: String,
    pub style: CfgStyle,
    /// `sae_lens_version` (top level or under `metadata`), when present.
    pub sae_lens_version: Option<String>,
}

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

impl SaeConfig {
    /// Read a `cfg.json` as SAELens does (`handle_config_defaulting`): pre-6.0 configs are
    /// renamed and defaulted, 6.x configs are read as written. Unknown keys are ignored (the
    /// training settings live there too).
    pub fn from_json(text: &str) -> Result<SaeConfig, SaeError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| SaeError::Config { field: "(file)".into(), reason: format!("not valid JSON: {e}") })?;
        let Value::Object(map) = value else {
            return Err(SaeError::Config { field: "(file)".into(), reason: "expected a JSON object".into() });
        };
        SaeConfig::from_map(&map)
    }

    /// [`SaeConfig::from_json`] on an already parsed object.
    pub fn from_map(map: &Map<String, Value>) -> Result<SaeConfig, SaeError> {
        let metadata = match map.get("metadata") {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(_) => return Err(type_error("metadata", "an object")),
        };
        let sae_lens_version =
            opt_str(map, "sae_lens_version")?.or(metadata.map(|m| opt_str(m, "sae_lens_version")).transpose()?.flatten());
        let style = match &sae_lens_version {
            Some(v) if major_version(v).is_some_and(|major| major >= 6) => CfgStyle::V6,
            _ => CfgStyle::Pre6,
        };
        let d_in = req_usize(map, "d_in")?;
        let d_sae = req_usize(map, "d_sae")?;
        if d_in == 0 || d_sae == 0 {
            return Err(SaeError::Config { field: "d_in/d_sae".into(), reason: format!("must be > 0, got {d_in}/{d_sae}") });
        }
        // Model facts: top level (pre-6.0), or under `metadata` (6.x; a top-level copy wins as in
        // SAELens, which keeps unknown top-level keys out of the dataclass but reads metadata).
        let lookup = |keys: &[&'static str]| -> Result<Option<String>, SaeError> {
            for key in keys {
                if let Some(v) = opt_str(map, key)? {
                    return Ok(Some(v));
                }
                if let Some(m) = metadata
                    && let Some(v) = opt_str(m, key)?
                {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        let hook_name = match style {
            CfgStyle::Pre6 => lookup(&["hook_name", "hook_point"])?,
            CfgStyle::V6 => lookup(&["hook_name"])?,
        };
        let explicit_layer = match opt_usize(map, "hook_layer")? {
            Some(layer) => Some(layer),
            None => opt_usize(map, "hook_point_layer")?,
        };
        let hook_layer = explicit_layer.or_else(|| hook_name.as_deref().and_then(layer_of_hook));

        let architecture_str = opt_str(map, "architecture")?;
        let architecture = match style {
            CfgStyle::Pre6 => {
                // SAELens renames activation_fn_str → activation_fn; only `topk` changes the
                // architecture, other activation names are ignored by its StandardSAE (ReLU).
                let activation = match opt_str(map, "activation_fn_str")? {
                    Some(a) => Some(a),
                    None => opt_str(map, "activation_fn")?,
                };
                if activation.as_deref() == Some("topk") {
                    return Err(SaeError::Unsupported {
                        field: "activation_fn",
                        value: "topk".into(),
                        supported: "relu (standard), jumprelu",
                    });
                }
                architecture_str.as_deref().unwrap_or("standard").to_string()
            }
            CfgStyle::V6 => architecture_str.ok_or_else(|| SaeError::Config {
                field: "architecture".into(),
                reason: "missing; SAELens 6 configs name it (standard, jumprelu, …)".into(),
            })?,
        };
        let architecture = match architecture.as_str() {
            "standard" => Architecture::Standard,
            "jumprelu" => Architecture::JumpRelu,
            other => {
                return Err(SaeError::Unsupported { field: "architecture", value: other.into(), supported: "standard, jumprelu" });
            }
        };

        let apply_b_dec_to_input = match map.get("apply_b_dec_to_input") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(type_error("apply_b_dec_to_input", "true or false")),
        };
        let normalize = match map.get("normalize_activations") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Normalization::None,
            Some(Value::Bool(true)) => Normalization::ExpectedAverageOnlyIn,
            Some(Value::String(s)) => match s.as_str() {
                "none" => Normalization::None,
                "expected_average_only_in" => Normalization::ExpectedAverageOnlyIn,
                other => {
                    return Err(SaeError::Unsupported {
                        field: "normalize_activations",
                        value: other.into(),
                        supported: "none, expected_average_only_in (true/false in pre-6.0 configs)",
                    });
                }
            },
            Some(_) => return Err(type_error("normalize_activations", "a string or, before SAELens 6, a boolean")),
        };
        if let Some(reshape) = opt_str(map, "reshape_activations")?
            && reshape != "none"
        {
            return Err(SaeError::Unsupported { field: "reshape_activations", value: reshape, supported: "none" });
        }
        if let Some(true) = map.get("finetuning_scaling_factor").and_then(Value::as_bool) {
            return Err(SaeError::Unsupported { field: "finetuning_scaling_factor", value: "true".into(), supported: "false" });
        }
        let dtype = opt_str(map, "dtype")?.unwrap_or_else(|| "float32".into());
        const DTYPES: [&str; 8] =
            ["float32", "float64", "float16", "bfloat16", "torch.float32", "torch.float64", "torch.float16", "torch.bfloat16"];
        if !DTYPES.contains(&dtype.as_str()) {
            return Err(SaeError::Unsupported { field: "dtype", value: dtype, supported: "float32, float64, float16, bfloat16" });
        }
        Ok(SaeConfig {
            d_in,
            d_sae,
            architecture,
            apply_b_dec_to_input,
            normalize,
            input_scale: None,
            hook_name,
            hook_layer,
            model_name: lookup(&["model_name"])?,
            neuronpedia_id: lookup(&["neuronpedia_id"])?,
            dtype,
            style,
            sae_lens_version,
        })
    }

    /// Set the input scale, checked against what the cfg asks for. `subject` names the SAE in
    /// errors.
    pub fn with_input_scale(mut self, scale: Option<f64>, subject: &str) -> Result<SaeConfig, SaeError> {
        if let Some(s) = scale {
            if !(s.is_finite() && s > 0.0) {
                return Err(SaeError::BadInputScale { subject: subject.into(), scale: s });
            }
            if self.normalize == Normalization::None {
                return Err(SaeError::UnexpectedInputScale { subject: subject.into(), scale: s });
            }
        }
        self.input_scale = scale;
        Ok(self)
    }

    /// The scale the encoder multiplies its input by: 1 without normalisation, else the known
    /// scale ([`SaeError::MissingInputScale`] when there is none).
    pub fn effective_input_scale(&self, subject: &str) -> Result<f64, SaeError> {
        match (self.normalize, self.input_scale) {
            (Normalization::None, _) => Ok(1.0),
            (Normalization::ExpectedAverageOnlyIn, Some(s)) => Ok(s),
            (Normalization::ExpectedAverageOnlyIn, None) => {
                Err(SaeError::MissingInputScale { subject: subject.into(), normalize: self.normalize.as_str() })
            }
        }
    }
}

fn type_error(field: &str, expected: &str) -> SaeError {
    SaeError::Config { field: field.into(), reason: format!("expected {expected}") }
}

fn opt_str(map: &Map<String, Value>, key: &str) -> Result<Option<String>, SaeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(type_error(key, "a string")),
    }
}

fn opt_usize(map: &Map<String, Value>, key: &str) -> Result<Option<usize>, SaeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| type_error(key, &format!("a non-negative integer, got {v}"))),
    }
}

fn req_usize(map: &Map<String, Value>, key: &str) -> Result<usize, SaeError> {
    opt_usize(map, key)?.ok_or_else(|| SaeError::Config { field: key.into(), reason: "missing".into() })
}

/// The major version of `6.1.0`, `5.11.0`, `6.0.0-rc.0`.
fn major_version(version: &str) -> Option<u64> {
    version.trim().trim_start_matches('v').split('.').next()?.parse().ok()
}

/// `blocks.12.hook_resid_post` → 12.
pub fn layer_of_hook(hook_name: &str) -> Option<usize> {
    let rest = hook_name.split("blocks.").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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

/// A plan-time finding that does not stop a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaeWarning {
    /// The SAE was trained on another layer than the one it is applied to.
    LayerMismatch { hook_layer: usize, hook_name: Option<String>, tap_layer: usize },
    /// The cfg does not say which layer the SAE was trained on.
    UnknownLayer { tap_layer: usize },
    /// The SAE reads another point of the residual stream than the tap, where one of the two is a
    /// `hook_resid_pre` (`blocks.L.hook_resid_pre` is `blocks.(L−1).hook_resid_post`).
    PointMismatch { hook_name: String, tap: String, fix: String },
}

impl fmt::Display for SaeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaeWarning::LayerMismatch { hook_layer, hook_name, tap_layer } => {
                let hook = hook_name.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
                write!(
                    f,
                    "sae hook layer {hook_layer}{hook} differs from the tapped layer {tap_layer}: its features are read off \
                     a residual stream it was not trained on; tap layer {hook_layer} unless this is intended"
                )
            }
            SaeWarning::UnknownLayer { tap_layer } => {
                write!(f, "sae cfg.json names no hook layer (hook_name/hook_layer); cannot check it against the tapped layer {tap_layer}")
            }
            SaeWarning::PointMismatch { hook_name, tap, fix } => write!(
                f,
                "sae was trained on {hook_name} but the stage reads {tap}, another point of the residual stream: its features \
                 are read off activations it was not trained on; {fix} unless this is intended (the MOSAIC authors' \
                 reading, hidden_states[L] for the blocks.L.hook_resid_post SAE, is `hook: resid_pre` on purpose)"
            ),
        }
    }
}

/// Plan-time check of an SAE against the model it will read (no weights needed): `d_in` must
/// equal the model's hidden size, a needed input scale must be known, and a hook layer other than
/// the tapped one is a warning. `subject` names the SAE in errors. The tap is block `tap_layer`'s
/// output (`hook_resid_post`); [`check_against_tap`] for either point.
pub fn check_against_model(cfg: &SaeConfig, width: usize, tap_layer: usize, subject: &str) -> Result<Vec<SaeWarning>, SaeError> {
    check_against_tap(cfg, width, tap_layer, false, subject)
}

/// [`check_against_model`] for a tap at block `tap_layer`'s input (`tap_pre`, `hook_resid_pre`) or
/// output. Positions on the residual stream are compared, so `blocks.11.hook_resid_post` matches a
/// `resid_pre` tap of block 12.
pub fn check_against_tap(
    cfg: &SaeConfig,
    width: usize,
    tap_layer: usize,
    tap_pre: bool,
    subject: &str,
) -> Result<Vec<SaeWarning>, SaeError> {
    if cfg.d_in != width {
        return Err(SaeError::Width { d_in: cfg.d_in, width });
    }
    cfg.effective_input_scale(subject)?;
    let tap_position = if tap_pre { tap_layer } else { tap_layer + 1 };
    let tap_name = format!("blocks.{tap_layer}.hook_resid_{}", if tap_pre { "pre" } else { "post" });
    let sae_position = cfg.hook_name.as_deref().and_then(stream_position);
    Ok(match (sae_position, cfg.hook_layer) {
        (Some(position), Some(layer)) if position != tap_position => {
            let post = cfg.hook_name.as_deref().is_some_and(|h| h.ends_with("hook_resid_post"));
            if post && !tap_pre {
                vec![SaeWarning::LayerMismatch { hook_layer: layer, hook_name: cfg.hook_name.clone(), tap_layer }]
            } else {
                // the SAE's own hook, in the stage's terms
                let fix = format!("tap `layer: {layer}` with `hook: resid_{}`", if post { "post" } else { "pre" });
                vec![SaeWarning::PointMismatch { hook_name: cfg.hook_name.clone().unwrap_or_default(), tap: tap_name, fix }]
            }
        }
        (Some(_), _) => vec![],
        (None, Some(layer)) if layer != tap_layer => {
            vec![SaeWarning::LayerMismatch { hook_layer: layer, hook_name: cfg.hook_name.clone(), tap_layer }]
        }
        (None, Some(_)) => vec![],
        (None, None) => vec![SaeWarning::UnknownLayer { tap_layer }],
    })
}

/// Where a residual-stream hook reads, as the number of blocks applied before it:
/// `blocks.L.hook_resid_pre` → L, `blocks.L.hook_resid_post` → L + 1; other hooks → `None`.
pub fn stream_position(hook_name: &str) -> Option<usize> {
    let layer = layer_of_hook(hook_name)?;
    if hook_name.ends_with("hook_resid_pre") {
        Some(layer)
    } else if hook_name.ends_with("hook_resid_post") {
        Some(layer + 1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn pre6() -> &'static str {
        r#"{"d_in": 4, "d_sae": 3, "hook_point": "blocks.6.hook_resid_post", "hook_point_layer": 6,
            "activation_fn": "relu", "normalize_activations": false, "dtype": "torch.float32",
            "apply_b_dec_to_input": false, "model_name": "gemma-2b", "lr": 0.0004}"#
    }

    #[test]
    fn pre6_config() {
        let cfg = SaeConfig::from_json(pre6()).unwrap();
        assert_eq!(cfg.style, CfgStyle::Pre6);
        assert_eq!((cfg.d_in, cfg.d_sae), (4, 3));
        assert_eq!(cfg.hook_name.as_deref(), Some("blocks.6.hook_resid_post"));
        assert_eq!(cfg.hook_layer, Some(6));
        assert_eq!(cfg.architecture, Architecture::Standard);
        assert!(!cfg.apply_b_dec_to_input);
        assert_eq!(cfg.normalize, Normalization::None);
        assert_eq!(cfg.model_name.as_deref(), Some("gemma-2b"));
    }

    #[test]
    fn pre6_defaults_and_bool_normalisation() {
        let cfg =
            SaeConfig::from_json(r#"{"d_in": 4, "d_sae": 3, "hook_point": "blocks.12.hook_resid_post", "normalize_activations": true}"#)
                .unwrap();
        assert!(cfg.apply_b_dec_to_input, "pre-6.0 default is true");
        assert_eq!(cfg.normalize, Normalization::ExpectedAverageOnlyIn);
        assert_eq!(cfg.hook_layer, Some(12), "from the hook name");
        let err = cfg.effective_input_scale("local:x").unwrap_err().to_string();
        assert!(err.contains("release table") && err.contains("input_scale:"), "{err}");
    }

    #[test]
    fn v5_style_config() {
        let cfg = SaeConfig::from_json(
            r#"{"architecture": "standard", "d_in": 8, "d_sae": 16, "hook_name": "blocks.3.hook_resid_post",
                "hook_layer": 3, "activation_fn_str": "relu", "normalize_activations": "expected_average_only_in",
                "apply_b_dec_to_input": true, "sae_lens_version": "5.9.1", "neuronpedia_id": "x/3-res"}"#,
        )
        .unwrap();
        assert_eq!(cfg.style, CfgStyle::Pre6);
        assert_eq!(cfg.hook_layer, Some(3));
        assert_eq!(cfg.normalize, Normalization::ExpectedAverageOnlyIn);
        assert_eq!(cfg.neuronpedia_id.as_deref(), Some("x/3-res"));
    }

    #[test]
    fn v6_config_reads_metadata() {
        let cfg = SaeConfig::from_json(
            r#"{"d_in": 8, "d_sae": 16, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": true,
                "normalize_activations": "none", "reshape_activations": "none", "architecture": "jumprelu",
                "metadata": {"sae_lens_version": "6.5.0", "hook_name": "blocks.20.hook_resid_post", "model_name": "m"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.style, CfgStyle::V6);
        assert_eq!(cfg.architecture, Architecture::JumpRelu);
        assert_eq!(cfg.hook_layer, Some(20));
        assert_eq!(cfg.sae_lens_version.as_deref(), Some("6.5.0"));
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = SaeConfig::from_json(r#"{"d_sae": 3}"#).unwrap_err().to_string();
        assert_eq!(err, "sae cfg.json: d_in: missing");
        let err = SaeConfig::from_json(r#"{"d_in": 4, "d_sae": 3, "architecture": "gated"}"#).unwrap_err().to_string();
        assert_eq!(err, "sae cfg.json: architecture 'gated' is not supported; supported: standard, jumprelu");
        let err = SaeConfig::from_json(r#"{"d_in": 4, "d_sae": 3, "normalize_activations": "layer_norm"}"#).unwrap_err().to_string();
        assert!(err.starts_with("sae cfg.json: normalize_activations 'layer_norm' is not supported"), "{err}");
        let err = SaeConfig::from_json(r#"{"d_in": "4", "d_sae": 3}"#).unwrap_err().to_string();
        assert!(err.starts_with("sae cfg.json: d_in: expected a non-negative integer"), "{err}");
        let err = SaeConfig::from_json(r#"{"d_in": 4, "d_sae": 3, "metadata": {"sae_lens_version": "6.0.0"}}"#).unwrap_err().to_string();
        assert!(err.starts_with("sae cfg.json: architecture: missing"), "{err}");
    }

    #[test]
    fn input_scale_rules() {
        let plain = SaeConfig::from_json(pre6()).unwrap();
        assert!(matches!(plain.clone().with_input_scale(Some(0.5), "s"), Err(SaeError::UnexpectedInputScale { .. })));
        assert_eq!(plain.effective_input_scale("s").unwrap(), 1.0);
        let norm = SaeConfig::from_json(r#"{"d_in": 4, "d_sae": 3, "normalize_activations": true}"#).unwrap();
        assert!(matches!(norm.clone().with_input_scale(Some(-1.0), "s"), Err(SaeError::BadInputScale { .. })));
        assert_eq!(norm.with_input_scale(Some(0.25), "s").unwrap().effective_input_scale("s").unwrap(), 0.25);
    }

    #[test]
    fn taps_compare_stream_positions() {
        let post12 = SaeConfig::from_json(
            &pre6()
                .replace("blocks.6.hook_resid_post", "blocks.12.hook_resid_post")
                .replace("\"hook_point_layer\": 6", "\"hook_point_layer\": 12"),
        )
        .unwrap();
        assert_eq!(stream_position("blocks.12.hook_resid_post"), Some(13));
        assert_eq!(stream_position("blocks.12.hook_resid_pre"), Some(12));
        assert_eq!(stream_position("blocks.12.hook_mlp_out"), None);
        // the spec's reading: the output of block 12
        assert!(check_against_tap(&post12, 4, 12, false, "s").unwrap().is_empty());
        // the same stream, named from the next block's input
        assert!(check_against_tap(&post12, 4, 13, true, "s").unwrap().is_empty());
        // the MOSAIC authors' reading, hidden_states[12] = the input of block 12: warned, with the fix
        let w = check_against_tap(&post12, 4, 12, true, "s").unwrap();
        assert!(matches!(&w[..], [SaeWarning::PointMismatch { .. }]), "{w:?}");
        let text = w[0].to_string();
        assert!(text.starts_with("sae was trained on blocks.12.hook_resid_post but the stage reads blocks.12.hook_resid_pre"), "{text}");
        assert!(text.contains("tap `layer: 12` with `hook: resid_post`") && text.contains("MOSAIC"), "{text}");
        // a resid_pre SAE tapped at a block's output
        let pre5 = SaeConfig::from_json(
            &pre6()
                .replace("blocks.6.hook_resid_post", "blocks.5.hook_resid_pre")
                .replace("\"hook_point_layer\": 6", "\"hook_point_layer\": 5"),
        )
        .unwrap();
        assert!(check_against_tap(&pre5, 4, 4, false, "s").unwrap().is_empty());
        let w = check_against_tap(&pre5, 4, 5, false, "s").unwrap();
        assert!(w[0].to_string().contains("tap `layer: 5` with `hook: resid_pre`"), "{}", w[0]);
    }

    #[test]
    fn check_against_model_width_and_layer() {
        let cfg = SaeConfig::from_json(pre6()).unwrap();
        let err = check_against_model(&cfg, 2, 6, "s").unwrap_err().to_string();
        assert_eq!(
            err,
            "sae d_in 4 but the model's hidden size is 2: this SAE was trained on another model's residual stream; \
             pick an SAE whose d_in is 2"
        );
        assert_eq!(check_against_model(&cfg, 4, 6, "s").unwrap(), vec![]);
        let warnings = check_against_model(&cfg, 4, 10, "s").unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].to_string().starts_with("sae hook layer 6 (blocks.6.hook_resid_post) differs from the tapped layer 10"));
    }

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
