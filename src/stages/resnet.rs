//! `resnet`: the supervised-vision baseline. Every image of a `dataset` table goes through a
//! ResNet (`microsoft/resnet-50`, or any transformers ResNet checkpoint) with the checkpoint's own
//! ConvNeXT preprocessing; the pooled features (`pooler_output`, 2048 per image for ResNet-50)
//! are written as a `dense` table that `probe` reads like the EoI residuals.
//!
//! Outputs:
//! - `features`: `image_id, resid [hidden_sizes[-1]]`, one row per readable image;
//! - `errors`: images that could not be read or decoded (`image_id, source, reason`); they are
//!   skipped, every other image's rows stay as they would have been.
//!
//! As in `llava_sae`: parts are fixed ranges of `part_images` rows of the dataset table and
//! batches fixed ranges of `batch` rows within a part; an unreadable image keeps its slot (zeros)
//! so no other image's batch changes; a crash resumes at the first missing part with files
//! byte-identical to an uninterrupted run's; images decode on worker threads while the model
//! computes.

use candle_core::Tensor;

use super::Stage;
use super::images::{self, ImageReader, part_range, stage_err};
use super::signature::{ParamSpec, ParamType, Signature, input, output, param};
use crate::engine::EngineError;
use crate::engine::job::{Job, PartGuard};
use crate::models::resnet_load;
use crate::models::source::Artifact;
use crate::spec::Value;

/// The outputs, in the order each part's writers are opened.
const OUTPUTS: [&str; 2] = ["features", "errors"];

pub struct ResNetStage;

fn not_in_key(mut p: ParamSpec) -> ParamSpec {
    p.in_key = false;
    p
}

impl Stage for ResNetStage {
    fn signature(&self) -> Signature {
        Signature {
            kind: "resnet",
            version: 1,
            doc: "ResNet pooled features of every image (transformers' ResNetModel pooler_output: 2048 for microsoft/resnet-50), \
                  the supervised-vision baseline",
            inputs: vec![input("from", &["dataset"], "the images (a dataset table)")],
            params: vec![
                param(
                    "model",
                    ParamType::Artifact(Artifact::Model),
                    None,
                    "the ResNet checkpoint: hf://microsoft/resnet-50 or a local folder (config.json, model.safetensors, \
                     preprocessor_config.json)",
                ),
                param(
                    "dtype",
                    ParamType::Choice(vec!["f32", "bf16", "f16"]),
                    Some(Value::Str("f32".into())),
                    "the compute dtype (f32 on CPU; bf16 on a GPU); BatchNorm is folded into the convolutions in f32, the pooling runs in f32",
                ),
                param(
                    "part_images",
                    ParamType::Int { min: Some(1), max: None },
                    Some(Value::Int(1024)),
                    "images per part (the unit of resume)",
                ),
                not_in_key(param("batch", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(16)), "images per forward")),
                not_in_key(param(
                    "device",
                    ParamType::Choice(vec!["auto", "cpu", "cuda"]),
                    Some(Value::Str("auto".into())),
                    "where to run: auto uses CUDA when built with --features cuda and a GPU is present",
                )),
                not_in_key(param(
                    "workers",
                    ParamType::Int { min: Some(1), max: Some(256) },
                    Some(Value::Int(2)),
                    "image decoding threads",
                )),
            ],
            open_params: false,
            outputs: vec![
                output(
                    "features",
                    "dense",
                    "image_id u32, resid fixed_size_list<f32>[hidden_sizes[-1]]: the pooled features (2048 for ResNet-50)",
                ),
                output("errors", "errors", "image_id u32, source utf8, reason utf8: images skipped"),
            ],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        let m = &job.members[0];
        let id = m.id.clone();
        let model_dir = m.paths.get("model").cloned().ok_or_else(|| stage_err(&id, "parameter 'model' was not resolved"))?;
        let err = |e: &dyn std::fmt::Display| stage_err(&id, format!("model {}: {e}", model_dir.display()));
        let processor = resnet_load::image_processor(&model_dir).map_err(|e| stage_err(&id, e))?;
        let reader = ImageReader { source: images::open_source(m)?, processor, workers: m.int("workers")? as usize };
        let (dtype, device) = (images::dtype(m)?, images::device(m)?);
        let part_images = m.int("part_images")? as usize;
        let batch = m.int("batch")? as usize;
        let ids = images::read_ids(m)?;
        let n_parts = ids.len().div_ceil(part_images).max(1);
        for m in &mut job.members {
            for o in OUTPUTS {
                m.output(o)?.set_parts(n_parts)?;
            }
        }
        let todo = images::parts_to_do(&job.members, n_parts);
        job.progress.add_total(ids.len() as u64, "images");
        let done: usize = (0..n_parts).filter(|p| !todo.contains(p)).map(|p| part_range(p, part_images, ids.len()).len()).sum();
        job.progress.advance(done as u64);
        if todo.is_empty() {
            return Ok(());
        }
        let model = resnet_load::load(&model_dir, dtype, &device).map_err(|e| err(&e))?;
        let width = model.feature_dim();
        let progress = job.progress;
        let member = &mut job.members[0];
        std::thread::scope(|scope| -> Result<(), EngineError> {
            let rx = reader.decode_ahead(scope, &ids, &todo, part_images, batch);
            let mut current: Option<(usize, Vec<PartGuard<'_>>)> = None;
            for decoded in rx {
                if current.as_ref().map(|c| c.0) != Some(decoded.part) {
                    if let Some((_, guards)) = current.take() {
                        finish(guards)?;
                    }
                    let schema = |o: &str| if o == "features" { images::dense_schema(width) } else { images::errors_schema() };
                    current = Some((decoded.part, images::open_parts(member, decoded.part, &OUTPUTS, schema)?));
                }
                let (_, guards) = current.as_mut().expect("opened above");
                let (h, w) = decoded.hw;
                let n = decoded.ids.len();
                let pixels = Tensor::from_slice(&decoded.pixels, (n, 3, h, w), &device)?;
                let pooled = model.forward(&pixels).map_err(|e| err(&e))?.to_vec2::<f32>()?;
                let ok = decoded.ok();
                let keep = |i: &usize| ok[*i];
                let rows: Vec<usize> = (0..n).filter(keep).collect();
                let values: Vec<f32> = rows.iter().flat_map(|&i| pooled[i].iter().copied()).collect();
                guards[0].write(&images::dense_batch(rows.iter().map(|&i| decoded.ids[i]).collect(), values, width)?)?;
                guards[1].write(&images::errors_batch(&decoded)?)?;
                progress.advance(n as u64);
            }
            if let Some((_, guards)) = current.take() {
                finish(guards)?;
            }
            Ok(())
        })
    }
}

fn finish(guards: Vec<PartGuard<'_>>) -> Result<(), EngineError> {
    for g in guards {
        g.finish()?;
    }
    Ok(())
}
