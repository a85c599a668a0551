//! `dataset`: list a labelled image set (CIFAR-100, an image folder, a Parquet file, or synthetic
//! shapes) and write its records as a `dataset` table. Nothing is decoded here: the extraction
//! stage opens the same source and decodes images lazily by id, recording unreadable ones.
//!
//! Table `images` (type `dataset`): `image_id u32, label u16, label_name utf8, split utf8,
//! source utf8`, one row per selected record in image-id order, in parts of [`PART_ROWS`] rows.

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, UInt16Array, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::engine::stage::Stage;
use std::collections::BTreeMap;

use crate::data::synthetic::{MAX_CLASSES, SyntheticSpec};
use crate::data::{self, CifarLabels, DatasetSpec, ImageSource, Selection, SplitChoice};
use crate::engine::EngineError;
use crate::engine::job::{Job, Member};
use crate::plan::signature::{ParamProblem, ParamType, Signature, output, param};
use crate::spec::Value;

/// Rows per part of the `images` table.
pub const PART_ROWS: usize = 10_000;

pub const FORMATS: [&str; 4] = ["cifar100", "imagefolder", "parquet", "synthetic"];

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("label", DataType::UInt16, false),
        Field::new("label_name", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
    ]))
}

pub struct Dataset;

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
    let defaults: BTreeMap<&str, Option<Value>> = Dataset.signature().params.into_iter().map(|ps| (ps.name, ps.default)).collect();
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

fn opt_int(min: i64, max: Option<i64>) -> ParamType {
    ParamType::Int { min: Some(min), max }
}

impl Stage for Dataset {
    fn signature(&self) -> Signature {
        let null = || Some(Value::Null);
        let int = |i: i64| Some(Value::Int(i));
        let s = |v: &str| Some(Value::Str(v.into()));
        Signature {
            kind: "dataset",
            version: 1,
            doc: "a labelled image set (cifar100, imagefolder, parquet, synthetic) as a table of records; images are decoded later, by id",
            inputs: vec![],
            params: vec![
                param(
                    "format",
                    ParamType::Choice(FORMATS.to_vec()),
                    None,
                    "the on-disk layout: cifar100, imagefolder, parquet or synthetic",
                ),
                param("path", ParamType::InputPath, null(), "the dataset's file or folder (not for synthetic)"),
                param(
                    "split",
                    ParamType::Choice(vec!["train", "test", "predefined"]),
                    s("predefined"),
                    "train, test, or predefined (both, each keeping its official role)",
                ),
                param("per_class", opt_int(1, None), null(), "keep at most this many records per class (per split)"),
                param("limit", opt_int(1, None), null(), "keep at most this many records per split (after per_class)"),
                param("sample", opt_int(0, None), null(), "a seed: per_class/limit draw seeded random records instead of the first ones"),
                param("labels", ParamType::Choice(vec!["fine", "coarse"]), s("fine"), "cifar100: fine (100 classes) or coarse (20) labels"),
                param("label_names", ParamType::InputPath, null(), "imagefolder: a `<folder> <name>` file (e.g. LOC_synset_mapping.txt)"),
                param("image_column", ParamType::Str, s("image"), "parquet: the image column (binary, or struct with `bytes`)"),
                param("label_column", ParamType::Str, s("label"), "parquet: the label column (integers or strings)"),
                param("classes", opt_int(1, Some(i64::from(MAX_CLASSES))), int(6), "synthetic: number of (colour, shape) classes"),
                param("train_per_class", opt_int(0, Some(1_000_000)), int(40), "synthetic: train images per class"),
                param("test_per_class", opt_int(0, Some(1_000_000)), int(10), "synthetic: test images per class"),
                param("image_size", opt_int(8, Some(4096)), int(64), "synthetic: width and height in pixels"),
                param("seed", opt_int(0, None), int(0), "synthetic: the seed images are drawn from"),
            ],
            open_params: false,
            outputs: vec![output("images", "dataset", "image_id u32, label u16, label_name utf8, split utf8, source utf8")],
            fuse_axes: vec![],
            validate: Some(validate),
            estimate: None,
            check_files: None,
        }
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
                    out.write_part(p, schema(), &[batch(source.as_ref(), chunk)?])?;
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
        schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(ids.iter().copied())),
            Arc::new(UInt16Array::from_iter_values(ids.iter().map(|&i| rec(i).label))),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| source.label_name(rec(i))))),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| rec(i).split.as_str()))),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| source.source(i)))),
        ],
    )?)
}

fn str_param<'a>(m: &'a Member, name: &str) -> Result<&'a str, EngineError> {
    m.param(name)?.as_str().ok_or_else(|| EngineError::Stage(format!("{}: parameter '{name}' is not a string", m.id)))
}

fn opt_u64(m: &Member, name: &str) -> Result<Option<u64>, EngineError> {
    match m.param(name)? {
        Value::Null => Ok(None),
        v => {
            v.as_i64().map(|i| Some(i as u64)).ok_or_else(|| EngineError::Stage(format!("{}: parameter '{name}' is not an integer", m.id)))
        }
    }
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
    paths: &BTreeMap<String, std::path::PathBuf>,
) -> Result<(DatasetSpec, Selection), EngineError> {
    let m = &Member {
        id: id.to_string(),
        coords: Default::default(),
        params: params.clone(),
        paths: paths.clone(),
        inputs: vec![],
        outputs: vec![],
    };
    let bad = |msg: String| EngineError::Stage(format!("{}: {msg}", m.id));
    let format = str_param(m, "format")?;
    let path = m.paths.get("path").cloned();
    let need_path =
        || path.clone().ok_or_else(|| bad(format!("format '{format}' reads files: set `path` to the dataset's file or folder")));
    if m.paths.contains_key("label_names") && format != "imagefolder" {
        return Err(bad(format!("`label_names` is for format imagefolder, not '{format}'; remove it")));
    }
    let spec = match format {
        "cifar100" => DatasetSpec::Cifar100 {
            path: need_path()?,
            labels: if str_param(m, "labels")? == "coarse" { CifarLabels::Coarse } else { CifarLabels::Fine },
        },
        "imagefolder" => DatasetSpec::ImageFolder { path: need_path()?, synsets: m.paths.get("label_names").cloned() },
        "parquet" => DatasetSpec::Parquet {
            path: need_path()?,
            image_column: str_param(m, "image_column")?.to_string(),
            label_column: str_param(m, "label_column")?.to_string(),
        },
        "synthetic" => {
            if path.is_some() {
                return Err(bad("format synthetic generates its images: remove `path`".into()));
            }
            DatasetSpec::Synthetic(SyntheticSpec {
                classes: m.int("classes")? as u32,
                train_per_class: m.int("train_per_class")? as u32,
                test_per_class: m.int("test_per_class")? as u32,
                size: m.int("image_size")? as u32,
                seed: m.int("seed")? as u64,
            })
        }
        other => return Err(bad(format!("unknown format '{other}'; expected one of {}", FORMATS.join(", ")))),
    };
    let split = match str_param(m, "split")? {
        "train" => SplitChoice::Train,
        "test" => SplitChoice::Test,
        _ => SplitChoice::Predefined,
    };
    let per_class = opt_u64(m, "per_class")?.map(|n| n.min(u64::from(u32::MAX)) as u32);
    let limit = opt_u64(m, "limit")?.map(|n| n.min(u64::from(u32::MAX)) as u32);
    let sample = opt_u64(m, "sample")?;
    if sample.is_some() && per_class.is_none() && limit.is_none() {
        return Err(bad("`sample` draws records for `per_class` or `limit`, and neither is set; set one, or remove `sample`".into()));
    }
    Ok((spec, Selection { split, per_class, limit, sample }))
}
