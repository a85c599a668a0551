//! The baseline figure: each baseline beside the best SAE-probe variant of each layer.

use super::series::{F1_DESC, LAYER, POOLING, SPLIT_AXES, cmp_coords, cmp_opt, distinct, repeats_note, without};
use super::{Figure, Figures, Section};
use crate::report::ReportError;
use crate::report::draw::{Plot, Row, RowChart, RowPanel};
use crate::report::repeats::Variant;
use crate::report::study::coords_label;
use crate::report::table::{Cell, Table};
use crate::spec::Coords;

/// Each baseline next to the best SAE-probe variant of each layer, one panel per split. SAE
/// variants are those with a pooling `method` axis; every other gathered variant (EoI, ViT and
/// ResNet probes, the zero-shot answer) is a baseline.
pub(super) fn baselines(variants: &[Variant], out: &mut Figures) -> Result<(), ReportError> {
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
