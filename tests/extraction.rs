//! The `llava_sae` extraction stage end to end on the tiny LLaVA-Gemma fixture (`tests/fixtures/
//! llava/a`): `saeflow run` on an image folder of the fixture's images, then the published tables
//! against the goldens of transformers + SAELens (`make_fixtures.py`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arrow_array::{Array, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt64Array};
use candle_core::{Device, Tensor};
use common::{Project, column as col, instance_outputs as outputs, read_entry as read};

/// The fixture images in the goldens' batch order, and the class folder each goes into (sorted
/// so that image ids follow the golden order). The JPEG is fed as PIL decoded it (`wide.pil.png`):
/// JPEG decoders differ by a few levels, which the model parity tests bound separately.
const IMAGES: [(&str, &str); 4] = [("square.png", "c0"), ("wide.pil.png", "c1"), ("gray.png", "c2"), ("rgba.png", "c3")];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava/a")
}

fn goldens() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("goldens.safetensors"), &Device::Cpu).unwrap()
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("meta.json")).unwrap()).unwrap()
}

/// A project with the fixture images as an image folder (`data/imgs/<class>/<file>`), plus
/// `extra` files (relative path → bytes).
fn project(extra: &[(&str, &[u8])]) -> Project {
    let p = Project::new();
    for (name, class) in IMAGES {
        let dir = p.root().join("data/imgs").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture().join("images").join(name), dir.join(name)).unwrap();
    }
    for (rel, bytes) in extra {
        let path = p.root().join("data/imgs").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    p
}

fn pipeline(p: &Project, layers: &str, extra: &str) -> String {
    let yaml = format!(
        r#"
name: extraction
stages:
  images:
    kind: dataset
    format: imagefolder
    path: data/imgs
  codes:
    kind: llava_sae
    from: images.images
    model: {model}
    matrix:
      layer: [{layers}]
    sae: {fixture}/saes/blocks.${{layer}}.hook_resid_post
{extra}
"#,
        model = fixture().join("model").display(),
        fixture = fixture().display(),
    );
    p.pipeline("extraction", &yaml)
}

fn run_ok(p: &Project, file: &str) -> String {
    let r = p.run(&["run", file]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// (image, token) → feature → value, from `codes` rows.
fn code_map(batches: &[RecordBatch]) -> BTreeMap<(u32, u16), BTreeMap<u32, f32>> {
    let mut out: BTreeMap<(u32, u16), BTreeMap<u32, f32>> = BTreeMap::new();
    for b in batches {
        let (i, t, f, v) = (
            col::<UInt32Array>(b, "image_id"),
            col::<UInt16Array>(b, "token"),
            col::<UInt32Array>(b, "feature"),
            col::<Float32Array>(b, "value"),
        );
        for r in 0..b.num_rows() {
            out.entry((i.value(r), t.value(r))).or_default().insert(f.value(r), v.value(r));
        }
    }
    out
}

#[test]
fn codes_totals_eoi_and_health_match_transformers_and_saelens() {
    let p = project(&[]);
    let f = pipeline(&p, "1, 3", "    top_k: all\n    part_images: 3\n    batch: 2");
    run_ok(&p, &f);
    let g = goldens();
    let image = &meta()["image_positions"];
    let eoi_pos = meta()["eoi_position"].as_u64().unwrap() as usize;
    let n_img = (image["end_exclusive"].as_u64().unwrap() - image["start"].as_u64().unwrap()) as usize;
    for layer in [1usize, 3] {
        let keys = outputs(&p, &f, &format!("codes[layer={layer}]"));
        let dense = g[&format!("sae.l{layer}.codes")].to_vec3::<f32>().unwrap();
        // codes: every non-zero of the dense golden, and nothing else
        let codes = code_map(&read(&p, &keys["codes"]));
        let mut checked = 0;
        for (b, per_token) in dense.iter().enumerate() {
            for (t, row) in per_token.iter().enumerate() {
                let got = codes.get(&(b as u32, t as u16)).cloned().unwrap_or_default();
                let want: BTreeMap<u32, f32> = row.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(f, v)| (f as u32, *v)).collect();
                assert_eq!(
                    got.keys().collect::<Vec<_>>(),
                    want.keys().collect::<Vec<_>>(),
                    "layer {layer} image {b} token {t}: active features"
                );
                for (f, v) in &want {
                    assert!(
                        (got[f] - v).abs() <= 1e-4 * v.abs().max(1.0),
                        "layer {layer} image {b} token {t} feature {f}: {} vs {v}",
                        got[f]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "the goldens are sparse but not empty ({checked})");
        // totals: exact sums, maxima and counts over every image token
        let totals = read(&p, &keys["totals"]);
        let mut rows = 0;
        for t in &totals {
            let (i, fe, s, m, c) = (
                col::<UInt32Array>(t, "image_id"),
                col::<UInt32Array>(t, "feature"),
                col::<Float32Array>(t, "sum"),
                col::<Float32Array>(t, "max"),
                col::<UInt32Array>(t, "count"),
            );
            for r in 0..t.num_rows() {
                let column: Vec<f32> = dense[i.value(r) as usize].iter().map(|tok| tok[fe.value(r) as usize]).collect();
                let sum: f32 = column.iter().sum();
                let max = column.iter().cloned().fold(0f32, f32::max);
                assert!((s.value(r) - sum).abs() <= 1e-4 * sum.abs().max(1.0), "sum {} vs {sum}", s.value(r));
                assert!((m.value(r) - max).abs() <= 1e-4 * max.max(1.0));
                assert_eq!(c.value(r) as usize, column.iter().filter(|v| **v > 0.0).count());
                rows += 1;
            }
        }
        let active_pairs: usize = dense.iter().map(|img| (0..256).filter(|&f| img.iter().any(|tok| tok[f] > 0.0)).count()).sum();
        assert_eq!(rows, active_pairs, "one totals row per (image, active feature)");
        // eoi: the residual at the End-of-Image position
        let want = g[&format!("scaled.resid_post.{layer}")].narrow(1, eoi_pos, 1).unwrap().squeeze(1).unwrap().to_vec2::<f32>().unwrap();
        let eoi = read(&p, &keys["eoi"]);
        let lists: Vec<&FixedSizeListArray> = eoi.iter().map(|b| col::<FixedSizeListArray>(b, "resid")).collect();
        let got: Vec<f32> =
            lists.iter().flat_map(|l| l.values().as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec()).collect();
        let want: Vec<f32> = want.concat();
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt() / want.iter().map(|b| b * b).sum::<f32>().sqrt();
        assert_eq!(got.len(), want.len());
        assert!(err <= 1e-4, "eoi rel err {err}");
        // health: image-token statistics over both parts
        let health = read(&p, &keys["health"]);
        let (mut tokens, mut l0, mut mse) = (0u64, 0f64, 0f64);
        for h in &health {
            let scope = col::<StringArray>(h, "scope");
            for r in 0..h.num_rows() {
                if scope.value(r) == "image" {
                    tokens += col::<UInt64Array>(h, "tokens").value(r);
                    l0 += col::<Float64Array>(h, "l0_sum").value(r);
                    mse += col::<Float64Array>(h, "mse_sum").value(r);
                }
            }
        }
        assert_eq!(tokens as usize, 4 * n_img);
        let want_l0: usize = dense.iter().flatten().map(|tok| tok.iter().filter(|v| **v > 0.0).count()).sum();
        assert_eq!(l0 as usize, want_l0);
        let want_mse: f64 = g[&format!("sae.l{layer}.recon_mse")].to_vec2::<f32>().unwrap().concat().iter().map(|v| *v as f64).sum();
        assert!((mse - want_mse).abs() <= 1e-3 * want_mse, "mse {mse} vs {want_mse}");
        // the summary: variance explained around the image tokens' mean, from the goldens
        let summary = saeflow::health::summarize(&health).unwrap();
        assert_eq!(summary[0].scope, "image");
        let x = g[&format!("scaled.resid_post.{layer}")].narrow(1, image["start"].as_u64().unwrap() as usize, n_img).unwrap();
        let rows: Vec<Vec<f32>> = x.reshape((4 * n_img, ())).unwrap().to_vec2::<f32>().unwrap();
        let d = rows[0].len();
        let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / rows.len() as f64).collect();
        let var: f64 = rows.iter().map(|r| (0..d).map(|j| (r[j] as f64 - mean[j]).powi(2)).sum::<f64>()).sum();
        let want_ve = 1.0 - want_mse * d as f64 / var;
        assert!((summary[0].variance_explained - want_ve).abs() <= 1e-4, "{} vs {want_ve}", summary[0].variance_explained);
        assert!((summary[0].l0_mean - want_l0 as f64 / tokens as f64).abs() < 1e-9);
        // errors: none
        assert_eq!(read(&p, &keys["errors"]).iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    }
}

#[test]
fn top_k_keeps_each_tokens_largest_features() {
    let p = project(&[]);
    let f = pipeline(&p, "1", "    top_k: 3");
    run_ok(&p, &f);
    let keys = outputs(&p, &f, "codes[layer=1]");
    let codes = code_map(&read(&p, &keys["codes"]));
    let dense = goldens()["sae.l1.codes"].to_vec3::<f32>().unwrap();
    for ((b, t), got) in &codes {
        let mut row: Vec<(usize, f32)> = dense[*b as usize][*t as usize].iter().cloned().enumerate().filter(|(_, v)| *v > 0.0).collect();
        row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let want: Vec<u32> = row.iter().take(3).map(|(f, _)| *f as u32).collect();
        let mut have: Vec<u32> = got.keys().copied().collect();
        let mut want_sorted = want.clone();
        have.sort();
        want_sorted.sort();
        assert_eq!(have, want_sorted, "image {b} token {t}");
    }
    // totals do not depend on top_k
    let all = project(&[]);
    let g = pipeline(&all, "1", "    top_k: all");
    run_ok(&all, &g);
    let a = read(&p, &keys["totals"]);
    let b = read(&all, &outputs(&all, &g, "codes[layer=1]")["totals"]);
    assert_eq!(a, b);
}

/// An unreadable image is recorded and skipped; every other image's rows are unchanged.
#[test]
fn a_bad_image_is_recorded_and_leaves_the_others_untouched() {
    let clean = project(&[]);
    let f = pipeline(&clean, "1", "    batch: 2");
    run_ok(&clean, &f);
    let bad = project(&[("c1/broken.png", b"\x89PNG\r\n\x1a\nnot really a png")]);
    let g = pipeline(&bad, "1", "    batch: 2");
    let out = run_ok(&bad, &g);
    let keys = outputs(&bad, &g, "codes[layer=1]");
    let errors = read(&bad, &keys["errors"]);
    let sources: Vec<String> =
        errors.iter().flat_map(|b| col::<StringArray>(b, "source").iter().map(|s| s.unwrap().to_string()).collect::<Vec<_>>()).collect();
    assert_eq!(sources, ["c1/broken.png"], "{out}");
    // ids: c1/broken.png sorts before c1/wide.pil.png, so images after it shift by one
    let clean_codes = code_map(&read(&clean, &outputs(&clean, &f, "codes[layer=1]")["codes"]));
    let bad_codes = code_map(&read(&bad, &keys["codes"]));
    let shift = |id: u32| if id >= 1 { id + 1 } else { id };
    assert_eq!(bad_codes.len(), clean_codes.len());
    for ((id, t), features) in &clean_codes {
        let other = &bad_codes[&(shift(*id), *t)];
        let bits = |m: &BTreeMap<u32, f32>| m.iter().map(|(f, v)| (*f, v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(other), bits(features), "image {id} token {t}: bit-identical");
    }
}

/// A run killed after a part resumes there, and the entries are byte-identical to a clean run's.
#[test]
fn a_killed_extraction_resumes_to_identical_files() {
    let clean = project(&[]);
    let f = pipeline(&clean, "1, 3", "    part_images: 1");
    run_ok(&clean, &f);
    let crashed = project(&[]);
    let g = pipeline(&crashed, "1, 3", "    part_images: 1");
    let r = crashed.run_env(&["run", &g], &[("SAEFLOW_FAULT", "exit-after-part:codes*:1")]);
    assert_eq!(r.code, 86, "{}{}", r.stdout, r.stderr);
    let resumed = run_ok(&crashed, &g);
    assert!(resumed.contains("ran"), "{resumed}");
    for layer in [1, 3] {
        let inst = format!("codes[layer={layer}]");
        let (a, b) = (outputs(&clean, &f, &inst), outputs(&crashed, &g, &inst));
        assert_eq!(a, b, "same keys");
        for key in a.values() {
            let strip = |m: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
                m.into_iter().filter(|(k, _)| k.ends_with(".parquet")).collect()
            };
            assert_eq!(strip(common::files(&clean.cache().join(key))), strip(common::files(&crashed.cache().join(key))), "{inst} {key}");
        }
    }
}

/// Adding a layer computes only that layer; the cached one is not recomputed.
#[test]
fn adding_a_layer_computes_only_that_layer() {
    let p = project(&[]);
    let f = pipeline(&p, "1", "");
    let first = run_ok(&p, &f);
    assert!(first.contains("done: 2 ran, 0 cached"), "{first}");
    let keys1 = outputs(&p, &f, "codes[layer=1]");
    let before = common::files(&p.cache().join(&keys1["codes"]));
    let f = pipeline(&p, "1, 3", "");
    let second = run_ok(&p, &f);
    assert!(second.contains("done: 1 ran, 2 cached"), "{second}");
    assert_eq!(outputs(&p, &f, "codes[layer=1]"), keys1, "layer 1's keys do not depend on the other layers");
    assert_eq!(common::files(&p.cache().join(&keys1["codes"])), before);
}

/// `config.json` of Intel/llava-gemma-2b as the hub has it (diff-only sub-configs).
const INTEL_CONFIG: &str = r#"{"architectures": ["LlavaForConditionalGeneration"], "image_token_index": 256000, "model_type": "llava",
  "pad_token_id": 0, "projector_hidden_act": "gelu",
  "text_config": {"hidden_act": "gelu", "hidden_size": 2048, "intermediate_size": 16384, "model_type": "gemma",
    "num_hidden_layers": 18, "num_key_value_heads": 1, "num_attention_heads": 8, "vocab_size": 256064},
  "torch_dtype": "float32",
  "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
    "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768},
  "vision_feature_layer": -2, "vision_feature_select_strategy": "default"}"#;

/// `pipelines/cifar100.yaml` (the real study) plans against a Hugging Face cache laid out as Python
/// lays it out: the six SAE instances run as one fused computation, and the resolved commit —
/// not the branch name — is in the key.
#[test]
fn the_study_pipeline_plans_against_the_hub_cache_and_pins_commits() {
    let p = Project::new();
    let study = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/cifar100.yaml")).unwrap();
    let file = p.pipeline("cifar100", &study);
    std::fs::create_dir_all(p.root().join("data/cifar-100-binary")).unwrap();
    let hf = p.root().join("hf");
    // the small files plan reads: the model's config (as the hub has it) and each SAE's cfg.json
    let header = |f: &str| -> String {
        if f == "config.json" {
            INTEL_CONFIG.to_string()
        } else if let Some(folder) = f.strip_suffix("/cfg.json") {
            let layer: usize = folder.split("blocks.").nth(1).and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok()).unwrap();
            format!(
                r#"{{"d_in": 2048, "d_sae": 16384, "dtype": "float32", "apply_b_dec_to_input": false, "normalize_activations": "none",
                    "architecture": "standard", "metadata": {{"hook_name": "blocks.{layer}.hook_resid_post", "hook_layer": {layer}, "model_name": "gemma-2b"}}}}"#
            )
        } else {
            String::new()
        }
    };
    let set_main = |repo: &str, sha: &str, files: &[&str]| {
        let dir = hf.join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::write(dir.join("refs/main"), sha).unwrap();
        for f in files {
            let path = dir.join("snapshots").join(sha).join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, header(f)).unwrap();
        }
    };
    let sha1 = "1111111111111111111111111111111111111111";
    let jb: Vec<String> = saeflow::models::releases::release("gemma-2b-res-jb")
        .unwrap()
        .saes
        .iter()
        .flat_map(|s| [format!("{}/cfg.json", s.folder), format!("{}/sae_weights.safetensors", s.folder)])
        .collect();
    let it: Vec<String> = saeflow::models::releases::release("gemma-2b-it-res-jb")
        .unwrap()
        .saes
        .iter()
        .flat_map(|s| [format!("{}/cfg.json", s.folder), format!("{}/sae_weights.safetensors", s.folder)])
        .collect();
    set_main("Intel/llava-gemma-2b", sha1, &["config.json"]);
    set_main("jbloom/Gemma-2b-Residual-Stream-SAEs", sha1, &jb.iter().map(String::as_str).collect::<Vec<_>>());
    set_main("jbloom/Gemma-2b-IT-Residual-Stream-SAEs", sha1, &it.iter().map(String::as_str).collect::<Vec<_>>());
    set_main("microsoft/resnet-50", sha1, &["config.json"]);
    let hf_env = hf.display().to_string();
    let plan = |p: &Project| {
        let r = p.run_env(&["plan", &file, "--json"], &[("HF_HUB_CACHE", &hf_env), ("HF_HUB_OFFLINE", "1")]);
        assert_eq!(r.code, 10, "{}", r.stderr);
        r.json()
    };
    let first = plan(&p);
    let codes: Vec<&serde_json::Value> = first.as_array().unwrap().iter().filter(|o| o["kind"] == "llava_sae").collect();
    assert_eq!(codes.len(), 6);
    assert!(codes.iter().all(|o| o["fused"] == codes[0]["fused"] && !o["fused"].is_null()), "one fused group: {:?}", codes[0]["fused"]);
    let key = |plan: &serde_json::Value, id: &str| {
        plan.as_array().unwrap().iter().find(|o| o["instance"] == id).unwrap()["key"].as_str().unwrap().to_string()
    };
    let id = "codes[layer=12,release=gemma-2b-res-jb]";
    // the model's main moves to another commit: every extraction key changes
    set_main("Intel/llava-gemma-2b", "2222222222222222222222222222222222222222", &["config.json"]);
    let second = plan(&p);
    assert_ne!(key(&first, id), key(&second, id));
    assert_eq!(key(&first, "dataset"), key(&second, "dataset"));
    // and a model that is not cached is a plan-time error that says how to fetch it
    std::fs::remove_dir_all(hf.join("models--Intel--llava-gemma-2b")).unwrap();
    let r = p.run_env(&["plan", &file], &[("HF_HUB_CACHE", &hf_env), ("HF_HUB_OFFLINE", "1")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("hf download Intel/llava-gemma-2b"), "{}", r.stderr);
    let line = study.lines().position(|l| l.trim_start().starts_with("model: hf://")).unwrap() + 1;
    assert!(r.stderr.contains(&format!("cifar100.yaml:{line}:")), "names the line of `model:`: {}", r.stderr);
}

/// `clip_vit`: the pooled CLS and the patch mean of LLaVA's vision tower, as transformers.
#[test]
fn clip_vit_writes_the_towers_pooled_cls_and_patch_mean() {
    let p = project(&[]);
    let yaml = format!(
        "name: vit\nstages:\n  images: {{kind: dataset, format: imagefolder, path: data/imgs}}\n  vit:\n    kind: clip_vit\n    from: images.images\n    model: {}\n    batch: 3\n",
        fixture().join("model").display()
    );
    let f = p.pipeline("vit", &yaml);
    run_ok(&p, &f);
    let keys = outputs(&p, &f, "vit");
    let g = goldens();
    for (out, golden) in [("cls", "clip.pooled"), ("patch_mean", "clip.patch_mean")] {
        let batches = read(&p, &keys[out]);
        let got: Vec<f32> = batches
            .iter()
            .flat_map(|b| col::<FixedSizeListArray>(b, "resid").values().as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec())
            .collect();
        let want = g[golden].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got.len(), want.len(), "{out}");
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt() / want.iter().map(|b| b * b).sum::<f32>().sqrt();
        assert!(err <= 1e-4, "{out}: rel err {err}");
    }
}

/// `zeroshot` on the fixture images, filed under four of the fixture's candidate labels as test
/// rows: closed-set picks the label with the highest log-likelihood (transformers' numbers), open
/// mode decodes the greedy answer (transformers' tokens) and matches no label.
#[test]
fn zeroshot_closed_and_open_answer_as_transformers() {
    let p = Project::new();
    // test/<label>/<image>: ids follow the relative paths (uppercase sorts first)
    let placement = [("It", "rgba.png"), ("circle", "square.png"), ("red", "gray.png"), ("square", "wide.pil.png")];
    for (label, image) in placement {
        let dir = p.root().join("data/imgs/test").join(label);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture().join("images").join(image), dir.join(image)).unwrap();
    }
    let yaml = format!(
        r#"
name: zs
stages:
  images: {{kind: dataset, format: imagefolder, path: data/imgs}}
  split: {{kind: split, from: images.images, method: predefined}}
  zs:
    kind: zeroshot
    from: images.images
    split: split
    model: {model}
    max_new_tokens: 8
    matrix: {{mode: [closed, open]}}
"#,
        model = fixture().join("model").display()
    );
    let f = p.pipeline("zs", &yaml);
    run_ok(&p, &f);
    let g = goldens();
    let meta = meta();
    let zs = &meta["zeroshot"];
    let labels: Vec<&str> = zs["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let order: Vec<&str> = meta["image_order"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let loglik = g["zeroshot.loglik"].to_vec2::<f32>().unwrap();
    let golden_index = |image: &str| order.iter().position(|o| *o == image.replace(".pil.png", ".jpg")).unwrap();
    // closed
    let preds = read(&p, &outputs(&p, &f, "zs[mode=closed]")["predictions"]);
    let b = &preds[0];
    assert_eq!(b.num_rows(), 4);
    let present: Vec<usize> = placement.iter().map(|(l, _)| labels.iter().position(|x| x == l).unwrap()).collect();
    for (row, (_, image)) in placement.iter().enumerate() {
        let gi = golden_index(image);
        let best = present.iter().copied().max_by(|&a, &b| loglik[gi][a].total_cmp(&loglik[gi][b]).then(b.cmp(&a))).unwrap();
        assert_eq!(col::<StringArray>(b, "answer").value(row), labels[best], "{image}");
        let score = col::<Float32Array>(b, "score").value(row);
        assert!((score - loglik[gi][best]).abs() <= 1e-4 * loglik[gi][best].abs().max(1.0), "{image}: {score} vs {}", loglik[gi][best]);
    }
    let metrics = read(&p, &outputs(&p, &f, "zs[mode=closed]")["metrics"]);
    let acc = col::<Float64Array>(&metrics[0], "accuracy").value(0);
    let right = placement.iter().enumerate().filter(|(row, (label, _))| col::<StringArray>(b, "answer").value(*row) == *label).count();
    assert_eq!(acc, right as f64 / 4.0);
    // open: the greedy answers decode transformers' tokens; none is a label
    let tokenizer = saeflow::models::llava::Tokenizer::from_file(&fixture().join("model/tokenizer.json")).unwrap();
    let preds = read(&p, &outputs(&p, &f, "zs[mode=open]")["predictions"]);
    let b = &preds[0];
    for (row, (_, image)) in placement.iter().enumerate() {
        let ids: Vec<u32> =
            g[&format!("zeroshot.generated.{}", golden_index(image))].to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect();
        assert_eq!(col::<StringArray>(b, "answer").value(row), tokenizer.decode(&ids).unwrap(), "{image}");
        assert!(col::<UInt16Array>(b, "pred").is_null(row));
    }
    let metrics = read(&p, &outputs(&p, &f, "zs[mode=open]")["metrics"]);
    assert_eq!(col::<Float64Array>(&metrics[0], "macro_f1").value(0), 0.0);

    // answered once for the dataset, scored per split: the same tables, without the model again
    let two = format!(
        "{yaml}  answers:\n    kind: zeroshot_answers\n    from: images.images\n    model: {}\n    max_new_tokens: 8\n    matrix: {{mode: [closed, open]}}\n  scored: {{kind: zeroshot_score, from: answers, split: split}}\n",
        fixture().join("model").display()
    );
    let f = p.pipeline("zs", &two);
    run_ok(&p, &f);
    for mode in ["closed", "open"] {
        let a = outputs(&p, &f, &format!("zs[mode={mode}]"));
        let b = outputs(&p, &f, &format!("scored[mode={mode}]"));
        for output in ["predictions", "metrics"] {
            let (x, y) = (read(&p, &a[output]), read(&p, &b[output]));
            let strip = |v: Vec<arrow_array::RecordBatch>| -> Vec<arrow_array::RecordBatch> {
                // the metrics' instance column names the instance; everything else must agree
                v.into_iter()
                    .map(|b| {
                        b.project(&(0..b.num_columns()).filter(|&i| b.schema().field(i).name() != "instance").collect::<Vec<_>>()).unwrap()
                    })
                    .collect()
            };
            assert_eq!(strip(x), strip(y), "{mode} {output}");
        }
    }

    // length-normalised closed scores: each label's log-likelihood over its token count
    let three = format!(
        "{two}  mean:\n    kind: zeroshot_answers\n    from: images.images\n    model: {}\n    score: mean\n",
        fixture().join("model").display()
    );
    let f = p.pipeline("zs", &three);
    run_ok(&p, &f);
    let answers = read(&p, &outputs(&p, &f, "mean")["answers"]);
    let b = &answers[0];
    let ids = col::<arrow_array::UInt32Array>(b, "image_id");
    for (row, (_, image)) in placement.iter().enumerate() {
        assert_eq!(ids.value(row) as usize, row, "answers in image order");
        let gi = golden_index(image);
        let per_token = |a: usize| loglik[gi][a] / tokenizer.encode(labels[a]).unwrap().len() as f32;
        let best = present.iter().copied().max_by(|&a, &b| per_token(a).total_cmp(&per_token(b)).then(b.cmp(&a))).unwrap();
        assert_eq!(col::<StringArray>(b, "answer").value(row), labels[best], "{image}");
        let score = col::<Float32Array>(b, "score").value(row);
        assert!((score - per_token(best)).abs() <= 1e-4 * per_token(best).abs().max(1.0), "{image}: {score} vs {}", per_token(best));
    }
}

/// `plan` reads the model's `config.json` and the SAE's `cfg.json`: an SAE of another width is an
/// error at the `sae:` line, an SAE trained on another layer a warning.
#[test]
fn plan_checks_each_sae_against_the_model() {
    let p = project(&[]);
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae/pre6_bdec");
    let yaml = format!(
        "name: check\nstages:\n  images: {{kind: dataset, format: imagefolder, path: data/imgs}}\n  codes:\n    kind: llava_sae\n    from: images.images\n    model: {}\n    layer: 1\n    sae: {}\n",
        fixture().join("model").display(),
        other.display()
    );
    let f = p.pipeline("check", &yaml);
    let r = p.run(&["plan", &f]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let line = yaml.lines().position(|l| l.trim_start().starts_with("sae:")).unwrap() + 1;
    assert!(r.stderr.contains(&format!("check.yaml:{line}:")), "{}", r.stderr);
    assert!(r.stderr.contains("d_in") || r.stderr.contains("width"), "{}", r.stderr);
    // layer 1 read with the SAE trained on block 3: planned, with a warning
    let yaml = yaml.replace(&other.display().to_string(), &fixture().join("saes/blocks.3.hook_resid_post").display().to_string());
    let f = p.pipeline("check", &yaml);
    let r = p.run(&["plan", &f]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.stderr.contains("warning") && r.stderr.contains("3"), "{}", r.stderr);
    // positions on the stream, not layer numbers: the blocks.3.hook_resid_post SAE read at block 3's
    // input (the authors' reading) is warned, read at its output (the spec's) is not
    let sae3 = fixture().join("saes/blocks.3.hook_resid_post").display().to_string();
    let authors = yaml.replace("    layer: 1\n", "    layer: 3\n    hook: resid_pre\n");
    let r = p.run(&["plan", &p.pipeline("check", &authors)]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(
        r.stderr.contains("sae was trained on blocks.3.hook_resid_post but the stage reads blocks.3.hook_resid_pre")
            && r.stderr.contains("tap `layer: 3` with `hook: resid_post`"),
        "{}",
        r.stderr
    );
    let spec = yaml.replace("    layer: 1\n", "    layer: 3\n");
    assert!(spec.contains(&sae3));
    let r = p.run(&["plan", &p.pipeline("check", &spec)]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

/// A real SIGKILL in the middle of the extraction: nothing is published, finished parts are kept
/// (not recomputed) and the resumed entries equal a clean run's, byte for byte.
#[test]
fn a_real_sigkill_mid_extraction_resumes_to_identical_files() {
    use std::time::{Duration, Instant};
    let yaml = format!(
        r#"
name: kill
stages:
  images: {{kind: dataset, format: synthetic, classes: 4, train_per_class: 40, test_per_class: 0, image_size: 32}}
  codes:
    kind: llava_sae
    from: images.images
    model: {model}
    sae: {fixture}/saes/blocks.${{layer}}.hook_resid_post
    matrix: {{layer: [1, 3]}}
    part_images: 2
    batch: 2
"#,
        model = fixture().join("model").display(),
        fixture = fixture().display(),
    );
    let clean = Project::new();
    let f = clean.pipeline("kill", &yaml);
    run_ok(&clean, &f);
    let p = Project::new();
    let g = p.pipeline("kill", &yaml);
    let key = outputs(&p, &g, "codes[layer=3]")["codes"].clone();
    let tmp = p.cache().join(".tmp").join(&key);
    let parts = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut child = p.command(&["run", &g]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while parts(&tmp).len() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the run never got to part 3");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = parts(&tmp);
    assert!((3..80).contains(&kept.len()), "killed mid-stage with {} of 80 parts", kept.len());
    assert!(!p.cache().join(&key).exists(), "a killed stage publishes nothing");
    let mtimes: Vec<_> =
        kept.iter().map(|k| (k.file_name().unwrap().to_owned(), std::fs::metadata(k).unwrap().modified().unwrap())).collect();
    run_ok(&p, &g);
    for (name, m) in mtimes {
        assert_eq!(
            std::fs::metadata(p.cache().join(&key).join(&name)).unwrap().modified().unwrap(),
            m,
            "{name:?} was recomputed, not resumed"
        );
    }
    for layer in [1, 3] {
        let inst = format!("codes[layer={layer}]");
        for key in outputs(&clean, &f, &inst).values() {
            let strip = |m: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
                m.into_iter().filter(|(k, _)| k.ends_with(".parquet")).collect()
            };
            assert_eq!(strip(common::files(&clean.cache().join(key))), strip(common::files(&p.cache().join(key))), "{inst} {key}");
        }
    }
}
