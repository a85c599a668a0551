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

/// Copy one entry's parts to `dest` (created) and its manifest to `root/_saeflow/<key>.json`
/// (beside the data, not inside it: readers that take a folder whole see Parquet only, and
/// pyarrow skips `_`-folders); returns the files written.
pub fn export(cache: &Cache, key: &str, dest: &Path, root: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let m = cache.verify(key).map_err(|why| EngineError::Corrupt(format!("{key}: {why}; run `saeflow run` to recompute it first")))?;
    fs::create_dir_all(dest).map_err(|e| EngineError::io(dest, e))?;
    let manifests = root.join(MANIFESTS);
    fs::create_dir_all(&manifests).map_err(|e| EngineError::io(&manifests, e))?;
    let mut written = Vec::new();
    for f in &m.files {
        let (src, dst) = (cache.entry_dir(key).join(&f.name), dest.join(&f.name));
        fs::copy(&src, &dst).map_err(|e| EngineError::io(&dst, e))?;
        written.push(dst);
    }
    let dst = manifests.join(format!("{key}.json"));
    fs::copy(cache.entry_dir(key).join(MANIFEST), &dst).map_err(|e| EngineError::io(&dst, e))?;
    written.push(dst);
    Ok(written)
}

/// The folder of an exported export's manifests, at the export's root.
pub const MANIFESTS: &str = "_saeflow";

/// Where `export` puts one table: `stage=S/output=O/AXIS=V/…` (hive partitioning, axes in the
/// plan's display order, values percent-encoded as pyarrow, polars and duckdb decode them).
///
/// A coordinate is in the path or in the file, never both: pyarrow and pandas refuse a folder
/// whose files hold a column that is also a partition key (`int64 vs dictionary<int32>`), and
/// every reader lets the folder's value win over the file's. So an axis the table already has
/// as a column (`columns`) is not a `key=value` level; those axes name one last plain folder
/// (`layer-3,method-top5`) that keeps the tables apart and that readers do not parse.
pub fn hive_path(stage: &str, output: &str, coords: &crate::spec::Coords, axes: &[String], columns: &[String]) -> PathBuf {
    let mut p = PathBuf::from(format!("stage={}", escape(stage)));
    p.push(format!("output={}", escape(output)));
    let ordered: Vec<&String> =
        axes.iter().filter(|a| coords.contains_key(*a)).chain(coords.keys().filter(|k| !axes.contains(k))).collect();
    let mut plain = Vec::new();
    for a in ordered {
        let v = escape(&coords[a].plain_text());
        if columns.contains(a) {
            plain.push(format!("{}-{v}", escape(a)));
        } else {
            p.push(format!("{}={v}", escape(a)));
        }
    }
    if !plain.is_empty() {
        p.push(plain.join(","));
    }
    p
}

/// Percent-encode everything but ASCII letters, digits, `-`, `_` and `.` (URI segment encoding:
/// `1+3` → `1%2B3`; a value of dots only is encoded whole, so no folder is `.` or `..`).
fn escape(s: &str) -> String {
    let dots = !s.is_empty() && s.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') || (b == b'.' && !dots) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    Added { key: String, instance: String, output: String, rows: u64 },
    AlreadyCached { key: String, instance: String, output: String },
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
    let checked = folders.iter().map(|f| check_one(f, src)).collect::<Result<Vec<_>, _>>()?;
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
            Staged::Here { key, instance, output } => out.push(Imported::AlreadyCached { key, instance, output }),
            Staged::Copied(m) => {
                if !matches!(cache.state(&m.key), EntryState::Missing) {
                    cache.quarantine(&m.key)?;
                }
                cache.publish(&m, false)?;
                out.push(Imported::Added { key: m.key.clone(), instance: m.instance.clone(), output: m.output.clone(), rows: m.rows });
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
            if e.file_name() != MANIFESTS {
                find_tables(&p, out, seen)?;
            }
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
    Here { key: String, instance: String, output: String },
    /// Copied into the key's temporary folder, ready to publish.
    Copied(Box<Manifest>),
}

/// An exported table's manifest: `_saeflow/<key>.json` in the folder or one above it up to the
/// export's root (`saeflow export` today), or `manifest.json` beside the parts (exports before).
fn exported_manifest(folder: &Path, root: &Path, key: &str) -> Option<Vec<u8>> {
    if let Ok(b) = fs::read(folder.join(MANIFEST)) {
        return Some(b);
    }
    let mut dir = Some(folder);
    while let Some(d) = dir {
        if let Ok(b) = fs::read(d.join(MANIFESTS).join(format!("{key}.json"))) {
            return Some(b);
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    None
}

/// Everything that can be checked without touching the cache.
fn check_one(folder: &Path, root: &Path) -> Result<Checked, EngineError> {
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
    let exported: Manifest = match exported_manifest(folder, root, &key) {
        Some(b) => serde_json::from_slice(&b).map_err(|e| bad(format!("unreadable manifest of {key}: {e}")))?,
        None => {
            return Err(bad(format!(
                "no manifest ({MANIFESTS}/{key}.json at the export's root, or manifest.json beside the parts): `saeflow export` \
                 writes one; without it a missing part cannot be detected"
            )));
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
        return Ok(Staged::Here { key: m.key.clone(), instance: m.instance.clone(), output: m.output.clone() });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Value;

    #[test]
    fn hive_paths_put_each_coordinate_in_the_path_or_the_file() {
        let coords: crate::spec::Coords =
            [("layer".to_string(), Value::Str("1+3".into())), ("method".to_string(), Value::Str("top5".into()))].into_iter().collect();
        let axes = vec!["layer".to_string(), "method".to_string()];
        let p = hive_path("probe", "metrics", &coords, &axes, &[]);
        assert_eq!(p, PathBuf::from("stage=probe/output=metrics/layer=1%2B3/method=top5"));
        let p = hive_path("probe", "metrics", &coords, &axes, &["method".to_string()]);
        assert_eq!(p, PathBuf::from("stage=probe/output=metrics/layer=1%2B3/method-top5"));
        assert_eq!(escape("a/b c"), "a%2Fb%20c");
        assert_eq!(escape(".."), "%2E%2E");
        assert_eq!(escape("v1.2"), "v1.2");
    }
}
