//! `manifest.json`: what an entry is, how it was made, and what its files must hash to.

use serde::{Deserialize, Serialize};

/// Written into every entry next to its Parquet parts. Timings live here, never in tables.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub saeflow_version: String,
    pub key: String,
    /// The stage and instance that first produced this entry (content-addressed: another
    /// pipeline may reach the same key under another name).
    pub stage: String,
    pub instance: String,
    pub kind: String,
    pub stage_version: u32,
    pub output: String,
    pub table: String,
    pub coords: serde_json::Value,
    /// Everything the key was computed from.
    pub preimage: serde_json::Value,
    /// slot → [{instance, output, key}]
    pub inputs: serde_json::Value,
    pub rows: u64,
    pub files: Vec<FileRecord>,
    /// Seconds since the Unix epoch when the entry was published.
    pub created_unix: u64,
    /// Wall time of the computation that produced it (shared by fused members).
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub name: String,
    pub size: u64,
    pub mtime_ns: u64,
    pub blake3: String,
    pub rows: u64,
}

pub const MANIFEST: &str = "manifest.json";
