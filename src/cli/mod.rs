//! The command line: parse arguments, call the library, print, choose the exit code. The only
//! place that prints (besides the progress sink it hands the executor).

mod doctor;
mod entries;
mod kinds;
mod progress;
mod running;
mod views;

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

use entries::{cmd_export, cmd_gc, cmd_import, cmd_show, cmd_verify};
use kinds::cmd_kinds;
use progress::{RunLog, fmt_rows, fmt_secs};
use running::{cmd_report, cmd_run, cmd_watch};
use views::{cmd_dag, cmd_plan, cmd_status, cmd_why};

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
    /// Refuse to plan more than N instances (default 100000): a larger plan is usually a matrix
    /// written by mistake.
    #[arg(long, global = true, env = "SAEFLOW_MAX_INSTANCES", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_instances: Option<u64>,
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

/// `--max-instances` (or `SAEFLOW_MAX_INSTANCES`), for every command that plans through [`load`].
static MAX_INSTANCES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn dispatch(cli: Cli, registry: &Registry) -> Result<ExitCode> {
    if let Some(n) = cli.max_instances {
        let _ = MAX_INSTANCES.set(usize::try_from(n).unwrap_or(usize::MAX));
    }
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
    let opts = PlanOptions {
        fingerprint_memo: Some(cache.join(".fingerprints.json")),
        max_instances: MAX_INSTANCES.get().copied(),
        ..PlanOptions::default()
    };
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
