//! Datasets: readers that list labelled image records and decode an image lazily by record.
//!
//! One module per concept: [`decode`] (bytes → RGB8 as PIL does it, no I/O), [`resample`]
//! (RGB8 → resized RGB8, pixel for pixel as Pillow's `Image.resize`), [`select`] (split,
//! per-class and limit selection), and one module per on-disk format: [`cifar`] (the official
//! binary files and the hub Parquet layout), [`folder`] (class-per-subfolder image folders such
//! as ImageNet's), [`parquet_source`] (any Parquet with an image-bytes column) and [`synthetic`]
//! (drawn shapes, generated on the fly).
//!
//! Identity: a record's `image_id` is its index in the source's full listing: train records first
//! (in file order), then test records (ids continue after the last train id). Selection never
//! renumbers, so an id means the same image whatever subset a pipeline picks.
//!
//! Listing never decodes: an unreadable image is listed like any other and fails in
//! [`ImageSource::read`] with an error naming the record, so the extraction stage can record it
//! and go on.

pub mod cifar;
pub mod decode;
pub mod folder;
pub mod neuronpedia;
pub mod neuronpedia_api;
pub mod parquet_source;
pub mod resample;
pub mod select;
pub mod synthetic;

use std::path::{Path, PathBuf};

pub use decode::{DecodeError, Rgb8, decode_rgb8};
pub use select::{Selection, SplitChoice};

/// Which official role a record has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// One labelled image of a source. Its location is the source's business ([`ImageSource::source`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Index in the source's full listing (train first, then test); unique within the source.
    pub image_id: u32,
    /// Index into [`ImageSource::label_names`].
    pub label: u16,
    pub split: Split,
}

/// A dataset on disk (or generated): its records, their label names, and lazy decoding.
/// Implementations are `Sync`: the extraction stage decodes on several threads at once.
pub trait ImageSource: Send + Sync {
    /// Every record, in `image_id` order (`records()[i].image_id == i`).
    fn records(&self) -> &[Record];
    /// Label index → name.
    fn label_names(&self) -> &[String];
    /// Where the record comes from, for people: a relative path, `train.bin#12`, `synthetic:7`.
    fn source(&self, image_id: u32) -> String;
    /// Read and decode one image to RGB8 (as PIL's `convert("RGB")` would).
    fn read(&self, image_id: u32) -> Result<Rgb8, DataError>;

    /// The label name of a record.
    fn label_name(&self, record: &Record) -> &str {
        self.label_names().get(usize::from(record.label)).map(String::as_str).unwrap_or("")
    }
}

/// Errors of the dataset readers.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// (The I/O error is part of the message, not a `source`, so error chains print it once.)
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// The files are not in the expected layout (missing file, wrong size, wrong column).
    #[error("{0}")]
    Layout(String),
    /// One record's image could not be read or decoded; the others are fine.
    #[error("image {image_id} ({source_name}): {reason}")]
    Image { image_id: u32, source_name: String, reason: String },
    /// A parameter combination that cannot work.
    #[error("{0}")]
    Param(String),
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), err: source }
    }

    fn image(src: &dyn ImageSource, image_id: u32, reason: impl ToString) -> DataError {
        DataError::Image { image_id, source_name: src.source(image_id), reason: reason.to_string() }
    }
}

/// Which labels a CIFAR-100 reader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarLabels {
    Fine,
    Coarse,
}

/// What to open: one variant per format, with that format's options.
#[derive(Clone, Debug)]
pub enum DatasetSpec {
    Cifar100 { path: PathBuf, labels: CifarLabels },
    ImageFolder { path: PathBuf, synsets: Option<PathBuf> },
    Parquet { path: PathBuf, image_column: String, label_column: String },
    Synthetic(synthetic::SyntheticSpec),
}

/// Open a dataset: list its records (fast; nothing is decoded).
pub fn open(spec: &DatasetSpec) -> Result<Box<dyn ImageSource>, DataError> {
    Ok(match spec {
        DatasetSpec::Cifar100 { path, labels } => cifar::open(path, *labels)?,
        DatasetSpec::ImageFolder { path, synsets } => Box::new(folder::ImageFolder::open(path, synsets.as_deref())?),
        DatasetSpec::Parquet { path, image_column, label_column } => {
            Box::new(parquet_source::ParquetSource::open_path(path, image_column, label_column)?)
        }
        DatasetSpec::Synthetic(s) => Box::new(synthetic::Synthetic::new(s.clone())?),
    })
}

/// Records listed in split order, numbered: helper for readers that list train then test.
pub(crate) fn number(labels_by_split: impl IntoIterator<Item = (Split, u16)>) -> Result<Vec<Record>, DataError> {
    labels_by_split
        .into_iter()
        .enumerate()
        .map(|(i, (split, label))| {
            let image_id = u32::try_from(i).map_err(|_| DataError::Layout("more than 4 294 967 295 records".into()))?;
            Ok(Record { image_id, label, split })
        })
        .collect()
}
