//! The `resnet` stage end to end on the tiny ResNet fixtures (`tests/fixtures/resnet`): `saeflow
//! run` on an image folder of the fixture's images, then the published `features` against the
//! goldens of transformers (`make_resnet_fixtures.py`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array};
use candle_core::Device;
use common::{Project, column as col, read_entry as read};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet")
}

/// The fixture images in the goldens' order, each in its own class folder (`c0`…), so that image
/// ids follow the golden order.
fn image_order() -> Vec<String> {
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("meta.json")).unwrap()).unwrap();
    meta["image_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// `{model}.pooled` of the goldens, one row per image.
fn golden(model: &str) -> Vec<Vec<f32>> {
    let g = candle_core::safetensors::load(fixture().join("goldens.safetensors"), &Device::Cpu).unwrap();
    g[&format!("{model}.pooled")].to_vec2::<f32>().unwrap()
}

/// A project with the fixture images as an image folder (`data/imgs/c<i>/<file>`), plus `extra`
/// files (relative path → bytes).
fn project(extra: &[(&str, &[u8])]) -> Project {
    let p = Project::new();
    for (i, name) in image_order().iter().enumerate() {
        let dir = p.root().join("data/imgs").join(format!("c{i}"));
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

fn pipeline(p: &Project, model: &str, extra: &str) -> String {
    let yaml = format!(
        r#"
name: resnet
stages:
  images:
    kind: dataset
    format: imagefolder
    path: data/imgs
  resnet:
    kind: resnet
    from: images.images
    model: {model}
{extra}
"#
    );
    p.pipeline("resnet", &yaml)
}

fn local(model: &str) -> String {
    fixture().join("models").join(model).display().to_string()
}

/// Output name → key of the `resnet` instance, from `plan --json`.
fn outputs(p: &Project, file: &str) -> BTreeMap<String, String> {
    common::instance_outputs(p, file, "resnet")
}

/// image_id → features, in table order (checked to be increasing).
fn features(batches: &[RecordBatch]) -> BTreeMap<u32, Vec<f32>> {
    let mut out = BTreeMap::new();
    let mut last = None;
    for b in batches {
        let (ids, lists) = (col::<UInt32Array>(b, "image_id"), col::<FixedSizeListArray>(b, "features"));
        let values = lists.values().as_any().downcast_ref::<Float32Array>().unwrap();
        let width = lists.value_length() as usize;
        for r in 0..b.num_rows() {
            assert!(last < Some(ids.value(r)), "rows sorted by image");
            last = Some(ids.value(r));
            out.insert(ids.value(r), values.values()[r * width..(r + 1) * width].to_vec());
        }
    }
    out
}

fn run_ok(p: &Project, file: &str) -> String {
    let r = p.run(&["run", file]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let num: f32 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f32 = want.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

#[test]
fn features_match_transformers() {
    for model in ["a", "b"] {
        let p = project(&[]);
        let f = pipeline(&p, &local(model), "    part_images: 3\n    batch: 2");
        run_ok(&p, &f);
        let keys = outputs(&p, &f);
        let got = features(&read(&p, &keys["features"]));
        let want = golden(model);
        assert_eq!(got.len(), want.len(), "{model}: one row per image");
        for (id, row) in &got {
            let err = rel_err(row, &want[*id as usize]);
            assert!(err <= 1e-4, "{model} image {id}: ‖Δ‖/‖ref‖ = {err:.2e}");
        }
        assert_eq!(read(&p, &keys["errors"]).iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
        // two parts (3 + 1 images), each its own file
        let parts = common::files(&p.cache().join(&keys["features"])).into_keys().filter(|k| k.ends_with(".parquet")).count();
        assert_eq!(parts, 2);
    }
}

/// An unreadable image is recorded and skipped; every other image's features are unchanged, bit
/// for bit (the broken file replaces image 1 in place, so the listing and every batch stay the
/// same; the broken slot is zeros).
#[test]
fn a_bad_image_is_recorded_and_leaves_the_others_untouched() {
    let clean = project(&[]);
    let f = pipeline(&clean, &local("a"), "    batch: 2");
    run_ok(&clean, &f);
    let name = &image_order()[1];
    let rel = format!("c1/{name}");
    let bad = project(&[(rel.as_str(), b"\x89PNG\r\n\x1a\nnot really a png")]);
    let g = pipeline(&bad, &local("a"), "    batch: 2");
    let out = run_ok(&bad, &g);
    let keys = outputs(&bad, &g);
    let errors = read(&bad, &keys["errors"]);
    let rows: Vec<(u32, String, String)> = errors
        .iter()
        .flat_map(|b| {
            let (i, s, r) = (col::<UInt32Array>(b, "image_id"), col::<StringArray>(b, "source"), col::<StringArray>(b, "reason"));
            (0..b.num_rows()).map(|k| (i.value(k), s.value(k).to_string(), r.value(k).to_string())).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!((rows[0].0, rows[0].1.as_str()), (1, rel.as_str()));
    assert!(!rows[0].2.is_empty());
    let before = features(&read(&clean, &outputs(&clean, &f)["features"]));
    let after = features(&read(&bad, &keys["features"]));
    assert!(!after.contains_key(&1), "no features for the broken image");
    assert_eq!(after.len(), before.len() - 1);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (id, row) in &after {
        assert_eq!(bits(row), bits(&before[id]), "image {id}: bit-identical");
    }
}

/// A run killed after a part resumes there, and the entries are byte-identical to a clean run's.
#[test]
fn a_killed_run_resumes_to_identical_files() {
    let clean = project(&[]);
    let f = pipeline(&clean, &local("c"), "    part_images: 1");
    run_ok(&clean, &f);
    let crashed = project(&[]);
    let g = pipeline(&crashed, &local("c"), "    part_images: 1");
    let r = crashed.run_env(&["run", &g], &[("SAEFLOW_FAULT", "exit-after-part:resnet:1")]);
    assert_eq!(r.code, 86, "{}{}", r.stdout, r.stderr);
    assert!(run_ok(&crashed, &g).contains("ran"));
    let (a, b) = (outputs(&clean, &f), outputs(&crashed, &g));
    assert_eq!(a, b, "same keys");
    for key in a.values() {
        let parquet = |m: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
            m.into_iter().filter(|(k, _)| k.ends_with(".parquet")).collect()
        };
        assert_eq!(parquet(common::files(&clean.cache().join(key))), parquet(common::files(&crashed.cache().join(key))), "{key}");
    }
    // batch, device and workers stay out of the key; dtype and the model are in it
    let h = pipeline(&crashed, &local("c"), "    part_images: 1\n    batch: 3\n    workers: 1\n    device: cpu");
    assert_eq!(outputs(&crashed, &h), a);
    let h = pipeline(&crashed, &local("c"), "    part_images: 1\n    dtype: bf16");
    assert_ne!(outputs(&crashed, &h)["features"], a["features"]);
}

/// `model: hf://microsoft/resnet-50` is looked up in the Hugging Face cache (laid out as Python's
/// `huggingface_hub` writes it): the run reads the snapshot and the key pins the commit.
#[test]
fn a_hub_model_runs_from_the_cache_with_its_commit_in_the_key() {
    let p = project(&[]);
    let hf = p.root().join("hf");
    let repo = hf.join("models--microsoft--resnet-50");
    let set_main = |sha: &str| {
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), sha).unwrap();
        let snap = repo.join("snapshots").join(sha);
        std::fs::create_dir_all(&snap).unwrap();
        for f in ["config.json", "model.safetensors", "preprocessor_config.json"] {
            std::fs::copy(fixture().join("models/a").join(f), snap.join(f)).unwrap();
        }
    };
    set_main("1111111111111111111111111111111111111111");
    let env = [("HF_HUB_CACHE", hf.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    let f = pipeline(&p, "hf://microsoft/resnet-50", "");
    let r = p.run_env(&["run", &f], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let plan = |p: &Project| {
        let r = p.run_env(&["plan", &f, "--json"], &env);
        let v = r.json();
        let outputs = v.as_array().unwrap().iter().find(|o| o["instance"] == "resnet").unwrap()["outputs"].clone();
        let features = outputs.as_array().unwrap().iter().find(|o| o["name"] == "features").unwrap().clone();
        features["key"].as_str().unwrap().to_string()
    };
    let key = plan(&p);
    let got = features(&read(&p, &key));
    let want = golden("a");
    for (id, row) in &got {
        assert!(rel_err(row, &want[*id as usize]) <= 1e-4, "image {id}");
    }
    set_main("2222222222222222222222222222222222222222");
    assert_ne!(plan(&p), key, "a new commit is a new key");
}
