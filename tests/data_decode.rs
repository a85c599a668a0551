//! Decoding agrees with PIL: every image of the fixture folder against the golden that
//! `tests/fixtures/data/make_data_fixtures.py` recorded from `Image.open(p).convert("RGB")`.
//!
//! PNG in every mode, BMP, TIFF, GIF and (on this fixture) lossy WebP must match byte for byte
//! (blake3 of the RGB bytes). JPEG cannot: PIL decodes with libjpeg-turbo, saeflow with the
//! pure-Rust zune-jpeg, whose IDCT rounding and chroma upsampling differ. For JPEGs the test
//! compares with PIL's pixels (stored as PNG) and bounds the max and mean abs difference.

use std::path::{Path, PathBuf};

use saeflow::data::decode_rgb8;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

/// Per-file bounds (max abs difference per channel value, mean abs difference) where bytes do not
/// match PIL's. Measured with Pillow 13.0.0 (libjpeg-turbo 3.x) against zune-jpeg 0.5.15:
///
/// | file | max | mean | values equal |
/// |---|---|---|---|
/// | jpeg_gray.jpg (L) | 1 | 0.007 | 99.3 % |
/// | cmyk.jpg (Adobe CMYK, 4:4:4) | 1 | 0.006 | 99.4 % |
/// | jpeg_444.jpg | 2 | 0.011 | 99.0 % |
/// | jpeg_422.jpg | 3 | 0.132 | 90.3 % |
/// | rocket.jpg, progressive.jpg, exif_rotated.jpg, jpeg_420.jpg (4:2:0) | 3–4 | 0.18–0.30 | 79–87 % |
///
/// Unsubsampled JPEGs differ by IDCT rounding only (±1–2); subsampled ones also by chroma
/// upsampling (zune-jpeg's vs libjpeg-turbo's "fancy" triangle filter). The lossy WebP fixture
/// decodes identically to libwebp (image-webp 0.2.4), so it is held to identity.
fn tolerance(name: &str) -> (u8, f64) {
    match name {
        "jpeg_gray.jpg" | "cmyk.jpg" => (1, 0.02),
        "jpeg_444.jpg" => (2, 0.05),
        _ if name.ends_with(".jpg") => (4, 0.4),
        _ => (0, 0.0),
    }
}

#[test]
fn every_fixture_image_decodes_as_pil_does() {
    let goldens: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("goldens.json")).unwrap()).unwrap();
    let images = goldens["images"].as_object().unwrap();
    assert!(images.len() >= 25, "goldens.json lists {} images", images.len());
    let mut report = Vec::new();
    for (rel, g) in images {
        let bytes = std::fs::read(fixtures().join("folder").join(rel)).unwrap();
        let name = rel.rsplit('/').next().unwrap();
        let got = decode_rgb8(&bytes);
        if !g["ok"].as_bool().unwrap() {
            let e = got.expect_err(&format!("{rel}: PIL fails ({}), saeflow decoded it", g["error"]));
            report.push(format!("{rel}: error as in PIL: {e}"));
            continue;
        }
        let img = got.unwrap_or_else(|e| panic!("{rel}: PIL decodes it, saeflow fails: {e}"));
        assert_eq!((u64::from(img.width), u64::from(img.height)), (g["width"].as_u64().unwrap(), g["height"].as_u64().unwrap()), "{rel}");
        let exact = blake3::hash(&img.pixels).to_hex().to_string() == g["blake3"].as_str().unwrap();
        let (max_ok, mean_ok) = tolerance(name);
        if max_ok == 0 {
            assert!(exact, "{rel}: pixels differ from PIL's (lossless format: must be identical)");
            report.push(format!("{rel}: identical"));
            continue;
        }
        let golden_png = std::fs::read(fixtures().join(g["pixels"].as_str().unwrap())).unwrap();
        let want = decode_rgb8(&golden_png).unwrap();
        assert_eq!(want.pixels.len(), img.pixels.len(), "{rel}");
        let diffs: Vec<u8> = img.pixels.iter().zip(&want.pixels).map(|(a, b)| a.abs_diff(*b)).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        let equal = diffs.iter().filter(|&&d| d == 0).count() as f64 / diffs.len() as f64;
        report.push(format!("{rel}: max abs diff {max}, mean {mean:.3}, {:.1}% of values equal", equal * 100.0));
        assert!(max <= max_ok && mean <= mean_ok, "{rel}: max abs diff {max} (bound {max_ok}), mean {mean:.3} (bound {mean_ok})");
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn exif_orientation_is_not_applied_as_in_pil() {
    // the file is stored 160×100 with orientation 6 (rotate 90° to display); PIL's Image.open
    // and transformers' CLIPImageProcessor keep the stored orientation, and so does saeflow
    let bytes = std::fs::read(fixtures().join("folder/train/n04266014/exif_rotated.jpg")).unwrap();
    let img = decode_rgb8(&bytes).unwrap();
    assert_eq!((img.width, img.height), (160, 100));
}

#[test]
fn sixteen_bit_gray_is_clipped_not_scaled() {
    // PIL's I;16 → RGB clips at 255: a gradient over 0..65535 is black only at the very start
    let bytes = std::fs::read(fixtures().join("folder/train/n04266014/gray16_full.png")).unwrap();
    let img = decode_rgb8(&bytes).unwrap();
    assert_eq!(&img.pixels[..3], &[0, 0, 0]);
    assert_eq!(&img.pixels[3..6], &[21, 21, 21]); // 65535 / 3071 ≈ 21
    assert!(img.pixels[300..].iter().all(|&v| v == 255));
}
