//! `class_features`: for each label, the features that occur in the most of that label's images
//! (occurrence as in `clean`: a token's top-1 feature, or any activation), with the count and the
//! feature's Neuronpedia explanation — the post's "dolphin / cloud" tables ("16k/14117 — 88/100
//! images"). Ties: more images first, then the lower feature id. A feature without an explanation
//! (layer 17 has no Neuronpedia source) gets a null explanation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, UInt16Array, UInt32Array};
use arrow_schema::{DataType, Field, Schema};

use super::Stage;
use super::signature::{InputSlot, Many, ParamProblem, ParamType, Signature, input, output, param};
use crate::data::neuronpedia::{Explanations, split_source};
use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::spec::Value;

pub struct ClassFeatures;

fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    let set = |k: &str| p.get(k).is_some_and(|v| *v != Value::Null);
    if set("explanations") && !set("neuronpedia") {
        return Err(ParamProblem {
            param: "explanations",
            message: "explanations need the Neuronpedia source they belong to".into(),
            help: "add `neuronpedia: gemma-2b/${layer}-res-jb` (modelId/layer)".into(),
        });
    }
    if let Some(Value::Str(s)) = p.get("neuronpedia")
        && let Err(e) = split_source(s)
    {
        return Err(ParamProblem { param: "neuronpedia", message: e, help: "e.g. `neuronpedia: gemma-2b/6-res-jb`".into() });
    }
    Ok(())
}

impl Stage for ClassFeatures {
    fn signature(&self) -> Signature {
        Signature {
            kind: "class_features",
            version: 1,
            doc: "each label's top features by the number of its images they occur in, with counts and Neuronpedia explanations",
            inputs: vec![
                input("codes", &["codes"], "per-token SAE codes"),
                input("labels", &["dataset", "split"], "the images' labels"),
                InputSlot {
                    name: "keep",
                    accepts: vec!["features"],
                    many: Many::One,
                    required: false,
                    doc: "only these features (the output of `clean`)",
                },
            ],
            params: vec![
                param("top_k", ParamType::Int { min: Some(1), max: None }, Some(Value::Int(10)), "features listed per label"),
                param(
                    "occurrence",
                    ParamType::Choice(vec!["top1", "any"]),
                    Some(Value::Str("top1".into())),
                    "top1: a token's top feature; any: any activation",
                ),
                param(
                    "only",
                    ParamType::List(Box::new(ParamType::Str)),
                    Some(Value::Null),
                    "list only these label names (e.g. [dolphin, cloud])",
                ),
                param(
                    "explanations",
                    ParamType::InputPath,
                    Some(Value::Null),
                    "Neuronpedia explanations: a folder of batch-N.jsonl.gz, a .jsonl or a .json",
                ),
                param("neuronpedia", ParamType::Str, Some(Value::Null), "the explanations' source, modelId/layer (gemma-2b/6-res-jb)"),
            ],
            open_params: false,
            outputs: vec![output(
                "classes",
                "class_features",
                "label u16, label_name, rank u16, feature u32, n_images u32 (of the label's), label_images u32, explanation (null when none)",
            )],
            fuse_axes: vec![],
            validate: Some(validate),
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let top1 = m.param("occurrence")?.as_str() == Some("top1");
            let top_k = m.int("top_k")? as usize;
            let occurs = crate::stages::clean::occurrences(m.input("codes")?, top1)?;
            let labels = crate::stages::split::read_labels_any(m.input("labels")?)?;
            let keep = match m.inputs("keep").first() {
                Some(t) => Some(crate::stages::pool::read_keep(t)?),
                None => None,
            };
            let only: Option<BTreeSet<String>> = match m.param("only")? {
                Value::List(items) => Some(items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
                _ => None,
            };
            let explanations = match (m.paths.get("explanations"), m.param("neuronpedia")?.as_str()) {
                (Some(path), Some(source)) => Explanations::load(path, source).map_err(|e| EngineError::Stage(format!("{}: {e}", m.id)))?,
                _ => Explanations::default(),
            };
            // label → (name, images, feature → images it occurs in)
            let mut per_label: BTreeMap<u16, (String, u32, BTreeMap<u32, u32>)> = BTreeMap::new();
            for (image, label, name) in &labels {
                let e = per_label.entry(*label).or_insert_with(|| (name.clone(), 0, BTreeMap::new()));
                e.1 += 1;
                for f in occurs.get(image).into_iter().flatten() {
                    if keep.as_ref().is_none_or(|k| k.contains(f)) {
                        *e.2.entry(*f).or_insert(0) += 1;
                    }
                }
            }
            if let Some(only) = &only {
                let known: BTreeSet<&str> = per_label.values().map(|v| v.0.as_str()).collect();
                if let Some(missing) = only.iter().find(|n| !known.contains(n.as_str())) {
                    return Err(EngineError::Stage(format!(
                        "{}: label '{missing}' is not in the dataset; {}",
                        m.id,
                        crate::spec::suggest(missing, known.iter().copied()).unwrap_or_default()
                    )));
                }
            }
            // (label, label_name, rank, feature, n_images, label_images, explanation)
            type Row = (u16, String, u16, u32, u32, u32, Option<String>);
            let mut rows: Vec<Row> = Vec::new();
            for (label, (name, n, feats)) in per_label {
                if only.as_ref().is_some_and(|o| !o.contains(&name)) {
                    continue;
                }
                let mut ranked: Vec<(u32, u32)> = feats.into_iter().collect();
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                for (rank, (f, c)) in ranked.into_iter().take(top_k).enumerate() {
                    rows.push((label, name.clone(), rank as u16 + 1, f, c, n, explanations.by_feature.get(&f).cloned()));
                }
            }
            let schema = Arc::new(Schema::new(vec![
                Field::new("label", DataType::UInt16, false),
                Field::new("label_name", DataType::Utf8, false),
                Field::new("rank", DataType::UInt16, false),
                Field::new("feature", DataType::UInt32, false),
                Field::new("n_images", DataType::UInt32, false),
                Field::new("label_images", DataType::UInt32, false),
                Field::new("explanation", DataType::Utf8, true),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
                    Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.2))),
                    Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.3))),
                    Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.4))),
                    Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.5))),
                    Arc::new(StringArray::from(rows.iter().map(|r| r.6.as_deref()).collect::<Vec<_>>())),
                ],
            )?;
            m.output("classes")?.write_part(0, schema, &[batch])?;
        }
        Ok(())
    }
}
