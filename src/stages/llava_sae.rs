//! `llava_sae`: the extraction stage. Images of a `dataset` table go through LLaVA-Gemma once per
//! batch; the residual stream at every requested block is SAE-encoded token by token.
//!
//! Instances that differ only in `layer` (or a `release` axis naming SAE sets) run fused: one forward per batch, stopped after the
//! deepest block any of them taps, serves them all; each publishes its own entries, so adding a
//! layer later computes only that layer (the forward runs again, to the new depth).
//!
//! Outputs, per layer:
//! - `codes`: each image token's `top_k` largest SAE features (`image_id, token, feature, value`).
//! - `totals`: exact per-image aggregates over every image token before truncation
//!   (`image_id, feature, sum, max, count`), so sum pooling never depends on `top_k`.
//! - `eoi`: the residual at the End-of-Image position (`image_id, resid [d_model]`).
//! - `health`: how well the text-trained SAE fits image tokens, next to the prompt's text tokens
//!   (BOS excluded): per part and scope, exact sufficient statistics — token count, L0 sum and
//!   histogram, reconstruction error, residual norms and sums — that `saeflow show` and the
//!   report aggregate into L0 quantiles, MSE, variance explained and norm ratios.
//! - `errors`: images that could not be read or decoded (`image_id, source, reason`); they are
//!   skipped, every other image's rows stay as they would have been.
//!
//! Parts are fixed ranges of `part_images` rows of the dataset table and batches fixed ranges of
//! `batch` rows within a part; an unreadable image keeps its slot (zeros) so no other image's
//! batch changes. A crash resumes at the first missing part, and the files are byte-identical to
//! an uninterrupted run's. Images decode on worker threads while the model computes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{FixedSizeListArray, Float32Array, RecordBatch, UInt16Array, UInt32Array};
use arrow_schema::{DataType, Field, SchemaRef};
use candle_core::{D, DType, Device, Tensor};

use super::images::{self, Batch, ImageScaleChoice, Preprocess, RuntimeParams};
use crate::engine::EngineError;
use crate::engine::job::{Job, Member, PartGuard};
use crate::engine::stage::Stage;
use crate::health::{HealthStats, ScopeStats};
use crate::models::hub::HubCache;
use crate::models::llava::prompt::{DEFAULT_QUESTION, GEMMA_IT_TEMPLATE};
use crate::models::llava::{Checkpoint, EoiPosition, ImageScale, LlavaGemma, Prompt, Request, TapPoint, Tokenizer};
use crate::models::sae::{self, Keep, Sae};
use crate::models::sae_load;
use crate::models::source::Artifact;
use crate::plan::params::{FromParam, Reference, choice, params};
use crate::plan::signature::{ParamProblem, ParamType, Signature, input};
use crate::spec::Value;
use crate::tables::TableType;

/// The outputs (name, type, doc), in the order every member's writers are opened.
const OUTPUTS: [(&str, TableType, &str); 5] = [
    ("codes", TableType::Codes, "image_id u32, token u16, feature u32, value f32: each image token's top_k features"),
    ("totals", TableType::Totals, "image_id u32, feature u32, sum f32, max f32, count u32: exact, over all image tokens"),
    ("eoi", TableType::Eoi, "image_id u32, resid fixed_size_list<f32>[d_model]: the End-of-Image residual"),
    ("health", TableType::Health, "per part and scope (image/text): L0, reconstruction error and norm statistics of the SAE"),
    ("errors", TableType::Errors, "image_id u32, source utf8, reason utf8: images skipped"),
];

pub struct LlavaSae;

choice! {
    /// Where the residual is read.
    pub enum Hook { ResidPost = "resid_post", ResidPre = "resid_pre" }
}

choice! {
    /// The End-of-Image position.
    pub enum Eoi { AfterImage = "after_image", LastImage = "last_image" }
}

/// `top_k`: features kept per token (a positive integer, or `all`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TopK(pub Keep);

impl FromParam for TopK {
    fn from_param(_: &str, value: Option<&Value>, _: Option<&std::path::PathBuf>) -> Result<Self, String> {
        // `validate` checked it at plan time: a positive integer, or "all"
        Ok(TopK(match value {
            Some(Value::Int(k)) => Keep::Top(*k as usize),
            _ => Keep::All,
        }))
    }
}

params! {
    /// `llava_sae`'s own parameters (the runtime ones follow: [`RuntimeParams`]).
    pub struct LlavaSaeParams {
        /// the LLaVA-Gemma checkpoint: hf://Intel/llava-gemma-2b or a local folder
        pub model: Reference, ParamType::Artifact(Artifact::Model), required;
        /// the decoder block whose residual is read (0-based)
        pub layer: usize, ParamType::min(0), required;
        /// the SAE for this layer: release/sae_id, hf://owner/repo/folder or a folder (use ${layer})
        pub sae: Reference, ParamType::Artifact(Artifact::Sae), required;
        /// resid_post: the output of block `layer` (the SAE's hook point); resid_pre: its input, hidden_states[layer] (MOSAIC's choice)
        pub hook: Hook, Hook::param_type(), default("resid_post");
        /// features kept per token in `codes` (a positive integer, or all)
        pub top_k: TopK, ParamType::Any, default(64);
        /// the SAE's activation-norm scaling factor, when its cfg asks for one the release table lacks
        pub input_scale: Option<f64>, ParamType::Float, default(Value::Null);
        /// scaled: image rows × √hidden as the model was trained (transformers < 5.4); unscaled: as transformers ≥ 5.4 runs it
        pub image_scale: ImageScaleChoice, ImageScaleChoice::param_type(), default("scaled");
        /// the End-of-Image position: the first token after the image, or the last image token
        pub eoi: Eoi, Eoi::param_type(), default("after_image");
        /// the prompt: one <image>, and {question}
        pub template: String, ParamType::Str, default(GEMMA_IT_TEMPLATE);
        /// the question put in the template
        pub question: String, ParamType::Str, default(DEFAULT_QUESTION);
    }
}

fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    match p.get("top_k") {
        Some(Value::Int(k)) if *k >= 1 => Ok(()),
        Some(Value::Str(s)) if s == "all" => Ok(()),
        other => Err(ParamProblem {
            param: "top_k",
            message: format!("top_k is {}, expected a positive integer or \"all\"", other.map(|v| v.to_string()).unwrap_or_default()),
            help: "write `top_k: 64` (the default; enough for every top-N pooling) or `top_k: all` to keep every non-zero".into(),
        }),
    }
}

/// Plan time: the SAE must read the model's width, a needed input scale must be known, and a hook
/// layer other than the tapped block is worth a warning. Reads `config.json` and `cfg.json` only.
fn check_files(p: &BTreeMap<String, Value>, paths: &BTreeMap<String, std::path::PathBuf>) -> Result<Vec<ParamProblem>, ParamProblem> {
    let (Some(model_dir), Some(sae_dir)) = (paths.get("model"), paths.get("sae")) else { return Ok(vec![]) };
    super::images::check_processor(p, paths)?;
    let problem = |param: &'static str, message: String, help: &str| ParamProblem { param, message, help: help.to_string() };
    let config = std::fs::read_to_string(model_dir.join("config.json")).map_err(|e| {
        problem(
            "model",
            format!("cannot read {}: {e}", model_dir.join("config.json").display()),
            "point `model` at a LLaVA checkpoint folder",
        )
    })?;
    let cfg = crate::models::llava::LlavaConfig::from_json(&config, "config.json")
        .map_err(|e| problem("model", e.to_string(), "point `model` at a LLaVA-Gemma checkpoint"))?;
    let reference = p.get("sae").and_then(Value::as_str).unwrap_or_default();
    let spec = sae_load::resolve(reference, p.get("input_scale").and_then(Value::as_f64))
        .map_err(|e| problem("sae", e.to_string(), "name release/sae_id, hf://owner/repo/folder or a local SAELens folder"))?;
    let sae_cfg = sae_load::read_config(&spec, sae_dir)
        .map_err(|e| problem("sae", e.to_string(), "set `input_scale:` when the SAE's cfg asks for one"))?;
    let layer = p.get("layer").and_then(Value::as_i64).unwrap_or(0) as usize;
    if layer >= cfg.text.num_hidden_layers {
        return Err(problem(
            "layer",
            format!("block {layer} does not exist: the language model has {} blocks", cfg.text.num_hidden_layers),
            "use a layer in 0..num_hidden_layers",
        ));
    }
    let tap_pre = p.get("hook").and_then(Value::as_str).and_then(TapPoint::parse) == Some(TapPoint::ResidPre);
    let warnings = sae::check_against_tap(&sae_cfg, cfg.text.hidden_size, layer, tap_pre, &spec.subject())
        .map_err(|e| problem("sae", format!("{}: {e}", spec.subject()), "use an SAE trained on this model's residual stream"))?;
    Ok(warnings
        .into_iter()
        .map(|w| problem("sae", w.to_string(), "check that `sae` and `layer` go together (use ${layer} in the reference)"))
        .collect())
}

impl Stage for LlavaSae {
    fn signature(&self) -> Signature {
        let mut sig = Signature::new(
            "llava_sae",
            1,
            "LLaVA forward + SAE encode of every image token: per-layer codes, exact totals, EoI residuals, SAE health; fused over `layer`",
        )
        .input(input("from", &[TableType::Dataset], "the images (a dataset table)"))
        .params::<LlavaSaeParams>()
        .params::<RuntimeParams>();
        for (name, table, doc) in OUTPUTS {
            sig = sig.output(name, table, doc);
        }
        // `release`: an axis naming the SAE set (e.g. the base-model and the -it SAEs of layer 12)
        // — one forward serves them too
        sig.fuse_axes(&["layer", "release"]).validate(validate).check_files(check_files).build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        let params = job.members.iter().map(|m| m.params()).collect::<Result<Vec<LlavaSaeParams>, _>>()?;
        let Some(first) = params.first() else { return Ok(()) };
        let Some(io) = images::Setup::new(&mut job.members, &OUTPUTS.map(|o| o.0), &first.model, job.progress)? else { return Ok(()) };
        let setup = Setup::new(&job.members[0].id, first, io.model_dir.clone(), io.dtype, io.device.clone())?;
        let model = setup.load_model(&params)?;
        let saes = setup.load_saes(&job.members, &params, model.config().text.hidden_size)?;
        let d_model = model.config().text.hidden_size;
        let progress = job.progress;
        let members = &mut job.members[..];
        // The device computes while a writer thread encodes Parquet (zstd) and publishes parts: at most
        // `WRITE_AHEAD` batches wait between them, so memory stays flat.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<WriteMsg>(WRITE_AHEAD);
            let writer = scope.spawn(move || write_parts(members, rx, d_model));
            let computed = (|| {
                let mut current: Option<(usize, Vec<HealthStats>)> = None;
                for batch in io.batches(setup.processor.clone()) {
                    if current.as_ref().map(|c| c.0) != Some(batch.part) {
                        if let Some((part, health)) = current.take()
                            && tx.send(WriteMsg::Finish { part, health }).is_err()
                        {
                            return Ok(()); // the writer stopped: its error is the run's
                        }
                        current = Some((batch.part, (0..saes.len()).map(|_| HealthStats::default()).collect()));
                    }
                    let (_, health) = current.as_mut().expect("set above");
                    let tables = process_batch(&setup, &model, &saes, &batch, health)?;
                    if tx.send(WriteMsg::Batch { part: batch.part, tables }).is_err() {
                        return Ok(());
                    }
                    progress.advance(batch.ids.len() as u64);
                }
                if let Some((part, health)) = current.take() {
                    let _ = tx.send(WriteMsg::Finish { part, health });
                }
                Ok(())
            })();
            drop(tx);
            let written = writer.join().unwrap_or_else(|_| Err(EngineError::Stage(format!("{}: the writer thread panicked", setup.id))));
            // a compute error leaves the open part unpublished (its `.partial` files are rewritten on resume)
            computed.and(written)
        })
    }
}

/// Batches queued between the device and the Parquet writer thread.
const WRITE_AHEAD: usize = 2;

/// What the compute loop hands the writer thread.
enum WriteMsg {
    /// One batch's tables, per member in [`OUTPUTS`] order (`health` is written at `Finish`).
    Batch { part: usize, tables: Vec<[Option<RecordBatch>; 5]> },
    /// The part is complete: write each member's health statistics and publish every output.
    Finish { part: usize, health: Vec<HealthStats> },
}

/// The writer thread: opens a part's files at its first batch, appends, publishes at `Finish`.
/// Parts arrive in order and a part's batches are contiguous, so the files are byte-identical to
/// writing inline.
fn write_parts(members: &mut [Member], rx: std::sync::mpsc::Receiver<WriteMsg>, d_model: usize) -> Result<(), EngineError> {
    let mut current: Option<(usize, Guards<'_>)> = None;
    for msg in rx {
        match msg {
            WriteMsg::Batch { part, tables } => {
                if current.as_ref().map(|c| c.0) != Some(part) {
                    drop(current.take()); // an unfinished part (cannot happen: parts end with `Finish`)
                    current = Some((part, open_part(members, part, d_model)?));
                }
                let (_, guards) = current.as_mut().expect("opened above");
                for (member, tables) in guards.iter_mut().zip(tables) {
                    for (guard, table) in member.iter_mut().zip(tables) {
                        if let (Some(g), Some(t)) = (guard, table) {
                            g.write(&t)?;
                        }
                    }
                }
            }
            WriteMsg::Finish { part, health } => {
                if let Some((p, guards)) = current.take() {
                    debug_assert_eq!(p, part);
                    finish_part(part, guards, health)?;
                }
            }
        }
    }
    Ok(())
}

/// The stage's own parameters, shared by every member of a fused job and parsed once (the images,
/// parts and device come from [`images::Setup`]).
struct Setup {
    id: String,
    model_dir: std::path::PathBuf,
    processor: Arc<dyn Preprocess + Send>,
    hook: TapPoint,
    keep: Keep,
    image_scale: ImageScale,
    eoi: EoiPosition,
    template: String,
    question: String,
    dtype: DType,
    device: Device,
}

fn stage_err(id: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Stage(format!("{id}: {e}"))
}

impl Setup {
    /// From the first member's parameters (`id`); `model_dir` must be complete (its preprocessor
    /// config is read here).
    fn new(id: &str, p: &LlavaSaeParams, model_dir: std::path::PathBuf, dtype: DType, device: Device) -> Result<Setup, EngineError> {
        let processor: Arc<dyn Preprocess + Send> = Arc::new(images::image_processor(&model_dir).map_err(|e| stage_err(id, e))?);
        Ok(Setup {
            model_dir,
            processor,
            hook: TapPoint::parse(p.hook.as_str()).unwrap_or(TapPoint::ResidPost),
            keep: p.top_k.0,
            image_scale: p.image_scale.scale(),
            eoi: EoiPosition::parse(p.eoi.as_str()).unwrap_or(EoiPosition::AfterImage),
            template: p.template.clone(),
            question: p.question.clone(),
            dtype,
            device,
            id: id.to_string(),
        })
    }

    fn load_model(&self, params: &[LlavaSaeParams]) -> Result<LlavaGemma, EngineError> {
        let err = |e: &dyn std::fmt::Display| stage_err(&self.id, format!("model {}: {e}", self.model_dir.display()));
        let checkpoint = Checkpoint::open(&self.model_dir).map_err(|e| err(&e))?;
        let tokenizer = Tokenizer::from_file(&self.model_dir.join("tokenizer.json")).map_err(|e| err(&e))?;
        let cfg = &checkpoint.config;
        let prompt = Prompt::build(&tokenizer, &self.template, &self.question, cfg.image_token_index, cfg.image_tokens(), self.eoi)
            .map_err(|e| err(&e))?;
        let blocks = params.iter().map(|p| p.layer).collect();
        let request = Request { blocks, point: self.hook, final_norm: false, vit: false, image_scale: self.image_scale };
        LlavaGemma::load(&checkpoint, prompt, request, self.dtype, &self.device).map_err(|e| err(&e))
    }

    fn load_saes(&self, members: &[Member], params: &[LlavaSaeParams], width: usize) -> Result<Vec<LoadedSae>, EngineError> {
        members
            .iter()
            .zip(params)
            .map(|(m, p)| {
                let reference = p.sae.text.as_str();
                let spec = sae_load::resolve(reference, p.input_scale).map_err(|e| stage_err(&m.id, e))?;
                // a hub SAE's weights are fetched now (the plan fetched only its cfg.json)
                let dir = match &spec.source {
                    sae_load::SaeSource::Hub { .. } => {
                        let cache = HubCache::from_env().map_err(|e| stage_err(&m.id, e))?;
                        sae_load::locate(&spec, &cache).map_err(|e| stage_err(&m.id, e))?.dir
                    }
                    sae_load::SaeSource::Local(_) => {
                        p.sae.path.clone().ok_or_else(|| stage_err(&m.id, format!("sae '{reference}' was not resolved")))?
                    }
                };
                let (cfg, sae) = sae_load::load(&spec, &dir, &self.device).map_err(|e| stage_err(&m.id, e))?;
                let layer = p.layer;
                sae::check_against_tap(&cfg, width, layer, self.hook == TapPoint::ResidPre, &spec.subject())
                    .map_err(|e| stage_err(&m.id, e))?;
                let assumed_norm = match cfg.normalize {
                    sae::Normalization::None => None,
                    _ => cfg.effective_input_scale(&spec.subject()).ok().map(|s| (cfg.d_in as f64).sqrt() / s),
                };
                Ok(LoadedSae { sae, assumed_norm, layer })
            })
            .collect()
    }
}

struct LoadedSae {
    sae: Sae,
    /// The raw residual norm the SAE's input scale assumes (`√d_in / scale`), if it has one.
    assumed_norm: Option<f64>,
    /// The tapped block, for messages.
    layer: usize,
}

/// Open parts, per member, in [`OUTPUTS`] order (`None`: already complete).
type Guards<'a> = Vec<Vec<Option<PartGuard<'a>>>>;

/// Part `p` of every member's outputs, in [`OUTPUTS`] order; `None` where an interrupted earlier
/// run already finished that output's part (it is kept, not rewritten).
fn open_part(members: &mut [Member], p: usize, d_model: usize) -> Result<Guards<'_>, EngineError> {
    members
        .iter_mut()
        .map(|m| {
            let mut by_name: Vec<(usize, &mut crate::engine::job::OutputWriter)> =
                m.outputs.iter_mut().map(|o| (OUTPUTS.iter().position(|n| n.0 == o.name).unwrap_or(usize::MAX), o)).collect();
            by_name.sort_by_key(|(i, _)| *i);
            by_name
                .into_iter()
                .map(|(i, o)| {
                    if o.has_part(p) {
                        Ok(None)
                    } else {
                        o.part(p, schema(OUTPUTS.get(i).map_or(TableType::Errors, |o| o.1), d_model)).map(Some)
                    }
                })
                .collect()
        })
        .collect()
}

fn finish_part(p: usize, guards: Guards<'_>, health: Vec<HealthStats>) -> Result<(), EngineError> {
    for (mut member, stats) in guards.into_iter().zip(health) {
        if let Some(g) = &mut member[3] {
            g.write(&stats.batch(p as u32)?)?;
        }
        for g in member.into_iter().flatten() {
            g.finish()?;
        }
    }
    Ok(())
}

/// The Arrow schema of an output table (`d_model` matters for `eoi` only).
fn schema(table: TableType, d_model: usize) -> SchemaRef {
    match table {
        TableType::Eoi => table.schema_with_width(d_model),
        t => t.schema(),
    }
}

/// Encode `x [n, d]` with the SAE and add the tokens of rows `keep_rows` (all when `None`) to `stats`.
/// Returns the dense codes `[n, d_sae]` (f32).
fn encode_with_stats(sae: &Sae, x: &Tensor, keep_row: &dyn Fn(usize) -> bool, stats: &mut ScopeStats) -> Result<Tensor, EngineError> {
    let err = |e: sae::SaeError| EngineError::Stage(format!("sae: {e}"));
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let codes = sae.encode(&x).map_err(err)?;
    let recon = sae.decode(&codes).map_err(err)?;
    let l0 = codes.gt(0f32)?.to_dtype(DType::F32)?.sum(D::Minus1)?.to_vec1::<f32>()?;
    let sse = (&recon - &x)?.sqr()?.sum(D::Minus1)?.to_vec1::<f32>()?;
    let sq = x.sqr()?.sum(D::Minus1)?.to_vec1::<f32>()?;
    let (n, d) = x.dims2()?;
    let keep: Vec<f32> = (0..n).map(|i| if keep_row(i) { 1.0 } else { 0.0 }).collect();
    for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k > 0.0) {
        stats.add_token(l0[i] as usize, sse[i] as f64, sq[i] as f64, d);
    }
    // Σx over the kept tokens where x is (one row back, not the whole batch)
    let sum = Tensor::from_vec(keep, (1, n), x.device())?.matmul(&x)?.squeeze(0)?.to_vec1::<f32>()?;
    stats.add_sum(&sum);
    Ok(codes)
}

fn process_batch(
    setup: &Setup,
    model: &LlavaGemma,
    saes: &[LoadedSae],
    batch: &Batch,
    health: &mut [HealthStats],
) -> Result<Vec<[Option<RecordBatch>; 5]>, EngineError> {
    let b = batch.ids.len();
    let pixels = batch.tensor(&setup.device)?;
    let out = model.forward(&pixels).map_err(|e| stage_err(&setup.id, e))?;
    let ok = batch.ok();
    let prompt = model.prompt();
    let n_img = prompt.image.len();
    let t_len = prompt.ids.len();
    // text positions: every prompt token outside the image run, except <bos> at 0
    let text_pos: Vec<u32> = (1..t_len).filter(|p| !prompt.image.contains(p)).map(|p| p as u32).collect();
    let mut tables = Vec::with_capacity(saes.len());
    for (i, loaded) in saes.iter().enumerate() {
        let tap = &out.taps[i];
        let d = tap.dim(2)?;
        let stats = &mut health[i];
        stats.assumed_norm = loaded.assumed_norm;
        // image tokens
        let x = model.image_rows(tap).map_err(|e| stage_err(&setup.id, e))?.reshape((b * n_img, d))?;
        let codes = encode_with_stats(&loaded.sae, &x, &|row| ok[row / n_img], &mut stats.image)?;
        // text tokens (image-dependent after the image; BOS excluded)
        if !text_pos.is_empty() {
            let idx = Tensor::from_slice(&text_pos, text_pos.len(), tap.device())?;
            let xt = tap.index_select(&idx, 1)?.reshape((b * text_pos.len(), d))?;
            let nt = text_pos.len();
            encode_with_stats(&loaded.sae, &xt, &|row| ok[row / nt], &mut stats.text)?;
        }
        // totals: exact over every image token
        let dense = codes.reshape((b, n_img, ()))?;
        let sums = dense.sum(1)?.to_vec2::<f32>()?;
        let maxs = dense.max(1)?.to_vec2::<f32>()?;
        let counts = dense.gt(0f32)?.to_dtype(DType::F32)?.sum(1)?.to_vec2::<f32>()?;
        let (mut ti, mut tf, mut ts, mut tm, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (bi, &id) in batch.ids.iter().enumerate() {
            if !ok[bi] {
                continue;
            }
            // a NaN or infinite code anywhere in the image shows in its sums (the pruned top-k may not see it)
            if let Some(f) = sums[bi].iter().position(|v| !v.is_finite()) {
                return Err(stage_err(
                    &setup.id,
                    format!(
                        "image {id}: SAE feature {f} is not finite ({}) at layer {}: the residual overflowed or the SAE \
                         weights hold NaN; try dtype: f32, and check the SAE file",
                        sums[bi][f], loaded.layer
                    ),
                ));
            }
            for (f, &c) in counts[bi].iter().enumerate() {
                if c > 0.0 {
                    ti.push(id);
                    tf.push(f as u32);
                    ts.push(sums[bi][f]);
                    tm.push(maxs[bi][f]);
                    tc.push(c as u32);
                }
            }
        }
        // codes: each token's top_k
        let sparse = sae::sparsify(&codes, setup.keep).map_err(|e| stage_err(&setup.id, e))?;
        let (mut ci, mut ct, mut cf, mut cv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (bi, &id) in batch.ids.iter().enumerate() {
            if !ok[bi] {
                continue;
            }
            for t in 0..n_img {
                let (fs, vs) = sparse.token(bi * n_img + t);
                ci.extend(std::iter::repeat_n(id, fs.len()));
                ct.extend(std::iter::repeat_n(t as u16, fs.len()));
                cf.extend_from_slice(fs);
                cv.extend_from_slice(vs);
            }
        }
        // eoi
        let eoi = model.eoi_row(tap).map_err(|e| stage_err(&setup.id, e))?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let eoi_ids: Vec<u32> = batch.ids.iter().zip(&ok).filter(|(_, k)| **k).map(|(id, _)| *id).collect();
        let eoi_vals: Vec<f32> = eoi.iter().zip(&ok).filter(|(_, k)| **k).flat_map(|(r, _)| r.iter().copied()).collect();
        let list = FixedSizeListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float32, false)),
            d as i32,
            Arc::new(Float32Array::from(eoi_vals)),
            None,
        )?;
        let codes_table = RecordBatch::try_new(
            TableType::Codes.schema(),
            vec![
                Arc::new(UInt32Array::from(ci)),
                Arc::new(UInt16Array::from(ct)),
                Arc::new(UInt32Array::from(cf)),
                Arc::new(Float32Array::from(cv)),
            ],
        )?;
        let totals_table = RecordBatch::try_new(
            TableType::Totals.schema(),
            vec![
                Arc::new(UInt32Array::from(ti)),
                Arc::new(UInt32Array::from(tf)),
                Arc::new(Float32Array::from(ts)),
                Arc::new(Float32Array::from(tm)),
                Arc::new(UInt32Array::from(tc)),
            ],
        )?;
        let eoi_table = RecordBatch::try_new(schema(TableType::Eoi, d), vec![Arc::new(UInt32Array::from(eoi_ids)), Arc::new(list)])?;
        tables.push([Some(codes_table), Some(totals_table), Some(eoi_table), None, Some(batch.errors()?)]);
    }
    Ok(tables)
}
