//! What a stage kind implements, and the registry that maps kind names to implementations. The
//! engine runs any [`Stage`]; which kinds exist is decided above it (`stages::builtin`, and the
//! test kit's mock kinds), so the engine and the plan never name a concrete kind.

use std::collections::BTreeMap;

use super::EngineError;
use super::job::Job;
use crate::plan::{Kinds, Signature};

/// A stage kind's implementation.
pub trait Stage: Send + Sync {
    fn signature(&self) -> Signature;
    /// Compute every member of the job (one instance, or several fused ones).
    fn run(&self, job: &mut Job) -> Result<(), EngineError>;
}

/// Kind name → implementation, with each kind's signature taken once at registration.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, (Signature, Box<dyn Stage>)>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Add a kind; a kind registered again replaces the earlier one.
    pub fn register(&mut self, stage: Box<dyn Stage>) {
        let sig = stage.signature();
        self.kinds.insert(sig.kind, (sig, stage));
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

impl Kinds for Registry {
    fn signature(&self, kind: &str) -> Option<&Signature> {
        self.kinds.get(kind).map(|(s, _)| s)
    }

    fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}
