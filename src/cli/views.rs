//! Commands that show a plan without running it: `plan` (with its cost line), `why`, `dag`, `status`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use super::*;

pub(super) fn cmd_plan(cache: &Option<PathBuf>, registry: &Registry, file: &Path, json: bool) -> Result<ExitCode> {
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
        // instances to run per fused group, counted once (not once per member)
        let mut fused_to_run: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (inst, a) in plan.instances.iter().zip(&assessed) {
            if let Some(g) = &inst.fuse_group
                && a.status == Status::Run
            {
                *fused_to_run.entry(g.as_str()).or_default() += 1;
            }
        }
        for (inst, a) in plan.instances.iter().zip(&assessed) {
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
            println!("{}", format!("  {st:<8}{:<w$}  {reason}{fused}", inst.id).trim_end());
        }
    }
    Ok(ExitCode::from(if to_run == 0 { 0 } else { EXIT_WORK }))
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

pub(super) fn cmd_why(cache: &Option<PathBuf>, registry: &Registry, file: &Path, id: &str) -> Result<ExitCode> {
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

pub(super) fn cmd_dag(cache: &Option<PathBuf>, registry: &Registry, file: &Path, format: DagFormat, stages: bool) -> Result<ExitCode> {
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

pub(super) fn cmd_status(cache: &Option<PathBuf>, registry: &Registry, file: &Path) -> Result<ExitCode> {
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
