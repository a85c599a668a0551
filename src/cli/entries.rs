//! Commands on cache entries: `show`, `gc`, `verify`, `export`, `import`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::plan::Externals;

use super::*;

pub(super) fn cmd_show(
    cache: &Option<PathBuf>,
    registry: &Registry,
    file: &Path,
    id: &str,
    output: Option<&str>,
    limit: usize,
) -> Result<ExitCode> {
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
    if m.table != "health" {
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

pub(super) fn cmd_gc(cache_flag: &Option<PathBuf>, registry: &Registry, files: Vec<PathBuf>, dry_run: bool) -> Result<ExitCode> {
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
    // instances whose keys cannot be known here (they depend on an input that is missing): an
    // entry is kept whatever its key when it was made under such an instance's id and kind, or
    // by the same kind, version and parameters (another pipeline's name for the same computation)
    let mut unsure = BTreeSet::new();
    let mut unsure_params = BTreeSet::new();
    for f in &files {
        let plan = plan_recording(cache.root(), registry, f)?;
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

/// Plan a pipeline for `gc`: an external input that cannot be read (a dataset not downloaded
/// here, a model not in the Hugging Face cache while offline) is recorded in `Plan::unresolved`
/// with a stand-in fingerprint instead of failing the plan.
fn plan_recording(cache: &Path, registry: &Registry, file: &Path) -> Result<Plan> {
    let pipeline = Pipeline::load(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let memo = Some(cache.join(".fingerprints.json"));
    let plan =
        Plan::build(pipeline, registry, &PlanOptions { fingerprint_memo: memo, externals: Externals::Record, ..PlanOptions::default() })
            .map_err(|d| anyhow::anyhow!("{d}"))?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    Ok(plan)
}

/// What a key's preimage computes, without what it computes it from (inputs, external
/// fingerprints): format, kind, version and parameters, as canonical JSON.
fn computation(preimage: &serde_json::Value) -> String {
    let field = |k: &str| preimage.get(k).cloned().unwrap_or_default();
    serde_json::json!([field("format"), field("kind"), field("version"), field("params")]).to_string()
}

/// Per instance: whether its keys rest on a stand-in fingerprint (its own input is unresolved,
/// or one of the instances it reads from is), so the entries it made cannot be told by key.
fn depends_on_unresolved(plan: &Plan) -> Vec<bool> {
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

pub(super) fn cmd_verify(cache_flag: &Option<PathBuf>) -> Result<ExitCode> {
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

pub(super) fn cmd_export(cache: &Option<PathBuf>, registry: &Registry, file: &Path, id: &str, to: &Path) -> Result<ExitCode> {
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
pub(super) fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.=,+".contains(c) { c } else { '_' }).collect()
}

pub(super) fn cmd_import(cache_flag: &Option<PathBuf>, dir: &Path) -> Result<ExitCode> {
    let cache = Cache::open(&cache_dir(cache_flag, None))?;
    for r in share::import(&cache, dir)? {
        match r {
            Imported::Added { key, instance, rows } => println!("  imported {instance}  key {key}  {} rows", fmt_rows(rows)),
            Imported::AlreadyCached { key, instance } => println!("  cached   {instance}  key {key} (already here)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
