//! `saeflow doctor`: the demo (every artifact a local folder, complete), a pipeline on hub
//! artifacts against an empty and a partial Hugging Face cache (offline, and with a hub that
//! cannot be reached), an SAE of the wrong width, and `pipelines/imagenet.yaml` planned against a
//! fake hub cache like `pipelines/cifar100.yaml` (tests/extraction.rs). No timing assertions: the
//! time estimate is only checked to be there.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Project, Run};

const BLOCKED: i32 = 11;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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

/// A Gemma-2B residual SAE's cfg.json for block `layer`, `d_in` wide.
fn sae_cfg(layer: usize, d_in: usize) -> String {
    format!(
        r#"{{"d_in": {d_in}, "d_sae": 16384, "dtype": "float32", "apply_b_dec_to_input": false, "normalize_activations": "none",
            "architecture": "standard", "metadata": {{"hook_name": "blocks.{layer}.hook_resid_post", "hook_layer": {layer}, "model_name": "gemma-2b"}}}}"#
    )
}

/// A Hugging Face cache laid out as Python lays it out (refs/main → snapshots/<sha>/files).
struct FakeHubCache {
    root: PathBuf,
}

const SHA: &str = "1111111111111111111111111111111111111111";

impl FakeHubCache {
    fn new(root: PathBuf) -> FakeHubCache {
        std::fs::create_dir_all(&root).unwrap();
        FakeHubCache { root }
    }

    fn put(&self, repo: &str, file: &str, bytes: &[u8]) {
        let dir = self.root.join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::write(dir.join("refs/main"), SHA).unwrap();
        let path = dir.join("snapshots").join(SHA).join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn env(&self) -> String {
        self.root.display().to_string()
    }
}

/// The folder of an SAE of the built-in release table.
fn release_folder(release: &str, layer: usize) -> String {
    let r = saeflow::models::releases::release(release).unwrap();
    r.saes.iter().find(|s| s.id == format!("blocks.{layer}.hook_resid_post")).unwrap().folder.to_string()
}

fn doctor(p: &Project, file: &str, env: &[(&str, &str)], extra: &[&str]) -> (Run, serde_json::Value) {
    let mut args = vec!["doctor", file];
    args.extend_from_slice(extra);
    let text = p.run_env(&args, env);
    args.push("--json");
    let json = p.run_env(&args, env);
    assert_eq!(text.code, json.code, "the same exit code with and without --json\n{}\n{}", text.stdout, json.stderr);
    let value = json.json();
    (text, value)
}

fn artifact<'a>(report: &'a serde_json::Value, reference: &str) -> &'a serde_json::Value {
    report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["reference"] == reference)
        .unwrap_or_else(|| panic!("no artifact {reference}"))
}

/// The demo's artifacts are local folders in the repository: all complete, nothing to download,
/// both SAEs fit the model, and the extraction's disk bound follows the documented formula.
#[test]
fn the_demo_is_local_complete_and_ready() {
    let cache = tempfile::tempdir().unwrap();
    let hf = tempfile::tempdir().unwrap();
    let run = |json: bool| {
        let mut c = std::process::Command::new(common::bin());
        c.current_dir(repo_root()).args(["--cache", &cache.path().display().to_string(), "doctor", "pipelines/demo.yaml"]);
        if json {
            c.arg("--json");
        }
        c.env("HF_HUB_CACHE", hf.path()).env("HF_HUB_OFFLINE", "1").env_remove("SAEFLOW_CACHE");
        c.output().unwrap()
    };
    let text = run(false);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&text.stderr));
    assert!(stdout.contains("ready: nothing blocks the run"), "{stdout}");
    assert!(stdout.contains("local, complete"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&run(true).stdout).unwrap();
    assert_eq!(r["ready"], true);
    let artifacts = r["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 4, "the LLaVA model, two SAEs, the ResNet");
    for a in artifacts {
        assert_eq!(a["state"], "complete", "{a}");
        assert!(a["location"]["local"].is_string(), "{a}");
        assert!(a["present_bytes"].as_u64().unwrap() > 0, "{a}");
        assert!(a["files"].as_array().unwrap().iter().all(|f| f["present"] == true || f["required"] == false), "{a}");
    }
    assert_eq!(r["download"]["bytes"], 0);
    let checks = r["checks"].as_array().unwrap();
    // the two SAE extractions' dimensions, and the preprocessor of the ViT baseline and the zero-shot answers
    assert_eq!(checks.len(), 4, "{checks:?}");
    assert!(checks.iter().all(|c| c["outcome"] == "agrees"), "{checks:?}");
    // 6 classes × (20 train + 10 test) synthetic images, listed
    assert_eq!(r["images"]["dataset"], serde_json::json!({"count": 180, "labels": 6, "how": "listed"}));
    // codes ≤ images × image tokens × top_k × 5.2 B; the tiny model has (28 / 7)² = 16 image tokens
    let tables = r["disk"]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 6, "codes, totals, eoi of two layers");
    let codes = tables.iter().find(|t| t["instance"] == "codes[layer=1]" && t["output"] == "codes").unwrap();
    assert_eq!(codes["bytes"], (180.0 * 16.0 * 64.0 * 5.2) as u64);
    // totals ≤ images × d_sae rows (features beyond top_k count too)
    let d_sae = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/llava/a/saes/blocks.1.hook_resid_post/cfg.json")).unwrap(),
    )
    .unwrap()["d_sae"]
        .as_u64()
        .unwrap();
    let totals = tables.iter().find(|t| t["instance"] == "codes[layer=1]" && t["output"] == "totals").unwrap();
    let per_row = r["assumptions"]["bytes_per_total_row"].as_f64().unwrap();
    assert_eq!(totals["bytes"], (180.0 * d_sae as f64 * per_row) as u64);
    assert!(r["disk"]["free_bytes"].as_u64().is_some());
    // one fused forward serves both layers; every model stage has an estimate
    let time = r["time"]["computations"].as_array().unwrap();
    let codes = time.iter().find(|t| t["stage"] == "codes").unwrap();
    assert_eq!(codes["instances"].as_array().unwrap().len(), 2);
    assert!(time.iter().all(|t| t["seconds"].as_f64().is_some()), "{time:?}");
    assert_eq!(
        time.iter().map(|t| t["kind"].as_str().unwrap()).collect::<BTreeSet<_>>(),
        BTreeSet::from(["clip_vit", "llava_sae", "zeroshot_answers"])
    );
}

/// A study on hub artifacts: with an empty cache and downloads off it lists what would download
/// and is blocked; with the small files cached it sizes the rest; online (a hub it cannot reach
/// here) missing weights are something the run fetches, not a blocker.
#[test]
fn hub_artifacts_not_cached_are_listed_with_what_is_known_of_their_size() {
    let p = Project::new();
    let yaml = "name: hubstudy\nstages:\n  images: {kind: dataset, format: synthetic, classes: 2, train_per_class: 3, test_per_class: 2}\n  codes:\n    kind: llava_sae\n    from: images.images\n    model: hf://Intel/llava-gemma-2b\n    sae: gemma-2b-res-jb/blocks.${layer}.hook_resid_post\n    matrix: {layer: [6, 12]}\n    dtype: bf16\n    device: cuda\n";
    let file = p.pipeline("hubstudy", yaml);
    let hf = FakeHubCache::new(p.root().join("hf"));
    let offline = [("HF_HUB_CACHE", hf.env()), ("HF_HUB_OFFLINE", "1".to_string())];
    let env: Vec<(&str, &str)> = offline.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // 1. nothing cached
    let (text, r) = doctor(&p, &file, &env, &[]);
    assert_eq!(text.code, BLOCKED, "{}\n{}", text.stdout, text.stderr);
    assert_eq!(r["ready"], false);
    let model = artifact(&r, "hf://Intel/llava-gemma-2b");
    assert_eq!(model["state"], "not cached");
    assert_eq!(model["location"]["repo"], "Intel/llava-gemma-2b");
    let names: Vec<&str> = model["unknown_size"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(names[0], "config.json");
    assert!(names.iter().any(|n| n.starts_with("weights")) && names.contains(&"tokenizer.json"), "{names:?}");
    for layer in [6, 12] {
        let sae = artifact(&r, &format!("gemma-2b-res-jb/blocks.{layer}.hook_resid_post"));
        assert_eq!(sae["state"], "not cached");
        assert_eq!(sae["unknown_size"], serde_json::json!(["cfg.json", "sae_weights.safetensors"]));
    }
    let blockers: Vec<String> = r["blockers"].as_array().unwrap().iter().map(|b| format!("{} {}", b["what"], b["help"])).collect();
    assert_eq!(blockers.len(), 2, "one per repository: {blockers:#?}");
    let model_line = yaml.lines().position(|l| l.trim_start().starts_with("model:")).unwrap() + 1;
    assert!(
        blockers[0].contains(&format!("hubstudy.yaml:{model_line}:")) && blockers[0].contains("hf download Intel/llava-gemma-2b"),
        "{}",
        blockers[0]
    );
    let include = format!("--include '{}/*' --include '{}/*'", release_folder("gemma-2b-res-jb", 6), release_folder("gemma-2b-res-jb", 12));
    assert!(blockers[1].contains("2 SAEs") && blockers[1].contains(&include), "{}", blockers[1]);
    assert!(text.stdout.contains("unknown (offline)") && text.stdout.contains("to download"), "{}", text.stdout);
    assert!(text.stdout.contains("2 problem(s) block the run"), "{}", text.stdout);
    // the image count is known (synthetic), the model's dimensions are not: no disk figure is made up
    assert_eq!(r["images"]["images"]["count"], 10);
    assert!(r["disk"]["tables"].as_array().unwrap().iter().all(|t| t["bytes"].is_null()));
    assert_eq!(r["checks"].as_array().unwrap().iter().filter(|c| c["outcome"] == "not checked").count(), 2);

    // 2. the small files are cached, and one of two shards: sizes come from the index and the cfgs
    let index = r#"{"metadata": {"total_size": 5000000}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
    hf.put("Intel/llava-gemma-2b", "config.json", INTEL_CONFIG.as_bytes());
    hf.put("Intel/llava-gemma-2b", "model.safetensors.index.json", index.as_bytes());
    hf.put("Intel/llava-gemma-2b", "model-00001-of-00002.safetensors", &[0u8; 1000]);
    for layer in [6, 12] {
        hf.put(
            "jbloom/Gemma-2b-Residual-Stream-SAEs",
            &format!("{}/cfg.json", release_folder("gemma-2b-res-jb", layer)),
            sae_cfg(layer, 2048).as_bytes(),
        );
    }
    let (text, r) = doctor(&p, &file, &env, &[]);
    assert_eq!(text.code, BLOCKED, "offline, the rest cannot be fetched: {}", text.stdout);
    let model = artifact(&r, "hf://Intel/llava-gemma-2b");
    assert_eq!(model["state"], "partial");
    assert_eq!(model["commit"], SHA);
    assert_eq!(model["to_download"], serde_json::json!({"bytes": 5000000 - 1000, "how": "the index's total_size"}));
    assert_eq!(model["unknown_size"], serde_json::json!(["tokenizer.json"]));
    let sae = artifact(&r, "gemma-2b-res-jb/blocks.6.hook_resid_post");
    assert_eq!(sae["state"], "partial");
    assert_eq!(sae["to_download"]["bytes"], (2 * 2048 * 16384 + 16384 + 2048) * 4);
    assert!(r["checks"].as_array().unwrap().iter().all(|c| c["outcome"] == "agrees"), "{}", r["checks"]);
    let what: Vec<&str> = r["blockers"].as_array().unwrap().iter().map(|b| b["what"].as_str().unwrap()).collect();
    assert!(what.iter().any(|w| w.contains("model-00002-of-00002.safetensors") && w.contains("tokenizer.json")), "{what:?}");
    // with the model's config here, the disk bound and the time estimate exist
    let codes = r["disk"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["instance"] == "codes[layer=6]" && t["output"] == "codes")
        .unwrap()
        .clone();
    assert_eq!(codes["bytes"], (10.0 * 576.0 * 64.0 * 5.2) as u64);
    let time = &r["time"]["computations"][0];
    assert_eq!(time["instances"].as_array().unwrap().len(), 2, "one fused forward");
    assert!(time["seconds"].as_f64().is_some() && time["throughput"].as_str().unwrap().starts_with("cuda bf16"), "{time}");
    let (_, slower) = doctor(&p, &file, &env, &["--tflops", "1"]);
    assert!(
        slower["time"]["seconds"].as_f64().unwrap() > r["time"]["seconds"].as_f64().unwrap(),
        "1 TFLOP/s is slower than the cuda assumption"
    );

    // 3. online (downloads on) with a hub that cannot be reached: the run would fetch what is
    // missing, so nothing blocks; sizes the hub cannot announce stay unknown
    let root = hf.env();
    let online = [("HF_HUB_CACHE", root.as_str()), ("HF_ENDPOINT", "http://127.0.0.1:1"), ("HF_HUB_OFFLINE", "")];
    let (text, r) = doctor(&p, &file, &online, &[]);
    assert_eq!(text.code, 0, "{}", text.stdout);
    assert!(text.stdout.contains("ready: nothing blocks the run"), "{}", text.stdout);
    assert_eq!(artifact(&r, "hf://Intel/llava-gemma-2b")["unknown_size"], serde_json::json!(["tokenizer.json"]));
}

/// An SAE of another width than the model's residual stream is reported, at the `sae:` line, and
/// blocks; an SAE trained on another layer is a warning.
#[test]
fn a_mismatched_sae_width_is_reported() {
    let p = Project::new();
    let fixture = repo_root().join("tests/fixtures");
    let yaml = format!(
        "name: check\nstages:\n  images: {{kind: dataset, format: synthetic, classes: 2, train_per_class: 2, test_per_class: 1}}\n  codes:\n    kind: llava_sae\n    from: images.images\n    model: {}\n    layer: 1\n    sae: {}\n",
        fixture.join("llava/a/model").display(),
        fixture.join("sae/pre6_bdec").display()
    );
    let file = p.pipeline("check", &yaml);
    let env = [("HF_HUB_OFFLINE", "1")];
    let (text, r) = doctor(&p, &file, &env, &[]);
    assert_eq!(text.code, BLOCKED, "{}", text.stdout);
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["outcome"], "disagrees");
    let message = checks[0]["messages"][0].as_str().unwrap();
    assert!(message.contains("d_in 32") && message.contains("64"), "{message}");
    let line = yaml.lines().position(|l| l.trim_start().starts_with("sae:")).unwrap() + 1;
    let what: Vec<&str> = r["blockers"].as_array().unwrap().iter().map(|b| b["what"].as_str().unwrap()).collect();
    assert!(what.iter().any(|w| w.starts_with(&format!("pipelines/check.yaml:{line}:")) && w.contains("d_in")), "{what:?}");
    assert!(text.stdout.contains("1 disagree"), "{}", text.stdout);
    // plan refuses the same pipeline with the same check
    let plan = p.run(&["plan", &file]);
    assert_eq!(plan.code, 1);
    assert!(plan.stderr.contains("d_in"), "{}", plan.stderr);

    // the SAE of block 3 read at block 1: the right width, the wrong layer — a warning
    let yaml = yaml.replace(
        &fixture.join("sae/pre6_bdec").display().to_string(),
        &fixture.join("llava/a/saes/blocks.3.hook_resid_post").display().to_string(),
    );
    let file = p.pipeline("check", &yaml);
    let (text, r) = doctor(&p, &file, &env, &[]);
    assert_eq!(text.code, 0, "{}", text.stdout);
    assert_eq!(r["checks"][0]["outcome"], "warns");
    assert!(r["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("layer 3")), "{}", r["warnings"]);
}

/// A fake Hugging Face cache with what `plan` reads for the real study: the model's config, every
/// SAE cfg of both releases, ResNet's config.
fn study_hub(p: &Project) -> FakeHubCache {
    let hf = FakeHubCache::new(p.root().join("hf"));
    hf.put("Intel/llava-gemma-2b", "config.json", INTEL_CONFIG.as_bytes());
    for (release, repo) in
        [("gemma-2b-res-jb", "jbloom/Gemma-2b-Residual-Stream-SAEs"), ("gemma-2b-it-res-jb", "jbloom/Gemma-2b-IT-Residual-Stream-SAEs")]
    {
        for s in saeflow::models::releases::release(release).unwrap().saes {
            let layer: usize = s.id.split('.').nth(1).unwrap().parse().unwrap();
            hf.put(repo, &format!("{}/cfg.json", s.folder), sae_cfg(layer, 2048).as_bytes());
        }
    }
    hf.put("microsoft/resnet-50", "config.json", b"{}");
    hf
}

/// `pipelines/imagenet.yaml` is the cifar100 study on another dataset: against the same hub cache
/// it plans the same sweep (the same instance ids, the six SAE instances one fused computation),
/// and without its data folder `plan` names the line and says what is missing.
#[test]
fn the_imagenet_study_plans_the_same_sweep_as_cifar100() {
    let p = Project::new();
    let read = |name: &str| std::fs::read_to_string(repo_root().join("pipelines").join(name)).unwrap();
    let imagenet = p.pipeline("imagenet", &read("imagenet.yaml"));
    let cifar = p.pipeline("cifar100", &read("cifar100.yaml"));
    std::fs::create_dir_all(p.root().join("data/cifar-100-binary")).unwrap();
    let hf = study_hub(&p);
    let env = [("HF_HUB_CACHE", hf.env()), ("HF_HUB_OFFLINE", "1".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // no data/imagenet yet: a plan error at the `path:` line that says the folder does not exist
    let r = p.run_env(&["plan", &imagenet], &env);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let text = read("imagenet.yaml");
    let line = text.lines().position(|l| l.trim_start().starts_with("path: data/imagenet")).unwrap() + 1;
    assert!(r.stderr.contains(&format!("imagenet.yaml:{line}:")) && r.stderr.contains("'data/imagenet' does not exist"), "{}", r.stderr);
    // doctor lists it among the blockers and still reports the rest; --images stands in for the count
    let (text_report, report) = doctor(&p, &imagenet, &env, &["--images", "50000"]);
    assert_eq!(text_report.code, BLOCKED);
    assert!(report["blockers"][0]["what"].as_str().unwrap().contains("'data/imagenet' does not exist"), "{}", report["blockers"]);
    assert_eq!(report["images"]["dataset"]["count"], 50000);
    let codes = report["disk"]["tables"].as_array().unwrap().iter().find(|t| t["output"] == "codes").unwrap().clone();
    assert_eq!(codes["bytes"], (50000.0 * 576.0 * 64.0 * 5.2) as u64);

    // a stand-in for the data: the val split's class folders and the synset names
    for wnid in ["n01440764", "n01443537"] {
        std::fs::create_dir_all(p.root().join("data/imagenet/val").join(wnid)).unwrap();
    }
    std::fs::write(
        p.root().join("data/imagenet/LOC_synset_mapping.txt"),
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n",
    )
    .unwrap();
    let plan = |file: &str| {
        let r = p.run_env(&["plan", file, "--json"], &env);
        assert_eq!(r.code, 10, "{}", r.stderr);
        r.json()
    };
    let (inet, cifar) = (plan(&imagenet), plan(&cifar));
    let ids = |plan: &serde_json::Value| {
        plan.as_array().unwrap().iter().map(|o| o["instance"].as_str().unwrap().to_string()).collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&inet), ids(&cifar), "the same stages, matrices and baselines");
    assert!(ids(&inet).len() > 500, "the full sweep: {}", ids(&inet).len());
    let codes: Vec<&serde_json::Value> = inet.as_array().unwrap().iter().filter(|o| o["kind"] == "llava_sae").collect();
    assert_eq!(codes.len(), 6);
    assert!(codes.iter().all(|o| o["fused"] == true), "one fused forward");
    // the human plan shows the sweep too
    let r = p.run_env(&["plan", &imagenet], &env);
    assert!(r.stdout.contains("codes         6 to run: never run [fused: one computation]"), "{}", r.stdout);
    let r = p.run_env(&["plan", &imagenet, "-v"], &env);
    assert!(
        r.stdout.contains("codes[layer=12,release=gemma-2b-it-res-jb]") && r.stdout.contains("fused: one computation serves 6 instances"),
        "{}",
        r.stdout
    );
}
