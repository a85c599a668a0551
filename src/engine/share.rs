//! Handing tables to collaborators: `export` copies an entry's Parquet parts (whose footers
//! explain them) and manifest out of the cache; `import` checks such a folder against its own
//! metadata and publishes it under its key, so the receiver's run finds it cached.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::EngineError;
use super::cache::{Cache, EntryState};
use super::manifest::{FileRecord, MANIFEST, Manifest};
use super::table::{part_index, part_name, read_file, read_footer};
use crate::plan::key::output_key;

/// Copy one entry to `dest` (created); returns the files written.
pub fn export(cache: &Cache, key: &str, dest: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let m = cache.verify(key).map_err(|why| EngineError::Corrupt(format!("{key}: {why}; run `saeflow run` to recompute it first")))?;
    fs::create_dir_all(dest).map_err(|e| EngineError::io(dest, e))?;
    let mut written = Vec::new();
    for f in m.files.iter().map(|f| f.name.as_str()).chain([MANIFEST]) {
        let (src, dst) = (cache.entry_dir(key).join(f), dest.join(f));
        fs::copy(&src, &dst).map_err(|e| EngineError::io(&dst, e))?;
        written.push(dst);
    }
    Ok(written)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    Added { key: String, instance: String, rows: u64 },
    AlreadyCached { key: String, instance: String },
}

/// Import every exported table found under `src` (folders holding `part-*.parquet`), all or
/// nothing: every table is checked and staged first; only if all pass is any published.
///
/// What import proves: each table is what its footers claim — its key is the hash of the
/// computation its footers describe, every part the exported manifest lists is there, unaltered
/// and decodable, with the rows its footer counts, and its columns are those of its table type.
/// What it cannot prove: that the numbers were computed honestly (a colleague who rewrites a table
/// with other values and consistent footers is believed).
pub fn import(cache: &Cache, src: &Path) -> Result<Vec<Imported>, EngineError> {
    let mut folders = Vec::new();
    find_tables(src, &mut folders, &mut BTreeSet::new())?;
    if folders.is_empty() {
        return Err(EngineError::Other(format!("{}: no exported tables (folders with part-*.parquet) found", src.display())));
    }
    folders.sort();
    let checked = folders.iter().map(|f| check_one(f)).collect::<Result<Vec<_>, _>>()?;
    // every key locked (in key order: no lock-order cycle with another import) while staging
    let keys: BTreeSet<&str> = checked.iter().map(|c| c.manifest.key.as_str()).collect();
    let _locks = keys.iter().map(|k| cache.lock(k)).collect::<Result<Vec<_>, _>>()?;
    let mut staged = Vec::new();
    for c in &checked {
        match stage_one(cache, c) {
            Ok(st) => staged.push(st),
            Err(e) => {
                for st in &staged {
                    if let Staged::Copied(m) = st {
                        let _ = fs::remove_dir_all(cache.tmp_dir(&m.key));
                    }
                }
                return Err(e);
            }
        }
    }
    let mut out = Vec::new();
    for st in staged {
        match st {
            Staged::Here { key, instance } => out.push(Imported::AlreadyCached { key, instance }),
            Staged::Copied(m) => {
                if !matches!(cache.state(&m.key), EntryState::Missing) {
                    cache.quarantine(&m.key)?;
                }
                cache.publish(&m, false)?;
                out.push(Imported::Added { key: m.key.clone(), instance: m.instance.clone(), rows: m.rows });
            }
        }
    }
    Ok(out)
}

fn find_tables(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut BTreeSet<(u64, u64)>) -> Result<(), EngineError> {
    // a folder reached twice (symlinks) is read once: no walk that never ends
    let meta = fs::metadata(dir).map_err(|e| EngineError::io(dir, e))?;
    if !seen.insert(dev_ino(&meta)) {
        return Ok(());
    }
    let mut has_parts = false;
    for e in fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))? {
        let e = e.map_err(|e| EngineError::io(dir, e))?;
        let p = e.path();
        if p.is_dir() {
            find_tables(&p, out, seen)?;
        } else if part_index(&e.file_name().to_string_lossy()).is_some() {
            has_parts = true;
        }
    }
    if has_parts {
        out.push(dir.to_path_buf());
    }
    Ok(())
}

#[cfg(unix)]
fn dev_ino(m: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn dev_ino(_: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

fn meta_get<'a>(meta: &'a [(String, String)], k: &str) -> Option<&'a str> {
    meta.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// A table folder whose identity was derived from its own footers and checked.
struct Checked {
    folder: PathBuf,
    /// The manifest to publish: identity from the footers, hashes from the exported manifest
    /// (checked against the copied parts), timings from the export.
    manifest: Manifest,
}

enum Staged {
    /// An intact entry of the same key is already in the cache.
    Here { key: String, instance: String },
    /// Copied into the key's temporary folder, ready to publish.
    Copied(Box<Manifest>),
}

/// Everything that can be checked without touching the cache.
fn check_one(folder: &Path) -> Result<Checked, EngineError> {
    let bad = |why: String| EngineError::Corrupt(format!("{}: {why}", folder.display()));
    let mut parts: Vec<usize> = fs::read_dir(folder)
        .map_err(|e| EngineError::io(folder, e))?
        .flatten()
        .filter_map(|e| part_index(&e.file_name().to_string_lossy()))
        .collect();
    parts.sort_unstable();
    if parts.iter().enumerate().any(|(i, p)| i != *p) {
        return Err(bad(format!("parts are not numbered 0..{}: a part is missing", parts.len())));
    }
    let (_, _, meta0) = read_footer(&folder.join(part_name(0)))?;
    let get = |k: &str| {
        meta_get(&meta0, k).map(str::to_string).ok_or_else(|| bad(format!("part-00000.parquet has no {k} metadata: not a saeflow table")))
    };
    let key = get("saeflow.key")?;
    let preimage_text = get("saeflow.preimage")?;
    let output = get("saeflow.output")?;
    let table = get("saeflow.table")?;
    let preimage: serde_json::Value = serde_json::from_str(&preimage_text).map_err(|e| bad(format!("unreadable saeflow.preimage: {e}")))?;
    if output_key(&preimage, &output) != key {
        return Err(bad(format!("its metadata does not hash to its key {key}: the table was altered")));
    }
    let json = |k: &str| -> Result<serde_json::Value, EngineError> {
        serde_json::from_str(&get(k)?).map_err(|e| bad(format!("unreadable {k}: {e}")))
    };
    let mut rows = Vec::new();
    for &i in &parts {
        let path = folder.join(part_name(i));
        let (schema, r, meta) = read_footer(&path)?;
        for k in ["saeflow.key", "saeflow.preimage", "saeflow.output", "saeflow.table"] {
            if meta_get(&meta, k) != meta_get(&meta0, k) {
                return Err(bad(format!("{} belongs to another table ({k} differs from part-00000's)", part_name(i))));
            }
        }
        // the columns are those of the table type the footers claim
        if let Some(ty) = crate::tables::TableType::from_name(&table) {
            ty.check(&schema, &format!("{}/{}", folder.display(), part_name(i))).map_err(EngineError::Corrupt)?;
        }
        // every page decodes, to the rows the footer counts
        let mut decoded = 0u64;
        for b in read_file(&path)? {
            decoded += b.map_err(|e| bad(format!("{} does not decode: {e}", part_name(i))))?.num_rows() as u64;
        }
        if decoded != r {
            return Err(bad(format!("{} decodes to {decoded} rows, its footer says {r}", part_name(i))));
        }
        rows.push((part_name(i), r));
    }
    let exported: Manifest = match fs::read(folder.join(MANIFEST)) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(format!("unreadable manifest.json: {e}")))?,
        Err(_) => {
            return Err(bad(
                "no manifest.json beside the parts: `saeflow export` writes one; without it a missing part cannot be detected".into(),
            ));
        }
    };
    if exported.key != key || exported.preimage != preimage || exported.table != table || exported.output != output {
        return Err(bad("its manifest.json describes another table than its parts' footers".into()));
    }
    if exported.files.len() != rows.len() || exported.files.iter().zip(&rows).any(|(f, (name, _))| &f.name != name) {
        return Err(bad("its parts do not match its manifest.json (a part is missing, extra or altered)".into()));
    }
    let total: u64 = rows.iter().map(|(_, r)| r).sum();
    let stage_version = get("saeflow.stage_version")?.parse().map_err(|e| bad(format!("unreadable saeflow.stage_version: {e}")))?;
    let coords: serde_json::Value = json("saeflow.coords")?;
    let manifest = Manifest {
        saeflow_version: get("saeflow.version")?,
        key,
        stage: get("saeflow.stage")?,
        instance: get("saeflow.instance")?,
        kind: get("saeflow.kind")?,
        stage_version,
        output,
        table,
        coords,
        preimage,
        inputs: json("saeflow.inputs")?,
        rows: total,
        // the exported records: names, sizes and hashes, checked against the copies when staged
        files: exported.files.iter().zip(&rows).map(|(f, (_, r))| FileRecord { rows: *r, ..f.clone() }).collect(),
        created_unix: exported.created_unix,
        seconds: exported.seconds,
        computed_on: exported.computed_on.clone(),
    };
    Ok(Checked { folder: folder.to_path_buf(), manifest })
}

/// Copy a checked table into its key's temporary folder (the caller holds the key's lock); the
/// copies must hash to the exported manifest.
fn stage_one(cache: &Cache, c: &Checked) -> Result<Staged, EngineError> {
    let m = &c.manifest;
    let bad = |why: String| EngineError::Corrupt(format!("{}: {why}", c.folder.display()));
    if matches!(cache.state(&m.key), EntryState::Present(_) | EntryState::Touched(_)) && cache.verify(&m.key).is_ok() {
        return Ok(Staged::Here { key: m.key.clone(), instance: m.instance.clone() });
    }
    let tmp = cache.tmp_dir(&m.key);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    for f in &m.files {
        // copy under a temporary name: a killed import must not leave a truncated "complete" part
        let (partial, done) = (tmp.join(format!("{}.partial", f.name)), tmp.join(&f.name));
        fs::copy(c.folder.join(&f.name), &partial).map_err(|e| EngineError::io(&partial, e))?;
        fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| EngineError::io(&partial, e))?;
        fs::rename(&partial, &done).map_err(|e| EngineError::io(&done, e))?;
    }
    let rows: Vec<(String, u64)> = m.files.iter().map(|f| (f.name.clone(), f.rows)).collect();
    let files = cache.describe_parts(&tmp, &rows)?;
    // the exported manifest lists every part with its hash: a part altered after export (or
    // between the checks and the copy) is refused
    if files.iter().zip(&m.files).any(|(ours, theirs)| ours.blake3 != theirs.blake3 || ours.size != theirs.size) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(bad("its parts do not match its manifest.json (a part is missing, extra or altered)".into()));
    }
    Ok(Staged::Copied(Box::new(Manifest { files, ..m.clone() })))
}
