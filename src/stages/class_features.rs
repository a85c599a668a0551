//! `class_features`: for each label, the features that occur in the most of that label's images
//! (occurrence as in `clean`: a token's top-1 feature, or any activation), with the count and the
//! feature's Neuronpedia explanation — the post's "dolphin / cloud" tables ("16k/14117 — 88/100
//! images"). Ties: more images first, then the lower feature id. A feature without an explanation
//! (layer 17 has no Neuronpedia source) gets a null explanation.
//!
//! Explanations come from files (`explanations: PATH`, read by `data/neuronpedia.rs`; the file's
//! content enters the key) or from the live API (`explanations: api`, `data/neuronpedia_api.rs`),
//! asked only about the features the table lists. With `api` the key holds the word and the
//! source, not the answers: what Neuronpedia says changes over time, and a key cannot depend on a
//! request made at run time without making `plan` do network I/O and reruns unstable. The disk
//! cache (`<cache>/neuronpedia/…`) pins the answers instead: once a feature is cached, every rerun,
//! online or offline, reads the same text. Deleting that folder and `--force` refetches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, UInt16Array, UInt32Array};

use crate::data::neuronpedia::{Explanations, split_source};
use crate::data::neuronpedia_api;
use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::plan::params::{FromParam, params, wrong};
use crate::plan::signature::{ParamProblem, ParamType, Signature, input};
use crate::spec::Value;
use crate::stages::clean::Occurrence;
use crate::tables::TableType;

pub struct ClassFeatures;

/// `explanations:`'s word for the live API.
const API: &str = "api";

/// Where explanations come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ExplanationSource {
    /// The live API (`explanations: api`).
    Api,
    /// A folder of batch-N.jsonl.gz, a .jsonl or a .json.
    File(std::path::PathBuf),
}

impl FromParam for ExplanationSource {
    fn from_param(name: &str, value: Option<&Value>, path: Option<&std::path::PathBuf>) -> Result<Self, String> {
        match value {
            Some(Value::Str(s)) if s == API => Ok(ExplanationSource::Api),
            Some(Value::Str(_)) => std::path::PathBuf::from_param(name, value, path).map(ExplanationSource::File),
            _ => Err(wrong(name, "a path to read, or api", value)),
        }
    }
}

params! {
    /// `class_features`' parameters.
    pub struct ClassFeaturesParams {
        /// features listed per label
        pub top_k: usize, ParamType::min(1), default(10);
        /// top1: a token's top feature; any: any activation
        pub occurrence: Occurrence, Occurrence::param_type(), default("top1");
        /// list only these label names (e.g. [dolphin, cloud])
        pub only: Option<Vec<String>>, ParamType::List(Box::new(ParamType::Str)), default(Value::Null);
        /// Neuronpedia explanations: a folder of batch-N.jsonl.gz, a .jsonl or a .json; or `api`: the live API for the listed
        /// features, cached in cache/neuronpedia/
        pub explanations: Option<ExplanationSource>, ParamType::InputPathOr(vec![API]), default(Value::Null);
        /// the explanations' source, modelId/layer (gemma-2b/6-res-jb)
        pub neuronpedia: Option<String>, ParamType::Str, default(Value::Null);
    }
}

fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    let set = |k: &str| p.get(k).is_some_and(|v| *v != Value::Null);
    if set("explanations") && !set("neuronpedia") {
        return Err(ParamProblem {
            param: "explanations",
            message: "explanations need the Neuronpedia source they belong to".into(),
            help: "add `neuronpedia: gemma-2b/${layer}-res-jb` (modelId/layer)".into(),
        });
    }
    if let Some(Value::Str(s)) = p.get("neuronpedia") {
        if let Err(e) = split_source(s) {
            return Err(ParamProblem { param: "neuronpedia", message: e, help: "e.g. `neuronpedia: gemma-2b/6-res-jb`".into() });
        }
        // with the API the source names a cache folder and a URL: no `..`, no `/` inside a part
        if p.get("explanations").and_then(Value::as_str) == Some(API)
            && let Err(e) = neuronpedia_api::parse_source(s)
        {
            return Err(ParamProblem {
                param: "neuronpedia",
                message: e.to_string(),
                help: "write it as Neuronpedia's URLs do, e.g. `neuronpedia: gemma-2b/6-res-jb`".into(),
            });
        }
    }
    Ok(())
}

impl Stage for ClassFeatures {
    fn signature(&self) -> Signature {
        Signature::new(
            "class_features",
            // 2: a blank description no longer wins the alphabetical choice
            2,
            "each label's top features by the number of its images they occur in (ties: the lower feature id), with counts and Neuronpedia explanations",
        )
        .input(input("codes", &[TableType::Codes], "per-token SAE codes"))
        .input(input("labels", &[TableType::Dataset, TableType::Split], "the images' labels"))
        .input(input("keep", &[TableType::Features], "only these features (the output of `clean`)").optional())
        .params::<ClassFeaturesParams>()
        .output(
            "classes",
            TableType::ClassFeatures,
            "label u16, label_name, rank u16, feature u32, n_images u32 (of the label's), label_images u32, explanation (null when none)",
        )
        .validate(validate)
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let p: ClassFeaturesParams = m.params()?;
            let (top1, top_k) = (p.occurrence == Occurrence::Top1, p.top_k);
            let occurs = crate::stages::clean::occurrences(m.input("codes")?, top1)?;
            let labels = crate::stages::split::read_labels_any(m.input("labels")?)?;
            let keep = match m.inputs("keep").first() {
                Some(t) => Some(crate::stages::pool::read_keep(t)?),
                None => None,
            };
            let only: Option<BTreeSet<String>> = p.only.map(|o| o.into_iter().collect());
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
                    rows.push((label, name.clone(), rank as u16 + 1, f, c, n, None));
                }
            }
            let explanations = match (p.explanations, p.neuronpedia) {
                (Some(ExplanationSource::Api), Some(source)) => {
                    // only the features the table lists: a few hundred requests, not 16,384
                    let listed: BTreeSet<u32> = rows.iter().map(|r| r.3).collect();
                    let client =
                        neuronpedia_api::Client::from_env(&job.cache_root).map_err(|e| EngineError::Stage(format!("{}: {e}", m.id)))?;
                    let fetched =
                        client.explanations(&source, &listed, job.progress).map_err(|e| EngineError::Stage(format!("{}: {e}", m.id)))?;
                    if let Some(line) = fetched.summary(listed.len()) {
                        job.notes.push(format!("{}: {line}", m.id));
                    }
                    fetched.by_feature
                }
                (Some(ExplanationSource::File(path)), Some(source)) => {
                    Explanations::load(&path, &source).map_err(|e| EngineError::Stage(format!("{}: {e}", m.id)))?.by_feature
                }
                _ => BTreeMap::new(),
            };
            for r in &mut rows {
                r.6 = explanations.get(&r.3).cloned();
            }
            let batch = RecordBatch::try_new(
                TableType::ClassFeatures.schema(),
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
            m.output("classes")?.write_part(0, batch.schema(), &[batch])?;
        }
        Ok(())
    }
}
