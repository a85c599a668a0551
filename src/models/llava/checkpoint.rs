//! A LLaVA-Gemma checkpoint folder: `config.json` + the safetensors its index names, memory-mapped.
//!
//! Only the files `model.safetensors.index.json` names are opened (the hub repo of
//! `Intel/llava-gemma-2b` also holds a second, LLaVA-format weight set and a pickle); without an
//! index, `model.safetensors`. Tensors are read one at a time through a candle [`VarBuilder`] and
//! converted to the run's dtype as they are read, so nothing is loaded that the model does not
//! build (blocks past the deepest tap, the LM head) and the f32 checkpoint is never resident twice.
//!
//! Three naming layouts exist; the model code asks for the 2024 names and [`Layout`] maps them:
//!
//! | 2024 (`Intel/llava-gemma-2b`)  | transformers 4.52–4.57            | transformers 5 `save_pretrained` |
//! |--------------------------------|-----------------------------------|----------------------------------|
//! | `vision_tower.vision_model.…`  | `model.vision_tower.vision_model.…` | `vision_tower.…`               |
//! | `multi_modal_projector.…`      | `model.multi_modal_projector.…`   | `multi_modal_projector.…`        |
//! | `language_model.model.…`       | `model.language_model.…`          | `language_model.model.…`         |
//! | `language_model.lm_head.weight`| `lm_head.weight`                  | none (tied)                      |

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use super::LlavaError;
use super::config::LlavaConfig;

pub const CONFIG_FILE: &str = "config.json";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const SINGLE_FILE: &str = "model.safetensors";

/// How the checkpoint names its tensors: the prefix of each part, found by probing for a tensor
/// each part must have. The model code asks for 2024 names; [`Layout::actual`] maps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where the CLIP vision transformer's tensors are (`vision_tower.vision_model.` in 2024).
    pub vision: &'static str,
    /// Where the projector's are (`multi_modal_projector.`).
    pub projector: &'static str,
    /// Where Gemma's decoder's are (`language_model.model.`).
    pub language: &'static str,
    /// The LM head's name (`language_model.lm_head.weight`), if the checkpoint has one (else tied).
    pub lm_head: Option<&'static str>,
}

const VISION_PREFIXES: [&str; 4] =
    ["vision_tower.vision_model.", "model.vision_tower.vision_model.", "vision_tower.", "model.vision_tower."];
const PROJECTOR_PREFIXES: [&str; 2] = ["multi_modal_projector.", "model.multi_modal_projector."];
const LANGUAGE_PREFIXES: [&str; 2] = ["language_model.model.", "model.language_model."];
const LM_HEADS: [&str; 2] = ["language_model.lm_head.weight", "lm_head.weight"];

impl Layout {
    /// The checkpoint's name for a 2024-style name.
    pub fn actual(&self, name: &str) -> String {
        if let Some(rest) = name.strip_prefix(VISION_PREFIXES[0]) {
            format!("{}{rest}", self.vision)
        } else if let Some(rest) = name.strip_prefix(PROJECTOR_PREFIXES[0]) {
            format!("{}{rest}", self.projector)
        } else if let Some(rest) = name.strip_prefix(LANGUAGE_PREFIXES[0]) {
            format!("{}{rest}", self.language)
        } else if name == LM_HEADS[0] {
            self.lm_head.unwrap_or(LM_HEADS[0]).to_string()
        } else {
            name.to_string()
        }
    }

    /// The 2024 layout of `Intel/llava-gemma-2b` (`vision_tower.vision_model.`, `language_model.model.`).
    pub fn is_2024(&self) -> bool {
        self.vision == VISION_PREFIXES[0] && self.projector == PROJECTOR_PREFIXES[0] && self.language == LANGUAGE_PREFIXES[0]
    }

    fn detect(names: &BTreeSet<String>) -> Result<Layout, String> {
        let find = |prefixes: &[&'static str], marker: &str, part: &str| {
            prefixes.iter().copied().find(|p| names.contains(&format!("{p}{marker}"))).ok_or_else(|| {
                format!(
                    "no {part} found: none of {} exists; the first names are {:?}: is this a LlavaForConditionalGeneration checkpoint?",
                    prefixes.iter().map(|p| format!("{p}{marker}")).collect::<Vec<_>>().join(", "),
                    names.iter().take(4).collect::<Vec<_>>()
                )
            })
        };
        Ok(Layout {
            vision: find(&VISION_PREFIXES, "embeddings.patch_embedding.weight", "vision tower")?,
            projector: find(&PROJECTOR_PREFIXES, "linear_1.weight", "projector")?,
            language: find(&LANGUAGE_PREFIXES, "embed_tokens.weight", "language model")?,
            lm_head: LM_HEADS.iter().copied().find(|n| names.contains(*n)),
        })
    }
}

/// An open checkpoint.
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<PathBuf>,
    weights: Arc<Weights>,
    pub config: LlavaConfig,
}

struct Weights {
    st: MmapedSafetensors,
    layout: Layout,
    names: BTreeSet<String>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("dir", &self.dir).field("files", &self.files).field("layout", &self.layout()).finish()
    }
}

impl Checkpoint {
    /// Open the checkpoint in `dir`: parse its config, memory-map the indexed safetensors.
    pub fn open(dir: &Path) -> Result<Checkpoint, LlavaError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|source| LlavaError::Io { path: config_path.clone(), source })?;
        let config = LlavaConfig::from_json(&text, &config_path.display().to_string())?;
        let files = weight_files(dir)?;
        // SAFETY: the files are memory-mapped read-only; like every mmap reader we rely on nobody
        // truncating a checkpoint while it is being read (a changed file changes the cache key).
        let st = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| LlavaError::Weights { path: dir.to_path_buf(), message: format!("cannot read the safetensors files: {e}") })?;
        let names: BTreeSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        let layout = Layout::detect(&names).map_err(|message| LlavaError::Weights { path: dir.to_path_buf(), message })?;
        Ok(Checkpoint { dir: dir.to_path_buf(), files, weights: Arc::new(Weights { st, layout, names }), config })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The safetensors files read (those the index names), sorted.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn layout(&self) -> &Layout {
        &self.weights.layout
    }

    /// Shape and stored dtype of a tensor, by its 2024 name.
    pub fn header(&self, name: &str) -> Option<(Vec<usize>, DType)> {
        let view = self.weights.st.get(&self.weights.layout.actual(name)).ok()?;
        let dtype = DType::try_from(view.dtype()).ok()?;
        Some((view.shape().to_vec(), dtype))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.weights.names.contains(&self.weights.layout.actual(name))
    }

    /// Check every tensor the model will read against `config.json`: present, and shaped as the
    /// config says. `vision_layers`/`text_layers` are the blocks that will be built.
    pub fn check(&self, vision_layers: usize, with_post_layernorm: bool, text_layers: usize, final_norm: bool) -> Result<(), LlavaError> {
        for (name, shape, because) in expected_tensors(&self.config, vision_layers, with_post_layernorm, text_layers, final_norm) {
            match self.header(&name) {
                None => {
                    return Err(LlavaError::MissingTensor {
                        dir: self.dir.clone(),
                        name: self.weights.layout.actual(&name),
                        files: self.files.iter().map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect(),
                    });
                }
                Some((actual, _)) if actual != shape => {
                    return Err(LlavaError::ShapeMismatch {
                        dir: self.dir.clone(),
                        name: self.weights.layout.actual(&name),
                        expected: shape,
                        actual,
                        because,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A `VarBuilder` over the checkpoint that takes 2024 names, reads each tensor when asked and
    /// converts it to `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend: Box<dyn candle_nn::var_builder::SimpleBackend> = Box::new(Backend(self.weights.clone()));
        VarBuilder::from_backend(backend, dtype, device.clone())
    }

    /// Rows `ids` of the token embedding, `[ids.len(), hidden]` in `dtype`, read straight from the
    /// mapped file: the full table (256,064 × 2048) is never materialised.
    pub fn embedding_rows(&self, ids: &[u32], dtype: DType, device: &Device) -> Result<Tensor, LlavaError> {
        let name = self.weights.layout.actual("language_model.model.embed_tokens.weight");
        let view = self.weights.st.get(&name).map_err(|_| LlavaError::MissingTensor {
            dir: self.dir.clone(),
            name: name.clone(),
            files: vec![],
        })?;
        let stored = DType::try_from(view.dtype())
            .map_err(|e| LlavaError::Weights { path: self.dir.clone(), message: format!("{name}: unsupported dtype: {e}") })?;
        let (rows, width) = match view.shape() {
            [r, w] => (*r, *w),
            other => {
                return Err(LlavaError::Weights { path: self.dir.clone(), message: format!("{name} has shape {other:?}, expected 2-d") });
            }
        };
        let row_bytes = width * stored.size_in_bytes();
        let data = view.data();
        let mut buf = Vec::with_capacity(ids.len() * row_bytes);
        for &id in ids {
            let id = id as usize;
            if id >= rows {
                return Err(LlavaError::Weights {
                    path: self.dir.clone(),
                    message: format!(
                        "token id {id} is outside the embedding table ({rows} rows): does the tokenizer belong to this model?"
                    ),
                });
            }
            buf.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
        }
        let t = Tensor::from_raw_buffer(&buf, stored, &[ids.len(), width], device).map_err(LlavaError::Candle)?;
        t.to_dtype(dtype).map_err(LlavaError::Candle)
    }
}

/// The safetensors files of a checkpoint: those named by the index, or the single file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LlavaError> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| LlavaError::Io { path: index.clone(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| LlavaError::Weights { path: index.clone(), message: format!("not valid JSON: {e}") })?;
        let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| LlavaError::Weights {
            path: index.clone(),
            message: "no \"weight_map\" object: expected {\"weight_map\": {tensor: file}}".into(),
        })?;
        let mut names = BTreeSet::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| LlavaError::Weights {
                path: index.clone(),
                message: format!("weight_map[{tensor:?}] is {file}, expected a file name"),
            })?;
            let p = Path::new(file);
            if p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                return Err(LlavaError::Weights {
                    path: index.clone(),
                    message: format!("weight_map[{tensor:?}] is {file:?}: expected a file name inside the checkpoint folder"),
                });
            }
            names.insert(file.to_string());
        }
        let files: Vec<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
        for f in &files {
            if !f.is_file() {
                return Err(LlavaError::Weights {
                    path: f.clone(),
                    message: format!("named by {INDEX_FILE} but missing: the download is incomplete"),
                });
            }
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(LlavaError::Weights {
        path: dir.to_path_buf(),
        message: format!(
            "neither {INDEX_FILE} nor {SINGLE_FILE} is here; saeflow reads safetensors only (not pytorch_model.bin): \
             convert with transformers' save_pretrained(safe_serialization=True)"
        ),
    })
}

/// Every tensor the model reads, by 2024 name, with the shape `config.json` implies and the keys
/// that imply it.
pub fn expected_tensors(
    cfg: &LlavaConfig,
    vision_layers: usize,
    with_post_layernorm: bool,
    text_layers: usize,
    final_norm: bool,
) -> Vec<(String, Vec<usize>, &'static str)> {
    let v = &cfg.vision;
    let t = &cfg.text;
    let mut out: Vec<(String, Vec<usize>, &'static str)> = Vec::new();
    let vm = "vision_tower.vision_model";
    let dv = v.hidden_size;
    out.push((format!("{vm}.embeddings.class_embedding"), vec![dv], "vision_config.hidden_size"));
    out.push((
        format!("{vm}.embeddings.patch_embedding.weight"),
        vec![dv, v.num_channels, v.patch_size, v.patch_size],
        "vision_config.hidden_size, num_channels, patch_size",
    ));
    out.push((
        format!("{vm}.embeddings.position_embedding.weight"),
        vec![v.num_patches() + 1, dv],
        "vision_config.(image_size/patch_size)²+1, hidden_size",
    ));
    for n in ["weight", "bias"] {
        out.push((format!("{vm}.pre_layrnorm.{n}"), vec![dv], "vision_config.hidden_size"));
        if with_post_layernorm {
            out.push((format!("{vm}.post_layernorm.{n}"), vec![dv], "vision_config.hidden_size"));
        }
    }
    for l in 0..vision_layers {
        let p = format!("{vm}.encoder.layers.{l}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push((format!("{p}.self_attn.{proj}.weight"), vec![dv, dv], "vision_config.hidden_size"));
            out.push((format!("{p}.self_attn.{proj}.bias"), vec![dv], "vision_config.hidden_size"));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            out.push((format!("{p}.{ln}.weight"), vec![dv], "vision_config.hidden_size"));
            out.push((format!("{p}.{ln}.bias"), vec![dv], "vision_config.hidden_size"));
        }
        let i = v.intermediate_size;
        out.push((format!("{p}.mlp.fc1.weight"), vec![i, dv], "vision_config.intermediate_size, hidden_size"));
        out.push((format!("{p}.mlp.fc1.bias"), vec![i], "vision_config.intermediate_size"));
        out.push((format!("{p}.mlp.fc2.weight"), vec![dv, i], "vision_config.hidden_size, intermediate_size"));
        out.push((format!("{p}.mlp.fc2.bias"), vec![dv], "vision_config.hidden_size"));
    }
    let d = t.hidden_size;
    out.push(("multi_modal_projector.linear_1.weight".into(), vec![d, dv], "text_config.hidden_size, vision_config.hidden_size"));
    out.push(("multi_modal_projector.linear_2.weight".into(), vec![d, d], "text_config.hidden_size"));
    if cfg.multimodal_projector_bias {
        out.push(("multi_modal_projector.linear_1.bias".into(), vec![d], "text_config.hidden_size"));
        out.push(("multi_modal_projector.linear_2.bias".into(), vec![d], "text_config.hidden_size"));
    }
    let lm = "language_model.model";
    out.push((format!("{lm}.embed_tokens.weight"), vec![t.vocab_size, d], "text_config.vocab_size, hidden_size"));
    let (q, kv) = (t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim);
    for l in 0..text_layers {
        let p = format!("{lm}.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![d], "text_config.hidden_size"));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![d], "text_config.hidden_size"));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, d], "text_config.num_attention_heads×head_dim, hidden_size"));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, d], "text_config.num_key_value_heads×head_dim, hidden_size"));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, d], "text_config.num_key_value_heads×head_dim, hidden_size"));
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![d, q], "text_config.hidden_size, num_attention_heads×head_dim"));
        let i = t.intermediate_size;
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, d], "text_config.intermediate_size, hidden_size"));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![i, d], "text_config.intermediate_size, hidden_size"));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![d, i], "text_config.hidden_size, intermediate_size"));
    }
    if final_norm {
        out.push((format!("{lm}.norm.weight"), vec![d], "text_config.hidden_size"));
    }
    out
}

struct Backend(Arc<Weights>);

impl candle_nn::var_builder::SimpleBackend for Backend {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("tensor {} has shape {:?}, expected {:?}", self.0.layout.actual(name), t.dims(), s.dims());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let actual = self.0.layout.actual(name);
        let view = match self.0.st.get(&actual) {
            Ok(v) => v,
            Err(_) => candle_core::bail!("tensor {actual} is not in the checkpoint"),
        };
        view.load(dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.names.contains(&self.0.layout.actual(name))
    }
}
