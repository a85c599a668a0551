//! LLaVA-Gemma's `config.json`, with every key a 2024 checkpoint leaves out filled as transformers fills it.
//!
//! Checkpoints of 2024 (`Intel/llava-gemma-2b` among them) store their sub-configs diff-only: a key
//! equal to the sub-config class's default is absent. transformers builds a sub-config dict with the
//! *class* defaults (`CLIPVisionConfig`, `GemmaConfig`), not with the LLaVA defaults it would use when
//! the whole sub-config is missing — so do we. Each default used, and each legacy spelling mapped,
//! is recorded in [`LlavaConfig::notes`] so a run can say what it assumed.

use serde_json::{Map, Value};

use super::LlavaError;

/// An activation function, by the name transformers' `ACT2FN` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    GeluExact,
    /// `gelu_pytorch_tanh` / `gelu_new`: the tanh approximation.
    GeluTanh,
    /// `quick_gelu`: `x * sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    Relu,
    Silu,
}

impl Activation {
    /// The activation transformers' `ACT2FN[name]` is.
    pub fn from_hf_name(name: &str) -> Option<Activation> {
        Some(match name {
            "gelu" => Activation::GeluExact,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "quick_gelu" => Activation::QuickGelu,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return None,
        })
    }

    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::GeluExact => "gelu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
            Activation::QuickGelu => "quick_gelu",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
        }
    }

    pub fn forward(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::GeluExact => x.gelu_erf(),
            Activation::GeluTanh => super::ops::gelu_tanh(x),
            Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

/// Which vision tokens LLaVA hands to the projector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectStrategy {
    /// `default`: the patch tokens (CLS dropped).
    Default,
    /// `full`: CLS and patches.
    Full,
}

/// `CLIPVisionConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl ClipVisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Patches per side (`image_size / patch_size`).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patch tokens (CLS excluded).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
}

/// `GemmaConfig` (Gemma-1).
#[derive(Clone, Debug, PartialEq)]
pub struct GemmaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub hidden_act: Activation,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub attention_bias: bool,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
}

/// `LlavaConfig` with a CLIP vision tower and a Gemma language model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlavaConfig {
    pub vision: ClipVisionConfig,
    pub text: GemmaConfig,
    pub image_token_index: u32,
    pub projector_hidden_act: Activation,
    pub multimodal_projector_bias: bool,
    /// As written (e.g. -2); see [`LlavaConfig::vision_hidden_state_index`].
    pub vision_feature_layer: i64,
    pub vision_feature_select_strategy: SelectStrategy,
    pub tie_word_embeddings: bool,
    /// The dtype the checkpoint says it was saved in (`torch_dtype` or `dtype`), if it says.
    pub saved_dtype: Option<String>,
    /// Defaults filled in and legacy spellings mapped, in words, in a fixed order.
    pub notes: Vec<String>,
}

impl LlavaConfig {
    /// Parse `config.json` text (`what` names the file in errors).
    pub fn from_json(text: &str, what: &str) -> Result<LlavaConfig, LlavaError> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| LlavaError::Config { what: what.to_string(), message: format!("not valid JSON: {e}") })?;
        let root = root
            .as_object()
            .ok_or_else(|| LlavaError::Config { what: what.to_string(), message: "expected a JSON object at the top level".into() })?;
        let mut p = Parser { what, notes: Vec::new() };
        let model_type = p.str_or(root, "", "model_type", "llava")?;
        if model_type != "llava" {
            return Err(p.err(format!(
                "model_type is {model_type:?}, expected \"llava\" (LlavaForConditionalGeneration); saeflow runs LLaVA-1.5-style \
                 checkpoints only"
            )));
        }
        let vision = p.vision(root.get("vision_config"))?;
        let text = p.text(root.get("text_config"))?;
        let image_token_index = p.usize_or(root, "", "image_token_index", 32000)? as u32;
        let projector_hidden_act = p.activation(root, "", "projector_hidden_act", "gelu")?;
        let multimodal_projector_bias = p.bool_or(root, "", "multimodal_projector_bias", true)?;
        let vision_feature_layer = match root.get("vision_feature_layer") {
            None => {
                p.default("vision_feature_layer", "-2");
                -2
            }
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(-2),
            Some(other) => {
                return Err(p.err(format!("vision_feature_layer is {other}, expected one integer (a list of layers is not supported)")));
            }
        };
        let vision_feature_select_strategy = match p.str_or(root, "", "vision_feature_select_strategy", "default")?.as_str() {
            "default" => SelectStrategy::Default,
            "full" => SelectStrategy::Full,
            other => {
                return Err(p.err(format!(
                    "vision_feature_select_strategy is {other:?}, expected \"default\" (patches only) or \"full\" (CLS and patches)"
                )));
            }
        };
        // LlavaConfig forwards a text config's tie_word_embeddings (transformers' "ugly workaround").
        let tie_word_embeddings = p.bool_or(root, "", "tie_word_embeddings", false)? || text.tie_word_embeddings;
        let saved_dtype = root.get("torch_dtype").or_else(|| root.get("dtype")).and_then(Value::as_str).map(str::to_string);
        let cfg = LlavaConfig {
            vision,
            text,
            image_token_index,
            projector_hidden_act,
            multimodal_projector_bias,
            vision_feature_layer,
            vision_feature_select_strategy,
            tie_word_embeddings,
            saved_dtype,
            notes: p.notes,
        };
        cfg.vision_hidden_state_index().map_err(|m| LlavaError::Config { what: what.to_string(), message: m })?;
        Ok(cfg)
    }

    /// `vision_feature_layer` as an index into CLIP's `hidden_states` tuple (0 = embeddings after
    /// `pre_layrnorm`, i = after encoder layer i-1); -2 on a 24-layer tower is 23.
    pub fn vision_hidden_state_index(&self) -> Result<usize, String> {
        let n = self.vision.num_hidden_layers as i64 + 1;
        let l = self.vision_feature_layer;
        let index = if l < 0 { n + l } else { l };
        if index < 0 || index >= n {
            return Err(format!("vision_feature_layer {l} is outside the vision tower's {} hidden states (-{n}..{})", n, n - 1));
        }
        Ok(index as usize)
    }

    /// How many image tokens one `<image>` becomes in the prompt.
    pub fn image_tokens(&self) -> usize {
        self.vision.num_patches()
            + match self.vision_feature_select_strategy {
                SelectStrategy::Default => 0,
                SelectStrategy::Full => 1,
            }
    }
}

struct Parser<'a> {
    what: &'a str,
    notes: Vec<String>,
}

impl Parser<'_> {
    fn err(&self, message: String) -> LlavaError {
        LlavaError::Config { what: self.what.to_string(), message }
    }

    fn default(&mut self, key: &str, value: &str) {
        self.notes.push(format!("{key} not in the checkpoint's config: using transformers' default {value}"));
    }

    fn path(prefix: &str, key: &str) -> String {
        if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
    }

    fn usize_or(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, default: usize) -> Result<usize, LlavaError> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                self.default(&Self::path(prefix, key), &default.to_string());
                Ok(default)
            }
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.err(format!("{} is {v}, expected a non-negative integer", Self::path(prefix, key)))),
        }
    }

    fn f64_or(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, default: f64) -> Result<f64, LlavaError> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                self.default(&Self::path(prefix, key), &default.to_string());
                Ok(default)
            }
            Some(v) => v.as_f64().ok_or_else(|| self.err(format!("{} is {v}, expected a number", Self::path(prefix, key)))),
        }
    }

    fn bool_or(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, default: bool) -> Result<bool, LlavaError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(format!("{} is {v}, expected true or false", Self::path(prefix, key)))),
        }
    }

    fn str_or(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, default: &str) -> Result<String, LlavaError> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                self.default(&Self::path(prefix, key), &format!("{default:?}"));
                Ok(default.to_string())
            }
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.err(format!("{} is {v}, expected a string", Self::path(prefix, key)))),
        }
    }

    fn activation(&mut self, obj: &Map<String, Value>, prefix: &str, key: &str, default: &str) -> Result<Activation, LlavaError> {
        let name = self.str_or(obj, prefix, key, default)?;
        Activation::from_hf_name(&name).ok_or_else(|| {
            self.err(format!(
                "{} is {name:?}, expected one of gelu, gelu_pytorch_tanh, gelu_new, quick_gelu, relu, silu",
                Self::path(prefix, key)
            ))
        })
    }

    fn sub<'v>(&self, value: Option<&'v Value>, key: &str) -> Result<Option<&'v Map<String, Value>>, LlavaError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.err(format!("{key} is {v}, expected an object"))),
        }
    }

    fn vision(&mut self, value: Option<&Value>) -> Result<ClipVisionConfig, LlavaError> {
        const P: &str = "vision_config";
        let obj = match self.sub(value, P)? {
            Some(m) => m,
            None => {
                // transformers' LlavaConfig default vision tower (CLIP ViT-L/14-336).
                self.notes.push("vision_config missing: using LLaVA's default CLIP ViT-L/14-336 tower".into());
                return Ok(ClipVisionConfig {
                    hidden_size: 1024,
                    intermediate_size: 4096,
                    num_hidden_layers: 24,
                    num_attention_heads: 16,
                    num_channels: 3,
                    image_size: 336,
                    patch_size: 14,
                    hidden_act: Activation::QuickGelu,
                    layer_norm_eps: 1e-5,
                });
            }
        };
        let model_type = obj.get("model_type").and_then(Value::as_str).unwrap_or("clip_vision_model");
        if model_type != "clip_vision_model" {
            return Err(self.err(format!(
                "{P}.model_type is {model_type:?}, expected \"clip_vision_model\" (saeflow implements the CLIP vision tower)"
            )));
        }
        // CLIPVisionConfig's class defaults.
        let cfg = ClipVisionConfig {
            hidden_size: self.usize_or(obj, P, "hidden_size", 768)?,
            intermediate_size: self.usize_or(obj, P, "intermediate_size", 3072)?,
            num_hidden_layers: self.usize_or(obj, P, "num_hidden_layers", 12)?,
            num_attention_heads: self.usize_or(obj, P, "num_attention_heads", 12)?,
            num_channels: self.usize_or(obj, P, "num_channels", 3)?,
            image_size: self.usize_or(obj, P, "image_size", 224)?,
            patch_size: self.usize_or(obj, P, "patch_size", 32)?,
            hidden_act: self.activation(obj, P, "hidden_act", "quick_gelu")?,
            layer_norm_eps: self.f64_or(obj, P, "layer_norm_eps", 1e-5)?,
        };
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(self
                .err(format!("{P}.hidden_size {} is not a multiple of num_attention_heads {}", cfg.hidden_size, cfg.num_attention_heads)));
        }
        if cfg.patch_size == 0 || !cfg.image_size.is_multiple_of(cfg.patch_size) {
            return Err(self.err(format!("{P}.image_size {} is not a multiple of patch_size {}", cfg.image_size, cfg.patch_size)));
        }
        Ok(cfg)
    }

    fn text(&mut self, value: Option<&Value>) -> Result<GemmaConfig, LlavaError> {
        const P: &str = "text_config";
        let obj = self.sub(value, P)?.ok_or_else(|| {
            self.err(format!("{P} missing: transformers would build a Llama language model; saeflow runs Gemma (model_type \"gemma\")"))
        })?;
        // A dict without model_type becomes LLaVA's default text model, Llama.
        let model_type = obj.get("model_type").and_then(Value::as_str).unwrap_or("llama");
        if model_type != "gemma" {
            return Err(self.err(format!(
                "{P}.model_type is {model_type:?}, expected \"gemma\" (saeflow implements Gemma-1 as in Intel/llava-gemma-2b)"
            )));
        }
        // GemmaConfig's class defaults (the 7B model's dimensions, as transformers has them).
        let hidden_size = self.usize_or(obj, P, "hidden_size", 3072)?;
        let num_attention_heads = self.usize_or(obj, P, "num_attention_heads", 16)?;
        // transformers ≤ 4.4x read `hidden_activation` first; both spellings of the legacy
        // "gelu" mean the tanh approximation (GemmaConfig maps it, with a warning).
        let (act_key, act_name) = match obj.get("hidden_activation").and_then(Value::as_str) {
            Some(name) => ("hidden_activation", name.to_string()),
            None => ("hidden_act", self.str_or(obj, P, "hidden_act", "gelu_pytorch_tanh")?),
        };
        let hidden_act = if act_name == "gelu" {
            self.notes.push(format!(
                "{P}.{act_key} \"gelu\" is the legacy spelling of the tanh approximation: using gelu_pytorch_tanh, as transformers does"
            ));
            Activation::GeluTanh
        } else {
            Activation::from_hf_name(&act_name)
                .ok_or_else(|| self.err(format!("{P}.{act_key} is {act_name:?}, expected gelu_pytorch_tanh (or another ACT2FN name)")))?
        };
        let rope_theta = match (obj.get("rope_theta"), obj.get("rope_parameters").and_then(Value::as_object)) {
            (Some(v), _) if !v.is_null() => v.as_f64().ok_or_else(|| self.err(format!("{P}.rope_theta is {v}, expected a number")))?,
            (_, Some(rp)) => {
                let kind = rp.get("rope_type").and_then(Value::as_str).unwrap_or("default");
                if kind != "default" {
                    return Err(self.err(format!("{P}.rope_parameters.rope_type is {kind:?}, expected \"default\"")));
                }
                self.f64_or(rp, "text_config.rope_parameters", "rope_theta", 10000.0)?
            }
            _ => self.f64_or(obj, P, "rope_theta", 10000.0)?,
        };
        if let Some(scaling) = obj.get("rope_scaling").filter(|v| !v.is_null()) {
            return Err(self.err(format!("{P}.rope_scaling is {scaling}, expected null (Gemma-1 uses plain RoPE)")));
        }
        let cfg = GemmaConfig {
            vocab_size: self.usize_or(obj, P, "vocab_size", 256000)?,
            hidden_size,
            intermediate_size: self.usize_or(obj, P, "intermediate_size", 24576)?,
            num_hidden_layers: self.usize_or(obj, P, "num_hidden_layers", 28)?,
            num_attention_heads,
            num_key_value_heads: self.usize_or(obj, P, "num_key_value_heads", 16)?,
            head_dim: self.usize_or(obj, P, "head_dim", 256)?,
            hidden_act,
            rms_norm_eps: self.f64_or(obj, P, "rms_norm_eps", 1e-6)?,
            rope_theta,
            attention_bias: self.bool_or(obj, P, "attention_bias", false)?,
            tie_word_embeddings: self.bool_or(obj, P, "tie_word_embeddings", true)?,
            bos_token_id: match obj.get("bos_token_id") {
                None => Some(2),
                Some(v) => v.as_u64().map(|n| n as u32),
            },
        };
        if cfg.num_key_value_heads == 0 || !cfg.num_attention_heads.is_multiple_of(cfg.num_key_value_heads) {
            return Err(self.err(format!(
                "{P}.num_attention_heads {} is not a multiple of num_key_value_heads {}",
                cfg.num_attention_heads, cfg.num_key_value_heads
            )));
        }
        if !cfg.head_dim.is_multiple_of(2) {
            return Err(self.err(format!("{P}.head_dim {} is odd; rotary embeddings need an even head_dim", cfg.head_dim)));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config of Intel/llava-gemma-2b as the hub has it (diff-only sub-configs).
    const INTEL: &str = r#"{
      "architectures": ["LlavaForConditionalGeneration"],
      "ignore_index": -100,
      "image_token_index": 256000,
      "model_type": "llava",
      "pad_token_id": 0,
      "projector_hidden_act": "gelu",
      "text_config": {
        "_name_or_path": "google/gemma-2b-it",
        "architectures": ["GemmaForCausalLM"],
        "hidden_act": "gelu",
        "hidden_size": 2048,
        "intermediate_size": 16384,
        "model_type": "gemma",
        "num_hidden_layers": 18,
        "num_key_value_heads": 1,
        "num_attention_heads": 8,
        "torch_dtype": "bfloat16",
        "vocab_size": 256064
      },
      "torch_dtype": "float32",
      "transformers_version": "4.39.0.dev0",
      "vision_config": {
        "hidden_size": 1024,
        "image_size": 336,
        "intermediate_size": 4096,
        "model_type": "clip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "patch_size": 14,
        "projection_dim": 768
      },
      "vision_feature_layer": -2,
      "vision_feature_select_strategy": "default"
    }"#;

    #[test]
    fn the_real_checkpoint_config_fills_defaults_as_transformers() {
        let cfg = LlavaConfig::from_json(INTEL, "config.json").unwrap();
        assert_eq!(cfg.text.hidden_act, Activation::GeluTanh);
        assert_eq!(cfg.text.head_dim, 256);
        assert_eq!(cfg.text.rms_norm_eps, 1e-6);
        assert_eq!(cfg.text.rope_theta, 10000.0);
        assert_eq!(cfg.vision.hidden_act, Activation::QuickGelu);
        assert_eq!(cfg.vision.layer_norm_eps, 1e-5);
        assert_eq!(cfg.vision.num_patches(), 576);
        assert_eq!(cfg.image_tokens(), 576);
        assert_eq!(cfg.vision_hidden_state_index().unwrap(), 23);
        assert_eq!(cfg.projector_hidden_act, Activation::GeluExact);
        assert!(cfg.tie_word_embeddings, "forwarded from the text config's default");
        assert!(cfg.notes.iter().any(|n| n.contains("legacy spelling")), "{:?}", cfg.notes);
        assert!(cfg.notes.iter().any(|n| n.contains("vision_config.hidden_act")), "{:?}", cfg.notes);
    }

    #[test]
    fn unsupported_models_are_named() {
        let llama = INTEL.replace(r#""model_type": "gemma","#, "");
        let err = LlavaConfig::from_json(&llama, "config.json").unwrap_err().to_string();
        assert!(err.contains("text_config.model_type is \"llama\""), "{err}");
        let bad_layer = INTEL.replace(r#""vision_feature_layer": -2"#, r#""vision_feature_layer": -30"#);
        let err = LlavaConfig::from_json(&bad_layer, "config.json").unwrap_err().to_string();
        assert!(err.contains("vision_feature_layer -30"), "{err}");
        let act = INTEL.replace(r#""hidden_act": "gelu""#, r#""hidden_act": "swiglu""#);
        let err = LlavaConfig::from_json(&act, "config.json").unwrap_err().to_string();
        assert!(err.contains("text_config.hidden_act is \"swiglu\""), "{err}");
    }

    #[test]
    fn rope_parameters_of_transformers_5_are_read() {
        let v5 = INTEL.replace(
            r#""vocab_size": 256064"#,
            r#""vocab_size": 256064, "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}"#,
        );
        assert_eq!(LlavaConfig::from_json(&v5, "c").unwrap().text.rope_theta, 5000.0);
    }
}
