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

use arrow_array::{Float32Array, Float64Array, RecordBatch, UInt16Array, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};

use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::plan::signature::{ParamProblem, ParamType, Signature, input, output, param};
use crate::spec::Value;
use crate::tables::column;

pub struct Clean;

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
        Signature {
            kind: "clean",
            version: 1,
            doc: "drop features that occur in more than max_images images (top-1 per token, or any activation); report what is left",
            inputs: vec![input("from", &["codes"], "per-token SAE codes")],
            params: vec![
                param(
                    "max_images",
                    ParamType::Any,
                    Some(Value::Float(0.1)),
                    "drop features occurring in more images: a count (1000) or a fraction (0.1)",
                ),
                param(
                    "occurrence",
                    ParamType::Choice(vec!["top1", "any"]),
                    Some(Value::Str("top1".into())),
                    "top1: a token's top feature (the authors'); any: any activation",
                ),
            ],
            open_params: false,
            outputs: vec![
                output("keep", "features", "feature u32: the features kept"),
                output(
                    "stats",
                    "clean_stats",
                    "images, unique_before, unique_after, dropped, images_with_features, fraction_images_with_features, max_images",
                ),
            ],
            fuse_axes: vec![],
            validate: Some(validate),
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let top1 = m.param("occurrence")?.as_str() == Some("top1");
            let occurs = occurrences(m.input("from")?, top1)?;
            let images = occurs.len() as u64;
            let mut count: BTreeMap<u32, u64> = BTreeMap::new();
            for fs in occurs.values() {
                for f in fs {
                    *count.entry(*f).or_insert(0) += 1;
                }
            }
            let max = match m.param("max_images")? {
                Value::Int(n) => *n as f64,
                Value::Float(f) => f * images as f64,
                _ => 0.0,
            };
            let keep: Vec<u32> = count.iter().filter(|(_, c)| **c as f64 <= max).map(|(f, _)| *f).collect();
            let kept: BTreeSet<u32> = keep.iter().copied().collect();
            let with = occurs.values().filter(|fs| fs.iter().any(|f| kept.contains(f))).count() as u64;
            let keep_schema = Arc::new(Schema::new(vec![Field::new("feature", DataType::UInt32, false)]));
            let keep_batch = RecordBatch::try_new(keep_schema.clone(), vec![Arc::new(UInt32Array::from(keep.clone()))])?;
            m.output("keep")?.write_part(0, keep_schema, &[keep_batch])?;
            let u = |x: u64| Arc::new(UInt64Array::from(vec![x])) as arrow_array::ArrayRef;
            let f = |x: f64| Arc::new(Float64Array::from(vec![x])) as arrow_array::ArrayRef;
            let stats = RecordBatch::try_from_iter(vec![
                ("images", u(images)),
                ("unique_before", u(count.len() as u64)),
                ("unique_after", u(keep.len() as u64)),
                ("dropped", u((count.len() - keep.len()) as u64)),
                ("images_with_features", u(with)),
                ("fraction_images_with_features", f(if images > 0 { with as f64 / images as f64 } else { 0.0 })),
                ("max_images", f(max)),
            ])?;
            m.output("stats")?.write_part(0, stats.schema(), &[stats])?;
        }
        Ok(())
    }
}
