//! Estimates of what the instances still to run will cost: the disk the extraction's tables take,
//! and the time of the model forwards. Both are estimates from stated assumptions
//! ([`Assumptions`]), not measurements of this run:
//!
//! - **Disk** (`llava_sae`, upper bounds): `codes` = images × image tokens × `top_k` × bytes per
//!   stored non-zero (fewer when a token has fewer than `top_k` active features); `totals` =
//!   images × d_sae rows × bytes per row (a row per feature active on any image token, before
//!   the `top_k` cut: at most every feature; the demo's images use 40 % of theirs); `eoi` =
//!   images × d_model × bytes per value.
//! - **Time**: FLOPs from the model config's dimensions × tokens (matrix products and attention,
//!   2 per multiply-add; norms, activations and the top-k are left out), divided by an assumed
//!   effective throughput for the stage's device and dtype. `llava_sae`: CLIP up to
//!   `vision_feature_layer`, the projector, the Gemma blocks up to the deepest one a fused group
//!   taps, and per SAE an encode and a decode (the health statistics reconstruct) over every
//!   token; `clip_vit`: the whole CLIP tower; `zeroshot`: the prompt through every block and, per
//!   candidate answer, its tokens through every block and the LM head (closed), or
//!   `max_new_tokens` generated tokens (open). Other kinds are not estimated: next to a 2B-model
//!   forward per image they are small.

use std::collections::BTreeMap;

use crate::models::llava::LlavaConfig;
use crate::models::llava::config::{ClipVisionConfig, GemmaConfig};

/// The numbers estimates rest on, each with where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Assumptions {
    /// `codes` bytes per stored non-zero: 5.2 B, the top of what realistic codes measured (4.9–5.2 B:
    /// the mid-size LLaVA-Gemma with SAEs calibrated to L0 ≈ 64, `benches/extraction.sh`,
    /// docs/PERF.md "Extraction"); the random demo's 4.1 B compresses better than real codes.
    pub bytes_per_code: f64,
    /// `totals` bytes per row (image, feature, sum, max, count), measured on the demo.
    pub bytes_per_total: f64,
    /// `eoi` bytes per residual value (f32, which zstd barely compresses), measured on the demo.
    pub bytes_per_eoi_value: f64,
    /// Prompt tokens besides the image tokens: 17 for the default Gemma-it template and question.
    pub prompt_tokens: u64,
    /// Tokens of one zero-shot answer (a label name): assumed 3.
    pub answer_tokens: u64,
    /// Effective CPU throughput per core, FLOP/s: 42 G, measured (f32, the mid-size LLaVA-Gemma
    /// on the 2-core dev box: 12 GFLOP per image at 7 images/s; docs/PERF.md).
    pub cpu_flops_per_core: f64,
    /// Effective GPU throughput in bf16/f16, FLOP/s: 100 T assumed (a tenth of an H100/H200's
    /// dense bf16 peak: the extraction also copies dense codes to the host), not measured.
    pub cuda_flops_half: f64,
    /// Effective GPU throughput in f32, FLOP/s: 20 T assumed, not measured.
    pub cuda_flops_f32: f64,
    /// `--tflops`: one throughput for every stage, overriding the three above.
    pub flops_override: Option<f64>,
    /// CPU cores counted for `cpu` (this machine's, by default).
    pub cores: u64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            bytes_per_code: 5.2,
            bytes_per_total: BYTES_PER_TOTAL,
            bytes_per_eoi_value: BYTES_PER_EOI_VALUE,
            prompt_tokens: 17,
            answer_tokens: 3,
            cpu_flops_per_core: 42e9,
            cuda_flops_half: 100e12,
            cuda_flops_f32: 20e12,
            flops_override: None,
            cores: std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1),
        }
    }
}

/// Measured on the demo's extraction (see docs/PERF.md).
const BYTES_PER_TOTAL: f64 = 8.0;
/// Measured on the demo's extraction (see docs/PERF.md).
const BYTES_PER_EOI_VALUE: f64 = 4.0;

impl Assumptions {
    /// The device a stage's `device: auto` means in this build.
    pub fn auto_device() -> &'static str {
        if cfg!(feature = "cuda") { "cuda" } else { "cpu" }
    }

    /// Effective FLOP/s on `device` (cpu | cuda | auto) in `dtype`, and how it was arrived at.
    pub fn throughput(&self, device: &str, dtype: &str) -> (f64, String) {
        if let Some(f) = self.flops_override {
            return (f, format!("{} TFLOP/s (--tflops)", fmt_g(f / 1e12)));
        }
        let (device, name) = match device {
            "auto" => (Self::auto_device(), format!("auto = {}", Self::auto_device())),
            d => (d, d.to_string()),
        };
        match (device, dtype) {
            ("cuda", "f32") => (self.cuda_flops_f32, format!("{name} f32, {} TFLOP/s assumed", fmt_g(self.cuda_flops_f32 / 1e12))),
            ("cuda", _) => (self.cuda_flops_half, format!("{name} {dtype}, {} TFLOP/s assumed", fmt_g(self.cuda_flops_half / 1e12))),
            _ => {
                let f = self.cpu_flops_per_core * self.cores as f64;
                // the figure is f32's: candle's CPU matmul has no fast bf16/f16 path
                let caveat = if dtype == "f32" { "" } else { " (an f32 figure: bf16/f16 are far slower on CPU; set dtype: f32)" };
                (f, format!("{name} {dtype}, {} cores × {} GFLOP/s measured{caveat}", self.cores, fmt_g(self.cpu_flops_per_core / 1e9)))
            }
        }
    }
}

/// A number in at most 3 significant digits, without trailing zeros.
pub fn fmt_g(x: f64) -> String {
    let s = if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// FLOPs of one CLIP encoder layer over `t` tokens.
fn clip_layer(v: &ClipVisionConfig, t: f64) -> f64 {
    let (h, i) = (v.hidden_size as f64, v.intermediate_size as f64);
    2.0 * t * (4.0 * h * h + 2.0 * h * i) + 4.0 * t * t * h
}

/// FLOPs of one Gemma block over `t` new tokens attending to `ctx` positions.
fn gemma_block(g: &GemmaConfig, t: f64, ctx: f64) -> f64 {
    let h = g.hidden_size as f64;
    let q = (g.num_attention_heads * g.head_dim) as f64;
    let kv = (g.num_key_value_heads * g.head_dim) as f64;
    let i = g.intermediate_size as f64;
    2.0 * t * (h * q + 2.0 * h * kv + q * h + 3.0 * h * i) + 4.0 * t * ctx * q
}

/// The LM head over `t` tokens.
fn lm_head(g: &GemmaConfig, t: f64) -> f64 {
    2.0 * t * g.hidden_size as f64 * g.vocab_size as f64
}

/// CLIP over its first `layers` layers and the projector: the image tokens LLaVA merges.
fn vision(cfg: &LlavaConfig, layers: usize, with_projector: bool) -> f64 {
    let t = (cfg.vision.num_patches() + 1) as f64;
    let (hv, ht) = (cfg.vision.hidden_size as f64, cfg.text.hidden_size as f64);
    let projector = if with_projector { 2.0 * cfg.image_tokens() as f64 * (hv * ht + ht * ht) } else { 0.0 };
    layers as f64 * clip_layer(&cfg.vision, t) + projector
}

/// Tokens of the extraction's prompt: the image tokens and the template's.
pub fn prompt_tokens(cfg: &LlavaConfig, a: &Assumptions) -> u64 {
    cfg.image_tokens() as u64 + a.prompt_tokens
}

/// FLOPs per image of one fused `llava_sae` computation: `blocks` Gemma blocks run, and one SAE of
/// each width in `saes` (d_sae; `None`: its cfg is not here, left out).
pub fn llava_sae_flops(cfg: &LlavaConfig, blocks: usize, saes: &[Option<usize>], a: &Assumptions) -> f64 {
    let t = prompt_tokens(cfg, a) as f64;
    let layers = cfg.vision_hidden_state_index().unwrap_or(cfg.vision.num_hidden_layers);
    let d_in = cfg.text.hidden_size as f64;
    let sae: f64 = saes.iter().flatten().map(|&d_sae| 4.0 * t * d_in * d_sae as f64).sum();
    vision(cfg, layers, true) + blocks as f64 * gemma_block(&cfg.text, t, t) + sae
}

/// FLOPs per image of `clip_vit`: the whole tower.
pub fn clip_vit_flops(cfg: &LlavaConfig) -> f64 {
    vision(cfg, cfg.vision.num_hidden_layers, false)
}

/// FLOPs per image of `zeroshot`: `answers` candidate answers scored (closed), or `generate`
/// tokens generated (open).
pub fn zeroshot_flops(cfg: &LlavaConfig, open: Option<u64>, answers: u64, a: &Assumptions) -> f64 {
    let t = prompt_tokens(cfg, a) as f64;
    let layers = cfg.vision_hidden_state_index().unwrap_or(cfg.vision.num_hidden_layers);
    let blocks = cfg.text.num_hidden_layers as f64;
    let prompt = vision(cfg, layers, true) + blocks * gemma_block(&cfg.text, t, t) + lm_head(&cfg.text, 1.0);
    let extra = match open {
        Some(n) => n as f64,
        None => (answers * a.answer_tokens) as f64,
    };
    prompt + extra * (blocks * gemma_block(&cfg.text, 1.0, t) + lm_head(&cfg.text, 1.0))
}

/// Upper bounds of one `llava_sae` instance's tables, in bytes: (codes, totals, eoi). `top_k`:
/// `None` for `all` (codes unbounded: unknown); `d_sae`: `None` when the SAE's cfg is not here
/// (totals unknown).
pub fn extraction_bytes(
    images: u64,
    cfg: &LlavaConfig,
    top_k: Option<u64>,
    d_sae: Option<u64>,
    a: &Assumptions,
) -> BTreeMap<&'static str, Option<u64>> {
    let tokens = cfg.image_tokens() as u64;
    let codes = top_k.map(|k| (images as f64 * tokens as f64 * k as f64 * a.bytes_per_code) as u64);
    let totals = d_sae.map(|d| (images as f64 * d as f64 * a.bytes_per_total) as u64);
    let eoi = Some((images as f64 * cfg.text.hidden_size as f64 * a.bytes_per_eoi_value) as u64);
    BTreeMap::from([("codes", codes), ("totals", totals), ("eoi", eoi)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Intel/llava-gemma-2b's config.json, as the hub has it.
    const INTEL: &str = r#"{"architectures": ["LlavaForConditionalGeneration"], "image_token_index": 256000, "model_type": "llava",
      "projector_hidden_act": "gelu", "text_config": {"hidden_size": 2048, "intermediate_size": 16384, "model_type": "gemma",
      "num_hidden_layers": 18, "num_key_value_heads": 1, "num_attention_heads": 8, "vocab_size": 256064, "head_dim": 256},
      "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
      "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768},
      "vision_feature_layer": -2, "vision_feature_select_strategy": "default"}"#;

    fn intel() -> LlavaConfig {
        LlavaConfig::from_json(INTEL, "config.json").unwrap()
    }

    #[test]
    fn flops_follow_the_published_parameter_counts() {
        let cfg = intel();
        let a = Assumptions::default();
        // CLIP ViT-L/14-336: ≈ 12.6 M weights per layer (4·1024² + 2·1024·4096) → 2 FLOPs each per
        // token, 577 tokens; attention adds 4·577²·1024 per layer
        let per_layer = 2.0 * 577.0 * (4.0 * 1024.0 * 1024.0 + 2.0 * 1024.0 * 4096.0) + 4.0 * 577.0 * 577.0 * 1024.0;
        assert_eq!(clip_vit_flops(&cfg), 24.0 * per_layer);
        // one Gemma-2B block holds ≈ 110 M weights (q, k, v, o: 2048·2048 + 2·2048·256 + 2048·2048;
        // MLP: 3·2048·16384): ≈ 2 × 110 M FLOPs per token
        let t = 593.0;
        let block = gemma_block(&cfg.text, t, t);
        let weights = 2048.0 * 2048.0 * 2.0 + 2.0 * 2048.0 * 256.0 + 3.0 * 2048.0 * 16384.0;
        assert_eq!(block, 2.0 * t * weights + 4.0 * t * t * 2048.0);
        assert!((weights - 110.1e6).abs() < 0.1e6, "{weights}");
        // 18 blocks + the tower + 6 SAEs of 16,384 over 593 tokens: ≈ 3.2 TFLOP per image
        let saes = [Some(16_384); 6];
        let total = llava_sae_flops(&cfg, 18, &saes, &a);
        assert_eq!(prompt_tokens(&cfg, &a), 593);
        assert!((3.0e12..3.5e12).contains(&total), "{total:e}");
        // an unknown SAE width adds nothing, and fewer blocks cost less
        assert!(llava_sae_flops(&cfg, 18, &[None], &a) < llava_sae_flops(&cfg, 18, &[Some(16_384)], &a));
        assert!(llava_sae_flops(&cfg, 1, &saes, &a) < total);
        // zero-shot: 100 answers of 3 tokens each cost more than the prompt alone
        assert!(zeroshot_flops(&cfg, None, 100, &a) > zeroshot_flops(&cfg, Some(1), 0, &a));
    }

    #[test]
    fn extraction_tables_are_bounded_by_top_k_and_the_sae_width() {
        let cfg = intel();
        let a = Assumptions::default();
        let b = extraction_bytes(10_000, &cfg, Some(64), Some(16_384), &a);
        assert_eq!(b["codes"], Some((10_000.0 * 576.0 * 64.0 * 5.2) as u64));
        assert_eq!(b["totals"], Some((10_000.0 * 16_384.0 * a.bytes_per_total) as u64), "every feature, at most");
        assert_eq!(b["eoi"], Some((10_000.0 * 2048.0 * a.bytes_per_eoi_value) as u64));
        let b = extraction_bytes(10, &cfg, Some(1), None, &a);
        assert_eq!(b["totals"], None, "totals count features beyond top_k: without d_sae no bound");
        assert_eq!(b["codes"], Some((10.0 * 576.0 * 5.2) as u64));
        assert_eq!(extraction_bytes(10, &cfg, None, Some(8), &a)["codes"], None, "top_k: all has no bound");
    }

    #[test]
    fn throughput_names_its_source() {
        let a = Assumptions { cores: 4, ..Assumptions::default() };
        assert_eq!(a.throughput("cpu", "f32"), (168e9, "cpu f32, 4 cores × 42 GFLOP/s measured".to_string()));
        assert_eq!(a.throughput("cuda", "bf16"), (100e12, "cuda bf16, 100 TFLOP/s assumed".to_string()));
        assert_eq!(a.throughput("cuda", "f32").0, 20e12);
        assert!(a.throughput("cpu", "bf16").1.ends_with("(an f32 figure: bf16/f16 are far slower on CPU; set dtype: f32)"));
        assert!(a.throughput("auto", "f32").1.starts_with("auto = "));
        let o = Assumptions { flops_override: Some(50e12), ..a };
        assert_eq!(o.throughput("cpu", "f32"), (50e12, "50 TFLOP/s (--tflops)".to_string()));
        assert_eq!(fmt_g(0.5), "0.5");
        assert_eq!(fmt_g(123.4), "123");
    }
}
