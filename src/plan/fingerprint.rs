//! Fingerprints of external inputs (files and folders a stage reads), memoised on disk by
//! path + size + mtime so that a no-op plan does not rehash gigabytes. Only content enters keys:
//! a dataset moved to another disk keeps its key.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

/// On-disk memo: absolute path → (size, mtime, fingerprint). Folders memoise each directory's
/// listing by the directory's own mtime, so a 1.28 M-file ImageNet tree is re-listed only where
/// something was added or removed.
#[derive(Default, Serialize, Deserialize)]
pub struct FingerprintMemo {
    files: BTreeMap<String, FileMemo>,
    dirs: BTreeMap<String, DirMemo>,
    #[serde(skip)]
    dirty: bool,
    #[serde(skip)]
    path: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, Clone)]
struct FileMemo {
    size: u64,
    mtime_ns: u128,
    blake3: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct DirMemo {
    mtime_ns: u128,
    /// Entry names, sorted by bytes.
    names: Vec<String>,
}

fn mtime_ns(meta: &fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0)
}

impl FingerprintMemo {
    /// Load the memo at `path` (missing or unreadable: start empty; it is only a cache).
    pub fn open(path: Option<PathBuf>) -> FingerprintMemo {
        let mut memo: FingerprintMemo =
            path.as_ref().and_then(|p| fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        memo.path = path;
        memo
    }

    /// The folder the memo is kept in (the cache, for every command), if it is kept.
    pub fn folder(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    /// Write the memo back if it changed (atomic replace; losing a race only costs a rehash).
    pub fn save(&mut self) {
        let (Some(path), true) = (&self.path, self.dirty) else { return };
        if let (Some(parent), Ok(bytes)) = (path.parent(), serde_json::to_vec(self)) {
            let _ = fs::create_dir_all(parent);
            let tmp = parent.join(format!(".fingerprints.{}.tmp", std::process::id()));
            if fs::write(&tmp, bytes).is_ok() {
                let _ = fs::rename(&tmp, path);
            }
        }
        self.dirty = false;
    }

    /// `file:blake3:<hex>` for a file, `dir:<hex>` for a folder (sorted relative paths and sizes).
    /// Symlinks are followed: a stage reads through them, so the content they lead to is what
    /// enters the key (the Hugging Face cache is made of them, and a dataset moved elsewhere and
    /// linked back keeps its key). Anything but a regular file or a folder (a device, a FIFO, a
    /// socket) is refused with [`std::io::ErrorKind::InvalidInput`]: it has no content to hash
    /// and reading it may never end. The message names no path when `path` itself is the
    /// culprit (`is a FIFO (named pipe), …`), and the entry relative to `path` when it is inside
    /// (`holds 'sub/pipe', a FIFO (named pipe), …`), so the caller can prefix the path as written.
    pub fn fingerprint(&mut self, path: &Path) -> std::io::Result<String> {
        let meta = fs::metadata(path)?;
        if meta.is_dir() {
            let mut hasher = blake3::Hasher::new();
            let mut walked = BTreeMap::new();
            if let Some(id) = dir_id(&meta) {
                walked.insert(id, String::new());
            }
            self.hash_dir(path, "", &mut hasher, 0, &mut walked)?;
            Ok(format!("dir:{}", &hasher.finalize().to_hex()[..32]))
        } else if let Some(what) = special_file(&meta) {
            Err(not_regular(format!("is {what}")))
        } else {
            Ok(format!("file:{}", self.file_hash(path, &meta)?))
        }
    }

    fn file_hash(&mut self, path: &Path, meta: &fs::Metadata) -> std::io::Result<String> {
        let key = path.display().to_string();
        let (size, mtime) = (meta.len(), mtime_ns(meta));
        if let Some(m) = self.files.get(&key)
            && m.size == size
            && m.mtime_ns == mtime
        {
            return Ok(m.blake3.clone());
        }
        let hex = hash_file(path)?;
        self.files.insert(key, FileMemo { size, mtime_ns: mtime, blake3: hex.clone() });
        self.dirty = true;
        Ok(hex)
    }

    /// Hash every file's relative path and size. A directory's *names* are memoised by its mtime
    /// (adding or removing a file changes it); sizes are read fresh on every plan, following
    /// symlinks (the Hugging Face cache is made of them). A same-size edit in place of a file in a
    /// folder is not seen: folders are identified by listing, not content (use `--force`).
    ///
    /// Each directory is read once: `walked` maps a directory's (device, inode) to the relative
    /// path it was first reached at (in name order), and a later arrival (a symlink loop, or a
    /// diamond of links to one folder) enters the hash as `path → first path` instead of being
    /// walked again. The fingerprint still determines everything a reader can see below the
    /// folder (the first walk's files and sizes, and where each alias leads), and a tree without
    /// such aliases hashes exactly as before.
    fn hash_dir(
        &mut self,
        dir: &Path,
        rel: &str,
        hasher: &mut blake3::Hasher,
        depth: usize,
        walked: &mut BTreeMap<(u64, u64), String>,
    ) -> std::io::Result<()> {
        if depth > 64 {
            return Err(std::io::Error::other(format!("'{rel}': folders nested more than 64 deep")));
        }
        let inside = |what: &str, e: std::io::Error| std::io::Error::other(format!("'{what}': {e}"));
        let meta = fs::metadata(dir).map_err(|e| inside(rel, e))?;
        let key = dir.display().to_string();
        let mtime = mtime_ns(&meta);
        let names = match self.dirs.get(&key) {
            Some(m) if m.mtime_ns == mtime => m.names.clone(),
            _ => {
                let mut names = Vec::new();
                for e in fs::read_dir(dir).map_err(|e| inside(rel, e))? {
                    names.push(e.map_err(|e| inside(rel, e))?.file_name().to_string_lossy().into_owned());
                }
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                self.dirs.insert(key, DirMemo { mtime_ns: mtime, names: names.clone() });
                self.dirty = true;
                names
            }
        };
        for name in names {
            let child = dir.join(&name);
            let child_rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let m = fs::metadata(&child).map_err(|e| inside(&child_rel, e))?; // follows symlinks
            if m.is_dir() {
                match dir_id(&m).map(|id| (walked.get(&id).cloned(), id)) {
                    Some((Some(first), _)) => {
                        // no file has u64::MAX bytes: this entry cannot read as a file's
                        hasher.update(child_rel.as_bytes());
                        hasher.update(&[0]);
                        hasher.update(&u64::MAX.to_le_bytes());
                        hasher.update(first.as_bytes());
                        hasher.update(&[0]);
                    }
                    seen => {
                        if let Some((_, id)) = seen {
                            walked.insert(id, child_rel.clone());
                        }
                        self.hash_dir(&child, &child_rel, hasher, depth + 1, walked)?;
                    }
                }
            } else if let Some(what) = special_file(&m) {
                return Err(not_regular(format!("holds '{child_rel}', {what}")));
            } else {
                hasher.update(child_rel.as_bytes());
                hasher.update(&[0]);
                hasher.update(&m.len().to_le_bytes());
            }
        }
        Ok(())
    }
}

/// A folder's identity on disk (device, inode), where the platform has one.
fn dir_id(meta: &fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// What a path is when it is neither a regular file nor a folder (symlinks already followed):
/// `a character device`, `a FIFO (named pipe)`, …; `None` for a file or a folder.
pub fn special_file(meta: &fs::Metadata) -> Option<&'static str> {
    if meta.is_file() || meta.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a file")
}

fn not_regular(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}, not a regular file or a folder"))
}

/// blake3 of a file's bytes, hex. Opened without blocking and checked to be a regular file
/// before it is read, so a path swapped for a FIFO or a device fails instead of hanging.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut f = options.open(path)?;
    if let Some(what) = special_file(&f.metadata()?) {
        return Err(not_regular(format!("is {what}")));
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_not_location_decides_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        fs::write(&a, b"hello").unwrap();
        fs::write(&b, b"hello").unwrap();
        let mut memo = FingerprintMemo::open(None);
        assert_eq!(memo.fingerprint(&a).unwrap(), memo.fingerprint(&b).unwrap());
        fs::write(&b, b"hellO").unwrap();
        assert_ne!(memo.fingerprint(&a).unwrap(), memo.fingerprint(&b).unwrap());
    }

    #[test]
    fn folder_fingerprint_sees_added_files_and_is_memoised() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("cls_a")).unwrap();
        fs::write(data.join("cls_a/1.jpg"), b"x").unwrap();
        let memo_path = dir.path().join("memo.json");
        let mut memo = FingerprintMemo::open(Some(memo_path.clone()));
        let f1 = memo.fingerprint(&data).unwrap();
        memo.save();
        let mut memo = FingerprintMemo::open(Some(memo_path));
        assert_eq!(memo.fingerprint(&data).unwrap(), f1);
        assert!(!memo.dirty, "an unchanged tree is answered from the memo");
        fs::write(data.join("cls_a/2.jpg"), b"y").unwrap();
        let f2 = memo.fingerprint(&data).unwrap();
        assert_ne!(f2, f1);
        // a file rewritten in place with another size changes it even though no folder mtime moved
        fs::write(data.join("cls_a/2.jpg"), b"yyyy").unwrap();
        assert_ne!(memo.fingerprint(&data).unwrap(), f2);
        // and the fresh memo agrees with a cold one: fingerprints never depend on memo history
        assert_eq!(memo.fingerprint(&data).unwrap(), FingerprintMemo::open(None).fingerprint(&data).unwrap());
    }

    #[test]
    fn symlinked_files_and_folders_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir_all(real.join("sub")).unwrap();
        fs::write(real.join("sub/w.bin"), b"weights").unwrap();
        let linked = dir.path().join("linked");
        fs::create_dir_all(&linked).unwrap();
        std::os::unix::fs::symlink(real.join("sub"), linked.join("sub")).unwrap();
        let mut memo = FingerprintMemo::open(None);
        assert_eq!(memo.fingerprint(&real).unwrap(), memo.fingerprint(&linked).unwrap());
    }

    #[test]
    fn a_folder_reached_twice_is_walked_once_and_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().join("ds");
        fs::create_dir_all(ds.join("a")).unwrap();
        fs::write(ds.join("a/x.bin"), b"x").unwrap();
        let mut memo = FingerprintMemo::open(None);
        let plain = memo.fingerprint(&ds).unwrap();
        // a second link to `a` (a diamond) and two links back to the root (a loop)
        std::os::unix::fs::symlink("a", ds.join("b")).unwrap();
        let diamond = memo.fingerprint(&ds).unwrap();
        assert_ne!(diamond, plain, "a reader sees b/x.bin too: the alias enters the fingerprint");
        std::os::unix::fs::symlink(".", ds.join("l1")).unwrap();
        std::os::unix::fs::symlink(".", ds.join("l2")).unwrap();
        let looped = memo.fingerprint(&ds).unwrap();
        assert_ne!(looped, diamond);
        assert_eq!(looped, FingerprintMemo::open(None).fingerprint(&ds).unwrap(), "deterministic, memo or not");
        // where the alias leads counts, not only that there is one
        fs::create_dir_all(ds.join("c")).unwrap();
        fs::write(ds.join("c/x.bin"), b"y").unwrap();
        fs::remove_file(ds.join("b")).unwrap();
        std::os::unix::fs::symlink("c", ds.join("b")).unwrap();
        let other = memo.fingerprint(&ds).unwrap();
        fs::remove_file(ds.join("b")).unwrap();
        std::os::unix::fs::symlink("a", ds.join("b")).unwrap();
        assert_ne!(memo.fingerprint(&ds).unwrap(), other);
    }

    #[test]
    fn devices_are_refused_without_being_read() {
        // on another thread with a deadline: a regression reads /dev/zero forever
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let e = FingerprintMemo::open(None).fingerprint(Path::new("/dev/zero")).unwrap_err();
            let _ = tx.send((e.kind(), e.to_string(), hash_file(Path::new("/dev/zero")).unwrap_err().kind()));
        });
        let (kind, text, direct) = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("/dev/zero is read instead of refused");
        assert_eq!(kind, std::io::ErrorKind::InvalidInput);
        assert_eq!(text, "is a character device, not a regular file or a folder");
        assert_eq!(direct, std::io::ErrorKind::InvalidInput);
    }
}
