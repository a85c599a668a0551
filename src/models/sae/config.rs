//! An SAE's `cfg.json`, read in both SAELens styles: [`SaeConfig`] and its enums.

use serde_json::{Map, Value};

use super::SaeError;

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
    /// The input scale `s` (see the [`sae`](super) module docs); `None` until the loader sets it.
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A pre-6.0 `cfg.json` (also used by `check`'s tests).
    pub(in crate::models::sae) fn pre6() -> &'static str {
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
}
