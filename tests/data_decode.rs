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
/// | wide_20000.jpg (20000×64, 4:2:0, flat bands) | 4 | 0.045 | 96.6 % |
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
            let Err(e) = got else { panic!("{rel}: PIL fails ({}), saeflow decoded it", g["error"]) };
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

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("folder").join(rel)).unwrap()
}

/// A PNG chunk with its CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
}

/// A PNG of nothing but a header claiming `width × height` RGB pixels.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let ihdr = [&width.to_be_bytes()[..], &height.to_be_bytes(), &[8, 2, 0, 0, 0]].concat();
    [&b"\x89PNG\r\n\x1a\n"[..], &png_chunk(b"IHDR", &ihdr), &png_chunk(b"IEND", b"")].concat()
}

/// Where a JPEG's frame header (SOF0–SOF2) keeps its height and width.
fn jpeg_sof_dims_at(bytes: &[u8]) -> usize {
    let mut pos = 2;
    while bytes[pos] == 0xFF {
        let marker = bytes[pos + 1];
        if (0xC0..=0xC2).contains(&marker) {
            return pos + 5;
        }
        pos += 2 + usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
    }
    panic!("no frame header")
}

/// The error decoding gives, or a panic naming what decoded (not its pixels).
fn refused(bytes: &[u8], what: &str) -> String {
    match decode_rgb8(bytes) {
        Ok(img) => panic!("{what}: decoded {}×{} where PIL refuses", img.width, img.height),
        Err(e) => e.to_string(),
    }
}

fn assert_over_budget(what: &str, bytes: &[u8], format: &str, size: &str, pixels: u64) {
    let started = std::time::Instant::now();
    let e = refused(bytes, what);
    assert!(e.starts_with(&format!("{format}: {size} is {pixels} pixels, over the limit of 178956970 pixels")), "{what}: {e}");
    assert!(e.contains("PIL") && e.contains("downscale"), "{what}: the message says who else refuses and the fix: {e}");
    assert!(started.elapsed().as_secs_f64() < 1.0, "{what}: refused from the header, without decoding");
}

#[test]
fn every_format_refuses_an_image_over_the_pixel_budget_before_allocating_it() {
    // tiny files whose headers claim billions of pixels: refused from the header alone (before the
    // budget, the GIF aborted the process on a 4 GB canvas and PNG said "Memory limit exceeded")
    assert_over_budget("gif screen", &fixture("train/n04266014/screen_bomb.gif"), "gif", "65535×65535", 4_294_836_225);

    // a 1×1 screen whose first frame sits at (60000, 60000): PIL grows the canvas to cover the frame
    let mut frame_far = fixture("train/n04266014/screen_bomb.gif");
    frame_far[6..10].copy_from_slice(&[1, 0, 1, 0]);
    frame_far[20..24].copy_from_slice(&[0x60, 0xEA, 0x60, 0xEA]);
    assert_over_budget("gif frame", &frame_far, "gif", "60001×60001", 3_600_120_001);

    assert_over_budget("png", &png_header_only(65535, 65535), "png", "65535×65535", 4_294_836_225);
    assert_over_budget("png row", &png_header_only(0x7FFF_FFFF, 1), "png", "2147483647×1", 2_147_483_647);

    let mut jpeg = fixture("train/n02123045/jpeg_gray.jpg");
    let at = jpeg_sof_dims_at(&jpeg);
    jpeg[at..at + 4].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]); // 65500 × 65500, libjpeg's largest
    assert_over_budget("jpeg", &jpeg, "jpeg", "65500×65500", 4_290_250_000);

    let mut bmp = fixture("train/n02123045/chelsea.bmp");
    bmp[18..26].copy_from_slice(&[0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0, 0]);
    assert_over_budget("bmp", &bmp, "bmp", "65535×65535", 4_294_836_225);

    let mut tiff = fixture("train/n02123045/chelsea.tiff");
    let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
    for entry in (ifd + 2..).step_by(12).take(usize::from(u16::from_le_bytes([tiff[ifd], tiff[ifd + 1]]))) {
        if matches!(u16::from_le_bytes([tiff[entry], tiff[entry + 1]]), 256 | 257 | 278) {
            // ImageWidth, ImageLength, RowsPerStrip (so that the one strip stays consistent)
            tiff[entry + 8..entry + 12].copy_from_slice(&65535u32.to_le_bytes());
        }
    }
    assert_over_budget("tiff", &tiff, "tiff", "65535×65535", 4_294_836_225);

    let mut webp = fixture("train/n02123045/chelsea.webp");
    webp[26..30].copy_from_slice(&[0xFF, 0x3F, 0xFF, 0x3F]); // VP8's largest: 16383 × 16383
    assert_over_budget("webp", &webp, "webp", "16383×16383", 268_402_689);
}

#[test]
fn png_crcs_are_checked_where_pil_checks_them() {
    // PIL verifies the CRC of every chunk before the first IDAT (a bad one, even on an ancillary
    // chunk such as iCCP, makes Image.open fail) and of none from the first IDAT on
    let e = refused(&fixture("train/n02123045/png_bad_iccp_crc.png"), "bad iCCP CRC");
    assert!(e.starts_with("png: chunk iCCP has a bad CRC (stored 0x"), "{e}");
    assert!(e.contains("PIL") && e.contains("re-save"), "{e}");

    let img = decode_rgb8(&fixture("train/n02123045/png_bad_idat_crc.png")).expect("PIL reads it");
    assert_eq!(img, decode_rgb8(&fixture("test/n02123045/chelsea_small.png")).unwrap(), "the same pixels as the intact file");
}

#[test]
fn a_jpeg_wider_than_16384_pixels_decodes_as_in_pil() {
    // zune-jpeg refuses widths over 16384 by default; PIL (libjpeg-turbo) reads up to 65500
    let img = decode_rgb8(&fixture("train/n04266014/wide_20000.jpg")).unwrap();
    assert_eq!((img.width, img.height), (20000, 64));
}

#[test]
fn a_jpeg_side_over_65500_is_refused_as_libjpeg_does() {
    let mut jpeg = fixture("train/n02123045/jpeg_gray.jpg");
    let at = jpeg_sof_dims_at(&jpeg);
    jpeg[at..at + 4].copy_from_slice(&[0, 8, 0xFF, 0xDD]); // 65501 wide, 8 high
    let e = refused(&jpeg, "65501 wide");
    assert!(e.starts_with("jpeg: 65501×8 has a side over 65500 pixels, libjpeg's limit"), "{e}");
}

#[test]
fn a_gif_frame_past_the_logical_screen_grows_the_canvas_as_in_pil() {
    // a 24×16 frame at (5, 3) on a 24×16 screen: PIL's canvas is 29×19 (pixels: goldens.json)
    let img = decode_rgb8(&fixture("train/n02123045/gif_frame_outside.gif")).unwrap();
    assert_eq!((img.width, img.height), (29, 19));
}
