//! Preprocessing parity with Python: `data::resample` against Pillow's `Image.resize` (every
//! golden pixel equal) and `models::clip_image` against transformers' PIL-backed CLIP image
//! processor (pixel values within 1e-6), on the fixtures of `tests/fixtures/preprocess/`
//! (regenerate with its `make_preprocess_goldens.py`; versions in `goldens.json`).
//! Sources and resize goldens are PNGs, which `decode_rgb8` reads exactly as PIL does.

use std::path::{Path, PathBuf};

use saeflow::data::Rgb8;
use saeflow::data::decode_rgb8;
use saeflow::data::resample::{Filter, Resizer, resize};
use saeflow::models::clip_image::{CropSize, ImageProcessor, ImageProcessorConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ResizeTo};
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
fn resizers_and_scratch_are_reusable() {
    // a Resizer run twice, and one Scratch shared by resizers of every size, give the goldens
    let index = index();
    let cases: Vec<&Value> = index["resize"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["image"] == "images/noise_17x23.png" || c["image"] == "images/camera_gray_30x27.png")
        .collect();
    let mut scratch = saeflow::data::resample::Scratch::default();
    for case in cases.iter().filter(|c| c["filter"] == "bicubic") {
        let image = png(case["image"].as_str().unwrap());
        let golden = png(case["golden"].as_str().unwrap());
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        let resizer = Resizer::new(Filter::Bicubic, (image.width, image.height), (w, h)).unwrap();
        assert_eq!(resizer.output_size(), (w, h));
        for _ in 0..2 {
            let mut pixels = Vec::new();
            resizer.resize_rows(&image, &mut scratch, |_, row| pixels.extend_from_slice(row)).unwrap();
            assert!(pixels == golden.pixels, "{}", case["golden"]);
        }
    }
}

// ---- CLIP image processor ----

fn read_f32(rel: &str) -> Vec<f32> {
    let raw = std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let bytes = if rel.ends_with(".gz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out).unwrap();
        out
    } else {
        raw
    };
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn config(rel: &str) -> ImageProcessorConfig {
    ImageProcessorConfig::from_json(&std::fs::read_to_string(fixtures().join(rel)).unwrap()).unwrap()
}

#[test]
fn pixel_values_match_transformers() {
    let index = index();
    assert_eq!(index["processor_class"], "CLIPImageProcessorPil");
    let cases = index["processor"].as_array().unwrap();
    let mut configs = std::collections::BTreeSet::new();
    let mut worst = 0.0f32;
    for case in cases {
        let cfg_path = case["config"].as_str().unwrap();
        configs.insert(cfg_path);
        let processor = ImageProcessor::new(config(cfg_path)).unwrap();
        let shape: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(shape, [3, processor.output_size().0, processor.output_size().1], "{case}");
        let golden = read_f32(case["golden"].as_str().unwrap());
        let ours = processor.preprocess(&png(case["image"].as_str().unwrap())).unwrap();
        assert_eq!(ours.len(), golden.len(), "{case}");
        let (i, diff) = ours
            .iter()
            .zip(&golden)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0, 0.0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
        assert!(diff <= 1e-6, "{}: |Δ| {diff} at {i}: ours {}, transformers {}", case["golden"], ours[i], golden[i]);
        worst = worst.max(diff);
    }
    assert_eq!(configs.len(), 4, "every config has goldens: {configs:?}");
    // rescale and normalize are the same float32 operations as numpy's: not just close, equal
    assert_eq!(worst, 0.0);
}

#[test]
fn batches_reuse_one_buffer() {
    // preprocess_into writes each image's slot of one batch buffer; the values are preprocess's
    let processor = ImageProcessor::new(config("configs/small.json")).unwrap();
    let names = ["images/cifar32.png", "images/hubble_41x56.png", "images/tiny_5x3.png", "images/wide_60x4.png"];
    let n = processor.output_len();
    let mut batch = vec![f32::NAN; n * names.len()];
    let mut scratch = saeflow::data::resample::Scratch::default();
    for (slot, name) in batch.chunks_exact_mut(n).zip(names) {
        processor.preprocess_with(&png(name), &mut scratch, slot).unwrap();
    }
    for (slot, name) in batch.chunks_exact(n).zip(names) {
        assert_eq!(slot, processor.preprocess(&png(name)).unwrap(), "{name}");
    }
}

#[test]
fn llava_gemma_config_parses_to_clip_336() {
    let cfg = config("configs/llava.json");
    assert_eq!(
        cfg,
        ImageProcessorConfig {
            do_resize: true,
            size: ResizeTo::ShortestEdge(336),
            resample: Filter::Bicubic,
            do_center_crop: true,
            crop_size: CropSize { height: 336, width: 336 },
            do_rescale: true,
            rescale_factor: 0.00392156862745098,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            do_convert_rgb: true,
        }
    );
    let processor = ImageProcessor::new(cfg).unwrap();
    assert_eq!(processor.output_size(), (336, 336));
    assert_eq!(processor.output_len(), 3 * 336 * 336);
    assert_eq!(processor.config().resized_size(500, 375), (448, 336));
}

#[test]
fn missing_keys_take_clip_defaults() {
    // small.json sets only size and crop_size
    let cfg = config("configs/small.json");
    let expected = ImageProcessorConfig {
        size: ResizeTo::ShortestEdge(20),
        crop_size: CropSize { height: 18, width: 20 },
        ..ImageProcessorConfig::default()
    };
    assert_eq!(cfg, expected);
    assert_eq!(ImageProcessorConfig::default().rescale_factor, 1.0 / 255.0);
    assert_eq!(ImageProcessorConfig::from_json("{}").unwrap(), ImageProcessorConfig::default());
    assert_eq!(ImageProcessorConfig::default().size, ResizeTo::ShortestEdge(224));
    // the integer forms of old checkpoints: size → shortest edge, crop_size → a square
    let legacy = config("configs/legacy.json");
    assert_eq!((legacy.size, legacy.crop_size), (ResizeTo::ShortestEdge(24), CropSize { height: 22, width: 22 }));
    // {height, width}, a scalar mean, bilinear
    let padded = config("configs/padded.json");
    assert_eq!(padded.size, ResizeTo::Exact { height: 14, width: 17 });
    assert_eq!(padded.image_mean, [0.5; 3]);
    assert_eq!(padded.resample, Filter::Bilinear);
    // null means "not set", as in transformers
    let nulls = ImageProcessorConfig::from_json(r#"{"do_resize": null, "size": {"shortest_edge": 7, "longest_edge": null}}"#).unwrap();
    assert_eq!((nulls.do_resize, nulls.size), (true, ResizeTo::ShortestEdge(7)));
}

#[test]
fn bad_configs_name_the_key() {
    let cases = [
        (
            r#"{"image_processor_type": "SiglipImageProcessor"}"#,
            "image_processor_type: unsupported 'SiglipImageProcessor'; supported: CLIPImageProcessor",
        ),
        (r#"{"feature_extractor_type": "ViTFeatureExtractor"}"#, "feature_extractor_type: unsupported 'ViTFeatureExtractor'"),
        (r#"{"resample": 0}"#, "resample: 0 (nearest) is not supported; supported: 1 (lanczos), 2 (bilinear), 3 (bicubic)"),
        (r#"{"resample": 7}"#, "resample: 7 (mks2021) is not supported"),
        (r#"{"resample": "bicubic"}"#, "resample: expected a Pillow filter number (0–7), got \"bicubic\""),
        (
            r#"{"size": {"longest_edge": 336}}"#,
            "size: {\"longest_edge\":336} is not supported; CLIP resizes to {shortest_edge} or {height, width}",
        ),
        (
            r#"{"size": {"height": 336}}"#,
            "size: expected an integer, {\"shortest_edge\": n} or {\"height\": h, \"width\": w}, got {\"height\":336}",
        ),
        (r#"{"size": {"shortest_edge": 0}}"#, "size.shortest_edge: expected a positive integer, got 0"),
        (r#"{"crop_size": {"height": 3, "width": -1}}"#, "crop_size.width: expected a positive integer, got -1"),
        (r#"{"crop_size": [3, 3]}"#, "crop_size: expected an integer or {\"height\": h, \"width\": w}, got [3,3]"),
        (r#"{"image_mean": [0.5, 0.5]}"#, "image_mean: expected a number or a list of 3 numbers, got [0.5,0.5]"),
        (r#"{"image_std": [0.5, 0, 0.5]}"#, "image_std: expected non-zero numbers (they divide), got [0.5,0,0.5]"),
        (r#"{"do_resize": "yes"}"#, "do_resize: expected true or false, got \"yes\""),
        (r#"{"rescale_factor": "1/255"}"#, "rescale_factor: expected a finite number, got \"1/255\""),
        (r#"{"do_pad": true}"#, "do_pad: true is not supported; CLIP's processor does not pad"),
        (r#"[1, 2]"#, "expected a JSON object, got [1,2]"),
        (r#"{"size": "#, "not valid JSON"),
    ];
    for (json, expected) in cases {
        let e = ImageProcessorConfig::from_json(json).unwrap_err().to_string();
        assert!(e.starts_with("preprocessor config: "), "{json}: {e}");
        assert!(e.contains(expected), "{json}:\n  got      {e}\n  expected {expected}");
    }
}

#[test]
fn preprocess_errors_are_errors() {
    let processor = ImageProcessor::new(config("configs/small.json")).unwrap();
    let empty = Rgb8 { width: 0, height: 4, pixels: vec![] };
    let e = processor.preprocess(&empty).unwrap_err().to_string();
    assert!(e.starts_with("clip preprocess: resize: input size 0×4 is empty"), "{e}");
    let short = Rgb8 { width: 2, height: 2, pixels: vec![0; 5] };
    let e = processor.preprocess(&short).unwrap_err().to_string();
    assert!(e.contains("needs 12 bytes of RGB, got 5"), "{e}");
}
