//! Stage kinds: one file per kind, registered in [`builtin`]. A stage receives typed
//! inputs and parameters through a [`Job`] and writes tables; it never reads YAML, never sees the
//! cache layout and never calls another stage.

pub mod binarize;
pub mod class_features;
pub mod clean;
pub mod clip_vit;
pub mod dataset;
pub mod fuse;
pub mod images;
pub mod llava_sae;
pub mod pool;
pub mod probe;
pub mod report;
pub mod resnet;
pub mod split;
pub mod table;
pub mod zeroshot;
pub mod zeroshot_score;

use crate::engine::EngineError;
use crate::engine::stage::Registry;

/// Every built-in kind. This is the one place kinds are registered.
pub fn builtin() -> Registry {
    let mut r = Registry::empty();
    r.register(Box::new(dataset::Dataset));
    r.register(Box::new(llava_sae::LlavaSae));
    r.register(Box::new(clip_vit::ClipVit));
    r.register(Box::new(resnet::ResNetStage));
    r.register(Box::new(zeroshot::ZeroShot));
    r.register(Box::new(zeroshot::ZeroShotAnswers));
    r.register(Box::new(zeroshot_score::ZeroShotScore));
    r.register(Box::new(split::Split));
    r.register(Box::new(probe::Probe));
    r.register(Box::new(table::Table));
    r.register(Box::new(pool::Pool));
    r.register(Box::new(binarize::Binarize));
    r.register(Box::new(clean::Clean));
    r.register(Box::new(fuse::Fuse));
    r.register(Box::new(class_features::ClassFeatures));
    r.register(Box::new(report::Report));
    r
}

/// A model's failure inside a stage: the stage's error, without candle's backtrace.
impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Stage(format!("model computation: {}", crate::models::sae::without_backtrace(e)))
    }
}
