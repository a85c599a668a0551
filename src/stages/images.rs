//! Image batches for the model stages (`llava_sae`, `clip_vit`, `zeroshot`): the dataset a
//! `dataset` table lists, reopened through the table's producer parameters; fixed, batch-aligned
//! parts; decoding and preprocessing on worker threads, one step ahead of the model.
//!
//! An image that cannot be read or preprocessed keeps its slot (zeros) and is reported, so no
//! other image's batch — and so none of its numbers — changes.

use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use arrow_array::{RecordBatch, StringArray, UInt32Array};
use arrow_schema::SchemaRef;
use candle_core::{DType, Device, Tensor};

use crate::data::{self, ImageSource, Rgb8};
use crate::engine::EngineError;
use crate::engine::job::Member;
use crate::models::clip_image::{ImageProcessor, ImageProcessorConfig};
use crate::plan::params::{Reference, choice, params};
use crate::plan::signature::ParamType;
use crate::tables::TableType;

/// What turns a decoded image into the model's input (`[3, h, w]` f32, channels first).
pub trait Preprocess: Sync {
    fn output_size(&self) -> (usize, usize);
    fn preprocess_into(&self, image: &Rgb8, out: &mut [f32]) -> Result<(), String>;
}

impl Preprocess for ImageProcessor {
    fn output_size(&self) -> (usize, usize) {
        ImageProcessor::output_size(self)
    }

    fn preprocess_into(&self, image: &Rgb8, out: &mut [f32]) -> Result<(), String> {
        ImageProcessor::preprocess_into(self, image, out).map_err(|e| e.to_string())
    }
}

/// The CLIP preprocessor of a checkpoint folder: `preprocessor_config.json`, or the
/// `image_processor` section of transformers 5's `processor_config.json`.
pub fn image_processor(dir: &std::path::Path) -> Result<ImageProcessor, String> {
    let pre = dir.join("preprocessor_config.json");
    let cfg = if pre.is_file() {
        let text = std::fs::read_to_string(&pre).map_err(|e| format!("{}: {e}", pre.display()))?;
        ImageProcessorConfig::from_json(&text).map_err(|e| format!("{}: {e}", pre.display()))?
    } else {
        let proc = dir.join("processor_config.json");
        let text = std::fs::read_to_string(&proc)
            .map_err(|e| format!("{}: {e} (a checkpoint needs preprocessor_config.json or processor_config.json)", proc.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", proc.display()))?;
        let section = v
            .get("image_processor")
            .and_then(|s| s.as_object())
            .ok_or_else(|| format!("{}: no \"image_processor\" section (and no preprocessor_config.json next to it)", proc.display()))?;
        ImageProcessorConfig::from_map(section).map_err(|e| format!("{}: {e}", proc.display()))?
    };
    ImageProcessor::new(cfg).map_err(|e| e.to_string())
}

/// Plan time (`check_files`): a checkpoint folder of `model` whose weights are here has a
/// preprocessor the stage can read, so a checkpoint copied or fetched without it is a `doctor`
/// blocker and a plan error, not a failure after the run started.
pub fn check_processor(
    _params: &std::collections::BTreeMap<String, crate::spec::Value>,
    paths: &std::collections::BTreeMap<String, std::path::PathBuf>,
) -> Result<Vec<crate::plan::signature::ParamProblem>, crate::plan::signature::ParamProblem> {
    let Some(dir) = paths.get("model") else { return Ok(vec![]) };
    // a checkpoint not complete yet (a hub snapshot still without all its weights) is fetched
    // whole, preprocessor included, by the run
    let index = dir.join("model.safetensors.index.json");
    let complete = if index.is_file() {
        crate::models::source::index_shards(&index).is_ok_and(|shards| shards.iter().all(|s| dir.join(s).is_file()))
    } else {
        dir.join("model.safetensors").is_file()
    };
    if !complete {
        return Ok(vec![]);
    }
    image_processor(dir).map(|_| vec![]).map_err(|e| crate::plan::signature::ParamProblem {
        param: "model",
        message: format!("the checkpoint's image preprocessor is unusable: {e}"),
        help: "a LLaVA checkpoint folder has preprocessor_config.json (or transformers 5's processor_config.json with an \
               image_processor section); fetch it with `hf download REPO --include preprocessor_config.json`"
            .into(),
    })
}

/// The images of a member's `from` input: the reopened source and the ids in table order.
pub struct Images {
    pub source: Box<dyn ImageSource>,
    pub ids: Vec<u32>,
}

impl Images {
    pub fn open(m: &Member) -> Result<Images, EngineError> {
        let input = m.input("from")?;
        let (spec, _) = super::dataset::parse_params(&input.instance, &input.producer.params, &input.producer.paths)?;
        let source = data::open(&spec).map_err(|e| EngineError::Stage(format!("{}: {e}", m.id)))?;
        let mut ids = Vec::with_capacity(input.rows() as usize);
        for b in input.read() {
            let b = b?;
            ids.extend(crate::tables::column::<UInt32Array>(&b, "image_id", &input.instance)?.values().iter().copied());
        }
        Ok(Images { source, ids })
    }
}

/// Rows `p·per .. (p+1)·per` of `n`, clipped.
pub fn part_range(p: usize, per: usize, n: usize) -> std::ops::Range<usize> {
    (p * per).min(n)..((p + 1) * per).min(n)
}

/// One preprocessed batch.
pub struct Batch {
    pub part: usize,
    pub ids: Vec<u32>,
    /// `[ids.len(), 3, h, w]`, row-major.
    pub pixels: Vec<f32>,
    /// Why each image failed, if it did (its pixels are zeros).
    pub failures: Vec<Option<String>>,
    pub sources: Vec<String>,
    pub hw: (usize, usize),
}

impl Batch {
    pub fn ok(&self) -> Vec<bool> {
        self.failures.iter().map(Option::is_none).collect()
    }

    pub fn tensor(&self, device: &Device) -> Result<Tensor, EngineError> {
        let (h, w) = self.hw;
        Ok(Tensor::from_slice(&self.pixels, (self.ids.len(), 3, h, w), device)?)
    }

    /// The batch's rows of the `errors` table.
    pub fn errors(&self) -> Result<RecordBatch, EngineError> {
        let failed: Vec<usize> = (0..self.ids.len()).filter(|&i| self.failures[i].is_some()).collect();
        Ok(RecordBatch::try_new(
            TableType::Errors.schema(),
            vec![
                Arc::new(UInt32Array::from_iter_values(failed.iter().map(|&i| self.ids[i]))),
                Arc::new(StringArray::from_iter_values(failed.iter().map(|&i| self.sources[i].as_str()))),
                Arc::new(StringArray::from_iter_values(failed.iter().map(|&i| self.failures[i].as_deref().unwrap_or("")))),
            ],
        )?)
    }
}

/// Read and preprocess `ids` on `workers` threads.
pub fn decode(source: &dyn ImageSource, pre: &dyn Preprocess, part: usize, ids: &[u32], workers: usize) -> Batch {
    let (h, w) = pre.output_size();
    let len = 3 * h * w;
    let mut pixels = vec![0f32; ids.len() * len];
    let mut failures: Vec<Option<String>> = vec![None; ids.len()];
    let per = ids.len().div_ceil(workers.max(1)).max(1);
    std::thread::scope(|s| {
        for ((chunk_ids, chunk_px), chunk_fail) in ids.chunks(per).zip(pixels.chunks_mut(per * len)).zip(failures.chunks_mut(per)) {
            s.spawn(move || {
                for ((id, px), fail) in chunk_ids.iter().zip(chunk_px.chunks_mut(len)).zip(chunk_fail.iter_mut()) {
                    let result = source
                        .read(*id)
                        .map_err(|e| e.to_string())
                        .and_then(|img| pre.preprocess_into(&img, px).map_err(|e| format!("image {id} ({}): {e}", source.source(*id))));
                    if let Err(reason) = result {
                        px.fill(0.0);
                        *fail = Some(reason);
                    }
                }
            });
        }
    });
    let sources = ids.iter().map(|&id| source.source(id)).collect();
    Batch { part, ids: ids.to_vec(), pixels, failures, sources, hw: (h, w) }
}

/// Decode the batches of `parts` (ranges of `part_images` of the ids, cut in `batch`es) on a
/// background thread, up to two batches ahead; iterate to receive them in order. Dropping the
/// stream stops the thread after the batch it is decoding.
pub struct BatchStream {
    rx: std::sync::mpsc::Receiver<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BatchStream {
    pub fn spawn(
        images: Arc<Images>,
        pre: Arc<dyn Preprocess + Send>,
        parts: Vec<usize>,
        part_images: usize,
        batch: usize,
        workers: usize,
    ) -> BatchStream {
        let (tx, rx) = sync_channel::<Batch>(2);
        let thread = std::thread::spawn(move || {
            for p in parts {
                for chunk in images.ids[part_range(p, part_images, images.ids.len())].chunks(batch.max(1)) {
                    if tx.send(decode(images.source.as_ref(), pre.as_ref(), p, chunk, workers)).is_err() {
                        return;
                    }
                }
            }
        });
        BatchStream { rx, thread: Some(thread) }
    }
}

impl Iterator for BatchStream {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // unblock the sender, then wait for it so no decoding outlives the stage
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

choice! {
    /// A model's compute dtype.
    pub enum Dtype { F32 = "f32", Bf16 = "bf16", F16 = "f16" }
}

choice! {
    /// Where a model runs.
    pub enum DeviceChoice { Auto = "auto", Cpu = "cpu", Cuda = "cuda" }
}

choice! {
    /// How LLaVA scales the image rows (`llava_sae`, `zeroshot`).
    pub enum ImageScaleChoice { Scaled = "scaled", Unscaled = "unscaled" }
}

impl ImageScaleChoice {
    /// The model's setting.
    pub fn scale(self) -> crate::models::llava::ImageScale {
        match self {
            ImageScaleChoice::Scaled => crate::models::llava::ImageScale::Scaled,
            ImageScaleChoice::Unscaled => crate::models::llava::ImageScale::Unscaled,
        }
    }
}

params! {
    /// The parameters every model stage has after its own: `dtype` and `part_images` (in the
    /// key), `batch`, `device` and `workers` (execution only).
    pub struct RuntimeParams {
        /// the model's compute dtype (f32 on CPU; bf16 on a GPU); norms, softmax and RoPE stay f32
        pub dtype: Dtype, Dtype::param_type(), default("f32");
        /// images per part (the unit of resume)
        pub part_images: usize, ParamType::min(1), default(1024);
        /// images per forward
        pub batch: usize, ParamType::range(1, 4096), default(8), not_in_key;
        /// where to run: auto uses CUDA when built with --features cuda and a GPU is present
        pub device: DeviceChoice, DeviceChoice::param_type(), default("auto"), not_in_key;
        /// image decoding threads
        pub workers: usize, ParamType::range(1, 256), default(2), not_in_key;
    }
}

impl RuntimeParams {
    /// The dtype and the device (`id`: the instance, for the error).
    pub fn dtype_device(&self, id: &str) -> Result<(DType, Device), EngineError> {
        let dtype = match self.dtype {
            Dtype::Bf16 => DType::BF16,
            Dtype::F16 => DType::F16,
            Dtype::F32 => DType::F32,
        };
        let device = match self.device {
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda => Device::new_cuda(0).map_err(|e| {
                EngineError::Stage(format!(
                    "{id}: device cuda: {e}; build with `cargo build --release --features cuda` on a machine with a GPU"
                ))
            })?,
            DeviceChoice::Auto => Device::cuda_if_available(0).unwrap_or(Device::Cpu),
        };
        Ok((dtype, device))
    }
}

/// `cpu f32`, `cuda:0 bf16`: what the manifest records as the device a model stage computed on.
pub fn describe_device(device: &Device, dtype: DType) -> String {
    let place = match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    };
    format!("{place} {}", dtype.as_str())
}

/// Part `p` of a member's outputs, opened in the order of `names`, each with `schema(name)`.
pub fn open_parts<'a>(
    m: &'a mut Member,
    p: usize,
    names: &[&str],
    schema: impl Fn(&str) -> SchemaRef,
) -> Result<Vec<crate::engine::job::PartGuard<'a>>, EngineError> {
    let mut by_name: Vec<(usize, &mut crate::engine::job::OutputWriter)> =
        m.outputs.iter_mut().map(|o| (names.iter().position(|n| *n == o.name).unwrap_or(usize::MAX), o)).collect();
    by_name.sort_by_key(|(i, _)| *i);
    by_name.into_iter().map(|(i, o)| o.part(p, schema(names.get(i).copied().unwrap_or("")))).collect()
}

/// Finish parts opened with [`open_parts`].
pub fn finish_parts(guards: Vec<crate::engine::job::PartGuard<'_>>) -> Result<(), EngineError> {
    for g in guards {
        g.finish()?;
    }
    Ok(())
}

/// Rows of a dense table of type `ty` (`eoi`, `vit`, `dense`): `values` holds `ids.len()` rows of `width`.
pub fn dense_batch(ty: TableType, ids: Vec<u32>, values: Vec<f32>, width: usize) -> Result<RecordBatch, EngineError> {
    let list = arrow_array::FixedSizeListArray::try_new(
        Arc::new(arrow_schema::Field::new_list_field(arrow_schema::DataType::Float32, false)),
        width as i32,
        Arc::new(arrow_array::Float32Array::from(values)),
        None,
    )?;
    Ok(RecordBatch::try_new(ty.schema_with_width(width), vec![Arc::new(UInt32Array::from(ids)), Arc::new(list)])?)
}

/// The rows of the images that did not fail, flattened (`rows[i]` is image `i`'s vector).
pub fn kept_rows(rows: &[Vec<f32>], ok: &[bool], ids: &[u32]) -> (Vec<u32>, Vec<f32>) {
    let ids = ids.iter().zip(ok).filter(|(_, k)| **k).map(|(i, _)| *i).collect();
    let values = rows.iter().zip(ok).filter(|(_, k)| **k).flat_map(|(r, _)| r.iter().copied()).collect();
    (ids, values)
}

/// What an image stage sets up for its members — one member for `clip_vit` and `resnet`, the
/// fused members of one forward for `llava_sae`: the images (of the first member: fused members
/// share their inputs), the runtime parameters, the declared parts and the ones still to compute in
/// any member (progress is told about the rest).
pub struct Setup {
    pub images: Arc<Images>,
    pub dtype: DType,
    pub device: Device,
    pub part_images: usize,
    pub batch: usize,
    pub workers: usize,
    pub todo: Vec<usize>,
    /// The resolved model folder (checkpoint completed from the hub when it is an `hf://` one).
    pub model_dir: std::path::PathBuf,
}

impl Setup {
    /// `None` when every part of every output of every member is already there. Fetches the rest
    /// of an `hf://` checkpoint (`model`, the first member's) only when there is work.
    pub fn new(
        members: &mut [Member],
        outputs: &[&str],
        model: &Reference,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Option<Setup>, EngineError> {
        let Some(m) = members.first() else { return Ok(None) };
        let images = Arc::new(Images::open(m)?);
        let runtime: RuntimeParams = m.params()?;
        let (dtype, device) = runtime.dtype_device(&m.id)?;
        let RuntimeParams { part_images, batch, workers, .. } = runtime;
        let n_parts = images.ids.len().div_ceil(part_images).max(1);
        for m in members.iter_mut() {
            m.device = Some(describe_device(&device, dtype));
            for o in outputs {
                m.output(o)?.set_parts(n_parts)?;
            }
        }
        let todo: Vec<usize> = (0..n_parts).filter(|&p| members.iter().any(|m| m.outputs.iter().any(|o| !o.has_part(p)))).collect();
        progress.add_total(images.ids.len() as u64, "images");
        let done: usize = (0..n_parts).filter(|p| !todo.contains(p)).map(|p| part_range(p, part_images, images.ids.len()).len()).sum();
        progress.advance(done as u64);
        if todo.is_empty() {
            return Ok(None);
        }
        let m = &members[0];
        let model_dir = model.path.clone().ok_or_else(|| EngineError::Stage(format!("{}: parameter 'model' was not resolved", m.id)))?;
        crate::models::source::ensure_model(&model.text, &model_dir)
            .map_err(|e| EngineError::Stage(format!("{}: model {}: {e}", m.id, model_dir.display())))?;
        Ok(Some(Setup { images, dtype, device, part_images, batch, workers, todo, model_dir }))
    }

    /// The batches still to compute, decoded ahead with `pre`.
    pub fn batches(&self, pre: Arc<dyn Preprocess + Send>) -> BatchStream {
        BatchStream::spawn(self.images.clone(), pre, self.todo.clone(), self.part_images, self.batch, self.workers)
    }
}
