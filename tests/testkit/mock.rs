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
use saeflow::plan::signature::{InputSlot, Many, ParamSpec, ParamType, Signature, input, output, param};
use saeflow::spec::Value;

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

fn common_params() -> Vec<ParamSpec> {
    vec![
        param("rows", ParamType::Int { min: Some(0), max: None }, Some(Value::Int(100)), "rows to generate (sources)"),
        param("parts", ParamType::Int { min: Some(1), max: Some(100_000) }, Some(Value::Int(1)), "parts to write (sources)"),
        param("fail", ParamType::Bool, Some(Value::Bool(false)), "fail on purpose (tests of --keep-going)"),
        ParamSpec {
            name: "delay_ms",
            ty: ParamType::Int { min: Some(0), max: None },
            default: Some(Value::Int(0)),
            in_key: false,
            doc: "sleep this long per part (crash tests); not part of the key",
        },
    ]
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

fn pause(m: &Member) -> Result<(), EngineError> {
    let ms = m.int("delay_ms")?;
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms as u64));
    }
    Ok(())
}

fn check_fail(m: &Member) -> Result<(), EngineError> {
    if m.bool("fail")? {
        return Err(EngineError::Stage(format!("{}: failed on purpose (fail: true)", m.id)));
    }
    Ok(())
}

/// `mock.source`: a generated table (`row u32, value f64`).
struct Source;

impl Stage for Source {
    fn signature(&self) -> Signature {
        Signature {
            kind: "mock.source",
            version: 1,
            doc: "stand-in source: `rows` generated rows in `parts` parts; any extra parameter changes the values",
            inputs: vec![],
            params: {
                let mut p = common_params();
                p.push(param("data", ParamType::InputPath, Some(Value::Null), "a file whose bytes seed the values (optional)"));
                p
            },
            open_params: true,
            outputs: vec![output("table", "mock", "row u32, value f64")],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let delay = m.int("delay_ms")?;
            generate_with_delay(m, job.progress, delay)?;
        }
        Ok(())
    }
}

/// Generate `rows` rows in `parts` equal ranges, skipping parts an interrupted run completed.
/// The pause comes after a part landed, so a kill during it leaves whole parts only.
fn generate_with_delay(m: &mut Member, progress: &dyn saeflow::progress::Progress, delay_ms: i64) -> Result<(), EngineError> {
    check_fail(m)?;
    let rows = m.int("rows")? as u64;
    let parts = m.int("parts")? as usize;
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
            std::thread::sleep(Duration::from_millis(delay_ms as u64));
        }
    }
    Ok(())
}

/// `mock.map`: one output part per part of `from`; values mix `from`, optional `with`, params.
struct Map;

impl Stage for Map {
    fn signature(&self) -> Signature {
        let mut with = input("with", &[], "a second table to mix in (optional)");
        with.required = false;
        Signature {
            kind: "mock.map",
            version: 1,
            doc: "stand-in transform: part-aligned map of `from` (and `with`); any extra parameter changes the values",
            inputs: vec![input("from", &["mock"], "the table to transform"), with],
            params: common_params(),
            open_params: true,
            outputs: vec![output("table", "mock", "row u32, value f64")],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            check_fail(m)?;
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
                pause(m)?;
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
        Signature {
            kind: "mock.gather",
            version: 1,
            doc: "stand-in gatherer (a report, a comparison): one row per input variant with its coordinates",
            inputs: vec![InputSlot { name: "from", accepts: vec![], many: Many::All, required: true, doc: "the variants to gather" }],
            params: {
                let mut p = common_params();
                p.push(param("title", ParamType::Str, Some(Value::Str(String::new())), "a label for the summary"));
                p
            },
            open_params: false,
            outputs: vec![output("table", "mock_summary", "instance utf8, coords utf8, rows u64, sum f64")],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            check_fail(m)?;
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
        let mut from = input("from", &[], "an upstream table (optional)");
        from.required = false;
        Signature {
            kind: "mock.fused",
            version: 1,
            doc: "stand-in fused computation: variants differing only in `layer` are computed in one run",
            inputs: vec![from],
            params: {
                let mut p = common_params();
                p.push(param("layer", ParamType::Int { min: Some(0), max: None }, None, "the layer this instance publishes"));
                p.push(param("sae", ParamType::Str, Some(Value::Str("default".into())), "which SAE (a stand-in axis)"));
                p
            },
            open_params: false,
            outputs: vec![output("table", "mock", "row u32, value f64"), output("summary", "mock", "row u32, value f64")],
            fuse_axes: vec!["layer"],
            validate: None,
            estimate: None,
            check_files: None,
        }
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
            let delay = m.int("delay_ms")?;
            generate_with_delay(m, job.progress, delay)?;
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
        Signature {
            kind: "mock.concat",
            version: 1,
            doc: "stand-in fusion: concatenates the gathered variants' rows (gather `over: [layer]` to fuse layers)",
            inputs: vec![InputSlot {
                name: "from",
                accepts: vec!["mock"],
                many: Many::All,
                required: true,
                doc: "the variants to concatenate",
            }],
            params: common_params(),
            open_params: true,
            outputs: vec![output("table", "mock", "row u32, value f64")],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            check_fail(m)?;
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
        Signature {
            kind: "mock.dataset",
            version: 1,
            doc: "stand-in dataset: a dataset table of `classes` × `per_class` images (no pixels)",
            inputs: vec![],
            params: vec![
                param("classes", ParamType::Int { min: Some(2), max: Some(65_535) }, Some(Value::Int(10)), "number of classes"),
                param("per_class", ParamType::Int { min: Some(1), max: None }, Some(Value::Int(20)), "images per class"),
            ],
            open_params: false,
            outputs: vec![output("images", "dataset", "image_id u32, label u16, label_name utf8, split utf8, source utf8")],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let (k, n) = (m.int("classes")? as u32, m.int("per_class")? as u32);
            // interleaved like a real test set: image i has label i % k
            let ids: Vec<u32> = (0..k * n).collect();
            let schema = Arc::new(Schema::new(vec![
                Field::new("image_id", DataType::UInt32, false),
                Field::new("label", DataType::UInt16, false),
                Field::new("label_name", DataType::Utf8, false),
                Field::new("split", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt32Array::from(ids.clone())),
                    Arc::new(arrow_array::UInt16Array::from_iter_values(ids.iter().map(|i| (i % k) as u16))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("class_{}", i % k)))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "test"))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("mock:{i}")))),
                ],
            )?;
            m.output("images")?.write_part(0, schema, &[batch])?;
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
        Signature {
            kind: "mock.features",
            version: 1,
            doc: "stand-in extraction + pooling: a pooled table of sparse features carrying a class signal; fused over `layer`",
            inputs: vec![input("from", &["dataset"], "the images to make features for")],
            params: vec![
                param("layer", ParamType::Int { min: Some(0), max: None }, Some(Value::Int(0)), "which layer (changes the features)"),
                param("features", ParamType::Int { min: Some(1), max: Some(1 << 24) }, Some(Value::Int(1024)), "feature dictionary size"),
                param("active", ParamType::Int { min: Some(1), max: None }, Some(Value::Int(16)), "features active per image"),
                param("signal", ParamType::Float, Some(Value::Float(0.5)), "fraction of active features drawn from the class's block"),
            ],
            open_params: false,
            outputs: vec![output("pooled", "pooled", "image_id u32, feature u32, value f32")],
            fuse_axes: vec!["layer"],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let rows = saeflow::stages::split::read_labels(m.input("from")?)?;
            let n_feat = m.int("features")? as u64;
            let active = m.int("active")? as u64;
            let signal = m.param("signal")?.as_f64().unwrap_or(0.5);
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
            m.output("pooled")?.write_part(0, saeflow::tables::pooled_schema(), &[saeflow::tables::pooled_batch(&pooled)?])?;
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
        Signature {
            kind: "mock.codes",
            version: 1,
            doc: "stand-in extraction: per-token codes and exact totals carrying a class signal; fused over `layer`",
            inputs: vec![input("from", &["dataset"], "the images to make codes for")],
            params: vec![
                param("layer", ParamType::Int { min: Some(0), max: None }, Some(Value::Int(0)), "which layer (changes the codes)"),
                param("features", ParamType::Int { min: Some(1), max: Some(1 << 24) }, Some(Value::Int(1024)), "SAE width"),
                param("tokens", ParamType::Int { min: Some(1), max: Some(65_535) }, Some(Value::Int(16)), "image tokens per image"),
                param("active", ParamType::Int { min: Some(1), max: None }, Some(Value::Int(6)), "active features per token"),
                param("signal", ParamType::Float, Some(Value::Float(0.3)), "fraction of active features drawn from the class's block"),
            ],
            open_params: false,
            outputs: vec![
                output("codes", "codes", "image_id u32, token u16, feature u32, value f32"),
                output("totals", "totals", "image_id u32, feature u32, sum f32, max f32, count u32"),
            ],
            fuse_axes: vec!["layer"],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            log_execution(&m.id);
            let rows = saeflow::stages::split::read_labels(m.input("from")?)?;
            let (n_feat, tokens, active) = (m.int("features")? as u64, m.int("tokens")? as u64, m.int("active")? as u64);
            let signal = m.param("signal")?.as_f64().unwrap_or(0.3);
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
            let schema = Arc::new(Schema::new(vec![
                Field::new("image_id", DataType::UInt32, false),
                Field::new("token", DataType::UInt16, false),
                Field::new("feature", DataType::UInt32, false),
                Field::new("value", DataType::Float32, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt32Array::from(ci)),
                    Arc::new(arrow_array::UInt16Array::from(ct)),
                    Arc::new(UInt32Array::from(cf)),
                    Arc::new(arrow_array::Float32Array::from(cv)),
                ],
            )?;
            m.output("codes")?.write_part(0, schema, &[batch])?;
            let schema = Arc::new(Schema::new(vec![
                Field::new("image_id", DataType::UInt32, false),
                Field::new("feature", DataType::UInt32, false),
                Field::new("sum", DataType::Float32, false),
                Field::new("max", DataType::Float32, false),
                Field::new("count", DataType::UInt32, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt32Array::from_iter_values(totals.iter().map(|t| t.0))),
                    Arc::new(UInt32Array::from_iter_values(totals.iter().map(|t| t.1))),
                    Arc::new(arrow_array::Float32Array::from_iter_values(totals.iter().map(|t| t.2))),
                    Arc::new(arrow_array::Float32Array::from_iter_values(totals.iter().map(|t| t.3))),
                    Arc::new(UInt32Array::from_iter_values(totals.iter().map(|t| t.4))),
                ],
            )?;
            m.output("totals")?.write_part(0, schema, &[batch])?;
        }
        Ok(())
    }
}
