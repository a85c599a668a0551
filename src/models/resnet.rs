//! ResNet (transformers' `ResNetModel`, the `microsoft/resnet-50` layout) in candle: the pooled
//! features of the supervised-vision baseline, `pooler_output` flattened (`[B, hidden_sizes[-1]]`,
//! 2048 for ResNet-50).
//!
//! What transformers 5.24 (`modeling_resnet.py`) computes, and so what this does:
//!
//! - **Stem** (`embedder`): 7×7 convolution, stride 2, padding 3 → BatchNorm → `hidden_act`, then
//!   a 3×3 max pool, stride 2, padding 1 (padding never wins the max).
//! - **Stages** (`encoder.stages.{s}`): `depths[s]` layers; the first layer of each stage takes
//!   the stride — 2, except stage 0 where it is 1 unless `downsample_in_first_stage` — and the
//!   others stride 1 with `hidden_sizes[s]` channels in and out.
//! - **Bottleneck layer** (`layer_type: bottleneck`, ResNet-50): `layer.0` 1×1 to `out / 4`
//!   channels, `layer.1` 3×3, `layer.2` 1×1 to `out`. The stride sits on the **3×3** (`layer.1`,
//!   ResNet v1.5 as torchvision) unless `downsample_in_bottleneck`, which puts it on the first
//!   1×1 (`layer.0`, the original v1). `layer.0` and `layer.1` use ReLU whatever `hidden_act` says
//!   (transformers builds them with the `ResNetConvLayer` default), `layer.2` none; after adding
//!   the shortcut, `hidden_act`.
//! - **Basic layer** (`layer_type: basic`, ResNet-18/34): `layer.0` 3×3 with the stride (ReLU),
//!   `layer.1` 3×3 (no activation); after the shortcut, `hidden_act`.
//! - **Shortcut**: a 1×1 convolution with the layer's stride and a BatchNorm, present exactly when
//!   the channels change or the stride is not 1 (`in != out or stride != 1`); else identity.
//! - **Pooling**: adaptive average pool to 1×1, flattened — the mean over height and width.
//!
//! BatchNorm runs in eval mode, `y = (x − running_mean) / √(running_var + 1e-5) · weight + bias`,
//! and is folded into the preceding convolution at load, in f32, whatever the checkpoint's dtype:
//! `W' = W · weight / √(var + eps)` per output channel, bias `bias − mean · weight / √(var + eps)`.
//! The folded weights are then cast to the run's dtype (the `VarBuilder`'s); the pooling runs in
//! f32. candle's CPU convolution has no bf16 kernel, so on the CPU a bf16 run convolves in f32 on
//! the bf16-rounded weights and rounds each output to bf16 (what a GPU's bf16 convolution with
//! f32 accumulation gives).
//!
//! Tensor names: `resnet.` + the `ResNetModel` names for `ResNetForImageClassification`
//! (microsoft/resnet-50 on the hub), no prefix for a saved `ResNetModel`; [`ResNet::new`] finds
//! which from the stem's weight. The classifier head (`classifier.1.*`) and `num_batches_tracked`
//! are not read.
//!
//! Model code does no I/O: [`ResNetConfig::from_json`] takes the text of `config.json`,
//! [`ResNet::new`] a `VarBuilder`; `resnet_load.rs` reads a checkpoint folder.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::{Map, Value};

/// `nn.BatchNorm2d`'s default epsilon, which transformers' ResNet keeps.
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// The two ways checkpoints name the tensors: `ResNetForImageClassification` (`resnet.`) and
/// `ResNetModel` (none).
pub const PREFIXES: [&str; 2] = ["resnet.", ""];
/// The tensor whose presence decides the prefix.
const STEM_WEIGHT: &str = "embedder.embedder.convolution.weight";

#[derive(Debug, thiserror::Error)]
pub enum ResNetError {
    #[error("{what}: {key}: expected {expected}, got {got}")]
    Config { what: String, key: &'static str, expected: String, got: String },
    #[error("{what}: not valid JSON: {message}")]
    Json { what: String, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Weights { path: std::path::PathBuf, message: String },
    #[error(
        "no ResNet weights: neither {} is in the checkpoint; expected a transformers ResNetModel or ResNetForImageClassification \
         (e.g. microsoft/resnet-50)",
        PREFIXES.iter().map(|p| format!("{p}{STEM_WEIGHT}")).collect::<Vec<_>>().join(" nor ")
    )]
    NotResNet,
    #[error(
        "tensor {name} is missing from the checkpoint (expected for {because}); the download may be incomplete or config.json may not belong to these weights"
    )]
    MissingTensor { name: String, because: String },
    #[error("tensor {name} has shape {actual:?}, but config.json implies {expected:?} ({because}): the config and the weights disagree")]
    ShapeMismatch { name: String, expected: Vec<usize>, actual: Vec<usize>, because: String },
    #[error("resnet input: pixel values have shape {actual:?}, expected [batch, {channels}, height, width] (num_channels {channels})")]
    Input { actual: Vec<usize>, channels: usize },
    #[error("resnet computation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// `layer_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerType {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1 → 3×3 → 1×1 with a 4× channel reduction (ResNet-50 and deeper).
    Bottleneck,
}

/// `hidden_act`: the activation of the stem and after each residual sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `relu` (every microsoft/resnet-* checkpoint).
    Relu,
    /// `gelu`: transformers' exact (erf) GELU.
    Gelu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu_erf(),
        }
    }
}

/// `config.json` of a ResNet checkpoint, every missing key filled with `ResNetConfig`'s default
/// (ResNet-50's architecture).
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetConfig {
    pub num_channels: usize,
    pub embedding_size: usize,
    pub hidden_sizes: Vec<usize>,
    pub depths: Vec<usize>,
    pub layer_type: LayerType,
    pub hidden_act: Activation,
    pub downsample_in_first_stage: bool,
    pub downsample_in_bottleneck: bool,
}

impl Default for ResNetConfig {
    /// transformers' `ResNetConfig()` (ResNet-50).
    fn default() -> Self {
        ResNetConfig {
            num_channels: 3,
            embedding_size: 64,
            hidden_sizes: vec![256, 512, 1024, 2048],
            depths: vec![3, 4, 6, 3],
            layer_type: LayerType::Bottleneck,
            hidden_act: Activation::Relu,
            downsample_in_first_stage: false,
            downsample_in_bottleneck: false,
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
}

impl ResNetConfig {
    /// Parse `config.json` (`what` names it in errors).
    pub fn from_json(text: &str, what: &str) -> Result<ResNetConfig, ResNetError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ResNetError::Json { what: what.into(), message: e.to_string() })?;
        let Value::Object(map) = &value else {
            return Err(ResNetError::Config {
                what: what.into(),
                key: "(top level)",
                expected: "a JSON object".into(),
                got: short(&value),
            });
        };
        ResNetConfig::from_map(map, what)
    }

    /// [`ResNetConfig::from_json`] on a parsed object.
    pub fn from_map(map: &Map<String, Value>, what: &str) -> Result<ResNetConfig, ResNetError> {
        let err = |key: &'static str, expected: &str, got: &Value| ResNetError::Config {
            what: what.into(),
            key,
            expected: expected.into(),
            got: short(got),
        };
        let get = |key: &str| map.get(key).filter(|v| !v.is_null());
        if let Some(v) = get("model_type")
            && v.as_str() != Some("resnet")
        {
            return Err(err("model_type", "\"resnet\" (a transformers ResNet checkpoint such as microsoft/resnet-50)", v));
        }
        let d = ResNetConfig::default();
        let count = |key: &'static str, default: usize| -> Result<usize, ResNetError> {
            match get(key) {
                None => Ok(default),
                Some(v) => v.as_u64().filter(|&n| n > 0).map(|n| n as usize).ok_or_else(|| err(key, "a positive integer", v)),
            }
        };
        let counts = |key: &'static str, default: &[usize]| -> Result<Vec<usize>, ResNetError> {
            match get(key) {
                None => Ok(default.to_vec()),
                Some(v) => v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .and_then(|a| a.iter().map(|x| x.as_u64().filter(|&n| n > 0).map(|n| n as usize)).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| err(key, "a non-empty list of positive integers", v)),
            }
        };
        let flag = |key: &'static str, default: bool| -> Result<bool, ResNetError> {
            match get(key) {
                None => Ok(default),
                Some(v) => v.as_bool().ok_or_else(|| err(key, "true or false", v)),
            }
        };
        let layer_type = match get("layer_type") {
            None => d.layer_type,
            Some(v) => match v.as_str() {
                Some("bottleneck") => LayerType::Bottleneck,
                Some("basic") => LayerType::Basic,
                _ => return Err(err("layer_type", "\"basic\" or \"bottleneck\"", v)),
            },
        };
        let hidden_act = match get("hidden_act") {
            None => d.hidden_act,
            Some(v) => match v.as_str() {
                Some("relu") => Activation::Relu,
                Some("gelu") => Activation::Gelu,
                _ => return Err(err("hidden_act", "\"relu\" or \"gelu\" (the activations saeflow's ResNet implements)", v)),
            },
        };
        let cfg = ResNetConfig {
            num_channels: count("num_channels", d.num_channels)?,
            embedding_size: count("embedding_size", d.embedding_size)?,
            hidden_sizes: counts("hidden_sizes", &d.hidden_sizes)?,
            depths: counts("depths", &d.depths)?,
            layer_type,
            hidden_act,
            downsample_in_first_stage: flag("downsample_in_first_stage", d.downsample_in_first_stage)?,
            downsample_in_bottleneck: flag("downsample_in_bottleneck", d.downsample_in_bottleneck)?,
        };
        if cfg.hidden_sizes.len() != cfg.depths.len() {
            return Err(ResNetError::Config {
                what: what.into(),
                key: "depths",
                expected: format!("one depth per stage: {} (as many as hidden_sizes)", cfg.hidden_sizes.len()),
                got: format!("{} ({:?})", cfg.depths.len(), cfg.depths),
            });
        }
        if cfg.layer_type == LayerType::Bottleneck
            && let Some(&h) = cfg.hidden_sizes.iter().find(|&&h| h < 4)
        {
            return Err(ResNetError::Config {
                what: what.into(),
                key: "hidden_sizes",
                expected: "sizes of at least 4 for bottleneck layers (they reduce channels 4×)".into(),
                got: h.to_string(),
            });
        }
        Ok(cfg)
    }

    /// The pooled feature width: `hidden_sizes[-1]` (2048 for ResNet-50).
    pub fn feature_dim(&self) -> usize {
        self.hidden_sizes.last().copied().unwrap_or(self.embedding_size)
    }

    /// The stride of the first layer of stage `s`.
    pub fn stage_stride(&self, s: usize) -> usize {
        if s > 0 || self.downsample_in_first_stage { 2 } else { 1 }
    }
}

/// A convolution with its BatchNorm folded in: `conv(x, W') + b'`.
struct ConvBn {
    weight: Tensor,
    /// `weight` widened to f32 where candle has no convolution kernel for the run's dtype (bf16
    /// on the CPU): the convolution then runs in f32 on the same rounded weights and its output
    /// is rounded back, as a GPU's bf16 convolution accumulates in f32.
    widened: Option<(Tensor, Tensor)>,
    /// `[1, out, 1, 1]`.
    bias: Tensor,
    stride: usize,
    padding: usize,
}

/// Reads tensors by full name (prefix included), in f32, checking presence and shape.
struct Reader<'a> {
    vb: &'a VarBuilder<'a>,
    prefix: &'static str,
}

impl Reader<'_> {
    fn get(&self, name: &str, shape: &[usize], because: &str) -> Result<Tensor, ResNetError> {
        let full = format!("{}{name}", self.prefix);
        if !self.vb.contains_tensor(&full) {
            return Err(ResNetError::MissingTensor { name: full, because: because.into() });
        }
        let t = self.vb.get_unchecked_dtype(&full, DType::F32)?;
        if t.dims() != shape {
            return Err(ResNetError::ShapeMismatch {
                name: full,
                expected: shape.to_vec(),
                actual: t.dims().to_vec(),
                because: because.into(),
            });
        }
        Ok(t)
    }

    /// `{at}.convolution.weight` and `{at}.normalization.*`, folded, in `dtype`.
    fn conv_bn(
        &self,
        at: &str,
        (c_in, c_out, k): (usize, usize, usize),
        stride: usize,
        because: &str,
        dtype: DType,
    ) -> Result<ConvBn, ResNetError> {
        let w = self.get(&format!("{at}.convolution.weight"), &[c_out, c_in, k, k], because)?;
        let bn = |n: &str| self.get(&format!("{at}.normalization.{n}"), &[c_out], because);
        let (gamma, beta, mean, var) = (bn("weight")?, bn("bias")?, bn("running_mean")?, bn("running_var")?);
        let scale = gamma.div(&(var + BATCH_NORM_EPS)?.sqrt()?)?;
        let weight = w.broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?;
        let bias = (beta - mean.mul(&scale)?)?;
        let weight = weight.to_dtype(dtype)?.contiguous()?;
        let widened = match (dtype, weight.device()) {
            (DType::BF16, Device::Cpu) => {
                Some((weight.to_dtype(DType::F32)?, bias.reshape((1, c_out, 1, 1))?.to_dtype(dtype)?.to_dtype(DType::F32)?))
            }
            _ => None,
        };
        Ok(ConvBn { weight, widened, bias: bias.reshape((1, c_out, 1, 1))?.to_dtype(dtype)?, stride, padding: k / 2 })
    }
}

impl ConvBn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.widened {
            Some((w, b)) => x.to_dtype(DType::F32)?.conv2d(w, self.padding, self.stride, 1, 1)?.broadcast_add(b)?.to_dtype(x.dtype()),
            None => x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?.broadcast_add(&self.bias),
        }
    }
}

/// One residual layer.
struct Layer {
    shortcut: Option<ConvBn>,
    /// The main path; each but the last followed by ReLU.
    convs: Vec<ConvBn>,
}

impl Layer {
    fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        let residual = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        act.apply(&(h + residual)?)
    }
}

/// ResNet up to its pooled features.
pub struct ResNet {
    config: ResNetConfig,
    prefix: &'static str,
    stem: ConvBn,
    stages: Vec<Vec<Layer>>,
    dtype: DType,
    device: Device,
}

impl ResNet {
    /// Build from a `VarBuilder` over a checkpoint; the run's dtype and device are the
    /// `VarBuilder`'s. Every tensor is checked against `cfg` (the error names it).
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<ResNet, ResNetError> {
        let prefix = PREFIXES.into_iter().find(|p| vb.contains_tensor(&format!("{p}{STEM_WEIGHT}"))).ok_or(ResNetError::NotResNet)?;
        let dtype = vb.dtype();
        let r = Reader { vb: &vb, prefix };
        let stem = r.conv_bn(
            "embedder.embedder",
            (cfg.num_channels, cfg.embedding_size, 7),
            2,
            "the stem: embedding_size, num_channels, 7×7",
            dtype,
        )?;
        let mut stages = Vec::with_capacity(cfg.depths.len());
        let mut c_in = cfg.embedding_size;
        for (s, (&c_out, &depth)) in cfg.hidden_sizes.iter().zip(&cfg.depths).enumerate() {
            let mut layers = Vec::with_capacity(depth);
            for l in 0..depth {
                let (from, stride) = if l == 0 { (c_in, cfg.stage_stride(s)) } else { (c_out, 1) };
                let at = format!("encoder.stages.{s}.layers.{l}");
                let because = |part: &str| {
                    let input = if l > 0 {
                        format!("hidden_sizes[{s}]")
                    } else if s == 0 {
                        "embedding_size".to_string()
                    } else {
                        format!("hidden_sizes[{}]", s - 1)
                    };
                    format!("stage {s} layer {l} {part}: {input} → hidden_sizes[{s}], layer_type {:?}", cfg.layer_type)
                };
                let shortcut = if from != c_out || stride != 1 {
                    Some(r.conv_bn(&format!("{at}.shortcut"), (from, c_out, 1), stride, &because("shortcut"), dtype)?)
                } else {
                    None
                };
                let convs = match cfg.layer_type {
                    LayerType::Bottleneck => {
                        let mid = c_out / 4;
                        let (s0, s1) = if cfg.downsample_in_bottleneck { (stride, 1) } else { (1, stride) };
                        vec![
                            r.conv_bn(&format!("{at}.layer.0"), (from, mid, 1), s0, &because("layer.0 (1×1, to hidden_sizes / 4)"), dtype)?,
                            r.conv_bn(&format!("{at}.layer.1"), (mid, mid, 3), s1, &because("layer.1 (3×3)"), dtype)?,
                            r.conv_bn(&format!("{at}.layer.2"), (mid, c_out, 1), 1, &because("layer.2 (1×1)"), dtype)?,
                        ]
                    }
                    LayerType::Basic => vec![
                        r.conv_bn(&format!("{at}.layer.0"), (from, c_out, 3), stride, &because("layer.0 (3×3)"), dtype)?,
                        r.conv_bn(&format!("{at}.layer.1"), (c_out, c_out, 3), 1, &because("layer.1 (3×3)"), dtype)?,
                    ],
                };
                layers.push(Layer { shortcut, convs });
            }
            stages.push(layers);
            c_in = c_out;
        }
        Ok(ResNet { config: cfg.clone(), prefix, stem, stages, dtype, device: vb.device().clone() })
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// The tensor-name prefix found in the checkpoint: `resnet.` or empty.
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// The pooled feature width (`hidden_sizes[-1]`).
    pub fn feature_dim(&self) -> usize {
        self.config.feature_dim()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `last_hidden_state`: `[B, hidden_sizes[-1], h, w]` in the run's dtype, from pixel values
    /// `[B, num_channels, H, W]` (any float dtype; converted).
    pub fn last_hidden_state(&self, pixels: &Tensor) -> Result<Tensor, ResNetError> {
        match pixels.dims() {
            [_, c, _, _] if *c == self.config.num_channels => {}
            other => return Err(ResNetError::Input { actual: other.to_vec(), channels: self.config.num_channels }),
        }
        let x = pixels.to_dtype(self.dtype)?;
        let x = self.config.hidden_act.apply(&self.stem.forward(&x)?)?;
        let mut x = max_pool_3x3_s2_p1(&x)?;
        for stage in &self.stages {
            for layer in stage {
                x = layer.forward(&x, self.config.hidden_act)?;
            }
        }
        Ok(x)
    }

    /// The pooled features, `pooler_output` flattened: `[B, hidden_sizes[-1]]`, f32.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, ResNetError> {
        let h = self.last_hidden_state(pixels)?;
        Ok(h.to_dtype(DType::F32)?.flatten_from(2)?.mean(D::Minus1)?)
    }
}

/// `nn.MaxPool2d(kernel_size=3, stride=2, padding=1)`: padded with −∞, which never wins (every
/// window holds a real value).
fn max_pool_3x3_s2_p1(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let rows = Tensor::full(f32::NEG_INFINITY, (b, c, 1, w), x.device())?.to_dtype(x.dtype())?;
    let x = Tensor::cat(&[&rows, x, &rows], 2)?;
    let cols = Tensor::full(f32::NEG_INFINITY, (b, c, h + 2, 1), x.device())?.to_dtype(x.dtype())?;
    let x = Tensor::cat(&[&cols, &x, &cols], 3)?;
    x.max_pool2d_with_stride(3, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_resnet_50() {
        let cfg = ResNetConfig::from_json(r#"{"model_type": "resnet"}"#, "config.json").unwrap();
        assert_eq!(cfg, ResNetConfig::default());
        assert_eq!(cfg.feature_dim(), 2048);
        assert_eq!((cfg.stage_stride(0), cfg.stage_stride(1)), (1, 2));
    }

    #[test]
    fn config_mistakes_name_the_key() {
        let err = |text: &str| ResNetConfig::from_json(text, "config.json").unwrap_err().to_string();
        assert_eq!(
            err(r#"{"layer_type": "preactivation"}"#),
            "config.json: layer_type: expected \"basic\" or \"bottleneck\", got \"preactivation\""
        );
        assert!(err(r#"{"hidden_act": "swish"}"#).starts_with("config.json: hidden_act: expected \"relu\" or \"gelu\""));
        assert!(err(r#"{"model_type": "llava"}"#).contains("model_type: expected \"resnet\""));
        assert_eq!(
            err(r#"{"depths": [1, 2]}"#),
            "config.json: depths: expected one depth per stage: 4 (as many as hidden_sizes), got 2 ([1, 2])"
        );
        assert!(err(r#"{"hidden_sizes": []}"#).contains("hidden_sizes: expected a non-empty list of positive integers, got []"));
        assert!(err(r#"{"downsample_in_bottleneck": 1}"#).contains("downsample_in_bottleneck: expected true or false, got 1"));
    }

    #[test]
    fn max_pool_pads_with_minus_infinity() {
        // all-negative input: zero padding would give 0 at the borders
        let x = Tensor::from_vec((0..25).map(|i| -(i as f32) - 1.0).collect::<Vec<_>>(), (1, 1, 5, 5), &Device::Cpu).unwrap();
        let y = max_pool_3x3_s2_p1(&x).unwrap();
        assert_eq!(y.dims(), [1, 1, 3, 3]);
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [-1.0, -2.0, -4.0, -6.0, -7.0, -9.0, -16.0, -17.0, -19.0]);
    }
}
