//! Benchmark: fit the probe on a synthetic 10,000 × 16,384 sparse matrix
//! (~2% density, 100 classes) and score a 2,000-row held-out part.
//!
//! ```text
//! cargo bench --bench probe_fit [-- THREADS [TOL [OUT]]]
//! python3 tests/fixtures/probe/bench_sklearn.py OUT [TOL]
//! ```
//!
//! The matrix is generated from a seeded splitmix64 stream and written to
//! `OUT` (default `target/probe_bench.bin`) so that the scikit-learn script
//! fits exactly the same data. Layout, little-endian: five u64
//! (n_rows, n_cols, nnz, n_classes, n_train), indptr (u64 × n_rows+1),
//! indices (u32 × nnz), data (f32 × nnz), labels (u32 × n_rows).

use std::io::Write;
use std::time::Instant;

use saeflow::probe::{Csr, Design, LogRegConfig, classification_metrics, fit};

const N_TRAIN: usize = 10_000;
const N_TEST: usize = 2_000;
const D: usize = 16_384;
const K: usize = 100;
const NNZ_ROW: usize = 328; // ~2% of D
const SIG_ROW: usize = 40; // entries drawn from the class's signature block
const BLOCK: usize = 160;

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn generate() -> (Csr, Vec<u32>) {
    let n = N_TRAIN + N_TEST;
    let mut rng = SplitMix(42);
    let mut indptr = vec![0usize];
    let mut indices: Vec<u32> = Vec::with_capacity(n * NNZ_ROW);
    let mut data = Vec::with_capacity(n * NNZ_ROW);
    let mut labels = Vec::with_capacity(n);
    let mut row: Vec<u32> = Vec::with_capacity(NNZ_ROW);
    for _ in 0..n {
        let y = rng.below(K);
        let sig = if rng.below(10) < 7 { y } else { rng.below(K) };
        row.clear();
        for _ in 0..SIG_ROW {
            row.push((sig * BLOCK + rng.below(BLOCK)) as u32);
        }
        for _ in SIG_ROW..NNZ_ROW {
            row.push(rng.below(D) as u32);
        }
        row.sort_unstable();
        row.dedup();
        for &c in &row {
            indices.push(c);
            data.push((rng.below(32) + 1) as f32 / 8.0);
        }
        indptr.push(indices.len());
        labels.push(y as u32);
    }
    let x = Csr::new(n, D, indptr, indices, data).expect("generated matrix is valid");
    (x, labels)
}

fn write(path: &str, x: &Csr, y: &[u32]) -> std::io::Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut buf = Vec::new();
    for v in [x.n_rows(), x.n_cols(), x.nnz(), K, N_TRAIN] {
        buf.extend_from_slice(&(v as u64).to_le_bytes());
    }
    x.indptr().iter().for_each(|&v| buf.extend_from_slice(&(v as u64).to_le_bytes()));
    x.indices().iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
    x.data().iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
    y.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
    std::fs::File::create(path)?.write_all(&buf)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let tol: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1e-4);
    let out = args.get(3).cloned().unwrap_or_else(|| "target/probe_bench.bin".into());

    let (x, y) = generate();
    write(&out, &x, &y).expect("write bench matrix");
    let train: Vec<usize> = (0..N_TRAIN).collect();
    let test: Vec<usize> = (N_TRAIN..N_TRAIN + N_TEST).collect();
    let (x_tr, x_te) = (x.select_rows(&train).unwrap(), x.select_rows(&test).unwrap());
    let (y_tr, y_te) = (&y[..N_TRAIN], &y[N_TRAIN..]);
    println!(
        "matrix: {} x {}, nnz {} ({:.2}% dense), {} classes; threads {threads}, tol {tol}",
        x_tr.n_rows(),
        D,
        x_tr.nnz(),
        100.0 * x_tr.nnz() as f64 / (N_TRAIN * D) as f64,
        K
    );
    let cfg = LogRegConfig { c: 1.0, max_iter: 1000, tol, fit_intercept: true, threads };
    let t = Instant::now();
    let m = fit(&x_tr, y_tr, K, &cfg, None).expect("fit");
    let secs = t.elapsed().as_secs_f64();
    let pred = m.predict(&x_te).unwrap();
    let f1 = classification_metrics(y_te, &pred, None).unwrap().macro_f1;
    println!(
        "rust: fit {secs:.2} s, {} iterations, {} evaluations, converged {}, \
         objective {:.10}, max|grad| {:.2e}, test macro F1 {f1:.4}",
        m.n_iter, m.n_fev, m.converged, m.objective, m.grad_max_norm
    );
}
