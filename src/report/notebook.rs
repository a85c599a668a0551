//! `saeflow report`: the pipeline as it stands in the cache, as one self-contained HTML notebook —
//! one cell per plan instance, in plan order, each with its status (cached, or not yet run and
//! why), the time its computation took (from the manifest), and per output the cache key, row
//! count, schema and first rows. A cached `report` instance's cell embeds its figures and tables,
//! redrawn from the cached tables it gathered. Nothing here runs a stage or writes the cache.
//!
//! Cells carry `id="cell-N"` (N = the instance's plan index), `data-instance`, `data-stage`,
//! `data-kind` and `data-status` (`cached` / `run`, as `plan --json` says), so tools and tests can
//! find them.

use std::fmt::Write;

use arrow_array::RecordBatch;

use super::figures::study_figures;
use super::html::{TableStyle, document, escape, fmt_rows, fmt_secs, pairs, table};
use super::page::body_html;
use super::study::{Gathered, Study};
use super::table::{Cell, Table, display_value};
use super::{ReportError, SLOT_CLASSES, SLOT_CLEAN, SLOT_COEFFICIENTS, SLOT_HEALTH, SLOT_METRICS};
use crate::engine::EngineError;
use crate::engine::cache::{Cache, EntryState};
use crate::engine::manifest::Manifest;
use crate::engine::status::{Assessment, Status};
use crate::engine::table::{read_file, read_footer};
use crate::plan::{Instance, Plan};

/// First rows shown per output.
pub const FIRST_ROWS: usize = 5;
/// Longest cell text shown (a 2,048-wide residual would otherwise fill the page).
const CELL_CHARS: usize = 60;

/// Render the notebook of `plan` over `cache`; `assessed[i]` is instance i's status.
pub fn render(plan: &Plan, cache: &Cache, assessed: &[Assessment]) -> Result<String, ReportError> {
    let cached = assessed.iter().filter(|a| a.status == Status::Cached).count();
    let name = &plan.pipeline.name;
    let mut body = format!("<h1>{}</h1>\n", escape(name));
    if let Some(d) = &plan.pipeline.description {
        let _ = writeln!(body, "<p class=\"lead\">{}</p>", escape(d));
    }
    let _ = writeln!(
        body,
        "<p class=\"lead\">{} · {} instances: {cached} cached, {} not yet run.</p>",
        escape(&plan.pipeline.file),
        plan.instances.len(),
        plan.instances.len() - cached
    );
    // the cells first: they say which report figures there are, for the table of contents
    let mut cells = String::new();
    let mut figures: Vec<(String, String)> = Vec::new();
    for s in &plan.stages {
        let done = s.instances.iter().filter(|&&i| assessed[i].status == Status::Cached).count();
        let _ = writeln!(
            body,
            "<h2 class=\"stage-head\" id=\"stage-{}\">{} <span class=\"muted\">— {}, {} instance{}, {done} cached</span></h2>",
            escape(&s.name),
            escape(&s.name),
            escape(s.signature.kind),
            s.instances.len(),
            if s.instances.len() == 1 { "" } else { "s" }
        );
        if let Some(d) = &s.description {
            let _ = writeln!(body, "<p class=\"note\">{}</p>", escape(d));
        }
        for &i in &s.instances {
            cells += &cell(plan, &plan.instances[i], &assessed[i], cache, &mut figures)?;
        }
    }
    // table of contents: one link per stage, then one per report figure
    body += "<nav class=\"toc\">\n";
    for s in &plan.stages {
        let done = s.instances.iter().filter(|&&i| assessed[i].status == Status::Cached).count();
        let _ =
            writeln!(body, "<a href=\"#stage-{0}\">{0} <span class=\"muted\">{done}/{1}</span></a>", escape(&s.name), s.instances.len());
    }
    body += "</nav>\n";
    if !figures.is_empty() {
        body += "<nav class=\"toc\"><span class=\"muted\">figures:</span>\n";
        for (name, title) in &figures {
            let _ = writeln!(body, "<a href=\"#fig-{}\">{}</a>", escape(name), escape(title));
        }
        body += "</nav>\n";
    }
    body += &cells;
    Ok(document(&format!("{name} — saeflow notebook"), &body))
}

/// One instance's cell; a report's figures are added to `figures` (name, title) for the contents.
fn cell(plan: &Plan, inst: &Instance, a: &Assessment, cache: &Cache, figures: &mut Vec<(String, String)>) -> Result<String, ReportError> {
    let (class, badge) = match (&a.status, a.damaged.is_empty()) {
        (Status::Cached, _) => ("cached", "cached"),
        (Status::Run, true) => ("run", "not yet run"),
        (Status::Run, false) => ("damaged", "damaged"),
    };
    let status = if a.status == Status::Cached { "cached" } else { "run" };
    let mut out = format!(
        "<section class=\"cell {class}\" id=\"cell-{}\" data-instance=\"{}\" data-stage=\"{}\" data-kind=\"{}\" data-status=\"{status}\">\n",
        inst.index,
        escape(&inst.id),
        escape(&inst.stage),
        escape(inst.kind)
    );
    let time = a.seconds.map(|s| format!("<span class=\"muted\">{}</span>", fmt_secs(s))).unwrap_or_default();
    let _ = writeln!(
        out,
        "<header><span class=\"badge\">{badge}</span><h3>{}</h3><span class=\"muted\">{}</span>{time}</header>",
        escape(&inst.id),
        escape(inst.kind)
    );
    if a.status == Status::Run {
        let _ = writeln!(out, "<p class=\"note\">would run: {}</p>", escape(&a.reason));
    }
    for o in &inst.outputs {
        let _ = write!(
            out,
            "<div class=\"output\" data-output=\"{}\">\n<h4>{} <span class=\"muted\">{} table · key <code>{}</code></span></h4>\n",
            escape(&o.name),
            escape(&o.name),
            escape(&o.table),
            escape(&o.key)
        );
        match cache.state(&o.key) {
            EntryState::Present(m) | EntryState::Touched(m) => match output_html(cache, &m) {
                Ok(html) => out += &html,
                // silent damage found by hashing what the cell shows: said, never displayed
                Err(ReportError::Engine(EngineError::Corrupt(why))) => {
                    let _ = writeln!(out, "<p class=\"note\">damaged: {} (<code>saeflow run</code> recomputes it)</p>", escape(&why));
                }
                Err(e) => return Err(e),
            },
            EntryState::Missing => out += "<p class=\"note\">not in the cache yet</p>\n",
            EntryState::Damaged(why) => {
                let _ = writeln!(out, "<p class=\"note\">damaged: {} (<code>saeflow run</code> recomputes it)</p>", escape(&why));
            }
        }
        out += "</div>\n";
    }
    if inst.kind == "report" && a.status == Status::Cached {
        out += &embedded_report(plan, inst, cache, figures)?;
    }
    out += "</section>\n";
    Ok(out)
}

/// An output's rows, parts, schema and first rows (a health table: its summary instead of raw
/// sufficient statistics).
fn output_html(cache: &Cache, m: &Manifest) -> Result<String, ReportError> {
    let mut out = format!("<p class=\"note\">{} rows in {} part(s)</p>\n", fmt_rows(m.rows), m.files.len());
    let Some(first) = m.files.first() else {
        return Ok(out);
    };
    // every file shown is hashed against the manifest first: silent damage is never displayed
    let first_path = cache.checked_file(&m.key, first)?;
    let (schema, _, _) = read_footer(&first_path)?;
    let fields: Vec<(String, String)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), format!("{}{}", f.data_type(), if f.is_nullable() { " (nullable)" } else { "" })))
        .collect();
    let _ = writeln!(out, "<details><summary>schema: {} columns</summary>\n{}</details>", fields.len(), pairs(&fields));
    if m.table == "health" {
        let batches = read_all(cache, m)?;
        let study = Study {
            health: vec![super::study::HealthResult {
                instance: m.instance.clone(),
                coords: Default::default(),
                scopes: crate::health::summarize(&batches)?,
            }],
            ..Study::default()
        };
        out += &table(&study.health_table(), TableStyle::default());
        return Ok(out);
    }
    let mut rows: Vec<RecordBatch> = Vec::new();
    let mut left = FIRST_ROWS;
    for b in read_file(&first_path)? {
        let b = b?;
        let take = b.num_rows().min(left);
        rows.push(b.slice(0, take));
        left -= take;
        if left == 0 {
            break;
        }
    }
    let mut t = Table::new(schema.fields().iter().map(|f| f.name().clone()));
    for b in &rows {
        for r in 0..b.num_rows() {
            t.push(
                b.columns()
                    .iter()
                    .map(|c| match Cell::from_array(c.as_ref(), r) {
                        Cell::Str(s) if s.chars().count() > CELL_CHARS => Cell::Str(display_value(c.as_ref(), r, CELL_CHARS)),
                        Cell::Str(_) if !matches!(c.data_type(), arrow_schema::DataType::Utf8 | arrow_schema::DataType::LargeUtf8) => {
                            Cell::Str(display_value(c.as_ref(), r, CELL_CHARS))
                        }
                        other => other,
                    })
                    .collect(),
            );
        }
    }
    if !t.rows.is_empty() {
        let _ = writeln!(out, "<p class=\"note\">first {} rows</p>", t.rows.len());
        out += &table(&t, TableStyle::default());
    }
    Ok(out)
}

fn read_all(cache: &Cache, m: &Manifest) -> Result<Vec<RecordBatch>, ReportError> {
    let mut out = Vec::new();
    for f in &m.files {
        for b in read_file(&cache.checked_file(&m.key, f)?)? {
            out.push(b?);
        }
    }
    Ok(out)
}

/// The tables a report instance gathered in `slot`, read from the cache; `Err(text)` names the
/// first one that is missing.
fn gathered(plan: &Plan, inst: &Instance, slot: &str, cache: &Cache) -> Result<Result<Vec<Gathered>, String>, ReportError> {
    let mut out = Vec::new();
    for item in inst.input(slot).map(|b| b.items.as_slice()).unwrap_or_default() {
        let id = &plan.instances[item.instance].id;
        let m = match cache.state(&item.key) {
            EntryState::Present(m) | EntryState::Touched(m) => m,
            _ => return Ok(Err(format!("{id} ({}) is not in the cache", item.output))),
        };
        let batches = match read_all(cache, &m) {
            Ok(b) => b,
            Err(ReportError::Engine(EngineError::Corrupt(why))) => return Ok(Err(format!("{id} ({}) is damaged: {why}", item.output))),
            Err(e) => return Err(e),
        };
        out.push(Gathered { instance: id.clone(), coords: item.coords.clone(), batches });
    }
    Ok(Ok(out))
}

/// A cached report instance's figures and tables, redrawn from the tables it gathered.
fn embedded_report(plan: &Plan, inst: &Instance, cache: &Cache, toc: &mut Vec<(String, String)>) -> Result<String, ReportError> {
    let mut slots = Vec::new();
    for slot in [SLOT_METRICS, SLOT_HEALTH, SLOT_CLASSES, SLOT_CLEAN, SLOT_COEFFICIENTS] {
        match gathered(plan, inst, slot, cache)? {
            Ok(g) => slots.push(g),
            Err(missing) => {
                return Ok(format!("<p class=\"note\">the report's figures cannot be redrawn: {}</p>\n", escape(&missing)));
            }
        }
    }
    let study = Study::from_tables(&slots[0], &slots[1], &slots[2], &slots[3], &slots[4])?;
    let figures = study_figures(&study)?;
    toc.extend(figures.figures.iter().map(|f| (f.name.clone(), f.title.clone())));
    let labels: Option<Vec<String>> = match inst.params.get("labels") {
        Some(crate::spec::Value::List(items)) => Some(items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
        _ => None,
    };
    Ok(format!("<div class=\"report\">\n{}</div>\n", body_html(&study, &figures, labels.as_deref(), false)))
}
