//! `zeroshot`: LLaVA's own answer as a baseline, on the test rows of a split — so its macro F1
//! sits beside the probes'.
//!
//! - `mode: closed` — each label's answers (its name, or the synonyms `answers:` lists) are scored
//!   by log-likelihood after the prompt: the sum of the answer's token log-probabilities
//!   (`score: sum`, the default), which favours short names, or their mean (`score: mean`,
//!   length-normalised); the label of the best-scoring answer wins (ties: the lower label).
//! - `mode: open` — greedy generation with a KV cache (up to `max_new_tokens`, stopping at
//!   `<end_of_turn>`/`<eos>`); the answer matches a label when, lowercased with surrounding
//!   whitespace and punctuation trimmed, it equals the label name, else one of its synonyms;
//!   otherwise it matches none (a wrong answer).
//!
//! Outputs: `predictions` in parts (resumable), `metrics` (the probe's metrics columns) and
//! `errors`. The full language model and LM head are loaded only here.
//!
//! `zeroshot` answers the split's test images itself, so each split variant runs the model again;
//! `zeroshot_answers` answers every image of the dataset once and `zeroshot_score`
//! (`zeroshot_score.rs`) scores each split from those answers — the form the study pipelines use.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt64Array};
use arrow_schema::{Field, Schema};

use super::images::{self, BatchStream, ImageScaleChoice, Images, Preprocess, RuntimeParams};
use crate::engine::EngineError;
use crate::engine::job::{Job, Member};
use crate::engine::stage::Stage;
use crate::models::llava::prompt::GEMMA_IT_TEMPLATE;
use crate::models::llava::zeroshot::LlavaLm;
use crate::models::llava::{Checkpoint, EoiPosition, Prompt, Tokenizer};
use crate::models::source::Artifact;
use crate::plan::params::{FromParam, Reference, choice, params};
use crate::plan::signature::{ParamProblem, ParamType, Signature, input};
use crate::probe::classification_metrics;
use crate::spec::Value;
use crate::tables::TableType;

pub struct ZeroShot;

/// The question of the zero-shot prompt by default.
pub const ZERO_SHOT_QUESTION: &str = "What is shown in this image? Answer with one word.";

fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    match p.get("answers") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Map(m)) if m.values().all(|v| matches!(v, Value::List(l) if l.iter().all(|s| matches!(s, Value::Str(_))))) => Ok(()),
        Some(other) => Err(ParamProblem {
            param: "answers",
            message: format!("answers is {other}, expected a map from label name to a list of answers"),
            help: "write e.g. `answers: {aquarium_fish: [fish, aquarium fish], maple_tree: [maple, tree]}`".into(),
        }),
    }
}

choice! {
    /// How closed mode scores an answer of several tokens.
    pub enum Score {
        /// the sum of its tokens' log-probabilities (the likelihood of the whole answer; favours short names)
        Sum = "sum",
        /// the mean over its tokens (length-normalised: a two-token name competes with a one-token name)
        Mean = "mean",
    }
}

choice! {
    /// How `zeroshot` answers.
    pub enum Mode {
        /// the most likely label name
        Closed = "closed",
        /// a greedy answer matched to label names
        Open = "open",
    }
}

/// `answers`: label name → the answers that count for it (empty when unset).
#[derive(Clone, Debug, Default)]
pub struct Answers(pub BTreeMap<String, Vec<String>>);

impl FromParam for Answers {
    fn from_param(_: &str, value: Option<&Value>, _: Option<&std::path::PathBuf>) -> Result<Self, String> {
        // the shape is checked at plan time (`validate`)
        let list = |v: &Value| match v {
            Value::List(l) => l.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            _ => vec![],
        };
        Ok(Answers(match value {
            Some(Value::Map(map)) => map.iter().map(|(k, v)| (k.clone(), list(v))).collect(),
            _ => BTreeMap::new(),
        }))
    }
}

params! {
    /// `zeroshot`'s own parameters (the runtime ones follow: [`RuntimeParams`]).
    pub struct ZeroShotParams {
        /// the LLaVA-Gemma checkpoint: hf://Intel/llava-gemma-2b or a local folder
        pub model: Reference, ParamType::Artifact(Artifact::Model), required;
        /// closed: the most likely label name; open: a greedy answer matched to label names
        pub mode: Mode, Mode::param_type(), default("closed");
        /// the question put in the template
        pub question: String, ParamType::Str, default(ZERO_SHOT_QUESTION);
        /// the prompt: one <image>, and {question}
        pub template: String, ParamType::Str, default(GEMMA_IT_TEMPLATE);
        /// label name → answers that count for it (default: the label name, underscores as spaces)
        pub answers: Answers, ParamType::Any, default(Value::Null);
        /// closed mode: an answer's score, sum or mean of its tokens' log-probabilities
        pub score: Score, Score::param_type(), default("sum");
        /// open mode: answer length limit
        pub max_new_tokens: usize, ParamType::range(1, 256), default(10);
        /// scaled: image rows × √hidden as the model was trained (transformers < 5.4); unscaled: as transformers ≥ 5.4
        pub image_scale: ImageScaleChoice, ImageScaleChoice::param_type(), default("scaled");
    }
}

/// Lowercase, trimmed of whitespace and punctuation at both ends.
pub fn normalize_answer(s: &str) -> String {
    s.trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation()).to_lowercase()
}

impl Stage for ZeroShot {
    fn signature(&self) -> Signature {
        Signature::new(
            "zeroshot",
            2,
            "LLaVA's own answer on the split's test images: closed-set (each label's log-likelihood, `score: sum` or length-normalised `mean`, ties to the lower label) or open (greedy answer matched to labels); answers per split (prefer zeroshot_answers + zeroshot_score)",
        )
        .input(input("from", &[TableType::Dataset], "the images (a dataset table)"))
        .input(input("split", &[TableType::Split], "which images are test rows, and their labels"))
        .params::<ZeroShotParams>()
        .params::<RuntimeParams>()
        .output("metrics", TableType::ProbeMetrics, "coordinates, macro_f1, accuracy, macro_precision, macro_recall, n_test, n_classes")
        .output("predictions", TableType::ZeroshotPredictions, "image_id, label, pred (null: no label matched), answer, score")
        .output("errors", TableType::Errors, "image_id u32, source utf8, reason utf8: images skipped")
        .validate(validate)
        .check_files(super::images::check_processor)
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            run_one(m, job.progress)?;
        }
        Ok(())
    }
}

/// `zeroshot_answers`: LLaVA's answer to every image of a dataset, once — keyed by the data, the
/// model and the prompt, not by a split, so every split variant is scored from the same answers
/// (`zeroshot_score`).
pub struct ZeroShotAnswers;

impl Stage for ZeroShotAnswers {
    fn signature(&self) -> Signature {
        Signature::new(
            "zeroshot_answers",
            1,
            "LLaVA's own answer to every image of a dataset, once, for `zeroshot_score` to score on each split: closed-set (each label's \
             log-likelihood: `score: sum` of its tokens, which favours short names, or the length-normalised `mean`; ties to the lower \
             label) or open (a greedy answer matched to label names). The post's baseline is the model's own answer: `mode: open`; \
             closed with `score: mean` is the fair closed-set reading",
        )
        .input(input("from", &[TableType::Dataset], "the images (a dataset table, with their labels)"))
        .params::<ZeroShotParams>()
        .params::<RuntimeParams>()
        .output("answers", TableType::ZeroshotPredictions, "image_id, label, pred (null: no label matched), answer, score — every image")
        .output("errors", TableType::Errors, "image_id u32, source utf8, reason utf8: images skipped")
        .validate(validate)
        .check_files(super::images::check_processor)
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let (mut label_of, mut names) = (BTreeMap::new(), BTreeMap::new());
            for r in super::split::read_labels(m.input("from")?)? {
                label_of.insert(r.image_id, r.label);
                names.entry(r.label).or_insert(r.label_name);
            }
            let images = Images::open(m)?;
            answer(m, images, &label_of, names, "answers", job.progress)?;
        }
        Ok(())
    }
}

fn run_one(m: &mut Member, progress: &dyn crate::progress::Progress) -> Result<(), EngineError> {
    let id = m.id.clone();
    let err = |e: &dyn std::fmt::Display| EngineError::Stage(format!("{id}: {e}"));
    let split = super::probe::read_split(m.input("split")?)?;
    let test: BTreeMap<u32, u16> = split.iter().filter(|r| !r.train).map(|r| (r.image_id, r.label)).collect();
    let names: BTreeMap<u16, String> = split.iter().map(|r| (r.label, r.label_name.clone())).collect();
    let mut images = Images::open(m)?;
    images.ids.retain(|i| test.contains_key(i));
    if images.ids.is_empty() {
        return Err(err(&"the split has no test rows among the dataset's images"));
    }
    let n_parts = answer(m, images, &test, names, "predictions", progress)?;
    let classes: Vec<u16> = split.iter().map(|r| r.label).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut rows = Vec::new();
    for p in 0..n_parts {
        for b in m.output("predictions")?.read_part(p)? {
            rows.push(b?);
        }
    }
    let batch = score(&id, &m.coords, &classes, &rows)?;
    m.output("metrics")?.set_parts(1)?;
    m.output("metrics")?.write_part(0, batch.schema(), &[batch])?;
    Ok(())
}

/// Answer every image of `images` with LLaVA (closed or open, by the member's parameters) into
/// parts of the member's `out` output (image_id, label, pred, answer, score) and `errors`,
/// resuming parts an interrupted run completed. `label_of` gives each image's true label and
/// `names` the label names (the candidates). Returns the number of parts.
pub(super) fn answer(
    m: &mut Member,
    images: Images,
    label_of: &BTreeMap<u32, u16>,
    mut names: BTreeMap<u16, String>,
    out: &str,
    progress: &dyn crate::progress::Progress,
) -> Result<usize, EngineError> {
    let id = m.id.clone();
    let err = |e: &dyn std::fmt::Display| EngineError::Stage(format!("{id}: {e}"));
    let p: ZeroShotParams = m.params()?;
    let runtime: RuntimeParams = m.params()?;
    names.retain(|_, n| !n.is_empty());
    let classes: Vec<u16> =
        label_of.values().copied().chain(names.keys().copied()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let images = Arc::new(images);
    let (dtype, device) = runtime.dtype_device(&id)?;
    m.device = Some(super::images::describe_device(&device, dtype));
    let RuntimeParams { part_images, batch, workers, .. } = runtime;
    let n_parts = images.ids.len().div_ceil(part_images).max(1);
    for o in [out, "errors"] {
        m.output(o)?.set_parts(n_parts)?;
    }
    let todo: Vec<usize> =
        (0..n_parts).filter(|&p| [out, "errors"].iter().any(|o| m.outputs.iter().any(|w| w.name == *o && !w.has_part(p)))).collect();
    progress.add_total(images.ids.len() as u64, "images");
    let done: usize = (0..n_parts).filter(|p| !todo.contains(p)).map(|p| images::part_range(p, part_images, images.ids.len()).len()).sum();
    progress.advance(done as u64);
    // candidate answers per class
    let answers_param = &p.answers.0;
    for k in answers_param.keys() {
        if !names.values().any(|n| n == k) {
            return Err(err(&format!(
                "answers names the label '{k}', which is not among the labels; they are: {}",
                names.values().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let candidates: Vec<(u16, String)> = classes
        .iter()
        .flat_map(|c| {
            let name = names.get(c).cloned().unwrap_or_else(|| c.to_string());
            let list = answers_param.get(&name).cloned().unwrap_or_else(|| vec![name.replace('_', " ")]);
            list.into_iter().map(move |a| (*c, a))
        })
        .collect();

    if !todo.is_empty() {
        let dir = p.model.path.clone().ok_or_else(|| err(&"parameter 'model' was not resolved"))?;
        crate::models::source::ensure_model(&p.model.text, &dir).map_err(|e| err(&e))?;
        let checkpoint = Checkpoint::open(&dir).map_err(|e| err(&e))?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json")).map_err(|e| err(&e))?;
        let cfg = &checkpoint.config;
        let prompt =
            Prompt::build(&tokenizer, &p.template, &p.question, cfg.image_token_index, cfg.image_tokens(), EoiPosition::AfterImage)
                .map_err(|e| err(&e))?;
        let lm = LlavaLm::load(&checkpoint, prompt, p.image_scale.scale(), dtype, &device).map_err(|e| err(&e))?;
        let open = p.mode == Mode::Open;
        let max_new = p.max_new_tokens;
        let tokens: Vec<Vec<u32>> = candidates.iter().map(|(_, a)| tokenizer.encode(a)).collect::<Result<_, _>>().map_err(|e| err(&e))?;
        if let Some(i) = tokens.iter().position(Vec::is_empty) {
            return Err(err(&format!("the answer '{}' tokenizes to nothing", candidates[i].1)));
        }
        let stop: Vec<u32> = ["<end_of_turn>", "<eos>"].iter().filter_map(|t| tokenizer.token_to_id(t)).collect();
        // an answer listed for two labels counts for the first (lower) one
        let mut lookup: BTreeMap<String, u16> = BTreeMap::new();
        for (c, a) in &candidates {
            lookup.entry(normalize_answer(a)).or_insert(*c);
        }
        let by_name: BTreeMap<String, u16> = names.iter().map(|(c, n)| (normalize_answer(&n.replace('_', " ")), *c)).collect();
        let pre: Arc<dyn Preprocess + Send> = Arc::new(images::image_processor(&dir).map_err(|e| err(&e))?);
        let mut current: Option<(usize, Vec<RecordBatch>, Vec<RecordBatch>)> = None;
        let flush = |m: &mut Member, cur: Option<(usize, Vec<RecordBatch>, Vec<RecordBatch>)>| -> Result<(), EngineError> {
            if let Some((p, preds, errs)) = cur {
                m.output(out)?.write_part(p, TableType::ZeroshotPredictions.schema(), &preds)?;
                m.output("errors")?.write_part(p, TableType::Errors.schema(), &errs)?;
            }
            Ok(())
        };
        for b in BatchStream::spawn(images.clone(), pre, todo, part_images, batch, workers) {
            if current.as_ref().map(|c| c.0) != Some(b.part) {
                flush(m, current.take())?;
                current = Some((b.part, vec![], vec![]));
            }
            let pixels = b.tensor(&device)?;
            let ok = b.ok();
            let (mut pred, mut answer, mut score): (Vec<Option<u16>>, Vec<String>, Vec<Option<f32>>) = (vec![], vec![], vec![]);
            if open {
                for ids in lm.generate(&pixels, max_new, &stop).map_err(|e| err(&e))? {
                    let text = tokenizer.decode(&ids).map_err(|e| err(&e))?;
                    let key = normalize_answer(&text);
                    pred.push(by_name.get(&key).or_else(|| lookup.get(&key)).copied());
                    answer.push(text);
                    score.push(None);
                }
            } else {
                for mut row in lm.score(&pixels, &tokens).map_err(|e| err(&e))? {
                    if p.score == Score::Mean {
                        for (v, t) in row.iter_mut().zip(&tokens) {
                            *v /= t.len() as f32;
                        }
                    }
                    // best answer; ties go to the earlier candidate (lower label)
                    let (best, s) =
                        row.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
                    pred.push(Some(candidates[best].0));
                    answer.push(candidates[best].1.clone());
                    score.push(Some(s));
                }
            }
            let keep: Vec<usize> = (0..b.ids.len()).filter(|&i| ok[i]).collect();
            let cols: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from_iter_values(keep.iter().map(|&i| b.ids[i]))),
                Arc::new(UInt16Array::from_iter_values(keep.iter().map(|&i| label_of[&b.ids[i]]))),
                Arc::new(UInt16Array::from(keep.iter().map(|&i| pred[i]).collect::<Vec<_>>())),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|&i| answer[i].as_str()))),
                Arc::new(Float32Array::from(keep.iter().map(|&i| score[i]).collect::<Vec<_>>())),
            ];
            let (_, preds, errs) = current.as_mut().expect("opened above");
            preds.push(RecordBatch::try_new(TableType::ZeroshotPredictions.schema(), cols)?);
            errs.push(b.errors()?);
            progress.advance(b.ids.len() as u64);
        }
        flush(m, current.take())?;
    }
    Ok(n_parts)
}

/// The `metrics` row of zero-shot answers (`rows`: image_id, label, pred) over `classes`: a
/// prediction of no label (an open answer that matched none) counts as wrong.
pub(super) fn score(id: &str, coords: &crate::spec::Coords, classes: &[u16], rows: &[RecordBatch]) -> Result<RecordBatch, EngineError> {
    let err = |e: &dyn std::fmt::Display| EngineError::Stage(format!("{id}: {e}"));
    let (mut y_true, mut y_pred) = (Vec::new(), Vec::new());
    let class_of: BTreeMap<u16, u32> = classes.iter().enumerate().map(|(i, &c)| (c, i as u32)).collect();
    let none = classes.len() as u32;
    for b in rows {
        let label = crate::tables::column::<UInt16Array>(b, "label", id)?;
        let pred = crate::tables::column::<UInt16Array>(b, "pred", id)?;
        for r in 0..b.num_rows() {
            let Some(&t) = class_of.get(&label.value(r)) else {
                return Err(err(&format!("an answer's label {} is not among the split's labels", label.value(r))));
            };
            y_true.push(t);
            y_pred.push(if pred.is_null(r) { none } else { class_of.get(&pred.value(r)).copied().unwrap_or(none) });
        }
    }
    let labels: Vec<u32> = (0..classes.len() as u32).collect();
    let metrics = classification_metrics(&y_true, &y_pred, Some(&labels)).map_err(|e| err(&e))?;
    let mut cols = super::probe::coord_columns(id, coords, 1);
    for (name, arr) in [
        ("macro_f1", Arc::new(Float64Array::from(vec![metrics.macro_f1])) as ArrayRef),
        ("accuracy", Arc::new(Float64Array::from(vec![metrics.accuracy]))),
        ("macro_precision", Arc::new(Float64Array::from(vec![metrics.macro_precision]))),
        ("macro_recall", Arc::new(Float64Array::from(vec![metrics.macro_recall]))),
        ("n_train", Arc::new(UInt64Array::from(vec![0u64]))),
        ("n_test", Arc::new(UInt64Array::from(vec![y_true.len() as u64]))),
        ("n_classes", Arc::new(UInt64Array::from(vec![classes.len() as u64]))),
    ] {
        cols.push((Field::new(name, arr.data_type().clone(), false), arr));
    }
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = cols.into_iter().unzip();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}
