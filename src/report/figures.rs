//! The study's figures, drawn with plotters' SVG backend (text stays SVG `<text>`, so no font
//! library is linked and the bytes do not depend on the machine):
//!
//! - **macro F1 by pooling method**: x = the `method` axis (sum, mean, max, count, then topN by N),
//!   one panel per `mode` (raw and binarized side by side), one line per remaining coordinate
//!   combination (the layer, a fused `1+3` layer, …), one figure per `train_folds`;
//! - **macro F1 by training fraction** (data efficiency): x = `n_train / (n_train + n_test)`, one
//!   panel per `layer`, one line per remaining combination (pooling × mode).
//!
//! A figure whose axis no variant has is skipped with a note, never drawn from invented data.
//! Each figure comes with the table of the points it draws (its CSV): one row per probe variant
//! with its instance id and macro F1, exactly as the probe's metrics table holds them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::ReportError;
use super::study::{ProbeResult, Study, coords_label, slug};
use super::table::{Cell, Table};
use crate::plan::Coords;
use crate::spec::Value;

/// One figure: its SVG and the points it draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File stem: `f1_by_pooling_train_folds-1` → `.svg` and `.csv`.
    pub name: String,
    pub title: String,
    pub caption: String,
    pub svg: String,
    pub data: Table,
}

/// The figures of a study, and why any were left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

/// Draw every figure the study's axes allow.
pub fn study_figures(study: &Study) -> Result<Figures, ReportError> {
    let mut out = Figures::default();
    if study.probes.is_empty() {
        out.notes.push("no probe results were gathered, so there are no figures".into());
        return Ok(out);
    }
    f1_by_pooling(study, &mut out)?;
    f1_by_train_fraction(study, &mut out)?;
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
    /// The lines of `rows`, in coordinate order, and their labels (`layer=3`; `eoi_probe: layer=3`
    /// when split by stage).
    fn of(rows: &[&ProbeResult], drop: &[&'static str]) -> Series {
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

    fn key(&self, p: &ProbeResult) -> SeriesKey {
        SeriesKey {
            stage: self.by_stage.then(|| p.stage.clone()),
            coords: p.coords.iter().filter(|(k, _)| !self.drop.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    fn index(&self, p: &ProbeResult) -> usize {
        let k = self.key(p);
        self.keys.iter().position(|x| *x == k).unwrap_or(0)
    }
}

fn f1_by_pooling(study: &Study, out: &mut Figures) -> Result<(), ReportError> {
    let rows: Vec<&ProbeResult> = study.probes.iter().filter(|p| p.coords.contains_key(POOLING)).collect();
    if rows.is_empty() {
        out.notes.push(format!("no figure of macro F1 by pooling method: no probe variant has a `{POOLING}` axis"));
        return Ok(());
    }
    let left_out = study.probes.len() - rows.len();
    let drop = [POOLING, MODE, SPLIT];
    let methods = distinct(&rows, |p| p.coords[POOLING].to_string(), |a, b| pooling_order(a, b));
    let series = Series::of(&rows, &drop);
    let splits = distinct(&rows, |p| p.coords.get(SPLIT).cloned(), cmp_opt);
    for split in &splits {
        let group: Vec<&ProbeResult> = rows.iter().copied().filter(|p| p.coords.get(SPLIT) == split.as_ref()).collect();
        let modes = distinct(&group, |p| p.coords.get(MODE).cloned(), |a, b| mode_rank(a).cmp(&mode_rank(b)));
        let mut data = Table::new(["panel", "series", POOLING, "train_fraction", "instance", "macro_f1"]);
        let mut keyed: Vec<((usize, usize, usize), Vec<Cell>)> = Vec::new();
        let mut panels = Vec::new();
        for (pi, mode) in modes.iter().enumerate() {
            let title = mode_title(mode);
            let mut lines: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
            for p in group.iter().filter(|p| p.coords.get(MODE) == mode.as_ref()) {
                let method = p.coords[POOLING].to_string();
                let x = methods.iter().position(|m| *m == method).unwrap_or(0);
                let s = series.index(p);
                lines.entry(s).or_default().push((x as f64, p.macro_f1));
                keyed.push((
                    (pi, s, x),
                    vec![
                        Cell::Str(title.clone()),
                        Cell::Str(series.labels[s].clone()),
                        Cell::Str(method),
                        Cell::Float(p.train_fraction()),
                        Cell::Str(p.instance.clone()),
                        Cell::Float(p.macro_f1),
                    ],
                ));
            }
            panels.push(Panel { title, lines: sorted_lines(lines) });
        }
        // rows in drawing order: panel, line, x
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
        let chart = Chart {
            title: title.clone(),
            x: XAxis::Categories(methods.clone()),
            x_desc: "pooling method".into(),
            y_desc: "macro F1 (test)".into(),
            panels,
            labels: series.labels.clone(),
        };
        let mut caption = format!(
            "One line per {}; one panel per binarize mode. {} probe variants.",
            if series.labels.len() == 1 { "variant".to_string() } else { "combination of the other axes".to_string() },
            group.len()
        );
        if left_out > 0 {
            caption += &format!(" {left_out} variants without a `{POOLING}` axis are not in this figure.");
        }
        out.figures.push(Figure { svg: draw(&chart, &name)?, name, title, caption, data });
    }
    Ok(())
}

fn f1_by_train_fraction(study: &Study, out: &mut Figures) -> Result<(), ReportError> {
    let rows: Vec<&ProbeResult> = study.probes.iter().collect();
    let fractions = distinct(&rows, |p| p.train_fraction(), |a: &f64, b: &f64| a.total_cmp(b));
    if fractions.len() < 2 {
        out.notes.push(format!(
            "no data-efficiency figure: every probe trained on the same share of its split ({:.2}); add a `train_folds` axis to the split",
            fractions.first().copied().unwrap_or(0.0)
        ));
        return Ok(());
    }
    let mut drop: Vec<&str> = SPLIT_AXES.to_vec();
    drop.push(LAYER);
    let series = Series::of(&rows, &drop);
    let layers = distinct(&rows, |p| p.coords.get(LAYER).cloned(), cmp_opt);
    let mut data = Table::new(["panel", "series", "train_fraction", "n_train", "n_test", "instance", "macro_f1"]);
    let mut keyed: Vec<((usize, usize, f64), Vec<Cell>)> = Vec::new();
    let mut panels = Vec::new();
    for (pi, layer) in layers.iter().enumerate() {
        let title = match layer {
            Some(v) => format!("{LAYER}={v}"),
            None => format!("no {LAYER} axis"),
        };
        let mut lines: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
        for p in rows.iter().filter(|p| p.coords.get(LAYER) == layer.as_ref()) {
            let s = series.index(p);
            lines.entry(s).or_default().push((p.train_fraction(), p.macro_f1));
            keyed.push((
                (pi, s, p.train_fraction()),
                vec![
                    Cell::Str(title.clone()),
                    Cell::Str(series.labels[s].clone()),
                    Cell::Float(p.train_fraction()),
                    Cell::UInt(p.n_train),
                    Cell::UInt(p.n_test),
                    Cell::Str(p.instance.clone()),
                    Cell::Float(p.macro_f1),
                ],
            ));
        }
        panels.push(Panel { title, lines: sorted_lines(lines) });
    }
    keyed.sort_by(|(a, _), (b, _)| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
    for (_, row) in keyed {
        data.push(row);
    }
    let name = "f1_by_train_fraction".to_string();
    let title = "Macro F1 by training fraction (data efficiency)".to_string();
    let chart = Chart {
        title: title.clone(),
        x: XAxis::Unit,
        x_desc: "train fraction n_train / (n_train + n_test)".into(),
        y_desc: "macro F1 (test)".into(),
        panels,
        labels: series.labels,
    };
    let caption = format!("One panel per {LAYER}; one line per combination of the other axes. {} probe variants.", rows.len());
    out.figures.push(Figure { svg: draw(&chart, &name)?, name, title, caption, data });
    Ok(())
}

fn sorted_lines(lines: BTreeMap<usize, Vec<(f64, f64)>>) -> Vec<(usize, Vec<(f64, f64)>)> {
    lines
        .into_iter()
        .map(|(s, mut pts)| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            (s, pts)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// how to draw it

enum XAxis {
    /// Named positions 0, 1, …
    Categories(Vec<String>),
    /// 0 to 1.
    Unit,
}

struct Panel {
    title: String,
    /// (series index, points sorted by x)
    lines: Vec<(usize, Vec<(f64, f64)>)>,
}

struct Chart {
    title: String,
    x: XAxis,
    x_desc: String,
    y_desc: String,
    panels: Vec<Panel>,
    /// Series labels; a series keeps its colour in every panel.
    labels: Vec<String>,
}

/// Tableau 10: distinguishable, and the palette readers know from matplotlib.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(series: usize) -> RGBColor {
    PALETTE[series % PALETTE.len()]
}

/// Series 0–9 get filled markers, 10–19 hollow ones (the colours repeat).
fn marker_style(series: usize) -> ShapeStyle {
    if (series / PALETTE.len()).is_multiple_of(2) { colour(series).filled() } else { colour(series).stroke_width(2) }
}

const PANEL_W: u32 = 420;
const PANEL_H: u32 = 300;
const TITLE_H: u32 = 38;
const LEGEND_ROW: u32 = 22;
const FONT: &str = "sans-serif";

/// Legend entries flow left to right and wrap: (x, y) of each, and the legend's height.
fn legend_layout(labels: &[String], width: u32) -> (Vec<(i32, i32)>, u32) {
    let (mut x, mut y) = (12u32, 4u32);
    let mut at = Vec::new();
    for l in labels {
        let w = 36 + 8 * l.chars().count() as u32 + 20;
        if x > 12 && x + w > width {
            x = 12;
            y += LEGEND_ROW;
        }
        at.push((x as i32, y as i32));
        x += w;
    }
    (at, y + LEGEND_ROW + 6)
}

fn draw(chart: &Chart, name: &str) -> Result<String, ReportError> {
    let err = |e: &dyn std::fmt::Display| ReportError::Figure { name: name.to_string(), message: e.to_string() };
    let cols = chart.panels.len().clamp(1, 3);
    let rows = chart.panels.len().div_ceil(cols).max(1);
    let width = PANEL_W * cols as u32;
    let (legend_at, legend_h) = legend_layout(&chart.labels, width);
    let height = TITLE_H + PANEL_H * rows as u32 + legend_h;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (top, rest) = root.split_vertically(TITLE_H);
        top.draw(&Text::new(chart.title.clone(), (12, 9), (FONT, 21).into_font().style(FontStyle::Bold).color(&BLACK)))
            .map_err(|e| err(&e))?;
        let (grid, legend) = rest.split_vertically(PANEL_H * rows as u32);
        for (area, panel) in grid.split_evenly((rows, cols)).iter().zip(&chart.panels) {
            match &chart.x {
                XAxis::Categories(names) => {
                    let label = |x: &f64| names.get(x.round().max(0.0) as usize).cloned().unwrap_or_default();
                    let ticks = (0..names.len()).map(|i| i as f64).collect();
                    draw_panel(area, chart, panel, -0.5..names.len() as f64 - 0.5, ticks, &label)
                }
                XAxis::Unit => draw_panel(area, chart, panel, 0.0..1.0, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0], &|x| format!("{x:.1}")),
            }
            .map_err(|e| err(&e))?;
        }
        for (i, (label, (x, y))) in chart.labels.iter().zip(legend_at).enumerate() {
            let mid = y + 8;
            legend.draw(&PathElement::new(vec![(x, mid), (x + 28, mid)], colour(i).stroke_width(2))).map_err(|e| err(&e))?;
            legend.draw(&Circle::new((x + 14, mid), 4, marker_style(i))).map_err(|e| err(&e))?;
            legend.draw(&Text::new(label.clone(), (x + 36, y + 2), (FONT, 16).into_font().color(&BLACK))).map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

type AreaResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A linear axis with ticks exactly where asked (category centres, 0.2 steps), rather than where
/// plotters' "nice number" search would put them.
struct Ticked {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, (lo, hi): (i32, i32)) -> i32 {
        let t = (v - self.range.start) / (self.range.end - self.range.start);
        lo + ((hi - lo) as f64 * t).round() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// One panel: x in `range` with ticks at `ticks` named by `tick_label`, y = macro F1 in 0..1.
fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    chart: &Chart,
    panel: &Panel,
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
    tick_label: &dyn Fn(&f64) -> String,
) -> AreaResult {
    let mut c = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 17))
        .margin(10)
        .margin_right(22)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(Ticked { range, ticks }, Ticked { range: 0.0..1.0, ticks: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0] })?;
    let mut mesh = c.configure_mesh();
    mesh.x_label_formatter(tick_label)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .x_desc(chart.x_desc.as_str())
        .y_desc(chart.y_desc.as_str())
        .bold_line_style(RGBColor(225, 228, 232))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15));
    if matches!(chart.x, XAxis::Categories(_)) {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;
    for (s, pts) in &panel.lines {
        c.draw_series(LineSeries::new(pts.iter().copied(), colour(*s).stroke_width(2)))?;
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, marker_style(*s))))?;
    }
    Ok(())
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
        let study = Study { probes: probes.clone(), ..Study::default() };
        let figs = study_figures(&study).unwrap();
        let names: Vec<&str> = figs.figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["f1_by_pooling_train_folds-1", "f1_by_pooling_train_folds-5", "f1_by_train_fraction"]);
        for kind in ["f1_by_pooling", "f1_by_train_fraction"] {
            let mut drawn: Vec<(String, f64)> = Vec::new();
            for f in figs.figures.iter().filter(|f| f.name.starts_with(kind)) {
                let (i, v) = (f.data.column("instance").unwrap(), f.data.column("macro_f1").unwrap());
                drawn.extend(f.data.rows.iter().map(|r| (r[i].csv(), r[v].as_f64().unwrap())));
                assert!(f.svg.starts_with("<svg") && f.svg.contains("</svg>"), "{}", &f.svg[..80]);
            }
            drawn.sort_by(|a, b| a.0.cmp(&b.0));
            let mut want: Vec<(String, f64)> = probes.iter().map(|p| (p.instance.clone(), p.macro_f1)).collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(drawn, want, "{kind}");
        }
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
        assert!(figs.notes.is_empty(), "{:?}", figs.notes);
        // deterministic
        assert_eq!(study_figures(&study).unwrap(), figs);
    }

    #[test]
    fn missing_axes_degrade_to_fewer_figures_not_panics() {
        // no method, no mode, no layer, one training fraction: nothing to draw, and notes say why
        let study = Study { probes: vec![probe("eoi_probe", &[("train_folds", Value::Int(1))], 0.5, 10)], ..Study::default() };
        let figs = study_figures(&study).unwrap();
        assert!(figs.figures.is_empty());
        assert_eq!(figs.notes.len(), 2, "{:?}", figs.notes);
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
        // no probes at all
        assert_eq!(study_figures(&Study::default()).unwrap().notes.len(), 1);
    }
}
