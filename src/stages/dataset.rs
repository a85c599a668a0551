//! `dataset`: list a labelled image set (CIFAR-100, an image folder, a Parquet file, or synthetic
//! shapes) and write its records as a `dataset` table. Nothing is decoded here: the extraction
//! stage opens the same source and decodes images lazily by id, recording unreadable ones.
//!
//! Table `images` (type `dataset`): `image_id u32, label u16, label_name utf8, split utf8,
//! source utf8`, one row per selected record in image-id order, in parts of [`PART_ROWS`] rows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, UInt16Array, UInt32Array};

use crate::data::synthetic::{MAX_CLASSES, SyntheticSpec};
use crate::data::{self, CifarLabels, DatasetSpec, ImageSource, Selection, SplitChoice};
use crate::engine::EngineError;
use crate::engine::job::{Job, Member};
use crate::engine::stage::Stage;
use crate::plan::params::{Params, choice, params};
use crate::plan::signature::{ParamProblem, ParamType, Signature};
use crate::spec::Value;
use crate::tables::TableType;

/// Rows per part of the `images` table.
pub const PART_ROWS: usize = 10_000;

pub struct Dataset;

choice! {
    /// The on-disk layout of a dataset.
    pub enum Format { Cifar100 = "cifar100", ImageFolder = "imagefolder", Parquet = "parquet", Synthetic = "synthetic" }
}

choice! {
    /// Which of a dataset's records to list.
    pub enum Which { Train = "train", Test = "test", Predefined = "predefined" }
}

choice! {
    /// CIFAR-100's label sets.
    pub enum Labels { Fine = "fine", Coarse = "coarse" }
}

params! {
    /// `dataset`'s parameters.
    pub struct DatasetParams {
        /// the on-disk layout: cifar100, imagefolder, parquet or synthetic
        pub format: Format, Format::param_type(), required;
        /// the dataset's file or folder (not for synthetic)
        pub path: Option<PathBuf>, ParamType::InputPath, default(Value::Null);
        /// train, test, or predefined (both, each keeping its official role)
        pub split: Which, Which::param_type(), default("predefined");
        /// keep at most this many records per class (per split)
        pub per_class: Option<u64>, ParamType::min(1), default(Value::Null);
        /// keep at most this many records per split (after per_class)
        pub limit: Option<u64>, ParamType::min(1), default(Value::Null);
        /// a seed: per_class/limit draw seeded random records instead of the first ones
        pub sample: Option<u64>, ParamType::min(0), default(Value::Null);
        /// cifar100: fine (100 classes) or coarse (20) labels
        pub labels: Labels, Labels::param_type(), default("fine");
        /// imagefolder: a `<folder> <name>` file (e.g. LOC_synset_mapping.txt)
        pub label_names: Option<PathBuf>, ParamType::InputPath, default(Value::Null);
        /// parquet: the image column (binary, or struct with `bytes`)
        pub image_column: String, ParamType::Str, default("image");
        /// parquet: the label column (integers or strings)
        pub label_column: String, ParamType::Str, default("label");
        /// synthetic: number of (colour, shape) classes
        pub classes: u32, ParamType::range(1, i64::from(MAX_CLASSES)), default(6);
        /// synthetic: train images per class
        pub train_per_class: u32, ParamType::range(0, 1_000_000), default(40);
        /// synthetic: test images per class
        pub test_per_class: u32, ParamType::range(0, 1_000_000), default(10);
        /// synthetic: width and height in pixels
        pub image_size: u32, ParamType::range(8, 4096), default(64);
        /// synthetic: the seed images are drawn from
        pub seed: u64, ParamType::min(0), default(0);
    }
}

/// Which format reads each format-specific parameter, and its default.
const FORMAT_PARAMS: &[(&str, &str)] = &[
    ("labels", "cifar100"),
    ("label_names", "imagefolder"),
    ("image_column", "parquet"),
    ("label_column", "parquet"),
    ("classes", "synthetic"),
    ("train_per_class", "synthetic"),
    ("test_per_class", "synthetic"),
    ("image_size", "synthetic"),
];

/// Plan-time checks across parameters, so a wrong combination fails in `saeflow plan`.
fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    let format = p.get("format").and_then(Value::as_str).unwrap_or_default();
    let set = |k: &str| p.get(k).is_some_and(|v| *v != Value::Null);
    if format == "synthetic" && set("path") {
        return Err(ParamProblem {
            param: "path",
            message: "synthetic datasets are drawn by saeflow and read no path".into(),
            help: "remove `path`".into(),
        });
    }
    if format != "synthetic" && !set("path") {
        return Err(ParamProblem {
            param: "format",
            message: format!("a {format} dataset needs `path`"),
            help: "add `path: <file or folder>` (relative to the project folder)".into(),
        });
    }
    if set("sample") && !set("per_class") && !set("limit") {
        return Err(ParamProblem {
            param: "sample",
            message: "`sample` draws per_class/limit records at random, but neither is set".into(),
            help: "add `per_class: N` or `limit: N`, or remove `sample`".into(),
        });
    }
    let defaults: BTreeMap<&str, Option<Value>> = DatasetParams::specs().into_iter().map(|ps| (ps.name, ps.default)).collect();
    for (name, owner) in FORMAT_PARAMS {
        if *owner != format && p.get(*name) != defaults.get(name).cloned().flatten().as_ref() {
            return Err(ParamProblem {
                param: name,
                message: format!("only {owner} datasets read `{name}`, this one is {format}"),
                help: format!("remove `{name}`"),
            });
        }
    }
    Ok(())
}

impl Stage for Dataset {
    fn signature(&self) -> Signature {
        Signature::new(
            "dataset",
            1,
            "a labelled image set (cifar100, imagefolder, parquet, synthetic) as a table of records; images are decoded later, by id",
        )
        .params::<DatasetParams>()
        .output("images", TableType::Dataset, "image_id u32, label u16, label_name utf8, split utf8, source utf8")
        .validate(validate)
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let (spec, selection) = parse(m)?;
            let source = data::open(&spec).map_err(|e| EngineError::Stage(format!("{}: {e}", m.id)))?;
            let ids = data::select::select(source.records(), &selection);
            let parts = ids.len().div_ceil(PART_ROWS).max(1);
            job.progress.add_total(ids.len() as u64, "records");
            let out = m.output("images")?;
            out.set_parts(parts)?;
            for p in 0..parts {
                let chunk = &ids[(p * PART_ROWS).min(ids.len())..((p + 1) * PART_ROWS).min(ids.len())];
                if !out.has_part(p) {
                    out.write_part(p, TableType::Dataset.schema(), &[batch(source.as_ref(), chunk)?])?;
                }
                job.progress.advance(chunk.len() as u64);
            }
        }
        Ok(())
    }
}

/// The rows of `ids`.
pub fn batch(source: &dyn ImageSource, ids: &[u32]) -> Result<RecordBatch, EngineError> {
    let recs = source.records();
    let rec = |id: u32| &recs[id as usize];
    Ok(RecordBatch::try_new(
        TableType::Dataset.schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(ids.iter().copied())),
            Arc::new(UInt16Array::from_iter_values(ids.iter().map(|&i| rec(i).label))),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| source.label_name(rec(i))))),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| rec(i).split.as_str()))),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| source.source(i)))),
        ],
    )?)
}

/// A member's parameters as a dataset spec and a selection.
pub fn parse(m: &Member) -> Result<(DatasetSpec, Selection), EngineError> {
    parse_params(&m.id, &m.params, &m.paths)
}

/// A `dataset` instance's resolved parameters and paths (its own, or those a reader of its table
/// gets through [`crate::engine::job::TableInput::producer`]) as a dataset spec and a selection.
pub fn parse_params(
    id: &str,
    params: &BTreeMap<String, Value>,
    paths: &BTreeMap<String, PathBuf>,
) -> Result<(DatasetSpec, Selection), EngineError> {
    let bad = |msg: String| EngineError::Stage(format!("{id}: {msg}"));
    let p = DatasetParams::from_values(params, paths).map_err(bad)?;
    let format = p.format.as_str();
    let need_path =
        || p.path.clone().ok_or_else(|| bad(format!("format '{format}' reads files: set `path` to the dataset's file or folder")));
    if p.label_names.is_some() && p.format != Format::ImageFolder {
        return Err(bad(format!("`label_names` is for format imagefolder, not '{format}'; remove it")));
    }
    let spec = match p.format {
        Format::Cifar100 => DatasetSpec::Cifar100 {
            path: need_path()?,
            labels: if p.labels == Labels::Coarse { CifarLabels::Coarse } else { CifarLabels::Fine },
        },
        Format::ImageFolder => DatasetSpec::ImageFolder { path: need_path()?, synsets: p.label_names.clone() },
        Format::Parquet => {
            DatasetSpec::Parquet { path: need_path()?, image_column: p.image_column.clone(), label_column: p.label_column.clone() }
        }
        Format::Synthetic => {
            if p.path.is_some() {
                return Err(bad("format synthetic generates its images: remove `path`".into()));
            }
            DatasetSpec::Synthetic(SyntheticSpec {
                classes: p.classes,
                train_per_class: p.train_per_class,
                test_per_class: p.test_per_class,
                size: p.image_size,
                seed: p.seed,
            })
        }
    };
    let split = match p.split {
        Which::Train => SplitChoice::Train,
        Which::Test => SplitChoice::Test,
        Which::Predefined => SplitChoice::Predefined,
    };
    let per_class = p.per_class.map(|n| n.min(u64::from(u32::MAX)) as u32);
    let limit = p.limit.map(|n| n.min(u64::from(u32::MAX)) as u32);
    let sample = p.sample;
    if sample.is_some() && per_class.is_none() && limit.is_none() {
        return Err(bad("`sample` draws records for `per_class` or `limit`, and neither is set; set one, or remove `sample`".into()));
    }
    Ok((spec, Selection { split, per_class, limit, sample }))
}
