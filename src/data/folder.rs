//! Class-per-subfolder image folders (torchvision's `ImageFolder`, ImageNet's `train/<wnid>/…`).
//!
//! - Splits: when the root holds a `train`, `test`, `val` or `validation` folder, each is a split
//!   (`val`/`validation` count as test) with class folders inside; otherwise the root's folders are
//!   the classes and every record is train.
//! - Labels: the distinct class-folder names of all splits, sorted by bytes; label = position.
//!   Names are the folder names or, with a synset mapping file (`wnid<TAB or space>name` lines,
//!   like ImageNet's `LOC_synset_mapping.txt`), the mapped names.
//! - Records: files under each class folder (recursively), ordered by relative path bytes; a file
//!   counts when its extension (any case) is one saeflow decodes: jpg, jpeg, jpe, jfif, png, gif,
//!   bmp, tif, tiff, webp. Files directly in the root and other files are skipped. Listing uses
//!   `read_dir` entries only (no stat per file, no decoding), so 1.28 M files list in seconds;
//!   a broken image is listed and fails when read. `source` = the relative path (`/`-separated).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{DataError, ImageSource, Record, Rgb8, Split, decode_rgb8, number};

/// Extensions of the files an image folder lists (compared in lowercase).
pub const IMAGE_EXTENSIONS: [&str; 10] = ["jpg", "jpeg", "jpe", "jfif", "png", "gif", "bmp", "tif", "tiff", "webp"];

pub struct ImageFolder {
    root: PathBuf,
    /// Relative path per image id.
    paths: Vec<PathBuf>,
    records: Vec<Record>,
    names: Vec<String>,
}

fn is_image(name: &OsString) -> bool {
    let n = name.to_string_lossy();
    n.rsplit_once('.').is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Whether a directory entry is a folder (following a symlink only when the entry is one).
fn is_dir(e: &fs::DirEntry) -> Result<bool, DataError> {
    let t = e.file_type().map_err(|err| DataError::io(&e.path(), err))?;
    Ok(t.is_dir() || (t.is_symlink() && e.path().is_dir()))
}

/// Sub-folder names of `dir`, sorted by bytes.
fn subfolders(dir: &Path) -> Result<Vec<OsString>, DataError> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        if is_dir(&e)? {
            v.push(e.file_name());
        }
    }
    v.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(v)
}

/// Image files under `dir`, recursively, as paths relative to `dir`, sorted by bytes. Each
/// folder is read once: one reached again through a symlink (a link back up, or a second link to
/// it) is skipped, so the folders are walked in name order and each lists its images at the
/// first path it is reached by. (The plan's fingerprint walks the same way and counts such
/// links, so they are part of the dataset's identity.)
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let mut walked = BTreeSet::new();
    walk_images(dir, PathBuf::new(), &mut walked, &mut out)?;
    out.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    Ok(out)
}

fn walk_images(dir: &Path, rel: PathBuf, walked: &mut BTreeSet<(u64, u64)>, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let d = dir.join(&rel);
    if let Some(id) = folder_id(&d)?
        && !walked.insert(id)
    {
        return Ok(());
    }
    let mut folders = Vec::new();
    for e in fs::read_dir(&d).map_err(|e| DataError::io(&d, e))? {
        let e = e.map_err(|e| DataError::io(&d, e))?;
        let name = e.file_name();
        if is_dir(&e)? {
            folders.push(name);
        } else if is_image(&name) {
            out.push(rel.join(&name));
        }
    }
    folders.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in folders {
        walk_images(dir, rel.join(name), walked, out)?;
    }
    Ok(())
}

/// A folder's (device, inode), following symlinks; `None` where the platform has none.
fn folder_id(dir: &Path) -> Result<Option<(u64, u64)>, DataError> {
    let meta = fs::metadata(dir).map_err(|e| DataError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some((meta.dev(), meta.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(None)
    }
}

/// `wnid name` lines (tab or space separated; the name is the rest of the line).
pub fn read_synsets(path: &Path) -> Result<BTreeMap<String, String>, DataError> {
    let text = fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, name)) = line.split_once(|c: char| c.is_whitespace()) else {
            return Err(DataError::Layout(format!("{}:{}: expected `<folder name> <class name>`, got '{line}'", path.display(), i + 1)));
        };
        map.insert(id.to_string(), name.trim().to_string());
    }
    Ok(map)
}

impl ImageFolder {
    pub fn open(root: &Path, synsets: Option<&Path>) -> Result<ImageFolder, DataError> {
        let top = subfolders(root)?;
        let split_of = |n: &OsString| match n.to_str() {
            Some("train") => Some(Split::Train),
            Some("test" | "val" | "validation") => Some(Split::Test),
            _ => None,
        };
        // (split, folder holding its class folders)
        let mut splits: Vec<(Split, PathBuf)> = top.iter().filter_map(|n| split_of(n).map(|s| (s, root.join(n)))).collect::<Vec<_>>();
        if splits.iter().filter(|(s, _)| *s == Split::Test).count() > 1 {
            return Err(DataError::Layout(format!(
                "{}: more than one of test/, val/, validation/; keep one (saeflow reads it as the test split)",
                root.display()
            )));
        }
        if splits.is_empty() {
            splits.push((Split::Train, root.to_path_buf()));
        }
        splits.sort();
        let per_split: Vec<(Split, PathBuf, Vec<OsString>)> =
            splits.into_iter().map(|(s, d)| subfolders(&d).map(|c| (s, d, c))).collect::<Result<_, _>>()?;
        let classes: Vec<OsString> =
            per_split.iter().flat_map(|(_, _, c)| c.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>();
        let mut classes = classes;
        classes.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        if classes.is_empty() {
            return Err(DataError::Layout(format!(
                "{}: no class folders; expected <class>/<image> (or train/<class>/<image>, test/<class>/<image>)",
                root.display()
            )));
        }
        if classes.len() > usize::from(u16::MAX) + 1 {
            return Err(DataError::Layout(format!("{}: {} class folders; at most 65536 fit", root.display(), classes.len())));
        }
        let folder_names: Vec<String> = classes.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        let names = match synsets {
            None => folder_names,
            Some(p) => {
                let map = read_synsets(p)?;
                let missing: Vec<&str> = folder_names.iter().filter(|f| !map.contains_key(*f)).map(String::as_str).collect();
                if !missing.is_empty() {
                    return Err(DataError::Layout(format!(
                        "{}: no name for class folder{} {}; add `<folder> <name>` lines or drop `label_names`",
                        p.display(),
                        if missing.len() > 1 { "s" } else { "" },
                        missing.iter().take(5).map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ")
                    )));
                }
                folder_names.iter().map(|f| map[f].clone()).collect()
            }
        };
        let mut paths = Vec::new();
        let mut labels = Vec::new();
        for (split, dir, class_dirs) in &per_split {
            let prefix = dir.strip_prefix(root).unwrap_or(Path::new(""));
            for c in class_dirs {
                let label = classes.binary_search_by(|x| x.as_encoded_bytes().cmp(c.as_encoded_bytes())).unwrap_or_default() as u16;
                for f in image_files(&dir.join(c))? {
                    paths.push(prefix.join(c).join(f));
                    labels.push((*split, label));
                }
            }
        }
        Ok(ImageFolder { root: root.to_path_buf(), paths, records: number(labels)?, names })
    }
}

impl ImageSource for ImageFolder {
    fn records(&self) -> &[Record] {
        &self.records
    }

    fn label_names(&self) -> &[String] {
        &self.names
    }

    fn source(&self, image_id: u32) -> String {
        match self.paths.get(image_id as usize) {
            Some(p) => p.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
            None => format!("#{image_id}"),
        }
    }

    fn read(&self, image_id: u32) -> Result<Rgb8, DataError> {
        let rel = self.paths.get(image_id as usize).ok_or_else(|| DataError::image(self, image_id, "no such record"))?;
        let path = self.root.join(rel);
        let bytes = fs::read(&path).map_err(|e| DataError::image(self, image_id, e))?;
        decode_rgb8(&bytes).map_err(|e| DataError::image(self, image_id, e))
    }
}
