//! `binarize`: `threshold` keeps features with value > `threshold` as 1 (the authors: X > 1.0),
//! `cap` maps X to min(X, 1), `none` passes the table through. Part-aligned with its input.

use arrow_array::{Float32Array, UInt32Array};

use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::plan::params::{choice, params};
use crate::plan::signature::{ParamType, Signature, input};
use crate::tables::{TableType, column, pooled_batch};

pub struct Binarize;

choice! {
    /// How `binarize` maps a pooled value.
    pub enum Mode { None = "none", Threshold = "threshold", Cap = "cap" }
}

params! {
    /// `binarize`'s parameters.
    pub struct BinarizeParams {
        /// how to binarize
        pub mode: Mode, Mode::param_type(), default("threshold");
        /// for `threshold`: values strictly above it become 1
        pub threshold: f64, ParamType::Float, default(1.0);
    }
}

impl Stage for Binarize {
    fn signature(&self) -> Signature {
        Signature::new("binarize", 1, "binarize pooled features: threshold (X > t → 1, else dropped), cap (min(X, 1)) or none")
            .input(input("from", &[TableType::Pooled], "pooled features"))
            .params::<BinarizeParams>()
            .output("pooled", TableType::Pooled, "image_id u32, feature u32, value f32")
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let BinarizeParams { mode, threshold } = m.params()?;
            let t = threshold as f32;
            let src = m.input("from")?.clone();
            let out = m.output("pooled")?;
            out.set_parts(src.num_parts())?;
            for part in 0..src.num_parts() {
                if out.has_part(part) {
                    continue;
                }
                let mut rows = Vec::new();
                for b in src.read_part(part)? {
                    let b = b?;
                    let ids = column::<UInt32Array>(&b, "image_id", &src.instance)?;
                    let feats = column::<UInt32Array>(&b, "feature", &src.instance)?;
                    let vals = column::<Float32Array>(&b, "value", &src.instance)?;
                    for i in 0..b.num_rows() {
                        let v = vals.value(i);
                        let v = match mode {
                            Mode::Threshold if v > t => 1.0,
                            Mode::Threshold => continue,
                            Mode::Cap => v.min(1.0),
                            Mode::None => v,
                        };
                        rows.push((ids.value(i), feats.value(i), v));
                    }
                }
                out.write_part(part, TableType::Pooled.schema(), &[pooled_batch(&rows)?])?;
            }
        }
        Ok(())
    }
}
