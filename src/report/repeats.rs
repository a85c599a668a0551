//! Repeats: probe results that differ only in a repeat axis (`seed`, `*_seed`, `repeat`) measure
//! one variant several times — a split drawn with several seeds, say. Tables and figures show such
//! a variant once, as the mean ± the sample standard deviation (n − 1 in the denominator, as
//! pandas' `std()`) over its repeats.

use super::study::ProbeResult;
use crate::spec::Coords;

/// Whether an axis repeats a measurement rather than changing what is measured: `seed`, any
/// `…_seed`, and `repeat`.
pub fn is_repeat_axis(name: &str) -> bool {
    name == "seed" || name == "repeat" || name.ends_with("_seed")
}

/// The coordinates without their repeat axes.
pub fn without_repeats(coords: &Coords) -> Coords {
    coords.iter().filter(|(k, _)| !is_repeat_axis(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Mean and sample standard deviation of `n` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanSd {
    pub mean: f64,
    /// `None` for a single value (the sample standard deviation needs two).
    pub sd: Option<f64>,
    pub n: usize,
}

impl MeanSd {
    /// The values' mean (summed in order, divided by n) and sample standard deviation
    /// (√(Σ(x − mean)² / (n − 1))). Empty input: a NaN mean, n = 0.
    pub fn of(values: &[f64]) -> MeanSd {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = (n >= 2).then(|| (values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt());
        MeanSd { mean, sd, n }
    }

    /// `0.712 ± 0.013 (n=3)`; one value: `0.712 (n=1)`.
    pub fn display(&self) -> String {
        match self.sd {
            Some(sd) => format!("{:.3} ± {sd:.3} (n={})", self.mean, self.n),
            None => format!("{:.3} (n={})", self.mean, self.n),
        }
    }
}

/// One probe variant over its repeats: the results that share a stage and every coordinate but
/// the repeat axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant<'a> {
    pub stage: String,
    /// The coordinates, repeat axes removed.
    pub coords: Coords,
    /// The repeats, in the study's order.
    pub members: Vec<&'a ProbeResult>,
    pub macro_f1: MeanSd,
    pub accuracy: MeanSd,
}

impl Variant<'_> {
    /// The mean share of the split that trained the probe (the same for every seed of a
    /// stratified split).
    pub fn train_fraction(&self) -> f64 {
        self.members.iter().map(|p| p.train_fraction()).sum::<f64>() / self.members.len() as f64
    }
}

/// The variants of `probes`, in the order of their first result; each result in exactly one.
pub fn variants<'a>(probes: impl IntoIterator<Item = &'a ProbeResult>) -> Vec<Variant<'a>> {
    let mut groups: Vec<(String, Coords, Vec<&'a ProbeResult>)> = Vec::new();
    for p in probes {
        let coords = without_repeats(&p.coords);
        match groups.iter_mut().find(|(s, c, _)| *s == p.stage && *c == coords) {
            Some((_, _, members)) => members.push(p),
            None => groups.push((p.stage.clone(), coords, vec![p])),
        }
    }
    groups
        .into_iter()
        .map(|(stage, coords, members)| {
            let f1: Vec<f64> = members.iter().map(|p| p.macro_f1).collect();
            let acc: Vec<f64> = members.iter().map(|p| p.accuracy).collect();
            Variant { stage, coords, macro_f1: MeanSd::of(&f1), accuracy: MeanSd::of(&acc), members }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Value;

    #[test]
    fn mean_and_sample_sd_as_pandas_computes_them() {
        // pandas.Series([0.70, 0.71, 0.73]).std() == 0.015275252316519468
        let m = MeanSd::of(&[0.70, 0.71, 0.73]);
        assert!((m.mean - 0.7133333333333333).abs() < 1e-15);
        assert!((m.sd.unwrap() - 0.015275252316519468).abs() < 1e-15);
        assert_eq!(m.display(), "0.713 ± 0.015 (n=3)");
        assert_eq!(MeanSd::of(&[0.5]).display(), "0.500 (n=1)");
        assert_eq!(MeanSd::of(&[0.5]).sd, None);
    }

    #[test]
    fn results_differing_only_in_a_repeat_axis_are_one_variant() {
        let probe = |stage: &str, layer: i64, seed: i64, f1: f64| ProbeResult {
            instance: format!("{stage}[layer={layer},seed={seed}]"),
            stage: stage.into(),
            coords: [("layer".to_string(), Value::Int(layer)), ("seed".to_string(), Value::Int(seed))].into_iter().collect(),
            macro_f1: f1,
            accuracy: f1,
            n_train: 10,
            n_test: 90,
            other: vec![],
        };
        let probes = [probe("p", 1, 0, 0.5), probe("p", 3, 0, 0.7), probe("p", 1, 1, 0.6), probe("q", 1, 0, 0.1)];
        let v = variants(&probes);
        let got: Vec<(&str, usize, f64)> = v.iter().map(|v| (v.stage.as_str(), v.members.len(), v.macro_f1.mean)).collect();
        assert_eq!(got, [("p", 2, 0.55), ("p", 1, 0.7), ("q", 1, 0.1)]);
        assert!(!v[0].coords.contains_key("seed"));
        assert!(is_repeat_axis("split_seed") && !is_repeat_axis("seeds") && !is_repeat_axis("layer"));
    }
}
