//! Test harness: a temporary project (pipelines/ + cache/) and the saeflow binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not json ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// The binary the tests drive: `saeflow-testkit` (saeflow's command line with the test-only `mock.*`
/// kinds, tests/testkit/), or `SAEFLOW_BIN` (a testkit binary carried to another machine with the
/// test binaries, e.g. a CUDA build on the GPU host).
pub fn bin() -> String {
    std::env::var("SAEFLOW_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_saeflow-testkit").to_string())
}

/// The `saeflow` binary users get (built-in kinds only).
pub fn user_bin() -> String {
    env!("CARGO_BIN_EXE_saeflow").to_string()
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        Project { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache(&self) -> PathBuf {
        self.root().join("cache")
    }

    pub fn log(&self) -> PathBuf {
        self.root().join("mock.log")
    }

    /// Write `pipelines/<name>.yaml` and return its relative path.
    pub fn pipeline(&self, name: &str, yaml: &str) -> String {
        let rel = format!("pipelines/{name}.yaml");
        std::fs::write(self.root().join(&rel), yaml).unwrap();
        rel
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.root()).args(args).env("SAEFLOW_MOCK_LOG", self.log()).env_remove("SAEFLOW_CACHE").env_remove("SAEFLOW_FAULT");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run saeflow"))
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().expect("run saeflow"))
    }

    /// Ids the mock stages logged as computed since the last call (and clear the log).
    pub fn executed(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let _ = std::fs::remove_file(self.log());
        text.lines().filter(|l| !l.starts_with("fused-run ")).map(str::to_string).collect()
    }

    /// Ids the mock stages logged so far, without clearing the log (to watch a run in progress).
    pub fn executed_so_far(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        text.lines().filter(|l| !l.starts_with("fused-run ")).map(str::to_string).collect()
    }

    /// Raw log lines (including `fused-run` records).
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log()).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// `plan --json` as (instance → key).
    pub fn keys(&self, file: &str) -> std::collections::BTreeMap<String, String> {
        let r = self.run(&["plan", file, "--json"]);
        assert!(r.code == 0 || r.code == 10, "plan failed: {}", r.stderr);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["instance"].as_str().unwrap().to_string(), o["key"].as_str().unwrap().to_string()))
            .collect()
    }
}

/// Sorted copy, for set comparisons with readable failure output.
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every file under `dir` (relative path → bytes), for byte-identity checks.
pub fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(base: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Output name → key of one instance, from `plan --json`.
pub fn instance_outputs(p: &Project, file: &str, instance: &str) -> std::collections::BTreeMap<String, String> {
    let plan = p.run(&["plan", file, "--json"]).json();
    let inst = plan.as_array().unwrap().iter().find(|o| o["instance"] == instance).unwrap_or_else(|| panic!("no {instance}"));
    inst["outputs"].as_array().unwrap().iter().map(|o| (o["name"].as_str().unwrap().into(), o["key"].as_str().unwrap().into())).collect()
}

/// Every part of a published cache entry, in part order.
pub fn read_entry(p: &Project, key: &str) -> Vec<arrow_array::RecordBatch> {
    let dir = p.cache().join(key);
    let mut parts: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|f| {
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(std::fs::File::open(f).unwrap(), 8192)
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A column of a batch, downcast; panics naming a missing column.
pub fn column<'a, T: 'static>(b: &'a arrow_array::RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).as_any().downcast_ref::<T>().unwrap()
}

/// The manifest `saeflow export` wrote under `out/_saeflow/` for the table of `stage`.
pub fn exported_manifest(out: &Path, stage: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(out.join("_saeflow"))
        .expect("an export has a _saeflow folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            m["stage"] == stage
        })
        .collect();
    assert_eq!(found.len(), 1, "one exported manifest of stage {stage}: {found:?}");
    found[0].clone()
}

/// Every batch of one Parquet file.
pub fn read_parquet(path: &Path) -> Vec<arrow_array::RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(std::fs::File::open(path).unwrap(), 8192)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}
