//! The last key preimage recorded per instance of a pipeline, so `plan` can say *why* an instance
//! would run and `why` can diff. Lives in `cache/.history/<pipeline>.json`.

use std::collections::BTreeMap;
use std::fs;

use serde::{Deserialize, Serialize};

use super::EngineError;
use super::cache::Cache;
use super::table::write_atomic;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub instances: BTreeMap<String, Record>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Key of the instance's first output.
    pub key: String,
    pub preimage: serde_json::Value,
    /// The `--set` overrides of the run that touched this instance's stage (or the defaults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
}

impl History {
    pub fn load(cache: &Cache, pipeline: &str) -> History {
        fs::read(cache.history_dir().join(format!("{pipeline}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Merge `updates` into the stored history under a lock (concurrent runs both land).
    pub fn record(cache: &Cache, pipeline: &str, updates: &BTreeMap<String, Record>) -> Result<(), EngineError> {
        if updates.is_empty() {
            return Ok(());
        }
        let _lock = cache.lock_named(&format!("history-{pipeline}"))?;
        let mut h = History::load(cache, pipeline);
        let mut changed = false;
        for (id, r) in updates {
            if h.instances.get(id) != Some(r) {
                h.instances.insert(id.clone(), r.clone());
                changed = true;
            }
        }
        if changed {
            let bytes = serde_json::to_vec_pretty(&h).map_err(|e| EngineError::Other(e.to_string()))?;
            write_atomic(&cache.history_dir().join(format!("{pipeline}.json")), &bytes)?;
        }
        Ok(())
    }
}
