//! The command line: parse arguments, call the library, print, choose the exit code. The only
//! place that prints (besides the progress sink it hands the executor).

mod doctor;
mod progress;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::cache::{Cache, EntryState};
use crate::engine::executor::{self, Outcome, RunOptions};
use crate::engine::history::History;
use crate::engine::share::{self, Imported};
use crate::engine::stage::Registry;
use crate::engine::status::{self, Status, assess};
use crate::engine::table;
use crate::plan::Many;
use crate::plan::{Plan, PlanOptions, key, project_root_of};
use crate::spec::Pipeline;

use progress::{RunLog, fmt_rows, fmt_secs};

/// Exit code of `plan` when work is needed.
const EXIT_WORK: u8 = 10;

#[derive(Parser)]
#[command(
    name = "saeflow",
    version,
    about = "Declarative dataflow runner for SAE-transfer studies: YAML pipelines → DAG → content-addressed Parquet cache"
)]
struct Cli {
    /// Cache folder (default: `cache/` in the pipeline's project, or ./cache).
    #[arg(long, global = true, env = "SAEFLOW_CACHE", value_name = "DIR")]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show every instance, whether it is cached or would run, and why (exit 0: nothing to run, 10: work needed).
    Plan {
        file: PathBuf,
        /// Print a JSON array of {instance, stage, kind, key, status, reason, ...}.
        #[arg(long)]
        json: bool,
    },
    /// Run what is not cached, in topological order.
    Run {
        file: PathBuf,
        /// Only instances (or stages) matching this glob, plus what they need (`*` and `?` wildcards).
        #[arg(long, value_name = "GLOB")]
        only: Vec<String>,
        /// Recompute matching instances even if cached.
        #[arg(long, value_name = "GLOB")]
        force: Vec<String>,
        /// After a failure, keep running everything that does not depend on it.
        #[arg(long)]
        keep_going: bool,
    },
    /// Explain an instance's key: its preimage, diffed against the last run recorded for it.
    Why { file: PathBuf, instance: String },
    /// Print the instance DAG (or the stage DAG with --stages) as Mermaid or Graphviz dot.
    Dag {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: DagFormat,
        /// One node per stage instead of per instance.
        #[arg(long)]
        stages: bool,
    },
    /// Print an instance's table: where it came from, its schema and first rows.
    Show {
        file: PathBuf,
        instance: String,
        /// Which output of the instance (default: its first).
        #[arg(long)]
        output: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Cached / missing / damaged for every instance, with rows and times.
    Status { file: PathBuf },
    /// Remove cache entries that none of the given pipelines reaches (default: every pipelines/*.yaml here).
    Gc {
        files: Vec<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Hash every cache entry against its manifest; move damaged ones to .corrupt/ so they are recomputed.
    Verify,
    /// Copy an instance's tables (Parquet parts with their metadata, and the manifest) to a folder.
    Export {
        file: PathBuf,
        instance: String,
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Put exported tables into the cache under their keys, so runs here find them cached.
    Import { dir: PathBuf },
    /// Write the pipeline as an HTML notebook: a cell per instance (status, time, key, schema, first rows) and the report's figures.
    Report {
        file: PathBuf,
        /// Folder to write notebook.html into (default: reports/<pipeline> in the project).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Open the notebook with xdg-open (or open) afterwards.
        #[arg(long)]
        open: bool,
    },
    /// On every save of FILE: re-plan, run what is stale, rewrite the notebook (a broken edit keeps the last one).
    Watch {
        file: PathBuf,
        /// Folder to write notebook.html into (default: reports/<pipeline> in the project).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// How often to look at the file, in milliseconds.
        #[arg(long, default_value_t = 500, value_name = "MS")]
        interval_ms: u64,
    },
    /// Before a long run: what is cached or would download (with sizes), SAE/model dimension checks, the disk and an estimated time, and what blocks the run (exit 0: nothing, 11: something does).
    Doctor {
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Assume this effective throughput (TFLOP/s) for every model stage instead of the per-device assumptions.
        #[arg(long, value_name = "X")]
        tflops: Option<f64>,
        /// Assume this many images per dataset instead of listing them (e.g. when the data is not here yet).
        #[arg(long, value_name = "N")]
        images: Option<u64>,
    },
    /// List stage kinds with their inputs, parameters and outputs.
    Kinds {
        kind: Option<String>,
        /// Print the reference as Markdown (the README's stage-kind reference is this output).
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DagFormat {
    Mermaid,
    Dot,
}

/// The whole program for a set of kinds (`saeflow`: [`crate::stages::builtin`]; the test kit adds
/// its mock kinds): parse the arguments, run the command, print the error chain, pick the exit code.
pub fn main(registry: Registry) -> ExitCode {
    // `saeflow plan x.yaml | head` should stop quietly, like any Unix tool, not panic on EPIPE
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    crate::process::tune_allocator();
    match dispatch(Cli::parse(), &registry) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("saeflow: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: Cli, registry: &Registry) -> Result<ExitCode> {
    match cli.command {
        Command::Plan { file, json } => cmd_plan(&cli.cache, registry, &file, json),
        Command::Run { file, only, force, keep_going } => cmd_run(&cli.cache, registry, &file, only, force, keep_going),
        Command::Why { file, instance } => cmd_why(&cli.cache, registry, &file, &instance),
        Command::Dag { file, format, stages } => cmd_dag(&cli.cache, registry, &file, format, stages),
        Command::Show { file, instance, output, limit } => cmd_show(&cli.cache, registry, &file, &instance, output.as_deref(), limit),
        Command::Status { file } => cmd_status(&cli.cache, registry, &file),
        Command::Gc { files, dry_run } => cmd_gc(&cli.cache, registry, files, dry_run),
        Command::Verify => cmd_verify(&cli.cache),
        Command::Export { file, instance, to } => cmd_export(&cli.cache, registry, &file, &instance, &to),
        Command::Import { dir } => cmd_import(&cli.cache, &dir),
        Command::Report { file, out, open } => cmd_report(&cli.cache, registry, &file, out, open),
        Command::Watch { file, out, interval_ms } => cmd_watch(&cli.cache, registry, &file, out, interval_ms),
        Command::Doctor { file, json, tflops, images } => {
            if let Some(t) = tflops.filter(|t| !(t.is_finite() && *t > 0.0)) {
                bail!("--tflops {t}: expected a positive number of TFLOP/s, e.g. --tflops 150");
            }
            doctor::cmd_doctor(&cache_dir(&cli.cache, Some(&file)), registry, &file, json, &crate::doctor::Options { images, tflops })
        }
        Command::Kinds { kind, markdown } => cmd_kinds(registry, kind.as_deref(), markdown),
    }
}

fn cache_dir(flag: &Option<PathBuf>, file: Option<&Path>) -> PathBuf {
    match (flag, file) {
        (Some(dir), _) => dir.clone(),
        (None, Some(f)) => project_root_of(f).join("cache"),
        (None, None) => PathBuf::from("cache"),
    }
}

/// Parse and plan a pipeline; diagnostics come back as the error text.
fn load(cache: &Path, registry: &Registry, file: &Path) -> Result<Plan> {
    let pipeline = Pipeline::load(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let opts = PlanOptions { fingerprint_memo: Some(cache.join(".fingerprints.json")), ..PlanOptions::default() };
    let plan = Plan::build(pipeline, registry, &opts).map_err(|d| anyhow::anyhow!("{d}"))?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    Ok(plan)
}

fn find<'p>(plan: &'p Plan, id: &str) -> Result<&'p crate::plan::Instance> {
    plan.instance(id).with_context(|| {
        let hint = plan.suggest_instance(id).unwrap_or_default();
        format!("no instance '{id}' in pipeline '{}'; {hint}", plan.pipeline.name)
    })
}

fn id_width(plan: &Plan) -> usize {
    plan.instances.iter().map(|i| i.id.chars().count()).max().unwrap_or(10).min(70)
}

fn cmd_plan(cache: &Option<PathBuf>, registry: &Registry, file: &Path, json: bool) -> Result<ExitCode> {
    let cache = Cache::at(&cache_dir(cache, Some(file)));
    let plan = load(cache.root(), registry, file)?;
    let history = History::load(&cache, &plan.pipeline.name);
    let assessed = assess(&plan, &cache, &history, &|_| false);
    let to_run = assessed.iter().filter(|a| a.status == Status::Run).count();
    if json {
        let rows: Vec<serde_json::Value> = plan
            .instances
            .iter()
            .zip(&assessed)
            .map(|(inst, a)| {
                serde_json::json!({
                    "instance": inst.id,
                    "stage": inst.stage,
                    "kind": inst.kind,
                    "key": inst.key(None),
                    "outputs": inst.outputs.iter().map(|o| serde_json::json!({"name": o.name, "table": o.table, "key": o.key})).collect::<Vec<_>>(),
                    "coords": crate::spec::Value::Map(inst.coords.clone()).to_json(),
                    "status": if a.status == Status::Cached { "cached" } else { "run" },
                    "reason": a.reason,
                    "fused": inst.fuse_group.is_some(),
                    "inputs": inst.inputs.iter().map(|b| serde_json::json!({
                        "slot": b.slot,
                        "instances": b.items.iter().map(|it| plan.instances[it.instance].id.clone()).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let w = id_width(&plan);
        println!(
            "plan {}: {} instances — {} cached, {} to run",
            plan.pipeline.name,
            plan.instances.len(),
            plan.instances.len() - to_run,
            to_run
        );
        print_cost(&plan, &assessed);
        for (inst, a) in plan.instances.iter().zip(&assessed) {
            let (st, reason) = match a.status {
                Status::Cached => ("cached", String::new()),
                Status::Run => ("run", a.reason.clone()),
            };
            let fused = match (&inst.fuse_group, a.status == Status::Run) {
                (Some(_), true) => {
                    let n = plan
                        .instances
                        .iter()
                        .zip(&assessed)
                        .filter(|(j, b)| j.fuse_group == inst.fuse_group && b.status == Status::Run)
                        .count();
                    if n > 1 { format!(" [fused: one computation serves {n} instances]") } else { String::new() }
                }
                _ => String::new(),
            };
            println!("{}", format!("  {st:<8}{:<w$}  {reason}{fused}", inst.id).trim_end());
        }
    }
    Ok(ExitCode::from(if to_run == 0 { 0 } else { EXIT_WORK }))
}

fn cmd_run(
    cache: &Option<PathBuf>,
    registry: &Registry,
    file: &Path,
    only: Vec<String>,
    force: Vec<String>,
    keep_going: bool,
) -> Result<ExitCode> {
    let dir = cache_dir(cache, Some(file));
    let cache = Cache::open(&dir).with_context(|| format!("cannot open the cache at {}", dir.display()))?;
    let plan = load(cache.root(), registry, file)?;
    let fault = std::env::var("SAEFLOW_FAULT").ok().map(|f| parse_fault(&f)).transpose()?;
    let opts = RunOptions { only, force, keep_going, fault };
    let log = RunLog::new(id_width(&plan));
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
fn parse_fault(text: &str) -> Result<(String, usize)> {
    let rest = text.strip_prefix("exit-after-part:").with_context(|| format!("SAEFLOW_FAULT='{text}': expected exit-after-part:GLOB:N"))?;
    let (glob, n) = rest.rsplit_once(':').with_context(|| format!("SAEFLOW_FAULT='{text}': expected exit-after-part:GLOB:N"))?;
    Ok((glob.to_string(), n.parse().with_context(|| format!("SAEFLOW_FAULT='{text}': N must be a part number"))?))
}

fn cmd_why(cache: &Option<PathBuf>, registry: &Registry, file: &Path, id: &str) -> Result<ExitCode> {
    let cache = Cache::at(&cache_dir(cache, Some(file)));
    let plan = load(cache.root(), registry, file)?;
    let inst = find(&plan, id)?;
    let history = History::load(&cache, &plan.pipeline.name);
    let a = status::assess_one(&plan, inst, &cache, &history, false);
    println!("{}", inst.id);
    for o in &inst.outputs {
        println!("  output {:<10} key {}", o.name, o.key);
    }
    match a.status {
        Status::Cached => println!("  status: cached"),
        Status::Run => println!("  status: would run — {}", a.reason),
    }
    match history.instances.get(&inst.id) {
        None => println!("  no earlier run of this instance is recorded in {}", cache.root().display()),
        Some(rec) if rec.preimage == inst.preimage => println!("  key unchanged since the last recorded run ({})", rec.key),
        Some(rec) => {
            println!("  key changed since the last recorded run (was {}):", rec.key);
            for d in key::diff(&rec.preimage, &inst.preimage) {
                println!("    {d}");
            }
            println!("  in words: {}", status::describe(&plan, inst, &rec.preimage));
        }
    }
    println!("  key preimage:");
    for line in serde_json::to_string_pretty(&inst.preimage)?.lines() {
        println!("    {line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_dag(cache: &Option<PathBuf>, registry: &Registry, file: &Path, format: DagFormat, stages: bool) -> Result<ExitCode> {
    let cache = cache_dir(cache, Some(file));
    let plan = load(&cache, registry, file)?;
    // the plan's instance DAG; the stage view maps each instance edge onto its stages
    let instance_edges =
        plan.graph.edge_indices().filter_map(|e| plan.graph.edge_endpoints(e)).map(|(a, b)| (plan.graph[a], plan.graph[b]));
    let (nodes, edges): (Vec<String>, BTreeSet<(usize, usize)>) = if stages {
        let idx = |name: &str| plan.stages.iter().position(|s| s.name == name).unwrap_or(0);
        let nodes = plan.stages.iter().map(|s| format!("{} ({}, {}×)", s.name, s.signature.kind, s.instances.len())).collect();
        let edges = instance_edges.map(|(a, b)| (idx(&plan.instances[a].stage), idx(&plan.instances[b].stage))).collect();
        (nodes, edges)
    } else {
        (plan.instances.iter().map(|i| i.id.clone()).collect(), instance_edges.collect())
    };
    match format {
        DagFormat::Mermaid => {
            println!("flowchart LR");
            for (i, label) in nodes.iter().enumerate() {
                println!("  n{i}[\"{}\"]", label.replace('"', "#quot;"));
            }
            for (a, b) in &edges {
                println!("  n{a} --> n{b}");
            }
        }
        DagFormat::Dot => {
            println!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];", plan.pipeline.name);
            for (i, label) in nodes.iter().enumerate() {
                println!("  n{i} [label=\"{}\"];", label.replace('\\', "\\\\").replace('"', "\\\""));
            }
            for (a, b) in &edges {
                println!("  n{a} -> n{b};");
            }
            println!("}}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_show(cache: &Option<PathBuf>, registry: &Registry, file: &Path, id: &str, output: Option<&str>, limit: usize) -> Result<ExitCode> {
    let cache = Cache::at(&cache_dir(cache, Some(file)));
    let plan = load(cache.root(), registry, file)?;
    let inst = find(&plan, id)?;
    let key = match output {
        Some(o) => inst.key(Some(o)).with_context(|| {
            let names: Vec<&str> = inst.outputs.iter().map(|o| o.name.as_str()).collect();
            format!("{id} has no output '{o}'; its outputs: {}", names.join(", "))
        })?,
        None => inst.key(None).context("the instance has no outputs")?,
    };
    let m = match cache.state(key) {
        EntryState::Present(m) | EntryState::Touched(m) => m,
        EntryState::Missing => bail!("{id} is not cached yet (key {key}); run `saeflow run {}` first", file.display()),
        EntryState::Damaged(why) => bail!("{id}: the cache entry is damaged ({why}); `saeflow run` will recompute it"),
    };
    println!("{}  ({} output, {} table)", m.instance, m.output, m.table);
    println!("  key      {}", m.key);
    println!("  rows     {} in {} part(s), {} bytes", fmt_rows(m.rows), m.files.len(), cache.size_of(&m));
    println!("  computed in {} by saeflow {}", fmt_secs(m.seconds), m.saeflow_version);
    let dir = cache.entry_dir(key);
    let (schema, _, _) = table::read_footer(&dir.join(&m.files[0].name))?;
    println!("schema:");
    for f in schema.fields() {
        println!("  {}: {}{}", f.name(), f.data_type(), if f.is_nullable() { " (nullable)" } else { "" });
    }
    let mut batches = Vec::new();
    let mut left = limit;
    'outer: for f in &m.files {
        for b in table::read_file(&dir.join(&f.name))? {
            let b = b?;
            if left == 0 {
                break 'outer;
            }
            let take = b.num_rows().min(left);
            batches.push(b.slice(0, take));
            left -= take;
        }
    }
    if m.table != "health" {
        println!("first {} rows:", limit.min(m.rows as usize));
        println!("{}", arrow_cast::pretty::pretty_format_batches(&batches)?);
    } else {
        // the raw rows are sufficient statistics (histograms, sums): print what they add up to
        let all = m.files.iter().map(|f| table::read_file(&dir.join(&f.name))).collect::<Result<Vec<_>, _>>()?;
        let all = all.into_iter().flatten().collect::<Result<Vec<_>, _>>()?;
        println!("SAE health over {} part(s):", m.files.len());
        println!(
            "  {:<6} {:>9} {:>8} {:>18} {:>10} {:>9} {:>10} {:>10}",
            "scope", "tokens", "L0 mean", "L0 p10/50/90/99", "MSE", "var.expl", "‖x‖ mean", "‖x‖/SAE"
        );
        for s in crate::health::summarize(&all)? {
            let q = s.l0_quantiles;
            println!(
                "  {:<6} {:>9} {:>8.1} {:>18} {:>10.4} {:>9.3} {:>10.2} {:>10}",
                s.scope,
                s.tokens,
                s.l0_mean,
                format!("{}/{}/{}/{}", q[0], q[1], q[2], q[3]),
                s.mse,
                s.variance_explained,
                s.norm_mean,
                s.norm_ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_status(cache: &Option<PathBuf>, registry: &Registry, file: &Path) -> Result<ExitCode> {
    let cache = Cache::at(&cache_dir(cache, Some(file)));
    let plan = load(cache.root(), registry, file)?;
    let history = History::load(&cache, &plan.pipeline.name);
    let assessed = assess(&plan, &cache, &history, &|_| false);
    let w = id_width(&plan);
    println!("status {} (cache {})", plan.pipeline.name, cache.root().display());
    for (inst, a) in plan.instances.iter().zip(&assessed) {
        let st = match (&a.status, a.damaged.is_empty()) {
            (Status::Cached, _) => "cached",
            (Status::Run, false) => "damaged",
            (Status::Run, true) => "missing",
        };
        let rows = a.rows.map(|r| format!("{} rows", fmt_rows(r))).unwrap_or_default();
        let secs = a.seconds.map(fmt_secs).unwrap_or_default();
        println!("{}", format!("  {st:<8}{:<w$}  {:>14}  {:>8}  {}", inst.id, rows, secs, inst.key(None).unwrap_or_default()).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_gc(cache_flag: &Option<PathBuf>, registry: &Registry, files: Vec<PathBuf>, dry_run: bool) -> Result<ExitCode> {
    let files = if files.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir("pipelines")
            .context("no pipeline files given and no pipelines/ folder here; name the pipelines whose entries to keep")?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        found.sort();
        found
    } else {
        files
    };
    if files.is_empty() {
        bail!("no pipeline files to keep entries for; name them: saeflow gc pipelines/a.yaml ...");
    }
    let cache = Cache::at(&cache_dir(cache_flag, files.first().map(PathBuf::as_path)));
    let mut keep = BTreeSet::new();
    for f in &files {
        let plan = load(cache.root(), registry, f)?;
        keep.extend(plan.instances.iter().flat_map(|i| i.outputs.iter().map(|o| o.key.clone())));
    }
    let (mut n, mut bytes, mut busy) = (0usize, 0u64, 0usize);
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut remove = |dir: PathBuf, what: &str| -> Result<()> {
        let size = dir_size(&dir);
        println!("  {verb} {what}  {size} bytes");
        if !dry_run {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        n += 1;
        bytes += size;
        Ok(())
    };
    let unreached: Vec<String> =
        cache.keys()?.into_iter().chain(cache.tmp_keys()).filter(|k| !keep.contains(k)).collect::<BTreeSet<_>>().into_iter().collect();
    for key in unreached {
        // a key a running `saeflow run` holds (being computed or published) is left alone
        let Some(_lock) = cache.try_lock(&key)? else {
            busy += 1;
            continue;
        };
        for (dir, what) in [(cache.entry_dir(&key), key.clone()), (cache.tmp_dir(&key), format!("{key} (unfinished)"))] {
            if dir.exists() {
                remove(dir, &what)?;
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(cache.root().join(".corrupt")) {
        for e in rd.flatten() {
            remove(e.path(), &format!(".corrupt/{}", e.file_name().to_string_lossy()))?;
        }
    }
    let busy = if busy > 0 { format!("; {busy} in use by a running saeflow, left alone") } else { String::new() };
    println!("{verb} {n} entries, {bytes} bytes (kept {} reachable from {} pipeline(s){busy})", keep.len(), files.len());
    Ok(ExitCode::SUCCESS)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().map(|e| if e.path().is_dir() { dir_size(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }).sum()
        })
        .unwrap_or(0)
}

fn cmd_verify(cache_flag: &Option<PathBuf>) -> Result<ExitCode> {
    let cache = Cache::at(&cache_dir(cache_flag, None));
    let keys = cache.keys()?;
    let mut bad = 0;
    for key in &keys {
        if let Err(why) = cache.verify(key) {
            let moved = cache.quarantine(key)?;
            println!("  damaged {key}: {why} (moved to {})", moved.display());
            bad += 1;
        }
    }
    println!("verified {} entries in {}: {} damaged", keys.len(), cache.root().display(), bad);
    Ok(if bad > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn cmd_export(cache: &Option<PathBuf>, registry: &Registry, file: &Path, id: &str, to: &Path) -> Result<ExitCode> {
    let cache = Cache::at(&cache_dir(cache, Some(file)));
    let plan = load(cache.root(), registry, file)?;
    let inst = find(&plan, id)?;
    let folder = sanitize(&inst.id);
    for o in &inst.outputs {
        let dest = to.join(&folder).join(&o.name);
        let files = share::export(&cache, &o.key, &dest).with_context(|| format!("cannot export {} output {}", inst.id, o.name))?;
        println!("  exported {} ({}) → {} ({} files)", inst.id, o.name, dest.display(), files.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// An instance id as a folder name: `pool[layer=6,k=x]` → `pool_layer=6,k=x_`.
fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.=,+".contains(c) { c } else { '_' }).collect()
}

fn cmd_import(cache_flag: &Option<PathBuf>, dir: &Path) -> Result<ExitCode> {
    let cache = Cache::open(&cache_dir(cache_flag, None))?;
    for r in share::import(&cache, dir)? {
        match r {
            Imported::Added { key, instance, rows } => println!("  imported {instance}  key {key}  {} rows", fmt_rows(rows)),
            Imported::AlreadyCached { key, instance } => println!("  cached   {instance}  key {key} (already here)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_report(cache: &Option<PathBuf>, registry: &Registry, file: &Path, out: Option<PathBuf>, open: bool) -> Result<ExitCode> {
    let cache = Cache::at(&cache_dir(cache, Some(file)));
    let plan = load(cache.root(), registry, file)?;
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
fn write_notebook(plan: &Plan, cache: &Cache, out: Option<&Path>) -> Result<PathBuf> {
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

fn cmd_watch(cache_flag: &Option<PathBuf>, registry: &Registry, file: &Path, out: Option<PathBuf>, interval_ms: u64) -> Result<ExitCode> {
    let dir = cache_dir(cache_flag, Some(file));
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
            if let Err(e) = watch_pass(&cache, registry, file, out.as_deref()) {
                eprintln!("saeflow: {e:#}");
                println!("watch: the last good report stays; fix {} and save", file.display());
            }
        }
        std::thread::sleep(interval);
    }
}

/// Plan, run what is stale (keeping going past failures), rewrite the notebook.
fn watch_pass(cache: &Cache, registry: &Registry, file: &Path, out: Option<&Path>) -> Result<()> {
    let plan = load(cache.root(), registry, file)?;
    let log = RunLog::new(id_width(&plan));
    let opts = RunOptions { only: vec![], force: vec![], keep_going: true, fault: None };
    let summary = executor::run(&plan, registry, cache, &opts, &log)?;
    let ran = summary.count(|o| matches!(o, Outcome::Ran { .. }));
    println!("watch: {ran} ran, {} failed", summary.failed());
    write_notebook(&plan, cache, out)?;
    println!("watch: waiting for changes to {}", file.display());
    Ok(())
}

fn cmd_kinds(registry: &Registry, kind: Option<&str>, markdown: bool) -> Result<ExitCode> {
    let sigs: Vec<_> = registry.signatures().filter(|s| kind.is_none_or(|k| s.kind == k)).collect();
    if sigs.is_empty() {
        let k = kind.unwrap_or_default();
        bail!("unknown kind '{k}'; {}", crate::spec::suggest(k, registry.kinds()).unwrap_or_default());
    }
    if markdown {
        print!("{}", kinds_markdown(&sigs));
        return Ok(ExitCode::SUCCESS);
    }
    for s in sigs {
        println!("{} (version {})\n  {}", s.kind, s.version, s.doc);
        for i in &s.inputs {
            let many = match &i.many {
                Many::One => String::new(),
                Many::All => ", gathers every variant".into(),
                Many::Over(a) => format!(", gathers over {}", a.join(", ")),
            };
            let accepts = if i.accepts.is_empty() {
                "any table".to_string()
            } else {
                i.accepts.iter().map(|t| t.name()).collect::<Vec<_>>().join(" | ")
            };
            println!("  input  {:<12} {accepts}{}{many} — {}", i.name, if i.required { "" } else { ", optional" }, i.doc);
        }
        for p in &s.params {
            let default = p.default.as_ref().map(|d| format!(" = {d}")).unwrap_or_else(|| " (required)".into());
            println!("  param  {:<12} {}{default}{} — {}", p.name, p.ty.describe(), if p.in_key { "" } else { ", not in the key" }, p.doc);
        }
        if s.open_params {
            println!("  param  (any other)  accepted and part of the key");
        }
        for o in &s.outputs {
            println!("  output {:<12} {} table — {}", o.name, o.table, o.doc);
        }
        if !s.fuse_axes.is_empty() {
            println!("  fused over: {}", s.fuse_axes.join(", "));
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// The stage-kind reference as Markdown: one section per kind, a table of its inputs, parameters
/// and outputs. Mock kinds come last.
fn kinds_markdown(sigs: &[&crate::plan::Signature]) -> String {
    let mut sigs = sigs.to_vec();
    sigs.sort_by_key(|s| (s.kind.starts_with("mock."), s.kind));
    let mut out = String::new();
    for s in sigs {
        out += &format!("#### `{}`\n\n{}", s.kind, s.doc);
        if !s.fuse_axes.is_empty() {
            out += &format!(" Instances that differ only in {} run as one computation.", s.fuse_axes.join(", "));
        }
        out += "\n\n| | name | type | default | meaning |\n|---|---|---|---|---|\n";
        for i in &s.inputs {
            let accepts = if i.accepts.is_empty() {
                "any table".to_string()
            } else {
                i.accepts.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(" or ")
            };
            let many = match &i.many {
                Many::One => "",
                Many::All => ", gathers every variant",
                Many::Over(_) => ", gathers over axes",
            };
            out +=
                &format!("| input | `{}` | {accepts}{many} | {} | {} |\n", i.name, if i.required { "required" } else { "optional" }, i.doc);
        }
        for p in &s.params {
            let default = match &p.default {
                None => "required".to_string(),
                Some(crate::spec::Value::Null) => "unset".to_string(),
                Some(v) => format!("`{v}`"),
            };
            let key = if p.in_key { "" } else { " (not part of the cache key)" };
            out += &format!(
                "| param | `{}` | {} | {default} | {}{key} |\n",
                p.name,
                p.ty.describe().replace('|', "\\|"),
                p.doc.replace('|', "\\|")
            );
        }
        if s.open_params {
            out += "| param | any other | any | | accepted, and part of the cache key |\n";
        }
        for o in &s.outputs {
            let table = match o.table {
                crate::tables::TableType::Param(p) => format!("the `{p}` parameter"),
                t => format!("`{t}`"),
            };
            out += &format!("| output | `{}` | {table} table | | {} |\n", o.name, o.doc.replace('|', "\\|"));
        }
        out += "\n";
    }
    out
}

/// What would run, per kind: instances, the kind's own work units (probe fits), and the rows of
/// their inputs where those are already cached — so a 20,000-fit grid is seen before it starts.
fn print_cost(plan: &Plan, assessed: &[crate::engine::status::Assessment]) {
    let mut per_kind: std::collections::BTreeMap<&str, (usize, u64, &str, u64, usize)> = std::collections::BTreeMap::new();
    for (inst, a) in plan.instances.iter().zip(assessed) {
        if a.status != Status::Run {
            continue;
        }
        let stage = plan.stages.iter().find(|s| s.name == inst.stage);
        let e = per_kind.entry(inst.kind).or_insert((0, 0, "", 0, 0));
        e.0 += 1;
        if let Some((units, name)) = stage.and_then(|s| s.signature.estimate).map(|f| f(&inst.params)) {
            e.1 += units;
            e.2 = name;
        }
        // rows of inputs already in the cache (unknown for inputs that will run first)
        for b in &inst.inputs {
            for it in &b.items {
                if let Some(r) = assessed[it.instance].rows.filter(|_| assessed[it.instance].status == Status::Cached) {
                    e.3 += r;
                } else {
                    e.4 += 1;
                }
            }
        }
    }
    if per_kind.is_empty() {
        return;
    }
    let parts: Vec<String> = per_kind
        .iter()
        .map(|(kind, (n, units, unit, rows, unknown))| {
            let mut s = format!("{n} {kind}");
            let mut extra = Vec::new();
            if *units > 0 {
                extra.push(format!("{} {unit}", fmt_rows(*units)));
            }
            if *rows > 0 {
                extra.push(format!(
                    "{} cached input rows{}",
                    fmt_rows(*rows),
                    if *unknown > 0 { " + inputs still to compute" } else { "" }
                ));
            }
            if !extra.is_empty() {
                s += &format!(" ({})", extra.join(", "));
            }
            s
        })
        .collect();
    println!("to run: {}", parts.join(", "));
}
