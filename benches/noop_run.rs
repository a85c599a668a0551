//! How long a no-op `saeflow run` takes on a pipeline of 250 cached instances (plan, key
//! computation, manifest checks, history). Run: `cargo bench --bench noop_run`.
//! Results go in docs/PERF.md. Not a test: timings never gate CI.

use std::process::Command;
use std::time::Instant;

const PIPELINE: &str = r#"
name: noop
stages:
  src: {kind: mock.source, rows: 50, matrix: {layer: [0, 6, 10, 12, 17], seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}}
  a: {kind: mock.map, from: src, matrix: {pool: [sum, top5]}}
  b: {kind: mock.map, from: a, matrix: {binarize: [none, threshold]}}
  report: {kind: mock.gather, from: [a, b]}
"#;

fn run(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_saeflow-testkit")).current_dir(dir).args(args).output().expect("run saeflow")
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/noop.yaml"), PIPELINE).unwrap();
    let first = run(dir.path(), &["run", "pipelines/noop.yaml"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    let instances = stdout.lines().filter(|l| l.trim_start().starts_with("ran ")).count();
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = run(dir.path(), &["run", "pipelines/noop.yaml"]);
        times.push(t.elapsed().as_secs_f64());
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("0 ran, {instances} cached")));
    }
    times.sort_by(f64::total_cmp);
    let plan_t = {
        let t = Instant::now();
        let out = run(dir.path(), &["plan", "pipelines/noop.yaml"]);
        assert_eq!(out.status.code(), Some(0));
        t.elapsed().as_secs_f64()
    };
    println!(
        "no-op run, {instances} cached instances: median {:.1} ms, min {:.1} ms, max {:.1} ms (20 runs); plan {:.1} ms",
        times[10] * 1e3,
        times[0] * 1e3,
        times[19] * 1e3,
        plan_t * 1e3
    );
}
