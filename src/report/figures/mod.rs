//! The study's figures — what to draw, from a [`Study`]; `draw.rs` draws it, to SVG and PNG:
//!
//! - **SAE features per layer** (from the `clean` stage, `features.rs`): distinct features before
//!   and after cleaning, and the fraction of images that keep a feature;
//! - **macro F1 by pooling method** (`lines.rs`): x = the `method` axis (sum, mean, max, count,
//!   then topN by N), one panel per `mode` (raw and binarized side by side), one line per remaining
//!   coordinate combination (the layer, a fused `1+3` layer, …), one figure per `train_folds`;
//! - **macro F1 by training fraction** (data efficiency, `lines.rs`): x = `n_train / (n_train +
//!   n_test)`, one panel per `layer`, one line per remaining combination (pooling × mode);
//! - **baselines against the best SAE variant** (`baselines.rs`): per split, each baseline (a
//!   variant without a `method` axis) beside the SAE variant with the highest mean macro F1 of
//!   each layer.
//!
//! `series.rs` holds what they share: the axes they know, orderings, lines and point rows.
//!
//! Results that differ only in a repeat axis (`seed`, see `repeats.rs`) are one point: their mean,
//! with an error bar of ± one sample standard deviation.
//!
//! A figure whose axis no variant has is skipped with a note, never drawn from invented data.
//! Each figure comes with the table of the points it draws (its CSV): one row per probe result
//! with its instance id and macro F1, exactly as the probe's metrics table holds them, and the
//! mean, sd and n of the point it belongs to.

mod baselines;
mod features;
mod lines;
mod series;

use super::ReportError;
use super::draw::Plot;
use super::repeats::variants;
use super::study::Study;
use super::table::Table;

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
    features::feature_occurrence(study, &mut out)?;
    if study.probes.is_empty() {
        out.notes.push((Section::Probes, "no probe results were gathered, so there are no figures of scores".into()));
        return Ok(out);
    }
    let variants = variants(&study.probes);
    lines::f1_by_pooling(&variants, &mut out)?;
    lines::f1_by_train_fraction(&variants, &mut out)?;
    baselines::baselines(&variants, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::report::draw::XAxis;
    use crate::report::study::ProbeResult;
    use crate::report::table::Cell;
    use crate::spec::{Coords, Value};

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
        // the PNG: twice the SVG's size, decodes, and is not blank
        let img = image::load_from_memory(&b.png().unwrap()).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (b.size().0 * crate::report::draw::PNG_SCALE, b.size().1 * crate::report::draw::PNG_SCALE));
        let colours: BTreeSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 10, "{} colours", colours.len());
    }

    #[test]
    fn zero_shot_is_a_level_in_every_panel_and_the_x_axis_fits_the_fractions() {
        let mut probes = Vec::new();
        for (folds, n_train) in [(1, 10), (5, 50)] {
            for layer in [1, 3] {
                let c = vec![("layer", Value::Int(layer)), ("method", s("sum")), ("train_folds", Value::Int(folds))];
                probes.push(probe("probe", &c, 0.5 + layer as f64 / 10.0, n_train));
            }
            probes.push(probe("zeroshot", &[("train_folds", Value::Int(folds))], 0.05, 0));
        }
        let study = Study { probes, ..Study::default() };
        let figs = study_figures(&study).unwrap();
        let f = figs.figures.iter().find(|f| f.name == "f1_by_train_fraction").unwrap();
        let Plot::Panels(chart) = &f.plot else { panic!("a panel chart") };
        assert_eq!(chart.panels.len(), 2, "one per layer; zero-shot makes no panel of its own");
        for panel in &chart.panels {
            let level: Vec<&crate::report::draw::Line> = panel.lines.iter().filter(|l| l.reference).collect();
            assert_eq!(level.len(), 1, "{}", panel.title);
            assert!((level[0].points[0].y - 0.05).abs() < 1e-12);
            assert_eq!(panel.lines.len(), 2, "the probe's line and the level");
        }
        assert_eq!(chart.x, XAxis::Fraction { lo: 0.05, hi: 0.55 }, "0.1 to 0.5 and a margin, not 0 to 1");
        assert!(f.caption.contains("Dashed levels"), "{}", f.caption);
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
