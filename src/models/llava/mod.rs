//! LLaVA-Gemma (`Intel/llava-gemma-2b`: CLIP ViT-L/14-336 → MLP projector → Gemma-2B) in candle,
//! with residual taps at chosen decoder blocks and early exit.
//!
//! - [`config`]: `config.json` with transformers' defaults filled in (2024 checkpoints are diff-only).
//! - [`checkpoint`]: the checkpoint folder — indexed safetensors, memory-mapped, both naming layouts,
//!   every dimension checked against the headers, embedding rows read without the full table.
//! - [`clip`], [`projector`], [`gemma`]: the three parts, `new(cfg, vb)` + `forward`.
//! - [`prompt`]: the chat template, `<image>` expansion and the image/EoI positions from token ids.
//! - [`zeroshot`]: LLaVA's own answer — label log-likelihoods and greedy generation with a KV cache.
//! - [`ops`]: layer norm, RMSNorm, softmax and RoPE tables in f32 whatever the weights' dtype.
//!
//! [`LlavaGemma`] puts them together for one prompt: load once per run, then
//! [`LlavaGemma::forward`] per batch of preprocessed images.

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod gemma;
pub mod ops;
pub mod projector;
pub mod prompt;
pub mod zeroshot;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

pub use checkpoint::{Checkpoint, Layout};
pub use config::{Activation, LlavaConfig, SelectStrategy};
pub use gemma::TapPoint;
pub use prompt::{EoiPosition, Prompt, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum LlavaError {
    #[error("{what}: {message}")]
    Config { what: String, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Weights { path: PathBuf, message: String },
    #[error("{}: tensor {name} is missing from the checkpoint (files read: {}); the download may be incomplete or the checkpoint is not LLaVA-Gemma", dir.display(), files.join(", "))]
    MissingTensor { dir: PathBuf, name: String, files: Vec<String> },
    #[error("{}: tensor {name} has shape {actual:?}, but config.json implies {expected:?} ({because}): the config and the weights disagree", dir.display())]
    ShapeMismatch { dir: PathBuf, name: String, expected: Vec<usize>, actual: Vec<usize>, because: &'static str },
    #[error("prompt: {message}")]
    Prompt { message: String },
    #[error("model request: {message}")]
    Request { message: String },
    #[error("model computation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// What a run reads from the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Decoder blocks to tap (0-based), any order; each output follows this order.
    pub blocks: Vec<usize>,
    pub point: TapPoint,
    /// Also return the sequence after Gemma's final norm (runs every block).
    pub final_norm: bool,
    /// Also return the CLIP features of the ViT baseline (runs every vision layer).
    pub vit: bool,
    /// Whether Gemma's `× √hidden` applies to the image rows too.
    pub image_scale: ImageScale,
}

/// Whether the projected image features are multiplied by Gemma's `√hidden` like the text rows.
///
/// LLaVA-Gemma was trained (and MOSAIC ran it) with transformers < 5.4, whose `GemmaModel.forward`
/// scaled the whole merged `inputs_embeds`: image rows included. transformers 5.4 moved the scale
/// into the token embedding, so since then the image rows enter Gemma unscaled — a different
/// model. saeflow runs the model as trained by default and offers the new behaviour for parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageScale {
    /// Image rows × √hidden (transformers < 5.4; the model as trained). Default.
    Scaled,
    /// Image rows as the projector returns them (transformers ≥ 5.4).
    Unscaled,
}

impl ImageScale {
    pub fn parse(s: &str) -> Option<ImageScale> {
        match s {
            "scaled" => Some(ImageScale::Scaled),
            "unscaled" => Some(ImageScale::Unscaled),
            _ => None,
        }
    }
}

/// The CLIP features of the ViT baseline, f32.
pub struct VitFeatures {
    /// The pooled CLS after `post_layernorm`, `[B, vision_hidden]`.
    pub pooled: Tensor,
    /// The mean over patches of `hidden_states[vision_feature_layer]`, `[B, vision_hidden]`.
    pub patch_mean: Tensor,
}

/// One batch's results.
pub struct Forward {
    /// Per requested block (request order), the residual stream over the whole prompt, `[B, T, hidden]`.
    pub taps: Vec<Tensor>,
    /// After the final norm, `[B, T, hidden]`, when requested.
    pub final_norm: Option<Tensor>,
    pub vit: Option<VitFeatures>,
    /// The projector's output merged at the image positions, `[B, image tokens, hidden]`.
    pub image_features: Tensor,
}

/// LLaVA-Gemma loaded for one prompt and one request.
pub struct LlavaGemma {
    config: LlavaConfig,
    vision: clip::ClipVision,
    projector: projector::Projector,
    pub(crate) gemma: gemma::Gemma,
    prompt: Prompt,
    request: Request,
    /// Embedded prompt rows before and after the image, × √hidden, `[1, n, hidden]`.
    prefix: Tensor,
    suffix: Tensor,
    /// √hidden in the run's dtype.
    pub(crate) normalizer: Tensor,
    dtype: DType,
}

impl LlavaGemma {
    /// Build the parts `request` needs from `checkpoint` (blocks past the deepest tap are not
    /// read), in `dtype` on `device`, for `prompt`.
    pub fn load(
        checkpoint: &Checkpoint,
        prompt: Prompt,
        request: Request,
        dtype: DType,
        device: &Device,
    ) -> Result<LlavaGemma, LlavaError> {
        let cfg = checkpoint.config.clone();
        let layers = cfg.text.num_hidden_layers;
        if request.blocks.is_empty() && !request.final_norm {
            return Err(LlavaError::Request { message: "no block to tap: name at least one layer".into() });
        }
        if let Some(&bad) = request.blocks.iter().find(|&&b| b >= layers) {
            return Err(LlavaError::Request {
                message: format!("block {bad} does not exist: the language model has {layers} blocks (0..={})", layers - 1),
            });
        }
        if prompt.image.len() != cfg.image_tokens() {
            return Err(LlavaError::Request {
                message: format!("the prompt holds {} image tokens, the model produces {}", prompt.image.len(), cfg.image_tokens()),
            });
        }
        let select = cfg.vision_hidden_state_index().map_err(|message| LlavaError::Config { what: "config.json".into(), message })?;
        let vision_layers = if request.vit { cfg.vision.num_hidden_layers } else { select };
        let text_blocks =
            if request.final_norm { layers } else { request.blocks.iter().map(|&b| request.point.blocks_needed(b)).max().unwrap_or(0) };
        checkpoint.check(vision_layers, request.vit, text_blocks, request.final_norm)?;
        let vb = checkpoint.var_builder(dtype, device);
        let vision = clip::ClipVision::new(&cfg.vision, vb.pp("vision_tower.vision_model"), select, request.vit)?;
        let projector = projector::Projector::new(
            cfg.vision.hidden_size,
            cfg.text.hidden_size,
            cfg.projector_hidden_act,
            cfg.multimodal_projector_bias,
            vb.pp("multi_modal_projector"),
        )?;
        let gemma = gemma::Gemma::new(&cfg.text, vb.pp("language_model.model"), text_blocks, request.final_norm)?;
        let (before, after) = prompt.text_ids();
        let normalizer = gemma::normalizer(cfg.text.hidden_size, dtype, device)?;
        let prefix = checkpoint.embedding_rows(before, dtype, device)?.unsqueeze(0)?.broadcast_mul(&normalizer)?;
        let suffix = checkpoint.embedding_rows(after, dtype, device)?.unsqueeze(0)?.broadcast_mul(&normalizer)?;
        Ok(LlavaGemma { config: cfg, vision, projector, gemma, prompt, request, prefix, suffix, normalizer, dtype })
    }

    pub fn config(&self) -> &LlavaConfig {
        &self.config
    }

    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    /// (vision layers, decoder blocks) one forward runs.
    pub fn depth(&self) -> (usize, usize) {
        (self.vision.depth(), self.gemma.depth())
    }

    /// Run a batch of preprocessed images `[B, 3, S, S]` (any float dtype; cast to the model's).
    /// Where the weights are (and every output).
    pub fn device(&self) -> &Device {
        self.prefix.device()
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<Forward, LlavaError> {
        let (merged, clip, image_features) = self.embed(pixels)?;
        let taps: Vec<(usize, TapPoint)> = self.request.blocks.iter().map(|&l| (l, self.request.point)).collect();
        let out = self.gemma.forward(&merged, &taps)?;
        let vit = match clip.pooled {
            Some(pooled) => Some(VitFeatures { pooled: pooled.to_dtype(DType::F32)?, patch_mean: clip::patch_mean(&clip.selected)? }),
            None => None,
        };
        Ok(Forward { taps: out.taps, final_norm: out.final_norm, vit, image_features })
    }

    /// The merged input of Gemma for a batch of images, `[B, T, hidden]` (text rows × √hidden,
    /// image rows as [`ImageScale`] says), with the vision tower's output and the projector's.
    fn embed(&self, pixels: &Tensor) -> Result<(Tensor, clip::ClipOutput, Tensor), LlavaError> {
        // pixels may come from the host: they go where the weights are
        let pixels = pixels.to_device(self.device())?.to_dtype(self.dtype)?;
        let b = pixels.dim(0)?;
        let clip = self.vision.forward(&pixels)?;
        let selected = match self.config.vision_feature_select_strategy {
            SelectStrategy::Default => clip.selected.narrow(1, 1, clip.selected.dim(1)? - 1)?,
            SelectStrategy::Full => clip.selected.clone(),
        };
        let image_features = self.projector.forward(&selected)?;
        let hidden = self.config.text.hidden_size;
        let prefix = self.prefix.broadcast_as((b, self.prefix.dim(1)?, hidden))?;
        let suffix = self.suffix.broadcast_as((b, self.suffix.dim(1)?, hidden))?;
        let image_rows = match self.request.image_scale {
            ImageScale::Scaled => image_features.broadcast_mul(&self.normalizer)?,
            ImageScale::Unscaled => image_features.clone(),
        };
        let merged = Tensor::cat(&[&prefix, &image_rows, &suffix], 1)?;
        Ok((merged, clip, image_features))
    }

    /// The image-token rows of a `[B, T, hidden]` tap: `[B, image tokens, hidden]`.
    pub fn image_rows(&self, tap: &Tensor) -> Result<Tensor, LlavaError> {
        Ok(tap.narrow(1, self.prompt.image.start, self.prompt.image.len())?)
    }

    /// The End-of-Image row of a `[B, T, hidden]` tap: `[B, hidden]`.
    pub fn eoi_row(&self, tap: &Tensor) -> Result<Tensor, LlavaError> {
        Ok(tap.narrow(1, self.prompt.eoi, 1)?.squeeze(1)?)
    }
}
