//! Peak memory of the extraction stays flat in the dataset size: 10× the images costs at most 1.2×
//! the peak resident memory (parts stream to disk; decoding runs at most two batches ahead).
//! Its own test binary, so no other test's child processes share the measurement.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::Project;

/// Run `saeflow run FILE` in `p` and return the child's peak resident set size in KiB (`wait4`).
fn peak_rss_kib(p: &Project, file: &str) -> i64 {
    let child = p.command(&["run", file]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain syscall on our own child; the rusage struct is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "saeflow run failed: {status}");
    std::mem::forget(child);
    usage.ru_maxrss
}

fn pipeline(p: &Project, per_class: usize) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava/a");
    p.pipeline(
        "memory",
        &format!(
            r#"
name: memory
stages:
  images:
    kind: dataset
    format: synthetic
    classes: 4
    train_per_class: {per_class}
    test_per_class: 0
    image_size: 32
  codes:
    kind: llava_sae
    from: images.images
    model: {model}
    sae: {fixture}/saes/blocks.${{layer}}.hook_resid_post
    matrix: {{layer: [1, 3]}}
    part_images: 16
    batch: 8
"#,
            model = fixture.join("model").display(),
            fixture = fixture.display(),
        ),
    )
}

#[test]
fn ten_times_the_images_costs_at_most_1_2_times_the_peak_memory() {
    let small = Project::new();
    let f = pipeline(&small, 8);
    let base = peak_rss_kib(&small, &f);
    let large = Project::new();
    let g = pipeline(&large, 80);
    let peak = peak_rss_kib(&large, &g);
    assert!(base > 0);
    assert!((peak as f64) <= 1.2 * base as f64, "32 images: {base} KiB, 320 images: {peak} KiB");
}
