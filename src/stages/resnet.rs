//! `resnet`: the supervised-vision baseline. Every image of a `dataset` table goes through a
//! ResNet (`microsoft/resnet-50`, or any transformers ResNet checkpoint) with the checkpoint's own
//! ConvNeXT preprocessing; the pooled features (`pooler_output`, 2048 per image for ResNet-50)
//! are written as a `dense` table that `probe` reads like the EoI residuals.
//!
//! Outputs:
//! - `features`: `image_id, features [hidden_sizes[-1]]`, one row per readable image;
//! - `errors`: images that could not be read or decoded (`image_id, source, reason`); they are
//!   skipped, every other image's rows stay as they would have been.
//!
//! As in `llava_sae`: parts are fixed ranges of `part_images` rows of the dataset table and
//! batches fixed ranges of `batch` rows within a part; an unreadable image keeps its slot (zeros)
//! so no other image's batch changes; a crash resumes at the first missing part with files
//! byte-identical to an uninterrupted run's; images decode on worker threads while the model
//! computes.

use std::sync::Arc;

use super::images::{self, Preprocess};
use crate::engine::EngineError;
use crate::engine::job::{Job, PartGuard};
use crate::engine::stage::Stage;
use crate::models::resnet_load;
use crate::models::source::Artifact;
use crate::plan::params::{Reference, params};
use crate::plan::signature::{ParamType, Signature, input};
use crate::tables::TableType;

/// The outputs, in the order each part's writers are opened.
const OUTPUTS: [&str; 2] = ["features", "errors"];

pub struct ResNetStage;

params! {
    /// `resnet`'s own parameters (the runtime ones follow: [`images::RuntimeParams`]).
    pub struct ResNetParams {
        /// the ResNet checkpoint: hf://microsoft/resnet-50 or a local folder (config.json, model.safetensors,
        /// preprocessor_config.json)
        pub model: Reference, ParamType::Artifact(Artifact::Model), required;
    }
}

impl Stage for ResNetStage {
    fn signature(&self) -> Signature {
        Signature::new(
            "resnet",
            // 2: the vector column is `features` (a ResNet's pooled features are no residual)
            2,
            "ResNet pooled features of every image (transformers' ResNetModel pooler_output: 2048 for microsoft/resnet-50), \
             the supervised-vision baseline",
        )
        .input(input("from", &[TableType::Dataset], "the images (a dataset table)"))
        .params::<ResNetParams>()
        .params::<images::RuntimeParams>()
        .output(
            "features",
            TableType::Dense,
            "image_id u32, features fixed_size_list<f32>[hidden_sizes[-1]]: the pooled features (2048 for ResNet-50)",
        )
        .output("errors", TableType::Errors, "image_id u32, source utf8, reason utf8: images skipped")
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let id = m.id.clone();
            let p: ResNetParams = m.params()?;
            let Some(setup) = images::Setup::new(std::slice::from_mut(m), &OUTPUTS, &p.model, job.progress)? else { continue };
            let (dtype, device, model_dir) = (setup.dtype, setup.device.clone(), setup.model_dir.clone());
            let err = |e: &dyn std::fmt::Display| EngineError::Stage(format!("{id}: model {}: {e}", model_dir.display()));
            let pre: Arc<dyn Preprocess + Send> = Arc::new(resnet_load::image_processor(&model_dir).map_err(|e| err(&e))?);
            let model = resnet_load::load(&model_dir, dtype, &device).map_err(|e| err(&e))?;
            let width = model.feature_dim();
            let schema = |o: &str| if o == "features" { TableType::Dense.schema_with_width(width) } else { TableType::Errors.schema() };
            let mut current: Option<(usize, Vec<PartGuard<'_>>)> = None;
            for b in setup.batches(pre) {
                if current.as_ref().map(|c| c.0) != Some(b.part) {
                    if let Some((_, guards)) = current.take() {
                        images::finish_parts(guards)?;
                    }
                    current = Some((b.part, images::open_parts(m, b.part, &OUTPUTS, schema)?));
                }
                let (_, guards) = current.as_mut().expect("opened above");
                let pooled = model.forward(&b.tensor(&device)?).map_err(|e| err(&e))?.to_vec2::<f32>()?;
                let (ids, values) = images::kept_rows(&pooled, &b.ok(), &b.ids);
                guards[0].write(&images::dense_batch(TableType::Dense, ids, values, width)?)?;
                guards[1].write(&b.errors()?)?;
                job.progress.advance(b.ids.len() as u64);
            }
            if let Some((_, guards)) = current.take() {
                images::finish_parts(guards)?;
            }
        }
        Ok(())
    }
}
