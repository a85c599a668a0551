//! The feature-occurrence figure: what the `clean` stage left of the SAE features, per layer.

use super::series::{LAYER, cmp_coords, cmp_opt, distinct, without};
use super::{Figure, Figures, Section};
use crate::report::ReportError;
use crate::report::draw::{Line, Panel, PanelChart, Plot, Point, XAxis, YAxis};
use crate::report::study::{CleanResult, Study, coords_label};
use crate::report::table::{Cell, Table};
use crate::spec::Coords;

/// What the `clean` stage left per layer: distinct features before and after cleaning, and the
/// share of images that keep at least one feature.
pub(super) fn feature_occurrence(study: &Study, out: &mut Figures) -> Result<(), ReportError> {
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
            reference: false,
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

#[cfg(test)]
mod tests {
    use crate::report::figures::{Section, study_figures};
    use crate::report::study::{CleanResult, Study};
    use crate::spec::Value;

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
}
