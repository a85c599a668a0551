//! Stand-in kinds (`mock.*`): small, deterministic table stages that exercise the engine — matrix
//! expansion, joins, gathering, fusion, parts, resume, failures — before the real kinds land, and
//! that let users try a pipeline's shape offline. Their values are a deterministic function of
//! their parameters and inputs (splitmix64 over a blake3 seed), so reruns give identical bytes.
//!
//! Test hooks: when `SAEFLOW_MOCK_LOG` names a file, every computed instance appends its id to it,
//! so tests count real executions rather than trusting the executor's report.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use saeflow::engine::EngineError;
use saeflow::engine::job::{Job, Member};
use saeflow::engine::stage::Stage;
use saeflow::plan::params::params;
use saeflow::plan::signature::{Many, ParamType, Signature, input};
use saeflow::spec::Value;
use saeflow::tables::TableType;

/// The mock stages' table: `row u32, value f64`.
const MOCK: TableType = TableType::Custom("mock");
/// `mock.gather`'s table: `instance utf8, coords utf8, rows u64, sum f64`.
const MOCK_SUMMARY: TableType = TableType::Custom("mock_summary");

pub fn kinds() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(Source),
        Box::new(Map),
        Box::new(Gather),
        Box::new(Concat),
        Box::new(Fused),
        Box::new(MockDataset),
        Box::new(MockFeatures),
        Box::new(MockCodes),
    ]
}

params! {
    /// What every generic mock kind takes.
    struct CommonParams {
        /// rows to generate (sources)
        pub rows: u64, ParamType::min(0), default(100);
        /// parts to write (sources)
        pub parts: usize, ParamType::range(1, 100_000), default(1);
        /// fail on purpose (tests of --keep-going)
        pub fail: bool, ParamType::Bool, default(false);
        /// sleep this long per part (crash tests); not part of the key
        pub delay_ms: u64, ParamType::min(0), default(0), not_in_key;
    }
}

params! {
    /// `mock.source`'s own parameters.
    struct SourceParams {
        /// a file whose bytes seed the values (optional)
        pub data: Option<std::path::PathBuf>, ParamType::InputPath, default(Value::Null);
    }
}

params! {
    /// `mock.gather`'s own parameters.
    struct GatherParams {
        /// a label for the summary
        pub title: String, ParamType::Str, default("");
    }
}

params! {
    /// `mock.fused`'s own parameters.
    struct FusedParams {
        /// the layer this instance publishes
        pub layer: u64, ParamType::min(0), required;
        /// which SAE (a stand-in axis)
        pub sae: String, ParamType::Str, default("default");
    }
}

params! {
    /// `mock.dataset`'s parameters.
    struct DatasetParams {
        /// number of classes
        pub classes: u32, ParamType::range(2, 65_535), default(10);
        /// images per class
        pub per_class: u32, ParamType::min(1), default(20);
    }
}

params! {
    /// `mock.features`' parameters.
    struct FeaturesParams {
        /// which layer (changes the features)
        pub layer: u64, ParamType::min(0), default(0);
        /// feature dictionary size
        pub features: u64, ParamType::range(1, 1 << 24), default(1024);
        /// features active per image
        pub active: u64, ParamType::min(1), default(16);
        /// fraction of active features drawn from the class's block
        pub signal: f64, ParamType::Float, default(0.5);
    }
}

params! {
    /// `mock.codes`' parameters.
    struct CodesParams {
        /// which layer (changes the codes)
        pub layer: u64, ParamType::min(0), default(0);
        /// SAE width
        pub features: u64, ParamType::range(1, 1 << 24), default(1024);
        /// image tokens per image
        pub tokens: u64, ParamType::range(1, 65_535), default(16);
        /// active features per token
        pub active: u64, ParamType::min(1), default(6);
        /// fraction of active features drawn from the class's block
        pub signal: f64, ParamType::Float, default(0.3);
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("row", DataType::UInt32, false), Field::new("value", DataType::Float64, false)]))
}

/// A seed from everything that defines the member's output.
fn seed(m: &Member, extra: &[u8]) -> u64 {
    let mut h = blake3::Hasher::new();
    let params: Vec<(String, String)> =
        m.params.iter().filter(|(k, _)| !matches!(k.as_str(), "delay_ms" | "data")).map(|(k, v)| (k.clone(), v.canonical())).collect();
    h.update(format!("{params:?}").as_bytes());
    h.update(extra);
    let b = h.finalize();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or_default())
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(seed: u64, i: u64) -> f64 {
    (splitmix(seed ^ splitmix(i)) >> 11) as f64 / (1u64 << 53) as f64
}

fn log_execution(id: &str) {
    if let Some(path) = std::env::var_os("SAEFLOW_MOCK_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{id}");
    }
}

fn pause(common: &CommonParams) {
    if common.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(common.delay_ms));
    }
}

fn check_fail(m: &Member, common: &CommonParams) -> Result<(), EngineError> {
    if common.fail {
        return Err(EngineError::Stage(format!("{}: failed on purpose (fail: true)", m.id)));
    }
    Ok(())
}

/// `mock.source`: a generated table (`row u32, value f64`).
struct Source;

impl Stage for Source {
    fn signature(&self) -> Signature {
        Signature::new("mock.source", 1, "stand-in source: `rows` generated rows in `parts` parts; any extra parameter changes the values")
            .params::<CommonParams>()
            .params::<SourceParams>()
            .open_params()
            .output("table", MOCK, "row u32, value f64")
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            generate(m, job.progress)?;
        }
        Ok(())
    }
}

/// Generate `rows` rows in `parts` equal ranges, skipping parts an interrupted run completed.
/// The pause comes after a part landed, so a kill during it leaves whole parts only.
fn generate(m: &mut Member, progress: &dyn saeflow::progress::Progress) -> Result<(), EngineError> {
    let common: CommonParams = m.params()?;
    check_fail(m, &common)?;
    let CommonParams { rows, parts, delay_ms, .. } = common;
    let data = match m.paths.get("data") {
        Some(path) => std::fs::read(path).map_err(|e| EngineError::io(path, e))?,
        None => Vec::new(),
    };
    let s = seed(m, &[b"source".as_slice(), &data].concat());
    let out = m.output("table")?;
    out.set_parts(parts)?;
    progress.add_total(parts as u64, "parts");
    for p in 0..parts {
        if out.has_part(p) {
            progress.advance(1);
            continue;
        }
        let (lo, hi) = (rows * p as u64 / parts as u64, rows * (p as u64 + 1) / parts as u64);
        let ids = UInt32Array::from_iter_values((lo..hi).map(|i| i as u32));
        let vals = Float64Array::from_iter_values((lo..hi).map(|i| unit(s, i)));
        let batch = RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(vals)])?;
        out.write_part(p, schema(), &[batch])?;
        progress.advance(1);
        if delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
    }
    Ok(())
}

/// `mock.map`: one output part per part of `from`; values mix `from`, optional `with`, params.
struct Map;

impl Stage for Map {
    fn signature(&self) -> Signature {
        Signature::new("mock.map", 1, "stand-in transform: part-aligned map of `from` (and `with`); any extra parameter changes the values")
            .input(input("from", &[MOCK], "the table to transform"))
            .input(input("with", &[], "a second table to mix in (optional)").optional())
            .params::<CommonParams>()
            .open_params()
            .output("table", MOCK, "row u32, value f64")
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let common: CommonParams = m.params()?;
            check_fail(m, &common)?;
            let from = m.input("from")?.clone();
            let with_sum: f64 = match m.inputs("with").first() {
                Some(t) => {
                    let mut acc = 0.0;
                    for b in t.read() {
                        acc += column_sum(&b?);
                    }
                    acc
                }
                None => 0.0,
            };
            let s = seed(m, format!("map{with_sum}").as_bytes());
            let n = from.num_parts();
            job.progress.add_total(n as u64, "parts");
            m.output("table")?.set_parts(n)?;
            for p in 0..n {
                if m.output("table")?.has_part(p) {
                    continue;
                }
                let mut batches = Vec::new();
                for b in from.read_part(p)? {
                    let b = b?;
                    let rows = b.column(0).as_any().downcast_ref::<UInt32Array>().cloned().ok_or_else(|| bad_input(&from.instance))?;
                    let vals = b.column(1).as_any().downcast_ref::<Float64Array>().ok_or_else(|| bad_input(&from.instance))?;
                    let mixed = Float64Array::from_iter_values(
                        (0..b.num_rows()).map(|i| vals.value(i) * 0.5 + unit(s, rows.value(i) as u64) * 0.5),
                    );
                    batches.push(RecordBatch::try_new(schema(), vec![Arc::new(rows), Arc::new(mixed)])?);
                }
                m.output("table")?.write_part(p, schema(), &batches)?;
                job.progress.advance(1);
                pause(&common);
            }
        }
        Ok(())
    }
}

fn bad_input(instance: &str) -> EngineError {
    EngineError::Stage(format!("{instance}: expected columns (row u32, value f64) from a mock stage"))
}

fn column_sum(b: &RecordBatch) -> f64 {
    b.column(b.num_columns() - 1).as_any().downcast_ref::<Float64Array>().map(|a| a.values().iter().sum()).unwrap_or(0.0)
}

/// `mock.gather`: one row per gathered variant: its instance id, coordinates and row count.
struct Gather;

impl Stage for Gather {
    fn signature(&self) -> Signature {
        Signature::new("mock.gather", 1, "stand-in gatherer (a report, a comparison): one row per input variant with its coordinates")
            .input(input("from", &[], "the variants to gather").many(Many::All))
            .params::<CommonParams>()
            .params::<GatherParams>()
            .output("table", MOCK_SUMMARY, "instance utf8, coords utf8, rows u64, sum f64")
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            check_fail(m, &m.params()?)?;
            let inputs = m.inputs("from").to_vec();
            let mut sums = Vec::new();
            for t in &inputs {
                let mut acc = 0.0;
                for b in t.read() {
                    acc += column_sum(&b?);
                }
                sums.push(acc);
            }
            let schema = Arc::new(Schema::new(vec![
                Field::new("instance", DataType::Utf8, false),
                Field::new("coords", DataType::Utf8, false),
                Field::new("rows", DataType::UInt64, false),
                Field::new("sum", DataType::Float64, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(inputs.iter().map(|t| t.instance.clone()))),
                    Arc::new(StringArray::from_iter_values(inputs.iter().map(|t| Value::Map(t.coords.clone()).canonical()))),
                    Arc::new(UInt64Array::from_iter_values(inputs.iter().map(|t| t.rows()))),
                    Arc::new(Float64Array::from(sums)),
                ],
            )?;
            let out = m.output("table")?;
            out.write_part(0, schema, &[batch])?;
        }
        Ok(())
    }
}

/// `mock.fused`: like `mock.source`, but instances that differ only in `layer` run as one fused
/// computation (as the extraction does: one forward pass serves every layer).
struct Fused;

impl Stage for Fused {
    fn signature(&self) -> Signature {
        Signature::new("mock.fused", 1, "stand-in fused computation: variants differing only in `layer` are computed in one run")
            .input(input("from", &[], "an upstream table (optional)").optional())
            .params::<CommonParams>()
            .params::<FusedParams>()
            .output("table", MOCK, "row u32, value f64")
            .output("summary", MOCK, "row u32, value f64")
            .fuse_axes(&["layer"])
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        if let Some(path) = std::env::var_os("SAEFLOW_MOCK_LOG")
            && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
        {
            let ids: Vec<&str> = job.members.iter().map(|m| m.id.as_str()).collect();
            let _ = writeln!(f, "fused-run {}", ids.join(" "));
        }
        for m in &mut job.members {
            log_execution(&m.id);
            let _: FusedParams = m.params()?;
            generate(m, job.progress)?;
            let s = seed(m, b"summary");
            let batch = RecordBatch::try_new(
                schema(),
                vec![Arc::new(UInt32Array::from(vec![0u32])), Arc::new(Float64Array::from(vec![unit(s, 0)]))],
            )?;
            m.output("summary")?.write_part(0, schema(), &[batch])?;
        }
        Ok(())
    }
}

/// `mock.concat`: the rows of every gathered variant, one after another, renumbered (a stand-in for
/// layer fusion, which concatenates the pooled features of several layers).
struct Concat;

impl Stage for Concat {
    fn signature(&self) -> Signature {
        Signature::new(
            "mock.concat",
            1,
            "stand-in fusion: concatenates the gathered variants' rows (gather `over: [layer]` to fuse layers)",
        )
        .input(input("from", &[MOCK], "the variants to concatenate").many(Many::All))
        .params::<CommonParams>()
        .open_params()
        .output("table", MOCK, "row u32, value f64")
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            check_fail(m, &m.params()?)?;
            let mut batches = Vec::new();
            let mut next = 0u32;
            for t in m.inputs("from").to_vec() {
                for b in t.read() {
                    let b = b?;
                    let n = b.num_rows() as u32;
                    let rows = UInt32Array::from_iter_values(next..next + n);
                    next += n;
                    batches.push(RecordBatch::try_new(schema(), vec![Arc::new(rows), b.column(1).clone()])?);
                }
            }
            m.output("table")?.write_part(0, schema(), &batches)?;
        }
        Ok(())
    }
}

/// `mock.dataset`: a labelled image list (`dataset` table) with `classes` × `per_class` images,
/// standing in for a real dataset until the readers land.
struct MockDataset;

impl Stage for MockDataset {
    fn signature(&self) -> Signature {
        Signature::new("mock.dataset", 1, "stand-in dataset: a dataset table of `classes` × `per_class` images (no pixels)")
            .params::<DatasetParams>()
            .output("images", TableType::Dataset, "image_id u32, label u16, label_name utf8, split utf8, source utf8")
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let DatasetParams { classes: k, per_class: n } = m.params()?;
            // interleaved like a real test set: image i has label i % k
            let ids: Vec<u32> = (0..k * n).collect();
            let batch = RecordBatch::try_new(
                TableType::Dataset.schema(),
                vec![
                    Arc::new(UInt32Array::from(ids.clone())),
                    Arc::new(arrow_array::UInt16Array::from_iter_values(ids.iter().map(|i| (i % k) as u16))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("class_{}", i % k)))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "test"))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("mock:{i}")))),
                ],
            )?;
            m.output("images")?.write_part(0, batch.schema(), &[batch])?;
        }
        Ok(())
    }
}

/// `mock.features`: sparse pooled features for a dataset's images, with a class signal of
/// strength `signal` (0: pure noise, 1: every active feature from the class's own block), one
/// fused computation per `layer` set, standing in for extraction + pooling.
struct MockFeatures;

impl Stage for MockFeatures {
    fn signature(&self) -> Signature {
        Signature::new(
            "mock.features",
            1,
            "stand-in extraction + pooling: a pooled table of sparse features carrying a class signal; fused over `layer`",
        )
        .input(input("from", &[TableType::Dataset], "the images to make features for"))
        .params::<FeaturesParams>()
        .output("pooled", TableType::Pooled, "image_id u32, feature u32, value f32")
        .fuse_axes(&["layer"])
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let rows = saeflow::stages::split::read_labels(m.input("from")?)?;
            let FeaturesParams { features: n_feat, active, signal, .. } = m.params()?;
            let s = seed(m, b"features");
            let classes = rows.iter().map(|r| r.label as u64).max().unwrap_or(0) + 1;
            let block = (n_feat / classes).max(1);
            let mut pooled: Vec<(u32, u32, f32)> = Vec::new();
            for r in &rows {
                let mut chosen = std::collections::BTreeMap::new();
                for j in 0..active {
                    let base = (r.image_id as u64) << 20 | j;
                    let f = if unit(s, base * 3) < signal {
                        (r.label as u64 * block + (splitmix(s ^ base) % block)) % n_feat
                    } else {
                        splitmix(s ^ base ^ 0xABCD) % n_feat
                    };
                    *chosen.entry(f as u32).or_insert(0.0f32) += 1.0 + unit(s, base * 3 + 1) as f32;
                }
                pooled.extend(chosen.into_iter().map(|(f, v)| (r.image_id, f, v)));
            }
            m.output("pooled")?.write_part(0, TableType::Pooled.schema(), &[saeflow::tables::pooled_batch(&pooled)?])?;
        }
        Ok(())
    }
}

/// `mock.codes`: per-token sparse codes (and their exact per-image totals) for a dataset's images,
/// with a class signal, standing in for LLaVA forward + SAE encode: one fused computation per
/// `layer` set, outputs shaped like the extraction's `codes` and `totals`.
struct MockCodes;

impl Stage for MockCodes {
    fn signature(&self) -> Signature {
        Signature::new("mock.codes", 1, "stand-in extraction: per-token codes and exact totals carrying a class signal; fused over `layer`")
            .input(input("from", &[TableType::Dataset], "the images to make codes for"))
            .params::<CodesParams>()
            .output("codes", TableType::Codes, "image_id u32, token u16, feature u32, value f32")
            .output("totals", TableType::Totals, "image_id u32, feature u32, sum f32, max f32, count u32")
            .fuse_axes(&["layer"])
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let rows = saeflow::stages::split::read_labels(m.input("from")?)?;
            let CodesParams { features: n_feat, tokens, active, signal, .. } = m.params()?;
            let s = seed(m, b"codes");
            let classes = rows.iter().map(|r| r.label as u64).max().unwrap_or(0) + 1;
            let block = (n_feat / classes).max(1);
            let (mut ci, mut ct, mut cf, mut cv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut totals: Vec<(u32, u32, f32, f32, u32)> = Vec::new();
            for r in &rows {
                let mut per_image: std::collections::BTreeMap<u32, (f32, f32, u32)> = std::collections::BTreeMap::new();
                for t in 0..tokens {
                    let mut chosen: std::collections::BTreeMap<u32, f32> = std::collections::BTreeMap::new();
                    for j in 0..active {
                        let base = ((r.image_id as u64) << 32) | (t << 12) | j;
                        let f = if unit(s, base.wrapping_mul(3)) < signal {
                            (r.label as u64 * block + (splitmix(s ^ base) % block)) % n_feat
                        } else {
                            splitmix(s ^ base ^ 0xC0DE) % n_feat
                        };
                        chosen.insert(f as u32, 0.25 + 2.0 * unit(s, base.wrapping_mul(3) + 1) as f32);
                    }
                    // a few dense features fire on most images, as real SAEs have: `clean` drops them
                    if unit(s, ((r.image_id as u64) << 32) | (t << 12) | 0xFFF) < 0.6 {
                        chosen.insert((t % 4) as u32, 3.0);
                    }
                    for (f, v) in chosen {
                        ci.push(r.image_id);
                        ct.push(t as u16);
                        cf.push(f);
                        cv.push(v);
                        let e = per_image.entry(f).or_insert((0.0, 0.0, 0));
                        *e = (e.0 + v, e.1.max(v), e.2 + 1);
                    }
                }
                totals.extend(per_image.into_iter().map(|(f, (sum, max, n))| (r.image_id, f, sum, max, n)));
            }
            let batch = RecordBatch::try_new(
                TableType::Codes.schema(),
                vec![
                    Arc::new(UInt32Array::from(ci)),
                    Arc::new(arrow_array::UInt16Array::from(ct)),
                    Arc::new(UInt32Array::from(cf)),
                    Arc::new(arrow_array::Float32Array::from(cv)),
                ],
            )?;
            m.output("codes")?.write_part(0, batch.schema(), &[batch])?;
            let batch = RecordBatch::try_new(
                TableType::Totals.schema(),
                vec![
                    Arc::new(UInt32Array::from_iter_values(totals.iter().map(|t| t.0))),
                    Arc::new(UInt32Array::from_iter_values(totals.iter().map(|t| t.1))),
                    Arc::new(arrow_array::Float32Array::from_iter_values(totals.iter().map(|t| t.2))),
                    Arc::new(arrow_array::Float32Array::from_iter_values(totals.iter().map(|t| t.3))),
                    Arc::new(UInt32Array::from_iter_values(totals.iter().map(|t| t.4))),
                ],
            )?;
            m.output("totals")?.write_part(0, batch.schema(), &[batch])?;
        }
        Ok(())
    }
}
