//! Per-image cost of LLaVA's CLIP preprocessing (`preprocessor_config.json` of
//! Intel/llava-gemma-2b: shortest edge 336, bicubic, center crop 336, rescale, normalize) on a
//! CIFAR-sized 32×32 image and an ImageNet-sized 500×375 one, and of the bare Pillow-exact resize.
//! Run: `cargo bench --bench resize`; the Pillow/transformers side is
//! `tests/fixtures/preprocess/bench_pil.py` (same images, same work). Results go in docs/PERF.md.
//! Times are CPU time of the bench thread (median of 101 samples, µs per image). Not a test:
//! timings never gate CI.

use std::hint::black_box;

use saeflow::data::Rgb8;
use saeflow::data::resample::{Filter, Resizer, Scratch};
use saeflow::models::clip_image::{ImageProcessor, ImageProcessorConfig};

/// The bench image: `((x·7 + y·13 + c·50) xor (x·y)) mod 256` (bench_pil.py builds the same).
fn image(width: u32, height: u32) -> Rgb8 {
    let pixels = (0..height)
        .flat_map(|y| (0..width).flat_map(move |x| (0..3).map(move |c| (((x * 7 + y * 13 + c * 50) ^ (x * y)) & 255) as u8)))
        .collect();
    Rgb8 { width, height, pixels }
}

/// This thread's CPU time in seconds: the dev box is shared, and wall time would count the
/// moments another process holds the core.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// (median, min, max) CPU seconds per call of `f` over `samples` samples of `per_sample` calls,
/// after a warm-up.
fn median_per_call(samples: usize, per_sample: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..per_sample {
        f();
    }
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let t = cpu_seconds();
            for _ in 0..per_sample {
                f();
            }
            (cpu_seconds() - t) / per_sample as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[samples / 2], times[0], times[samples - 1])
}

fn report(what: &str, (median, min, max): (f64, f64, f64)) {
    println!("{what:<58} median {:8.1} µs  (min {:.1}, max {:.1}; {:.0} images/s)", median * 1e6, min * 1e6, max * 1e6, 1.0 / median);
}

fn main() {
    let llava = r#"{"crop_size": {"height": 336, "width": 336}, "do_center_crop": true, "do_convert_rgb": true,
        "do_normalize": true, "do_rescale": true, "do_resize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711], "processor_class": "LlavaProcessor", "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336}}"#;
    let processor = ImageProcessor::new(ImageProcessorConfig::from_json(llava).expect("config")).expect("processor");
    let mut out = vec![0f32; processor.output_len()];
    let mut scratch = Scratch::default();
    for (w, h, samples, per_sample) in [(32u32, 32u32, 101, 20), (500, 375, 101, 5)] {
        let img = image(w, h);
        let (rw, rh) = processor.config().resized_size(w, h);
        let resizer = Resizer::new(Filter::Bicubic, (w, h), (rw, rh)).expect("resizer");
        let mut pixels = Vec::with_capacity(rw as usize * rh as usize * 3);
        report(
            &format!("resize {w}×{h} → {rw}×{rh} bicubic (u8, whole image)"),
            median_per_call(samples, per_sample, || {
                pixels.clear();
                resizer.resize_rows(black_box(&img), &mut scratch, |_, row| pixels.extend_from_slice(row)).expect("resize");
                black_box(&pixels);
            }),
        );
        report(
            &format!("preprocess {w}×{h} → 3×336×336 f32 (resize+crop+normalize)"),
            median_per_call(samples, per_sample, || {
                processor.preprocess_with(black_box(&img), &mut scratch, &mut out).expect("preprocess");
                black_box(&out);
            }),
        );
        report(
            "  the same, fresh scratch and output Vec per image",
            median_per_call(samples, per_sample, || {
                black_box(processor.preprocess(black_box(&img)).expect("preprocess"));
            }),
        );
    }
}
