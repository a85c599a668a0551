//! Encoded image bytes → RGB8 pixels, the way PIL's `Image.open(f).convert("RGB")` gives them
//! (the reference pipelines feed that to transformers' image processors). No I/O: bytes in,
//! pixels out.
//!
//! What PIL does, and so what this does:
//! - the format is sniffed from the bytes, never the file extension;
//! - alpha is dropped, not composited (RGBA, LA, palette+tRNS, WebP with alpha);
//! - gray is replicated; palettes are looked up (the colour of a transparent index is kept);
//! - 16-bit gray (`I;16`) is clipped to 255, not scaled (PIL's `I;16 → L`); 16-bit colour and
//!   16-bit gray+alpha keep the high byte (PIL's `RGB;16B`, `LA;16B` raw modes);
//! - CMYK JPEGs are read with Adobe polarity whatever their markers say (PIL's `CMYK;I`), then
//!   converted with PIL's `cmyk2rgb`; Adobe YCCK goes through libjpeg's YCC → RGB tables first;
//! - the EXIF orientation is *not* applied (`Image.open` does not, nor does CLIPImageProcessor);
//! - ICC profiles are ignored (PIL's `convert` ignores them);
//! - a truncated file is an error (PIL raises "image file is truncated"), as is an empty file;
//! - an animation gives its first frame; a GIF whose first frame reaches past the logical screen
//!   grows the canvas to cover it (PIL's `GifImageFile._seek`);
//! - one pixel budget for every format, PIL's decompression-bomb limit ([`MAX_PIXELS`]), checked
//!   from the header's dimensions before any pixel buffer is allocated;
//! - PNG: the CRC of every chunk before the first IDAT is checked (PIL refuses a file with a bad
//!   one, even on an ancillary chunk) and none from the first IDAT on (PIL does not read them);
//! - JPEG: any size up to libjpeg's 65500 pixels a side (zune-jpeg's default stops at 16384).
//!
//! Exactness: PNG (every mode and bit depth), BMP, TIFF, GIF and the lossy WebP fixture decode
//! bit-exactly as PIL does. JPEG cannot: zune-jpeg's IDCT rounding and chroma upsampling differ
//! from libjpeg-turbo's (±1–2 without chroma subsampling, up to ±4 with 4:2:0; mean < 0.3). The
//! measured bounds are pinned in `tests/data_decode.rs`.

use std::borrow::Cow;
use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Decoded pixels: `width × height` RGB triples, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Why bytes did not decode. The message is what a skipped-image report shows.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not an image: unrecognised content (first bytes: {0}); expected jpeg, png, gif, bmp, tiff or webp")]
    UnknownFormat(String),
    #[error("{format}: {reason}")]
    Corrupt { format: &'static str, reason: String },
    #[error("{format}: unsupported {what}")]
    Unsupported { format: &'static str, what: String },
    #[error(
        "{format}: {width}×{height} is {pixels} pixels, over the limit of {limit} pixels (PIL's decompression-bomb \
         limit, 2 × Image.MAX_IMAGE_PIXELS: PIL refuses it too); downscale the image to read it"
    )]
    TooManyPixels { format: &'static str, width: u64, height: u64, pixels: u64, limit: u64 },
    #[error(
        "jpeg: {width}×{height} has a side over {JPEG_MAX_SIDE} pixels, libjpeg's limit (PIL refuses it too); \
         re-encode the image smaller to read it"
    )]
    JpegTooWide { width: u64, height: u64 },
    #[error(
        "png: chunk {chunk} has a bad CRC (stored {stored:#010x}, computed {computed:#010x}) before the image data, \
         where PIL checks every chunk and refuses the file; re-save the image to repair it"
    )]
    PngChunkCrc { chunk: String, stored: u32, computed: u32 },
}

/// The most pixels an image may have: PIL refuses (`DecompressionBombError`) an image of more than
/// 2 × `Image.MAX_IMAGE_PIXELS` = 2 × 89,478,485 pixels, counting a zero side as 1; between 1× and
/// 2× it only warns, and so saeflow reads it.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// libjpeg's `JPEG_MAX_DIMENSION`: PIL (libjpeg-turbo) refuses a JPEG with a longer side.
pub const JPEG_MAX_SIDE: u64 = 65_500;

/// Refuse an image of more than [`MAX_PIXELS`] pixels, as PIL does, from its header's dimensions.
pub fn check_pixel_budget(format: Format, width: u64, height: u64) -> Result<(), DecodeError> {
    let pixels = width.max(1).saturating_mul(height.max(1));
    if pixels > MAX_PIXELS {
        return Err(DecodeError::TooManyPixels { format: format.name(), width, height, pixels, limit: MAX_PIXELS });
    }
    Ok(())
}

/// The image crate's allocation limit: within the pixel budget, the widest pixel it decodes
/// (16-bit RGBA, 8 bytes) plus room for a decoder's own buffers, so the budget decides, not this.
const MAX_ALLOC: u64 = MAX_PIXELS * 8 + (256 << 20);

/// The formats saeflow reads, sniffed from their magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Bmp,
    Tiff,
    Webp,
}

impl Format {
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        Some(match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Format::Jpeg,
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Format::Png,
            [b'G', b'I', b'F', b'8', ..] => Format::Gif,
            [b'B', b'M', ..] => Format::Bmp,
            [b'I', b'I', 0x2A, 0x00, ..] | [b'M', b'M', 0x00, 0x2A, ..] => Format::Tiff,
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Format::Webp,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Tiff => "tiff",
            Format::Webp => "webp",
        }
    }
}

/// Decode an encoded image to RGB8 as PIL's `Image.open(f).convert("RGB")` would.
pub fn decode_rgb8(bytes: &[u8]) -> Result<Rgb8, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = Format::sniff(bytes).ok_or_else(|| {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        DecodeError::UnknownFormat(head.join(" "))
    })?;
    match format {
        Format::Jpeg => decode_jpeg(bytes),
        Format::Gif => decode_gif(bytes),
        Format::Png => {
            let bytes = png_chunks_as_pil(bytes)?;
            decode_with_image(&bytes, format, ImageFormat::Png)
        }
        Format::Bmp => decode_with_image(bytes, format, ImageFormat::Bmp),
        Format::Tiff => decode_with_image(bytes, format, ImageFormat::Tiff),
        Format::Webp => decode_with_image(bytes, format, ImageFormat::WebP),
    }
}

fn corrupt(format: Format, reason: impl ToString) -> DecodeError {
    DecodeError::Corrupt { format: format.name(), reason: reason.to_string() }
}

fn decode_jpeg(bytes: &[u8]) -> Result<Rgb8, DecodeError> {
    let err = |e: zune_jpeg::errors::DecodeErrors| corrupt(Format::Jpeg, e);
    // strict: a truncated stream is an error, as in PIL (zune would otherwise pad it with grey)
    // zune-jpeg's default size limit (16384 a side) is not PIL's: the budget and libjpeg's side decide
    let side = JPEG_MAX_SIDE as usize + 1;
    let options = DecoderOptions::default().set_strict_mode(true).set_max_width(side).set_max_height(side);
    let mut header = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    header.decode_headers().map_err(err)?;
    let (w, h) = header.dimensions().ok_or_else(|| corrupt(Format::Jpeg, "no dimensions after the headers"))?;
    let (w, h) = (w as u64, h as u64);
    check_pixel_budget(Format::Jpeg, w, h)?;
    if w > JPEG_MAX_SIDE || h > JPEG_MAX_SIDE {
        return Err(DecodeError::JpegTooWide { width: w, height: h });
    }
    let input = header.input_colorspace().ok_or_else(|| corrupt(Format::Jpeg, "no colour space after the headers"))?;
    let out = match input {
        ColorSpace::CMYK | ColorSpace::YCCK | ColorSpace::Luma => input,
        _ => ColorSpace::RGB,
    };
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options.jpeg_set_out_colorspace(out));
    let raw = decoder.decode().map_err(err)?;
    let info = decoder.info().ok_or_else(|| corrupt(Format::Jpeg, "no image information after decoding"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let pixels = match out {
        ColorSpace::RGB => raw,
        ColorSpace::Luma => gray_to_rgb(&raw),
        ColorSpace::CMYK => raw.chunks_exact(4).flat_map(|p| cmyk_to_rgb_pil([p[0], p[1], p[2], p[3]])).collect(),
        _ => raw
            .chunks_exact(4)
            .flat_map(|p| {
                let [r, g, b] = ycc_to_rgb_libjpeg(p[0], p[1], p[2]);
                cmyk_to_rgb_pil([255 - r, 255 - g, 255 - b, p[3]])
            })
            .collect(),
    };
    check_len(Format::Jpeg, width, height, pixels)
}

fn check_len(format: Format, width: u32, height: u32, pixels: Vec<u8>) -> Result<Rgb8, DecodeError> {
    if pixels.len() != width as usize * height as usize * 3 {
        return Err(corrupt(format, format!("decoded {} bytes for {width}×{height} pixels", pixels.len())));
    }
    Ok(Rgb8 { width, height, pixels })
}

/// PIL's `cmyk2rgb` applied to CMYK as stored in the file. PIL reads every CMYK JPEG with
/// Adobe polarity (raw mode `CMYK;I`: stored values are inverted), so with PIL's
/// c = 255 − stored_c, k = 255 − stored_k: channel = nk − c·nk/255 with nk = 255 − k, using
/// PIL's rounding `MULDIV255(a, b) = ((a·b + 128) >> 8 + a·b + 128) >> 8`.
pub fn cmyk_to_rgb_pil(stored: [u8; 4]) -> [u8; 3] {
    let nk = u32::from(stored[3]);
    let ch = |s: u8| {
        let c = 255 - u32::from(s);
        let t = c * nk + 128;
        (nk - (((t >> 8) + t) >> 8)) as u8
    };
    [ch(stored[0]), ch(stored[1]), ch(stored[2])]
}

/// libjpeg's YCbCr → RGB (jdcolor.c tables, 16-bit fixed point), used for Adobe YCCK.
pub fn ycc_to_rgb_libjpeg(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    const SCALE: i32 = 16;
    const HALF: i32 = 1 << (SCALE - 1);
    let fix = |x: f64| (x * f64::from(1 << SCALE) + 0.5) as i32;
    let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
    let r = y + ((fix(1.402_00) * cr + HALF) >> SCALE);
    let g = y + ((-fix(0.344_14) * cb + HALF - fix(0.714_14) * cr) >> SCALE);
    let b = y + ((fix(1.772_00) * cb + HALF) >> SCALE);
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

fn gray_to_rgb(gray: &[u8]) -> Vec<u8> {
    gray.iter().flat_map(|&v| [v, v, v]).collect()
}

/// First frame of a GIF through its palette, as PIL's mode `P` → RGB: the canvas is the logical
/// screen grown to cover the frame (PIL's `_seek`), it starts as the frame's transparent index
/// (else 0), the frame is placed at its offset, every index is looked up (transparent ones too:
/// alpha is dropped). No palette: indices are gray levels (PIL's `L`). The screen and the canvas
/// are held to the pixel budget before the frame's pixels are read.
fn decode_gif(bytes: &[u8]) -> Result<Rgb8, DecodeError> {
    let err = |e: gif::DecodingError| corrupt(Format::Gif, e);
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    // the gif crate's own limit (50 MB) is not PIL's: the budget (one byte per pixel) decides
    options.set_memory_limit(gif::MemoryLimit::Bytes(std::num::NonZeroU64::new(MAX_PIXELS).expect("non-zero")));
    let mut decoder = options.read_info(bytes).map_err(err)?;
    let (screen_w, screen_h) = (decoder.width(), decoder.height());
    check_pixel_budget(Format::Gif, screen_w.into(), screen_h.into())?;
    let global: Option<Vec<u8>> = decoder.global_palette().map(<[u8]>::to_vec);
    let info = decoder.next_frame_info().map_err(err)?.ok_or_else(|| corrupt(Format::Gif, "no frame"))?;
    let (left, top, fw, fh) = (usize::from(info.left), usize::from(info.top), usize::from(info.width), usize::from(info.height));
    let (width, height) = (usize::from(screen_w).max(left + fw), usize::from(screen_h).max(top + fh));
    check_pixel_budget(Format::Gif, width as u64, height as u64)?;
    let (transparent, local) = (info.transparent, info.palette.clone());
    let mut buffer = vec![0u8; decoder.buffer_size()];
    decoder.read_into_buffer(&mut buffer).map_err(err)?;
    let palette: Cow<[u8]> = match (&local, &global) {
        (Some(local), _) => Cow::Borrowed(local.as_slice()),
        (None, Some(g)) => Cow::Borrowed(g.as_slice()),
        (None, None) => Cow::Owned((0..=255u8).flat_map(|v| [v, v, v]).collect()),
    };
    let mut canvas = vec![transparent.unwrap_or(0); width * height];
    if fw > 0 {
        for (y, row) in buffer.chunks_exact(fw).take(fh).enumerate() {
            let start = (top + y) * width + left;
            canvas[start..start + fw].copy_from_slice(row);
        }
    }
    let (width, height) = (width as u32, height as u32);
    let pixels = canvas
        .iter()
        .flat_map(|&i| {
            let o = usize::from(i) * 3;
            palette.get(o..o + 3).map(|c| [c[0], c[1], c[2]]).unwrap_or([0, 0, 0])
        })
        .collect();
    check_len(Format::Gif, width, height, pixels)
}

fn decode_with_image(bytes: &[u8], format: Format, image_format: ImageFormat) -> Result<Rgb8, DecodeError> {
    let err = |e| match e {
        image::ImageError::Unsupported(u) => DecodeError::Unsupported { format: format.name(), what: u.to_string() },
        e => corrupt(format, e),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    // the header only: nothing the size of the image is allocated before the budget is checked
    let decoder = reader.into_decoder().map_err(err)?;
    let (width, height) = decoder.dimensions();
    check_pixel_budget(format, width.into(), height.into())?;
    let img = DynamicImage::from_decoder(decoder).map_err(err)?;
    let high = |v: &u16| (v >> 8) as u8;
    let pixels = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageRgba8(b) => b.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma8(b) => gray_to_rgb(&b),
        DynamicImage::ImageLumaA8(b) => b.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        // PIL's I;16 → L clips rather than scales
        DynamicImage::ImageLuma16(b) => b.iter().flat_map(|&v| [v.min(255) as u8; 3]).collect(),
        DynamicImage::ImageLumaA16(b) => b.chunks_exact(2).flat_map(|p| [high(&p[0]); 3]).collect(),
        DynamicImage::ImageRgb16(b) => b.iter().map(high).collect(),
        DynamicImage::ImageRgba16(b) => b.chunks_exact(4).flat_map(|p| [high(&p[0]), high(&p[1]), high(&p[2])]).collect(),
        other => {
            return Err(DecodeError::Unsupported { format: format.name(), what: format!("pixel type {:?}", other.color()) });
        }
    };
    check_len(format, width, height, pixels)
}

/// A PNG's chunks as PIL reads them: the header is held to the pixel budget; every chunk before
/// the first IDAT must have a good CRC (PIL's `_open` checks them all, ancillary ones included:
/// the png crate would skip a bad ancillary chunk); from the first IDAT on PIL checks none (the
/// png crate refuses a bad one on a critical chunk), so those are recomputed where they differ.
/// The chunk walk stops where the bytes do: the decoder reports a truncated file.
fn png_chunks_as_pil(bytes: &[u8]) -> Result<Cow<'_, [u8]>, DecodeError> {
    let mut repaired: Option<Vec<u8>> = None;
    let mut image_data = false;
    let mut pos = 8;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let Some(stored) = bytes.get(pos + 8 + length..pos + 12 + length) else { break };
        let stored = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
        let data = &bytes[pos + 8..pos + 8 + length];
        if &kind == b"IHDR" && length >= 8 {
            let side = |at: usize| u64::from(u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]));
            check_pixel_budget(Format::Png, side(0), side(4))?;
        }
        image_data |= matches!(&kind, b"IDAT" | b"fdAT");
        let mut crc = flate2::Crc::new();
        crc.update(&kind);
        crc.update(data);
        let computed = crc.sum();
        if computed != stored {
            if !image_data {
                return Err(DecodeError::PngChunkCrc { chunk: String::from_utf8_lossy(&kind).into_owned(), stored, computed });
            }
            let fixed = repaired.get_or_insert_with(|| bytes.to_vec());
            fixed[pos + 8 + length..pos + 12 + length].copy_from_slice(&computed.to_be_bytes());
        }
        if &kind == b"IEND" {
            break;
        }
        pos += 12 + length;
    }
    Ok(repaired.map_or(Cow::Borrowed(bytes), Cow::Owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_matches_pil_cmyk2rgb() {
        // PIL: Image.frombytes("CMYK", (1, 1), bytes([255 - s for s in stored])).convert("RGB"),
        // i.e. stored values read with CMYK;I polarity
        assert_eq!(cmyk_to_rgb_pil([255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb_pil([0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb_pil([255, 128, 0, 128]), [128, 64, 0]);
        assert_eq!(cmyk_to_rgb_pil([200, 100, 50, 0]), [0, 0, 0]);
    }

    #[test]
    fn ycc_matches_libjpeg_tables() {
        assert_eq!(ycc_to_rgb_libjpeg(128, 128, 128), [128, 128, 128]);
        assert_eq!(ycc_to_rgb_libjpeg(76, 85, 255), [254, 0, 0]);
        assert_eq!(ycc_to_rgb_libjpeg(0, 0, 0), [0, 135, 0]);
    }

    #[test]
    fn the_pixel_budget_is_pils_decompression_bomb_limit() {
        // PIL: pixels = max(1, w) × max(1, h); DecompressionBombError when pixels > 2 × 89,478,485
        assert!(check_pixel_budget(Format::Png, 178_956_970, 1).is_ok());
        assert!(check_pixel_budget(Format::Bmp, 13_377, 13_377).is_ok());
        assert!(check_pixel_budget(Format::Bmp, 13_378, 13_378).is_err());
        let e = check_pixel_budget(Format::Png, 178_956_971, 1).unwrap_err().to_string();
        assert!(e.starts_with("png: 178956971×1 is 178956971 pixels, over the limit of 178956970 pixels"), "{e}");
        assert!(check_pixel_budget(Format::Gif, 178_956_971, 0).is_err(), "a zero side counts as 1");
        assert!(check_pixel_budget(Format::Tiff, 0, 0).is_ok());
        assert!(check_pixel_budget(Format::Webp, u64::MAX, u64::MAX).is_err(), "no overflow");
    }

    #[test]
    fn empty_and_unknown_bytes_are_errors_not_panics() {
        assert!(matches!(decode_rgb8(b""), Err(DecodeError::Empty)));
        let e = decode_rgb8(b"hello, this is text").unwrap_err();
        assert!(e.to_string().starts_with("not an image"), "{e}");
        assert!(matches!(decode_rgb8(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16]), Err(DecodeError::Corrupt { format: "jpeg", .. })));
        assert!(decode_rgb8(b"GIF89a").is_err());
        assert!(decode_rgb8(b"\x89PNG\r\n\x1a\n").is_err());
    }
}
