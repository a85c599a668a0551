//! ConvNeXT's image preprocessing, as transformers' PIL-backed `ConvNextImageProcessorPil`
//! computes it: what every `microsoft/resnet-*` checkpoint names (`feature_extractor_type:
//! ConvNextFeatureExtractor`, and transformers maps the `resnet` model type to it too).
//!
//! transformers 5.24 (`image_processing_pil_convnext.py`), per image:
//! 1. **resize** (`do_resize`), with `size = {shortest_edge: s}` (an integer `size` means the
//!    same: `default_to_square = False`):
//!    - `s < 384`: the short side becomes `int(s / crop_pct)` — Python's float division, then
//!      truncation: 224 / 0.875 = 256, 40 / 0.875 = 45.71… → 45 — the long side
//!      `int(edge · long / short)` as CLIP's shortest-edge resize ([`super::clip_image::shortest_edge_size`]),
//!      with Pillow's filter `resample` (bicubic); then a **center crop to `s × s`**
//!      (`image_transforms.center_crop`: offset `(size − s) // 2`; a side smaller than `s`, only
//!      possible with `crop_pct > 1`, is zero-padded);
//!    - `s ≥ 384`: a resize to `s × s` (warped, no crop);
//! 2. **center crop** (`do_center_crop`, off by default) to `crop_size`;
//! 3. **rescale** and 4. **normalize** exactly as CLIP's processor (`float32(float64(p) ·
//!    rescale_factor)`, then `(x − mean) / std` in `float32`).
//!
//! Those are the steps of [`ImageProcessor`], so a [`ConvNextConfig`] becomes the equivalent
//! single resize + crop ([`ConvNextConfig::pipeline`]) and runs on that engine: Pillow-exact
//! resampling ([`crate::data::resample`]), only the kept window computed, resizers cached per
//! input size, values equal to transformers' bit for bit.
//!
//! Class defaults differ from CLIP's: `size {shortest_edge: 384}`, `crop_pct` 224/256, bicubic,
//! `IMAGENET_STANDARD_MEAN`/`_STD` (0.5 each: checkpoints give ImageNet's 0.485…/0.229… in their
//! file). transformers' ConvNeXT processors leave `do_convert_rgb` unset, so they refuse a
//! grayscale or RGBA PIL image (1 or 4 channels against 3 means) and callers `.convert("RGB")`
//! first; saeflow's decoder always yields RGB as PIL's `convert("RGB")` does, which is that.
//!
//! Not reproduced: a second center crop after the `s < 384` crop (`do_center_crop` with a short
//! `shortest_edge`; no checkpoint asks for it) and sizes other than a shortest edge (transformers
//! raises on them too). The torchvision-backed `ConvNextImageProcessor` (transformers 5's default
//! when torchvision is installed) resizes differently; this reproduces the PIL one for either name.

use serde_json::{Map, Value};

use super::clip_image::{
    self, ClipImageError, CropSize, ImageProcessor, ImageProcessorConfig, ResizeTo, describe, get, key_error, opt_bool, positive, size_keys,
};
use crate::data::resample::Filter;

/// `IMAGENET_STANDARD_MEAN` in transformers (`image_utils.py`): ConvNeXT's class default.
pub const IMAGENET_STANDARD_MEAN: [f64; 3] = [0.5, 0.5, 0.5];
/// `IMAGENET_STANDARD_STD` in transformers.
pub const IMAGENET_STANDARD_STD: [f64; 3] = [0.5, 0.5, 0.5];
/// `IMAGENET_DEFAULT_MEAN`: what `microsoft/resnet-50`'s `preprocessor_config.json` gives.
pub const IMAGENET_DEFAULT_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// `IMAGENET_DEFAULT_STD`.
pub const IMAGENET_DEFAULT_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// From this shortest edge on, ConvNeXT warps to a square instead of resizing and cropping.
pub const WARP_FROM: u32 = 384;

/// The processor types whose preprocessing this reproduces.
const KNOWN_TYPES: &str = "ConvNextImageProcessor, ConvNextImageProcessorFast, ConvNextImageProcessorPil (feature_extractor_type: \
                           ConvNextFeatureExtractor)";

/// Errors of ConvNeXT preprocessing configs. Key-level problems (a wrong type, a zero std, an
/// unsupported filter) are CLIP's, whose parsing this shares.
#[derive(Debug, thiserror::Error)]
pub enum ConvNextImageError {
    #[error(transparent)]
    Config(#[from] ClipImageError),
    #[error(
        "preprocessor config: {key}: unsupported '{got}'; supported: {KNOWN_TYPES} (a ResNet checkpoint's preprocessing is ConvNeXT's)"
    )]
    ProcessorType { key: &'static str, got: String },
    #[error("preprocessor config: {key}: {got} is not supported; {help}")]
    Unsupported { key: &'static str, got: String, help: &'static str },
}

/// A `preprocessor_config.json` of a ConvNeXT image processor, every missing key filled with
/// `ConvNextImageProcessorPil`'s class default ([`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNextConfig {
    pub do_resize: bool,
    /// `size`'s `shortest_edge`.
    pub shortest_edge: u32,
    pub crop_pct: f64,
    pub resample: Filter,
    pub do_center_crop: bool,
    /// Only read when `do_center_crop` is on.
    pub crop_size: Option<CropSize>,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for ConvNextConfig {
    /// transformers' `ConvNextImageProcessorPil` class attributes.
    fn default() -> Self {
        ConvNextConfig {
            do_resize: true,
            shortest_edge: WARP_FROM,
            crop_pct: 224.0 / 256.0,
            resample: Filter::Bicubic,
            do_center_crop: false,
            crop_size: None,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: IMAGENET_STANDARD_MEAN,
            image_std: IMAGENET_STANDARD_STD,
        }
    }
}

/// `size`: an integer or `{shortest_edge: n}` (ConvNeXT's resize takes nothing else).
fn parse_shortest_edge(v: &Value) -> Result<u32, ConvNextImageError> {
    let unsupported = || ConvNextImageError::Unsupported {
        key: "size",
        got: describe(v),
        help: "ConvNeXT resizes by {\"shortest_edge\": n} (or an integer) only; transformers raises on other sizes too",
    };
    match v {
        Value::Number(_) => Ok(positive("size", v)?),
        Value::Object(obj) => match size_keys(obj).as_slice() {
            ["shortest_edge"] => Ok(positive("size.shortest_edge", &obj["shortest_edge"])?),
            _ => Err(unsupported()),
        },
        _ => Err(key_error("size", "an integer or {\"shortest_edge\": n}", v).into()),
    }
}

impl ConvNextConfig {
    /// Parse a `preprocessor_config.json`.
    pub fn from_json(text: &str) -> Result<ConvNextConfig, ConvNextImageError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ClipImageError::Json(e.to_string()))?;
        match &value {
            Value::Object(map) => ConvNextConfig::from_map(map),
            other => Err(ClipImageError::NotObject(describe(other)).into()),
        }
    }

    /// [`ConvNextConfig::from_json`] on an already parsed object. Keys that do not change the
    /// pixel values are ignored, as transformers keeps them as inert attributes; so is `do_pad`,
    /// which ConvNeXT's `_preprocess` never reads.
    pub fn from_map(map: &Map<String, Value>) -> Result<ConvNextConfig, ConvNextImageError> {
        for (key, known) in [
            ("image_processor_type", &["ConvNextImageProcessor", "ConvNextImageProcessorFast", "ConvNextImageProcessorPil"][..]),
            ("feature_extractor_type", &["ConvNextFeatureExtractor"][..]),
        ] {
            match get(map, key) {
                None => {}
                Some(Value::String(s)) if known.contains(&s.as_str()) => {}
                Some(Value::String(s)) => return Err(ConvNextImageError::ProcessorType { key, got: s.clone() }),
                Some(v) => return Err(key_error(key, "a string", v).into()),
            }
        }
        let d = ConvNextConfig::default();
        let crop_pct = match get(map, "crop_pct") {
            None => d.crop_pct,
            Some(v) => v.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| key_error("crop_pct", "a positive number", v))?,
        };
        let (image_mean, image_std) = clip_image::parse_mean_std(map, d.image_mean, d.image_std)?;
        Ok(ConvNextConfig {
            do_resize: opt_bool(map, "do_resize", d.do_resize)?,
            shortest_edge: get(map, "size").map(parse_shortest_edge).transpose()?.unwrap_or(d.shortest_edge),
            crop_pct,
            resample: clip_image::parse_resample(map, d.resample)?,
            do_center_crop: opt_bool(map, "do_center_crop", d.do_center_crop)?,
            crop_size: get(map, "crop_size").map(clip_image::parse_crop).transpose()?,
            do_rescale: opt_bool(map, "do_rescale", d.do_rescale)?,
            rescale_factor: clip_image::parse_rescale_factor(map, d.rescale_factor)?,
            do_normalize: opt_bool(map, "do_normalize", d.do_normalize)?,
            image_mean,
            image_std,
        })
    }

    /// The short side before the crop when `shortest_edge < 384`: `int(shortest_edge / crop_pct)`.
    pub fn resize_shortest_edge(&self) -> u32 {
        // f64 division as Python's `/`, truncated as `int()` (saturating: absurd crop_pct values
        // are caught by `pipeline`)
        (f64::from(self.shortest_edge) / self.crop_pct) as u32
    }

    /// The same preprocessing as one resize + one center crop ([`ImageProcessorConfig`]).
    pub fn pipeline(&self) -> Result<ImageProcessorConfig, ConvNextImageError> {
        let s = self.shortest_edge;
        let crop = |key| -> Result<CropSize, ConvNextImageError> {
            self.crop_size.ok_or(ConvNextImageError::Unsupported {
                key,
                got: "true without crop_size".into(),
                help: "give crop_size ({\"height\": h, \"width\": w}) or set do_center_crop to false",
            })
        };
        let (size, do_center_crop, crop_size) = match (self.do_resize, s < WARP_FROM, self.do_center_crop) {
            (true, true, true) => {
                return Err(ConvNextImageError::Unsupported {
                    key: "do_center_crop",
                    got: format!("true with size {{shortest_edge: {s}}} < {WARP_FROM}"),
                    help: "ConvNeXT's resize already center-crops to shortest_edge × shortest_edge, and a second crop is not \
                           reproduced; set do_center_crop to false",
                });
            }
            (true, true, false) => {
                let edge = self.resize_shortest_edge();
                if edge == 0 || edge == u32::MAX {
                    return Err(ConvNextImageError::Unsupported {
                        key: "crop_pct",
                        got: self.crop_pct.to_string(),
                        help: "int(shortest_edge / crop_pct) must be a usable size; microsoft/resnet-50 uses 0.875",
                    });
                }
                (ResizeTo::ShortestEdge(edge), true, CropSize { height: s, width: s })
            }
            (true, false, cc) => (ResizeTo::Exact { height: s, width: s }, cc, if cc { crop("do_center_crop")? } else { square(s) }),
            (false, _, true) => (ResizeTo::ShortestEdge(s), true, crop("do_center_crop")?),
            (false, _, false) => {
                return Err(ConvNextImageError::Unsupported {
                    key: "do_resize",
                    got: "false with do_center_crop false".into(),
                    help: "the output size would depend on each image; set do_resize (or do_center_crop with a crop_size) to true",
                });
            }
        };
        let d = ImageProcessorConfig::default();
        Ok(ImageProcessorConfig {
            do_resize: self.do_resize,
            size,
            resample: self.resample,
            do_center_crop,
            crop_size,
            do_rescale: self.do_rescale,
            rescale_factor: self.rescale_factor,
            do_normalize: self.do_normalize,
            image_mean: self.image_mean,
            image_std: self.image_std,
            do_convert_rgb: d.do_convert_rgb,
        })
    }

    /// The processor: [`ImageProcessor::preprocess`] gives transformers' `pixel_values`.
    pub fn processor(&self) -> Result<ImageProcessor, ConvNextImageError> {
        Ok(ImageProcessor::new(self.pipeline()?)?)
    }
}

fn square(s: u32) -> CropSize {
    CropSize { height: s, width: s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rgb8;

    const RESNET_50: &str = r#"{
      "crop_pct": 0.875, "do_normalize": true, "do_resize": true,
      "feature_extractor_type": "ConvNextFeatureExtractor",
      "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
      "resample": 3, "size": 224
    }"#;

    #[test]
    fn microsoft_resnet_50_resizes_to_256_and_crops_224() {
        let cfg = ConvNextConfig::from_json(RESNET_50).unwrap();
        assert_eq!(cfg.shortest_edge, 224);
        assert_eq!(cfg.resize_shortest_edge(), 256);
        assert_eq!(cfg.image_mean, IMAGENET_DEFAULT_MEAN);
        let p = cfg.pipeline().unwrap();
        assert_eq!(p.size, ResizeTo::ShortestEdge(256));
        assert!(p.do_center_crop);
        assert_eq!(p.crop_size, square(224));
        assert_eq!(p.resized_size(500, 375), (341, 256)); // int(256 · 500 / 375) = 341.33 → 341
        assert_eq!(cfg.processor().unwrap().output_size(), (224, 224));
    }

    #[test]
    fn the_resize_edge_truncates_like_python() {
        let with = |s: u32, pct: f64| ConvNextConfig { shortest_edge: s, crop_pct: pct, ..Default::default() }.resize_shortest_edge();
        assert_eq!(with(40, 0.875), 45); // 45.714…
        assert_eq!(with(32, 0.875), 36); // 36.571…
        assert_eq!(with(288, 0.95), 303); // 303.157… (facebook/convnext-*-224 at 288)
        assert_eq!(with(224, 1.0), 224);
        assert_eq!(with(224, 224.0 / 256.0), 256);
    }

    #[test]
    fn defaults_are_convnexts_class_attributes() {
        let cfg = ConvNextConfig::from_json("{}").unwrap();
        assert_eq!(cfg, ConvNextConfig::default());
        assert_eq!(cfg.image_mean, [0.5; 3]);
        // 384 and up: warped to a square, nothing cropped
        let p = cfg.pipeline().unwrap();
        assert_eq!(p.size, ResizeTo::Exact { height: 384, width: 384 });
        assert!(!p.do_center_crop);
        assert_eq!(cfg.processor().unwrap().output_size(), (384, 384));
    }

    #[test]
    fn a_crop_pct_above_one_pads_like_center_crop() {
        // int(20 / 1.25) = 16 < 20: center_crop pads with zeros, which normalize like pixel 0
        let cfg = ConvNextConfig { shortest_edge: 20, crop_pct: 1.25, image_mean: [0.0; 3], image_std: [1.0; 3], ..Default::default() };
        let p = cfg.processor().unwrap();
        let img = Rgb8 { width: 16, height: 16, pixels: vec![255; 16 * 16 * 3] };
        let out = p.preprocess(&img).unwrap();
        assert_eq!(out[0], 0.0, "padded corner");
        assert_eq!(out[2 * 20 + 2], 1.0, "the image starts at ceil((20 − 16) / 2) = 2");
    }

    #[test]
    fn unsupported_configs_say_what_to_change() {
        let err = |text: &str| ConvNextConfig::from_json(text).and_then(|c| c.pipeline()).unwrap_err().to_string();
        let e = err(r#"{"image_processor_type": "CLIPImageProcessor"}"#);
        assert!(e.contains("unsupported 'CLIPImageProcessor'") && e.contains("ConvNextImageProcessorPil"), "{e}");
        let e = err(r#"{"size": {"height": 224, "width": 224}}"#);
        assert!(e.contains("size: {\"height\":224,\"width\":224} is not supported") && e.contains("shortest_edge"), "{e}");
        let e = err(r#"{"size": 224, "do_center_crop": true, "crop_size": 200}"#);
        assert!(
            e.contains("do_center_crop: true with size {shortest_edge: 224} < 384") && e.contains("set do_center_crop to false"),
            "{e}"
        );
        let e = err(r#"{"crop_pct": 0}"#);
        assert!(e.contains("crop_pct: expected a positive number, got 0"), "{e}");
        let e = err(r#"{"image_std": [0.2, 0, 0.2]}"#);
        assert!(e.contains("image_std: expected non-zero numbers"), "{e}");
        let e = err(r#"{"do_resize": false}"#);
        assert!(e.contains("do_resize: false with do_center_crop false"), "{e}");
        // a warp plus a crop, or a crop alone, is one resize + one crop
        let cfg = ConvNextConfig::from_json(r#"{"size": 384, "do_center_crop": true, "crop_size": 320}"#).unwrap();
        assert_eq!(cfg.processor().unwrap().output_size(), (320, 320));
        let cfg = ConvNextConfig::from_json(r#"{"do_resize": false, "do_center_crop": true, "crop_size": 8}"#).unwrap();
        assert_eq!(cfg.processor().unwrap().output_size(), (8, 8));
    }
}
