//! Stage kinds: one file per kind, registered in [`Registry::builtin`]. A stage receives typed
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
pub mod mock;
pub mod pool;
pub mod probe;
pub mod report;
pub mod resnet;
pub mod signature;
pub mod split;
pub mod table;
pub mod zeroshot;

use std::collections::BTreeMap;

use crate::engine::EngineError;
use crate::engine::job::Job;
pub use signature::Signature;

/// A stage kind's implementation.
pub trait Stage: Send + Sync {
    fn signature(&self) -> Signature;
    /// Compute every member of the job (one instance, or several fused ones).
    fn run(&self, job: &mut Job) -> Result<(), EngineError>;
}

/// Kind name → implementation.
pub struct Registry {
    kinds: BTreeMap<&'static str, (Signature, Box<dyn Stage>)>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry { kinds: BTreeMap::new() }
    }

    /// Every built-in kind. This is the one place kinds are registered.
    pub fn builtin() -> Registry {
        let mut r = Registry::empty();
        r.register(Box::new(dataset::Dataset));
        r.register(Box::new(llava_sae::LlavaSae));
        r.register(Box::new(clip_vit::ClipVit));
        r.register(Box::new(resnet::ResNetStage));
        r.register(Box::new(zeroshot::ZeroShot));
        for s in mock::kinds() {
            r.register(s);
        }
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

    pub fn register(&mut self, stage: Box<dyn Stage>) {
        let sig = stage.signature();
        self.kinds.insert(sig.kind, (sig, stage));
    }

    pub fn signature(&self, kind: &str) -> Option<Signature> {
        self.kinds.get(kind).map(|(s, _)| s.clone())
    }

    pub fn get(&self, kind: &str) -> Option<&dyn Stage> {
        self.kinds.get(kind).map(|(_, s)| s.as_ref())
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    pub fn signatures(&self) -> impl Iterator<Item = &Signature> + '_ {
        self.kinds.values().map(|(s, _)| s)
    }
}
