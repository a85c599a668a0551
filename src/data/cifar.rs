//! CIFAR-100 in its two common layouts.
//!
//! - The official binary version (`cifar-100-binary/`): `train.bin` and `test.bin`, each a run of
//!   3074-byte records (coarse label byte, fine label byte, 1024 R, 1024 G, 1024 B bytes of a
//!   32×32 image, row-major), and `fine_label_names.txt` / `coarse_label_names.txt` (one name a
//!   line; when absent, the official names below are used). `source` = `train.bin#<record>`.
//! - The hub Parquet layout of `uoft-cs/cifar100` (`cifar100/train-00000-of-00001.parquet`,
//!   `test-…`): an `img` struct {bytes, path} of PNGs, `fine_label`, `coarse_label`. Label names
//!   come from the files' `huggingface` metadata (the dataset card's `ClassLabel` names), else the
//!   official names. The hub spells fine label 26 "cra"; it is fixed to the official "crab" so
//!   both layouts give the same names. `source` = `cifar100/train-00000-of-00001.parquet#<row>`.
//!
//! `path` may name the layout's folder or the folder above it (`cifar-100-binary/`'s parent, the
//! hub repository's root). Ids: train records 0..50 000 in file order, test records 50 000.. .

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::parquet_source::{ParquetSource, classify};
use super::{CifarLabels, DataError, ImageSource, Record, Rgb8, Split, number};

/// Bytes per record of the binary files.
pub const RECORD_BYTES: usize = 2 + 3 * 32 * 32;

/// CIFAR-100's fine label names (`fine_label_names.txt` of the official release).
pub const FINE_LABELS: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// CIFAR-100's coarse label names (`coarse_label_names.txt` of the official release).
pub const COARSE_LABELS: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// Open either layout under `path`.
pub fn open(path: &Path, labels: CifarLabels) -> Result<Box<dyn ImageSource>, DataError> {
    for dir in [path.join("cifar-100-binary"), path.to_path_buf()] {
        if dir.join("train.bin").is_file() || dir.join("test.bin").is_file() {
            return Ok(Box::new(CifarBinary::open(&dir, labels)?));
        }
    }
    for dir in [path.join("cifar100"), path.to_path_buf()] {
        if let Some(files) = hub_files(&dir)? {
            return Ok(Box::new(open_hub(files, &dir, labels)?));
        }
    }
    Err(DataError::Layout(format!(
        "{}: no CIFAR-100 files here; expected cifar-100-binary/{{train,test}}.bin (the official binary version) or cifar100/{{train,test}}-*.parquet (the hub's uoft-cs/cifar100)",
        path.display()
    )))
}

/// The binary version: records read on demand from the open files.
pub struct CifarBinary {
    files: Vec<BinFile>,
    records: Vec<Record>,
    names: Vec<String>,
}

struct BinFile {
    name: &'static str,
    file: Mutex<File>,
    path: PathBuf,
    start: u32,
}

impl CifarBinary {
    pub fn open(dir: &Path, labels: CifarLabels) -> Result<CifarBinary, DataError> {
        let (names_file, builtin, label_byte): (&str, &[&str], usize) = match labels {
            CifarLabels::Fine => ("fine_label_names.txt", &FINE_LABELS, 1),
            CifarLabels::Coarse => ("coarse_label_names.txt", &COARSE_LABELS, 0),
        };
        let names: Vec<String> = match std::fs::read_to_string(dir.join(names_file)) {
            Ok(text) => text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => builtin.iter().map(|s| s.to_string()).collect(),
            Err(e) => return Err(DataError::io(&dir.join(names_file), e)),
        };
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (name, split) in [("train.bin", Split::Train), ("test.bin", Split::Test)] {
            let path = dir.join(name);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(DataError::io(&path, e)),
            };
            let len = file.metadata().map_err(|e| DataError::io(&path, e))?.len();
            if len % RECORD_BYTES as u64 != 0 {
                return Err(DataError::Layout(format!(
                    "{}: {len} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-100 records (a CIFAR-10 file has 3073-byte records; a partial download is shorter)",
                    path.display()
                )));
            }
            let start = labels.len() as u32;
            let mut reader = BufReader::with_capacity(1 << 20, &file);
            let mut rec = [0u8; RECORD_BYTES];
            for i in 0..len / RECORD_BYTES as u64 {
                reader.read_exact(&mut rec).map_err(|e| DataError::io(&path, e))?;
                let label = rec[label_byte];
                if usize::from(label) >= names.len() {
                    return Err(DataError::Layout(format!(
                        "{}: record {i} has label {label}, but {} has {} names",
                        path.display(),
                        names_file,
                        names.len()
                    )));
                }
                labels.push((split, u16::from(label)));
            }
            files.push(BinFile { name, file: Mutex::new(file), path, start });
        }
        Ok(CifarBinary { files, records: number(labels)?, names })
    }

    fn locate(&self, image_id: u32) -> Option<(&BinFile, u32)> {
        let f = self.files.iter().rev().find(|f| f.start <= image_id)?;
        Some((f, image_id - f.start))
    }
}

impl ImageSource for CifarBinary {
    fn records(&self) -> &[Record] {
        &self.records
    }

    fn label_names(&self) -> &[String] {
        &self.names
    }

    fn source(&self, image_id: u32) -> String {
        match self.locate(image_id) {
            Some((f, i)) => format!("{}#{i}", f.name),
            None => format!("#{image_id}"),
        }
    }

    fn read(&self, image_id: u32) -> Result<Rgb8, DataError> {
        if image_id as usize >= self.records.len() {
            return Err(DataError::image(self, image_id, "no such record"));
        }
        let (f, i) = self.locate(image_id).ok_or_else(|| DataError::image(self, image_id, "no such record"))?;
        let mut rec = [0u8; RECORD_BYTES];
        {
            let mut file = f.file.lock().unwrap_or_else(|p| p.into_inner());
            file.seek(SeekFrom::Start(u64::from(i) * RECORD_BYTES as u64))
                .and_then(|_| file.read_exact(&mut rec))
                .map_err(|e| DataError::image(self, image_id, format!("{}: {e}", f.path.display())))?;
        }
        let planes = &rec[2..];
        let pixels = (0..1024).flat_map(|p| [planes[p], planes[1024 + p], planes[2048 + p]]).collect();
        Ok(Rgb8 { width: 32, height: 32, pixels })
    }
}

/// The hub's `train-*.parquet` / `test-*.parquet` files in `dir`, if any.
fn hub_files(dir: &Path) -> Result<Option<Vec<(PathBuf, String)>>, DataError> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(None) };
    let mut files = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && (name.starts_with("train") || name.starts_with("test")) {
            files.push((e.path(), name));
        }
    }
    files.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
    Ok((!files.is_empty()).then_some(files))
}

fn open_hub(files: Vec<(PathBuf, String)>, dir: &Path, labels: CifarLabels) -> Result<ParquetSource, DataError> {
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let files = classify(files, dir)?.into_iter().map(|(p, rel, s)| (p, format!("{folder}/{rel}"), s)).collect();
    let (column, builtin): (&str, &[&str]) = match labels {
        CifarLabels::Fine => ("fine_label", &FINE_LABELS),
        CifarLabels::Coarse => ("coarse_label", &COARSE_LABELS),
    };
    let mut src = ParquetSource::open(files, "img", column)?;
    let names: Vec<String> = if src.has_names() {
        src.label_names().iter().map(|n| fix_hub_name(n).to_string()).collect()
    } else {
        builtin.iter().map(|s| s.to_string()).collect()
    };
    src.set_label_names(names)?;
    Ok(src)
}

/// The hub's dataset card misspells fine label 26 (`crab`) as `cra`.
fn fix_hub_name(name: &str) -> &str {
    if name == "cra" { "crab" } else { name }
}
