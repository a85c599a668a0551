//! What the image-model stages (`llava_sae`, `resnet`) share: the dataset reopened through its
//! table's producer parameters, the `dtype`/`device` parameters, fixed part and batch ranges,
//! reading and preprocessing batches on worker threads one step ahead of the model, opening a
//! part of several outputs at once, and the `errors` output.
//!
//! Parts are fixed ranges of `part_images` rows of the dataset table and batches fixed ranges of
//! `batch` rows within a part; an image that cannot be read or preprocessed keeps its slot
//! (zeros) and is reported, so no other image's batch changes.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::Scope;

use arrow_array::{RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use candle_core::{DType, Device};

use crate::data::{self, ImageSource};
use crate::engine::EngineError;
use crate::engine::job::{Member, OutputWriter, PartGuard};
use crate::models::clip_image::ImageProcessor;

pub fn stage_err(id: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Stage(format!("{id}: {e}"))
}

pub fn str_param<'a>(m: &'a Member, name: &str) -> Result<&'a str, EngineError> {
    m.param(name)?.as_str().ok_or_else(|| stage_err(&m.id, format!("parameter '{name}' is not a string")))
}

/// The `dtype` parameter (`f32`, `bf16`, `f16`).
pub fn dtype(m: &Member) -> Result<DType, EngineError> {
    Ok(match str_param(m, "dtype")? {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        _ => DType::F32,
    })
}

/// The `device` parameter: `cpu`, `cuda` (an error naming the fix when there is none), or `auto`
/// (CUDA when built with `--features cuda` and a GPU is present).
pub fn device(m: &Member) -> Result<Device, EngineError> {
    Ok(match str_param(m, "device")? {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0).map_err(|e| {
            stage_err(&m.id, format!("device cuda: {e}; build with `cargo build --release --features cuda` on a machine with a GPU"))
        })?,
        _ => Device::cuda_if_available(0).unwrap_or(Device::Cpu),
    })
}

/// The images of the `from` input, reopened from the `dataset` stage's parameters.
pub fn open_source(m: &Member) -> Result<Box<dyn ImageSource>, EngineError> {
    let input = m.input("from")?;
    let (spec, _) = super::dataset::parse_params(&input.instance, &input.producer.params, &input.producer.paths)?;
    data::open(&spec).map_err(|e| stage_err(&m.id, e))
}

/// Image ids of the dataset table, in table order.
pub fn read_ids(m: &Member) -> Result<Vec<u32>, EngineError> {
    let input = m.input("from")?;
    let mut ids = Vec::with_capacity(input.rows() as usize);
    for b in input.read() {
        let b = b?;
        ids.extend(crate::tables::column::<UInt32Array>(&b, "image_id", &input.instance)?.values().iter().copied());
    }
    Ok(ids)
}

/// Rows of part `p` when every part holds `per` of `n` rows.
pub fn part_range(p: usize, per: usize, n: usize) -> Range<usize> {
    (p * per).min(n)..((p + 1) * per).min(n)
}

/// Reads images and preprocesses them into a batch buffer on `workers` threads.
pub struct ImageReader {
    pub source: Box<dyn ImageSource>,
    pub processor: ImageProcessor,
    pub workers: usize,
}

/// One preprocessed batch: channels-first `f32` pixels, `[ids.len(), 3, h, w]`.
pub struct Decoded {
    pub part: usize,
    pub ids: Vec<u32>,
    pub pixels: Vec<f32>,
    /// Why an image failed (its pixels are zeros), per slot.
    pub failures: Vec<Option<String>>,
    pub sources: Vec<String>,
    pub hw: (usize, usize),
}

impl Decoded {
    /// Per slot: whether the image was read.
    pub fn ok(&self) -> Vec<bool> {
        self.failures.iter().map(Option::is_none).collect()
    }
}

impl ImageReader {
    /// Read and preprocess one batch. An image that fails keeps its slot (zeros) and is reported.
    pub fn decode(&self, part: usize, ids: &[u32]) -> Decoded {
        let (h, w) = self.processor.output_size();
        let len = 3 * h * w;
        let mut pixels = vec![0f32; ids.len() * len];
        let mut failures: Vec<Option<String>> = vec![None; ids.len()];
        let per = ids.len().div_ceil(self.workers.max(1)).max(1);
        std::thread::scope(|s| {
            for ((chunk_ids, chunk_px), chunk_fail) in ids.chunks(per).zip(pixels.chunks_mut(per * len)).zip(failures.chunks_mut(per)) {
                s.spawn(move || {
                    for ((id, px), fail) in chunk_ids.iter().zip(chunk_px.chunks_mut(len)).zip(chunk_fail.iter_mut()) {
                        let result = self.source.read(*id).map_err(|e| e.to_string()).and_then(|img| {
                            self.processor.preprocess_into(&img, px).map_err(|e| format!("image {id} ({}): {e}", self.source.source(*id)))
                        });
                        if let Err(reason) = result {
                            px.fill(0.0);
                            *fail = Some(reason);
                        }
                    }
                });
            }
        });
        let sources = ids.iter().map(|&id| self.source.source(id)).collect();
        Decoded { part, ids: ids.to_vec(), pixels, failures, sources, hw: (h, w) }
    }

    /// Decode the batches of parts `todo` (in order) on a thread of `scope`, up to two batches
    /// ahead of whoever receives them.
    pub fn decode_ahead<'scope, 'env>(
        &'env self,
        scope: &'scope Scope<'scope, 'env>,
        ids: &'env [u32],
        todo: &'env [usize],
        part_images: usize,
        batch: usize,
    ) -> Receiver<Decoded> {
        let (tx, rx) = sync_channel::<Decoded>(2);
        scope.spawn(move || {
            for &p in todo {
                for chunk in ids[part_range(p, part_images, ids.len())].chunks(batch) {
                    if tx.send(self.decode(p, chunk)).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}

/// Parts some output of some member still lacks.
pub fn parts_to_do(members: &[Member], n_parts: usize) -> Vec<usize> {
    (0..n_parts).filter(|&p| members.iter().any(|m| m.outputs.iter().any(|o| !o.has_part(p)))).collect()
}

/// Open part `p` of the member's outputs, in the order of `names`, each with `schema(name)`.
pub fn open_parts<'a>(
    m: &'a mut Member,
    p: usize,
    names: &[&str],
    schema: impl Fn(&str) -> SchemaRef,
) -> Result<Vec<PartGuard<'a>>, EngineError> {
    let mut by_name: Vec<(usize, &mut OutputWriter)> =
        m.outputs.iter_mut().map(|o| (names.iter().position(|n| *n == o.name).unwrap_or(usize::MAX), o)).collect();
    by_name.sort_by_key(|(i, _)| *i);
    by_name.into_iter().map(|(i, o)| o.part(p, schema(names.get(i).copied().unwrap_or("")))).collect()
}

/// Schema of the `errors` table.
pub fn errors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// The batch's failed images as `errors` rows.
pub fn errors_batch(batch: &Decoded) -> Result<RecordBatch, EngineError> {
    let failed: Vec<usize> = (0..batch.ids.len()).filter(|&i| batch.failures[i].is_some()).collect();
    Ok(RecordBatch::try_new(
        errors_schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(failed.iter().map(|&i| batch.ids[i]))),
            Arc::new(StringArray::from_iter_values(failed.iter().map(|&i| batch.sources[i].as_str()))),
            Arc::new(StringArray::from_iter_values(failed.iter().map(|&i| batch.failures[i].as_deref().unwrap_or("")))),
        ],
    )?)
}

/// Schema of a dense per-image table (`eoi`, `vit`, `dense`): `image_id`, `resid [width]`.
pub fn dense_schema(width: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("image_id", DataType::UInt32, false),
        Field::new("resid", DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, false)), width as i32), false),
    ]))
}

/// A dense batch: `values` holds `ids.len()` rows of `width`.
pub fn dense_batch(ids: Vec<u32>, values: Vec<f32>, width: usize) -> Result<RecordBatch, EngineError> {
    let list = arrow_array::FixedSizeListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Float32, false)),
        width as i32,
        Arc::new(arrow_array::Float32Array::from(values)),
        None,
    )?;
    Ok(RecordBatch::try_new(dense_schema(width), vec![Arc::new(UInt32Array::from(ids)), Arc::new(list)])?)
}
