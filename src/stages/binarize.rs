//! `binarize`: `threshold` keeps features with value > `threshold` as 1 (the authors: X > 1.0),
//! `cap` maps X to min(X, 1), `none` passes the table through. Part-aligned with its input.

use arrow_array::{Float32Array, UInt32Array};

use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::plan::signature::{ParamType, Signature, input, output, param};
use crate::spec::Value;
use crate::tables::{column, pooled_batch, pooled_schema};

pub struct Binarize;

impl Stage for Binarize {
    fn signature(&self) -> Signature {
        Signature {
            kind: "binarize",
            version: 1,
            doc: "binarize pooled features: threshold (X > t → 1, else dropped), cap (min(X, 1)) or none",
            inputs: vec![input("from", &["pooled"], "pooled features")],
            params: vec![
                param("mode", ParamType::Choice(vec!["none", "threshold", "cap"]), Some(Value::Str("threshold".into())), "how to binarize"),
                param("threshold", ParamType::Float, Some(Value::Float(1.0)), "for `threshold`: values strictly above it become 1"),
            ],
            open_params: false,
            outputs: vec![output("pooled", "pooled", "image_id u32, feature u32, value f32")],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let mode = m.param("mode")?.as_str().unwrap_or("threshold").to_string();
            let t = m.param("threshold")?.as_f64().unwrap_or(1.0) as f32;
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
                        let v = match mode.as_str() {
                            "threshold" if v > t => 1.0,
                            "threshold" => continue,
                            "cap" => v.min(1.0),
                            _ => v,
                        };
                        rows.push((ids.value(i), feats.value(i), v));
                    }
                }
                out.write_part(part, pooled_schema(), &[pooled_batch(&rows)?])?;
            }
        }
        Ok(())
    }
}
