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

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::cache::{Cache, EntryState};
use crate::engine::executor::{self, Outcome, RunOptions};
use crate::engine::history::History;
use crate::engine::share::{self, Imported};
use crate::engine::stage::Registry;
use crate::engine::status::{self, Status, assess};
use crate::engine::table;
use crate::plan::Many;
use crate::plan::{Externals, Plan, PlanOptions, Selection, key, project_root_of};
use crate::spec::{Override, Pipeline};

use entries::{cmd_export, cmd_gc, cmd_import, cmd_ls, cmd_show, cmd_verify};
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
    /// Change a parameter, a matrix axis or a default for this command without editing the file:
    /// `--set probe.c=0.5`, `--set 'pooled.matrix.method=[sum, top10]'`, `--set defaults.seed=1`
    /// (repeatable; the value is YAML). Runs record it, and `why` shows it.
    #[arg(long = "set", global = true, value_name = "STAGE.PARAM=VALUE")]
    set: Vec<String>,
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
        /// One line per instance (default: one line per stage, and each instance that would run).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Run what is not cached, in topological order.
    Run {
        file: PathBuf,
        /// Only these instances, plus what they need: an id, a selector (`'probe[layer=3]'`), a stage or a glob (`'probe*'`).
        #[arg(long, value_name = "GLOB")]
        only: Vec<String>,
        /// Recompute these instances even if cached (an id, a selector, a stage or a glob).
        #[arg(long, value_name = "GLOB")]
        force: Vec<String>,
        /// After a failure, keep running everything that does not depend on it.
        #[arg(long)]
        keep_going: bool,
        /// Also print a line for each instance found cached.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Why an instance would run (or not): what changed since its last recorded run, in words and
    /// as a diff of its key's preimage. INSTANCE: an id, a selector like `probe[layer=3, method=top5]`
    /// (coordinates in any order) or a glob.
    Why {
        file: PathBuf,
        instance: String,
        /// Also print the whole key preimage.
        #[arg(long)]
        full: bool,
    },
    /// Print the stage DAG (one node per stage, with its instances' counts) as Mermaid or Graphviz
    /// dot, nodes coloured by status: cached, stale, never run, missing input.
    Dag {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: DagFormat,
        /// One node per instance instead of per stage.
        #[arg(long)]
        instances: bool,
        /// Accepted for scripts written before the stage DAG became the default.
        #[arg(long, hide = true)]
        stages: bool,
    },
    /// Print an instance's table: where it came from, its schema and first rows (a one-row table
    /// vertically). INSTANCE: an id, a selector like `probe[method=top5, layer=3]`, or a glob.
    Show {
        file: PathBuf,
        instance: String,
        /// Which output of the instance (default: its first).
        #[arg(long)]
        output: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Cached / missing / damaged for every instance (or those SELECTOR picks), with rows and times.
    Status { file: PathBuf, selector: Option<String> },
    /// Every table of the pipeline (or of the instances SELECTOR picks): instance, output, status,
    /// rows and the paths of its Parquet parts, to point pyarrow, polars or duckdb at.
    Ls {
        file: PathBuf,
        selector: Option<String>,
        /// Print a JSON array of {instance, stage, coords, output, table, key, status, rows, parts}.
        #[arg(long)]
        json: bool,
    },
    /// Remove cache entries that none of the given pipelines reaches (default: every pipelines/*.yaml here).
    Gc {
        files: Vec<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Hash every cache entry against its manifest; move damaged ones to .corrupt/ so they are recomputed.
    Verify,
    /// Copy the tables of the instances INSTANCE picks (an id, a selector or a glob) to a folder
    /// readers take whole: `DIR/stage=S/output=O/AXIS=V/…/part-*.parquet`, manifests under `DIR/_saeflow/`.
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

/// What every command shares: the global flags.
pub(super) struct Ctx {
    /// `--cache`.
    cache: Option<PathBuf>,
    /// `--max-instances` (or `SAEFLOW_MAX_INSTANCES`).
    max_instances: Option<usize>,
    /// `--set`, parsed.
    overrides: Vec<Override>,
}

impl Ctx {
    /// The cache folder: `--cache`, else `cache/` in the pipeline's project, else `./cache`.
    fn cache_dir(&self, file: Option<&Path>) -> PathBuf {
        match (&self.cache, file) {
            (Some(dir), _) => dir.clone(),
            (None, Some(f)) => project_root_of(f).join("cache"),
            (None, None) => PathBuf::from("cache"),
        }
    }

    /// Read a pipeline file with the `--set` overrides applied.
    fn pipeline(&self, file: &Path) -> Result<Pipeline> {
        Pipeline::load_with(file, &self.overrides).map_err(|d| anyhow::anyhow!("{d}{}", self.set_note()))
    }

    /// Under a diagnostic of a plan made with `--set`: which overrides it was made with (a line a
    /// diagnostic points at may hold what `--set` replaced).
    fn set_note(&self) -> String {
        if self.overrides.is_empty() {
            return String::new();
        }
        let list: Vec<String> = self.overrides.iter().map(|o| format!("--set {}", o.text)).collect();
        format!("\n  = note: planned with {}; the lines shown are the file's, before the overrides", list.join(" "))
    }

    /// Parse and plan a pipeline; diagnostics come back as the error text, warnings go to stderr.
    fn plan(&self, cache: &Path, registry: &Registry, file: &Path, externals: Externals) -> Result<Plan> {
        let opts = PlanOptions {
            fingerprint_memo: Some(cache.join(".fingerprints.json")),
            max_instances: self.max_instances,
            externals,
            ..PlanOptions::default()
        };
        let plan = Plan::build(self.pipeline(file)?, registry, &opts).map_err(|d| anyhow::anyhow!("{d}{}", self.set_note()))?;
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
        Ok(plan)
    }

    /// [`Ctx::plan`] for every command but `doctor` and `gc`: an external input that cannot be
    /// read fails the plan.
    fn load(&self, cache: &Path, registry: &Registry, file: &Path) -> Result<Plan> {
        self.plan(cache, registry, file, Externals::Required)
    }
}

fn dispatch(cli: Cli, registry: &Registry) -> Result<ExitCode> {
    let overrides = cli.set.iter().map(|s| Override::parse(s).map_err(anyhow::Error::msg)).collect::<Result<Vec<_>>>()?;
    let ctx = Ctx { cache: cli.cache, max_instances: cli.max_instances.map(|n| usize::try_from(n).unwrap_or(usize::MAX)), overrides };
    let ctx = &ctx;
    match cli.command {
        Command::Plan { file, json, verbose } => cmd_plan(ctx, registry, &file, json, verbose),
        Command::Run { file, only, force, keep_going, verbose } => cmd_run(ctx, registry, &file, only, force, keep_going, verbose),
        Command::Why { file, instance, full } => cmd_why(ctx, registry, &file, &instance, full),
        Command::Dag { file, format, instances, stages: _ } => cmd_dag(ctx, registry, &file, format, instances),
        Command::Show { file, instance, output, limit } => cmd_show(ctx, registry, &file, &instance, output.as_deref(), limit),
        Command::Status { file, selector } => cmd_status(ctx, registry, &file, selector.as_deref()),
        Command::Ls { file, selector, json } => cmd_ls(ctx, registry, &file, selector.as_deref(), json),
        Command::Gc { files, dry_run } => cmd_gc(ctx, registry, files, dry_run),
        Command::Verify => cmd_verify(ctx),
        Command::Export { file, instance, to } => cmd_export(ctx, registry, &file, &instance, &to),
        Command::Import { dir } => cmd_import(ctx, &dir),
        Command::Report { file, out, open } => cmd_report(ctx, registry, &file, out, open),
        Command::Watch { file, out, interval_ms } => cmd_watch(ctx, registry, &file, out, interval_ms),
        Command::Doctor { file, json, tflops, images } => {
            if let Some(t) = tflops.filter(|t| !(t.is_finite() && *t > 0.0)) {
                bail!("--tflops {t}: expected a positive number of TFLOP/s, e.g. --tflops 150");
            }
            doctor::cmd_doctor(ctx, registry, &file, json, &crate::doctor::Options { images, tflops })
        }
        Command::Kinds { kind, markdown } => cmd_kinds(registry, kind.as_deref(), markdown),
    }
}

/// The instances a command-line query picks (an id, a selector, a glob): never empty.
fn select<'p>(plan: &'p Plan, query: &str) -> Result<Selection<'p>> {
    plan.select(query).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The one instance a query picks; several matches are listed (at most [`LISTED`]) with how to
/// name one of them.
fn find<'p>(plan: &'p Plan, query: &str, file: &Path) -> Result<(&'p crate::plan::Instance, Option<String>)> {
    let sel = select(plan, query)?;
    if let [one] = sel.matches[..] {
        return Ok((one, sel.output));
    }
    let mut text = format!("'{query}' matches {} instances of pipeline '{}':", sel.matches.len(), plan.pipeline.name);
    for i in sel.matches.iter().take(LISTED) {
        text += &format!("\n  {}", i.id);
    }
    if sel.matches.len() > LISTED {
        text += &format!("\n  … and {} more (`saeflow ls {} '{query}'` lists them all)", sel.matches.len() - LISTED, file.display());
    }
    text += "\nname one of them: give every axis, in any order, e.g. '";
    text += &sel.matches[0].id;
    text += "'";
    bail!(text)
}

/// The most matches an ambiguous query lists.
const LISTED: usize = 12;

fn id_width(plan: &Plan) -> usize {
    plan.instances.iter().map(|i| i.id.chars().count()).max().unwrap_or(10).min(70)
}
