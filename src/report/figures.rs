//! The study's figures — what to draw, from a [`Study`]; `draw.rs` draws it, to SVG and PNG:
//!
//! - **SAE features per layer** (from the `clean` stage): distinct features before and after
//!   cleaning, and the fraction of images that keep a feature;
//! - **macro F1 by pooling method**: x = the `method` axis (sum, mean, max, count, then topN by N),
//!   one panel per `mode` (raw and binarized side by side), one line per remaining coordinate
//!   combination (the layer, a fused `1+3` layer, …), one figure per `train_folds`;
//! - **macro F1 by training fraction** (data efficiency): x = `n_train / (n_train + n_test)`, one
//!   panel per `layer`, one line per remaining combination (pooling × mode);
//! - **baselines against the best SAE variant**: per split, each baseline (a variant without a
//!   `method` axis) beside the SAE variant with the highest mean macro F1 of each layer.
//!
//! Results that differ only in a repeat axis (`seed`, see `repeats.rs`) are one point: their mean,
//! with an error bar of ± one sample standard deviation.
//!
//! A figure whose axis no variant has is skipped with a note, never drawn from invented data.
//! Each figure comes with the table of the points it draws (its CSV): one row per probe result
//! with its instance id and macro F1, exactly as the probe's metrics table holds them, and the
//! mean, sd and n of the point it belongs to.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::ReportError;
use super::draw::{Line, Panel, PanelChart, Plot, Point, Row, RowChart, RowPanel, XAxis, YAxis};
use super::repeats::{Variant, variants};
use super::study::{CleanResult, ProbeResult, Study, coords_label, slug};
use super::table::{Cell, Table};
use crate::spec::Coords;
use crate::spec::Value;

/// Where a figure (or a note about one left out) belongs on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// What cleaning left of the SAE features, per layer.
    Features,
    /// The probes' scores.
    Probes,
}

/// One figure: its SVG, the points it draws, and how to draw it again (as a PNG).
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File stem: `f1_by_pooling_train_folds-1` → `.svg`, `.png` and `.csv`.
    pub name: String,
    pub section: Section,
    pub title: String,
    pub caption: String,
    pub svg: String,
    pub data: Table,
    plot: Plot,
}

impl Figure {
    fn new(name: String, section: Section, title: String, caption: String, data: Table, plot: Plot) -> Result<Figure, ReportError> {
        let svg = plot.svg().map_err(|message| ReportError::Figure { name: name.clone(), message })?;
        Ok(Figure { name, section, title, caption, svg, data, plot })
    }

    /// Width and height in pixels, of the SVG and of the PNG.
    pub fn size(&self) -> (u32, u32) {
        self.plot.size()
    }

    /// The figure rasterized (the embedded DejaVu Sans for text) and encoded as PNG.
    pub fn png(&self) -> Result<Vec<u8>, ReportError> {
        self.plot.png().map_err(|message| ReportError::Figure { name: self.name.clone(), message })
    }
}

/// The figures of a study, and why any were left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub figures: Vec<Figure>,
    pub notes: Vec<(Section, String)>,
}

/// Draw every figure the study's axes allow.
pub fn study_figures(study: &Study) -> Result<Figures, ReportError> {
    let mut out = Figures::default();
    feature_occurrence(study, &mut out)?;
    if study.probes.is_empty() {
        out.notes.push((Section::Probes, "no probe results were gathered, so there are no figures of scores".into()));
        return Ok(out);
    }
    let variants = variants(&study.probes);
    f1_by_pooling(&variants, &mut out)?;
    f1_by_train_fraction(&variants, &mut out)?;
    baselines(&variants, &mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// what to draw

const POOLING: &str = "method";
const MODE: &str = "mode";
const SPLIT: &str = "train_folds";
const LAYER: &str = "layer";
/// Axes that say how much trained: the x of the data-efficiency figure, never a line of it.
const SPLIT_AXES: [&str; 3] = ["train_folds", "folds", "test_fraction"];

/// Pooling methods in reading order: sum, mean, max, count, then topN by N, then the rest.
fn pooling_order(a: &str, b: &str) -> Ordering {
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
fn mode_rank(v: &Option<Value>) -> (u8, String) {
    match v.as_ref().map(|v| v.to_string()) {
        Some(m) if m == "none" => (0, m),
        Some(m) if m == "cap" => (1, m),
        Some(m) if m == "threshold" => (2, m),
        Some(m) => (3, m),
        None => (4, String::new()),
    }
}

fn mode_title(v: &Option<Value>) -> String {
    match v.as_ref().map(|v| v.to_string()).as_deref() {
        Some("none") => "mode=none (raw)".into(),
        Some("threshold") => "mode=threshold (binarized)".into(),
        Some("cap") => "mode=cap (capped at 1)".into(),
        Some(m) => format!("mode={m}"),
        None => "no mode axis".into(),
    }
}

fn cmp_opt(a: &Option<Value>, b: &Option<Value>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn cmp_coords(a: &Coords, b: &Coords) -> Ordering {
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
fn distinct<T: Clone + PartialEq, I>(items: &[I], f: impl Fn(&I) -> T, cmp: impl Fn(&T, &T) -> Ordering) -> Vec<T> {
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

struct Series {
    drop: Vec<&'static str>,
    by_stage: bool,
    keys: Vec<SeriesKey>,
    labels: Vec<String>,
}

impl Series {
    /// The lines of `rows` (variants, repeat axes already out), in coordinate order, and their
    /// labels (`layer=3`; `eoi_probe: layer=3` when split by stage).
    fn of(rows: &[&Variant], drop: &[&'static str]) -> Series {
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

    fn index(&self, p: &Variant) -> usize {
        let k = self.key(p);
        self.keys.iter().position(|x| *x == k).unwrap_or(0)
    }
}

/// `coords` without the axes in `drop`.
fn without(coords: &Coords, drop: &[&str]) -> Coords {
    coords.iter().filter(|(k, _)| !drop.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The sentence a caption gets when some variants were repeated: what the points and bars are.
fn repeats_note(variants: &[&Variant]) -> String {
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
const POINT_COLUMNS: [&str; 5] = ["instance", "macro_f1", "mean_macro_f1", "sd_macro_f1", "n"];

fn point_cells(p: &ProbeResult, v: &Variant) -> [Cell; 5] {
    [
        Cell::Str(p.instance.clone()),
        Cell::Float(p.macro_f1),
        Cell::Float(v.macro_f1.mean),
        v.macro_f1.sd.map(Cell::Float).unwrap_or(Cell::Null),
        Cell::UInt(v.macro_f1.n as u64),
    ]
}

fn point(x: f64, v: &Variant) -> Point {
    Point { x, y: v.macro_f1.mean, sd: v.macro_f1.sd }
}

fn f1_by_pooling(variants: &[Variant], out: &mut Figures) -> Result<(), ReportError> {
    let rows: Vec<&Variant> = variants.iter().filter(|p| p.coords.contains_key(POOLING)).collect();
    if rows.is_empty() {
        out.notes.push((Section::Probes, format!("no figure of macro F1 by pooling method: no probe variant has a `{POOLING}` axis")));
        return Ok(());
    }
    let left_out = variants.len() - rows.len();
    let drop = [POOLING, MODE, SPLIT];
    let methods = distinct(&rows, |p| p.coords[POOLING].to_string(), |a, b| pooling_order(a, b));
    let series = Series::of(&rows, &drop);
    let splits = distinct(&rows, |p| p.coords.get(SPLIT).cloned(), cmp_opt);
    for split in &splits {
        let group: Vec<&Variant> = rows.iter().copied().filter(|p| p.coords.get(SPLIT) == split.as_ref()).collect();
        let modes = distinct(&group, |p| p.coords.get(MODE).cloned(), |a, b| mode_rank(a).cmp(&mode_rank(b)));
        let mut columns = vec!["panel", "series", POOLING, "train_fraction"];
        columns.extend(POINT_COLUMNS);
        let mut data = Table::new(columns);
        let mut keyed: Vec<((usize, usize, usize), Vec<Cell>)> = Vec::new();
        let mut panels = Vec::new();
        for (pi, mode) in modes.iter().enumerate() {
            let title = mode_title(mode);
            let mut lines: BTreeMap<usize, Vec<Point>> = BTreeMap::new();
            for v in group.iter().filter(|p| p.coords.get(MODE) == mode.as_ref()) {
                let method = v.coords[POOLING].to_string();
                let x = methods.iter().position(|m| *m == method).unwrap_or(0);
                let s = series.index(v);
                lines.entry(s).or_default().push(point(x as f64, v));
                for p in &v.members {
                    let mut row = vec![
                        Cell::Str(title.clone()),
                        Cell::Str(series.labels[s].clone()),
                        Cell::Str(method.clone()),
                        Cell::Float(p.train_fraction()),
                    ];
                    row.extend(point_cells(p, v));
                    keyed.push(((pi, s, x), row));
                }
            }
            panels.push(Panel { title, y: YAxis::unit(F1_DESC), lines: sorted_lines(lines) });
        }
        // rows in drawing order: panel, line, x (a stable sort keeps repeats in study order)
        keyed.sort_by_key(|(k, _)| *k);
        for (_, row) in keyed {
            data.push(row);
        }
        let (name, title) = match split {
            Some(v) => {
                let fraction = group.iter().map(|p| p.train_fraction()).sum::<f64>() / group.len() as f64;
                (
                    slug("f1_by_pooling", &[(SPLIT.to_string(), v.clone())]),
                    format!("Macro F1 by pooling method — {SPLIT}={v} (train fraction {fraction:.2})"),
                )
            }
            None => ("f1_by_pooling".to_string(), "Macro F1 by pooling method".to_string()),
        };
        let chart = PanelChart {
            title: title.clone(),
            x: XAxis::Categories(methods.clone()),
            x_desc: "pooling method".into(),
            panels,
            labels: series.labels.clone(),
        };
        let mut caption = format!(
            "One line per {}; one panel per binarize mode. {} probe variants.{}",
            if series.labels.len() == 1 { "variant".to_string() } else { "combination of the other axes".to_string() },
            group.len(),
            repeats_note(&group)
        );
        if left_out > 0 {
            caption += &format!(" {left_out} variants without a `{POOLING}` axis are not in this figure.");
        }
        out.figures.push(Figure::new(name, Section::Probes, title, caption, data, Plot::Panels(chart))?);
    }
    Ok(())
}

fn f1_by_train_fraction(variants: &[Variant], out: &mut Figures) -> Result<(), ReportError> {
    let rows: Vec<&Variant> = variants.iter().collect();
    let fractions = distinct(&rows, |p| p.train_fraction(), |a: &f64, b: &f64| a.total_cmp(b));
    if fractions.len() < 2 {
        out.notes.push((
            Section::Probes,
            format!(
                "no data-efficiency figure: every probe trained on the same share of its split ({:.2}); add a `train_folds` axis to the split",
                fractions.first().copied().unwrap_or(0.0)
            ),
        ));
        return Ok(());
    }
    let mut drop: Vec<&str> = SPLIT_AXES.to_vec();
    drop.push(LAYER);
    let series = Series::of(&rows, &drop);
    let layers = distinct(&rows, |p| p.coords.get(LAYER).cloned(), cmp_opt);
    let mut columns = vec!["panel", "series", "train_fraction", "n_train", "n_test"];
    columns.extend(POINT_COLUMNS);
    let mut data = Table::new(columns);
    let mut keyed: Vec<((usize, usize, f64), Vec<Cell>)> = Vec::new();
    let mut panels = Vec::new();
    for (pi, layer) in layers.iter().enumerate() {
        let title = match layer {
            Some(v) => format!("{LAYER}={v}"),
            None => format!("no {LAYER} axis"),
        };
        let mut lines: BTreeMap<usize, Vec<Point>> = BTreeMap::new();
        for v in rows.iter().filter(|p| p.coords.get(LAYER) == layer.as_ref()) {
            let s = series.index(v);
            lines.entry(s).or_default().push(point(v.train_fraction(), v));
            for p in &v.members {
                let mut row = vec![
                    Cell::Str(title.clone()),
                    Cell::Str(series.labels[s].clone()),
                    Cell::Float(p.train_fraction()),
                    Cell::UInt(p.n_train),
                    Cell::UInt(p.n_test),
                ];
                row.extend(point_cells(p, v));
                keyed.push(((pi, s, v.train_fraction()), row));
            }
        }
        panels.push(Panel { title, y: YAxis::unit(F1_DESC), lines: sorted_lines(lines) });
    }
    keyed.sort_by(|(a, _), (b, _)| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
    for (_, row) in keyed {
        data.push(row);
    }
    let name = "f1_by_train_fraction".to_string();
    let title = "Macro F1 by training fraction (data efficiency)".to_string();
    let chart = PanelChart {
        title: title.clone(),
        x: XAxis::Unit,
        x_desc: "train fraction n_train / (n_train + n_test)".into(),
        panels,
        labels: series.labels,
    };
    let caption =
        format!("One panel per {LAYER}; one line per combination of the other axes. {} probe variants.{}", rows.len(), repeats_note(&rows));
    out.figures.push(Figure::new(name, Section::Probes, title, caption, data, Plot::Panels(chart))?);
    Ok(())
}

/// Each baseline next to the best SAE-probe variant of each layer, one panel per split. SAE
/// variants are those with a pooling `method` axis; every other gathered variant (EoI, ViT and
/// ResNet probes, the zero-shot answer) is a baseline.
fn baselines(variants: &[Variant], out: &mut Figures) -> Result<(), ReportError> {
    let (sae, base): (Vec<&Variant>, Vec<&Variant>) = variants.iter().partition(|v| v.coords.contains_key(POOLING));
    if sae.is_empty() || base.is_empty() {
        out.notes.push((
            Section::Probes,
            format!(
                "no baseline figure: it needs SAE-probe variants (with a `{POOLING}` axis) and baselines (without one); found {} and {}",
                sae.len(),
                base.len()
            ),
        ));
        return Ok(());
    }
    let split_of = |v: &Variant| -> Coords {
        v.coords.iter().filter(|(k, _)| SPLIT_AXES.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let splits = distinct(variants.iter().collect::<Vec<_>>().as_slice(), |v| split_of(v), cmp_coords);
    // series 0: the best SAE variants; then one per baseline stage
    let stages = distinct(&base, |v| v.stage.clone(), |a, b| a.cmp(b));
    let mut labels = vec!["best SAE-probe variant of the layer".to_string()];
    labels.extend(stages.iter().cloned());
    let label_of = |v: &Variant| {
        let rest = coords_label(&without(&v.coords, &SPLIT_AXES));
        if rest.is_empty() { v.stage.clone() } else { format!("{}: {rest}", v.stage) }
    };
    let mut data =
        Table::new(["panel", "row", "role", LAYER, "train_fraction", "instance", "macro_f1", "mean_macro_f1", "sd_macro_f1", "n"]);
    let mut panels = Vec::new();
    for split in &splits {
        let in_split = |v: &&&Variant| split_of(v) == *split;
        let sae_here: Vec<&Variant> = sae.iter().filter(in_split).copied().collect();
        let base_here: Vec<&Variant> = base.iter().filter(in_split).copied().collect();
        let title = if split.is_empty() {
            "no split axis".to_string()
        } else if sae_here.is_empty() {
            coords_label(split)
        } else {
            let fraction = sae_here.iter().map(|v| v.train_fraction()).sum::<f64>() / sae_here.len() as f64;
            format!("{} (train fraction {fraction:.2})", coords_label(split))
        };
        // rows: per layer the best SAE variant, then the baselines of that layer; then the rest
        let mut entries: Vec<(&Variant, usize, &str)> = Vec::new();
        let layers = distinct(&sae_here, |v| v.coords.get(LAYER).cloned(), cmp_opt);
        for layer in &layers {
            let best = sae_here.iter().filter(|v| v.coords.get(LAYER) == layer.as_ref()).fold(None::<&Variant>, |best, v| match best {
                Some(b) if b.macro_f1.mean >= v.macro_f1.mean => Some(b),
                _ => Some(v),
            });
            if let Some(b) = best {
                entries.push((b, 0, "best SAE"));
            }
            for v in base_here.iter().filter(|v| layer.is_some() && v.coords.get(LAYER) == layer.as_ref()) {
                entries.push((v, 1 + stages.iter().position(|s| *s == v.stage).unwrap_or(0), "baseline"));
            }
        }
        let rest: Vec<&Variant> = base_here.iter().filter(|v| !entries.iter().any(|(e, _, _)| std::ptr::eq(*e, **v))).copied().collect();
        for v in rest {
            entries.push((v, 1 + stages.iter().position(|s| *s == v.stage).unwrap_or(0), "baseline"));
        }
        let mut rows = Vec::new();
        for (v, series, role) in entries {
            let label = label_of(v);
            for p in &v.members {
                data.push(vec![
                    Cell::Str(title.clone()),
                    Cell::Str(label.clone()),
                    Cell::Str(role.into()),
                    p.coords.get(LAYER).map(Cell::from_value).unwrap_or(Cell::Null),
                    Cell::Float(p.train_fraction()),
                    Cell::Str(p.instance.clone()),
                    Cell::Float(p.macro_f1),
                    Cell::Float(v.macro_f1.mean),
                    v.macro_f1.sd.map(Cell::Float).unwrap_or(Cell::Null),
                    Cell::UInt(v.macro_f1.n as u64),
                ]);
            }
            rows.push(Row { label, series, x: v.macro_f1.mean, sd: v.macro_f1.sd });
        }
        panels.push(RowPanel { title, rows });
    }
    let name = "baselines".to_string();
    let title = "Baselines against the best SAE-probe variant of each layer".to_string();
    let caption = format!(
        "Per split and layer, the best SAE-probe variant — the highest mean macro F1 over repeats among the variants with a \
         `{POOLING}` axis (any pooling, binarize mode or other axis; the first in report order at a tie) — next to the \
         baselines: variants without a `{POOLING}` axis (probes on the End-of-Image residual, the ViT, the ResNet; the \
         zero-shot answer, trained on nothing). Dots: mean macro F1 on the split's test images.{}",
        repeats_note(variants.iter().collect::<Vec<_>>().as_slice())
    );
    let chart = RowChart { title: title.clone(), x_desc: F1_DESC.into(), panels, labels };
    out.figures.push(Figure::new(name, Section::Probes, title, caption, data, Plot::Rows(chart))?);
    Ok(())
}

/// What the `clean` stage left per layer: distinct features before and after cleaning, and the
/// share of images that keep at least one feature.
fn feature_occurrence(study: &Study, out: &mut Figures) -> Result<(), ReportError> {
    if study.clean.is_empty() {
        out.notes.push((
            Section::Features,
            "no feature-occurrence figure: no clean statistics were gathered; add `clean: clean.stats` to the report stage".into(),
        ));
        return Ok(());
    }
    let rows: Vec<&CleanResult> = study.clean.iter().collect();
    let layers = distinct(&rows, |c| c.coords.get(LAYER).cloned(), cmp_opt);
    let names: Vec<String> = layers.iter().map(|l| l.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "–".into())).collect();
    let rests = distinct(&rows, |c| without(&c.coords, &[LAYER]), cmp_coords);
    let prefix = |r: &Coords| if rests.len() > 1 { format!("{}: ", coords_label(r)) } else { String::new() };
    let mut labels = Vec::new();
    for r in &rests {
        for what in ["features before cleaning", "features after cleaning", "images with a kept feature"] {
            labels.push(format!("{}{what}", prefix(r)));
        }
    }
    let mut data = Table::new([
        "series",
        "instance",
        LAYER,
        "images",
        "unique_before",
        "unique_after",
        "images_with_features",
        "fraction_images_with_features",
        "max_images",
    ]);
    let (mut counts, mut shares): (Vec<Line>, Vec<Line>) = (Vec::new(), Vec::new());
    for (ri, r) in rests.iter().enumerate() {
        let mut of_rest: Vec<(usize, &CleanResult)> = rows
            .iter()
            .filter(|c| without(&c.coords, &[LAYER]) == *r)
            .map(|c| (layers.iter().position(|l| c.coords.get(LAYER) == l.as_ref()).unwrap_or(0), *c))
            .collect();
        of_rest.sort_by_key(|(x, _)| *x);
        let line = |series: usize, y: &dyn Fn(&CleanResult) -> f64| Line {
            series,
            points: of_rest.iter().map(|(x, c)| Point { x: *x as f64, y: y(c), sd: None }).collect(),
        };
        counts.push(line(3 * ri, &|c| c.unique_before as f64));
        counts.push(line(3 * ri + 1, &|c| c.unique_after as f64));
        shares.push(line(3 * ri + 2, &|c| c.fraction_images_with_features));
        for (x, c) in &of_rest {
            data.push(vec![
                Cell::Str(coords_label(r)),
                Cell::Str(c.instance.clone()),
                layers[*x].as_ref().map(Cell::from_value).unwrap_or(Cell::Null),
                Cell::UInt(c.images),
                Cell::UInt(c.unique_before),
                Cell::UInt(c.unique_after),
                Cell::UInt(c.images_with_features),
                Cell::Float(c.fraction_images_with_features),
                Cell::Float(c.max_images),
            ]);
        }
    }
    let largest = rows.iter().map(|c| c.unique_before.max(c.unique_after) as f64).fold(0.0, f64::max);
    let chart = PanelChart {
        title: "SAE features per layer, before and after cleaning".into(),
        x: XAxis::Categories(names),
        x_desc: LAYER.into(),
        panels: vec![
            Panel { title: "distinct features occurring".into(), y: YAxis::counts("features", largest), lines: counts },
            Panel { title: "images with ≥ 1 kept feature".into(), y: YAxis::unit("fraction of images"), lines: shares },
        ],
        labels,
    };
    let caption = format!(
        "From the `clean` stage, per layer: distinct SAE features occurring in the images before and after dropping \
         those that occur in more than `max_images` images (left), and the fraction of images in which at least one \
         kept feature still occurs (right). {} clean variants.",
        rows.len()
    );
    let name = "feature_occurrence".to_string();
    out.figures.push(Figure::new(name, Section::Features, chart.title.clone(), caption, data, Plot::Panels(chart))?);
    Ok(())
}

const F1_DESC: &str = "macro F1 (test)";

fn sorted_lines(lines: BTreeMap<usize, Vec<Point>>) -> Vec<Line> {
    lines
        .into_iter()
        .map(|(series, mut points)| {
            points.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
            Line { series, points }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(stage: &str, coords: &[(&str, Value)], f1: f64, n_train: u64) -> ProbeResult {
        let coords: Coords = coords.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let id = format!("{stage}[{}]", coords.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
        ProbeResult { instance: id, stage: stage.into(), coords, macro_f1: f1, accuracy: f1, n_train, n_test: 100 - n_train, other: vec![] }
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    /// (instance, macro F1) of every row of the figures whose name starts with `kind`, sorted.
    fn drawn(figs: &Figures, kind: &str) -> Vec<(String, f64)> {
        let mut drawn: Vec<(String, f64)> = Vec::new();
        for f in figs.figures.iter().filter(|f| f.name.starts_with(kind)) {
            let (i, v) = (f.data.column("instance").unwrap(), f.data.column("macro_f1").unwrap());
            drawn.extend(f.data.rows.iter().map(|r| (r[i].csv(), r[v].as_f64().unwrap())));
            assert!(f.svg.starts_with("<svg") && f.svg.contains("</svg>"), "{}", &f.svg[..80]);
        }
        drawn.sort_by(|a, b| a.0.cmp(&b.0));
        drawn
    }

    #[test]
    fn pooling_methods_read_in_order() {
        let mut m = vec!["top10", "top5", "sum", "max", "top1", "zeta", "mean"];
        m.sort_by(|a, b| pooling_order(a, b));
        assert_eq!(m, ["sum", "mean", "max", "top1", "top5", "top10", "zeta"]);
    }

    #[test]
    fn every_variant_is_drawn_once_per_figure_kind_with_its_own_score() {
        let mut probes = Vec::new();
        for (layer, lv) in [(1, Value::Int(1)), (3, Value::Int(3))] {
            for method in ["sum", "top1", "top5"] {
                for mode in ["none", "threshold"] {
                    for folds in [1, 5] {
                        let f1 = layer as f64 / 10.0 + folds as f64 / 100.0 + method.len() as f64 / 1000.0;
                        probes.push(probe(
                            "probe",
                            &[("layer", lv.clone()), ("method", s(method)), ("mode", s(mode)), ("train_folds", Value::Int(folds))],
                            f1,
                            folds as u64 * 10,
                        ));
                    }
                }
            }
        }
        probes.push(probe(
            "fused_probe",
            &[("layer", s("1+3")), ("method", s("sum")), ("mode", s("none")), ("train_folds", Value::Int(1))],
            0.9,
            10,
        ));
        probes.push(probe("vit_probe", &[("train_folds", Value::Int(1))], 0.8, 10));
        let study = Study { probes: probes.clone(), ..Study::default() };
        let figs = study_figures(&study).unwrap();
        let names: Vec<&str> = figs.figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["f1_by_pooling_train_folds-1", "f1_by_pooling_train_folds-5", "f1_by_train_fraction", "baselines"]);
        let sorted = |mut v: Vec<(String, f64)>| {
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let all = |keep: &dyn Fn(&ProbeResult) -> bool| {
            sorted(probes.iter().filter(|p| keep(p)).map(|p| (p.instance.clone(), p.macro_f1)).collect())
        };
        assert_eq!(drawn(&figs, "f1_by_pooling"), all(&|p| p.coords.contains_key("method")));
        assert_eq!(drawn(&figs, "f1_by_train_fraction"), all(&|_| true));
        // series: layers 1, 3, then the fused 1+3; panels: raw before binarized
        let f = &figs.figures[0];
        let mut series: Vec<String> = Vec::new();
        for r in &f.data.rows {
            if !series.contains(&r[1].csv()) {
                series.push(r[1].csv());
            }
        }
        assert_eq!(series, ["layer=1", "layer=3", "layer=1+3"]);
        assert_eq!(f.data.rows[0][0], Cell::Str("mode=none (raw)".into()));
        assert!(
            f.svg.contains("\ntop5\n") && f.svg.contains("\nmode=threshold (binarized)\n"),
            "category labels and panel titles are text"
        );
        // one result per point: its mean is its score, no sd
        let (m, sd) = (f.data.column("mean_macro_f1").unwrap(), f.data.column("sd_macro_f1").unwrap());
        assert!(f.data.rows.iter().all(|r| r[m] == r[5] && r[sd] == Cell::Null));
        // the baselines: per split, the best SAE variant of each layer, then the baseline
        let b = &figs.figures[3];
        let (row, inst) = (b.data.column("row").unwrap(), b.data.column("instance").unwrap());
        let rows: Vec<(String, String)> =
            b.data.rows.iter().filter(|r| r[0].csv().starts_with("train_folds=1")).map(|r| (r[row].csv(), r[inst].csv())).collect();
        assert_eq!(
            rows,
            [
                // top1 and top5 tie at layer 1 (same length): the first in report order wins
                ("probe: layer=1, method=top1, mode=none".to_string(), "probe[layer=1,method=top1,mode=none,train_folds=1]".to_string()),
                ("probe: layer=3, method=top1, mode=none".into(), "probe[layer=3,method=top1,mode=none,train_folds=1]".into()),
                (
                    "fused_probe: layer=1+3, method=sum, mode=none".into(),
                    "fused_probe[layer=1+3,method=sum,mode=none,train_folds=1]".into()
                ),
                ("vit_probe".into(), "vit_probe[train_folds=1]".into()),
            ]
        );
        assert_eq!(figs.notes.len(), 1, "only the feature figure is left out: {:?}", figs.notes);
        // deterministic
        assert_eq!(study_figures(&study).unwrap(), figs);
    }

    #[test]
    fn repeats_are_one_point_with_mean_and_sd_and_the_best_is_the_best_mean() {
        // layer 1: sum scores 0.50 and 0.70 (mean 0.60); top5 0.75 and 0.35 (mean 0.55, the best single result)
        let mut probes = Vec::new();
        for (seed, sum, top5, eoi) in [(0, 0.5, 0.75, 0.4), (1, 0.7, 0.35, 0.45)] {
            let c = |m: &str| vec![("layer", Value::Int(1)), ("method", s(m)), ("train_folds", Value::Int(1)), ("seed", Value::Int(seed))];
            probes.push(probe("probe", &c("sum"), sum, 10));
            probes.push(probe("probe", &c("top5"), top5, 10));
            probes.push(probe(
                "eoi_probe",
                &[("layer", Value::Int(1)), ("train_folds", Value::Int(1)), ("seed", Value::Int(seed))],
                eoi,
                10,
            ));
        }
        let study = Study { probes, ..Study::default() };
        let figs = study_figures(&study).unwrap();
        let pooling = &figs.figures[0];
        assert_eq!(pooling.name, "f1_by_pooling_train_folds-1");
        let col = |f: &Figure, c: &str| f.data.column(c).unwrap();
        let sum: Vec<&Vec<Cell>> = pooling.data.rows.iter().filter(|r| r[col(pooling, "method")].csv() == "sum").collect();
        assert_eq!(sum.len(), 2, "both seeds are rows of the one point");
        let sd = ((0.5f64 - 0.6).powi(2) + (0.7f64 - 0.6).powi(2)).sqrt(); // n − 1 = 1
        for r in &sum {
            assert!((r[col(pooling, "mean_macro_f1")].as_f64().unwrap() - 0.6).abs() < 1e-12);
            assert!((r[col(pooling, "sd_macro_f1")].as_f64().unwrap() - sd).abs() < 1e-12);
            assert_eq!(r[col(pooling, "n")], Cell::UInt(2));
        }
        assert!(pooling.caption.contains("bars ± one sample standard deviation"), "{}", pooling.caption);
        let b = figs.figures.iter().find(|f| f.name == "baselines").unwrap();
        let best: Vec<String> =
            b.data.rows.iter().filter(|r| r[col(b, "role")].csv() == "best SAE").map(|r| r[col(b, "instance")].csv()).collect();
        assert_eq!(best, ["probe[layer=1,method=sum,seed=0,train_folds=1]", "probe[layer=1,method=sum,seed=1,train_folds=1]"]);
        assert!(b.caption.contains("highest mean macro F1 over repeats"), "{}", b.caption);
        // the PNG: the SVG's size, decodes, and is not blank
        let img = image::load_from_memory(&b.png().unwrap()).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), b.size());
        let colours: BTreeSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 10, "{} colours", colours.len());
    }

    #[test]
    fn the_feature_figure_draws_every_clean_variant() {
        let clean = |layer: i64, before: u64, after: u64, with: u64| CleanResult {
            instance: format!("clean[layer={layer}]"),
            coords: [("layer".to_string(), Value::Int(layer))].into_iter().collect(),
            images: 100,
            unique_before: before,
            unique_after: after,
            images_with_features: with,
            fraction_images_with_features: with as f64 / 100.0,
            max_images: 10.0,
        };
        let study = Study { clean: vec![clean(3, 900, 850, 97), clean(1, 1200, 1000, 99)], ..Study::default() };
        let figs = study_figures(&study).unwrap();
        assert_eq!(figs.figures.len(), 1);
        let f = &figs.figures[0];
        assert_eq!((f.name.as_str(), f.section), ("feature_occurrence", Section::Features));
        let rows: Vec<(String, u64, u64, f64)> = f
            .data
            .rows
            .iter()
            .map(|r| (r[1].csv(), r[4].as_f64().unwrap() as u64, r[5].as_f64().unwrap() as u64, r[7].as_f64().unwrap()))
            .collect();
        assert_eq!(rows, [("clean[layer=1]".to_string(), 1200, 1000, 0.99), ("clean[layer=3]".to_string(), 900, 850, 0.97)]);
        assert!(f.svg.contains("images with ≥ 1 kept feature"));
        assert_eq!(figs.notes, [(Section::Probes, "no probe results were gathered, so there are no figures of scores".to_string())]);
    }

    #[test]
    fn missing_axes_degrade_to_fewer_figures_not_panics() {
        // no method, no mode, no layer, one training fraction, no clean stats: nothing to draw,
        // and notes say why (features, pooling, data efficiency, baselines)
        let study = Study { probes: vec![probe("eoi_probe", &[("train_folds", Value::Int(1))], 0.5, 10)], ..Study::default() };
        let figs = study_figures(&study).unwrap();
        assert!(figs.figures.is_empty());
        assert_eq!(figs.notes.len(), 4, "{:?}", figs.notes);
        // a method but no mode and no split axis: one figure, one panel, one line
        let study = Study {
            probes: vec![probe("p", &[("method", s("sum"))], 0.5, 10), probe("p", &[("method", s("top5"))], 0.6, 10)],
            ..Study::default()
        };
        let figs = study_figures(&study).unwrap();
        assert_eq!(figs.figures.len(), 1);
        assert_eq!(figs.figures[0].name, "f1_by_pooling");
        assert_eq!(figs.figures[0].data.rows.len(), 2);
        assert!(figs.figures[0].svg.contains("no mode axis"));
        // nothing at all
        assert_eq!(study_figures(&Study::default()).unwrap().notes.len(), 2);
    }
}
