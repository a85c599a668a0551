//! `pool`: per-image feature vectors from per-token SAE codes.
//!
//! - `sum`, `max`, `count`: from the extraction's exact `totals` when given (so sum pooling never
//!   depends on the codes' `top_k`), else from `codes`.
//! - `mean`: the sum divided by `tokens` (the image's token count, 576 for LLaVA-1.5 at 336 px).
//! - `topN` (`top1`, `top5`, …): each token's N highest features (value descending, then feature
//!   ascending) count one each; the value is the number of tokens whose top N hold the feature —
//!   the original authors' pooling.
//! - `keep` (optional, from `clean`): only these features survive.
//!
//! One output part per input part (parts are image-aligned ranges); rows sorted by
//! (image_id, feature); features that pool to 0 are not written.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::{Float32Array, UInt16Array, UInt32Array};

use crate::engine::EngineError;
use crate::engine::job::{Job, Member, TableInput};
use crate::engine::stage::Stage;
use crate::plan::params::{FromParam, params, wrong};
use crate::plan::signature::{ParamProblem, ParamType, Signature, input};
use crate::spec::Value;
use crate::tables::{TableType, column, pooled_batch};

pub struct Pool;

params! {
    /// `pool`'s parameters.
    pub struct PoolParams {
        /// sum, mean, max, count, or topN (top1, top5, …)
        pub method: Method, ParamType::Str, default("sum");
        /// tokens per image, the divisor of `mean`
        pub tokens: u64, ParamType::min(1), default(576);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Sum,
    Mean,
    Max,
    Count,
    Top(usize),
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "sum" => Method::Sum,
            "mean" => Method::Mean,
            "max" => Method::Max,
            "count" => Method::Count,
            _ => Method::Top(s.strip_prefix("top")?.parse().ok().filter(|n| *n > 0)?),
        })
    }
}

impl FromParam for Method {
    fn from_param(name: &str, value: Option<&Value>, _: Option<&std::path::PathBuf>) -> Result<Self, String> {
        value
            .and_then(Value::as_str)
            .and_then(Method::parse)
            .ok_or_else(|| wrong(name, "sum, mean, max, count, or topN such as top5", value))
    }
}

fn validate(p: &BTreeMap<String, Value>) -> Result<(), ParamProblem> {
    let m = p.get("method").and_then(Value::as_str).unwrap_or_default();
    if Method::parse(m).is_none() {
        return Err(ParamProblem {
            param: "method",
            message: format!("unknown pooling '{m}'"),
            help: "use sum, mean, max, count, or topN such as top1, top5, top50".into(),
        });
    }
    Ok(())
}

/// The features a `clean` stage kept.
pub(crate) fn read_keep(t: &TableInput) -> Result<BTreeSet<u32>, EngineError> {
    let mut keep = BTreeSet::new();
    for b in t.read() {
        let b = b?;
        keep.extend(column::<UInt32Array>(&b, "feature", &t.instance)?.values().iter().copied());
    }
    Ok(keep)
}

impl Stage for Pool {
    fn signature(&self) -> Signature {
        Signature::new(
            "pool",
            1,
            "per-image feature vectors from per-token SAE codes: sum, mean, max, count, or topN (each token's N highest features, value descending, ties to the lower feature id, counted over tokens)",
        )
        .input(
            input("codes", &[TableType::Codes], "per-token codes (needed for topN, and for the others when no totals are given)").optional(),
        )
        .input(input("totals", &[TableType::Totals], "exact per-image sums/max/counts (preferred for sum, mean, max, count)").optional())
        .input(input("keep", &[TableType::Features], "only these features survive (the output of `clean`)").optional())
        .params::<PoolParams>()
        .output("pooled", TableType::Pooled, "image_id u32, feature u32, value f32, sorted by image then feature")
        .validate(validate)
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            run_one(m)?;
        }
        Ok(())
    }
}

fn run_one(m: &mut Member) -> Result<(), EngineError> {
    let PoolParams { method, tokens } = m.params()?;
    let tokens = tokens as f32;
    let keep = match m.inputs("keep").first() {
        Some(t) => Some(read_keep(t)?),
        None => None,
    };
    let use_totals = !matches!(method, Method::Top(_)) && !m.inputs("totals").is_empty();
    let source = if use_totals { m.inputs("totals").first() } else { m.inputs("codes").first() }.cloned().ok_or_else(|| {
        EngineError::Stage(format!(
            "{}: pooling '{}' needs {}",
            m.id,
            m.params.get("method").map(|v| v.to_string()).unwrap_or_default(),
            if matches!(method, Method::Top(_)) { "`codes`" } else { "`totals` or `codes`" }
        ))
    })?;
    let n = source.num_parts();
    let out = m.output("pooled")?;
    out.set_parts(n)?;
    for part in 0..n {
        if out.has_part(part) {
            continue;
        }
        let mut acc: BTreeMap<(u32, u32), f32> = BTreeMap::new();
        if use_totals {
            for b in source.read_part(part)? {
                let b = b?;
                let (ids, feats) =
                    (column::<UInt32Array>(&b, "image_id", &source.instance)?, column::<UInt32Array>(&b, "feature", &source.instance)?);
                let sums = column::<Float32Array>(&b, "sum", &source.instance)?;
                let maxs = column::<Float32Array>(&b, "max", &source.instance)?;
                let counts = column::<UInt32Array>(&b, "count", &source.instance)?;
                for i in 0..b.num_rows() {
                    let v = match method {
                        Method::Sum => sums.value(i),
                        Method::Mean => sums.value(i) / tokens,
                        Method::Max => maxs.value(i),
                        Method::Count => counts.value(i) as f32,
                        Method::Top(_) => unreachable!("topN reads codes"),
                    };
                    *acc.entry((ids.value(i), feats.value(i))).or_insert(0.0) += v;
                }
            }
        } else {
            // group by (image, token): codes are written in that order, but do not rely on it
            let mut tokens_of: BTreeMap<(u32, u16), Vec<(u32, f32)>> = BTreeMap::new();
            for b in source.read_part(part)? {
                let b = b?;
                let ids = column::<UInt32Array>(&b, "image_id", &source.instance)?;
                let toks = column::<UInt16Array>(&b, "token", &source.instance)?;
                let feats = column::<UInt32Array>(&b, "feature", &source.instance)?;
                let vals = column::<Float32Array>(&b, "value", &source.instance)?;
                for i in 0..b.num_rows() {
                    tokens_of.entry((ids.value(i), toks.value(i))).or_default().push((feats.value(i), vals.value(i)));
                }
            }
            for ((image, _), mut fs) in tokens_of {
                if let Method::Top(k) = method {
                    fs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    fs.truncate(k);
                }
                for (f, v) in fs {
                    if v == 0.0 {
                        continue;
                    }
                    let e = acc.entry((image, f)).or_insert(0.0);
                    match method {
                        Method::Sum | Method::Mean => *e += v,
                        Method::Max => *e = e.max(v),
                        Method::Count | Method::Top(_) => *e += 1.0,
                    }
                }
            }
            if method == Method::Mean {
                acc.values_mut().for_each(|v| *v /= tokens);
            }
        }
        let rows: Vec<(u32, u32, f32)> = acc
            .into_iter()
            .filter(|((_, f), v)| *v != 0.0 && keep.as_ref().is_none_or(|k| k.contains(f)))
            .map(|((i, f), v)| (i, f, v))
            .collect();
        out.write_part(part, TableType::Pooled.schema(), &[pooled_batch(&rows)?])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse() {
        assert_eq!(Method::parse("top5"), Some(Method::Top(5)));
        assert_eq!(Method::parse("sum"), Some(Method::Sum));
        assert_eq!(Method::parse("top0"), None);
        assert_eq!(Method::parse("topx"), None);
    }
}
