//! Runs a plan: topological order, cache lookups, fused groups, locks, atomic publishing.
//! It reports through an [`Observer`]; it prints nothing itself.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::EngineError;
use super::cache::{Cache, EntryState, KeyLock};
use super::history::{History, Record};
use super::job::{Job, Member, OutputWriter, Producer, TableInput};
use super::manifest::{ComputedOn, Manifest};
use super::stage::Registry;
use super::status::{Assessment, Status, assess};
use super::table::{part_name, read_footer};
use crate::glob::glob_match;
use crate::plan::{Instance, Plan};
use crate::progress::Progress;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run only instances matching these globs (and whatever they need that is not cached).
    pub only: Vec<String>,
    /// Recompute instances matching these globs even when cached.
    pub force: Vec<String>,
    /// After a failure, go on with everything that does not depend on it.
    pub keep_going: bool,
    /// Fault injection for crash tests: exit right after part N of instances matching the glob.
    pub fault: Option<(String, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Found in the cache (rows of its first output).
    Cached {
        rows: u64,
    },
    Ran {
        seconds: f64,
        rows: u64,
    },
    Failed(String),
    /// Not run because an input failed.
    Blocked(String),
    /// Not selected by `--only`.
    Skipped,
    /// Not reached: the run stopped at an earlier failure (no `--keep-going`).
    Stopped,
}

/// What the executor tells its caller as it goes.
pub trait Observer {
    /// A computation starts; several members when instances run fused.
    fn started(&self, _members: &[&Instance]) {}
    fn finished(&self, _inst: &Instance, _outcome: &Outcome) {}
    /// A progress sink for a running job (named after its first member).
    fn progress(&self, _inst: &Instance) -> Box<dyn Progress> {
        Box::new(crate::progress::NoProgress)
    }
    /// Something the user should know (a damaged entry moved aside, …).
    fn note(&self, _message: &str) {}
}

pub struct Summary {
    pub outcomes: Vec<Outcome>,
}

impl Summary {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }
}

struct Executor<'a> {
    plan: &'a Plan,
    registry: &'a Registry,
    cache: &'a Cache,
    opts: &'a RunOptions,
    observer: &'a dyn Observer,
    assessments: Vec<Assessment>,
    outcomes: Vec<Option<Outcome>>,
    verified: BTreeSet<String>,
    history: BTreeMap<String, Record>,
    history_saved: Instant,
    stop: bool,
    /// The instances `--force` picked.
    forced: BTreeSet<usize>,
}

/// The instances `--only`/`--force` pick: each query as `Plan::select` reads it (an id, a selector
/// like `probe[layer=3]` in any order, a stage, a glob); one that matches nothing is an error that
/// names the stage's axes, not every id.
pub fn resolve_queries(plan: &Plan, queries: &[String], flag: &str) -> Result<BTreeSet<usize>, EngineError> {
    let mut picked = BTreeSet::new();
    for q in queries {
        let sel = plan.select(q).map_err(|e| EngineError::Other(format!("{flag} '{q}': {e}")))?;
        picked.extend(sel.matches.iter().map(|i| i.index));
    }
    Ok(picked)
}

pub fn run(plan: &Plan, registry: &Registry, cache: &Cache, opts: &RunOptions, observer: &dyn Observer) -> Result<Summary, EngineError> {
    let only = resolve_queries(plan, &opts.only, "--only")?;
    let forced = resolve_queries(plan, &opts.force, "--force")?;
    let history = History::load(cache, &plan.pipeline.name);
    let assessments = assess(plan, cache, &history, &|id| plan.instance(id).is_some_and(|i| forced.contains(&i.index)));
    let n = plan.instances.len();
    let mut needed = vec![opts.only.is_empty(); n];
    if !opts.only.is_empty() {
        for inst in &plan.instances {
            if only.contains(&inst.index) {
                needed[inst.index] = true;
                for a in plan.ancestors(inst.index) {
                    needed[a] = true;
                }
            }
        }
    }
    let mut ex = Executor {
        plan,
        registry,
        cache,
        opts,
        observer,
        assessments,
        outcomes: vec![None; n],
        verified: BTreeSet::new(),
        history: BTreeMap::new(),
        history_saved: Instant::now(),
        stop: false,
        forced,
    };
    for i in 0..n {
        if !needed[i] {
            ex.outcomes[i] = Some(Outcome::Skipped);
            continue;
        }
        if ex.stop {
            break;
        }
        ex.ensure(i, &needed)?;
    }
    History::record(cache, &plan.pipeline.name, &ex.history)?;
    let outcomes = ex.outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Stopped)).collect();
    Ok(Summary { outcomes })
}

impl Executor<'_> {
    fn finish(&mut self, i: usize, outcome: Outcome) {
        let inst = &self.plan.instances[i];
        if matches!(outcome, Outcome::Cached { .. } | Outcome::Ran { .. })
            && let Some(key) = inst.key(None)
        {
            let set = self.plan.pipeline.overrides.iter().filter(|o| crate::spec::overrides::touches(o, &inst.stage)).cloned().collect();
            self.history.insert(inst.id.clone(), Record { key: key.to_string(), preimage: inst.preimage.clone(), set });
        }
        if matches!(outcome, Outcome::Failed(_)) && !self.opts.keep_going {
            self.stop = true;
        }
        self.observer.finished(inst, &outcome);
        self.outcomes[i] = Some(outcome);
    }

    fn ensure(&mut self, i: usize, needed: &[bool]) -> Result<(), EngineError> {
        if self.outcomes[i].is_some() || !self.inputs_ready(i, needed)? {
            return Ok(());
        }
        if self.assessments[i].status == Status::Cached {
            for key in self.assessments[i].touched.clone() {
                if let Ok(m) = self.cache.verify(&key) {
                    self.cache.refresh_mtimes(&key, m)?;
                    self.verified.insert(key);
                }
            }
            let rows = self.assessments[i].rows.unwrap_or(0);
            self.finish(i, Outcome::Cached { rows });
            return Ok(());
        }
        // the members of the fused group that need computing, each with its inputs ready
        let inst = &self.plan.instances[i];
        let candidates: Vec<usize> = match &inst.fuse_group {
            Some(g) => self
                .plan
                .instances
                .iter()
                .filter(|j| {
                    j.fuse_group.as_ref() == Some(g)
                        && needed[j.index]
                        && self.outcomes[j.index].is_none()
                        && self.assessments[j.index].status == Status::Run
                })
                .map(|j| j.index)
                .collect(),
            None => vec![i],
        };
        let mut group = Vec::new();
        for m in candidates {
            if m == i || self.inputs_ready(m, needed)? {
                group.push(m);
            }
        }
        // inputs hash to their manifests before anything reads them, and stay locked (shared)
        // until the stage is done with them: `gc` leaves them alone, other readers go on
        let _reading = self.hold_inputs(&group, needed)?;
        let group: Vec<usize> = group.into_iter().filter(|&m| self.outcomes[m].is_none()).collect();
        if group.is_empty() {
            return Ok(());
        }
        self.run_group(&group)
    }

    /// Shared locks on every input of the group, each entry verified (hashed once per run, and
    /// found still there under the lock every time). An input that is damaged or gone is
    /// repaired with no lock held (no lock-order cycle with another process) and the holding
    /// starts over; a member whose input cannot be recomputed is blocked.
    fn hold_inputs(&mut self, group: &[usize], needed: &[bool]) -> Result<Vec<KeyLock>, EngineError> {
        'again: loop {
            let mut held = Vec::new();
            for &m in group {
                let items: Vec<(usize, String)> =
                    self.plan.instances[m].inputs.iter().flat_map(|b| b.items.iter().map(|it| (it.instance, it.key.clone()))).collect();
                for (producer, key) in items {
                    if self.outcomes[m].is_some() {
                        break;
                    }
                    let lock = self.cache.lock_shared(&key)?;
                    let intact = if self.verified.contains(&key) {
                        matches!(self.cache.state(&key), EntryState::Present(_) | EntryState::Touched(_))
                    } else {
                        self.cache.verify(&key).is_ok()
                    };
                    if intact {
                        self.verified.insert(key);
                        held.push(lock);
                        continue;
                    }
                    drop(lock);
                    drop(held);
                    self.repair_input(m, producer, &key, needed)?;
                    continue 'again;
                }
            }
            return Ok(held);
        }
    }

    /// An input entry `consumer` needs is damaged or gone: move a damaged one aside (under its
    /// exclusive lock) and recompute its producer; if that fails, `consumer` is blocked.
    fn repair_input(&mut self, consumer: usize, producer: usize, key: &str, needed: &[bool]) -> Result<(), EngineError> {
        self.verified.remove(key);
        {
            let _lock = self.cache.lock(key)?;
            if self.cache.verify(key).is_ok() {
                return Ok(()); // another process repaired it meanwhile
            }
            let what = match self.cache.state(key) {
                EntryState::Missing => "is gone (removed by another process?)".to_string(),
                _ => {
                    let why = self.cache.verify(key).err().unwrap_or_default();
                    let moved = self.cache.quarantine(key)?;
                    format!("is damaged ({why}); moved it to {}", moved.display())
                }
            };
            self.observer.note(&format!(
                "input {} of {} {what}; recomputing it",
                self.plan.instances[producer].id, self.plan.instances[consumer].id
            ));
        }
        self.outcomes[producer] = None;
        self.assessments[producer].status = Status::Run;
        self.ensure(producer, needed)?;
        if !matches!(self.outcomes[producer], Some(Outcome::Ran { .. }) | Some(Outcome::Cached { .. })) {
            let by = self.plan.instances[producer].id.clone();
            self.finish(consumer, Outcome::Blocked(by));
        }
        Ok(())
    }

    /// Make sure every input of `i` is computed; if one failed, `i` is blocked (returns false).
    fn inputs_ready(&mut self, i: usize, needed: &[bool]) -> Result<bool, EngineError> {
        let producers: Vec<usize> = self.plan.instances[i].inputs.iter().flat_map(|b| b.items.iter().map(|it| it.instance)).collect();
        for p in producers {
            if self.outcomes[p].is_none() {
                self.ensure(p, needed)?;
            }
            if matches!(self.outcomes[p], Some(Outcome::Failed(_)) | Some(Outcome::Blocked(_)) | Some(Outcome::Stopped) | None) {
                let by = self.plan.instances[p].id.clone();
                self.finish(i, Outcome::Blocked(by));
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn run_group(&mut self, group: &[usize]) -> Result<(), EngineError> {
        let plan = self.plan;
        let keys: BTreeSet<String> = group.iter().flat_map(|&m| plan.instances[m].outputs.iter().map(|o| o.key.clone())).collect();
        let _locks = keys.iter().map(|k| self.cache.lock(k)).collect::<Result<Vec<_>, _>>()?;
        // another process may have published while we waited for the locks
        let mut todo = Vec::new();
        for &m in group {
            let inst = &plan.instances[m];
            let forced = self.forced.contains(&inst.index);
            let states: Vec<EntryState> = inst.outputs.iter().map(|o| self.cache.state(&o.key)).collect();
            let all_present = states.iter().all(|st| matches!(st, EntryState::Present(_)));
            if all_present && !forced && self.assessments[m].damaged.is_empty() && !self.assessments[m].folder_stale {
                let rows = match &states[0] {
                    EntryState::Present(man) => man.rows,
                    _ => 0,
                };
                self.finish(m, Outcome::Cached { rows });
            } else {
                for (o, st) in inst.outputs.iter().zip(states) {
                    if forced {
                        // recompute from scratch: no resumed parts; the old entry stays in place
                        // until the new one replaces it (Cache::publish)
                        let _ = std::fs::remove_dir_all(self.cache.tmp_dir(&o.key));
                    }
                    let damaged = match &st {
                        EntryState::Missing => false,
                        EntryState::Damaged(_) => true,
                        // intact (a sibling of a missing output, or forced): kept; a touched one
                        // was hashed by the assessment
                        EntryState::Present(_) | EntryState::Touched(_) => self.assessments[m].damaged.iter().any(|(k, _)| k == &o.key),
                    };
                    if damaged {
                        let moved = self.cache.quarantine(&o.key)?;
                        self.observer.note(&format!("{} output {} was damaged; moved it to {}", inst.id, o.name, moved.display()));
                    }
                }
                todo.push(m);
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let first = &plan.instances[todo[0]];
        let Some(stage) = self.registry.get(first.kind) else {
            return Err(EngineError::Other(format!("no implementation registered for kind '{}'", first.kind)));
        };
        let mut members = Vec::new();
        for &m in &todo {
            members.push(self.member(&plan.instances[m])?);
        }
        let started_members: Vec<&Instance> = todo.iter().map(|&m| &plan.instances[m]).collect();
        self.observer.started(&started_members);
        let progress = self.observer.progress(first);
        let started = Instant::now();
        let (result, members, notes) = {
            let mut job = Job { members, progress: progress.as_ref(), cache_root: self.cache.root().to_path_buf(), notes: Vec::new() };
            let result = catch_unwind(AssertUnwindSafe(|| stage.run(&mut job)));
            (result, job.members, job.notes)
        };
        for n in &notes {
            self.observer.note(n);
        }
        let seconds = started.elapsed().as_secs_f64();
        drop(progress);
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(format!(
                "the stage panicked: {}",
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            )),
        };
        if let Some(e) = error {
            for &m in &todo {
                self.finish(m, Outcome::Failed(e.clone()));
            }
            return Ok(());
        }
        // every output of the job checked and described first; then one sync makes all their parts
        // and manifests durable, and each entry is published by its rename (see `Cache::publish_all`)
        let mut prepared: Vec<(usize, Result<Vec<Prepared>, String>)> = Vec::new();
        for (member, &m) in members.iter().zip(&todo) {
            let inst = &plan.instances[m];
            let outputs: Result<Vec<Prepared>, String> =
                member.outputs.iter().map(|w| self.prepare(inst, w, seconds, member.device.clone()).map_err(|e| e.to_string())).collect();
            prepared.push((m, outputs));
        }
        let manifests: Vec<(&Manifest, bool)> = prepared
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flatten()
            .filter_map(|p| match p {
                Prepared::Publish { manifest, replace } => Some((manifest.as_ref(), *replace)),
                Prepared::Published { .. } => None,
            })
            .collect();
        let published = self.cache.publish_all(&manifests);
        for (m, outputs) in prepared {
            match (outputs, &published) {
                (Ok(outputs), Ok(())) => {
                    let rows = outputs.first().map_or(0, Prepared::rows);
                    self.finish(m, Outcome::Ran { seconds, rows });
                }
                (Err(e), _) => self.finish(m, Outcome::Failed(e)),
                (Ok(_), Err(e)) => self.finish(m, Outcome::Failed(e.to_string())),
            }
        }
        // record what ran (at most every few seconds), so a later crash loses little why-history
        if self.history_saved.elapsed().as_secs() >= 2 {
            History::record(self.cache, &plan.pipeline.name, &std::mem::take(&mut self.history))?;
            self.history_saved = Instant::now();
        }
        Ok(())
    }

    /// Build what the stage sees for one instance.
    fn member(&self, inst: &Instance) -> Result<Member, EngineError> {
        let mut inputs = Vec::new();
        for b in &inst.inputs {
            let mut tables = Vec::new();
            for it in &b.items {
                let producer = &self.plan.instances[it.instance];
                tables.push(TableInput {
                    instance: producer.id.clone(),
                    producer: Arc::new(Producer { kind: producer.kind, params: producer.params.clone(), paths: producer.paths.clone() }),
                    coords: it.coords.clone(),
                    key: it.key.clone(),
                    dir: self.cache.entry_dir(&it.key),
                    manifest: Arc::new(self.cache.manifest(&it.key)?),
                });
            }
            inputs.push((b.slot.clone(), tables));
        }
        let fault = self.opts.fault.as_ref().filter(|(g, _)| glob_match(g, &inst.id)).map(|(_, n)| *n);
        let mut outputs = Vec::new();
        for o in &inst.outputs {
            outputs.push(OutputWriter::new(
                &o.name,
                &inst.id,
                &self.cache.tmp_dir(&o.key),
                table_metadata(self.plan, inst, &o.name, &o.key, &o.table),
                fault,
            )?);
        }
        Ok(Member {
            id: inst.id.clone(),
            coords: inst.coords.clone(),
            params: inst.params.clone(),
            paths: inst.paths.clone(),
            inputs,
            outputs,
            device: None,
        })
    }

    /// Check an output's parts and describe them in its manifest (published with the job's other
    /// outputs by [`Cache::publish_all`]); an entry already published stays.
    fn prepare(&self, inst: &Instance, w: &OutputWriter, seconds: f64, device: Option<String>) -> Result<Prepared, EngineError> {
        let parts = w.complete_parts();
        let n = w.expected_parts.unwrap_or(parts.len());
        if n == 0 {
            return Err(EngineError::Stage(format!("{}: output '{}' wrote no part", inst.id, w.name)));
        }
        if let Some(missing) = (0..n).find(|i| !parts.contains(i)) {
            return Err(EngineError::Stage(format!("{}: output '{}' is missing part {missing} of {n}", inst.id, w.name)));
        }
        let mut rows = Vec::new();
        for i in 0..n {
            let name = part_name(i);
            let (_, r, meta) = read_footer(&w.dir.join(&name))?;
            if !meta.iter().any(|(k, v)| k == "saeflow.key" && w.metadata.iter().any(|(k2, v2)| k2 == k && v2 == v)) {
                return Err(EngineError::Corrupt(format!("{}: part {name} of output '{}' was written for another key", inst.id, w.name)));
            }
            rows.push((name, r));
        }
        let files = self.cache.describe_parts(&w.dir, &rows)?;
        let out = inst.outputs.iter().find(|o| o.name == w.name).ok_or_else(|| EngineError::Other(format!("unknown output {}", w.name)))?;
        let m = Manifest {
            saeflow_version: env!("CARGO_PKG_VERSION").into(),
            key: out.key.clone(),
            stage: inst.stage.clone(),
            instance: inst.id.clone(),
            kind: inst.kind.into(),
            stage_version: inst.version,
            output: out.name.clone(),
            table: out.table.clone(),
            coords: crate::spec::Value::Map(inst.coords.clone()).to_json(),
            preimage: inst.preimage.clone(),
            inputs: inputs_json(self.plan, inst),
            rows: rows.iter().map(|(_, r)| r).sum(),
            files,
            created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            seconds,
            computed_on: Some(ComputedOn::here(device)),
        };
        let forced = self.forced.contains(&inst.index);
        if !forced && let EntryState::Present(_) | EntryState::Touched(_) = self.cache.state(&out.key) {
            // published already (the instance reran for a missing sibling): the entry stays
            if let Ok(existing) = self.cache.verify(&out.key) {
                self.cache.discard_tmp(&out.key)?;
                return Ok(Prepared::Published { rows: existing.rows });
            }
        }
        Ok(Prepared::Publish { manifest: Box::new(m), replace: forced })
    }
}

/// An output of a finished job, ready to publish.
enum Prepared {
    /// Its manifest, and whether it replaces an intact entry (`--force`).
    Publish { manifest: Box<Manifest>, replace: bool },
    /// The same key was published already (an instance rerun for a missing sibling output).
    Published { rows: u64 },
}

impl Prepared {
    fn rows(&self) -> u64 {
        match self {
            Prepared::Publish { manifest, .. } => manifest.rows,
            Prepared::Published { rows } => *rows,
        }
    }
}

fn inputs_json(plan: &Plan, inst: &Instance) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for b in &inst.inputs {
        let items: Vec<_> =
            b.items.iter().map(|it| json!({"instance": plan.instances[it.instance].id, "output": it.output, "key": it.key})).collect();
        map.insert(b.slot.clone(), serde_json::Value::Array(items));
    }
    serde_json::Value::Object(map)
}

/// Each external input (a dataset folder, a local model or SAE, a hub artifact) as the YAML wrote
/// it beside the content fingerprint that entered the key: `{"model": {"as_written": "models/a",
/// "fingerprint": "…"}}`.
fn sources_json(inst: &Instance) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = inst
        .externals
        .iter()
        .map(|(param, fp)| {
            let written = inst.params.get(param).map(|v| v.to_string()).unwrap_or_default();
            (param.clone(), json!({"as_written": written, "fingerprint": fp}))
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Key-value metadata of every Parquet file of an entry: enough to explain and re-import it.
pub fn table_metadata(plan: &Plan, inst: &Instance, output: &str, key: &str, table: &str) -> Vec<(String, String)> {
    let p = &inst.preimage;
    vec![
        ("saeflow.key".into(), key.into()),
        ("saeflow.stage".into(), inst.stage.clone()),
        ("saeflow.instance".into(), inst.id.clone()),
        ("saeflow.kind".into(), inst.kind.into()),
        ("saeflow.stage_version".into(), inst.version.to_string()),
        ("saeflow.output".into(), output.into()),
        ("saeflow.table".into(), table.into()),
        ("saeflow.coords".into(), crate::spec::Value::Map(inst.coords.clone()).canonical()),
        ("saeflow.params".into(), p["params"].to_string()),
        ("saeflow.inputs".into(), inputs_json(plan, inst).to_string()),
        ("saeflow.revisions".into(), p["external"].to_string()),
        ("saeflow.pipeline".into(), plan.pipeline.name.clone()),
        ("saeflow.sources".into(), sources_json(inst).to_string()),
        ("saeflow.preimage".into(), p.to_string()),
        ("saeflow.version".into(), env!("CARGO_PKG_VERSION").into()),
    ]
}
