//! LLaVA-Gemma forward throughput on CPU, candle against transformers (issue 3). Not a test:
//! timings never gate CI. Results go in docs/PERF.md.
//!
//! The model is the mid-size random-weight checkpoint that `benches/llava_forward.py` builds
//! outside the repository (default `/work/scratch/bench-llava-mid`); build it and time PyTorch
//! first, then run this with the same thread count:
//!
//! ```text
//! /work/scratch/sae-venv/bin/python benches/llava_forward.py --threads 2
//! RAYON_NUM_THREADS=2 LLAVA_BENCH_TORCH=/work/scratch/bench-llava-mid/torch.json cargo bench --bench llava_forward
//! ```
//!
//! Environment (all optional): `LLAVA_BENCH_DIR` (or the first argument), `LLAVA_BENCH_BATCH` (8),
//! `LLAVA_BENCH_ITERS` (7), `LLAVA_BENCH_WARMUP` (2), `LLAVA_BENCH_BLOCK` (deepest block tapped,
//! default the last: every block runs), `LLAVA_BENCH_TORCH` (the Python side's JSON: the ratio
//! candle/torch is printed), `LLAVA_BENCH_PROFILE=1` (also time the vision tower + projector alone
//! and one decoder block, to split the forward). Threads: candle's CPU matmul (gemm) and its
//! rayon pool follow `RAYON_NUM_THREADS` (default: the physical cores; `CANDLE_NUM_THREADS`
//! sizes candle's barrier pool for elementwise kernels and defaults to the same).
//!
//! What is timed is [`LlavaGemma::forward`] on a batch of seeded random pixel values `[B, 3, S, S]`
//! with a `resid_post` tap at the block (CLIP to `hidden_states[-2]`, projector, merge, Gemma to
//! the block). `ImageScale::Unscaled` so that the output can be checked against transformers ≥ 5.4
//! (`bench_check.safetensors`, written by the Python side); the cost is the same either way.
//! `LLAVA_BENCH_DEVICE=cuda` and `LLAVA_BENCH_DTYPE=bf16` run it on a GPU (a `--features cuda`
//! build; see docs/PERF.md for the real-size recipe).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use saeflow::models::llava::prompt::{DEFAULT_QUESTION, GEMMA_IT_TEMPLATE};
use saeflow::models::llava::{Checkpoint, EoiPosition, ImageScale, LlavaGemma, Prompt, Request, TapPoint, Tokenizer};

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a count")),
        Err(_) => default,
    }
}

/// Seeded pixels in [-2, 2) (about the range of CLIP-normalized images), splitmix64.
fn pixels(b: usize, s: usize, seed: u64) -> Tensor {
    let mut state = seed;
    let data: Vec<f32> = (0..b * 3 * s * s)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(data, (b, 3, s, s), &Device::Cpu).unwrap()
}

/// `LLAVA_BENCH_DEVICE`: `cpu` (default) or `cuda` (needs a `--features cuda` build).
fn device() -> Device {
    match std::env::var("LLAVA_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0).unwrap_or_else(|e| panic!("LLAVA_BENCH_DEVICE=cuda: {e} (build with --features cuda)")),
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok(other) => panic!("LLAVA_BENCH_DEVICE={other:?}: cpu or cuda"),
    }
}

/// `LLAVA_BENCH_DTYPE`: `f32` (default), `bf16` or `f16`.
fn dtype() -> DType {
    match std::env::var("LLAVA_BENCH_DTYPE").as_deref() {
        Ok("f32") | Err(_) => DType::F32,
        Ok("bf16") => DType::BF16,
        Ok("f16") => DType::F16,
        Ok(other) => panic!("LLAVA_BENCH_DTYPE={other:?}: f32, bf16 or f16"),
    }
}

fn load(dir: &Path, request: Request, device: &Device, dtype: DType) -> LlavaGemma {
    let checkpoint = Checkpoint::open(dir).unwrap_or_else(|e| panic!("{e}\n(build the model first: python benches/llava_forward.py)"));
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let cfg = &checkpoint.config;
    let prompt =
        Prompt::build(&tokenizer, GEMMA_IT_TEMPLATE, DEFAULT_QUESTION, cfg.image_token_index, cfg.image_tokens(), EoiPosition::AfterImage)
            .unwrap();
    LlavaGemma::load(&checkpoint, prompt, request, dtype, device).unwrap()
}

fn request(block: usize, point: TapPoint) -> Request {
    Request { blocks: vec![block], point, final_norm: false, vit: false, image_scale: ImageScale::Unscaled }
}

/// Seconds per forward: `warmup` untimed, then `iters` timed; (median, min, max).
fn time_forward(model: &LlavaGemma, pixels: &Tensor, warmup: usize, iters: usize) -> (f64, f64, f64) {
    let device = pixels.device();
    for _ in 0..warmup {
        model.forward(pixels).unwrap();
        device.synchronize().unwrap();
    }
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            let out = model.forward(pixels).unwrap();
            device.synchronize().unwrap();
            let elapsed = t.elapsed().as_secs_f64();
            drop(out);
            elapsed
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// ‖a − b‖ / ‖b‖.
fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn main() {
    saeflow::process::tune_allocator(); // as the saeflow binary does
    let dir: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("LLAVA_BENCH_DIR").ok())
        .unwrap_or_else(|| "/work/scratch/bench-llava-mid".into())
        .into();
    let b = env_usize("LLAVA_BENCH_BATCH", 8);
    let iters = env_usize("LLAVA_BENCH_ITERS", 7).max(1);
    let warmup = env_usize("LLAVA_BENCH_WARMUP", 2);
    let cfg = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{e}\n(build the model first: python benches/llava_forward.py)")).config;
    let layers = cfg.text.num_hidden_layers;
    let block = env_usize("LLAVA_BENCH_BLOCK", layers - 1);
    let s = cfg.vision.image_size;
    let (device, dtype) = (device(), dtype());

    let t = Instant::now();
    let model = load(&dir, request(block, TapPoint::ResidPost), &device, dtype);
    let load_s = t.elapsed().as_secs_f64();
    let (vision_layers, lm_blocks) = model.depth();

    // Same computation as transformers? (the Python side saves 2 images and its output there)
    let check = dir.join("bench_check.safetensors");
    let check_rel_l2 = if check.exists() {
        let ref_name = format!("resid_post.{block}.image_rows");
        let t = candle_core::safetensors::load(&check, &Device::Cpu).unwrap();
        match t.get(&ref_name) {
            Some(reference) => {
                let out = model.forward(&t["pixel_values"].to_device(&device).unwrap()).unwrap();
                Some(rel_l2(&model.image_rows(&out.taps[0]).unwrap(), reference))
            }
            None => None,
        }
    } else {
        None
    };

    let px = pixels(b, s, 0x5AE_F10E).to_device(&device).unwrap();
    let (median, min, max) = time_forward(&model, &px, warmup, iters);
    let mut result = serde_json::json!({
        "side": "candle",
        "candle": "0.11.1",
        "threads": candle_core::utils::get_num_threads(),
        "RAYON_NUM_THREADS": std::env::var("RAYON_NUM_THREADS").ok(),
        "CANDLE_NUM_THREADS": std::env::var("CANDLE_NUM_THREADS").ok(),
        "device": format!("{device:?}"),
        "dtype": format!("{dtype:?}"),
        "batch": b,
        "T": model.prompt().ids.len(),
        "image_tokens": model.prompt().image.len(),
        "vision_layers_run": vision_layers,
        "lm_blocks_run": lm_blocks,
        "iters": iters,
        "load_s": load_s,
        "median_s": median,
        "min_s": min,
        "max_s": max,
        "images_per_s": b as f64 / median,
        "check_rel_l2_vs_transformers": check_rel_l2,
    });
    drop(model);

    if std::env::var("LLAVA_BENCH_PROFILE").is_ok_and(|v| v != "0") {
        // Vision tower + projector + merge alone (a resid_pre tap of block 0 runs no block), then
        // one block on top: the difference is one decoder block.
        let head = load(&dir, request(0, TapPoint::ResidPre), &device, dtype);
        let (head_s, _, _) = time_forward(&head, &px, 1, iters);
        drop(head);
        let one = load(&dir, request(0, TapPoint::ResidPost), &device, dtype);
        let (one_s, _, _) = time_forward(&one, &px, 1, iters);
        drop(one);
        result["profile"] = serde_json::json!({
            "vision_projector_merge_s": head_s,
            "one_block_s": one_s - head_s,
            "all_blocks_s_from_full": median - head_s,
            "per_block_s_from_full": (median - head_s) / lm_blocks.max(1) as f64,
        });
    }

    if let Ok(path) = std::env::var("LLAVA_BENCH_TORCH") {
        let torch: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap();
        let torch_ips = torch["images_per_s"].as_f64().expect("images_per_s in the torch JSON");
        for key in ["batch", "threads", "lm_blocks_run", "vision_layers_run", "T"] {
            if torch[key] != result[key] {
                eprintln!("warning: {key} differs: candle {} vs torch {}", result[key], torch[key]);
            }
        }
        result["torch_images_per_s"] = torch_ips.into();
        result["ratio_candle_over_torch"] = (result["images_per_s"].as_f64().unwrap() / torch_ips).into();
        // On a shared 2-core box the medians swing with other load; the fastest iterations are
        // the closest to an idle machine.
        if let Some(torch_min) = torch["min_s"].as_f64() {
            result["ratio_best_candle_over_torch"] = (torch_min / min).into();
        }
    }
    println!("{result}");
}
