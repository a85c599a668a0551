//! Commands that show a plan without running it: `plan` (with its cost line), `why`, `dag`, `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::entries::depends_on_unresolved;
use super::*;

pub(super) fn cmd_plan(ctx: &Ctx, registry: &Registry, file: &Path, json: bool, verbose: bool) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    let plan = ctx.load(cache.root(), registry, file)?;
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
    } else if to_run == 0 && !verbose {
        println!("plan {}: {} instances, all cached; nothing to run", plan.pipeline.name, plan.instances.len());
    } else {
        println!(
            "plan {}: {} instances — {} cached, {} to run",
            plan.pipeline.name,
            plan.instances.len(),
            plan.instances.len() - to_run,
            to_run
        );
        print_cost(&plan, &assessed);
        if verbose {
            print_instances(&plan, &assessed, |_| true);
        } else {
            print_stages(&plan, &assessed, true);
        }
    }
    Ok(ExitCode::from(if to_run == 0 { 0 } else { EXIT_WORK }))
}

/// One line per instance `keep` picks: status, id, and why it would run (a long id puts its
/// reason on the next line, so the columns stay aligned).
pub(super) fn print_instances(plan: &Plan, assessed: &[crate::engine::status::Assessment], keep: impl Fn(usize) -> bool) {
    let w = id_width(plan);
    // instances to run per fused group, counted once (not once per member)
    let mut fused_to_run: BTreeMap<&str, usize> = BTreeMap::new();
    for (inst, a) in plan.instances.iter().zip(assessed) {
        if let Some(g) = &inst.fuse_group
            && a.status == Status::Run
        {
            *fused_to_run.entry(g.as_str()).or_default() += 1;
        }
    }
    for (i, (inst, a)) in plan.instances.iter().zip(assessed).enumerate() {
        if !keep(i) {
            continue;
        }
        let (st, reason) = match a.status {
            Status::Cached => ("cached", String::new()),
            Status::Run => ("run", a.reason.clone()),
        };
        let fused = match (&inst.fuse_group, a.status == Status::Run) {
            (Some(g), true) => {
                let n = fused_to_run.get(g.as_str()).copied().unwrap_or(0);
                if n > 1 { format!(" [fused: one computation serves {n} instances]") } else { String::new() }
            }
            _ => String::new(),
        };
        println!("{}", aligned(st, &inst.id, w, &format!("{reason}{fused}")));
    }
}

/// `  STATUS  ID  TEXT`, with TEXT on a line of its own under the column when ID is wider than it.
pub(super) fn aligned(status: &str, id: &str, w: usize, text: &str) -> String {
    let line = if id.chars().count() > w && !text.is_empty() {
        format!("  {status:<8}{id}\n  {:<8}{:<w$}  {text}", "", "")
    } else {
        format!("  {status:<8}{id:<w$}  {text}")
    };
    line.trim_end().to_string()
}

/// One line per stage (with `cached_too`; else only the stages with work, what `watch` prints
/// after a save): how many of its instances are cached and how many would run, and why (one reason
/// when they share it, else each instance that would run on its own line).
pub(super) fn print_stages(plan: &Plan, assessed: &[crate::engine::status::Assessment], cached_too: bool) {
    let w = plan.stages.iter().map(|s| s.name.chars().count()).max().unwrap_or(5);
    for s in &plan.stages {
        let run: Vec<usize> = s.instances.iter().copied().filter(|&i| assessed[i].status == Status::Run).collect();
        let cached = s.instances.len() - run.len();
        if run.is_empty() && !cached_too {
            continue;
        }
        let reasons: BTreeSet<&str> = run.iter().map(|&i| assessed[i].reason.as_str()).collect();
        let what = match (run.len(), cached) {
            (0, n) => format!("{n} cached"),
            (r, 0) => format!("{r} to run"),
            (r, n) => format!("{r} to run, {n} cached"),
        };
        let why = match reasons.len() {
            1 => format!(": {}", reasons.iter().next().copied().unwrap_or_default()),
            _ => String::new(),
        };
        // instances that run as fused computations, counted once per computation
        let groups: BTreeSet<&str> = run.iter().filter_map(|&i| plan.instances[i].fuse_group.as_deref()).collect();
        let fused = match groups.len() {
            0 => String::new(),
            _ if groups.len() == run.len() => String::new(),
            1 => " [fused: one computation]".to_string(),
            n => format!(" [fused: {n} computations]"),
        };
        let why = format!("{why}{fused}");
        println!("  {:<8}{:<w$}  {what}{why}", if run.is_empty() { "cached" } else { "run" }, s.name);
        // which instances run, when not all of the stage does or they run for different reasons
        // (a long list is what `-v` is for)
        if reasons.len() > 1 || (!run.is_empty() && cached > 0 && run.len() <= LISTED) {
            let listed: BTreeSet<usize> = run.iter().copied().collect();
            print_instances(plan, assessed, |i| listed.contains(&i));
        }
    }
}

/// What would run, per kind: instances, the kind's own work units (probe fits), and the rows of
/// their inputs where those are already cached — so a 20,000-fit grid is seen before it starts.
pub(super) fn print_cost(plan: &Plan, assessed: &[crate::engine::status::Assessment]) {
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

pub(super) fn cmd_why(ctx: &Ctx, registry: &Registry, file: &Path, query: &str, full: bool) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    let plan = ctx.load(cache.root(), registry, file)?;
    let (inst, _) = find(&plan, query, file)?;
    let history = History::load(&cache, &plan.pipeline.name);
    let a = status::assess_one(&plan, inst, &cache, &history, false);
    let status = match a.status {
        Status::Cached => "cached".to_string(),
        Status::Run => format!("would run: {}", a.reason),
    };
    let rec = history.instances.get(&inst.id);
    let set_now: Vec<&str> = plan.pipeline.overrides.iter().map(String::as_str).collect();
    match rec {
        None => println!("{}: {status}; no earlier run is recorded in {}", inst.id, cache.root().display()),
        Some(rec) if rec.preimage == inst.preimage => {
            println!("{}: {status}; nothing changed since its last run (key {})", inst.id, rec.key)
        }
        Some(rec) => {
            println!("{}: {status}", inst.id);
            let change = status::describe(&plan, inst, &rec.preimage);
            if a.reason != change {
                println!("  changed since its last run: {change}");
            }
            println!("  key {} → {}", rec.key, inst.key(None).unwrap_or_default());
            for d in key::diff(&rec.preimage, &inst.preimage) {
                println!("    {d}");
            }
        }
    }
    if let Some(rec) = rec
        && (!rec.set.is_empty() || !set_now.is_empty())
    {
        let list = |v: &[&str]| {
            if v.is_empty() { "no --set".to_string() } else { v.iter().map(|s| format!("--set {s}")).collect::<Vec<_>>().join(" ") }
        };
        let then: Vec<&str> = rec.set.iter().map(String::as_str).collect();
        println!("  last run with {}; now {}", list(&then), list(&set_now));
    }
    if full {
        for o in &inst.outputs {
            println!("  output {:<10} key {}", o.name, o.key);
        }
        println!("  key preimage:");
        for line in serde_json::to_string_pretty(&readable(&inst.preimage))?.lines() {
            println!("    {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The preimage as a person reads it: strings that hold canonical JSON (a gathered variant's
/// coordinates) shown as the objects they are. The key is computed over the original.
fn readable(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::String(s) if s.starts_with('{') => serde_json::from_str::<J>(s).ok().filter(J::is_object).unwrap_or_else(|| v.clone()),
        J::Array(items) => J::Array(items.iter().map(readable).collect()),
        J::Object(m) => J::Object(m.iter().map(|(k, x)| (k.clone(), readable(x))).collect()),
        other => other.clone(),
    }
}

pub(super) fn cmd_dag(ctx: &Ctx, registry: &Registry, file: &Path, format: DagFormat, instances: bool) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    // a dataset or model that is not here does not stop the picture (those nodes say so)
    let plan = ctx.plan(cache.root(), registry, file, Externals::Record)?;
    let history = History::load(&cache, &plan.pipeline.name);
    let assessed = assess(&plan, &cache, &history, &|_| false);
    let unsure = depends_on_unresolved(&plan);
    let state = |i: usize| match (&assessed[i].status, unsure[i], history.instances.contains_key(&plan.instances[i].id)) {
        (_, true, _) => Node::Unresolved,
        (Status::Cached, _, _) => Node::Cached,
        (Status::Run, _, true) => Node::Stale,
        (Status::Run, _, false) => Node::New,
    };
    // the plan's instance DAG; the stage view maps each instance edge onto its stages
    let instance_edges =
        plan.graph.edge_indices().filter_map(|e| plan.graph.edge_endpoints(e)).map(|(a, b)| (plan.graph[a], plan.graph[b]));
    let (nodes, edges): (Vec<(String, Node)>, Edges) = if instances {
        (plan.instances.iter().map(|i| (i.id.clone(), state(i.index))).collect(), instance_edges.collect())
    } else {
        let idx = |name: &str| plan.stages.iter().position(|s| s.name == name).unwrap_or(0);
        let nodes = plan
            .stages
            .iter()
            .map(|s| {
                let mut counts: BTreeMap<Node, usize> = BTreeMap::new();
                for &i in &s.instances {
                    *counts.entry(state(i)).or_default() += 1;
                }
                let parts: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {}", n.word())).collect();
                // a stage is drawn in the colour of its least finished instance
                let worst = counts.keys().next_back().copied().unwrap_or(Node::Cached);
                (format!("{} ({}, {}×: {})", s.name, s.signature.kind, s.instances.len(), parts.join(", ")), worst)
            })
            .collect();
        let edges = instance_edges.map(|(a, b)| (idx(&plan.instances[a].stage), idx(&plan.instances[b].stage))).collect();
        (nodes, edges)
    };
    match format {
        DagFormat::Mermaid => {
            println!("flowchart LR");
            for n in Node::ALL {
                println!("  classDef {} fill:{},stroke:#333", n.word().replace(' ', "_"), n.colour());
            }
            for (i, (label, n)) in nodes.iter().enumerate() {
                println!("  n{i}[\"{}\"]:::{}", label.replace('"', "#quot;"), n.word().replace(' ', "_"));
            }
            for (a, b) in &edges {
                println!("  n{a} --> n{b}");
            }
        }
        DagFormat::Dot => {
            println!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=filled];", plan.pipeline.name);
            for (i, (label, n)) in nodes.iter().enumerate() {
                println!("  n{i} [label=\"{}\", fillcolor=\"{}\"];", label.replace('\\', "\\\\").replace('"', "\\\""), n.colour());
            }
            for (a, b) in &edges {
                println!("  n{a} -> n{b};");
            }
            println!("}}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The DAG's edges between node indices, sorted.
type Edges = BTreeSet<(usize, usize)>;

/// A node's state in `saeflow dag`, least finished last.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Cached,
    Stale,
    New,
    Unresolved,
}

impl Node {
    const ALL: [Node; 4] = [Node::Cached, Node::Stale, Node::New, Node::Unresolved];

    fn word(self) -> &'static str {
        match self {
            Node::Cached => "cached",
            Node::Stale => "stale",
            Node::New => "never run",
            Node::Unresolved => "missing input",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Node::Cached => "#b7e1b0",
            Node::Stale => "#f7d08a",
            Node::New => "#e8e8e8",
            Node::Unresolved => "#f4a6a6",
        }
    }
}

pub(super) fn cmd_status(ctx: &Ctx, registry: &Registry, file: &Path, selector: Option<&str>) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    let plan = ctx.load(cache.root(), registry, file)?;
    let picked: Option<BTreeSet<usize>> =
        selector.map(|q| select(&plan, q).map(|s| s.matches.iter().map(|i| i.index).collect())).transpose()?;
    let history = History::load(&cache, &plan.pipeline.name);
    let assessed = assess(&plan, &cache, &history, &|_| false);
    let w = id_width(&plan);
    println!("status {} (cache {})", plan.pipeline.name, cache.root().display());
    for (inst, a) in plan.instances.iter().zip(&assessed) {
        if picked.as_ref().is_some_and(|p| !p.contains(&inst.index)) {
            continue;
        }
        let st = match (&a.status, a.damaged.is_empty()) {
            (Status::Cached, _) => "cached",
            (Status::Run, false) => "damaged",
            (Status::Run, true) => "missing",
        };
        let rows = a.rows.map(|r| format!("{} rows", fmt_rows(r))).unwrap_or_default();
        let secs = a.seconds.map(fmt_secs).unwrap_or_default();
        let text = format!("{:>14}  {:>8}  {}", rows, secs, inst.key(None).unwrap_or_default());
        println!("{}", aligned(st, &inst.id, w, &text));
    }
    Ok(ExitCode::SUCCESS)
}
