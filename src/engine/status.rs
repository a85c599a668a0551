//! Whether each instance is cached, and if not, why it would run. Shared by `plan`, `status`,
//! `run` and `why`; reads manifests and history, hashes only entries whose mtimes moved.

use std::collections::BTreeSet;

use super::cache::{Cache, EntryState};
use super::history::History;
use crate::plan::{Instance, ParamType, Plan, key};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Cached,
    Run,
}

#[derive(Clone, Debug)]
pub struct Assessment {
    pub status: Status,
    /// Human reason: `never run`, `params changed: method (top5 → top10)`, …
    pub reason: String,
    /// Entries found damaged (key, what is wrong): the run moves them aside and recomputes.
    pub damaged: Vec<(String, String)>,
    /// Entries whose mtimes moved but whose hashes match (copied or imported).
    pub touched: Vec<String>,
    /// Rows of the first output when cached.
    pub rows: Option<u64>,
    pub seconds: Option<f64>,
    /// The entries are cached but a folder the instance writes besides the cache (a report's
    /// `out`) shows another computation, or none: the instance runs again to rewrite it.
    pub folder_stale: bool,
}

/// The file in a folder an instance writes besides the cache (an `OutputDir` parameter, e.g. a
/// report's `out`) naming the key of the entry the folder shows. Written last, after the folder.
pub const FOLDER_STAMP: &str = ".saeflow-key";

/// Assess every instance. `forced(id)` marks instances the user asked to recompute.
pub fn assess(plan: &Plan, cache: &Cache, history: &History, forced: &dyn Fn(&str) -> bool) -> Vec<Assessment> {
    plan.instances.iter().map(|inst| assess_one(plan, inst, cache, history, forced(&inst.id))).collect()
}

pub fn assess_one(plan: &Plan, inst: &Instance, cache: &Cache, history: &History, forced: bool) -> Assessment {
    let mut a = Assessment {
        status: Status::Cached,
        reason: String::new(),
        damaged: Vec::new(),
        touched: Vec::new(),
        rows: None,
        seconds: None,
        folder_stale: false,
    };
    let mut missing = false;
    for (i, out) in inst.outputs.iter().enumerate() {
        let state = match cache.state(&out.key) {
            // an entry of another table type under this key is never used (a table from elsewhere)
            EntryState::Present(m) | EntryState::Touched(m) if m.table != out.table => {
                EntryState::Damaged(format!("the entry holds a {} table, the plan expects {}", m.table, out.table))
            }
            st => st,
        };
        match state {
            EntryState::Missing => missing = true,
            EntryState::Damaged(why) => a.damaged.push((out.key.clone(), format!("{}: {why}", out.name))),
            EntryState::Present(m) => {
                if i == 0 {
                    a.rows = Some(m.rows);
                    a.seconds = Some(m.seconds);
                }
            }
            EntryState::Touched(m) => match cache.verify(&out.key) {
                Ok(_) => {
                    a.touched.push(out.key.clone());
                    if i == 0 {
                        a.rows = Some(m.rows);
                        a.seconds = Some(m.seconds);
                    }
                }
                Err(why) => a.damaged.push((out.key.clone(), format!("{}: {why}", out.name))),
            },
        }
    }
    if forced {
        a.status = Status::Run;
        a.reason = "forced (--force)".into();
    } else if !a.damaged.is_empty() {
        a.status = Status::Run;
        let what: Vec<&str> = a.damaged.iter().map(|(_, w)| w.as_str()).collect();
        a.reason = format!("cache entry damaged ({}); it will be moved to .corrupt/ and recomputed", what.join("; "));
    } else if missing {
        a.status = Status::Run;
        a.reason = reason(plan, inst, history);
    } else if let Some(why) = stale_folder(plan, inst) {
        // e.g. an edit reverted: the entry is cached again, but the folder shows the edited run
        a.status = Status::Run;
        a.folder_stale = true;
        a.reason = why;
    }
    a
}

/// Why a folder the instance writes besides the cache does not show its cached entry, if so.
fn stale_folder(plan: &Plan, inst: &Instance) -> Option<String> {
    let key = inst.key(None)?;
    let stage = plan.stages.iter().find(|s| s.name == inst.stage)?;
    stage.signature.params.iter().filter(|p| p.ty == ParamType::OutputDir).find_map(|p| {
        let dir = inst.paths.get(p.name)?;
        let rel = inst.params.get(p.name).and_then(|v| v.as_str()).unwrap_or(p.name);
        if !dir.is_dir() {
            return Some(format!("its folder {rel} is not there (removed?); writing it from the cached entry's inputs"));
        }
        match std::fs::read_to_string(dir.join(FOLDER_STAMP)) {
            Ok(shown) if shown.trim() != key => {
                Some(format!("its folder {rel} shows another run; rewriting it from the cached entry's inputs"))
            }
            // stamped with this key; or written by a saeflow from before stamps, taken as it is
            _ => None,
        }
    })
}

/// Why an instance with no cache entry would run, from the last preimage recorded for it.
pub fn reason(plan: &Plan, inst: &Instance, history: &History) -> String {
    let Some(rec) = history.instances.get(&inst.id) else {
        return "never run".into();
    };
    if rec.preimage == inst.preimage {
        return "cache entry missing (removed by gc, or run with another cache)".into();
    }
    describe(plan, inst, &rec.preimage)
}

/// What changed since `old` (an earlier preimage of this instance), in one line:
/// `params changed: method (top5 → top10); input changed: from (pool[layer=6])`. For gathering
/// inputs only the variants whose keys changed are named.
pub fn describe(plan: &Plan, inst: &Instance, old: &serde_json::Value) -> String {
    let diffs = key::diff(old, &inst.preimage);
    let mut params = Vec::new();
    let mut inputs = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut other = Vec::new();
    for d in &diffs {
        if let Some(rest) = d.strip_prefix("params.") {
            let (name, change) = rest.split_once(": ").unwrap_or((rest, ""));
            params.push(format!("{name} ({change})"));
        } else if let Some(rest) = d.strip_prefix("inputs.") {
            let slot = rest.split(['.', ':']).next().unwrap_or(rest).to_string();
            inputs.insert(slot);
        } else if let Some(rest) = d.strip_prefix("external.") {
            files.insert(rest.split(':').next().unwrap_or(rest).to_string());
        } else if let Some(rest) = d.strip_prefix("version: ") {
            other.push(format!("stage version changed ({rest})"));
        } else if let Some(rest) = d.strip_prefix("kind: ") {
            other.push(format!("kind changed ({rest})"));
        } else if d.starts_with("format") {
            other.push("key format changed (new saeflow)".to_string());
        } else {
            other.push(d.clone());
        }
    }
    let mut parts = other;
    if !params.is_empty() {
        parts.push(format!("params changed: {}", params.join(", ")));
    }
    for slot in inputs {
        let from: Vec<String> = match inst.input(&slot) {
            Some(b) if b.many => changed_variants(plan, b, &old["inputs"][&slot]),
            Some(b) => b.items.iter().map(|it| plan.instances[it.instance].id.clone()).collect(),
            None => Vec::new(),
        };
        let shown = if from.len() > 3 { format!("{} and {} more", from[..2].join(", "), from.len() - 2) } else { from.join(", ") };
        parts.push(if shown.is_empty() { format!("input changed: {slot}") } else { format!("input changed: {slot} ({shown})") });
    }
    for f in files {
        parts.push(format!("file changed: {f}"));
    }
    if parts.is_empty() { "key changed".into() } else { parts.join("; ") }
}

/// The variants of a gathering input whose key is new or changed, and those no longer there.
fn changed_variants(plan: &Plan, b: &crate::plan::BoundInput, old: &serde_json::Value) -> Vec<String> {
    let old: std::collections::BTreeMap<String, String> = old
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| (x["coords"].as_str().unwrap_or_default().to_string(), x["key"].as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for it in &b.items {
        let c = crate::spec::canonical_coords(&it.coords);
        if old.get(&c) != Some(&it.key) {
            out.push(plan.instances[it.instance].id.clone());
        }
        seen.insert(c);
    }
    let removed = old.keys().filter(|c| !seen.contains(*c)).count();
    if removed > 0 {
        out.push(format!("{removed} variant(s) no longer gathered"));
    }
    out
}
