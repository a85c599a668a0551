//! `clean`: drop SAE features that fire on too many images (they say nothing about a class).
//!
//! A feature *occurs* in an image when it is some token's top-1 feature there (`occurrence: top1`,
//! the original authors' definition; top-1 by value, ties to the lower feature id) or when it is
//! active on any token (`occurrence: any`). Features occurring in more than `max_images` images are
//! dropped: an integer is a count (the post used 1000 of 10,000), a number in (0, 1) a fraction of
//! the images present in the codes.
//!
//! Outputs `keep` (the kept features, for `pool`'s `keep` input) and `stats`: images, unique
//! features before and after, dropped, and how many images (and what fraction) still have at
//! least one kept feature occurring — the numbers the authors report per layer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Float64Array, RecordBatch, UInt16Array, UInt32Array, UInt64Array};

use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::plan::params::{FromParam, choice, params, wrong};
use crate::plan::signature::{ParamProblem, ParamType, Signature, input};
use crate::spec::Value;
use crate::tables::{TableType, column};

pub struct Clean;

choice! {
    /// When a feature occurs in an image (`clean`, `class_features`).
    pub enum Occurrence {
        /// some token's top-1 feature (the authors')
        Top1 = "top1",
        /// active on any token
        Any = "any",
    }
}

/// `max_images`: a count of images, or a fraction of the images present.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxImages {
    Count(i64),
    Fraction(f64),
}

impl FromParam for MaxImages {
    fn from_param(name: &str, value: Option<&Value>, _: Option<&std::path::PathBuf>) -> Result<Self, String> {
        match value {
            Some(Value::Int(n)) => Ok(MaxImages::Count(*n)),
            Some(Value::Float(f)) => Ok(MaxImages::Fraction(*f)),
            _ => Err(wrong(name, "a count ≥ 1 or a fraction in (0, 1)", value)),
        }
    }
}

params! {
    /// `clean`'s parameters.
    pub struct CleanParams {
        /// drop features occurring in more images: a count (1000) or a fraction (0.1)
        pub max_images: MaxImages, ParamType::Any, default(0.1);
        /// top1: a token's top feature (the authors'); any: any activation
        pub occurrence: Occurrence, Occurrence::param_type(), default("top1");
    }
}

fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    match p.get("max_images") {
        Some(Value::Int(n)) if *n >= 1 => Ok(()),
        Some(Value::Float(f)) if *f > 0.0 && *f < 1.0 => Ok(()),
        other => Err(ParamProblem {
            param: "max_images",
            message: format!("expected a count ≥ 1 or a fraction in (0, 1), got {}", other.map(|v| v.to_string()).unwrap_or_default()),
            help: "e.g. `max_images: 1000` (the post) or `max_images: 0.1`".into(),
        }),
    }
}

/// Per image (every image present in the codes): the features that occur in it — each token's
/// top-1 feature (value descending, ties to the lower id) when `top1`, else every active feature.
pub(crate) fn occurrences(src: &crate::engine::job::TableInput, top1: bool) -> Result<BTreeMap<u32, BTreeSet<u32>>, EngineError> {
    let mut occurs: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let mut best: BTreeMap<(u32, u16), (f32, u32)> = BTreeMap::new();
    for b in src.read() {
        let b = b?;
        let ids = column::<UInt32Array>(&b, "image_id", &src.instance)?;
        let toks = column::<UInt16Array>(&b, "token", &src.instance)?;
        let feats = column::<UInt32Array>(&b, "feature", &src.instance)?;
        let vals = column::<Float32Array>(&b, "value", &src.instance)?;
        for i in 0..b.num_rows() {
            let (img, f, v) = (ids.value(i), feats.value(i), vals.value(i));
            occurs.entry(img).or_default();
            if v <= 0.0 {
                continue;
            }
            if top1 {
                let e = best.entry((img, toks.value(i))).or_insert((v, f));
                if v > e.0 || (v == e.0 && f < e.1) {
                    *e = (v, f);
                }
            } else {
                occurs.entry(img).or_default().insert(f);
            }
        }
    }
    for ((img, _), (_, f)) in best {
        occurs.entry(img).or_default().insert(f);
    }
    Ok(occurs)
}

impl Stage for Clean {
    fn signature(&self) -> Signature {
        Signature::new(
            "clean",
            1,
            "drop features that occur in more than max_images images (top-1 per token: its highest value, ties to the lower feature id; or any activation); report what is left",
        )
        .input(input("from", &[TableType::Codes], "per-token SAE codes"))
        .params::<CleanParams>()
        .output("keep", TableType::Features, "feature u32: the features kept")
        .output(
            "stats",
            TableType::CleanStats,
            "images, unique_before, unique_after, dropped, images_with_features, fraction_images_with_features, max_images",
        )
        .validate(validate)
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let p: CleanParams = m.params()?;
            let top1 = p.occurrence == Occurrence::Top1;
            let occurs = occurrences(m.input("from")?, top1)?;
            let images = occurs.len() as u64;
            let mut count: BTreeMap<u32, u64> = BTreeMap::new();
            for fs in occurs.values() {
                for f in fs {
                    *count.entry(*f).or_insert(0) += 1;
                }
            }
            let max = match p.max_images {
                MaxImages::Count(n) => n as f64,
                MaxImages::Fraction(f) => f * images as f64,
            };
            let keep: Vec<u32> = count.iter().filter(|(_, c)| **c as f64 <= max).map(|(f, _)| *f).collect();
            let kept: BTreeSet<u32> = keep.iter().copied().collect();
            let with = occurs.values().filter(|fs| fs.iter().any(|f| kept.contains(f))).count() as u64;
            let keep_batch = RecordBatch::try_new(TableType::Features.schema(), vec![Arc::new(UInt32Array::from(keep.clone()))])?;
            m.output("keep")?.write_part(0, keep_batch.schema(), &[keep_batch])?;
            let u = |x: u64| Arc::new(UInt64Array::from(vec![x])) as ArrayRef;
            let f = |x: f64| Arc::new(Float64Array::from(vec![x])) as ArrayRef;
            let stats = RecordBatch::try_new(
                TableType::CleanStats.schema(),
                vec![
                    u(images),
                    u(count.len() as u64),
                    u(keep.len() as u64),
                    u((count.len() - keep.len()) as u64),
                    u(with),
                    f(if images > 0 { with as f64 / images as f64 } else { 0.0 }),
                    f(max),
                ],
            )?;
            m.output("stats")?.write_part(0, stats.schema(), &[stats])?;
        }
        Ok(())
    }
}
