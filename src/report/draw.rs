//! How a figure is drawn, once for any plotters backend: to SVG (text stays SVG `<text>`, so the
//! page's own fonts render it) and to an RGB bitmap encoded as PNG. Text in the bitmap — and text
//! measured for layout — uses DejaVu Sans, embedded in the binary (`assets/fonts/`) and rasterized
//! with `ab_glyph`: no font library of the system is read, so the PNG bytes depend only on the data.
//!
//! Two shapes of figure:
//! - [`PanelChart`]: panels side by side (three per row), each with lines of points over
//!   categories or a 0–1 axis; a point may carry an error bar (± one standard deviation);
//! - [`RowChart`]: stacked panels of labelled rows, one dot per row on a 0–1 axis (a dot plot).
//!
//! Series keep one colour across panels, and one legend below the panels names them.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::glyphs::{Glyphs, text_width};

/// The family every text asks for: SVG readers pick their own sans-serif; the bitmap gets the
/// embedded DejaVu Sans (`glyphs.rs`).
const FONT: &str = "sans-serif";

/// A figure to draw.
#[derive(Clone, Debug, PartialEq)]
pub enum Plot {
    Panels(PanelChart),
    Rows(RowChart),
}

#[derive(Clone, Debug, PartialEq)]
pub enum XAxis {
    /// Named positions 0, 1, …
    Categories(Vec<String>),
    /// `lo` to `hi` (within 0–1), ticks every 0.1: fitted to the data ([`XAxis::fraction`]).
    Fraction { lo: f64, hi: f64 },
}

impl XAxis {
    /// A fraction axis around `xs` (in 0–1): the data and a margin of 0.05, not all of 0–1.
    pub fn fraction(xs: impl IntoIterator<Item = f64>) -> XAxis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for x in xs {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        if !lo.is_finite() {
            return XAxis::Fraction { lo: 0.0, hi: 1.0 };
        }
        let pad = 0.05;
        XAxis::Fraction { lo: ((lo - pad) * 20.0).floor().max(0.0) / 20.0, hi: ((hi + pad) * 20.0).ceil().min(20.0) / 20.0 }
    }
}

/// A y axis from 0 to `max`, with ticks where asked.
#[derive(Clone, Debug, PartialEq)]
pub struct YAxis {
    pub desc: String,
    pub max: f64,
    pub ticks: Vec<f64>,
    /// Decimals of the tick labels.
    pub decimals: usize,
}

impl YAxis {
    /// 0 to 1 in steps of 0.2 (a score).
    pub fn unit(desc: &str) -> YAxis {
        YAxis { desc: desc.into(), max: 1.0, ticks: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0], decimals: 1 }
    }

    /// 0 to a round number at or above `largest`, in 4–5 round steps (counts).
    pub fn counts(desc: &str, largest: f64) -> YAxis {
        let largest = largest.max(1.0);
        let magnitude = 10f64.powf(largest.log10().floor());
        let step = [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|s| s * magnitude)
            .find(|s| (largest / s).ceil() <= 5.0)
            .unwrap_or(magnitude * 10.0)
            .max(1.0);
        let steps = (largest / step).ceil().max(1.0) as usize;
        YAxis { desc: desc.into(), max: step * steps as f64, ticks: (0..=steps).map(|i| step * i as f64).collect(), decimals: 0 }
    }

    fn label(&self, y: f64) -> String {
        format!("{y:.*}", self.decimals)
    }
}

/// A point of a line; `sd`: an error bar from y − sd to y + sd.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub sd: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Index into the chart's `labels` (and colour).
    pub series: usize,
    /// Sorted by x.
    pub points: Vec<Point>,
    /// A reference level (a baseline that trains on nothing, e.g. zero-shot): drawn as a dashed
    /// horizontal line across the panel at its first point's y.
    pub reference: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub y: YAxis,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PanelChart {
    pub title: String,
    pub x: XAxis,
    pub x_desc: String,
    pub panels: Vec<Panel>,
    /// Series labels; a series keeps its colour in every panel.
    pub labels: Vec<String>,
}

/// One labelled row of a dot plot: a dot at `x`, with an error bar of ± `sd`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub label: String,
    pub series: usize,
    pub x: f64,
    pub sd: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RowPanel {
    pub title: String,
    /// Top to bottom.
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RowChart {
    pub title: String,
    pub x_desc: String,
    pub panels: Vec<RowPanel>,
    pub labels: Vec<String>,
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

/// The colours repeat every ten series; the marker tells the decades apart: filled circles,
/// then hollow squares, filled triangles, crosses (and the lines of odd decades are dashed).
fn marker_style(series: usize) -> ShapeStyle {
    match (series / PALETTE.len()) % 4 {
        1 => colour(series).stroke_width(2),
        _ => colour(series).filled(),
    }
}

/// The marker of `series` at pixel `(x, y)` of `area`.
fn draw_marker<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, (x, y): (i32, i32), series: usize, r: i32) -> DrawResult<DB> {
    let style = marker_style(series);
    match (series / PALETTE.len()) % 4 {
        0 => area.draw(&Circle::new((x, y), r, style)),
        1 => area.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], style)),
        2 => area.draw(&TriangleMarker::new((x, y), r + 1, style)),
        _ => area.draw(&Cross::new((x, y), r, colour(series).stroke_width(2))),
    }
}

/// Whether the lines of `series` are dashed (odd decades, so a repeated colour also differs in stroke).
fn dashed(series: usize) -> bool {
    (series / PALETTE.len()) % 2 == 1
}

/// Device pixels per figure pixel of the PNGs (the SVGs are vectors).
pub const PNG_SCALE: u32 = 2;

const PANEL_W: u32 = 420;
const PANEL_H: u32 = 300;
const ROWS_W: u32 = 1000;
const ROWS_PLOT_W: u32 = 600;
const ROW_H: u32 = 26;
/// A row panel's height besides its rows: caption, x labels and description, margins.
const ROWS_EXTRA_H: u32 = 100;
const TITLE_H: u32 = 38;
const LEGEND_ROW: u32 = 22;
const LEGEND_TEXT: f64 = 16.0;
const LABEL_TEXT: f64 = 15.0;

/// Legend entries flow left to right and wrap: (x, y) of each, and the legend's height.
fn legend_layout(labels: &[String], width: u32) -> (Vec<(i32, i32)>, u32) {
    let (mut x, mut y) = (12u32, 4u32);
    let mut at = Vec::new();
    for l in labels {
        let w = 36 + text_width(l, LEGEND_TEXT) + 24;
        if x > 12 && x + w > width {
            x = 12;
            y += LEGEND_ROW;
        }
        at.push((x as i32, y as i32));
        x += w;
    }
    (at, y + LEGEND_ROW + 6)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

impl Plot {
    fn width(&self) -> u32 {
        match self {
            Plot::Panels(c) => PANEL_W * c.panels.len().clamp(1, 3) as u32,
            // the plotting area keeps at least ROWS_PLOT_W pixels beside long row labels
            Plot::Rows(c) => ROWS_W.max(row_label_width(c) + ROWS_PLOT_W),
        }
    }

    fn labels(&self) -> &[String] {
        match self {
            Plot::Panels(c) => &c.labels,
            Plot::Rows(c) => &c.labels,
        }
    }

    /// Heights of the title, the panels (each row of panels) and the legend.
    fn layout(&self) -> (Vec<u32>, Vec<(i32, i32)>, u32) {
        let rows = match self {
            Plot::Panels(c) => vec![PANEL_H; c.panels.len().div_ceil(3).max(1)],
            Plot::Rows(c) => c.panels.iter().map(|p| ROWS_EXTRA_H + ROW_H * p.rows.len().max(1) as u32).collect(),
        };
        let (legend_at, legend_h) = legend_layout(self.labels(), self.width());
        (rows, legend_at, legend_h)
    }

    /// Width and height in pixels (the SVG's and the PNG's).
    pub fn size(&self) -> (u32, u32) {
        let (rows, _, legend_h) = self.layout();
        (self.width(), TITLE_H + rows.iter().sum::<u32>() + legend_h)
    }

    /// The figure as an SVG document.
    pub fn svg(&self) -> Result<String, String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size()).into_drawing_area();
            self.draw(&root).map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }

    /// The figure as a PNG (8-bit RGB) at [`PNG_SCALE`] times [`Plot::size`]: sharp in print.
    pub fn png(&self) -> Result<Vec<u8>, String> {
        use image::ImageEncoder;
        let (w, h) = self.size();
        let (w, h) = (w * PNG_SCALE, h * PNG_SCALE);
        let mut pixels = vec![0u8; w as usize * h as usize * 3];
        {
            let root = Glyphs::new(BitMapBackend::with_buffer(&mut pixels, (w, h)), PNG_SCALE).into_drawing_area();
            self.draw(&root).map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| e.to_string())?;
        Ok(png)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (rows, legend_at, _) = self.layout();
        root.fill(&WHITE)?;
        let (top, rest) = root.split_vertically(TITLE_H);
        let title = match self {
            Plot::Panels(c) => &c.title,
            Plot::Rows(c) => &c.title,
        };
        top.draw(&Text::new(title.clone(), (12, 9), (FONT, 21).into_font().style(FontStyle::Bold).color(&BLACK)))?;
        let (grid, legend) = rest.split_vertically(rows.iter().sum::<u32>());
        match self {
            Plot::Panels(c) => {
                let cols = c.panels.len().clamp(1, 3);
                for (area, panel) in grid.split_evenly((rows.len(), cols)).iter().zip(&c.panels) {
                    draw_panel(area, c, panel)?;
                }
            }
            Plot::Rows(c) => {
                let label_w = row_label_width(c);
                let mut area = grid;
                for (panel, h) in c.panels.iter().zip(&rows) {
                    let (this, next) = area.split_vertically(*h);
                    draw_rows_panel(&this, c, panel, label_w)?;
                    area = next;
                }
            }
        }
        // series drawn only as reference levels have no marker in the legend
        let reference: Vec<usize> = match self {
            Plot::Panels(c) => {
                let lines = || c.panels.iter().flat_map(|p| &p.lines);
                lines().filter(|l| l.reference).map(|l| l.series).filter(|s| !lines().any(|l| !l.reference && l.series == *s)).collect()
            }
            Plot::Rows(_) => Vec::new(),
        };
        for (i, (label, (x, y))) in self.labels().iter().zip(legend_at).enumerate() {
            let mid = y + 8;
            if dashed(i) || reference.contains(&i) {
                for seg in 0..3 {
                    legend.draw(&PathElement::new(vec![(x + seg * 10, mid), (x + seg * 10 + 6, mid)], colour(i).stroke_width(2)))?;
                }
            } else {
                legend.draw(&PathElement::new(vec![(x, mid), (x + 28, mid)], colour(i).stroke_width(2)))?;
            }
            if !reference.contains(&i) {
                draw_marker(&legend, (x + 14, mid), i, 4)?;
            }
            legend.draw(&Text::new(label.clone(), (x + 36, y + 2), (FONT, LEGEND_TEXT).into_font().color(&BLACK)))?;
        }
        Ok(())
    }
}

/// The label area of a dot plot: its longest row label and a margin.
fn row_label_width(c: &RowChart) -> u32 {
    c.panels.iter().flat_map(|p| &p.rows).map(|r| text_width(&r.label, LABEL_TEXT)).max().unwrap_or(0) + 24
}

/// A linear axis with ticks exactly where asked (category centres, 0.2 steps), rather than where
/// plotters' "nice number" search would put them. `range` may run backwards (rows top down).
struct Ticked {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, (lo, hi): (i32, i32)) -> i32 {
        let t = (v - self.range.start) / (self.range.end - self.range.start);
        // a value far outside the axis (damage, a degenerate fit) lands at the edge, never overflows
        lo.saturating_add(((hi - lo) as f64 * t).round() as i32)
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The widest tick label of `axis`, for the label area.
fn y_label_width(axis: &YAxis) -> u32 {
    axis.ticks.iter().map(|t| text_width(&axis.label(*t), LABEL_TEXT)).max().unwrap_or(0)
}

/// One panel: x over the chart's axis, y over the panel's, each line with its markers and error
/// bars (clipped to the axis).
fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, chart: &PanelChart, panel: &Panel) -> DrawResult<DB> {
    let (range, ticks, names): (Range<f64>, Vec<f64>, Vec<String>) = match &chart.x {
        XAxis::Categories(names) => (-0.5..names.len() as f64 - 0.5, (0..names.len()).map(|i| i as f64).collect(), names.clone()),
        XAxis::Fraction { lo, hi } => {
            let ticks = (0..=10).map(|i| i as f64 / 10.0).filter(|t| *t >= lo - 1e-9 && *t <= hi + 1e-9).collect();
            (*lo..*hi, ticks, Vec::new())
        }
    };
    let categories = matches!(chart.x, XAxis::Categories(_));
    let tick_label = |x: &f64| {
        if categories { names.get(x.round().max(0.0) as usize).cloned().unwrap_or_default() } else { format!("{x:.1}") }
    };
    let y = &panel.y;
    let y_label = |v: &f64| y.label(*v);
    let mut c = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 17))
        .margin(10)
        .margin_right(22)
        .x_label_area_size(44)
        .y_label_area_size(y_label_width(y) + 30)
        .build_cartesian_2d(Ticked { range: range.clone(), ticks }, Ticked { range: 0.0..y.max, ticks: y.ticks.clone() })?;
    let mut mesh = c.configure_mesh();
    mesh.x_label_formatter(&tick_label)
        .y_label_formatter(&y_label)
        .x_desc(chart.x_desc.as_str())
        .y_desc(y.desc.as_str())
        .bold_line_style(RGBColor(225, 228, 232))
        .label_style((FONT, LABEL_TEXT))
        .axis_desc_style((FONT, LABEL_TEXT));
    if categories {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;
    let cap = (range.end - range.start) * 0.012;
    for line in panel.lines.iter().filter(|l| l.reference) {
        // a level across the whole panel, dashed, in the series' colour
        let Some(y0) = line.points.first().map(|p| p.y.min(y.max)) else { continue };
        let style = colour(line.series).stroke_width(2);
        c.draw_series(DashedLineSeries::new([(range.start, y0), (range.end, y0)], 8, 5, style))?;
    }
    for line in panel.lines.iter().filter(|l| !l.reference) {
        let style = colour(line.series);
        for p in &line.points {
            if let Some(sd) = p.sd.filter(|sd| *sd > 0.0) {
                let (lo, hi) = ((p.y - sd).max(0.0), (p.y + sd).min(y.max));
                c.draw_series([
                    PathElement::new(vec![(p.x, lo), (p.x, hi)], style.stroke_width(1)),
                    PathElement::new(vec![(p.x - cap, lo), (p.x + cap, lo)], style.stroke_width(1)),
                    PathElement::new(vec![(p.x - cap, hi), (p.x + cap, hi)], style.stroke_width(1)),
                ])?;
            }
        }
        if dashed(line.series) {
            c.draw_series(DashedLineSeries::new(line.points.iter().map(|p| (p.x, p.y)), 8, 5, style.stroke_width(2)))?;
        } else {
            c.draw_series(LineSeries::new(line.points.iter().map(|p| (p.x, p.y)), style.stroke_width(2)))?;
        }
        // markers in pixels relative to the plotting area (their shape does not scale with the axes)
        let area = c.plotting_area().strip_coord_spec();
        let (ax, ay) = area.get_base_pixel();
        for p in &line.points {
            let (bx, by) = c.backend_coord(&(p.x, p.y));
            draw_marker(&area, (bx - ax, by - ay), line.series, 4)?;
        }
    }
    Ok(())
}

/// One dot-plot panel: a row per entry (labels on the left), x = 0–1, the value printed beside
/// each dot.
fn draw_rows_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, chart: &RowChart, panel: &RowPanel, label_w: u32) -> DrawResult<DB> {
    let n = panel.rows.len().max(1);
    let labels: Vec<String> = panel.rows.iter().map(|r| r.label.clone()).collect();
    let row_label = |v: &f64| labels.get(v.round().max(0.0) as usize).cloned().unwrap_or_default();
    let mut c = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 17))
        .margin(10)
        .margin_right(22)
        .x_label_area_size(44)
        .y_label_area_size(label_w)
        .build_cartesian_2d(
            Ticked { range: 0.0..1.0, ticks: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0] },
            Ticked { range: n as f64 - 0.5..-0.5, ticks: (0..panel.rows.len()).map(|i| i as f64).collect() },
        )?;
    c.configure_mesh()
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&row_label)
        .x_desc(chart.x_desc.as_str())
        .bold_line_style(RGBColor(225, 228, 232))
        .label_style((FONT, LABEL_TEXT))
        .axis_desc_style((FONT, LABEL_TEXT))
        .draw()?;
    let value_style = TextStyle::from((FONT, 13).into_font()).color(&RGBColor(80, 86, 92));
    for (i, r) in panel.rows.iter().enumerate() {
        let y = i as f64;
        let style = colour(r.series);
        let (lo, hi) = match r.sd.filter(|sd| *sd > 0.0) {
            Some(sd) => ((r.x - sd).max(0.0), (r.x + sd).min(1.0)),
            None => (r.x, r.x),
        };
        if hi > lo {
            c.draw_series([
                PathElement::new(vec![(lo, y), (hi, y)], style.stroke_width(2)),
                PathElement::new(vec![(lo, y - 0.22), (lo, y + 0.22)], style.stroke_width(2)),
                PathElement::new(vec![(hi, y - 0.22), (hi, y + 0.22)], style.stroke_width(2)),
            ])?;
        }
        let area = c.plotting_area().strip_coord_spec();
        let (ax, ay) = area.get_base_pixel();
        let (bx, by) = c.backend_coord(&(r.x, y));
        draw_marker(&area, (bx - ax, by - ay), r.series, 5)?;
        // the value beside the dot: right of the bar, or left of it near 1
        let (at, anchor) = if hi > 0.86 { (lo - 0.018, HPos::Right) } else { (hi + 0.018, HPos::Left) };
        c.draw_series([Text::new(format!("{:.3}", r.x), (at, y), value_style.pos(Pos::new(anchor, VPos::Center)))])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_value_far_off_the_axis_lands_at_an_edge_without_overflow() {
        // a damaged or degenerate metric (1.49e308 where F1 lives in 0..1) must not take the report down
        let axis = Ticked { range: 0.0..1.0, ticks: vec![0.0, 1.0] };
        assert_eq!(axis.map(&1.49e308, (10, 200)), i32::MAX);
        assert_eq!(axis.map(&-1.49e308, (10, 200)), 10 + i32::MIN);
        assert_eq!(axis.map(&f64::NAN, (10, 200)), 10);
        assert_eq!(axis.map(&0.5, (10, 200)), 105);
    }

    use super::*;

    #[test]
    fn count_axes_end_on_a_round_number_above_the_data() {
        let y = YAxis::counts("n", 1234.0);
        assert_eq!((y.max, y.ticks.len()), (1250.0, 6));
        let y = YAxis::counts("n", 7.0);
        assert_eq!(y.ticks, [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(YAxis::counts("n", 0.0).max, 1.0);
        assert_eq!(y.label(4.0), "4");
    }

    #[test]
    fn the_png_is_twice_the_svg_size_and_has_text() {
        let plot = Plot::Panels(PanelChart {
            title: "t".into(),
            x: XAxis::Categories(vec!["a".into(), "b".into()]),
            x_desc: "x".into(),
            panels: vec![Panel {
                title: "p".into(),
                y: YAxis::unit("y"),
                lines: vec![Line {
                    series: 0,
                    points: vec![Point { x: 0.0, y: 0.3, sd: Some(0.1) }, Point { x: 1.0, y: 0.6, sd: None }],
                    reference: false,
                }],
            }],
            labels: vec!["series".into()],
        });
        let (w, h) = plot.size();
        let svg = plot.svg().unwrap();
        assert!(svg.contains(&format!("width=\"{w}\"")) && svg.contains(&format!("height=\"{h}\"")), "{}", &svg[..200]);
        let img = image::load_from_memory(&plot.png().unwrap()).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (w * PNG_SCALE, h * PNG_SCALE), "twice the SVG's size, for print");
        // anti-aliased glyphs leave grey levels besides the palette's colours
        let greys = img.pixels().filter(|p| p[0] == p[1] && p[1] == p[2] && p[0] > 0 && p[0] < 200).count();
        assert!(greys > 50, "text was drawn: {greys} grey pixels");
        assert!(img.pixels().any(|p| p.0 == [31, 119, 180]), "the series colour");
    }
}
