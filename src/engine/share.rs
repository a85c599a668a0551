//! Handing tables to collaborators: `export` copies an entry's Parquet parts (whose footers
//! explain them) and manifest out of the cache; `import` checks such a folder against its own
//! metadata and publishes it under its key, so the receiver's run finds it cached.

use std::fs;
use std::path::{Path, PathBuf};

use super::EngineError;
use super::cache::{Cache, EntryState};
use super::manifest::{MANIFEST, Manifest};
use super::table::{part_index, part_name, read_footer};
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

/// Import every exported table found under `src` (folders holding `part-*.parquet`).
pub fn import(cache: &Cache, src: &Path) -> Result<Vec<Imported>, EngineError> {
    let mut folders = Vec::new();
    find_tables(src, &mut folders)?;
    if folders.is_empty() {
        return Err(EngineError::Other(format!("{}: no exported tables (folders with part-*.parquet) found", src.display())));
    }
    folders.sort();
    folders.iter().map(|f| import_one(cache, f)).collect()
}

fn find_tables(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), EngineError> {
    let mut has_parts = false;
    for e in fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))? {
        let e = e.map_err(|e| EngineError::io(dir, e))?;
        let p = e.path();
        if p.is_dir() {
            find_tables(&p, out)?;
        } else if part_index(&e.file_name().to_string_lossy()).is_some() {
            has_parts = true;
        }
    }
    if has_parts {
        out.push(dir.to_path_buf());
    }
    Ok(())
}

fn meta_get<'a>(meta: &'a [(String, String)], k: &str) -> Option<&'a str> {
    meta.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

fn import_one(cache: &Cache, folder: &Path) -> Result<Imported, EngineError> {
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
    let key = meta_get(&meta0, "saeflow.key")
        .ok_or_else(|| bad("part-00000.parquet has no saeflow.key metadata: not a saeflow table".into()))?
        .to_string();
    let preimage_text = meta_get(&meta0, "saeflow.preimage").ok_or_else(|| bad("no saeflow.preimage metadata".into()))?;
    let output = meta_get(&meta0, "saeflow.output").unwrap_or_default().to_string();
    let preimage: serde_json::Value = serde_json::from_str(preimage_text).map_err(|e| bad(format!("unreadable saeflow.preimage: {e}")))?;
    if output_key(&preimage, &output) != key {
        return Err(bad(format!("its metadata does not hash to its key {key}: the table was altered")));
    }
    let mut rows = Vec::new();
    for &i in &parts {
        let (_, r, meta) = read_footer(&folder.join(part_name(i)))?;
        if meta_get(&meta, "saeflow.key") != Some(key.as_str()) {
            return Err(bad(format!("{} belongs to another key", part_name(i))));
        }
        rows.push((part_name(i), r));
    }
    let instance = meta_get(&meta0, "saeflow.instance").unwrap_or_default().to_string();
    let exported: Manifest = match fs::read(folder.join(MANIFEST)) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(format!("unreadable manifest.json: {e}")))?,
        Err(_) => {
            return Err(bad(
                "no manifest.json beside the parts: `saeflow export` writes one; without it a missing part cannot be detected".into(),
            ));
        }
    };
    let _lock = cache.lock(&key)?;
    if matches!(cache.state(&key), EntryState::Present(_) | EntryState::Touched(_)) && cache.verify(&key).is_ok() {
        return Ok(Imported::AlreadyCached { key, instance });
    }
    if !matches!(cache.state(&key), EntryState::Missing) {
        cache.quarantine(&key)?;
    }
    let tmp = cache.tmp_dir(&key);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    for (name, _) in &rows {
        // copy under a temporary name: a killed import must not leave a truncated "complete" part
        let (partial, done) = (tmp.join(format!("{name}.partial")), tmp.join(name));
        fs::copy(folder.join(name), &partial).map_err(|e| EngineError::io(&partial, e))?;
        fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| EngineError::io(&partial, e))?;
        fs::rename(&partial, &done).map_err(|e| EngineError::io(&done, e))?;
    }
    let files = cache.describe_parts(&tmp, &rows)?;
    // the exported manifest lists every part with its hash: without it a missing or altered part
    // could not be told from a complete table
    let hashes: Vec<(&str, &str)> = exported.files.iter().map(|f| (f.name.as_str(), f.blake3.as_str())).collect();
    let ours: Vec<(&str, &str)> = files.iter().map(|f| (f.name.as_str(), f.blake3.as_str())).collect();
    if hashes != ours || exported.key != key {
        let _ = fs::remove_dir_all(&tmp);
        return Err(bad("its parts do not match its manifest.json (a part is missing, extra or altered)".into()));
    }
    if exported.preimage != preimage {
        let _ = fs::remove_dir_all(&tmp);
        return Err(bad("its manifest.json describes another computation than its parts' metadata".into()));
    }
    // the exported manifest, checked against the parts above, with this cache's file records
    let total: u64 = files.iter().map(|f| f.rows).sum();
    let m = Manifest { files, rows: total, ..exported };
    cache.publish(&m, false)?;
    Ok(Imported::Added { key, instance, rows: total })
}
