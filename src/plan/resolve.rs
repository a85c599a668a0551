//! One variant's parameters resolved: kind defaults, pipeline defaults, own axes that name a
//! parameter, `${axis}` interpolation, type checks, paths and model/SAE references fingerprinted,
//! the kind's plan-time checks, and the key of each output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::bind::own_axes;
use super::fingerprint::FingerprintMemo;
use super::interpolate::interpolate;
use super::{Builder, Classified, Instance, OutputEntry, ParamType, Signature, Variant, instance_id, key};
use crate::spec::{Coords, Diagnostic, Pos, StageSpec, Value, canonical_coords, suggest};

impl Builder<'_> {
    /// Resolve parameters, fingerprints and keys of one variant.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn instantiate(
        &mut self,
        s: &StageSpec,
        sig: &Signature,
        c: &Classified,
        v: Variant,
        axes: &[String],
        project_root: &Path,
        memo: &mut FingerprintMemo,
        index: usize,
    ) -> Option<Instance> {
        let name = &s.name;
        let mut params: BTreeMap<String, (Value, Pos)> = BTreeMap::new();
        for ps in &sig.params {
            if let Some(d) = &ps.default {
                params.insert(ps.name.to_string(), (d.clone(), s.pos));
            }
            if let Some(setting) = self.p.defaults.iter().find(|d| d.name == ps.name) {
                params.insert(ps.name.to_string(), (setting.value.clone(), setting.value_pos));
            }
        }
        for (k, (val, pos)) in &c.params {
            params.insert(k.clone(), (val.clone(), *pos));
        }
        let mut interpolated_axes: BTreeSet<String> = BTreeSet::new();
        // an own axis named like a parameter sets it
        for axis in own_axes(s) {
            if sig.param(&axis).is_none() && !sig.open_params {
                continue;
            }
            if let Some(node) = c.param_nodes.get(&axis) {
                self.err(
                    Diagnostic::new(*node, format!("parameter '{axis}' is set both here and as a matrix axis"))
                        .stage(name)
                        .help("remove one of the two"),
                );
                return None;
            }
            if let (Some(val), Some(pos)) = (v.coords.get(&axis), v.axis_pos.get(&axis)) {
                params.insert(axis.clone(), (val.clone(), *pos));
                interpolated_axes.insert(axis);
            }
        }
        // ${axis} interpolation; `${pipeline}` is the pipeline's name unless an axis has that name
        let mut vars = v.coords.clone();
        vars.entry("pipeline".to_string()).or_insert_with(|| Value::Str(self.p.name.clone()));
        for (k, (val, pos)) in params.iter_mut() {
            match interpolate(val, &vars, &mut interpolated_axes) {
                Ok(new) => *val = new,
                Err(var) => {
                    let avail: Vec<&str> = v.coords.keys().map(String::as_str).collect();
                    self.errors.push(
                        Diagnostic::new(*pos, format!("parameter '{k}' uses ${{{var}}}, but this stage's variants have no axis '{var}'"))
                            .stage(name)
                            .help(if avail.is_empty() {
                                "this stage has no matrix axes; add one with `matrix:` or write the value out".to_string()
                            } else {
                                suggest(&var, avail).unwrap_or_default()
                            }),
                    );
                    return None;
                }
            }
        }
        // types and required
        let mut resolved = BTreeMap::new();
        let mut paths = BTreeMap::new();
        let mut externals = BTreeMap::new();
        for ps in &sig.params {
            match params.get(ps.name) {
                None => {
                    self.err(
                        Diagnostic::new(s.pos, format!("missing parameter '{}' ({})", ps.name, ps.ty.describe()))
                            .stage(name)
                            .help(format!("add `{}: ...`; {}", ps.name, ps.doc)),
                    );
                    return None;
                }
                // an optional parameter left unset
                Some((Value::Null, _)) if ps.default == Some(Value::Null) => {
                    resolved.insert(ps.name.to_string(), Value::Null);
                }
                Some((val, pos)) => match ps.ty.check(val) {
                    Ok(checked) => {
                        if let (ParamType::InputPath | ParamType::InputPathOr(_), Value::Str(rel)) = (&ps.ty, &checked)
                            && !ps.ty.is_word(&checked)
                        {
                            let path = if Path::new(rel).is_absolute() { PathBuf::from(rel) } else { project_root.join(rel) };
                            match memo.fingerprint(&path) {
                                Ok(fp) => {
                                    externals.insert(ps.name.to_string(), fp);
                                }
                                Err(e) => {
                                    // a parameter that also takes words (`explanations: api`) names them
                                    let or_words = match &ps.ty {
                                        ParamType::InputPathOr(words) => format!(", or write {}", words.join(" or ")),
                                        _ => String::new(),
                                    };
                                    let missing = e.kind() != std::io::ErrorKind::InvalidInput;
                                    let d = if e.kind() == std::io::ErrorKind::NotFound {
                                        Diagnostic::new(*pos, format!("parameter '{}': '{rel}' does not exist", ps.name))
                                            .stage(name)
                                            .help(format!(
                                                "relative paths resolve against the project folder (the one holding pipelines/); put the data \
                                                 there (the pipeline's comments and docs/datasets.md say how) or fix the path{or_words}"
                                            ))
                                    } else if !missing {
                                        // a device, FIFO or socket (or a folder holding one): `e` says which
                                        Diagnostic::new(*pos, format!("parameter '{}': '{rel}' {e}", ps.name)).stage(name).help(format!(
                                            "inputs are fingerprinted by their content before a run, and a device, FIFO or socket has no \
                                             content that stays put (reading it may never end); copy the data into a regular file (or a \
                                             folder of them) and point `{}` at it{or_words}",
                                            ps.name
                                        ))
                                    } else {
                                        Diagnostic::new(*pos, format!("cannot read '{rel}' for parameter '{}': {e}", ps.name)).stage(name).help(
                                            format!("relative paths resolve against the project folder (the one holding pipelines/); check the path{or_words}"),
                                        )
                                    };
                                    if !self.external(d, ps.name, rel, missing) {
                                        return None;
                                    }
                                    externals.insert(ps.name.to_string(), format!("unresolved:{rel}"));
                                }
                            }
                            paths.insert(ps.name.to_string(), path);
                        }
                        if let (ParamType::Artifact(kind), Value::Str(text)) = (&ps.ty, &checked) {
                            let located = crate::models::source::locate(*kind, text, project_root, || {
                                crate::models::hub::HubCache::from_env().map_err(|e| e.to_string())
                            });
                            let resolved = match located {
                                Ok(crate::models::source::Located::Hub { dir, pinned }) => Ok((dir, pinned)),
                                Ok(crate::models::source::Located::Local(dir)) => {
                                    memo.fingerprint(&dir).map(|fp| (dir, fp)).map_err(|e| format!("cannot read '{text}': {e}"))
                                }
                                Err(e) => Err(e),
                            };
                            match resolved {
                                Ok((dir, external)) => {
                                    externals.insert(ps.name.to_string(), external);
                                    paths.insert(ps.name.to_string(), dir);
                                }
                                Err(e) => {
                                    let d = Diagnostic::new(*pos, format!("parameter '{}': {e}", ps.name))
                                        .stage(name)
                                        .help(format!("expected {}; relative folders resolve against the project folder", kind.describe()));
                                    if !self.external(d, ps.name, text, true) {
                                        return None;
                                    }
                                    externals.insert(ps.name.to_string(), format!("unresolved:{text}"));
                                }
                            }
                        }
                        if let (ParamType::OutputDir, Value::Str(rel)) = (&ps.ty, &checked) {
                            if !stays_inside(rel) {
                                self.err(
                                    Diagnostic::new(*pos, format!("output folder '{rel}' leaves the project"))
                                        .stage(name)
                                        .help("use a relative path without `..` that stays inside the project, e.g. `reports/study`"),
                                );
                                return None;
                            }
                            match output_folder(project_root, memo.folder(), rel) {
                                Ok(real) => {
                                    paths.insert(ps.name.to_string(), real);
                                }
                                Err(refused) => {
                                    let (problem, why) = refused.explain(rel);
                                    self.err(Diagnostic::new(*pos, format!("output folder '{rel}' {problem}")).stage(name).help(format!(
                                        "{why}; write a folder of its own, e.g. `{}: reports/<name>` (the default is `reports/${{pipeline}}`)",
                                        ps.name
                                    )));
                                    return None;
                                }
                            }
                        }
                        resolved.insert(ps.name.to_string(), checked);
                    }
                    Err(msg) => {
                        self.err(Diagnostic::new(*pos, format!("parameter '{}': {msg}", ps.name)).stage(name).help(ps.doc));
                        return None;
                    }
                },
            }
        }
        if sig.open_params {
            for (k, (val, _)) in &params {
                resolved.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
        if let Some(check) = sig.validate
            && let Err(problem) = check(&resolved)
        {
            let pos = params.get(problem.param).map(|(_, p)| *p).unwrap_or(s.pos);
            self.err(Diagnostic::new(pos, format!("parameter '{}': {}", problem.param, problem.message)).stage(name).help(problem.help));
            return None;
        }
        if let Some(check) = sig.check_files {
            let at = |param: &str| params.get(param).map(|(_, p)| *p).unwrap_or(s.pos);
            match check(&resolved, &paths) {
                Ok(found) => {
                    for w in found {
                        let w = Diagnostic::new(at(w.param), format!("parameter '{}': {}", w.param, w.message)).stage(name).help(w.help);
                        if !self.warnings.iter().any(|x| x.message == w.message && x.stage == w.stage) {
                            self.warnings.push(w);
                        }
                    }
                }
                Err(problem) => {
                    let d = Diagnostic::new(at(problem.param), format!("parameter '{}': {}", problem.param, problem.message))
                        .stage(name)
                        .help(problem.help);
                    let value = resolved.get(problem.param).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                    if !self.external(d, problem.param, &value.unwrap_or_default(), false) {
                        return None;
                    }
                }
            }
        }
        for a in &s.matrix {
            if !interpolated_axes.contains(&a.name) {
                let w = Diagnostic::new(a.pos, format!("matrix axis '{}' changes nothing in this stage", a.name)).stage(name).help(
                    format!("no parameter is named '{}' and no parameter uses ${{{}}}: its variants share one cache entry", a.name, a.name),
                );
                if !self.warnings.iter().any(|x| x.message == w.message && x.stage == w.stage) {
                    self.warnings.push(w);
                }
            }
        }
        let id = instance_id(name, &v.coords, axes);
        let in_key: BTreeMap<String, Value> = sig
            .params
            .iter()
            .filter(|ps| ps.in_key)
            .filter_map(|ps| resolved.get(ps.name).map(|v| (ps, v)))
            // a path enters the key by its content fingerprint (externals), a word as itself
            .filter(|(ps, v)| match ps.ty {
                ParamType::InputPath | ParamType::Artifact(_) => false,
                ParamType::InputPathOr(_) => ps.ty.is_word(v),
                _ => true,
            })
            .map(|(ps, v)| (ps.name.to_string(), v.clone()))
            .chain(if sig.open_params {
                resolved.iter().filter(|(k, _)| sig.param(k).is_none()).map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
            } else {
                Vec::new()
            })
            .collect();
        let preimage = key::preimage(sig, &in_key, &v.inputs, &externals);
        let outputs = sig
            .outputs
            .iter()
            .map(|o| {
                // `$param`: the table type is the value of that parameter (the `table` kind)
                let table = match o.table {
                    crate::tables::TableType::Param(p) => resolved.get(p).and_then(Value::as_str).unwrap_or_default().to_string(),
                    t => t.name().to_string(),
                };
                OutputEntry { name: o.name.to_string(), table, key: key::output_key(&preimage, o.name) }
            })
            .collect();
        let fuse_group = (!sig.fuse_axes.is_empty()).then(|| {
            let rest: Coords =
                v.coords.iter().filter(|(k, _)| !sig.fuse_axes.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
            // members must read the same inputs: one computation serves them all
            let inputs: Vec<(&str, Vec<&str>)> =
                v.inputs.iter().map(|b| (b.slot.as_str(), b.items.iter().map(|it| it.key.as_str()).collect())).collect();
            format!("{name}{}{inputs:?}", canonical_coords(&rest))
        });
        Some(Instance {
            index,
            id,
            stage: name.clone(),
            kind: sig.kind,
            version: sig.version,
            coords: v.coords,
            params: resolved,
            paths,
            inputs: v.inputs,
            externals,
            preimage,
            outputs,
            fuse_group,
        })
    }
}

/// A relative path without `..` components that would leave its base.
pub fn stays_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    if p.is_absolute() {
        return false;
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Why an output folder is refused (see [`output_folder`]).
#[derive(Debug, PartialEq)]
enum Refused {
    /// The folder is the project's own.
    Project,
    /// The cache folder (`inside`: a folder in it).
    Cache { inside: bool },
    /// `pipelines/` (`inside`: a folder in it).
    Pipelines { inside: bool },
    /// Reached through the symlink `via` (as written, relative), which leads to `to`, outside.
    Escapes { via: String, to: PathBuf },
    /// `via` exists and cannot be a folder on the way (a file, a dangling or unreadable link).
    Blocked { via: String, problem: String },
}

impl Refused {
    /// (what is wrong, why that matters) for a diagnostic.
    fn explain(&self, rel: &str) -> (String, String) {
        let folder = |inside: bool, what: &str| if inside { format!("is inside the {what}") } else { format!("is the {what}") };
        match self {
            Refused::Project => {
                ("is the project folder itself".into(), "its files (index.html, figures, CSVs) would mix with the project's own".into())
            }
            Refused::Cache { inside } => (
                folder(*inside, "cache folder"),
                "the cache folder holds saeflow's content-addressed entries and nothing else (`gc`, `verify` and `export` manage it)"
                    .into(),
            ),
            Refused::Pipelines { inside } => {
                (folder(*inside, "pipelines folder"), "pipelines/ is for pipeline files (`saeflow gc` plans every one of them)".into())
            }
            Refused::Escapes { via, to } => (
                format!("leaves the project through a symlink: '{via}' is a symlink to '{}'", to.display()),
                format!(
                    "output folders stay inside the project (the folder holding pipelines/), wherever links lead; replace the \
                     symlink '{via}' with a folder, or write the report elsewhere in the project (`{rel}` resolves outside)"
                ),
            ),
            Refused::Blocked { via, problem } => {
                (format!("cannot be created: '{via}' {problem}"), format!("'{via}' is on the way to '{rel}'"))
            }
        }
    }
}

/// The real folder an output folder `rel` (relative, known not to climb out lexically) names:
/// the symlinks on its way that exist now are followed, and the result must be inside the
/// project, and neither the project folder itself nor the cache (`cache/`, or `cache` — where the
/// fingerprint memo lives — when given) nor `pipelines/` or anything inside them. The part that
/// does not exist yet is appended as written. The stage writes to this path (which holds no
/// symlink) and checks again that it still does (`report::write_folder`).
fn output_folder(project_root: &Path, cache: Option<&Path>, rel: &str) -> Result<PathBuf, Refused> {
    let real_of = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let root = real_of(project_root);
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut real = root.clone();
    for (i, part) in parts.iter().enumerate() {
        let next = real.join(part);
        let via = || parts[..=i].iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join("/");
        match std::fs::symlink_metadata(&next) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                real = parts[i..].iter().fold(real, |r, p| r.join(p));
                break;
            }
            Err(e) => return Err(Refused::Blocked { via: via(), problem: format!("cannot be read ({e})") }),
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::canonicalize(&next)
                    .map_err(|e| Refused::Blocked { via: via(), problem: format!("is a symlink that cannot be followed ({e})") })?;
                if !to.starts_with(&root) {
                    return Err(Refused::Escapes { via: via(), to });
                }
                if !to.is_dir() {
                    return Err(Refused::Blocked { via: via(), problem: "is a symlink to a file, not to a folder".into() });
                }
                real = to;
            }
            Ok(m) if !m.is_dir() => return Err(Refused::Blocked { via: via(), problem: "is a file, not a folder".into() }),
            Ok(_) => real = next,
        }
    }
    if real == root {
        return Err(Refused::Project);
    }
    let caches = [Some(root.join("cache")), cache.map(real_of)];
    if let Some(c) = caches.iter().flatten().find(|c| real.starts_with(c)) {
        return Err(Refused::Cache { inside: &real != c });
    }
    let pipelines = real_of(&root.join("pipelines"));
    if real.starts_with(&pipelines) {
        return Err(Refused::Pipelines { inside: real != pipelines });
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_out_are_rejected() {
        assert!(stays_inside("reports/x"));
        assert!(stays_inside("a/../b"));
        assert!(!stays_inside("../x"));
        assert!(!stays_inside("a/../../x"));
        assert!(!stays_inside("/etc"));
    }

    #[test]
    fn output_folders_resolve_through_symlinks_and_keep_out_of_the_cache_and_pipelines() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.join("real/deeper")).unwrap();
        std::os::unix::fs::symlink("real", root.join("inside")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("away")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        let of = |rel: &str| output_folder(&root, Some(&root.join("elsewhere-cache")), rel);
        assert_eq!(of("reports/x"), Ok(root.join("reports/x")));
        assert_eq!(of("inside/deeper/r"), Ok(root.join("real/deeper/r")), "links inside the project are followed");
        assert!(matches!(of("away/r"), Err(Refused::Escapes { via, .. }) if via == "away"));
        assert!(matches!(of("file/r"), Err(Refused::Blocked { via, .. }) if via == "file"));
        assert_eq!(of("a/.."), Err(Refused::Project));
        assert_eq!(of("cache"), Err(Refused::Cache { inside: false }));
        assert_eq!(of("elsewhere-cache/x"), Err(Refused::Cache { inside: true }), "the cache the memo lives in, wherever it is");
        assert_eq!(of("pipelines/x"), Err(Refused::Pipelines { inside: true }));
    }
}
