//! `saeflow doctor`: the library's [`crate::doctor::Report`] printed as a short aligned report
//! or as JSON, and its exit code.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::progress::fmt_rows;
use crate::doctor::{self, CheckOutcome, Options, Place, Report, Size, fmt_bytes, fmt_duration, fmt_flop};
use crate::engine::cache::Cache;
use crate::engine::stage::Registry;
use crate::models::hub::HubCache;
use crate::models::source::Artifact;
use crate::plan::{Externals, Plan};

/// Exit code when something blocks the run.
pub const EXIT_BLOCKED: u8 = 11;

pub(super) fn cmd_doctor(ctx: &super::Ctx, registry: &Registry, file: &Path, json: bool, opts: &Options) -> Result<ExitCode> {
    let cache = ctx.cache_dir(Some(file));
    let plan: Plan = ctx.plan(&cache, registry, file, Externals::Record)?;
    let hub = HubCache::from_env().ok();
    let report = doctor::examine(&plan, &Cache::at(&cache), hub.as_ref(), opts);
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::from(if report.ready() { 0 } else { EXIT_BLOCKED }))
}

fn size(s: &Size, offline: bool) -> String {
    match s {
        Size::Exact(b) => fmt_bytes(*b),
        Size::About { bytes, how } => format!("≈ {} ({how})", fmt_bytes(*bytes)),
        Size::Unknown if offline => "unknown (offline)".into(),
        Size::Unknown => "unknown".into(),
    }
}

/// Rows of cells, left-aligned in columns, each line indented by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(c, s)| format!("{s:<w$}", w = widths[c])).collect();
        out += &format!("  {}\n", line.join("  ").trim_end());
    }
    out
}

fn render(r: &Report) -> String {
    let mut out = format!("doctor {} ({}): {} instances, {} to run\n", r.pipeline, r.file, r.instances, r.to_run);
    if let Some(root) = &r.hub_root {
        out += &format!("hugging face cache: {}{}\n", root.display(), if r.offline { " (offline: HF_HUB_OFFLINE)" } else { "" });
    }

    if !r.artifacts.is_empty() {
        out += "\nartifacts\n";
        let rows: Vec<Vec<String>> = r
            .artifacts
            .iter()
            .map(|a| {
                let kind = match a.kind {
                    Artifact::Model => "model",
                    Artifact::Sae => "sae",
                };
                let place = match &a.place {
                    Place::Local(_) => "local",
                    Place::Hub { .. } => "hub",
                };
                let missing = a.missing().count();
                let download = if missing == 0 {
                    String::new()
                } else {
                    let unknown = if r.offline { "unknown (offline)" } else { "unknown" };
                    let sized = match (a.to_download.bytes(), a.unknown.len()) {
                        (Some(0) | None, _) if !a.unknown.is_empty() => unknown.to_string(),
                        (_, 0) => size(&a.to_download, r.offline),
                        (_, n) => format!("{} + {n} file(s) {unknown}", size(&a.to_download, r.offline)),
                    };
                    format!("to download: {missing} file(s), {sized}")
                };
                vec![
                    kind.into(),
                    a.reference.clone(),
                    format!("{place}, {}", a.state()),
                    format!("here {}", fmt_bytes(a.present_bytes())),
                    if matches!(a.place, Place::Local(_)) && a.complete() { String::new() } else { download },
                ]
            })
            .collect();
        out += &table(&rows);
        let (known, unknown) = r.download();
        if known > 0 || unknown {
            let free = r.hub_free.map(|f| format!("; {} free there", fmt_bytes(f))).unwrap_or_default();
            out += &format!("  download total: {}{}{free}\n", fmt_bytes(known), if unknown { " + unknown sizes" } else { "" });
        }
    }

    if !r.checks.is_empty() {
        let count = |f: fn(&CheckOutcome) -> bool| r.checks.iter().filter(|(_, c)| f(c)).count();
        out += "\nplan-time checks (SAE d_in vs the model's width, hook layer vs tapped layer, the checkpoint's preprocessor)\n";
        let not_checked = count(|c| *c == CheckOutcome::NotChecked);
        out += &format!(
            "  {} of {} checked: {} agree, {} warn, {} disagree{}\n",
            r.checks.len() - not_checked,
            r.checks.len(),
            count(|c| *c == CheckOutcome::Agrees),
            count(|c| matches!(c, CheckOutcome::Warns(_))),
            count(|c| matches!(c, CheckOutcome::Disagrees(_))),
            if not_checked > 0 { format!("; {not_checked} not checked (their config is not here yet)") } else { String::new() },
        );
        for (id, c) in &r.checks {
            match c {
                CheckOutcome::Warns(ws) => ws.iter().for_each(|w| out += &format!("  ! {id}: {w}\n")),
                CheckOutcome::Disagrees(m) => out += &format!("  ✗ {id}: {m}\n"),
                _ => {}
            }
        }
    }

    if !r.images.is_empty() {
        out += "\nimages\n";
        let rows: Vec<Vec<String>> = r
            .images
            .iter()
            .map(|(id, i)| {
                let n = i.count.map(|c| format!("{} images", fmt_rows(c))).unwrap_or_else(|| "? images".into());
                let labels = i.labels.map(|l| format!("{l} labels")).unwrap_or_default();
                vec![id.clone(), n, labels, format!("({})", i.how)]
            })
            .collect();
        out += &table(&rows);
    }

    if !r.disk.is_empty() {
        out += "\ndisk (llava_sae tables still to compute; upper bounds)\n";
        let a = &r.assumptions;
        let mut by_output: BTreeMap<&str, (usize, u64, bool)> = BTreeMap::new();
        for d in &r.disk {
            let e = by_output.entry(d.output).or_default();
            e.0 += 1;
            e.1 += d.bytes.unwrap_or(0);
            e.2 |= d.bytes.is_none();
        }
        let how = |o: &str| match o {
            "codes" => format!("images × image tokens × top_k × {} B per non-zero (measured)", a.bytes_per_code),
            "totals" => format!("images × d_sae rows × {} B (measured)", a.bytes_per_total),
            _ => format!("images × d_model × {} B", a.bytes_per_eoi_value),
        };
        let mut rows: Vec<Vec<String>> = ["codes", "totals", "eoi"]
            .iter()
            .filter_map(|o| by_output.get(o).map(|e| (o, e)))
            .map(|(o, (n, bytes, unknown))| {
                vec![
                    o.to_string(),
                    format!("{n} table(s)"),
                    format!("{}{}", fmt_bytes(*bytes), if *unknown { " + unknown" } else { "" }),
                    how(o),
                ]
            })
            .collect();
        let (total, unknown) = r.disk_total();
        let free = r.cache_free.map(|f| format!("{} free in {}", fmt_bytes(f), r.cache_dir.display())).unwrap_or_default();
        rows.push(vec!["total".into(), String::new(), format!("{}{}", fmt_bytes(total), if unknown { " + unknown" } else { "" }), free]);
        out += &table(&rows);
    }

    if !r.time.is_empty() {
        out += "\ntime (an estimate: FLOPs from the model config × tokens ÷ an assumed throughput; --tflops sets it)\n";
        // one row per stage: its computations (a fused group is one), their images and time
        let mut rows = Vec::new();
        let mut stages: Vec<&str> = r.time.iter().map(|t| t.stage.as_str()).collect();
        stages.dedup();
        for stage in stages {
            let ts: Vec<_> = r.time.iter().filter(|t| t.stage == stage).collect();
            let instances: usize = ts.iter().map(|t| t.instances.len()).sum();
            let n = match (ts.len(), instances) {
                (1, 1) => "1 instance".to_string(),
                (1, i) => format!("{i} instances, fused"),
                (c, i) if c == i => format!("{i} instances"),
                (c, i) => format!("{i} instances in {c} computations"),
            };
            let work = match (ts[0].images, ts[0].flop_per_image) {
                (Some(i), Some(f)) if ts.len() == 1 => format!("{} images × {}", fmt_rows(i), fmt_flop(f)),
                (Some(i), Some(f)) => format!("{} × {} images × {}", ts.len(), fmt_rows(i), fmt_flop(f)),
                _ => "?".into(),
            };
            let known: f64 = ts.iter().filter_map(|t| t.seconds).sum();
            let secs = if ts.iter().all(|t| t.seconds.is_some()) { format!("≈ {}", fmt_duration(known)) } else { "unknown".into() };
            let note = ts.iter().find_map(|t| t.note.clone()).map(|n| format!("({n})")).unwrap_or_default();
            rows.push(vec![stage.to_string(), n, work, ts[0].throughput.clone(), secs, note]);
        }
        let (secs, unknown) = r.seconds();
        rows.push(vec![
            "total".into(),
            String::new(),
            String::new(),
            String::new(),
            format!("≈ {}{}", fmt_duration(secs), if unknown { " + unknown" } else { "" }),
            "(other kinds are not estimated)".into(),
        ]);
        out += &table(&rows);
    }

    if !r.warnings.is_empty() {
        out += "\nwarnings\n";
        for w in &r.warnings {
            out += &format!("  ! {w}\n");
        }
    }
    if r.ready() {
        out += "\nready: nothing blocks the run\n";
    } else {
        out += &format!("\n{} problem(s) block the run\n", r.blockers.len());
        for b in &r.blockers {
            out += &format!("  ✗ {}\n", b.what);
            if let Some(h) = &b.help {
                out += &format!("      help: {h}\n");
            }
        }
    }
    out
}
