//! Reports: the study's figures and tables as a self-contained HTML page (the `report` stage),
//! and the whole pipeline as a notebook (`saeflow report`). Rendering only — no printing, no
//! stage logic: both read tables into a [`study::Study`] and draw from it, so they agree.
//!
//! - `table.rs`: [`table::Table`] of [`table::Cell`]s — CSV, Arrow, typed columns;
//! - `html.rs`: escaping, the page skeleton and its inline CSS, HTML tables;
//! - `study.rs`: probe results, SAE health and class features read from record batches;
//! - `repeats.rs`: variants repeated over a `seed` axis, as mean ± sample sd;
//! - `figures/`: what each plot draws, and the data table behind it;
//! - `draw.rs`: how plots are drawn (plotters: SVG, and PNG);
//! - `glyphs.rs`: bitmap text in the embedded DejaVu Sans (ab_glyph), and text measurement;
//! - `page.rs`: the report stage's folder (`index.html`, `*.svg`, `*.png`, `*.csv`);
//! - `notebook.rs`: one cell per plan instance, from the cache.

pub mod draw;
pub mod figures;
pub mod glyphs;
pub mod html;
pub mod notebook;
pub mod page;
pub mod repeats;
pub mod study;
pub mod table;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::engine::EngineError;
use crate::engine::table::write_atomic;

/// Input slots of the `report` kind (the stage declares them; the notebook reads them back).
pub const SLOT_METRICS: &str = "metrics";
pub const SLOT_HEALTH: &str = "health";
pub const SLOT_CLASSES: &str = "classes";
pub const SLOT_CLEAN: &str = "clean";
pub const SLOT_COEFFICIENTS: &str = "coefficients";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A gathered table is not what the report reads.
    #[error("{what}: {problem}")]
    Table { what: String, problem: String },
    #[error("figure '{name}': {message}")]
    Figure { name: String, message: String },
    /// The report folder's path leads elsewhere than when the plan checked it.
    #[error(
        "report folder '{}' changed since the plan checked it: '{}' is now a symlink to '{}'; nothing was written \
         (run again: the plan checks where the folder leads now)",
        dir.display(), via.display(), to.display()
    )]
    Moved { dir: PathBuf, via: PathBuf, to: PathBuf },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The list of files the last render wrote into a report folder (one name per line), so the
/// next render removes the ones it no longer writes and nothing else.
pub const LISTING: &str = ".saeflow-report";

/// Write rendered files into `dir` (created if needed), each through a temporary file and a
/// rename; files an earlier render listed and this one does not write are removed. Files the
/// report did not write are never touched.
///
/// `dir` is the real path the plan resolved and checked (inside the project, no symlink on the
/// way: `plan::resolve`'s output folders). A symlink that appeared on that way since (the run
/// took hours) is refused before anything is created, and again once the folder exists.
pub fn write_folder(dir: &Path, files: &std::collections::BTreeMap<String, Vec<u8>>, stamp: &str) -> Result<(), ReportError> {
    still_planned(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    still_planned(dir)?;
    let listing = dir.join(LISTING);
    let before: BTreeSet<String> = std::fs::read_to_string(&listing).unwrap_or_default().lines().map(str::to_string).collect();
    for (name, bytes) in files {
        write_atomic(&dir.join(name), bytes)?;
    }
    for stale in before.iter().filter(|n| !files.contains_key(*n)) {
        // only plain names the report wrote itself
        if !stale.is_empty() && !stale.contains(['/', '\\']) && stale != ".." {
            let p = dir.join(stale);
            if p.is_file() {
                std::fs::remove_file(&p).map_err(|e| EngineError::io(&p, e))?;
            }
        }
    }
    let names: String = files.keys().map(|k| format!("{k}\n")).collect();
    write_atomic(&listing, names.as_bytes())?;
    // last: the key of the entry the folder now shows (a folder whose stamp is not the cached
    // entry's key is rewritten by the next run)
    write_atomic(&dir.join(crate::engine::status::FOLDER_STAMP), stamp.as_bytes())?;
    Ok(())
}

/// The existing part of `dir` holds no symlink (so it leads where the plan checked it leads).
fn still_planned(dir: &Path) -> Result<(), ReportError> {
    let mut way = PathBuf::new();
    for c in dir.components() {
        way.push(c);
        match std::fs::symlink_metadata(&way) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&way).map_err(|e| EngineError::io(&way, e))?;
                return Err(ReportError::Moved { dir: dir.to_path_buf(), via: way, to });
            }
            Ok(_) => {}
            // the rest is created by this write
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerender_removes_only_its_own_stale_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap(); // as the plan resolves it
        let files = |names: &[&str]| names.iter().map(|n| (n.to_string(), n.as_bytes().to_vec())).collect();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        write_folder(&dir, &files(&["index.html", "a.svg", "a.csv"]), "k1").unwrap();
        write_folder(&dir, &files(&["index.html", "b.svg"]), "k2").unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [crate::engine::status::FOLDER_STAMP, LISTING, "b.svg", "index.html", "notes.txt"]);
        assert_eq!(std::fs::read_to_string(dir.join(crate::engine::status::FOLDER_STAMP)).unwrap(), "k2");
    }
}
