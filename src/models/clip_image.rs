//! CLIP's image preprocessing, as transformers' PIL-backed `CLIPImageProcessor` computes it:
//! the `pixel_values` LLaVA's vision tower takes, from an [`Rgb8`] image.
//!
//! For each image, in this order (transformers' `PilBackend._preprocess`):
//! 1. **resize** (`do_resize`) with Pillow's filter `resample` (bicubic for CLIP) on the `uint8`
//!    pixels — transformers' `image_transforms.resize` converts a `uint8` array to a PIL image and
//!    calls `Image.resize`, so [`crate::data::resample`] gives the very same pixels. The target is
//!    `size`: `{height, width}` as given, or `{shortest_edge: s}` as `get_resize_output_image_size`
//!    (`default_to_square=False`) computes it: the short side becomes `s`, the long side
//!    `int(s * long / short)` (truncated, not rounded: 64×43 → 500×336, not 501);
//! 2. **center crop** (`do_center_crop`) to `crop_size` — `image_transforms.center_crop`: the
//!    offset is `(size − crop) // 2` (odd leftovers put the extra pixel at the bottom/right); an
//!    axis smaller than the crop is padded with zeros (before rescaling, so the pad becomes
//!    `(0 − mean) / std`), the image placed at `ceil((crop − size) / 2)`;
//! 3. **rescale** (`do_rescale`): `float32(float64(p) * rescale_factor)` (`image_transforms.rescale`);
//! 4. **normalize** (`do_normalize`): `(x − mean) / std` in `float32`, with `image_mean`/`image_std`
//!    rounded to `float32` (`image_transforms.normalize`);
//!
//! and the result is channels-first `float32` (3, H, W). Steps 3–4 map each `u8` to one `f32` per
//! channel, so they are a 256-entry table computed once with exactly those operations; the values
//! equal transformers' bit for bit.
//!
//! The resize computes only the pixels the crop keeps ([`crate::data::resample::Window`]), and
//! resizers (their coefficients) are cached per input size: all of CIFAR's 32×32 images share one.
//!
//! Not reproduced: `do_convert_rgb` (an [`Rgb8`] is RGB already; saeflow's decoder drops alpha as
//! PIL's `convert("RGB")` does — transformers 5's own `convert_to_rgb` would instead composite an
//! alpha image onto white), `do_pad`, and sizes given as `longest_edge` or `max_height`/`max_width`
//! (CLIP never uses them); a config asking for them is an error. The torchvision-backed processor
//! (`CLIPImageProcessorFast`, and transformers 5's default when torchvision is installed) resizes
//! differently; this reproduces the PIL one for either name.
//!
//! [`ImageProcessor`] is the engine other preprocessings map onto: ConvNeXT's
//! ([`super::convnext_image`], what ResNet checkpoints name) is one resize + one crop too.
//!
//! No candle here: the model code turns the values into a tensor.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::data::Rgb8;
use crate::data::resample::{Filter, ResampleError, Resizer, Scratch, Window};

/// `OPENAI_CLIP_MEAN` in transformers (`image_utils.py`).
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// `OPENAI_CLIP_STD` in transformers.
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// The processor types whose preprocessing this reproduces.
const KNOWN_TYPES: &str =
    "CLIPImageProcessor, CLIPImageProcessorFast, CLIPImageProcessorPil (feature_extractor_type: CLIPFeatureExtractor)";

/// The resize target (`size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTo {
    /// `{shortest_edge: n}` (or a bare integer): the short side becomes `n`, the aspect ratio stays.
    ShortestEdge(u32),
    /// `{height, width}`: exactly this size.
    Exact { height: u32, width: u32 },
}

/// `crop_size`: the center crop's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropSize {
    pub height: u32,
    pub width: u32,
}

/// A `preprocessor_config.json` of a CLIP image processor, every missing key filled with
/// `CLIPImageProcessor`'s class default ([`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessorConfig {
    pub do_resize: bool,
    pub size: ResizeTo,
    /// `resample` (a Pillow `Image.Resampling` number in the file).
    pub resample: Filter,
    pub do_center_crop: bool,
    pub crop_size: CropSize,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    /// Read for completeness; [`Rgb8`] input is RGB already.
    pub do_convert_rgb: bool,
}

impl Default for ImageProcessorConfig {
    /// transformers' `CLIPImageProcessor` class attributes.
    fn default() -> Self {
        ImageProcessorConfig {
            do_resize: true,
            size: ResizeTo::ShortestEdge(224),
            resample: Filter::Bicubic,
            do_center_crop: true,
            crop_size: CropSize { height: 224, width: 224 },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            do_convert_rgb: true,
        }
    }
}

/// Errors of CLIP preprocessing configs and runs.
#[derive(Debug, thiserror::Error)]
pub enum ClipImageError {
    #[error("preprocessor config: not valid JSON: {0}")]
    Json(String),
    #[error("preprocessor config: expected a JSON object, got {0}")]
    NotObject(String),
    #[error("preprocessor config: {key}: expected {expected}, got {got}")]
    Key { key: String, expected: &'static str, got: String },
    #[error("preprocessor config: {key}: unsupported '{got}'; supported: {KNOWN_TYPES} (saeflow reproduces CLIP's preprocessing only)")]
    ProcessorType { key: &'static str, got: String },
    #[error("preprocessor config: {key}: {got} is not supported; {help}")]
    Unsupported { key: &'static str, got: String, help: &'static str },
    #[error(
        "preprocessor config: do_center_crop is false and size is {size:?}: the output size would depend on each image; \
         set do_center_crop to true or size to {{height, width}}"
    )]
    VariableSize { size: ResizeTo },
    #[error("clip preprocess: output buffer holds {got} floats, expected {expected} (3 × {height} × {width})")]
    OutputLen { expected: usize, got: usize, height: usize, width: usize },
    #[error("clip preprocess: {0}")]
    Resample(#[from] ResampleError),
}

pub(crate) fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
}

pub(crate) fn key_error(key: impl Into<String>, expected: &'static str, got: &Value) -> ClipImageError {
    ClipImageError::Key { key: key.into(), expected, got: describe(got) }
}

/// A key's value, `None` when absent or `null` (transformers then uses the class default).
pub(crate) fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

pub(crate) fn opt_bool(map: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ClipImageError> {
    match get(map, key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(key_error(key, "true or false", v)),
    }
}

pub(crate) fn positive(key: &str, v: &Value) -> Result<u32, ClipImageError> {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0).ok_or_else(|| key_error(key, "a positive integer", v))
}

/// Keys of a size object that are set (not `null`).
pub(crate) fn size_keys(obj: &Map<String, Value>) -> Vec<&str> {
    obj.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.as_str()).collect()
}

/// `size`: an integer (`get_size_dict` with `default_to_square=False` → shortest edge),
/// `{shortest_edge}` or `{height, width}`.
pub(crate) fn parse_size(v: &Value) -> Result<ResizeTo, ClipImageError> {
    const EXPECTED: &str = "an integer, {\"shortest_edge\": n} or {\"height\": h, \"width\": w}";
    match v {
        Value::Number(_) => Ok(ResizeTo::ShortestEdge(positive("size", v)?)),
        Value::Object(obj) => {
            let mut keys = size_keys(obj);
            keys.sort_unstable();
            match keys.as_slice() {
                ["shortest_edge"] => Ok(ResizeTo::ShortestEdge(positive("size.shortest_edge", &obj["shortest_edge"])?)),
                ["height", "width"] => {
                    Ok(ResizeTo::Exact { height: positive("size.height", &obj["height"])?, width: positive("size.width", &obj["width"])? })
                }
                ["longest_edge"] | ["longest_edge", "shortest_edge"] | ["max_height", "max_width"] => Err(ClipImageError::Unsupported {
                    key: "size",
                    got: describe(v),
                    help: "CLIP resizes to {shortest_edge} or {height, width}",
                }),
                _ => Err(key_error("size", EXPECTED, v)),
            }
        }
        _ => Err(key_error("size", EXPECTED, v)),
    }
}

/// `crop_size`: an integer (a square, as `get_size_dict` makes it) or `{height, width}`.
pub(crate) fn parse_crop(v: &Value) -> Result<CropSize, ClipImageError> {
    match v {
        Value::Number(_) => {
            let n = positive("crop_size", v)?;
            Ok(CropSize { height: n, width: n })
        }
        Value::Object(obj) if matches!(size_keys(obj).len(), 2) && obj.contains_key("height") && obj.contains_key("width") => {
            Ok(CropSize { height: positive("crop_size.height", &obj["height"])?, width: positive("crop_size.width", &obj["width"])? })
        }
        _ => Err(key_error("crop_size", "an integer or {\"height\": h, \"width\": w}", v)),
    }
}

/// `image_mean`/`image_std`: one number for every channel or a list of three.
pub(crate) fn parse_channels(key: &str, v: &Value) -> Result<[f64; 3], ClipImageError> {
    const EXPECTED: &str = "a number or a list of 3 numbers";
    match v {
        Value::Number(n) => n.as_f64().map(|x| [x; 3]).ok_or_else(|| key_error(key, EXPECTED, v)),
        Value::Array(items) if items.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, item) in out.iter_mut().zip(items) {
                *o = item.as_f64().ok_or_else(|| key_error(key, EXPECTED, v))?;
            }
            Ok(out)
        }
        _ => Err(key_error(key, EXPECTED, v)),
    }
}

/// `resample`: a Pillow filter number (`default` when absent).
pub(crate) fn parse_resample(map: &Map<String, Value>, default: Filter) -> Result<Filter, ClipImageError> {
    let Some(v) = get(map, "resample") else { return Ok(default) };
    let code = v.as_i64().ok_or_else(|| key_error("resample", "a Pillow filter number (0–7)", v))?;
    Filter::from_pil(code).ok_or_else(|| ClipImageError::Unsupported {
        key: "resample",
        got: match code {
            0 => "0 (nearest)".into(),
            6 => "6 (mks2013)".into(),
            7 => "7 (mks2021)".into(),
            _ => code.to_string(),
        },
        help: "supported: 1 (lanczos), 2 (bilinear), 3 (bicubic), 4 (box), 5 (hamming)",
    })
}

/// `rescale_factor`: a finite number (`default` when absent).
pub(crate) fn parse_rescale_factor(map: &Map<String, Value>, default: f64) -> Result<f64, ClipImageError> {
    match get(map, "rescale_factor") {
        None => Ok(default),
        Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| key_error("rescale_factor", "a finite number", v)),
    }
}

/// `image_mean` and `image_std` (the defaults when absent); a zero std is refused.
pub(crate) fn parse_mean_std(
    map: &Map<String, Value>,
    default_mean: [f64; 3],
    default_std: [f64; 3],
) -> Result<([f64; 3], [f64; 3]), ClipImageError> {
    let image_mean = get(map, "image_mean").map(|v| parse_channels("image_mean", v)).transpose()?.unwrap_or(default_mean);
    let image_std = get(map, "image_std").map(|v| parse_channels("image_std", v)).transpose()?.unwrap_or(default_std);
    if let Some(v) = get(map, "image_std")
        && image_std.contains(&0.0)
    {
        return Err(key_error("image_std", "non-zero numbers (they divide)", v));
    }
    Ok((image_mean, image_std))
}

impl ImageProcessorConfig {
    /// Parse a `preprocessor_config.json`.
    pub fn from_json(text: &str) -> Result<ImageProcessorConfig, ClipImageError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ClipImageError::Json(e.to_string()))?;
        match &value {
            Value::Object(map) => ImageProcessorConfig::from_map(map),
            other => Err(ClipImageError::NotObject(describe(other))),
        }
    }

    /// [`ImageProcessorConfig::from_json`] on an already parsed object. Keys that do not change the
    /// pixel values (`processor_class`, `image_seq_length`, …) are ignored, as transformers keeps
    /// them as inert attributes.
    pub fn from_map(map: &Map<String, Value>) -> Result<ImageProcessorConfig, ClipImageError> {
        for (key, known) in [
            ("image_processor_type", &["CLIPImageProcessor", "CLIPImageProcessorFast", "CLIPImageProcessorPil"][..]),
            ("feature_extractor_type", &["CLIPFeatureExtractor"][..]),
        ] {
            match get(map, key) {
                None => {}
                Some(Value::String(s)) if known.contains(&s.as_str()) => {}
                Some(Value::String(s)) => return Err(ClipImageError::ProcessorType { key, got: s.clone() }),
                Some(v) => return Err(key_error(key, "a string", v)),
            }
        }
        for (key, help) in [
            ("do_pad", "CLIP's processor does not pad; remove do_pad or set it to false"),
            ("use_square_size", "KOSMOS-2's square resize is not reproduced; give size as {height, width} instead"),
        ] {
            if opt_bool(map, key, false)? {
                return Err(ClipImageError::Unsupported { key, got: "true".into(), help });
            }
        }
        let d = ImageProcessorConfig::default();
        let resample = parse_resample(map, d.resample)?;
        let rescale_factor = parse_rescale_factor(map, d.rescale_factor)?;
        let (image_mean, image_std) = parse_mean_std(map, d.image_mean, d.image_std)?;
        Ok(ImageProcessorConfig {
            do_resize: opt_bool(map, "do_resize", d.do_resize)?,
            size: get(map, "size").map(parse_size).transpose()?.unwrap_or(d.size),
            resample,
            do_center_crop: opt_bool(map, "do_center_crop", d.do_center_crop)?,
            crop_size: get(map, "crop_size").map(parse_crop).transpose()?.unwrap_or(d.crop_size),
            do_rescale: opt_bool(map, "do_rescale", d.do_rescale)?,
            rescale_factor,
            do_normalize: opt_bool(map, "do_normalize", d.do_normalize)?,
            image_mean,
            image_std,
            do_convert_rgb: opt_bool(map, "do_convert_rgb", d.do_convert_rgb)?,
        })
    }

    /// The (width, height) an image of `width × height` is resized to (itself when `do_resize`
    /// is off).
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        if !self.do_resize {
            return (width, height);
        }
        match self.size {
            ResizeTo::ShortestEdge(edge) => shortest_edge_size(width, height, edge),
            ResizeTo::Exact { height, width } => (width, height),
        }
    }
}

/// transformers' `get_resize_output_image_size(image, size=edge, default_to_square=False)`, as
/// (width, height): the short side becomes `edge`, the long side `int(edge * long / short)`
/// (Python's true division, then truncation); a square image is `edge × edge`.
pub fn shortest_edge_size(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // exact in f64 (both operands < 2⁵³), so this is Python's correctly rounded int / int
    let new_long = ((u64::from(edge) * u64::from(long)) as f64 / f64::from(short.max(1))) as u32;
    if width <= height { (edge, new_long) } else { (new_long, edge) }
}

/// One axis of transformers' `center_crop`: from a resized side of `size`, keep `take` pixels
/// starting at `from`, written at `to` in the crop of `crop` pixels (zeros elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CropAxis {
    from: u32,
    take: u32,
    to: u32,
}

fn crop_axis(size: u32, crop: u32) -> CropAxis {
    if crop <= size {
        // `top = (orig_height - crop_height) // 2`
        CropAxis { from: (size - crop) / 2, take: crop, to: 0 }
    } else {
        // padded: `top_pad = ceil((new_height - orig_height) / 2)`
        CropAxis { from: 0, take: size, to: (crop - size).div_ceil(2) }
    }
}

/// Resizers kept per input size (the most recently used first).
const RESIZER_CACHE: usize = 16;

// decoding threads share one processor
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<ImageProcessor>()
};

/// CLIP preprocessing with one config: [`ImageProcessor::preprocess`] turns an [`Rgb8`] into
/// channels-first `f32` pixel values of [`ImageProcessor::output_size`]. `Sync`: share one
/// between decoding threads.
#[derive(Debug)]
pub struct ImageProcessor {
    config: ImageProcessorConfig,
    /// (height, width) of every output.
    output: (usize, usize),
    /// Rescale + normalize of each `u8`, per channel.
    table: [[f32; 256]; 3],
    resizers: Mutex<Vec<Arc<Resizer>>>,
}

impl ImageProcessor {
    /// A processor for `config`. Errors when the output size would depend on the image
    /// (`do_center_crop` off with a shortest-edge or no resize): a vision tower takes one size.
    pub fn new(config: ImageProcessorConfig) -> Result<ImageProcessor, ClipImageError> {
        let output = match (config.do_center_crop, config.do_resize, config.size) {
            (true, _, _) => (config.crop_size.height, config.crop_size.width),
            (false, true, ResizeTo::Exact { height, width }) => (height, width),
            (false, _, size) => return Err(ClipImageError::VariableSize { size }),
        };
        let table = std::array::from_fn(|c| {
            let mean = config.image_mean[c] as f32;
            let std = config.image_std[c] as f32;
            std::array::from_fn(|p| {
                // image_transforms.rescale: float64 product, then float32
                let x = if config.do_rescale { (p as f64 * config.rescale_factor) as f32 } else { p as f32 };
                // image_transforms.normalize: float32 arithmetic, mean/std cast to float32
                if config.do_normalize { (x - mean) / std } else { x }
            })
        });
        Ok(ImageProcessor { config, output: (output.0 as usize, output.1 as usize), table, resizers: Mutex::new(Vec::new()) })
    }

    pub fn config(&self) -> &ImageProcessorConfig {
        &self.config
    }

    /// (height, width) of the pixel values of every image.
    pub fn output_size(&self) -> (usize, usize) {
        self.output
    }

    /// Number of `f32` per image: 3 × height × width.
    pub fn output_len(&self) -> usize {
        3 * self.output.0 * self.output.1
    }

    /// The resizer (with the crop's window) for one input size, from the cache when it is there.
    fn resizer(&self, width: u32, height: u32) -> Result<(Arc<Resizer>, CropAxis, CropAxis), ClipImageError> {
        let (rw, rh) = self.config.resized_size(width, height);
        let (out_h, out_w) = (self.output.0 as u32, self.output.1 as u32);
        let (ax, ay) = (crop_axis(rw, out_w), crop_axis(rh, out_h));
        let cached = {
            let mut cache = self.resizers.lock().unwrap_or_else(|e| e.into_inner());
            let hit = cache.iter().position(|r| r.input_size() == (width, height));
            hit.map(|i| {
                let r = cache.remove(i);
                cache.insert(0, Arc::clone(&r));
                r
            })
        };
        if let Some(r) = cached {
            return Ok((r, ax, ay));
        }
        let window = Window { left: ax.from, top: ay.from, width: ax.take, height: ay.take };
        let r = Arc::new(Resizer::with_window(self.config.resample, (width, height), (rw, rh), window)?);
        let mut cache = self.resizers.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(0, Arc::clone(&r));
        cache.truncate(RESIZER_CACHE);
        Ok((r, ax, ay))
    }

    /// The pixel values of one image: (3, H, W) channels-first, `H × W` = [`Self::output_size`].
    pub fn preprocess(&self, image: &Rgb8) -> Result<Vec<f32>, ClipImageError> {
        let mut out = vec![0.0; self.output_len()];
        self.preprocess_into(image, &mut out)?;
        Ok(out)
    }

    /// [`Self::preprocess`] into `out` (exactly [`Self::output_len`] floats, e.g. one image's
    /// slot of a batch buffer).
    pub fn preprocess_into(&self, image: &Rgb8, out: &mut [f32]) -> Result<(), ClipImageError> {
        self.preprocess_with(image, &mut Scratch::default(), out)
    }

    /// [`Self::preprocess_into`] reusing `scratch` (keep one per thread: then nothing is
    /// allocated per image).
    pub fn preprocess_with(&self, image: &Rgb8, scratch: &mut Scratch, out: &mut [f32]) -> Result<(), ClipImageError> {
        let (height, width) = self.output;
        if out.len() != self.output_len() {
            return Err(ClipImageError::OutputLen { expected: self.output_len(), got: out.len(), height, width });
        }
        let (resizer, ax, ay) = self.resizer(image.width, image.height)?;
        let plane = height * width;
        let (r_plane, rest) = out.split_at_mut(plane);
        let (g_plane, b_plane) = rest.split_at_mut(plane);
        let [tr, tg, tb] = &self.table;
        if ax.take as usize != width || ay.take as usize != height {
            // center_crop's zero padding, rescaled and normalized like any pixel
            r_plane.fill(tr[0]);
            g_plane.fill(tg[0]);
            b_plane.fill(tb[0]);
        }
        let (x0, y0) = (ax.to as usize, ay.to as usize);
        resizer.resize_rows(image, scratch, |slot, row| {
            let at = (y0 + slot) * width + x0;
            let n = row.len() / 3;
            let (r, g, b) = (&mut r_plane[at..at + n], &mut g_plane[at..at + n], &mut b_plane[at..at + n]);
            for (((px, r), g), b) in row.chunks_exact(3).zip(r).zip(g).zip(b) {
                *r = tr[usize::from(px[0])];
                *g = tg[usize::from(px[1])];
                *b = tb[usize::from(px[2])];
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_truncates_like_transformers() {
        // get_resize_output_image_size(np.zeros((h, w, 3)), 336, default_to_square=False)
        assert_eq!(shortest_edge_size(500, 375, 336), (448, 336));
        assert_eq!(shortest_edge_size(64, 43, 336), (500, 336)); // 500.09…
        assert_eq!(shortest_edge_size(41, 56, 336), (336, 458)); // 458.93… truncated, not 459
        assert_eq!(shortest_edge_size(32, 32, 336), (336, 336));
        assert_eq!(shortest_edge_size(1000, 20, 336), (16800, 336));
        assert_eq!(shortest_edge_size(3, 7, 20), (20, 46)); // 46.67
    }

    #[test]
    fn center_crop_offsets_and_padding() {
        // odd leftover: (27 − 20) // 2 = 3, the extra pixel at the end
        assert_eq!(crop_axis(27, 20), CropAxis { from: 3, take: 20, to: 0 });
        assert_eq!(crop_axis(20, 20), CropAxis { from: 0, take: 20, to: 0 });
        // smaller than the crop: padded, the image at ceil((19 − 14) / 2) = 3
        assert_eq!(crop_axis(14, 19), CropAxis { from: 0, take: 14, to: 3 });
        assert_eq!(crop_axis(14, 18), CropAxis { from: 0, take: 14, to: 2 });
    }

    #[test]
    fn table_is_rescale_then_normalize_in_f32() {
        let p = ImageProcessor::new(ImageProcessorConfig::default()).unwrap();
        // numpy: (np.float32(np.float64(255) * (1 / 255)) - np.float32(0.48145466)) / np.float32(0.26862954)
        assert_eq!(p.table[0][255], 1.930_336_1);
        // numpy: (np.float32(np.float64(0) * (1 / 255)) - np.float32(0.40821073)) / np.float32(0.27577711)
        assert_eq!(p.table[2][0], -1.480_219_8);
        let raw = ImageProcessor::new(ImageProcessorConfig { do_rescale: false, do_normalize: false, ..Default::default() }).unwrap();
        assert_eq!(raw.table[1][200], 200.0);
    }

    #[test]
    fn variable_output_size_is_rejected() {
        let cfg = ImageProcessorConfig { do_center_crop: false, ..Default::default() };
        let e = ImageProcessor::new(cfg).unwrap_err();
        assert!(e.to_string().contains("set do_center_crop to true or size to {height, width}"), "{e}");
        let cfg = ImageProcessorConfig { do_center_crop: false, size: ResizeTo::Exact { height: 5, width: 7 }, ..Default::default() };
        assert_eq!(ImageProcessor::new(cfg).unwrap().output_size(), (5, 7));
    }

    #[test]
    fn resizers_are_cached_per_input_size() {
        let p = ImageProcessor::new(ImageProcessorConfig::default()).unwrap();
        let img = Rgb8 { width: 4, height: 6, pixels: vec![7; 72] };
        let a = p.preprocess(&img).unwrap();
        let first = Arc::as_ptr(&p.resizer(4, 6).unwrap().0);
        assert_eq!(Arc::as_ptr(&p.resizer(4, 6).unwrap().0), first);
        for w in 1..=RESIZER_CACHE as u32 + 3 {
            p.resizer(w, 9).unwrap();
        }
        assert_eq!(p.resizers.lock().unwrap().len(), RESIZER_CACHE);
        // evicted and rebuilt: the same values; a flat image gives flat planes
        assert_eq!(p.preprocess(&img).unwrap(), a);
        for (c, plane) in a.chunks_exact(224 * 224).enumerate() {
            assert!(plane.iter().all(|&v| v == p.table[c][7]), "channel {c}");
        }
    }

    #[test]
    fn output_buffer_length_is_checked() {
        let p = ImageProcessor::new(ImageProcessorConfig::default()).unwrap();
        let img = Rgb8 { width: 2, height: 2, pixels: vec![0; 12] };
        let e = p.preprocess_into(&img, &mut [0.0; 10]).unwrap_err();
        assert_eq!(e.to_string(), "clip preprocess: output buffer holds 10 floats, expected 150528 (3 × 224 × 224)");
    }
}
