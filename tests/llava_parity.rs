//! LLaVA-Gemma in candle against transformers: the tiny random-weight checkpoints and goldens of
//! `tests/fixtures/llava/make_fixtures.py` (variant `a`: the 2024 on-disk layout, sharded f32,
//! MQA, untied head; variant `b`: transformers 5's layout, bf16, GQA, tied, `full` strategy).
//! Every test reads its dimensions from the files, so it passes unchanged on regenerated fixtures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use saeflow::models::llava::prompt::{DEFAULT_QUESTION, GEMMA_IT_TEMPLATE};
use saeflow::models::llava::{Checkpoint, EoiPosition, ImageScale, LlavaError, LlavaGemma, Prompt, Request, TapPoint, Tokenizer};

const VARIANTS: [&str; 2] = ["a", "b"];
/// ‖Δ‖/‖ref‖ allowed in f32.
const F32_TOL: f32 = 1e-4;
/// ‖Δ‖/‖ref‖ allowed for a bf16 run against the f32 reference.
const BF16_TOL: f32 = 2e-2;

/// Where the models run: the CPU, or `SAEFLOW_TEST_DEVICE=cuda` (a `--features cuda` build of these
/// tests on a GPU host: the same goldens, the same tolerances).
fn device() -> Device {
    match std::env::var("SAEFLOW_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0).expect("SAEFLOW_TEST_DEVICE=cuda needs a --features cuda build and a GPU"),
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok(other) => panic!("SAEFLOW_TEST_DEVICE={other}: expected cpu or cuda"),
    }
}

struct Fixture {
    root: PathBuf,
    goldens: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Fixture {
    fn load(variant: &str) -> Fixture {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava").join(variant);
        let goldens = candle_core::safetensors::load(root.join("goldens.safetensors"), &Device::Cpu).unwrap();
        let meta = serde_json::from_str(&std::fs::read_to_string(root.join("meta.json")).unwrap()).unwrap();
        Fixture { root, goldens, meta }
    }

    fn model_dir(&self) -> PathBuf {
        self.root.join("model")
    }

    fn golden(&self, name: &str) -> &Tensor {
        self.goldens.get(name).unwrap_or_else(|| panic!("{}: no golden {name}", self.root.display()))
    }

    fn layers(&self) -> usize {
        self.meta["dims"]["text"]["num_hidden_layers"].as_u64().unwrap() as usize
    }

    fn prompt(&self, checkpoint: &Checkpoint) -> Prompt {
        let tokenizer = Tokenizer::from_file(&self.model_dir().join("tokenizer.json")).unwrap();
        let cfg = &checkpoint.config;
        Prompt::build(&tokenizer, GEMMA_IT_TEMPLATE, DEFAULT_QUESTION, cfg.image_token_index, cfg.image_tokens(), EoiPosition::AfterImage)
            .unwrap()
    }

    fn model(&self, dir: &Path, request: Request, dtype: DType) -> LlavaGemma {
        let checkpoint = Checkpoint::open(dir).unwrap();
        let prompt = self.prompt(&checkpoint);
        LlavaGemma::load(&checkpoint, prompt, request, dtype, &device()).unwrap()
    }
}

fn all_blocks(fx: &Fixture, point: TapPoint, image_scale: ImageScale) -> Request {
    Request { blocks: (0..fx.layers()).collect(), point, final_norm: true, vit: true, image_scale }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// ‖a − b‖ / ‖b‖ after checking the shapes agree.
fn rel_l2(actual: &Tensor, reference: &Tensor, what: &str) -> f32 {
    assert_eq!(actual.dims(), reference.dims(), "{what}: shape");
    let (a, r) = (values(actual), values(reference));
    let num: f64 = a.iter().zip(&r).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = r.iter().map(|y| (*y as f64).powi(2)).sum();
    assert!(den > 0.0, "{what}: the reference is all zeros");
    (num / den).sqrt() as f32
}

fn assert_close(actual: &Tensor, reference: &Tensor, tol: f32, what: &str) {
    let err = rel_l2(actual, reference, what);
    assert!(err <= tol, "{what}: ‖Δ‖/‖ref‖ = {err:.3e} > {tol:.0e}");
}

#[test]
fn config_layout_and_files_are_read_from_the_checkpoint() {
    let a = Checkpoint::open(&Fixture::load("a").model_dir()).unwrap();
    assert!(a.layout().is_2024(), "{:?}", a.layout());
    assert_eq!(a.layout().lm_head, Some("language_model.lm_head.weight"));
    let files: Vec<String> = a.files().iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        files,
        ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
        "only the indexed shards, never the decoys"
    );
    assert!(a.config.notes.iter().any(|n| n.contains("legacy spelling")), "{:?}", a.config.notes);
    let b = Checkpoint::open(&Fixture::load("b").model_dir()).unwrap();
    assert_eq!(b.layout().vision, "vision_tower.", "transformers 5 drops vision_model.");
    assert_eq!(b.layout().lm_head, None, "tied");
    assert_eq!(b.header("language_model.model.embed_tokens.weight").unwrap().1, DType::BF16);
    for variant in VARIANTS {
        let fx = Fixture::load(variant);
        let cfg = &Checkpoint::open(&fx.model_dir()).unwrap().config;
        let (text, vision) = (&fx.meta["dims"]["text"], &fx.meta["dims"]["vision"]);
        let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("meta {k}")) as usize;
        assert_eq!(cfg.text.hidden_size, n(text, "hidden_size"));
        assert_eq!(cfg.text.head_dim, n(text, "head_dim"));
        assert_eq!(cfg.text.num_key_value_heads, n(text, "num_key_value_heads"));
        assert_eq!(cfg.text.num_hidden_layers, n(text, "num_hidden_layers"));
        assert_eq!(cfg.vision.hidden_size, n(vision, "hidden_size"));
        assert_eq!(cfg.vision.num_patches(), n(vision, "num_patches"));
        assert_eq!(cfg.text.hidden_act.hf_name(), fx.meta["activations"]["gemma"].as_str().unwrap());
        assert_eq!(cfg.vision.hidden_act.hf_name(), fx.meta["activations"]["clip"].as_str().unwrap());
        assert_eq!(cfg.projector_hidden_act.hf_name(), fx.meta["activations"]["projector"].as_str().unwrap());
    }
}

#[test]
fn the_prompt_tokenizes_as_transformers_with_one_bos() {
    for variant in VARIANTS {
        let fx = Fixture::load(variant);
        let checkpoint = Checkpoint::open(&fx.model_dir()).unwrap();
        let prompt = fx.prompt(&checkpoint);
        let expected: Vec<u32> = fx.golden("input_ids").to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect();
        assert_eq!(prompt.ids, expected, "{variant}");
        let image = &fx.meta["image_positions"];
        assert_eq!(prompt.image.start as u64, image["start"].as_u64().unwrap(), "{variant}");
        assert_eq!(prompt.image.end as u64, image["end_exclusive"].as_u64().unwrap(), "{variant}");
        assert_eq!(prompt.eoi as u64, fx.meta["eoi_position"].as_u64().unwrap(), "{variant}");
        assert!(prompt.notes.is_empty(), "{:?}", prompt.notes);
    }
}

#[test]
fn prompt_mistakes_are_named() {
    let fx = Fixture::load("a");
    let checkpoint = Checkpoint::open(&fx.model_dir()).unwrap();
    let tokenizer = Tokenizer::from_file(&fx.model_dir().join("tokenizer.json")).unwrap();
    let cfg = &checkpoint.config;
    let build = |template: &str, eoi| Prompt::build(&tokenizer, template, "q?", cfg.image_token_index, cfg.image_tokens(), eoi);
    let err = build("<bos><bos><image>\n{question}", EoiPosition::AfterImage).unwrap_err().to_string();
    assert!(err.contains("two <bos>"), "{err}");
    let err = build("<bos>{question}", EoiPosition::AfterImage).unwrap_err().to_string();
    assert!(err.contains("0 <image> placeholders"), "{err}");
    let err = build("<bos>{question}<image>", EoiPosition::AfterImage).unwrap_err().to_string();
    assert!(err.contains("nothing follows the image"), "{err}");
    let p = build("<bos>{question}<image>", EoiPosition::LastImage).unwrap();
    assert_eq!(p.eoi, p.image.end - 1);
    let p = build("{question}\n<image>\n", EoiPosition::AfterImage).unwrap();
    assert_eq!(p.ids[0], 2, "a <bos> is put first");
    assert_eq!(p.notes.len(), 1);
}

/// Every block's residual, the final norm, the projector output and the CLIP features, f32,
/// in both image-scaling semantics.
#[test]
fn every_block_matches_transformers_in_f32() {
    for variant in VARIANTS {
        let fx = Fixture::load(variant);
        for (scale, prefix) in [(ImageScale::Unscaled, ""), (ImageScale::Scaled, "scaled.")] {
            let model = fx.model(&fx.model_dir(), all_blocks(&fx, TapPoint::ResidPost, scale), DType::F32);
            let out = model.forward(fx.golden("pixel_values")).unwrap();
            for (l, tap) in out.taps.iter().enumerate() {
                assert_close(tap, fx.golden(&format!("{prefix}resid_post.{l}")), F32_TOL, &format!("{variant} {prefix}resid_post.{l}"));
            }
            assert_close(out.final_norm.as_ref().unwrap(), fx.golden(&format!("{prefix}final_norm")), F32_TOL, "final_norm");
            assert_close(&out.image_features, fx.golden("image_features"), F32_TOL, "image_features");
            let vit = out.vit.as_ref().unwrap();
            assert_close(&vit.pooled, fx.golden("clip.pooled"), F32_TOL, "clip.pooled");
            assert_close(&vit.patch_mean, fx.golden("clip.patch_mean"), F32_TOL, "clip.patch_mean");
            // The rows the extraction stage keeps.
            let last = out.taps.len() - 1;
            let golden = fx.golden(&format!("{prefix}resid_post.{last}"));
            let image = model.prompt().image.clone();
            assert_close(
                &model.image_rows(&out.taps[last]).unwrap(),
                &golden.narrow(1, image.start, image.len()).unwrap(),
                F32_TOL,
                "image rows",
            );
            let eoi = model.prompt().eoi;
            assert_close(&model.eoi_row(&out.taps[last]).unwrap(), &golden.narrow(1, eoi, 1).unwrap().squeeze(1).unwrap(), F32_TOL, "eoi");
        }
    }
}

/// `resid_pre` is the input of each block (`hidden_states[L]`, what MOSAIC read).
#[test]
fn resid_pre_matches_the_input_of_each_block() {
    for variant in VARIANTS {
        let fx = Fixture::load(variant);
        let request = Request { final_norm: false, vit: false, ..all_blocks(&fx, TapPoint::ResidPre, ImageScale::Unscaled) };
        let model = fx.model(&fx.model_dir(), request, DType::F32);
        let out = model.forward(fx.golden("pixel_values")).unwrap();
        for (l, tap) in out.taps.iter().enumerate() {
            assert_close(tap, fx.golden(&format!("resid_pre.{l}")), F32_TOL, &format!("{variant} resid_pre.{l}"));
        }
        assert_eq!(model.depth().1, fx.layers() - 1, "resid_pre of the last block does not run it");
    }
}

#[test]
fn bf16_stays_within_2e_2_of_f32() {
    for variant in VARIANTS {
        let fx = Fixture::load(variant);
        let model = fx.model(&fx.model_dir(), all_blocks(&fx, TapPoint::ResidPost, ImageScale::Scaled), DType::BF16);
        let out = model.forward(fx.golden("pixel_values")).unwrap();
        for (l, tap) in out.taps.iter().enumerate() {
            assert_eq!(tap.dtype(), DType::BF16);
            assert_close(tap, fx.golden(&format!("scaled.resid_post.{l}")), BF16_TOL, &format!("{variant} bf16 resid_post.{l}"));
        }
        assert_close(&out.vit.as_ref().unwrap().pooled, fx.golden("clip.pooled"), BF16_TOL, "bf16 clip.pooled");
    }
}

/// Copy fixture `a`'s model folder, letting `edit` rewrite the tensors (by name) and the config.
fn edited_copy(
    fx: &Fixture,
    edit_tensors: impl Fn(HashMap<String, Tensor>) -> HashMap<String, Tensor>,
    single_file: bool,
    edit_config: impl Fn(&mut serde_json::Value),
) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = fx.model_dir();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".safetensors") || single_file && name.ends_with(".index.json")) {
            std::fs::copy(&path, tmp.path().join(&name)).unwrap();
        }
    }
    let checkpoint = Checkpoint::open(&src).unwrap();
    if single_file {
        let mut all = HashMap::new();
        for f in checkpoint.files() {
            all.extend(candle_core::safetensors::load(f, &Device::Cpu).unwrap());
        }
        candle_core::safetensors::save(&edit_tensors(all), tmp.path().join("model.safetensors")).unwrap();
    } else {
        for f in checkpoint.files() {
            let tensors = edit_tensors(candle_core::safetensors::load(f, &Device::Cpu).unwrap());
            candle_core::safetensors::save(&tensors, tmp.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    let config_path = tmp.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    edit_config(&mut config);
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    tmp
}

/// transformers 4.52–4.57 saved `model.language_model.…`, `model.vision_tower.vision_model.…`,
/// `lm_head.weight`; the same weights under those names give the same numbers.
#[test]
fn transformers_4_52_names_load_to_the_same_model() {
    let fx = Fixture::load("a");
    let rename = |name: &str| -> String {
        if let Some(rest) = name.strip_prefix("language_model.model.") {
            format!("model.language_model.{rest}")
        } else if name == "language_model.lm_head.weight" {
            "lm_head.weight".into()
        } else {
            format!("model.{name}")
        }
    };
    let tmp = edited_copy(&fx, |ts| ts.into_iter().map(|(k, v)| (rename(&k), v)).collect(), true, |_| {});
    let checkpoint = Checkpoint::open(tmp.path()).unwrap();
    assert_eq!(checkpoint.layout().language, "model.language_model.");
    assert_eq!(checkpoint.layout().vision, "model.vision_tower.vision_model.");
    assert_eq!(checkpoint.layout().lm_head, Some("lm_head.weight"));
    let request =
        Request { blocks: vec![0, 2], point: TapPoint::ResidPost, final_norm: false, vit: false, image_scale: ImageScale::Scaled };
    let renamed = fx.model(tmp.path(), request.clone(), DType::F32).forward(fx.golden("pixel_values")).unwrap();
    let original = fx.model(&fx.model_dir(), request, DType::F32).forward(fx.golden("pixel_values")).unwrap();
    for (x, y) in renamed.taps.iter().zip(&original.taps) {
        assert_eq!(values(x), values(y));
    }
}

/// Blocks past the deepest tap are never read: a checkpoint without them still serves shallow
/// taps, and asking for a deeper one names the first missing tensor.
#[test]
fn early_exit_reads_only_the_blocks_it_needs() {
    let fx = Fixture::load("a");
    let tmp = edited_copy(
        &fx,
        |ts| ts.into_iter().filter(|(k, _)| !(k.contains("layers.2.") || k.contains("layers.3.")) || k.starts_with("vision")).collect(),
        false,
        |_| {},
    );
    let request = Request { blocks: vec![1], point: TapPoint::ResidPost, final_norm: false, vit: false, image_scale: ImageScale::Scaled };
    let model = fx.model(tmp.path(), request.clone(), DType::F32);
    let select = model.config().vision_hidden_state_index().unwrap();
    assert_eq!(model.depth(), (select, 2), "vision stops at hidden_states[-2], Gemma after block 1");
    let out = model.forward(fx.golden("pixel_values")).unwrap();
    assert_close(&out.taps[0], fx.golden("scaled.resid_post.1"), F32_TOL, "resid_post.1 of the truncated checkpoint");

    let checkpoint = Checkpoint::open(tmp.path()).unwrap();
    let prompt = fx.prompt(&checkpoint);
    let deep = Request { blocks: vec![3], ..request };
    let err = LlavaGemma::load(&checkpoint, prompt, deep, DType::F32, &Device::Cpu).err().unwrap();
    assert!(matches!(err, LlavaError::MissingTensor { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("language_model.model.layers.2."), "{msg}");
}

#[test]
fn a_config_that_disagrees_with_the_weights_names_the_tensor() {
    let fx = Fixture::load("a");
    let tmp = edited_copy(&fx, |ts| ts, false, |cfg| cfg["text_config"]["intermediate_size"] = serde_json::json!(100));
    let checkpoint = Checkpoint::open(tmp.path()).unwrap();
    let prompt = fx.prompt(&checkpoint);
    let request = Request { blocks: vec![0], point: TapPoint::ResidPost, final_norm: false, vit: false, image_scale: ImageScale::Scaled };
    let msg = LlavaGemma::load(&checkpoint, prompt, request, DType::F32, &Device::Cpu).err().unwrap().to_string();
    assert!(msg.contains("language_model.model.layers.0.mlp.gate_proj.weight"), "{msg}");
    assert!(msg.contains("text_config.intermediate_size"), "{msg}");
    let dims = &fx.meta["dims"]["text"];
    let (inter, hidden) = (dims["intermediate_size"].as_u64().unwrap(), dims["hidden_size"].as_u64().unwrap());
    assert!(msg.contains(&format!("[{inter}, {hidden}]")) && msg.contains(&format!("[100, {hidden}]")), "{msg}");
}

#[test]
fn requests_outside_the_model_are_refused() {
    let fx = Fixture::load("a");
    let checkpoint = Checkpoint::open(&fx.model_dir()).unwrap();
    let layers = fx.layers();
    let request =
        Request { blocks: vec![layers], point: TapPoint::ResidPost, final_norm: false, vit: false, image_scale: ImageScale::Scaled };
    let msg = LlavaGemma::load(&checkpoint, fx.prompt(&checkpoint), request, DType::F32, &Device::Cpu).err().unwrap().to_string();
    assert!(msg.contains(&format!("block {layers} does not exist")), "{msg}");
}

/// The fixture's image files through saeflow's decoder and CLIP preprocessing give the
/// `pixel_values` transformers' PIL-backed processor gave.
#[test]
fn images_preprocess_to_the_goldens_pixel_values() {
    for variant in VARIANTS {
        let fx = Fixture::load(variant);
        let processor = saeflow::stages::images::image_processor(&fx.model_dir()).unwrap();
        let golden = fx.golden("pixel_values");
        let order: Vec<String> = fx.meta["image_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        for (i, name) in order.iter().enumerate() {
            let want = values(&golden.get(i).unwrap());
            let max_diff = |file: &str| {
                let bytes = std::fs::read(fx.root.join("images").join(file)).unwrap();
                let got = processor.preprocess(&saeflow::data::decode::decode_rgb8(&bytes).unwrap()).unwrap();
                got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
            };
            match name.strip_suffix(".jpg") {
                // JPEG decoders differ by a few levels (zune-jpeg vs libjpeg-turbo; see data::decode):
                // at most 4 of 255 over the smallest CLIP std; PIL's own decode is exact.
                Some(stem) => {
                    let max = max_diff(name);
                    assert!(max > 0.0 && max <= 4.0 / 255.0 / 0.2613, "{variant} {name}: max |Δ| = {max}");
                    let max = max_diff(&format!("{stem}.pil.png"));
                    assert!(max <= 1e-6, "{variant} {stem}.pil.png: max |Δ| = {max}");
                }
                None => {
                    let max = max_diff(name);
                    assert!(max <= 1e-6, "{variant} {name}: max |Δ| = {max}");
                }
            }
        }
    }
}

/// LLaVA's own answer: each label's log-likelihood after the zero-shot prompt, and greedy
/// generation with a KV cache, token for token (the generator checked every step's top-1/top-2
/// margin exceeds 1e-3).
#[test]
fn zero_shot_scores_and_greedy_answers_match_transformers() {
    use saeflow::models::llava::zeroshot::LlavaLm;
    for variant in VARIANTS {
        let fx = Fixture::load(variant);
        let zs = &fx.meta["zeroshot"];
        let checkpoint = Checkpoint::open(&fx.model_dir()).unwrap();
        let tokenizer = Tokenizer::from_file(&fx.model_dir().join("tokenizer.json")).unwrap();
        let cfg = &checkpoint.config;
        let question = zs["question"].as_str().unwrap();
        let prompt =
            Prompt::build(&tokenizer, GEMMA_IT_TEMPLATE, question, cfg.image_token_index, cfg.image_tokens(), EoiPosition::AfterImage)
                .unwrap();
        let want_ids: Vec<u32> = fx.golden("zeroshot.input_ids").to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect();
        assert_eq!(prompt.ids, want_ids, "{variant}: zero-shot prompt");
        let lm = LlavaLm::load(&checkpoint, prompt, ImageScale::Scaled, DType::F32, &device()).unwrap();
        // the labels as saeflow tokenizes them
        let labels: Vec<Vec<u32>> =
            zs["labels"].as_array().unwrap().iter().map(|l| tokenizer.encode(l.as_str().unwrap()).unwrap()).collect();
        let want_labels: Vec<Vec<u32>> = zs["label_token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect())
            .collect();
        assert_eq!(labels, want_labels, "{variant}: label tokens");
        let pixels = fx.golden("pixel_values");
        let got = lm.score(pixels, &labels).unwrap();
        let want = fx.golden("zeroshot.loglik").to_vec2::<f32>().unwrap();
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{variant}: loglik {g} vs {w}");
        }
        let max_new = zs["max_new_tokens"].as_u64().unwrap() as usize;
        let stop: Vec<u32> = zs["stop_token_ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
        let generated = lm.generate(pixels, max_new, &stop).unwrap();
        for (b, g) in generated.iter().enumerate() {
            let want: Vec<u32> =
                fx.golden(&format!("zeroshot.generated.{b}")).to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect();
            assert_eq!(g, &want, "{variant}: image {b} generation");
        }
        // stopping: a stop token ends that image's answer (included), the others go on
        let third = generated[0][2];
        let stopped = lm.generate(pixels, max_new, &[third]).unwrap();
        assert!(stopped[0].len() <= 3 && stopped[0].last() == Some(&third));
        for (s, g) in stopped.iter().zip(&generated) {
            let cut = g.iter().position(|t| *t == third).map(|i| i + 1).unwrap_or(g.len());
            assert_eq!(s[..], g[..cut]);
        }
    }
}
