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
    /// Where it was computed (absent in entries written before saeflow recorded it). Keys ignore
    /// the machine: the same key computed on another CPU level or device may differ in the last
    /// bits of its floats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_on: Option<ComputedOn>,
}

/// The machine facts a table's floating-point values can depend on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ComputedOn {
    /// `x86_64`, `aarch64`, …
    pub arch: String,
    /// The widest vector instruction set the CPU kernels used (`avx512f`, `avx2+fma`, …).
    pub isa: String,
    /// For model stages: the device and dtype of the forward pass (`cpu f32`, `cuda:0 bf16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl ComputedOn {
    /// This machine, with the device a stage reported (if any).
    pub fn here(device: Option<String>) -> ComputedOn {
        ComputedOn { arch: crate::machine::arch().into(), isa: crate::machine::isa().into(), device }
    }
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

impl Manifest {
    /// What any manifest must be, whoever wrote it: at least one file, the files exactly
    /// `part-00000 … part-N-1` in order, and `rows` the sum of theirs. (Hashes and footers are
    /// checked by `Cache::verify`.)
    pub fn check_layout(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("the manifest lists no file (an entry has at least one part)".into());
        }
        for (i, f) in self.files.iter().enumerate() {
            let want = super::table::part_name(i);
            if f.name != want {
                return Err(format!(
                    "the manifest's file {} is '{}', expected '{want}' (parts are numbered 0..{})",
                    i + 1,
                    f.name,
                    self.files.len()
                ));
            }
        }
        let sum: u64 = self.files.iter().map(|f| f.rows).sum();
        if sum != self.rows {
            return Err(format!("the manifest says {} rows, its files {sum}", self.rows));
        }
        Ok(())
    }
}
