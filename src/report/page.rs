//! The `report` stage's output folder: `index.html` (self-contained: inline CSS, inline SVG) and,
//! beside it, every figure as `.svg` and `.png` with its data as `.csv` and every table as `.csv`,
//! so they paste into a paper. The health table comes first: whether the SAE fits the image tokens
//! at all frames every other number.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::ReportError;
use super::figures::{Figures, Section, study_figures};
use super::html::{TableStyle, document, escape, table};
use super::study::{ClassResult, Study, coords_label, slug};
use super::table::{Cell, Table};

/// Everything the report writes: file name → bytes, and the `summary` table it publishes.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub files: BTreeMap<String, Vec<u8>>,
    pub summary: Table,
}

/// What the page shows besides the study.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub title: String,
    /// Only these labels' class tables in the HTML (`None`: every label); the CSVs keep all.
    pub labels: Option<Vec<String>>,
}

/// Render the report folder's files.
pub fn render(study: &Study, opts: &Options) -> Result<Rendered, ReportError> {
    let title = opts.title.as_str();
    let figures = study_figures(study)?;
    let summary = study.summary();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("summary.csv".into(), summary.to_csv().into_bytes());
    if !study.health.is_empty() {
        files.insert("health.csv".into(), study.health_table().to_csv().into_bytes());
    }
    for c in &study.classes {
        files.insert(format!("{}.csv", classes_stem(c)), Study::classes_table(c).to_csv().into_bytes());
    }
    if study.has_repeats() {
        files.insert(REPEATS_CSV.into(), study.repeats_table(false).to_csv().into_bytes());
    }
    for f in &figures.figures {
        files.insert(format!("{}.svg", f.name), f.svg.clone().into_bytes());
        files.insert(format!("{}.png", f.name), f.png()?);
        files.insert(format!("{}.csv", f.name), f.data.to_csv().into_bytes());
    }
    let mut body = format!("<h1>{}</h1>\n", escape(title));
    let variants = super::repeats::variants(&study.probes).len();
    let repeats = if variants < study.probes.len() { format!(" ({variants} variants over their repeats)") } else { String::new() };
    body += &format!(
        "<p class=\"lead\">{} probe results{repeats}, {} SAE health tables, {} class-feature tables. Figures and tables \
         are also in this folder as SVG, PNG and CSV.</p>\n",
        study.probes.len(),
        study.health.len(),
        study.classes.len()
    );
    body += &body_html(study, &figures, opts.labels.as_deref(), true);
    let html = document(title, &body);
    files.insert("index.html".into(), html.into_bytes());
    Ok(Rendered { files, summary })
}

/// The table of probe variants over their repeats (written only when some variant has repeats).
pub const REPEATS_CSV: &str = "summary_mean_sd.csv";

fn classes_stem(c: &ClassResult) -> String {
    let coords: Vec<(String, crate::spec::Value)> = c.coords.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    slug(&format!("top_features_{}", c.instance.split('[').next().unwrap_or("classes")), &coords)
}

fn link(file: &str, links: bool) -> String {
    if links { format!(" <a href=\"{0}\">{0}</a>", escape(file)) } else { String::new() }
}

/// The figures of one section, with their captions, file links and the notes of figures left out.
fn section(figures: &Figures, which: Section, links: bool) -> String {
    let mut out = String::new();
    for f in figures.figures.iter().filter(|f| f.section == which) {
        let _ = write!(
            out,
            "<figure id=\"fig-{}\">\n{}\n<figcaption>{}{}{}{}</figcaption>\n</figure>\n",
            escape(&f.name),
            f.svg,
            escape(&f.caption),
            link(&format!("{}.svg", f.name), links),
            link(&format!("{}.png", f.name), links),
            link(&format!("{}.csv", f.name), links)
        );
    }
    for (_, n) in figures.notes.iter().filter(|(s, _)| *s == which) {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(n));
    }
    out
}

/// The report's sections as an HTML fragment: health, the features per layer, the probes'
/// figures, the class tables, the variants over repeats (if any) and every probe result. `labels`: only these labels' class tables. `links`: link the files written beside `index.html` (the notebook embeds the same
/// fragment without them).
pub fn body_html(study: &Study, figures: &Figures, labels: Option<&[String]>, links: bool) -> String {
    let mut out = String::new();
    // contents: the sections, and every figure by its title
    out += "<nav class=\"toc\">\n";
    for (id, title) in [
        ("health", "SAE health"),
        ("features", "Features per layer"),
        ("figures", "Probes"),
        ("classes", "Top features per class"),
        ("summary", "Every probe result"),
    ] {
        let _ = writeln!(out, "<a href=\"#{id}\">{title}</a>");
    }
    for f in &figures.figures {
        let _ = writeln!(out, "<a href=\"#fig-{}\">{}</a>", escape(&f.name), escape(&f.title));
    }
    out += "</nav>\n";
    // 1. health
    out += "<h2 id=\"health\">SAE health</h2>\n";
    out += "<p class=\"note\">How well the text-trained SAE reconstructs the residual stream on image tokens, next to the \
            prompt's text tokens: whether the SAE transfers at all frames every number below. L0: active features per \
            token; variance explained: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖².</p>\n";
    if study.health.is_empty() {
        out += "<p class=\"note\">No health tables were gathered: add <code>health: codes.health</code> (the extraction's \
                health output) to the report stage.</p>\n";
    } else {
        out += &table(&study.health_table(), TableStyle::default());
        if links {
            let _ = writeln!(out, "<p class=\"note\">data:{}</p>", link("health.csv", true));
        }
    }
    // 2. what cleaning left of the features, 3. the probes' figures
    out += "<h2 id=\"features\">SAE features per layer</h2>\n";
    out += &section(figures, Section::Features, links);
    out += "<h2 id=\"figures\">Probes</h2>\n";
    out += &section(figures, Section::Probes, links);
    // 3b. what the best probes rely on: each class's heaviest features (with explanations where
    // the class tables have them)
    let best = study.best_weights(5);
    if !best.is_empty() {
        out += "<h2 id=\"weights\">What the best probes rely on</h2>\n";
        out += "<p class=\"note\">For each layer, the best probe variant (highest mean macro F1) whose weights were gathered \
                (<code>coefficients: [probe.coefficients, …]</code>): each class's five heaviest features, by weight on the \
                raw feature (weight / scale), with the Neuronpedia explanation where a class table has one.</p>\n";
        // explanations are per SAE: by the class table's layer and the feature (a fused probe's
        // features are offset per layer, so they get none)
        let explained: std::collections::BTreeMap<(Option<String>, u32), &str> = study
            .classes
            .iter()
            .flat_map(|c| {
                let layer = c.coords.get("layer").map(|l| l.plain_text());
                c.rows.iter().filter_map(move |r| r.explanation.as_deref().map(|e| ((layer.clone(), r.feature), e)))
            })
            .collect();
        for (instance, layer, classes) in &best {
            let _ = writeln!(out, "<h3>{}</h3>", escape(instance));
            let mut t = Table::new(["label", "feature", "weight", "explanation"]);
            for c in classes.iter().filter(|c| labels.is_none_or(|o| o.contains(&c.label_name))) {
                for (feature, w) in &c.top {
                    t.push(vec![
                        Cell::Str(c.label_name.clone()),
                        Cell::UInt(*feature as u64),
                        Cell::Float(*w),
                        explained.get(&(layer.clone(), *feature)).map(|e| Cell::Str(e.to_string())).unwrap_or(Cell::Null),
                    ]);
                }
            }
            out += &table(&t, TableStyle { wrap: &["explanation"], highlight: None });
        }
    }
    // 4. class features
    out += "<h2 id=\"classes\">Top features per class</h2>\n";
    if study.classes.is_empty() {
        out += "<p class=\"note\">No class-feature tables were gathered: add <code>classes: classes</code> (a \
                <code>class_features</code> stage) to the report stage.</p>\n";
    }
    let only = labels;
    for c in &study.classes {
        let _ = writeln!(out, "<h3>{}</h3>", escape(&c.instance));
        let mut labels: Vec<(u16, &str)> = Vec::new();
        for r in &c.rows {
            let wanted = only.is_none_or(|o| o.contains(&r.label_name));
            if wanted && !labels.iter().any(|(l, _)| *l == r.label) {
                labels.push((r.label, r.label_name.as_str()));
            }
        }
        if labels.is_empty() {
            let _ = writeln!(out, "<p class=\"note\">none of the labels asked for is in this table</p>");
        }
        for (label, name) in labels {
            let mut t = Table::new(["rank", "feature", "images", "explanation"]);
            for r in c.rows.iter().filter(|r| r.label == label) {
                t.push(vec![
                    Cell::UInt(r.rank as u64),
                    Cell::UInt(r.feature as u64),
                    Cell::Str(format!("{}/{}", r.n_images, r.label_images)),
                    r.explanation.clone().map(Cell::Str).unwrap_or(Cell::Null),
                ]);
            }
            let _ = writeln!(out, "<h4>{} <span class=\"muted\">(label {label})</span></h4>", escape(name));
            out += &table(&t, TableStyle { wrap: &["explanation"], highlight: None });
        }
        let _ =
            writeln!(out, "<p class=\"note\">{}{}</p>", escape(&coords_label(&c.coords)), link(&format!("{}.csv", classes_stem(c)), links));
    }
    // 5. every probe variant: over its repeats, then every result
    if study.has_repeats() {
        out += "<h2 id=\"repeats\">Probe variants over repeats</h2>\n";
        out += "<p class=\"note\">Results that differ only in a repeat axis (<code>seed</code>) as mean ± sample standard \
                deviation (n − 1) over the n repeats; the best mean macro F1 highlighted.</p>\n";
        out += &table(&study.repeats_table(true), TableStyle { wrap: &[], highlight: study.best_variant() });
        if links {
            let _ = writeln!(out, "<p class=\"note\">data (means, standard deviations, instances):{}</p>", link(REPEATS_CSV, true));
        }
    }
    out += "<h2 id=\"summary\">Every probe result</h2>\n";
    if let Some(best) = study.best_probe() {
        let p = &study.probes[best];
        let _ = writeln!(
            out,
            "<p class=\"note\">Best macro F1: <b>{:.4}</b> — <code>{}</code> (highlighted).</p>",
            p.macro_f1,
            escape(&p.instance)
        );
    }
    out += &table(&study.summary(), TableStyle { wrap: &[], highlight: study.best_probe() });
    if links {
        let _ = writeln!(out, "<p class=\"note\">data:{}</p>", link("summary.csv", true));
    }
    out
}
