//! The content-addressed cache: `cache/<key>/` holds Parquet parts and `manifest.json`.
//!
//! Entries are built under `cache/.tmp/<key>/` (stable, so a killed run resumes from its complete
//! parts) and published by one rename while the key's lock is held; a half-written entry is never
//! visible under `cache/<key>/`. Nothing in this module knows stages or pipelines.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::EngineError;
use super::manifest::{FileRecord, MANIFEST, Manifest};
use super::table::{read_footer, write_atomic};
use crate::plan::fingerprint::hash_file;

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// What a key's entry looks like on disk.
#[derive(Debug)]
pub enum EntryState {
    Missing,
    /// Manifest present, every file's size and mtime as recorded.
    Present(Box<Manifest>),
    /// Sizes match but some mtime differs (a copy, an import): hashes decide.
    Touched(Box<Manifest>),
    /// Something is wrong; the text says what.
    Damaged(String),
}

/// An exclusive lock on one key, released on drop.
pub struct KeyLock {
    _file: File,
}

pub(crate) fn mtime_ns(meta: &fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Cache {
    /// Open (and create) a cache folder.
    pub fn open(root: &Path) -> Result<Cache, EngineError> {
        for sub in [".tmp", ".locks", ".history"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| EngineError::io(&d, e))?;
        }
        Ok(Cache { root: root.to_path_buf() })
    }

    /// A cache folder that may not exist yet (for read-only commands).
    pub fn at(root: &Path) -> Cache {
        Cache { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub fn tmp_dir(&self, key: &str) -> PathBuf {
        self.root.join(".tmp").join(key)
    }

    pub fn history_dir(&self) -> PathBuf {
        self.root.join(".history")
    }

    pub fn fingerprint_memo(&self) -> PathBuf {
        self.root.join(".fingerprints.json")
    }

    /// Read an entry's manifest.
    pub fn manifest(&self, key: &str) -> Result<Manifest, EngineError> {
        let path = self.entry_dir(key).join(MANIFEST);
        let bytes = fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt(format!("{}: unreadable manifest: {e}", path.display())))
    }

    /// Cheap check (no hashing): manifest readable, every file present with its recorded size.
    pub fn state(&self, key: &str) -> EntryState {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return EntryState::Missing;
        }
        let m = match self.manifest(key) {
            Ok(m) => m,
            Err(e) => return EntryState::Damaged(e.to_string()),
        };
        if m.key != key {
            return EntryState::Damaged(format!("manifest names key {}, the folder is {key}", m.key));
        }
        if let Err(why) = m.check_layout() {
            return EntryState::Damaged(why);
        }
        let mut touched = false;
        for f in &m.files {
            match fs::metadata(dir.join(&f.name)) {
                Err(_) => return EntryState::Damaged(format!("{} is missing", f.name)),
                Ok(meta) if meta.len() != f.size => {
                    return EntryState::Damaged(format!("{} has {} bytes, the manifest says {}", f.name, meta.len(), f.size));
                }
                Ok(meta) => touched |= mtime_ns(&meta) != f.mtime_ns,
            }
        }
        if touched { EntryState::Touched(Box::new(m)) } else { EntryState::Present(Box::new(m)) }
    }

    /// Hash every file of an entry against its manifest.
    pub fn verify(&self, key: &str) -> Result<Manifest, String> {
        let m = match self.state(key) {
            EntryState::Missing => return Err("no such entry".into()),
            EntryState::Damaged(why) => return Err(why),
            EntryState::Present(m) | EntryState::Touched(m) => *m,
        };
        let dir = self.entry_dir(key);
        for f in &m.files {
            let got = hash_file(&dir.join(&f.name)).map_err(|e| format!("{}: {e}", f.name))?;
            if got != f.blake3 {
                return Err(format!(
                    "{} does not hash to what the manifest records (blake3 {}… vs {}…)",
                    f.name,
                    &got[..12],
                    &f.blake3[..12]
                ));
            }
            // the footer, not the manifest, says what the part is
            let (_, rows, meta) = read_footer(&dir.join(&f.name)).map_err(|e| format!("{}: {e}", f.name))?;
            if rows != f.rows {
                return Err(format!("{} holds {rows} rows, the manifest says {}", f.name, f.rows));
            }
            let footer_key = meta.iter().find(|(k, _)| k == "saeflow.key").map(|(_, v)| v.as_str());
            if footer_key != Some(key) {
                return Err(format!("{} was written for key {}, not {key}", f.name, footer_key.unwrap_or("(none)")));
            }
        }
        Ok(m)
    }

    /// Hash one file of an entry against its manifest before a command reads it (`show`, the
    /// notebook: they read a part or two, so they hash what they read, not the whole entry).
    pub fn checked_file(&self, key: &str, f: &FileRecord) -> Result<PathBuf, EngineError> {
        let p = self.entry_dir(key).join(&f.name);
        let got = hash_file(&p).map_err(|e| EngineError::io(&p, e))?;
        if got != f.blake3 {
            return Err(EngineError::Corrupt(format!(
                "{key}/{}: does not hash to what its manifest records; `saeflow run` moves the entry aside and recomputes it",
                f.name
            )));
        }
        let (_, rows, meta) = read_footer(&p)?;
        let footer_key = meta.iter().find(|(k, _)| k == "saeflow.key").map(|(_, v)| v.as_str());
        if rows != f.rows || footer_key != Some(key) {
            return Err(EngineError::Corrupt(format!(
                "{key}/{}: its footer ({rows} rows, key {}) disagrees with the manifest ({} rows); `saeflow run` recomputes it",
                f.name,
                footer_key.unwrap_or("none"),
                f.rows
            )));
        }
        Ok(p)
    }

    /// After a verified copy or import, record the files' new mtimes so the cheap check passes.
    pub fn refresh_mtimes(&self, key: &str, mut m: Manifest) -> Result<(), EngineError> {
        let dir = self.entry_dir(key);
        for f in &mut m.files {
            let p = dir.join(&f.name);
            f.mtime_ns = mtime_ns(&fs::metadata(&p).map_err(|e| EngineError::io(&p, e))?);
        }
        let bytes = serde_json::to_vec_pretty(&m).map_err(|e| EngineError::Other(e.to_string()))?;
        write_atomic(&dir.join(MANIFEST), &bytes)
    }

    /// Move a damaged entry aside (kept for inspection under `.corrupt/`) so it is recomputed.
    pub fn quarantine(&self, key: &str) -> Result<PathBuf, EngineError> {
        self.move_aside(key, ".corrupt")
    }

    /// Rename an entry folder to a fresh name under `<cache>/<place>/`.
    fn move_aside(&self, key: &str, place: &str) -> Result<PathBuf, EngineError> {
        let dir = self.root.join(place);
        fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let mut n = 0;
        let target = loop {
            let t = dir.join(format!("{key}.{n}"));
            if !t.exists() {
                break t;
            }
            n += 1;
        };
        let src = self.entry_dir(key);
        fs::rename(&src, &target).map_err(|e| EngineError::io(&src, e))?;
        Ok(target)
    }

    /// Block until this process holds the key's lock (to compute, publish, quarantine or remove it).
    pub fn lock(&self, key: &str) -> Result<KeyLock, EngineError> {
        let path = self.root.join(".locks").join(format!("{key}.lock"));
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| EngineError::io(&path, e))?;
        file.lock().map_err(|e| EngineError::io(&path, e))?;
        Ok(KeyLock { _file: file })
    }

    /// Block until this process holds a shared lock on the key: held while a stage reads the entry,
    /// so `gc` (which only removes what it can lock exclusively) leaves it alone, while other
    /// readers go on.
    pub fn lock_shared(&self, key: &str) -> Result<KeyLock, EngineError> {
        let path = self.root.join(".locks").join(format!("{key}.lock"));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
        }
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| EngineError::io(&path, e))?;
        file.lock_shared().map_err(|e| EngineError::io(&path, e))?;
        Ok(KeyLock { _file: file })
    }

    /// Take the key's lock only if nobody holds it (`gc` skips what a run is using).
    pub fn try_lock(&self, key: &str) -> Result<Option<KeyLock>, EngineError> {
        let path = self.root.join(".locks").join(format!("{key}.lock"));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
        }
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| EngineError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(EngineError::io(&path, e)),
        }
    }

    /// Lock a cache-wide file (history, memo) for a read-modify-write.
    pub fn lock_named(&self, name: &str) -> Result<KeyLock, EngineError> {
        self.lock(&format!("_{name}"))
    }

    /// Describe the files of a finished temporary folder: sizes, mtimes, hashes, rows.
    pub fn describe_parts(&self, tmp: &Path, rows: &[(String, u64)]) -> Result<Vec<FileRecord>, EngineError> {
        let mut files = Vec::new();
        for (name, r) in rows {
            let p = tmp.join(name);
            let meta = fs::metadata(&p).map_err(|e| EngineError::io(&p, e))?;
            files.push(FileRecord {
                name: name.clone(),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                blake3: hash_file(&p).map_err(|e| EngineError::io(&p, e))?,
                rows: *r,
            });
        }
        Ok(files)
    }

    /// Publish the entries of one job: every manifest written into its temporary folder, then one
    /// sync of the cache's filesystem (the parts, which `PartWriter` leaves unsynced, and the
    /// manifests reach the disk together), then each folder renamed into place and the cache
    /// folder synced once. A crash before the sync leaves temporary folders only; a power cut
    /// after it, entries whose files are on disk. (Per-file fsyncs cost the first demo run more
    /// time in the kernel than in its computation: docs/PERF.md.)
    pub fn publish_all(&self, entries: &[(&Manifest, bool)]) -> Result<(), EngineError> {
        if entries.is_empty() {
            return Ok(());
        }
        for (m, _) in entries {
            let tmp = self.tmp_dir(&m.key);
            let bytes = serde_json::to_vec_pretty(m).map_err(|e| EngineError::Other(e.to_string()))?;
            let (partial, done) = (tmp.join(format!("{MANIFEST}.partial")), tmp.join(MANIFEST));
            fs::write(&partial, &bytes).map_err(|e| EngineError::io(&partial, e))?;
            fs::rename(&partial, &done).map_err(|e| EngineError::io(&done, e))?;
        }
        sync_filesystem(
            &self.root,
            entries.iter().flat_map(|(m, _)| {
                let tmp = self.tmp_dir(&m.key);
                m.files.iter().map(move |f| tmp.join(&f.name)).chain([self.tmp_dir(&m.key).join(MANIFEST), self.tmp_dir(&m.key)])
            }),
        );
        for (m, replace) in entries {
            self.rename_into_place(m, *replace)?;
        }
        sync_dir(&self.root);
        Ok(())
    }

    /// Publish one entry (an import): [`Cache::publish_all`] of it alone. The caller holds the
    /// key's lock. An entry already there is `replace`d (a forced recompute: the good old entry
    /// stayed in place until now, and leaves by rename just before the new one arrives by rename)
    /// or, otherwise, is a damaged leftover and kept aside.
    pub fn publish(&self, m: &Manifest, replace: bool) -> Result<(), EngineError> {
        self.publish_all(&[(m, replace)])
    }

    /// Rename an entry's finished temporary folder into place (the caller made it durable).
    fn rename_into_place(&self, m: &Manifest, replace: bool) -> Result<(), EngineError> {
        let tmp = self.tmp_dir(&m.key);
        let dst = self.entry_dir(&m.key);
        let mut old = None;
        if dst.exists() {
            if replace {
                old = Some(self.move_aside(&m.key, ".trash")?);
            } else {
                self.quarantine(&m.key)?;
            }
        }
        fs::rename(&tmp, &dst).map_err(|e| EngineError::io(&dst, e))?;
        if let Some(old) = old {
            let _ = fs::remove_dir_all(old);
        }
        Ok(())
    }

    /// Drop a finished temporary folder whose entry is already published (a sibling output
    /// recomputed with the one that was missing: same key, same bytes).
    pub fn discard_tmp(&self, key: &str) -> Result<(), EngineError> {
        let tmp = self.tmp_dir(key);
        fs::remove_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))
    }

    /// Remove an entry: renamed out of the cache first (one atomic step: it is there or gone, never
    /// half-removed for a reader), then deleted. The caller holds the key's lock.
    pub fn remove(&self, key: &str) -> Result<(), EngineError> {
        let moved = self.move_aside(key, ".trash")?;
        fs::remove_dir_all(&moved).map_err(|e| EngineError::io(&moved, e))
    }

    /// Every published entry's key.
    pub fn keys(&self) -> Result<Vec<String>, EngineError> {
        let mut keys = BTreeSet::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::io(&self.root, e)),
        };
        for e in rd {
            let e = e.map_err(|e| EngineError::io(&self.root, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if is_key(&name) && e.path().is_dir() {
                keys.insert(name);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Keys with a temporary (unfinished) folder.
    pub fn tmp_keys(&self) -> Vec<String> {
        fs::read_dir(self.root.join(".tmp"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| is_key(n)).collect())
            .unwrap_or_default()
    }

    /// Total bytes of an entry's files.
    pub fn size_of(&self, m: &Manifest) -> u64 {
        m.files.iter().map(|f| f.size).sum()
    }
}

/// fsync a folder so renames inside it are durable (best effort: not every filesystem allows it).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// fsync one file (best effort, as [`sync_dir`]).
fn sync_file(path: &Path) {
    if let Ok(f) = File::open(path) {
        let _ = f.sync_all();
    }
}

/// Make `paths` (files and folders on the filesystem of `root`) durable: one `syncfs` of that
/// filesystem on Linux, an fsync of each elsewhere (or where `syncfs` fails).
fn sync_filesystem(root: &Path, paths: impl Iterator<Item = PathBuf>) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(d) = File::open(root) {
            // SAFETY: a valid open descriptor; syncfs only reads it.
            if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
                return;
            }
        }
    }
    let _ = root;
    for p in paths {
        if p.is_dir() { sync_dir(&p) } else { sync_file(&p) }
    }
}

/// Entry folder names are lowercase hex keys.
pub fn is_key(name: &str) -> bool {
    name.len() == crate::plan::key::KEY_LEN && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
