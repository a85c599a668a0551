//! `fuse`: concatenate the pooled features of several layers into one vector per image (the
//! post's layer fusion). Inputs gather over `layer` by default (`from: "pooled[layer in (6, 10)]"`
//! yields one fused instance per remaining variant, coordinate `layer=6+10`); the i-th gathered
//! table (in canonical order: ascending layer) has its feature ids offset by i × `stride`.

use std::sync::Arc;

use arrow_array::{Float32Array, RecordBatch, UInt32Array, UInt64Array};

use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::plan::params::params;
use crate::plan::signature::{Many, ParamType, Signature, input};
use crate::tables::{TableType, column, pooled_batch};

pub struct Fuse;

params! {
    /// `fuse`'s parameters.
    pub struct FuseParams {
        /// offset between layers' feature ids; 0: one more than the largest id seen
        pub stride: u64, ParamType::min(0), default(0);
    }
}

impl Stage for Fuse {
    fn signature(&self) -> Signature {
        Signature::new("fuse", 1, "concatenate pooled features of several layers (feature ids offset per layer)")
            .input(
                input("from", &[TableType::Pooled], "pooled features of the layers to fuse (gathers over `layer`)")
                    .many(Many::Over(vec!["layer".into()])),
            )
            .params::<FuseParams>()
            .output("pooled", TableType::Pooled, "image_id u32, feature u32 (offset), value f32")
            .output("offsets", TableType::FuseOffsets, "source instance, offset u64: where each layer's features start")
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let p: FuseParams = m.params()?;
            let inputs = m.inputs("from").to_vec();
            let mut tables: Vec<Vec<(u32, u32, f32)>> = Vec::new();
            let mut max_f = 0u64;
            for t in &inputs {
                let mut rows = Vec::new();
                for b in t.read() {
                    let b = b?;
                    let ids = column::<UInt32Array>(&b, "image_id", &t.instance)?;
                    let feats = column::<UInt32Array>(&b, "feature", &t.instance)?;
                    let vals = column::<Float32Array>(&b, "value", &t.instance)?;
                    for i in 0..b.num_rows() {
                        max_f = max_f.max(feats.value(i) as u64 + 1);
                        rows.push((ids.value(i), feats.value(i), vals.value(i)));
                    }
                }
                tables.push(rows);
            }
            let stride = match p.stride {
                0 => max_f,
                s => s,
            };
            if stride * inputs.len() as u64 > u32::MAX as u64 {
                return Err(EngineError::Stage(format!("{}: {} layers × stride {stride} overflow u32 feature ids", m.id, inputs.len())));
            }
            let mut all: Vec<(u32, u32, f32)> = Vec::new();
            for (i, rows) in tables.into_iter().enumerate() {
                for (img, f, v) in rows {
                    if f as u64 >= stride {
                        return Err(EngineError::Stage(format!(
                            "{}: feature {f} of {} is not below the stride {stride}",
                            m.id, inputs[i].instance
                        )));
                    }
                    all.push((img, f + (i as u64 * stride) as u32, v));
                }
            }
            all.sort_by_key(|r| (r.0, r.1));
            m.output("pooled")?.write_part(0, TableType::Pooled.schema(), &[pooled_batch(&all)?])?;
            let batch = RecordBatch::try_new(
                TableType::FuseOffsets.schema(),
                vec![
                    Arc::new(arrow_array::StringArray::from_iter_values(inputs.iter().map(|t| t.instance.clone()))),
                    Arc::new(UInt64Array::from_iter_values((0..inputs.len() as u64).map(|i| i * stride))),
                ],
            )?;
            m.output("offsets")?.write_part(0, batch.schema(), &[batch])?;
        }
        Ok(())
    }
}
