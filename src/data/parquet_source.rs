//! Parquet files holding encoded images: an image column (binary, or a struct with a `bytes`
//! field, as the hub's `Image` feature stores it) and a label column (integer or string).
//!
//! - Files: a single file, or every `*.parquet` under a folder, ordered by relative path bytes.
//!   A file whose name starts with `train` is train, with `test`, `val` or `validation` test;
//!   when no name says, everything is train. Train files are listed first, then test files.
//! - Labels: integer labels keep their value; their names come from the `huggingface` schema
//!   metadata that `datasets` writes (a `ClassLabel`'s `names`) or, without it, are the number
//!   itself. String labels are numbered in sorted (byte) order of the distinct names.
//! - Listing reads the label column only; an image is read on demand, one row group at a time
//!   (the last one is cached, so reading in id order reads each row group once).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::{Array, ArrayRef, BinaryArray, Int64Array, LargeBinaryArray, StringArray, StructArray};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{DataError, ImageSource, Record, Rgb8, Split, decode_rgb8, number};

/// One Parquet file of a source.
#[derive(Debug)]
struct PqFile {
    path: PathBuf,
    /// Shown in `source` strings: the path relative to the dataset root.
    rel: String,
    /// First image id of the file.
    start: u32,
    /// Row count of each row group.
    row_groups: Vec<usize>,
}

type RowGroup = Arc<Vec<Option<Vec<u8>>>>;

pub struct ParquetSource {
    files: Vec<PqFile>,
    records: Vec<Record>,
    names: Vec<String>,
    /// Whether the names came from the files (metadata or string labels) rather than numbers.
    named: bool,
    image_column: String,
    cache: Mutex<Option<(usize, usize, RowGroup)>>,
}

/// The split a file's name implies.
fn split_of(name: &str) -> Option<Split> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("train") {
        Some(Split::Train)
    } else if n.starts_with("test") || n.starts_with("val") {
        Some(Split::Test)
    } else {
        None
    }
}

/// `*.parquet` files under `dir` (recursive), relative path bytes order.
fn parquet_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, DataError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| DataError::io(&d, e))? {
            let e = e.map_err(|e| DataError::io(&d, e))?;
            let p = e.path();
            if e.file_type().map_err(|err| DataError::io(&p, err))?.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                out.push((p, rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
    Ok(out)
}

/// Order files by split (train first), classifying them by name.
pub(crate) fn classify(files: Vec<(PathBuf, String)>, root: &Path) -> Result<Vec<(PathBuf, String, Split)>, DataError> {
    let splits: Vec<Option<Split>> = files.iter().map(|(p, _)| split_of(&p.file_name().unwrap_or_default().to_string_lossy())).collect();
    if splits.iter().all(Option::is_none) {
        return Ok(files.into_iter().map(|(p, r)| (p, r, Split::Train)).collect());
    }
    if let Some(i) = splits.iter().position(Option::is_none) {
        return Err(DataError::Layout(format!(
            "{}: cannot tell the split of '{}' while other files name theirs; name files train-*.parquet, test-*.parquet (or val-*), or point `path` at one file",
            root.display(),
            files[i].1
        )));
    }
    let mut v: Vec<(PathBuf, String, Split)> = files.into_iter().zip(splits).map(|((p, r), s)| (p, r, s.unwrap_or(Split::Train))).collect();
    v.sort_by_key(|f| f.2); // stable: path order within a split
    Ok(v)
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, DataError> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| DataError::Layout(format!("{}: not a readable parquet file: {e}", path.display())))
}

/// The root column index of `name`, or an error listing the columns there are.
fn root_index(b: &ParquetRecordBatchReaderBuilder<File>, name: &str, param: &str, path: &Path) -> Result<usize, DataError> {
    let fields = b.parquet_schema().root_schema().get_fields();
    fields.iter().position(|f| f.name() == name).ok_or_else(|| {
        let have: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        DataError::Layout(format!("{}: no column '{name}' (set by `{param}`); the file has: {}", path.display(), have.join(", ")))
    })
}

/// Names of an integer label column from the `huggingface` metadata (`ClassLabel.names`).
fn hf_label_names(b: &ParquetRecordBatchReaderBuilder<File>, column: &str) -> Option<Vec<String>> {
    let kv = b.metadata().file_metadata().key_value_metadata()?;
    let text = kv.iter().find(|k| k.key == "huggingface")?.value.as_ref()?;
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let names = json.get("info")?.get("features")?.get(column)?.get("names")?.as_array()?;
    names.iter().map(|n| n.as_str().map(str::to_string)).collect()
}

enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl ParquetSource {
    /// A file, or every Parquet file under a folder (splits from the file names).
    pub fn open_path(path: &Path, image_column: &str, label_column: &str) -> Result<ParquetSource, DataError> {
        let files = if path.is_dir() {
            let f = parquet_files(path)?;
            if f.is_empty() {
                return Err(DataError::Layout(format!("{}: no *.parquet file in this folder", path.display())));
            }
            classify(f, path)?
        } else {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            vec![(path.to_path_buf(), name.clone(), split_of(&name).unwrap_or(Split::Train))]
        };
        ParquetSource::open(files, image_column, label_column)
    }

    /// These files, in this order, with these splits.
    pub fn open(files: Vec<(PathBuf, String, Split)>, image_column: &str, label_column: &str) -> Result<ParquetSource, DataError> {
        let mut pq_files = Vec::new();
        let mut labels: Vec<(Split, Labels)> = Vec::new();
        let mut meta_names: Option<Vec<String>> = None;
        let mut start = 0u64;
        for (path, rel, split) in files {
            let b = builder(&path)?;
            root_index(&b, image_column, "image_column", &path)?;
            let li = root_index(&b, label_column, "label_column", &path)?;
            if meta_names.is_none() {
                meta_names = hf_label_names(&b, label_column);
            }
            let row_groups: Vec<usize> = b.metadata().row_groups().iter().map(|rg| rg.num_rows() as usize).collect();
            let mask = ProjectionMask::roots(b.parquet_schema(), [li]);
            let reader = b
                .with_projection(mask)
                .build()
                .map_err(|e| DataError::Layout(format!("{}: cannot read column '{label_column}': {e}", path.display())))?;
            let mut col = None;
            for batch in reader {
                let batch = batch.map_err(|e| DataError::Layout(format!("{}: {e}", path.display())))?;
                col = Some(append_labels(col, batch.column(0), label_column, &path)?);
            }
            let col = col.unwrap_or(Labels::Ints(Vec::new()));
            let n = match &col {
                Labels::Ints(v) => v.len(),
                Labels::Strings(v) => v.len(),
            };
            pq_files.push(PqFile { path, rel, start: start as u32, row_groups });
            start += n as u64;
            if start > u64::from(u32::MAX) {
                return Err(DataError::Layout("more than 4 294 967 295 records".into()));
            }
            labels.push((split, col));
        }
        let (per_record, names, named) = resolve_labels(labels, meta_names, label_column)?;
        Ok(ParquetSource {
            files: pq_files,
            records: number(per_record)?,
            names,
            named,
            image_column: image_column.to_string(),
            cache: Mutex::new(None),
        })
    }

    /// Whether label names came from the files (not just the label numbers).
    pub fn has_names(&self) -> bool {
        self.named
    }

    /// Replace the label names (a reader that knows its dataset's names better). Every label
    /// must have a name.
    pub fn set_label_names(&mut self, names: Vec<String>) -> Result<(), DataError> {
        if let Some(r) = self.records.iter().find(|r| usize::from(r.label) >= names.len()) {
            return Err(DataError::Layout(format!(
                "image {} ({}): label {} has no name; {} names known",
                r.image_id,
                self.source(r.image_id),
                r.label,
                names.len()
            )));
        }
        self.names = names;
        self.named = true;
        Ok(())
    }

    /// Locate an image id: (file index, row group, row within it).
    fn locate(&self, image_id: u32) -> Option<(usize, usize, usize)> {
        let fi = self.files.partition_point(|f| f.start <= image_id).checked_sub(1)?;
        let mut row = (image_id - self.files[fi].start) as usize;
        for (gi, &n) in self.files[fi].row_groups.iter().enumerate() {
            if row < n {
                return Some((fi, gi, row));
            }
            row -= n;
        }
        None
    }

    fn row_group(&self, fi: usize, gi: usize) -> Result<RowGroup, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((f, g, rows)) = cache.as_ref()
            && (*f, *g) == (fi, gi)
        {
            return Ok(rows.clone());
        }
        let file = &self.files[fi];
        let b = builder(&file.path).map_err(|e| e.to_string())?;
        let ii = root_index(&b, &self.image_column, "image_column", &file.path).map_err(|e| e.to_string())?;
        let mask = ProjectionMask::roots(b.parquet_schema(), [ii]);
        let reader = b.with_projection(mask).with_row_groups(vec![gi]).build().map_err(|e| e.to_string())?;
        let mut rows = Vec::with_capacity(file.row_groups[gi]);
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            append_images(&mut rows, batch.column(0))?;
        }
        let rows = Arc::new(rows);
        *cache = Some((fi, gi, rows.clone()));
        Ok(rows)
    }
}

fn append_labels(acc: Option<Labels>, col: &ArrayRef, name: &str, path: &Path) -> Result<Labels, DataError> {
    let bad = |what: String| DataError::Layout(format!("{}: label column '{name}' {what}", path.display()));
    let is_int = col.data_type().is_integer();
    let is_str = matches!(col.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..));
    if !is_int && !is_str {
        return Err(bad(format!("has type {}; expected integers or strings", col.data_type())));
    }
    if let Some(i) = (0..col.len()).find(|&i| col.is_null(i)) {
        return Err(bad(format!("is null at row {i} (within its batch); every record needs a label")));
    }
    match (acc, is_int) {
        (acc @ (None | Some(Labels::Ints(_))), true) => {
            let cast = arrow_cast::cast(col, &DataType::Int64).map_err(|e| bad(e.to_string()))?;
            let ints = cast.as_any().downcast_ref::<Int64Array>().ok_or_else(|| bad("did not cast to int64".into()))?;
            let mut v = match acc {
                Some(Labels::Ints(v)) => v,
                _ => Vec::new(),
            };
            v.extend(ints.values().iter().copied());
            Ok(Labels::Ints(v))
        }
        (acc @ (None | Some(Labels::Strings(_))), false) => {
            let cast = arrow_cast::cast(col, &DataType::Utf8).map_err(|e| bad(e.to_string()))?;
            let s = cast.as_any().downcast_ref::<StringArray>().ok_or_else(|| bad("did not cast to utf8".into()))?;
            let mut v = match acc {
                Some(Labels::Strings(v)) => v,
                _ => Vec::new(),
            };
            v.extend(s.iter().map(|x| x.unwrap_or_default().to_string()));
            Ok(Labels::Strings(v))
        }
        _ => Err(bad("changes type between batches".into())),
    }
}

/// Per-record (split, label index), the label names, and whether those are real names.
type Resolved = (Vec<(Split, u16)>, Vec<String>, bool);

fn resolve_labels(files: Vec<(Split, Labels)>, meta_names: Option<Vec<String>>, column: &str) -> Result<Resolved, DataError> {
    let any_str = files.iter().any(|(_, l)| matches!(l, Labels::Strings(v) if !v.is_empty()));
    let any_int = files.iter().any(|(_, l)| matches!(l, Labels::Ints(v) if !v.is_empty()));
    if any_str && any_int {
        return Err(DataError::Layout(format!("label column '{column}' is integer in some files and string in others")));
    }
    let mut out = Vec::new();
    if any_str {
        let names: Vec<String> = files
            .iter()
            .flat_map(|(_, l)| match l {
                Labels::Strings(v) => v.as_slice(),
                Labels::Ints(_) => &[],
            })
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if names.len() > usize::from(u16::MAX) + 1 {
            return Err(DataError::Layout(format!("label column '{column}' has {} distinct labels; at most 65536 fit", names.len())));
        }
        for (split, l) in &files {
            if let Labels::Strings(v) = l {
                for s in v {
                    let i = names.binary_search(s).unwrap_or_default();
                    out.push((*split, i as u16));
                }
            }
        }
        return Ok((out, names, true));
    }
    let mut max = -1i64;
    for (split, l) in &files {
        if let Labels::Ints(v) = l {
            for (row, &x) in v.iter().enumerate() {
                if !(0..=i64::from(u16::MAX)).contains(&x) {
                    return Err(DataError::Layout(format!(
                        "label column '{column}': value {x} at row {row} of a {} file is outside 0..=65535 (unlabelled records, -1, must be filtered out first)",
                        split.as_str()
                    )));
                }
                max = max.max(x);
                out.push((*split, x as u16));
            }
        }
    }
    match meta_names {
        Some(names) if names.len() as i64 > max => Ok((out, names, true)),
        _ => Ok((out, (0..=max).map(|i| i.to_string()).collect(), false)),
    }
}

fn append_images(rows: &mut Vec<Option<Vec<u8>>>, col: &ArrayRef) -> Result<(), String> {
    let col: &dyn Array = match col.as_any().downcast_ref::<StructArray>() {
        Some(s) => s.column_by_name("bytes").ok_or("the image column is a struct without a 'bytes' field")?.as_ref(),
        None => col.as_ref(),
    };
    if let Some(b) = col.as_any().downcast_ref::<BinaryArray>() {
        rows.extend(b.iter().map(|x| x.map(<[u8]>::to_vec)));
    } else if let Some(b) = col.as_any().downcast_ref::<LargeBinaryArray>() {
        rows.extend(b.iter().map(|x| x.map(<[u8]>::to_vec)));
    } else {
        return Err(format!("the image column has type {}; expected binary or struct{{bytes: binary, ...}}", col.data_type()));
    }
    Ok(())
}

impl ImageSource for ParquetSource {
    fn records(&self) -> &[Record] {
        &self.records
    }

    fn label_names(&self) -> &[String] {
        &self.names
    }

    fn source(&self, image_id: u32) -> String {
        match self.files.partition_point(|f| f.start <= image_id).checked_sub(1) {
            Some(fi) => format!("{}#{}", self.files[fi].rel, image_id - self.files[fi].start),
            None => format!("#{image_id}"),
        }
    }

    fn read(&self, image_id: u32) -> Result<Rgb8, DataError> {
        let (fi, gi, row) = self.locate(image_id).ok_or_else(|| DataError::image(self, image_id, "no such record"))?;
        let rows = self.row_group(fi, gi).map_err(|e| DataError::image(self, image_id, e))?;
        let bytes = rows
            .get(row)
            .ok_or_else(|| DataError::image(self, image_id, "row group is shorter than its metadata says"))?
            .as_deref()
            .ok_or_else(|| DataError::image(self, image_id, "image bytes are null (only embedded image bytes are supported)"))?;
        decode_rgb8(bytes).map_err(|e| DataError::image(self, image_id, e))
    }
}
