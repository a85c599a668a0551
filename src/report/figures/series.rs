//! What the figures share: the axes they know, the reading orders of pooling methods and modes,
//! a figure's lines ([`Series`]), its points and the columns its CSV ends with.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::report::draw::{Line, Point};
use crate::report::repeats::Variant;
use crate::report::study::{ProbeResult, coords_label};
use crate::report::table::Cell;
use crate::spec::Coords;
use crate::spec::Value;

pub(super) const POOLING: &str = "method";
pub(super) const MODE: &str = "mode";
pub(super) const SPLIT: &str = "train_folds";
pub(super) const LAYER: &str = "layer";
/// Axes that say how much trained: the x of the data-efficiency figure, never a line of it.
pub(super) const SPLIT_AXES: [&str; 3] = ["train_folds", "folds", "test_fraction"];

/// Pooling methods in reading order: sum, mean, max, count, then topN by N, then the rest.
pub(super) fn pooling_order(a: &str, b: &str) -> Ordering {
    fn rank(m: &str) -> (u8, u64, String) {
        match m {
            "sum" => (0, 0, String::new()),
            "mean" => (1, 0, String::new()),
            "max" => (2, 0, String::new()),
            "count" => (3, 0, String::new()),
            _ => match m.strip_prefix("top").and_then(|n| n.parse::<u64>().ok()) {
                Some(n) => (4, n, String::new()),
                None => (5, 0, m.to_string()),
            },
        }
    }
    rank(a).cmp(&rank(b))
}

/// Binarize modes: raw first, then capped, then thresholded.
pub(super) fn mode_rank(v: &Option<Value>) -> (u8, String) {
    match v.as_ref().map(|v| v.to_string()) {
        Some(m) if m == "none" => (0, m),
        Some(m) if m == "cap" => (1, m),
        Some(m) if m == "threshold" => (2, m),
        Some(m) => (3, m),
        None => (4, String::new()),
    }
}

pub(super) fn mode_title(v: &Option<Value>) -> String {
    match v.as_ref().map(|v| v.to_string()).as_deref() {
        Some("none") => "mode=none (raw)".into(),
        Some("threshold") => "mode=threshold (binarized)".into(),
        Some("cap") => "mode=cap (capped at 1)".into(),
        Some(m) => format!("mode={m}"),
        None => "no mode axis".into(),
    }
}

pub(super) fn cmp_opt(a: &Option<Value>, b: &Option<Value>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

pub(super) fn cmp_coords(a: &Coords, b: &Coords) -> Ordering {
    let mut ia = a.iter();
    let mut ib = b.iter();
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let o = ka.cmp(kb).then_with(|| va.total_cmp(vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Distinct values of `f` over `items`, sorted by `cmp`.
pub(super) fn distinct<T: Clone + PartialEq, I>(items: &[I], f: impl Fn(&I) -> T, cmp: impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    let mut v: Vec<T> = Vec::new();
    for i in items {
        let x = f(i);
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v.sort_by(&cmp);
    v
}

/// A line of a figure: the coordinates left once the figure's own axes are taken out, and the
/// probe stage when two stages have variants with the same coordinates (they would otherwise
/// share points).
#[derive(Clone, Debug, PartialEq)]
struct SeriesKey {
    stage: Option<String>,
    coords: Coords,
}

pub(super) struct Series {
    drop: Vec<&'static str>,
    by_stage: bool,
    keys: Vec<SeriesKey>,
    pub(super) labels: Vec<String>,
}

impl Series {
    /// The lines of `rows` (variants, repeat axes already out), in coordinate order, and their
    /// labels (`layer=3`; `eoi_probe: layer=3` when split by stage).
    pub(super) fn of(rows: &[&Variant], drop: &[&'static str]) -> Series {
        let by_stage = rows.iter().any(|p| rows.iter().any(|q| q.stage != p.stage && q.coords == p.coords));
        let mut s = Series { drop: drop.to_vec(), by_stage, keys: Vec::new(), labels: Vec::new() };
        s.keys = distinct(rows, |p| s.key(p), |a, b| cmp_coords(&a.coords, &b.coords).then_with(|| a.stage.cmp(&b.stage)));
        s.labels = s
            .keys
            .iter()
            .map(|k| match (&k.stage, coords_label(&k.coords)) {
                (Some(stage), l) if l.is_empty() => stage.clone(),
                (Some(stage), l) => format!("{stage}: {l}"),
                (None, l) if l.is_empty() => "all variants".into(),
                (None, l) => l,
            })
            .collect();
        s
    }

    fn key(&self, p: &Variant) -> SeriesKey {
        SeriesKey { stage: self.by_stage.then(|| p.stage.clone()), coords: without(&p.coords, &self.drop) }
    }

    pub(super) fn index(&self, p: &Variant) -> usize {
        let k = self.key(p);
        self.keys.iter().position(|x| *x == k).unwrap_or(0)
    }
}

/// `coords` without the axes in `drop`.
pub(super) fn without(coords: &Coords, drop: &[&str]) -> Coords {
    coords.iter().filter(|(k, _)| !drop.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The sentence a caption gets when some variants were repeated: what the points and bars are.
pub(super) fn repeats_note(variants: &[&Variant]) -> String {
    let ns: BTreeSet<usize> = variants.iter().map(|v| v.members.len()).collect();
    if ns.iter().all(|n| *n < 2) {
        return String::new();
    }
    let ns: Vec<String> = ns.iter().map(usize::to_string).collect();
    format!(
        " Variants repeated over a repeat axis (`seed`; n = {} per point): points are means, bars ± one sample standard deviation.",
        ns.join(", ")
    )
}

/// The columns a figure's CSV ends with: one row per probe result drawn, then the point it
/// belongs to (mean, sample sd — empty for one result — and n).
pub(super) const POINT_COLUMNS: [&str; 5] = ["instance", "macro_f1", "mean_macro_f1", "sd_macro_f1", "n"];

pub(super) fn point_cells(p: &ProbeResult, v: &Variant) -> [Cell; 5] {
    [
        Cell::Str(p.instance.clone()),
        Cell::Float(p.macro_f1),
        Cell::Float(v.macro_f1.mean),
        v.macro_f1.sd.map(Cell::Float).unwrap_or(Cell::Null),
        Cell::UInt(v.macro_f1.n as u64),
    ]
}

pub(super) fn point(x: f64, v: &Variant) -> Point {
    Point { x, y: v.macro_f1.mean, sd: v.macro_f1.sd }
}

pub(super) const F1_DESC: &str = "macro F1 (test)";

pub(super) fn sorted_lines(lines: BTreeMap<usize, Vec<Point>>) -> Vec<Line> {
    lines
        .into_iter()
        .map(|(series, mut points)| {
            points.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
            Line { series, points, reference: false }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_methods_read_in_order() {
        let mut m = vec!["top10", "top5", "sum", "max", "top1", "zeta", "mean"];
        m.sort_by(|a, b| pooling_order(a, b));
        assert_eq!(m, ["sum", "mean", "max", "top1", "top5", "top10", "zeta"]);
    }
}
