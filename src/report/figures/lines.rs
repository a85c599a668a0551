//! The macro-F1 line figures: by pooling method (one figure per split) and by training fraction
//! (data efficiency).

use std::collections::BTreeMap;

use super::series::{
    F1_DESC, LAYER, MODE, POINT_COLUMNS, POOLING, SPLIT, SPLIT_AXES, Series, cmp_opt, distinct, mode_rank, mode_title, point, point_cells,
    pooling_order, repeats_note, sorted_lines,
};
use super::{Figure, Figures, Section};
use crate::report::ReportError;
use crate::report::draw::{Line, Panel, PanelChart, Plot, Point, XAxis, YAxis};
use crate::report::repeats::Variant;
use crate::report::study::slug;
use crate::report::table::{Cell, Table};

pub(super) fn f1_by_pooling(variants: &[Variant], out: &mut Figures) -> Result<(), ReportError> {
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

pub(super) fn f1_by_train_fraction(variants: &[Variant], out: &mut Figures) -> Result<(), ReportError> {
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
    // a baseline that trains on nothing (zero-shot) is a level, drawn across every panel
    let is_reference = |v: &Variant| v.members.iter().all(|p| p.n_train == 0);
    let references: Vec<&Variant> = rows.iter().copied().filter(|v| is_reference(v)).collect();
    let layers =
        distinct(&rows.iter().copied().filter(|v| !is_reference(v)).collect::<Vec<_>>(), |p| p.coords.get(LAYER).cloned(), cmp_opt);
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
        for v in rows.iter().filter(|p| p.coords.get(LAYER) == layer.as_ref() && !is_reference(p)) {
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
        let mut drawn = sorted_lines(lines);
        // one level per series: the mean over its variants (zero-shot scored on each split's test rows)
        let mut levels: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for v in &references {
            levels.entry(series.index(v)).or_default().push(point(0.0, v).y);
        }
        for (s, ys) in levels {
            let y = ys.iter().sum::<f64>() / ys.len() as f64;
            drawn.push(Line { series: s, points: vec![Point { x: 0.0, y, sd: None }], reference: true });
        }
        panels.push(Panel { title, y: YAxis::unit(F1_DESC), lines: drawn });
    }
    for v in &references {
        for p in &v.members {
            let mut row = vec![
                Cell::Str("every panel (a level)".into()),
                Cell::Str(series.labels[series.index(v)].clone()),
                Cell::Float(p.train_fraction()),
                Cell::UInt(p.n_train),
                Cell::UInt(p.n_test),
            ];
            row.extend(point_cells(p, v));
            keyed.push(((usize::MAX, series.index(v), 0.0), row));
        }
    }
    keyed.sort_by(|(a, _), (b, _)| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
    for (_, row) in keyed {
        data.push(row);
    }
    let name = "f1_by_train_fraction".to_string();
    let title = "Macro F1 by training fraction (data efficiency)".to_string();
    let chart = PanelChart {
        title: title.clone(),
        x: XAxis::fraction(rows.iter().filter(|v| !is_reference(v)).map(|v| v.train_fraction())),
        x_desc: "train fraction n_train / (n_train + n_test)".into(),
        panels,
        labels: series.labels,
    };
    let level = if references.is_empty() {
        ""
    } else {
        " Dashed levels: baselines that train on nothing (zero-shot), the mean over the splits' test sets, the same in every panel."
    };
    let caption = format!(
        "One panel per {LAYER}; one line per combination of the other axes. {} probe variants.{level}{}",
        rows.len(),
        repeats_note(&rows)
    );
    out.figures.push(Figure::new(name, Section::Probes, title, caption, data, Plot::Panels(chart))?);
    Ok(())
}
