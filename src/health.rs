//! SAE health: how well an SAE trained on text fits the tokens it is applied to — the study's
//! first number. The extraction stage accumulates exact sufficient statistics per part and scope
//! (image tokens, the prompt's text tokens) and writes them as the `health` table; [`summarize`]
//! folds any set of parts into L0 quantiles, reconstruction error, variance explained and residual
//! norms, so a resumed run and an uninterrupted one summarize identically.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder, UInt32Builder};
use arrow_array::{Array, ArrayRef, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, SchemaRef};

use crate::engine::EngineError;
use crate::tables::column;

/// The `health` table: one row per (part, scope) (declared in [`crate::tables::TableType::Health`]).
pub fn schema() -> SchemaRef {
    crate::tables::TableType::Health.schema()
}

/// Sufficient statistics of one scope over some tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeStats {
    pub tokens: u64,
    pub l0_sum: f64,
    /// `l0_hist[k]`: tokens with exactly `k` active features.
    pub l0_hist: Vec<u32>,
    /// Σ per-token mean squared reconstruction error.
    pub mse_sum: f64,
    /// Σ ‖x − x̂‖².
    pub sse: f64,
    /// Σ ‖x‖².
    pub sum_sq: f64,
    /// Σ ‖x‖.
    pub norm_sum: f64,
    /// Σ x (per dimension), for the variance around the mean.
    pub sum_x: Vec<f64>,
}

impl ScopeStats {
    /// One token of width `d`: its L0, ‖x − x̂‖² and ‖x‖² (its x goes in through [`ScopeStats::add_sum`]).
    pub fn add_token(&mut self, l0: usize, sse: f64, sq: f64, d: usize) {
        if self.l0_hist.len() <= l0 {
            self.l0_hist.resize(l0 + 1, 0);
        }
        self.l0_hist[l0] += 1;
        self.tokens += 1;
        self.l0_sum += l0 as f64;
        self.sse += sse;
        self.mse_sum += sse / d.max(1) as f64;
        self.sum_sq += sq;
        self.norm_sum += sq.sqrt();
    }

    /// Σx of the tokens added (summed where they are, e.g. on the device).
    pub fn add_sum(&mut self, sum: &[f32]) {
        if self.sum_x.len() != sum.len() {
            self.sum_x.resize(sum.len(), 0.0);
        }
        for (acc, v) in self.sum_x.iter_mut().zip(sum) {
            *acc += *v as f64;
        }
    }

    fn merge(&mut self, o: &ScopeStats) {
        self.tokens += o.tokens;
        self.l0_sum += o.l0_sum;
        if self.l0_hist.len() < o.l0_hist.len() {
            self.l0_hist.resize(o.l0_hist.len(), 0);
        }
        for (a, b) in self.l0_hist.iter_mut().zip(&o.l0_hist) {
            *a += b;
        }
        self.mse_sum += o.mse_sum;
        self.sse += o.sse;
        self.sum_sq += o.sum_sq;
        self.norm_sum += o.norm_sum;
        if self.sum_x.len() < o.sum_x.len() {
            self.sum_x.resize(o.sum_x.len(), 0.0);
        }
        for (a, b) in self.sum_x.iter_mut().zip(&o.sum_x) {
            *a += b;
        }
    }
}

/// A part's statistics for both scopes.
#[derive(Clone, Debug, Default)]
pub struct HealthStats {
    pub image: ScopeStats,
    pub text: ScopeStats,
    /// The raw residual norm the SAE's input scale assumes (`√d_in / scale`), if it has one.
    pub assumed_norm: Option<f64>,
}

impl HealthStats {
    /// The part's two rows of the `health` table.
    pub fn batch(&self, part: u32) -> Result<RecordBatch, EngineError> {
        let scopes = [("image", &self.image), ("text", &self.text)];
        let mut hist = ListBuilder::new(UInt32Builder::new()).with_field(Arc::new(Field::new_list_field(DataType::UInt32, true)));
        let mut sums = ListBuilder::new(Float64Builder::new()).with_field(Arc::new(Field::new_list_field(DataType::Float64, true)));
        for (_, s) in &scopes {
            hist.append_value(s.l0_hist.iter().map(|&c| Some(c)));
            sums.append_value(s.sum_x.iter().map(|&c| Some(c)));
        }
        let f64s = |get: fn(&ScopeStats) -> f64| Arc::new(Float64Array::from_iter_values(scopes.iter().map(|(_, s)| get(s)))) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(vec![part; 2])),
            Arc::new(StringArray::from_iter_values(scopes.iter().map(|(n, _)| *n))),
            Arc::new(UInt64Array::from_iter_values(scopes.iter().map(|(_, s)| s.tokens))),
            f64s(|s| s.l0_sum),
            Arc::new(hist.finish()),
            f64s(|s| s.mse_sum),
            f64s(|s| s.sse),
            f64s(|s| s.sum_sq),
            f64s(|s| s.norm_sum),
            Arc::new(sums.finish()),
            Arc::new(Float64Array::from(vec![self.assumed_norm; 2])),
        ];
        Ok(RecordBatch::try_new(schema(), cols)?)
    }
}

/// One scope's health over every part given.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub scope: String,
    pub tokens: u64,
    pub l0_mean: f64,
    /// L0 quantiles 10/50/90/99 % (exact: from the histogram, lower value at ties).
    pub l0_quantiles: [usize; 4],
    /// Mean per-token MSE of the reconstruction.
    pub mse: f64,
    /// 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄: the scope's mean residual).
    pub variance_explained: f64,
    pub norm_mean: f64,
    /// `norm_mean` over the norm the SAE's input scale assumes, when it has one.
    pub norm_ratio: Option<f64>,
}

/// Fold `health` table batches into one summary per scope (image first).
pub fn summarize(batches: &[RecordBatch]) -> Result<Vec<Summary>, EngineError> {
    let mut scopes: Vec<(String, ScopeStats)> = Vec::new();
    let mut assumed = None;
    for b in batches {
        let what = "health table";
        let scope = column::<StringArray>(b, "scope", what)?;
        let tokens = column::<UInt64Array>(b, "tokens", what)?;
        let f = |n: &str| column::<Float64Array>(b, n, what);
        let (l0, mse, sse, sq, norm) = (f("l0_sum")?, f("mse_sum")?, f("sse")?, f("sum_sq")?, f("norm_sum")?);
        let hist = column::<ListArray>(b, "l0_hist", what)?;
        let sum_x = column::<ListArray>(b, "sum_x", what)?;
        let assumed_col = f("assumed_norm")?;
        for r in 0..b.num_rows() {
            let values = |l: &ListArray| l.value(r);
            let h = values(hist);
            let h = h.as_any().downcast_ref::<UInt32Array>().map(|a| a.values().to_vec()).unwrap_or_default();
            let x = values(sum_x);
            let x = x.as_any().downcast_ref::<Float64Array>().map(|a| a.values().to_vec()).unwrap_or_default();
            let part = ScopeStats {
                tokens: tokens.value(r),
                l0_sum: l0.value(r),
                l0_hist: h,
                mse_sum: mse.value(r),
                sse: sse.value(r),
                sum_sq: sq.value(r),
                norm_sum: norm.value(r),
                sum_x: x,
            };
            if !assumed_col.is_null(r) {
                assumed = Some(assumed_col.value(r));
            }
            match scopes.iter_mut().find(|(n, _)| n == scope.value(r)) {
                Some((_, s)) => s.merge(&part),
                None => scopes.push((scope.value(r).to_string(), part)),
            }
        }
    }
    Ok(scopes
        .into_iter()
        .map(|(scope, s)| {
            let n = s.tokens.max(1) as f64;
            let mean_sq: f64 = s.sum_x.iter().map(|v| v * v).sum::<f64>() / n;
            let total_var = s.sum_sq - mean_sq;
            let quantile = |q: f64| {
                let target = (q * s.tokens as f64).ceil().max(1.0) as u64;
                let mut seen = 0u64;
                for (k, c) in s.l0_hist.iter().enumerate() {
                    seen += *c as u64;
                    if seen >= target {
                        return k;
                    }
                }
                s.l0_hist.len().saturating_sub(1)
            };
            let norm_mean = s.norm_sum / n;
            Summary {
                tokens: s.tokens,
                l0_mean: s.l0_sum / n,
                l0_quantiles: [quantile(0.1), quantile(0.5), quantile(0.9), quantile(0.99)],
                mse: s.mse_sum / n,
                variance_explained: if total_var > 0.0 { 1.0 - s.sse / total_var } else { f64::NAN },
                norm_mean,
                norm_ratio: assumed.map(|a| norm_mean / a),
                scope,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fold_into_the_statistics_of_all_tokens() {
        let tokens: Vec<(usize, f64, Vec<f32>)> =
            (0..40).map(|i| (i % 7, (i as f64) * 0.01, vec![(i as f32).sin(), (i as f32 * 0.3).cos(), 1.0 + i as f32 * 0.1])).collect();
        let stats = |range: std::ops::Range<usize>| {
            let mut h = HealthStats::default();
            for (l0, sse, x) in &tokens[range] {
                let sq = x.iter().map(|v| (*v as f64).powi(2)).sum();
                h.image.add_token(*l0, *sse, sq, x.len());
                h.image.add_sum(x);
                h.text.add_token(l0 + 1, *sse, sq, x.len());
                h.text.add_sum(x);
            }
            h
        };
        let whole = summarize(&[stats(0..40).batch(0).unwrap()]).unwrap();
        let split = summarize(&[stats(0..13).batch(0).unwrap(), stats(13..40).batch(1).unwrap()]).unwrap();
        assert_eq!(whole.len(), 2);
        for (a, b) in whole.iter().zip(&split) {
            assert_eq!(a.tokens, b.tokens);
            assert_eq!(a.l0_quantiles, b.l0_quantiles);
            assert!((a.variance_explained - b.variance_explained).abs() < 1e-12);
            assert!((a.mse - b.mse).abs() < 1e-12);
        }
        let img = &whole[0];
        assert_eq!(img.scope, "image");
        assert!((img.l0_mean - tokens.iter().map(|t| t.0 as f64).sum::<f64>() / 40.0).abs() < 1e-12);
        assert_eq!(img.l0_quantiles[1], 3, "median of 0..6 repeated");
        // variance explained against a direct computation
        let d = 3;
        let mean: Vec<f64> = (0..d).map(|j| tokens.iter().map(|t| t.2[j] as f64).sum::<f64>() / 40.0).collect();
        let var: f64 = tokens.iter().map(|t| (0..d).map(|j| (t.2[j] as f64 - mean[j]).powi(2)).sum::<f64>()).sum();
        let sse: f64 = tokens.iter().map(|t| t.1).sum();
        assert!((img.variance_explained - (1.0 - sse / var)).abs() < 1e-9);
    }
}
