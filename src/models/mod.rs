//! Models (candle, f32 on CPU; CUDA behind the `cuda` feature).
//!
//! Model code does no I/O: a model is built from its typed config and a candle `VarBuilder`, and
//! its methods take and return tensors. Loading (files, the Hugging Face cache, release tables) lives
//! in separate modules beside it:
//!
//! - [`sae`]: SAELens-format sparse autoencoders — [`sae::SaeConfig`] (both `cfg.json` styles),
//!   [`sae::Sae`] (`encode`/`decode`, standard and JumpReLU), [`sae::sparsify`] (per-token top-k of
//!   the non-zeros) and the plan-time check against a model ([`sae::check_against_model`]).
//! - [`releases`]: the built-in release table in the manner of SAELens' `pretrained_saes.yaml`.
//! - [`sae_load`]: SAE references (`release/sae_id`, `hf://owner/repo[@rev]/folder`, a local
//!   folder) → [`sae_load::SaeSpec`], and reading `cfg.json` + `sae_weights.safetensors`.
//! - [`hub`]: the Python-compatible Hugging Face cache, and downloads into it as `huggingface_hub`
//!   does them (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`).
//! - [`source`]: model and SAE references → a folder here + what identifies it in a cache key.
//! - [`llava`]: LLaVA-Gemma (CLIP → projector → Gemma) with residual taps and early exit.
//! - [`clip_image`]: CLIP's image preprocessing (`preprocessor_config.json` →
//!   [`clip_image::ImageProcessor`]: Pillow-exact resize, center crop, rescale, normalize → CHW
//!   `f32`), in parity with transformers' PIL-backed processor. No candle.
//! - [`convnext_image`]: ConvNeXT's image preprocessing (what ResNet checkpoints name: shortest
//!   edge to `int(s / crop_pct)`, center crop `s`), mapped onto [`clip_image::ImageProcessor`].
//! - [`resnet`]: transformers' `ResNetModel` up to its pooled features (BatchNorm folded at load);
//!   [`resnet_load`] reads a checkpoint folder (config, safetensors, preprocessor config).

pub mod clip_image;
pub mod convnext_image;
pub mod hub;
#[cfg(test)]
pub(crate) use hub::mock as hub_mock;
pub mod llava;
pub mod releases;
pub mod resnet;
pub mod resnet_load;
pub mod sae;
pub mod sae_load;
pub mod source;
