//! SAE parity with SAELens: the tiny SAEs of `tests/fixtures/sae/` (both cfg styles, with and
//! without `apply_b_dec_to_input`, input scales, JumpReLU), encoded and decoded here and compared
//! with the goldens SAELens computed (`tests/fixtures/sae/make_sae_fixtures.py`; its version is in
//! `goldens/meta.json`).
//!
//! Tolerance: absolute 1e-5 on pre-activations and codes (plus 1e-5 relative on the larger
//! decoded values). Near a threshold the sets of non-zeros may differ: where SAELens'
//! pre-activation is within `MARGIN` of the threshold (0 for ReLU), a code that is zero on one side
//! and not on the other is counted, not failed. Elsewhere every code must agree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use saeflow::models::hub::HubCache;
use saeflow::models::sae::{Architecture, CfgStyle, Keep, SaeError, check_against_model, sparsify};
use saeflow::models::sae_load::{self, SaeLoadError, ScaleSource, load, locate, resolve};
use serde_json::Value;

const ATOL: f32 = 1e-5;
const MARGIN: f32 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae")
}

fn meta() -> Value {
    let text = std::fs::read_to_string(fixtures().join("goldens/meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn golden(case: &str) -> HashMap<String, Vec<Vec<f32>>> {
    let tensors = candle_core::safetensors::load(fixtures().join(format!("goldens/{case}.safetensors")), &Device::Cpu).unwrap();
    tensors.into_iter().map(|(k, t)| (k, t.to_vec2::<f32>().unwrap())).collect()
}

fn tensor(rows: &[Vec<f32>]) -> Tensor {
    let n = rows.len();
    let d = rows[0].len();
    Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

/// What one case measured.
#[derive(Debug, Default)]
struct Measured {
    pre: f32,
    codes: f32,
    decoded: f32,
    borderline: usize,
    flips: usize,
}

/// Compare SAELens' goldens with what `sae` computes.
fn compare(case: &str, sae: &saeflow::models::sae::Sae, thresholds: Option<&[f32]>) -> Measured {
    let g = golden(case);
    let x = tensor(&g["x"]);
    let pre = sae.pre_activations(&x).unwrap().to_vec2::<f32>().unwrap();
    let codes = sae.encode(&x).unwrap().to_vec2::<f32>().unwrap();
    let mut m = Measured { pre: max_abs_diff(&pre, &g["pre"]), ..Measured::default() };
    assert!(m.pre <= ATOL, "{case}: pre-activations differ by {}", m.pre);
    for (t, (ours, theirs)) in codes.iter().zip(&g["codes"]).enumerate() {
        for (j, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
            let threshold = thresholds.map_or(0.0, |th| th[j]);
            let near = (g["pre"][t][j] - threshold).abs() <= MARGIN;
            if near {
                m.borderline += 1;
            }
            if (a == 0.0) != (b == 0.0) {
                assert!(near, "{case}: token {t} feature {j}: ours {a}, SAELens {b}, pre {} far from the threshold", g["pre"][t][j]);
                m.flips += 1;
                continue;
            }
            m.codes = m.codes.max((a - b).abs());
        }
    }
    assert!(m.codes <= ATOL, "{case}: codes differ by {}", m.codes);
    // Decode SAELens' codes, so an encoder flip at a threshold does not show up twice.
    let decoded = sae.decode(&tensor(&g["codes"])).unwrap().to_vec2::<f32>().unwrap();
    for (ours, theirs) in decoded.iter().zip(&g["decoded"]) {
        for (&a, &b) in ours.iter().zip(theirs) {
            assert!((a - b).abs() <= ATOL + 1e-5 * b.abs(), "{case}: decoded {a} vs SAELens {b}");
        }
    }
    m.decoded = max_abs_diff(&decoded, &g["decoded"]);
    m
}

fn thresholds(case: &str) -> Vec<f32> {
    let t = candle_core::safetensors::load(fixtures().join(format!("{case}/sae_weights.safetensors")), &Device::Cpu).unwrap();
    t["threshold"].to_vec1::<f32>().unwrap()
}

#[test]
fn every_case_matches_saelens() {
    let meta = meta();
    let cases = meta["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 5);
    eprintln!("goldens by sae-lens {} (torch {})", meta["sae_lens_version"], meta["torch_version"]);
    for (case, info) in cases {
        let scale = info["input_scale"].as_f64();
        let dir = fixtures().join(case);
        let spec = resolve(dir.to_str().unwrap(), scale).unwrap();
        let (cfg, sae) = load(&spec, &dir, &Device::Cpu).unwrap();
        assert_eq!(cfg.d_in as u64, info["d_in"].as_u64().unwrap(), "{case}");
        assert_eq!(cfg.d_sae as u64, info["d_sae"].as_u64().unwrap(), "{case}");
        assert_eq!(cfg.apply_b_dec_to_input, info["apply_b_dec_to_input"].as_bool().unwrap(), "{case}");
        assert_eq!(cfg.hook_layer.map(|l| l as u64), info["hook_layer"].as_u64(), "{case}");
        assert_eq!(cfg.input_scale, scale, "{case}");
        let style = match info["style"].as_str().unwrap() {
            "v6" => CfgStyle::V6,
            _ => CfgStyle::Pre6,
        };
        assert_eq!(cfg.style, style, "{case}");
        let arch = info["architecture"].as_str().unwrap();
        assert_eq!(cfg.architecture.as_str(), arch, "{case}");
        let th = (cfg.architecture == Architecture::JumpRelu).then(|| thresholds(case));
        let m = compare(case, &sae, th.as_deref());
        eprintln!(
            "{case}: max |Δ| pre {:.2e}, codes {:.2e}, decoded {:.2e}; {} borderline entries, {} flips",
            m.pre, m.codes, m.decoded, m.borderline, m.flips
        );
        // The near-threshold rows do put entries within the margin.
        assert!(m.borderline >= 1, "{case}: no borderline entries; the fixture's near-threshold rows did not work");
    }
}

#[test]
fn sparse_codes_match_saelens_non_zeros() {
    let dir = fixtures().join("pre6_bdec");
    let spec = resolve(dir.to_str().unwrap(), None).unwrap();
    let (_, sae) = load(&spec, &dir, &Device::Cpu).unwrap();
    let g = golden("pre6_bdec");
    let codes = sae.encode(&tensor(&g["x"])).unwrap();
    let all = sparsify(&codes, Keep::All).unwrap();
    let top5 = sparsify(&codes, Keep::Top(5)).unwrap();
    assert_eq!(all.n_tokens(), g["codes"].len());
    for (t, theirs) in g["codes"].iter().enumerate() {
        let clear: Vec<u32> = (0..theirs.len() as u32).filter(|&j| g["pre"][t][j as usize] > MARGIN).collect();
        let (features, values) = all.token(t);
        let mut sorted = features.to_vec();
        sorted.sort_unstable();
        for j in &clear {
            assert!(sorted.binary_search(j).is_ok(), "token {t}: feature {j} missing");
        }
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "token {t}: not in descending order");
        // Top 5 by SAELens' values (ties by index) — the same features unless two values are
        // within the tolerance of each other at the cut.
        let mut ranked: Vec<(u32, f32)> = theirs.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(j, v)| (j as u32, *v)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (top_features, top_values) = top5.token(t);
        assert_eq!(top_features.len(), ranked.len().min(5), "token {t}");
        for (k, (&f, &v)) in top_features.iter().zip(top_values).enumerate() {
            assert!((v - ranked[k].1).abs() <= ATOL, "token {t} rank {k}: {v} vs {}", ranked[k].1);
            if ranked.get(k + 1).is_none_or(|next| (ranked[k].1 - next.1).abs() > ATOL)
                && (k == 0 || (ranked[k - 1].1 - ranked[k].1).abs() > ATOL)
            {
                assert_eq!(f, ranked[k].0, "token {t} rank {k}");
            }
        }
    }
}

/// The jb layer-12 SAE through the release table and a Python-layout hub cache: the scale comes
/// from the table (the fixture `pre6_scaled` was made with it), the commit from `refs/main`.
#[test]
fn release_sae_through_the_hub_cache() {
    let cache_dir = tempfile::tempdir().unwrap();
    let sha = "1234567890abcdef1234567890abcdef12345678";
    let repo = cache_dir.path().join("models--jbloom--Gemma-2b-Residual-Stream-SAEs");
    let folder = repo.join("snapshots").join(sha).join("gemma_2b_blocks.12.hook_resid_post_16384");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), sha).unwrap();
    let cache = HubCache::at(cache_dir.path());
    let spec = resolve("gemma-2b-res-jb/blocks.12.hook_resid_post", None).unwrap();
    assert_eq!(spec.input_scale, Some((0.21381938399317255, ScaleSource::Release)));

    let err = locate(&spec, &cache).unwrap_err().to_string();
    assert!(err.contains("not in the local Hugging Face cache"), "{err}");
    assert!(err.contains("--include 'gemma_2b_blocks.12.hook_resid_post_16384/*'"), "{err}");

    for file in [sae_load::CFG_FILE, sae_load::WEIGHTS_FILE] {
        std::fs::copy(fixtures().join("pre6_scaled").join(file), folder.join(file)).unwrap();
    }
    let located = locate(&spec, &cache).unwrap();
    assert_eq!(located.commit.as_deref(), Some(sha));
    assert_eq!(located.dir, folder);
    let (cfg, sae) = load(&spec, &located.dir, &Device::Cpu).unwrap();
    assert_eq!(cfg.input_scale, Some(0.21381938399317255));
    let m = compare("pre6_scaled", &sae, None);
    assert!(m.codes <= ATOL);
}

#[test]
fn a_normalising_sae_without_a_scale_is_refused() {
    let dir = fixtures().join("pre6_scaled");
    let spec = resolve(dir.to_str().unwrap(), None).unwrap();
    let err = sae_load::read_config(&spec, &dir).unwrap_err();
    assert!(matches!(err, SaeLoadError::Sae(SaeError::MissingInputScale { .. })), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "sae {}: cfg.json asks for input normalisation (normalize_activations: expected_average_only_in)",
            dir.display()
        )),
        "{text}"
    );
    assert!(text.contains("release table") && text.contains("`input_scale:`"), "{text}");
    assert!(load(&spec, &dir, &Device::Cpu).is_err());
}

#[test]
fn a_scale_for_a_plain_sae_is_refused() {
    let dir = fixtures().join("pre6_nobdec");
    let spec = resolve(dir.to_str().unwrap(), Some(0.5)).unwrap();
    let err = sae_load::read_config(&spec, &dir).unwrap_err().to_string();
    assert!(err.contains("input_scale 0.5 was given but cfg.json says normalize_activations: none"), "{err}");
}

#[test]
fn plan_check_against_the_model() {
    let dir = fixtures().join("pre6_nobdec");
    let spec = resolve(dir.to_str().unwrap(), None).unwrap();
    let cfg = sae_load::read_config(&spec, &dir).unwrap();
    assert_eq!(cfg.d_in, 16);
    let err = check_against_model(&cfg, 2048, 10, &spec.subject()).unwrap_err().to_string();
    assert_eq!(
        err,
        "sae d_in 16 but the model's hidden size is 2048: this SAE was trained on another model's residual stream; \
         pick an SAE whose d_in is 2048"
    );
    assert!(check_against_model(&cfg, 16, 10, "s").unwrap().is_empty());
    let warnings = check_against_model(&cfg, 16, 12, "s").unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].to_string().starts_with("sae hook layer 10 (blocks.10.hook_resid_post) differs from the tapped layer 12"));
}

#[test]
fn broken_folders_name_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cfg.json"), r#"{"d_sae": 64}"#).unwrap();
    let spec = resolve(dir.path().to_str().unwrap(), None).unwrap();
    let err = load(&spec, dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert_eq!(err, format!("{}: sae cfg.json: d_in: missing", dir.path().display()));

    std::fs::copy(fixtures().join("pre6_nobdec/cfg.json"), dir.path().join("cfg.json")).unwrap();
    let err = load(&spec, dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("sae_weights.safetensors") && err.contains("No such file"), "{err}");

    let tensors = candle_core::safetensors::load(fixtures().join("pre6_nobdec/sae_weights.safetensors"), &Device::Cpu).unwrap();
    let without_b_enc: HashMap<_, _> = tensors.into_iter().filter(|(k, _)| k != "b_enc").collect();
    candle_core::safetensors::save(&without_b_enc, dir.path().join("sae_weights.safetensors")).unwrap();
    let err = load(&spec, dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert_eq!(err, format!("{}: cannot find tensor b_enc", dir.path().display()));

    std::fs::write(dir.path().join("sae_weights.safetensors"), b"not a safetensors file").unwrap();
    let err = load(&spec, dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: {}: ", dir.path().display(), dir.path().join("sae_weights.safetensors").display())), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

/// SAELens applies a release table's `norm_scaling_factor` only when the SAE's cfg.json asks for
/// input normalisation; if the real layer-12 cfg says `normalize_activations: false`, the table's
/// scale must be dropped (the codes are then the unscaled encoder's), not refused.
#[test]
fn a_release_scale_is_dropped_when_the_cfg_does_not_normalise() {
    let spec = resolve("gemma-2b-res-jb/blocks.12.hook_resid_post", None).unwrap();
    assert_eq!(spec.input_scale, Some((0.21381938399317255, ScaleSource::Release)));
    let dir = fixtures().join("pre6_nobdec");
    let cfg = sae_load::read_config(&spec, &dir).unwrap();
    assert_eq!(cfg.input_scale, None);
    assert_eq!(cfg.effective_input_scale("s").unwrap(), 1.0);
    let (_, sae) = load(&spec, &dir, &Device::Cpu).unwrap();
    assert!(compare("pre6_nobdec", &sae, None).codes <= ATOL, "the plain encoder, as SAELens would build it");
}
