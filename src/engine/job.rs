//! What a stage sees when it runs: its members (one instance, or several fused ones), each with
//! typed parameters, input tables to stream, and output writers that write parts. Stages never
//! see the cache layout, keys' folders or the pipeline file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::EngineError;
use super::manifest::Manifest;
use super::table::{self, PartWriter, part_index, part_name};
use crate::progress::Progress;
use crate::spec::{Coords, Value};

/// One run of a stage: one or more members computed together.
pub struct Job<'a> {
    pub members: Vec<Member>,
    pub progress: &'a dyn Progress,
    /// The cache folder. A stage may keep its own cache of answers from outside (Neuronpedia's
    /// explanations) in a folder of it whose name is no key and starts with no dot
    /// (`<cache>/neuronpedia/`); entries and `.tmp/` stay the engine's.
    pub cache_root: PathBuf,
    /// Warnings for the run log, one line each, shown after the job (`note: …`).
    pub notes: Vec<String>,
}

/// One stage instance to compute.
pub struct Member {
    pub id: String,
    pub coords: Coords,
    pub params: BTreeMap<String, Value>,
    /// Files and folders named by path parameters, resolved.
    pub paths: BTreeMap<String, PathBuf>,
    pub inputs: Vec<(String, Vec<TableInput>)>,
    pub outputs: Vec<OutputWriter>,
    /// The device and dtype a model stage computed on (`cpu f32`, `cuda:0 bf16`), for the
    /// manifest's `computed_on`; `None` for stages that run no model.
    pub device: Option<String>,
}

impl Member {
    /// The member's parameters as the kind's typed struct (see [`crate::plan::params::params!`]); the error
    /// names the instance and the parameter.
    pub fn params<P: crate::plan::params::Params>(&self) -> Result<P, EngineError> {
        P::from_values(&self.params, &self.paths).map_err(|e| EngineError::Stage(format!("{}: {e}", self.id)))
    }

    /// The tables bound to an input slot (empty when the optional slot is unset).
    pub fn inputs(&self, slot: &str) -> &[TableInput] {
        self.inputs.iter().find(|(s, _)| s == slot).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    }

    /// The single table of a one-variant input slot.
    pub fn input(&self, slot: &str) -> Result<&TableInput, EngineError> {
        self.inputs(slot).first().ok_or_else(|| EngineError::Stage(format!("{}: input '{slot}' is not bound", self.id)))
    }

    pub fn output(&mut self, name: &str) -> Result<&mut OutputWriter, EngineError> {
        let id = self.id.clone();
        self.outputs
            .iter_mut()
            .find(|o| o.name == name)
            .ok_or_else(|| EngineError::Stage(format!("{id}: the kind declares no output '{name}'")))
    }
}

/// Who wrote an input table.
#[derive(Clone, Debug, Default)]
pub struct Producer {
    pub kind: &'static str,
    pub params: BTreeMap<String, Value>,
    pub paths: BTreeMap<String, PathBuf>,
}

/// A published table to read: its parts in order, streamed as record batches.
#[derive(Clone, Debug)]
pub struct TableInput {
    pub instance: String,
    /// The producing instance's resolved parameters and paths: a stage that reads a `dataset`
    /// table reopens the same source with them (the table lists records; images stay on disk).
    pub producer: Arc<Producer>,
    pub coords: Coords,
    pub key: String,
    pub dir: PathBuf,
    pub manifest: Arc<Manifest>,
}

impl TableInput {
    pub fn rows(&self) -> u64 {
        self.manifest.rows
    }

    pub fn num_parts(&self) -> usize {
        self.manifest.files.len()
    }

    pub fn part_path(&self, i: usize) -> PathBuf {
        self.dir.join(&self.manifest.files[i].name)
    }

    /// Record batches of part `i`.
    pub fn read_part(&self, i: usize) -> Result<impl Iterator<Item = Result<RecordBatch, EngineError>> + use<>, EngineError> {
        table::read_file(&self.part_path(i))
    }

    /// Record batches of every part, in part order.
    pub fn read(&self) -> impl Iterator<Item = Result<RecordBatch, EngineError>> + '_ {
        (0..self.num_parts()).flat_map(move |i| match self.read_part(i) {
            Ok(it) => Box::new(it) as Box<dyn Iterator<Item = _>>,
            Err(e) => Box::new(std::iter::once(Err(e))),
        })
    }

    pub fn schema(&self) -> Result<SchemaRef, EngineError> {
        Ok(table::read_footer(&self.part_path(0))?.0)
    }
}

/// Writes one output's parts into its temporary folder. Parts already complete from an earlier,
/// interrupted run are reported by [`OutputWriter::has_part`] so the stage can skip them.
pub struct OutputWriter {
    pub name: String,
    pub instance: String,
    pub(crate) dir: PathBuf,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) expected_parts: Option<usize>,
    pub(crate) fault: Option<usize>,
}

impl OutputWriter {
    pub(crate) fn new(
        name: &str,
        instance: &str,
        dir: &Path,
        metadata: Vec<(String, String)>,
        fault: Option<usize>,
    ) -> Result<Self, EngineError> {
        fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        // a part caught mid-write is garbage; complete parts stay, if their footer reads back
        // (a part renamed into place is complete unless the disk lost it)
        for e in fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name.ends_with(".partial") || name.ends_with(".json") || name.contains(".tmp");
            let unreadable = part_index(&name).is_some() && table::read_footer(&e.path()).is_err();
            if stale || unreadable {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(OutputWriter { name: name.into(), instance: instance.into(), dir: dir.to_path_buf(), metadata, expected_parts: None, fault })
    }

    /// Declare how many parts this output will have (fixed, input-aligned ranges). Parts beyond
    /// it from an older layout are removed.
    pub fn set_parts(&mut self, n: usize) -> Result<(), EngineError> {
        if n == 0 {
            return Err(EngineError::Stage(format!(
                "{}: an output needs at least one part (write an empty part for an empty table)",
                self.instance
            )));
        }
        self.expected_parts = Some(n);
        for i in self.complete_parts() {
            if i >= n {
                let p = self.dir.join(part_name(i));
                fs::remove_file(&p).map_err(|e| EngineError::io(&p, e))?;
            }
        }
        Ok(())
    }

    /// The key of the entry this output becomes (a stage that writes a folder besides the cache
    /// stamps it with this; see `engine::status::FOLDER_STAMP`).
    pub fn key(&self) -> &str {
        self.metadata.iter().find(|(k, _)| k == "saeflow.key").map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// Whether part `i` is already complete (written by an interrupted earlier run).
    pub fn has_part(&self, i: usize) -> bool {
        self.dir.join(part_name(i)).is_file()
    }

    /// Read back part `i` written by this run or an interrupted earlier one (a stage that
    /// summarises its own parts at the end, after a resume skipped some of them).
    pub fn read_part(&self, i: usize) -> Result<impl Iterator<Item = Result<RecordBatch, EngineError>> + use<>, EngineError> {
        table::read_file(&self.dir.join(part_name(i)))
    }

    /// Start writing part `i` (streaming). The metadata of the entry goes into the footer.
    pub fn part(&mut self, i: usize, schema: SchemaRef) -> Result<PartGuard<'_>, EngineError> {
        if let Some(n) = self.expected_parts
            && i >= n
        {
            return Err(EngineError::Stage(format!("{}: part {i} is beyond the {n} declared parts", self.instance)));
        }
        let mut meta = self.metadata.clone();
        meta.push(("saeflow.part".into(), i.to_string()));
        let writer = PartWriter::create(&self.dir, i, schema, &meta)?;
        Ok(PartGuard { writer, index: i, output: self })
    }

    /// Write part `i` from whole batches.
    pub fn write_part(&mut self, i: usize, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64, EngineError> {
        let mut p = self.part(i, schema)?;
        for b in batches {
            p.write(b)?;
        }
        p.finish()
    }

    pub(crate) fn complete_parts(&self) -> Vec<usize> {
        let mut v: Vec<usize> = fs::read_dir(&self.dir)
            .map(|rd| rd.flatten().filter_map(|e| part_index(&e.file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }
}

/// A part being written; `finish` makes it complete.
pub struct PartGuard<'a> {
    writer: PartWriter,
    index: usize,
    output: &'a OutputWriter,
}

impl PartGuard<'_> {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.writer.write(batch)
    }

    pub fn finish(self) -> Result<u64, EngineError> {
        let rows = self.writer.finish()?;
        if self.output.fault == Some(self.index) {
            // fault injection (SAEFLOW_FAULT): die like a crash, right after this part landed
            eprintln!("saeflow: injected fault after part {} of {}", self.index, self.output.instance);
            std::process::exit(86);
        }
        Ok(rows)
    }
}
