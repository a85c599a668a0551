//! Commands that compute: `run` (with fault injection for tests), `report` (the notebook) and `watch`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::*;

pub(super) fn cmd_run(
    ctx: &Ctx,
    registry: &Registry,
    file: &Path,
    only: Vec<String>,
    force: Vec<String>,
    keep_going: bool,
    verbose: bool,
) -> Result<ExitCode> {
    let dir = ctx.cache_dir(Some(file));
    let cache = Cache::open(&dir).with_context(|| format!("cannot open the cache at {}", dir.display()))?;
    let plan = ctx.load(cache.root(), registry, file)?;
    let fault = std::env::var("SAEFLOW_FAULT").ok().map(|f| parse_fault(&f)).transpose()?;
    let opts = RunOptions { only, force, keep_going, fault };
    let log = RunLog::new(id_width(&plan), verbose);
    println!("run {}: {} instances (cache {})", plan.pipeline.name, plan.instances.len(), cache.root().display());
    let summary = executor::run(&plan, registry, &cache, &opts, &log)?;
    let ran = summary.count(|o| matches!(o, Outcome::Ran { .. }));
    let cached = summary.count(|o| matches!(o, Outcome::Cached { .. }));
    let failed = summary.failed();
    let blocked = summary.count(|o| matches!(o, Outcome::Blocked(_)));
    let skipped = summary.count(|o| matches!(o, Outcome::Skipped));
    let stopped = summary.count(|o| matches!(o, Outcome::Stopped));
    let mut line = format!("done: {ran} ran, {cached} cached");
    if failed > 0 {
        line += &format!(", {failed} failed");
    }
    if blocked > 0 {
        line += &format!(", {blocked} blocked");
    }
    if skipped > 0 {
        line += &format!(", {skipped} not selected");
    }
    if stopped > 0 {
        line += &format!(", {stopped} not run");
    }
    println!("{line}");
    if failed > 0 || blocked > 0 {
        if stopped > 0 {
            eprintln!("saeflow: stopped at the first failure; rerun with --keep-going to run everything that does not depend on it");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `SAEFLOW_FAULT=exit-after-part:GLOB:N`
pub(super) fn parse_fault(text: &str) -> Result<(String, usize)> {
    let rest = text.strip_prefix("exit-after-part:").with_context(|| format!("SAEFLOW_FAULT='{text}': expected exit-after-part:GLOB:N"))?;
    let (glob, n) = rest.rsplit_once(':').with_context(|| format!("SAEFLOW_FAULT='{text}': expected exit-after-part:GLOB:N"))?;
    Ok((glob.to_string(), n.parse().with_context(|| format!("SAEFLOW_FAULT='{text}': N must be a part number"))?))
}

pub(super) fn cmd_report(ctx: &Ctx, registry: &Registry, file: &Path, out: Option<PathBuf>, open: bool) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    let plan = ctx.load(cache.root(), registry, file)?;
    let path = write_notebook(&plan, &cache, out.as_deref())?;
    if open {
        // macOS has `open`; elsewhere `open` may be openvt, so only xdg-open is tried
        let tool = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        let opened = std::process::Command::new(tool)
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !opened {
            eprintln!("saeflow: could not open {} with {tool}; open it in a browser", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Render the notebook of `plan` as the cache has it into `out` (default `reports/<name>/` in the
/// project) and say where it went.
pub(super) fn write_notebook(plan: &Plan, cache: &Cache, out: Option<&Path>) -> Result<PathBuf> {
    let history = History::load(cache, &plan.pipeline.name);
    let assessed = assess(plan, cache, &history, &|_| false);
    let html = crate::report::notebook::render(plan, cache, &assessed)
        .with_context(|| format!("cannot render the notebook of {}", plan.pipeline.file))?;
    let dir = out.map(Path::to_path_buf).unwrap_or_else(|| plan.project_root.join("reports").join(&plan.pipeline.name));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the report folder {}", dir.display()))?;
    let path = dir.join("notebook.html");
    table::write_atomic(&path, html.as_bytes())?;
    let cached = assessed.iter().filter(|a| a.status == Status::Cached).count();
    println!(
        "report {}: {} instances, {cached} cached, {} not yet run → {}",
        plan.pipeline.name,
        plan.instances.len(),
        plan.instances.len() - cached,
        path.display()
    );
    Ok(path)
}

pub(super) fn cmd_watch(ctx: &Ctx, registry: &Registry, file: &Path, out: Option<PathBuf>, interval_ms: u64) -> Result<ExitCode> {
    let dir = ctx.cache_dir(Some(file));
    let cache = Cache::open(&dir).with_context(|| format!("cannot open the cache at {}", dir.display()))?;
    let interval = std::time::Duration::from_millis(interval_ms.max(10));
    println!("watch {}: every {interval_ms} ms; Ctrl-C stops", file.display());
    // the file's bytes, not only its mtime: an editor's save within one mtime tick still counts
    let mut seen: Option<Vec<u8>> = None;
    loop {
        let now = std::fs::read(file).ok();
        if now.is_some() && now != seen {
            seen = now;
            // one pass: a broken file or a failed stage is reported and the last notebook stays
            if let Err(e) = watch_pass(ctx, &cache, registry, file, out.as_deref()) {
                eprintln!("saeflow: {e:#}");
                println!("watch: the last good report stays; fix {} and save", file.display());
            }
        }
        std::thread::sleep(interval);
    }
}

/// Plan, run what is stale (keeping going past failures), rewrite the notebook.
pub(super) fn watch_pass(ctx: &Ctx, cache: &Cache, registry: &Registry, file: &Path, out: Option<&Path>) -> Result<()> {
    let plan = ctx.load(cache.root(), registry, file)?;
    // what this save changed: the stages with work, one line each (nothing else is printed again)
    let history = History::load(cache, &plan.pipeline.name);
    let assessed = assess(&plan, cache, &history, &|_| false);
    let stale = assessed.iter().filter(|a| a.status == Status::Run).count();
    if stale == 0 {
        println!("watch: nothing changed; all {} instances cached", plan.instances.len());
    } else {
        println!("watch: {stale} of {} instances to run", plan.instances.len());
        super::views::print_stages(&plan, &assessed, false);
    }
    let log = RunLog::new(id_width(&plan), false);
    let opts = RunOptions { only: vec![], force: vec![], keep_going: true, fault: None };
    let summary = executor::run(&plan, registry, cache, &opts, &log)?;
    let ran = summary.count(|o| matches!(o, Outcome::Ran { .. }));
    println!("watch: {ran} ran, {} failed", summary.failed());
    write_notebook(&plan, cache, out)?;
    println!("watch: waiting for changes to {}", file.display());
    Ok(())
}
