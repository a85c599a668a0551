//! The study's full sweep (6 SAEs × 6 poolings × 3 binarize modes × 5 splits × 3 seeds, layer
//! fusion, four baselines) plans with the exact expected instance count and no wrong pairing.

mod common;

use std::collections::BTreeMap;

use common::Project;
use serde_json::Value;

fn coords(r: &Value) -> BTreeMap<String, Value> {
    r["coords"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn the_full_study_sweep_plans_exactly_and_pairs_only_matching_variants() {
    let p = Project::new();
    let f = p.pipeline("study", include_str!("fixtures/study_sweep.yaml"));
    let r = p.run(&["plan", &f, "--json"]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    let by_id: BTreeMap<&str, &Value> = rows.iter().map(|r| (r["instance"].as_str().unwrap(), r)).collect();
    let count = |stage: &str| rows.iter().filter(|r| r["stage"] == stage).count();
    let (saes, pools, binarize, splits) = (6, 6, 3, 5 * 3);
    let expected = [
        ("dataset", 1),
        ("extract", saes),
        ("clean", saes),
        ("pooled", saes * pools),
        ("binarized", saes * pools * binarize),
        ("split", splits),
        ("probe", saes * pools * binarize * splits),
        ("eoi_probe", saes * splits),
        ("fused", pools * binarize),
        ("fused_probe", pools * binarize * splits),
        ("vit", 1),
        ("vit_probe", splits),
        ("resnet", 1),
        ("resnet_probe", splits),
        ("zeroshot", splits),
        ("report", 1),
    ];
    for (stage, n) in expected {
        assert_eq!(count(stage), n, "instances of {stage}");
    }
    assert_eq!(rows.len(), expected.iter().map(|(_, n)| n).sum::<usize>());
    assert_eq!(rows.len(), 2218);
    // ids and keys are unique
    let keys: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), rows.len(), "every instance has its own key");
    // every single-variant input agrees with the consumer on every axis they share
    for r in rows {
        let mine = coords(r);
        for input in r["inputs"].as_array().unwrap() {
            let ids = input["instances"].as_array().unwrap();
            if r["stage"] == "report" || r["stage"] == "fused" {
                continue;
            }
            assert_eq!(ids.len(), 1, "{} input {}", r["instance"], input["slot"]);
            let theirs = coords(by_id[ids[0].as_str().unwrap()]);
            for (axis, v) in &theirs {
                assert_eq!(mine.get(axis), Some(v), "{} reads {} which disagrees on {axis}", r["instance"], ids[0]);
            }
        }
    }
    // fusion gathers layers 6 and 10 of the same pooling and binarization, of the text SAE only
    for r in rows.iter().filter(|r| r["stage"] == "fused") {
        let mine = coords(r);
        assert_eq!(mine["layer"], "6+10");
        let ids: Vec<&str> = r["inputs"][0]["instances"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(ids.len(), 2);
        for id in ids {
            let theirs = coords(by_id[id]);
            assert_eq!(theirs["pool"], mine["pool"]);
            assert_eq!(theirs["binarize"], mine["binarize"]);
            assert_eq!(theirs["sae"], "gemma-2b-res-jb");
        }
    }
    // the instruct-model SAE exists at layer 12 only
    assert!(by_id.contains_key("extract[layer=12,sae=gemma-2b-it-res-jb]"));
    assert!(!by_id.contains_key("extract[layer=6,sae=gemma-2b-it-res-jb]"));
    // the report gathers every probe variant and baseline
    let report = rows.iter().find(|r| r["stage"] == "report").unwrap();
    let gathered: usize = report["inputs"].as_array().unwrap().iter().map(|i| i["instances"].as_array().unwrap().len()).sum();
    assert_eq!(gathered, 1620 + 90 + 270 + 15 + 15 + 15);
    // and the extraction is one fused computation per SAE release: five layers of the text SAE in
    // one, the instruct SAE's single layer alone
    let summary = p.run(&["plan", &f]).stdout;
    assert!(summary.contains("  run     extract       6 to run: never run [fused: 2 computations]"), "{summary}");
    assert!(summary.lines().count() < 25, "one line per stage: {summary}");
    let text = p.run(&["plan", &f, "-v"]).stdout;
    let fused: Vec<&str> = text.lines().filter(|l| l.contains("[fused: one computation serves 5 instances]")).collect();
    assert_eq!(fused.len(), 5, "{text}");
    assert!(fused.iter().all(|l| l.contains("sae=gemma-2b-res-jb")));
    assert!(text.lines().any(|l| l.contains("extract[layer=12,sae=gemma-2b-it-res-jb]") && !l.contains("[fused")));
}
