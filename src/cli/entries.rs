//! Commands on cache entries: `show`, `gc`, `verify`, `export`, `import`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::plan::Externals;

use super::views::aligned;
use super::*;

pub(super) fn cmd_show(ctx: &Ctx, registry: &Registry, file: &Path, query: &str, output: Option<&str>, limit: usize) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    let plan = ctx.load(cache.root(), registry, file)?;
    let (inst, picked) = find(&plan, query, file)?;
    let id = inst.id.as_str();
    let key = match output.or(picked.as_deref()) {
        Some(o) => inst.key(Some(o)).with_context(|| {
            let names: Vec<&str> = inst.outputs.iter().map(|o| o.name.as_str()).collect();
            format!("{id} has no output '{o}'; its outputs: {}", names.join(", "))
        })?,
        None => inst.key(None).context("the instance has no outputs")?,
    };
    // read under a shared lock (no gc or recompute swaps it meanwhile); every file read is hashed first
    let _reading = cache.lock_shared(key)?;
    let m = match cache.state(key) {
        EntryState::Present(m) | EntryState::Touched(m)
            if m.table == inst.outputs.iter().find(|o| o.key == key).map_or("", |o| o.table.as_str()) =>
        {
            m
        }
        EntryState::Present(m) | EntryState::Touched(m) => {
            bail!("{id}: the cache entry holds a {} table where the plan expects another; `saeflow run` will recompute it", m.table)
        }
        EntryState::Missing => bail!("{id} is not cached yet (key {key}); run `saeflow run {}` first", file.display()),
        EntryState::Damaged(why) => bail!("{id}: the cache entry is damaged ({why}); `saeflow run` will recompute it"),
    };
    println!("{}  ({} output, {} table)", m.instance, m.output, m.table);
    println!("  key      {}", m.key);
    println!("  rows     {} in {} part(s), {} bytes", fmt_rows(m.rows), m.files.len(), cache.size_of(&m));
    println!("  computed in {} by saeflow {}", fmt_secs(m.seconds), m.saeflow_version);
    let (schema, _, _) = table::read_footer(&cache.checked_file(key, &m.files[0])?)?;
    println!("schema:");
    for f in schema.fields() {
        println!("  {}: {}{}", f.name(), f.data_type(), if f.is_nullable() { " (nullable)" } else { "" });
    }
    let mut batches = Vec::new();
    let mut left = limit;
    'outer: for f in &m.files {
        for b in table::read_file(&cache.checked_file(key, f)?)? {
            let b = b?;
            if left == 0 {
                break 'outer;
            }
            let take = b.num_rows().min(left);
            batches.push(b.slice(0, take));
            left -= take;
        }
    }
    if m.rows == 1 && limit > 0 {
        // one row (a run's metrics, a summary): a column per line reads better than a wide table
        println!("the one row:");
        print_vertically(&batches)?;
    } else if m.table != "health" {
        println!("first {} rows:", limit.min(m.rows as usize));
        println!("{}", arrow_cast::pretty::pretty_format_batches(&batches)?);
    } else {
        // the raw rows are sufficient statistics (histograms, sums): print what they add up to
        let all = m.files.iter().map(|f| table::read_file(&cache.checked_file(key, f)?)).collect::<Result<Vec<_>, _>>()?;
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

/// `name  value` per column of a one-row table, names aligned.
fn print_vertically(batches: &[arrow_array::RecordBatch]) -> Result<()> {
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else { return Ok(()) };
    let schema = b.schema();
    let w = schema.fields().iter().map(|f| f.name().chars().count()).max().unwrap_or(0);
    let opts = arrow_cast::display::FormatOptions::default().with_null("null");
    for (f, col) in schema.fields().iter().zip(b.columns()) {
        let value = arrow_cast::display::ArrayFormatter::try_new(col.as_ref(), &opts)?.value(0).to_string();
        println!("  {:<w$}  {value}", f.name());
    }
    Ok(())
}

pub(super) fn cmd_gc(ctx: &Ctx, registry: &Registry, files: Vec<PathBuf>, dry_run: bool) -> Result<ExitCode> {
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
    let cache = Cache::at(&ctx.cache_dir(files.first().map(PathBuf::as_path)));
    let mut keep = BTreeSet::new();
    // instances whose keys cannot be known here (they depend on an input that is missing): an
    // entry is kept whatever its key when it was made under such an instance's id and kind, or
    // by the same kind, version and parameters (another pipeline's name for the same computation)
    let mut unsure = BTreeSet::new();
    let mut unsure_params = BTreeSet::new();
    for f in &files {
        let plan = ctx.plan(cache.root(), registry, f, Externals::Record)?;
        let depends = depends_on_unresolved(&plan);
        for (inst, _) in plan.instances.iter().zip(&depends).filter(|(_, d)| !**d) {
            keep.extend(inst.outputs.iter().map(|o| o.key.clone()));
        }
        let unsure_here: Vec<&crate::plan::Instance> = plan.instances.iter().zip(&depends).filter(|(_, d)| **d).map(|(i, _)| i).collect();
        unsure.extend(unsure_here.iter().map(|i| (i.id.clone(), i.kind.to_string())));
        unsure_params.extend(unsure_here.iter().map(|i| computation(&i.preimage)));
        if !unsure_here.is_empty() {
            let mut inputs: Vec<String> = Vec::new();
            for u in &plan.unresolved {
                let why = if u.missing { "missing" } else { "failed a check" };
                let line = format!("{}.{} '{}' ({why})", u.diagnostic.stage.as_deref().unwrap_or("?"), u.param, u.value);
                if !inputs.contains(&line) {
                    inputs.push(line);
                }
            }
            let mut stages: Vec<&str> = unsure_here.iter().map(|i| i.stage.as_str()).collect();
            stages.dedup();
            println!(
                "  {} has unresolved inputs: {}; entries of the {} instance(s) that depend on them (stages {}) are kept whatever \
                 their key (`saeflow doctor {}` says what is missing)",
                f.display(),
                first_few(&inputs, 4),
                unsure_here.len(),
                first_few(&stages, 8),
                f.display()
            );
        }
    }
    let (mut n, mut bytes, mut busy) = (0usize, 0u64, 0usize);
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut remove = |dir: PathBuf, what: &str| -> Result<()> {
        let size = dir_size(&dir);
        println!("  {verb} {what}  {size} bytes");
        if !dry_run {
            // out of the cache by one rename first: a gc killed midway leaves no half-removed entry
            let doomed = dir.with_extension("gc");
            std::fs::rename(&dir, &doomed).with_context(|| format!("cannot remove {}", dir.display()))?;
            std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))?;
        }
        n += 1;
        bytes += size;
        Ok(())
    };
    let unreached: Vec<String> =
        cache.keys()?.into_iter().chain(cache.tmp_keys()).filter(|k| !keep.contains(k)).collect::<BTreeSet<_>>().into_iter().collect();
    let mut kept_unsure = 0usize;
    for key in unreached {
        if cache.manifest(&key).is_ok_and(|m| unsure_params.contains(&computation(&m.preimage)) || unsure.contains(&(m.instance, m.kind))) {
            kept_unsure += 1;
            continue;
        }
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
    // what earlier runs set aside: damaged entries, and replaced ones a crash left behind
    for place in [".corrupt", ".trash"] {
        if let Ok(rd) = std::fs::read_dir(cache.root().join(place)) {
            for e in rd.flatten() {
                remove(e.path(), &format!("{place}/{}", e.file_name().to_string_lossy()))?;
            }
        }
    }
    let busy = if busy > 0 { format!("; {busy} in use by a running saeflow, left alone") } else { String::new() };
    let unsure = if kept_unsure > 0 { format!(", and {kept_unsure} of instances with unresolved inputs") } else { String::new() };
    println!("{verb} {n} entries, {bytes} bytes (kept {} reachable from {} pipeline(s){unsure}{busy})", keep.len(), files.len());
    Ok(ExitCode::SUCCESS)
}

/// `a, b, c and 5 more`.
fn first_few(items: &[impl std::fmt::Display], n: usize) -> String {
    let shown: Vec<String> = items.iter().take(n).map(|i| i.to_string()).collect();
    match items.len().saturating_sub(n) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// What a key's preimage computes, without what it computes it from (inputs, external
/// fingerprints): format, kind, version and parameters, as canonical JSON.
fn computation(preimage: &serde_json::Value) -> String {
    let field = |k: &str| preimage.get(k).cloned().unwrap_or_default();
    serde_json::json!([field("format"), field("kind"), field("version"), field("params")]).to_string()
}

/// Per instance: whether its keys rest on a stand-in fingerprint (its own input is unresolved,
/// or one of the instances it reads from is), so the entries it made cannot be told by key.
pub(super) fn depends_on_unresolved(plan: &Plan) -> Vec<bool> {
    let mut depends = vec![false; plan.instances.len()];
    // instances are in execution order: producers come first
    for (i, inst) in plan.instances.iter().enumerate() {
        depends[i] = inst.externals.values().any(|v| v.starts_with("unresolved:"))
            || inst.inputs.iter().flat_map(|b| &b.items).any(|it| depends.get(it.instance).copied().unwrap_or(true));
    }
    depends
}

pub(super) fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().map(|e| if e.path().is_dir() { dir_size(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }).sum()
        })
        .unwrap_or(0)
}

pub(super) fn cmd_verify(ctx: &Ctx) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(None));
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

pub(super) fn cmd_export(ctx: &Ctx, registry: &Registry, file: &Path, query: &str, to: &Path) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    let plan = ctx.load(cache.root(), registry, file)?;
    let sel = select(&plan, query)?;
    // every table cached, or nothing is written (no half export to clean up)
    let missing: Vec<String> = sel
        .matches
        .iter()
        .flat_map(|inst| inst.outputs.iter().filter(|o| sel.output.as_ref().is_none_or(|want| &o.name == want)).map(move |o| (inst, o)))
        .filter(|(_, o)| !matches!(cache.state(&o.key), EntryState::Present(_) | EntryState::Touched(_)))
        .map(|(inst, o)| format!("{} ({})", inst.id, o.name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of the tables '{query}' picks are not cached: {}; run `saeflow run {}` first (nothing was exported)",
            missing.len(),
            first_few(&missing, 4),
            file.display()
        );
    }
    let mut tables = 0usize;
    for inst in &sel.matches {
        for o in inst.outputs.iter().filter(|o| sel.output.as_ref().is_none_or(|want| &o.name == want)) {
            // the table's own columns: a coordinate it holds is not also a partition level (the
            // footer only: `share::export` hashes every file right after)
            let columns: Vec<String> = match cache.state(&o.key) {
                EntryState::Present(m) | EntryState::Touched(m) => {
                    let part = cache.entry_dir(&o.key).join(&m.files[0].name);
                    table::read_footer(&part)?.0.fields().iter().map(|f| f.name().clone()).collect()
                }
                _ => bail!("{} ({}) is not cached; run `saeflow run {}` first", inst.id, o.name, file.display()),
            };
            let dest = to.join(share::hive_path(&inst.stage, &o.name, &inst.coords, &plan.axes, &columns));
            let files = share::export(&cache, &o.key, &dest, to).with_context(|| format!("cannot export {} output {}", inst.id, o.name))?;
            // the manifest is the last file written, beside the data
            println!("  exported {} ({}) → {} ({} parts)", inst.id, o.name, dest.display(), files.len() - 1);
            tables += 1;
        }
    }
    println!("exported {tables} table(s) of {} instance(s) to {}", sel.matches.len(), to.display());
    Ok(ExitCode::SUCCESS)
}

/// `saeflow ls`: one row per table of the picked instances (all by default), with the paths of
/// its parts, for readers pointed at the cache (`pl.scan_parquet(parts)`, `duckdb.read_parquet(parts)`).
pub(super) fn cmd_ls(ctx: &Ctx, registry: &Registry, file: &Path, query: Option<&str>, json: bool) -> Result<ExitCode> {
    let cache = Cache::at(&ctx.cache_dir(Some(file)));
    let plan = ctx.load(cache.root(), registry, file)?;
    let (instances, only_output): (Vec<&crate::plan::Instance>, Option<String>) = match query {
        Some(q) => {
            let sel = select(&plan, q)?;
            (sel.matches, sel.output)
        }
        None => (plan.instances.iter().collect(), None),
    };
    let root = std::path::absolute(cache.root()).unwrap_or_else(|_| cache.root().to_path_buf());
    let mut rows = Vec::new();
    for inst in instances {
        for o in inst.outputs.iter().filter(|o| only_output.as_ref().is_none_or(|want| &o.name == want)) {
            let (status, n, parts) = match cache.state(&o.key) {
                EntryState::Present(m) | EntryState::Touched(m) if m.table == o.table => {
                    let dir = root.join(&o.key);
                    ("cached", Some(m.rows), m.files.iter().map(|f| dir.join(&f.name).display().to_string()).collect())
                }
                EntryState::Present(_) | EntryState::Touched(_) | EntryState::Damaged(_) => ("damaged", None, Vec::new()),
                EntryState::Missing => ("missing", None, Vec::new()),
            };
            rows.push((inst, o, status, n, parts));
        }
    }
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(inst, o, status, n, parts)| {
                serde_json::json!({
                    "instance": inst.id, "stage": inst.stage,
                    "coords": crate::spec::Value::Map(inst.coords.clone()).to_json(),
                    "output": o.name, "table": o.table, "key": o.key,
                    "status": status, "rows": n, "parts": parts,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let w = rows.iter().map(|(i, ..)| i.id.chars().count()).max().unwrap_or(8).min(70);
    let ow = rows.iter().map(|(_, o, ..)| o.name.chars().count()).max().unwrap_or(6);
    for (inst, o, status, n, parts) in &rows {
        let rows = n.map(|r| format!("{} rows", fmt_rows(r))).unwrap_or_default();
        let where_ = match parts.len() {
            0 => String::new(),
            1 => parts[0].clone(),
            k => format!("{} ({k} parts)", Path::new(&parts[0]).with_file_name("part-*.parquet").display()),
        };
        println!("{}", aligned(status, &inst.id, w, &format!("{:<ow$}  {rows:>14}  {where_}", o.name)));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cmd_import(ctx: &Ctx, dir: &Path) -> Result<ExitCode> {
    let cache = Cache::open(&ctx.cache_dir(None))?;
    for r in share::import(&cache, dir)? {
        match r {
            Imported::Added { key, instance, output, rows } => {
                println!("  imported {instance} ({output})  key {key}  {} rows", fmt_rows(rows))
            }
            Imported::AlreadyCached { key, instance, output } => println!("  cached   {instance} ({output})  key {key} (already here)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
