//! Reading a ResNet checkpoint folder (`microsoft/resnet-50` from the hub cache, or a local folder
//! written by transformers' `save_pretrained`): `config.json`, the safetensors weights
//! (memory-mapped; `model.safetensors`, or the files `model.safetensors.index.json` names), and
//! `preprocessor_config.json` (ConvNeXT's preprocessing). The model itself is [`super::resnet`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::clip_image::ImageProcessor;
use super::convnext_image::ConvNextConfig;
use super::resnet::{ResNet, ResNetConfig, ResNetError};

pub const CONFIG_FILE: &str = "config.json";
pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// `dir/config.json`, parsed.
pub fn read_config(dir: &Path) -> Result<ResNetConfig, ResNetError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ResNetError::Io { path: path.clone(), source })?;
    ResNetConfig::from_json(&text, &path.display().to_string())
}

/// The safetensors files of a checkpoint: those the index names, or the single file.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ResNetError> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let bad = |message: String| ResNetError::Weights { path: index.clone(), message };
        let text = std::fs::read_to_string(&index).map_err(|source| ResNetError::Io { path: index.clone(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no \"weight_map\" object: expected {\"weight_map\": {tensor: file}}".into()))?;
        let mut names = BTreeSet::new();
        for (tensor, file) in map {
            let name = file.as_str().filter(|f| {
                let p = Path::new(f);
                !p.is_absolute() && p.components().all(|c| matches!(c, std::path::Component::Normal(_)))
            });
            names.insert(
                name.ok_or_else(|| bad(format!("weight_map[{tensor:?}] is {file}, expected a file name in the checkpoint folder")))?,
            );
        }
        let files: Vec<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(ResNetError::Weights {
                path: missing.clone(),
                message: format!("named by {INDEX_FILE} but missing: the download is incomplete"),
            });
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(ResNetError::Weights {
        path: dir.to_path_buf(),
        message: format!(
            "neither {SINGLE_FILE} nor {INDEX_FILE} is here; saeflow reads safetensors only (not pytorch_model.bin): convert with \
             transformers' save_pretrained(safe_serialization=True)"
        ),
    })
}

/// Load the model in `dir` to run in `dtype` on `device`.
pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<ResNet, ResNetError> {
    let config = read_config(dir)?;
    let files = weight_files(dir)?;
    // SAFETY: the files are memory-mapped read-only; like every mmap reader we rely on nobody
    // truncating a checkpoint while it is being read (a changed file changes the cache key).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
        .map_err(|e| ResNetError::Weights { path: dir.to_path_buf(), message: format!("cannot read the safetensors files: {e}") })?;
    ResNet::new(&config, vb)
}

/// The checkpoint's preprocessing: `dir/preprocessor_config.json`, ConvNeXT's processor.
pub fn image_processor(dir: &Path) -> Result<ImageProcessor, String> {
    let path = dir.join(PREPROCESSOR_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (a ResNet checkpoint needs its preprocessor_config.json)", path.display()))?;
    ConvNextConfig::from_json(&text).and_then(|c| c.processor()).map_err(|e| format!("{}: {e}", path.display()))
}
