//! Every dataset reader against the fixtures in their real on-disk formats
//! (`tests/fixtures/data/make_data_fixtures.py` writes them).

use std::path::{Path, PathBuf};

use saeflow::data::cifar::FINE_LABELS;
use saeflow::data::select::select;
use saeflow::data::synthetic::SyntheticSpec;
use saeflow::data::{CifarLabels, DataError, DatasetSpec, ImageSource, Selection, Split, SplitChoice, open};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn cifar(path: &Path, labels: CifarLabels) -> Box<dyn ImageSource> {
    open(&DatasetSpec::Cifar100 { path: path.to_path_buf(), labels }).unwrap()
}

fn labels(s: &dyn ImageSource) -> Vec<u16> {
    s.records().iter().map(|r| r.label).collect()
}

fn sources(s: &dyn ImageSource) -> Vec<String> {
    (0..s.records().len() as u32).map(|i| s.source(i)).collect()
}

// the generator's records: train fine labels, then test
const TRAIN_FINE: [u16; 6] = [3, 26, 3, 97, 26, 3];
const TEST_FINE: [u16; 3] = [26, 97, 3];

#[test]
fn cifar_binary_lists_train_then_test_with_official_names() {
    let s = cifar(&fixtures().join("cifar-100-binary"), CifarLabels::Fine);
    let r = s.records();
    assert_eq!(r.len(), 9);
    assert!(r.iter().enumerate().all(|(i, rec)| rec.image_id == i as u32), "ids are listing positions");
    assert_eq!(r.iter().map(|x| x.split).collect::<Vec<_>>(), [[Split::Train; 6].as_slice(), &[Split::Test; 3]].concat());
    assert_eq!(labels(s.as_ref()), [TRAIN_FINE.as_slice(), &TEST_FINE].concat());
    assert_eq!(s.label_names().len(), 100);
    assert_eq!(s.label_name(&r[1]), "crab");
    assert_eq!(s.label_name(&r[3]), "wolf");
    assert_eq!(s.source(0), "train.bin#0");
    assert_eq!(s.source(7), "test.bin#1");
    let img = s.read(0).unwrap();
    assert_eq!((img.width, img.height, img.pixels.len()), (32, 32, 3072));

    let coarse = cifar(&fixtures(), CifarLabels::Coarse); // the folder above cifar-100-binary/
    assert_eq!(labels(coarse.as_ref()), [8, 13, 8, 8, 13, 8, 13, 8, 8]);
    assert_eq!(coarse.label_names()[13], "non-insect_invertebrates");
}

#[test]
fn cifar_hub_parquet_matches_the_binary_and_fixes_crab() {
    let hub = cifar(&fixtures().join("cifar100_hub"), CifarLabels::Fine);
    let bin = cifar(&fixtures().join("cifar-100-binary"), CifarLabels::Fine);
    assert_eq!(hub.records(), bin.records(), "same ids, labels and splits in both layouts");
    assert_eq!(hub.label_names()[26], "crab", "the hub card's 'cra' is fixed");
    assert_eq!(hub.label_names(), FINE_LABELS.map(String::from).as_slice());
    assert_eq!(hub.label_names(), bin.label_names());
    assert_eq!(hub.source(1), "cifar100/train-00000-of-00001.parquet#1");
    assert_eq!(hub.source(6), "cifar100/test-00000-of-00001.parquet#0");
    for id in 0..9 {
        assert_eq!(hub.read(id).unwrap(), bin.read(id).unwrap(), "image {id}: the hub's PNG holds the binary's pixels");
    }
    let coarse = cifar(&fixtures().join("cifar100_hub/cifar100"), CifarLabels::Coarse);
    assert_eq!(labels(coarse.as_ref()), [8, 13, 8, 8, 13, 8, 13, 8, 8]);
    assert_eq!(coarse.label_names()[8], "large_carnivores");
}

#[test]
fn cifar_errors_name_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&DatasetSpec::Cifar100 { path: dir.path().into(), labels: CifarLabels::Fine }).err().unwrap();
    assert!(e.to_string().contains("expected cifar-100-binary/{train,test}.bin"), "{e}");
    std::fs::write(dir.path().join("train.bin"), vec![0u8; 3073 * 2]).unwrap();
    let e = open(&DatasetSpec::Cifar100 { path: dir.path().into(), labels: CifarLabels::Fine }).err().unwrap();
    assert!(e.to_string().contains("not a whole number of 3074-byte"), "{e}");
}

fn folder(synsets: bool) -> Box<dyn ImageSource> {
    open(&DatasetSpec::ImageFolder { path: fixtures().join("folder"), synsets: synsets.then(|| fixtures().join("synsets.txt")) }).unwrap()
}

#[test]
fn image_folder_lists_sorted_classes_and_paths_and_skips_non_images() {
    let s = folder(false);
    assert_eq!(s.label_names(), ["n02123045", "n04266014", "n09999999"]);
    let src = sources(s.as_ref());
    assert_eq!(src.len(), 32, "{src:#?}");
    assert!(!src.iter().any(|p| p.ends_with(".txt")), "notes.txt is skipped");
    let mut sorted = src[..29].to_vec();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(src[..29], sorted, "train files in path byte order");
    assert_eq!(src[0], "train/n02123045/animated.gif");
    assert_eq!(src[29..], ["test/n02123045/chelsea_small.png", "test/n04266014/jpeg_420.jpg", "test/n09999999/very_wide.png"]);
    assert!(s.records()[..29].iter().all(|r| r.split == Split::Train));
    assert_eq!(labels(s.as_ref())[29..], [0, 1, 2], "test labels use the union of class folders");

    let named = folder(true);
    assert_eq!(named.label_names(), ["tabby, tabby cat", "space shuttle", "wide things"]);
    assert_eq!(named.records(), s.records());
}

#[test]
fn image_folder_reports_unreadable_images_per_record() {
    let s = folder(false);
    let mut failed = Vec::new();
    for id in 0..s.records().len() as u32 {
        match s.read(id) {
            Ok(img) => assert_eq!(img.pixels.len(), (img.width * img.height * 3) as usize),
            Err(DataError::Image { image_id, source_name, reason }) => {
                assert_eq!(image_id, id);
                assert_eq!(source_name, s.source(id));
                failed.push(format!("{source_name}: {reason}"));
            }
            Err(e) => panic!("image {id}: not a per-record error: {e}"),
        }
    }
    assert_eq!(failed.len(), 5, "{failed:#?}");
    // PIL refuses a PNG whose chunk before the image data has a bad CRC
    assert!(failed[0].starts_with("train/n02123045/png_bad_iccp_crc.png: png: chunk iCCP has a bad CRC"), "{failed:#?}");
    assert!(failed[1].starts_with("train/n04266014/empty.jpg: empty file"), "{failed:#?}");
    assert!(failed[2].starts_with("train/n04266014/not_an_image.jpg: not an image"), "{failed:#?}");
    // a 35-byte GIF on a 65535×65535 screen is one skipped record, not an aborted process
    assert!(failed[3].starts_with("train/n04266014/screen_bomb.gif: gif: 65535×65535 is 4294836225 pixels"), "{failed:#?}");
    assert!(failed[3].contains("178956970"), "{failed:#?}");
    assert!(failed[4].starts_with("train/n04266014/truncated.jpg: jpeg:"), "{failed:#?}");
}

#[test]
fn image_folder_without_splits_is_all_train_and_synset_gaps_are_errors() {
    let s = open(&DatasetSpec::ImageFolder { path: fixtures().join("folder/test"), synsets: None }).unwrap();
    assert_eq!(sources(s.as_ref()), ["n02123045/chelsea_small.png", "n04266014/jpeg_420.jpg", "n09999999/very_wide.png"]);
    assert!(s.records().iter().all(|r| r.split == Split::Train));
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("map.txt");
    std::fs::write(&map, "n02123045\ttabby\n").unwrap();
    let e = open(&DatasetSpec::ImageFolder { path: fixtures().join("folder"), synsets: Some(map) }).err().unwrap();
    assert!(e.to_string().contains("no name for class folders 'n04266014', 'n09999999'"), "{e}");
}

#[test]
fn parquet_with_string_labels_and_a_broken_row() {
    let s = open(&DatasetSpec::Parquet {
        path: fixtures().join("labels_str.parquet"),
        image_column: "image".into(),
        label_column: "label".into(),
    })
    .unwrap();
    assert_eq!(s.label_names(), ["camera", "cat", "rocket"]);
    assert_eq!(labels(s.as_ref()), [2, 1, 1, 0, 1]);
    assert!(s.records().iter().all(|r| r.split == Split::Train));
    assert_eq!(s.source(2), "labels_str.parquet#2");
    assert_eq!(s.read(0).unwrap().width, 32);
    let e = s.read(2).unwrap_err();
    assert!(e.to_string().starts_with("image 2 (labels_str.parquet#2): not an image"), "{e}");
    assert_eq!(s.read(4).unwrap().height, 32, "rows after a broken one still read");

    let e = open(&DatasetSpec::Parquet {
        path: fixtures().join("labels_str.parquet"),
        image_column: "img".into(),
        label_column: "label".into(),
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("no column 'img' (set by `image_column`); the file has: image, label"), "{e}");
}

#[test]
fn parquet_folder_with_int_labels_uses_hub_metadata_names() {
    // the generic reader on the hub layout: names straight from the metadata (no CIFAR fix)
    let s = open(&DatasetSpec::Parquet {
        path: fixtures().join("cifar100_hub"),
        image_column: "img".into(),
        label_column: "fine_label".into(),
    })
    .unwrap();
    assert_eq!(labels(s.as_ref()), [TRAIN_FINE.as_slice(), &TEST_FINE].concat());
    assert_eq!(s.label_names()[26], "cra");
    assert_eq!(s.records()[6].split, Split::Test);
}

#[test]
fn selection_is_stable_and_seeded() {
    let s = folder(false);
    let first = select(s.records(), &Selection { per_class: Some(2), ..Selection::all(SplitChoice::Predefined) });
    assert_eq!(
        first.iter().map(|&i| s.source(i)).collect::<Vec<_>>()[..4],
        ["train/n02123045/animated.gif", "train/n02123045/chelsea.bmp", "train/n04266014/camera.png", "train/n04266014/cmyk.jpg",]
    );
    assert_eq!(first.len(), 7);
    let drawn = |seed| select(s.records(), &Selection { per_class: Some(3), sample: Some(seed), ..Selection::all(SplitChoice::Train) });
    assert_eq!(drawn(5), drawn(5));
    assert_ne!(drawn(5), drawn(6));
    assert_eq!(drawn(5).len(), 6);
    let test = select(s.records(), &Selection { limit: Some(2), ..Selection::all(SplitChoice::Test) });
    assert_eq!(test, [29, 30]);
}

#[test]
fn synthetic_is_generated_on_the_fly() {
    let spec = SyntheticSpec { classes: 4, train_per_class: 3, test_per_class: 1, size: 16, seed: 9 };
    let s = open(&DatasetSpec::Synthetic(spec)).unwrap();
    assert_eq!(s.records().len(), 16);
    assert_eq!(s.source(13), "synthetic:13");
    assert_eq!(s.records()[12].split, Split::Test);
    assert_eq!(s.label_names(), ["red circle", "green square", "blue triangle", "yellow cross"]);
    assert_eq!(s.read(3).unwrap().pixels.len(), 16 * 16 * 3);
}
