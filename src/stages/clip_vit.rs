//! `clip_vit`: the ViT baseline — LLaVA's own CLIP vision tower on every image, once per dataset:
//! the pooled CLS after `post_layernorm` (`cls`) and the mean over patches of the hidden state
//! LLaVA feeds its projector (`hidden_states[vision_feature_layer]`, `patch_mean`). The language
//! model is never loaded. Parts, resume and skipped images work as in `llava_sae`.

use std::sync::Arc;

use super::images::{self, Preprocess};
use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::models::llava::Checkpoint;
use crate::models::llava::clip::{ClipVision, patch_mean};
use crate::models::source::Artifact;
use crate::plan::params::{Reference, params};
use crate::plan::signature::{ParamType, Signature, input};
use crate::tables::TableType;

pub struct ClipVit;

params! {
    /// `clip_vit`'s own parameters (the runtime ones follow: [`images::RuntimeParams`]).
    pub struct ClipVitParams {
        /// the LLaVA checkpoint whose vision tower to run: hf://Intel/llava-gemma-2b or a local folder
        pub model: Reference, ParamType::Artifact(Artifact::Model), required;
    }
}

const OUTPUTS: [&str; 3] = ["cls", "patch_mean", "errors"];

impl Stage for ClipVit {
    fn signature(&self) -> Signature {
        Signature::new(
            "clip_vit",
            1,
            "the ViT baseline: LLaVA's CLIP tower per image — pooled CLS and the mean of the patches LLaVA projects",
        )
        .input(input("from", &[TableType::Dataset], "the images (a dataset table)"))
        .params::<ClipVitParams>()
        .params::<images::RuntimeParams>()
        .output("cls", TableType::Vit, "image_id u32, resid fixed_size_list<f32>[vision hidden]: the pooled CLS (post_layernorm)")
        .output(
            "patch_mean",
            TableType::Vit,
            "image_id u32, resid fixed_size_list<f32>[vision hidden]: the mean of the patches LLaVA reads",
        )
        .output("errors", TableType::Errors, "image_id u32, source utf8, reason utf8: images skipped")
        .check_files(images::check_processor)
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let id = m.id.clone();
            let err = |e: &dyn std::fmt::Display| EngineError::Stage(format!("{id}: {e}"));
            let p: ClipVitParams = m.params()?;
            let Some(setup) = images::Setup::new(std::slice::from_mut(m), &OUTPUTS, &p.model, job.progress)? else { continue };
            let (dtype, device, dir) = (setup.dtype, setup.device.clone(), setup.model_dir.clone());
            let checkpoint = Checkpoint::open(&dir).map_err(|e| err(&e))?;
            let cfg = checkpoint.config.clone();
            let select = cfg.vision_hidden_state_index().map_err(|e| err(&e))?;
            checkpoint.check(cfg.vision.num_hidden_layers, true, 0, false).map_err(|e| err(&e))?;
            let vb = checkpoint.var_builder(dtype, &device);
            let tower = ClipVision::new(&cfg.vision, vb.pp("vision_tower.vision_model"), select, true)?;
            let pre: Arc<dyn Preprocess + Send> = Arc::new(images::image_processor(&dir).map_err(|e| err(&e))?);
            let width = cfg.vision.hidden_size;
            let mut open: Option<(usize, Vec<crate::engine::job::PartGuard<'_>>)> = None;
            let schema = |o: &str| if o == "errors" { TableType::Errors.schema() } else { TableType::Vit.schema_with_width(width) };
            for b in setup.batches(pre) {
                if open.as_ref().map(|o| o.0) != Some(b.part) {
                    if let Some((_, guards)) = open.take() {
                        images::finish_parts(guards)?;
                    }
                    open = Some((b.part, images::open_parts(m, b.part, &OUTPUTS, schema)?));
                }
                let out = tower.forward(&b.tensor(&device)?)?;
                let pooled = out.pooled.ok_or_else(|| err(&"the tower was built without its pooled output"))?;
                let pooled = pooled.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
                let mean = patch_mean(&out.selected)?.to_vec2::<f32>()?;
                let ok = b.ok();
                let (_, guards) = open.as_mut().expect("opened above");
                let (ids, values) = images::kept_rows(&pooled, &ok, &b.ids);
                guards[0].write(&images::dense_batch(TableType::Vit, ids, values, width)?)?;
                let (ids, values) = images::kept_rows(&mean, &ok, &b.ids);
                guards[1].write(&images::dense_batch(TableType::Vit, ids, values, width)?)?;
                guards[2].write(&b.errors()?)?;
                job.progress.advance(b.ids.len() as u64);
            }
            if let Some((_, guards)) = open.take() {
                images::finish_parts(guards)?;
            }
        }
        Ok(())
    }
}
