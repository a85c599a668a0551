//! End-to-end tests of the runner through the binary, with the mock stand-in kinds.

mod common;

use common::{Project, sorted};

const BRANCHY: &str = r#"
name: branchy
stages:
  src:
    kind: mock.source
    rows: 200
    parts: 2
  ext:
    kind: mock.fused
    from: src
    matrix: {layer: [6, 10]}
  pooled:
    kind: mock.map
    from: ext
    matrix: {method: [sum, top5]}
    scale: 1
  other:
    kind: mock.map
    from: src
    weight: 3
  report:
    kind: mock.gather
    from: [pooled, other]
"#;

#[test]
fn plan_exits_10_before_a_run_and_0_after() {
    let p = Project::new();
    let f = p.pipeline("branchy", BRANCHY);
    let before = p.run(&["plan", &f]);
    assert_eq!(before.code, 10, "{}{}", before.stdout, before.stderr);
    assert!(before.stdout.contains("never run"));
    let run = p.run(&["run", &f]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("done: 9 ran, 0 cached"), "{}", run.stdout);
    let after = p.run(&["plan", &f]);
    assert_eq!(after.code, 0, "{}", after.stdout);
    assert!(after.stdout.contains("9 instances, all cached; nothing to run"), "{}", after.stdout);
    let json = p.run(&["plan", &f, "--json"]).json();
    let first = &json.as_array().unwrap()[0];
    for field in ["instance", "stage", "kind", "key", "status", "reason"] {
        assert!(first.get(field).is_some(), "plan --json lacks {field}: {first}");
    }
}

#[test]
fn a_one_parameter_edit_reruns_exactly_the_downstream_instances() {
    let p = Project::new();
    let f = p.pipeline("branchy", BRANCHY);
    assert_eq!(p.run(&["run", &f]).code, 0);
    assert_eq!(p.executed().len(), 9);
    p.pipeline("branchy", &BRANCHY.replace("scale: 1", "scale: 2"));
    let plan = p.run(&["plan", &f]);
    assert!(plan.stdout.contains("params changed: scale (1 → 2)"), "{}", plan.stdout);
    let run = p.run(&["run", &f]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        sorted(p.executed()),
        sorted(vec![
            "pooled[layer=6,method=sum]".into(),
            "pooled[layer=6,method=top5]".into(),
            "pooled[layer=10,method=sum]".into(),
            "pooled[layer=10,method=top5]".into(),
            "report".into(),
        ])
    );
    // and back: the old entries are still cached, only the report differs again... no: its key
    // returns to the first run's, which is cached too
    p.pipeline("branchy", BRANCHY);
    assert_eq!(p.run(&["run", &f]).code, 0);
    assert!(p.executed().is_empty(), "reverting an edit finds everything cached");
}

#[test]
fn reordering_matrix_lists_keys_and_stages_moves_no_id_or_key() {
    let p = Project::new();
    let a = p.pipeline(
        "a",
        "name: x\nstages:\n  s: {kind: mock.source, matrix: {layer: [6, 10, 17], seed: [1, 2]}}\n  m: {kind: mock.map, from: s, matrix: {method: [sum, top5]}}\n",
    );
    let b = p.pipeline(
        "b",
        "name: x\nstages:\n  m: {kind: mock.map, matrix: {method: [top5, sum]}, from: s}\n  s: {kind: mock.source, matrix: {seed: [2, 1], layer: [17, 6, 10]}}\n",
    );
    let (ka, kb) = (p.keys(&a), p.keys(&b));
    assert_eq!(ka.len(), 6 + 12);
    assert_eq!(ka, kb);
    assert!(ka.contains_key("m[layer=10,seed=1,method=top5]"), "{:?}", ka.keys().collect::<Vec<_>>());
}

#[test]
fn inputs_sharing_an_axis_are_joined_and_disjoint_axes_crossed() {
    let p = Project::new();
    let f = p.pipeline(
        "j",
        r#"
name: j
stages:
  feats: {kind: mock.source, matrix: {layer: [6, 10, 17]}}
  eoi: {kind: mock.source, matrix: {layer: [6, 10, 17]}, eoi: true}
  split: {kind: mock.source, matrix: {fold: [1, 2]}}
  joined: {kind: mock.map, from: feats, with: eoi}
  crossed: {kind: mock.map, from: feats, with: split}
"#,
    );
    let plan = p.run(&["plan", &f, "--json"]).json();
    let rows = plan.as_array().unwrap();
    let of = |stage: &str| rows.iter().filter(|r| r["stage"] == stage).collect::<Vec<_>>();
    assert_eq!(of("joined").len(), 3, "same axis: joined, not crossed");
    assert_eq!(of("crossed").len(), 6, "disjoint axes: crossed");
    for r in of("joined") {
        let layer = r["coords"]["layer"].as_i64().unwrap();
        let inputs: Vec<&str> = r["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["instances"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()))
            .collect();
        assert_eq!(
            inputs,
            vec![format!("feats[layer={layer}]"), format!("eoi[layer={layer}]")],
            "layer-{layer} features meet layer-{layer} eoi"
        );
    }
}

#[test]
fn selectors_and_gathering_over_an_axis_fuse_layers_of_the_same_variant() {
    let p = Project::new();
    let f = p.pipeline(
        "fuse",
        r#"
name: fuse
stages:
  pooled: {kind: mock.source, matrix: {layer: [0, 6, 10, 17], pool: [sum, top5]}}
  fused: {kind: mock.gather, from: {from: "pooled[layer in (6, 10)]", over: [layer]}}
  report: {kind: mock.gather, from: [pooled, fused]}
"#,
    );
    let plan = p.run(&["plan", &f, "--json"]).json();
    let rows = plan.as_array().unwrap();
    let fused: Vec<&serde_json::Value> = rows.iter().filter(|r| r["stage"] == "fused").collect();
    assert_eq!(fused.len(), 2);
    for r in &fused {
        let pool = r["coords"]["pool"].as_str().unwrap();
        assert_eq!(r["coords"]["layer"], "6+10");
        let got: Vec<&str> = r["inputs"][0]["instances"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        assert_eq!(got, vec![format!("pooled[layer=6,pool={pool}]"), format!("pooled[layer=10,pool={pool}]")]);
    }
    let report = rows.iter().find(|r| r["stage"] == "report").unwrap();
    assert_eq!(report["inputs"][0]["instances"].as_array().unwrap().len(), 8 + 2);
    assert_eq!(p.run(&["run", &f]).code, 0);
    let show = p.run(&["show", &f, "report", "--limit", "20"]);
    assert!(show.stdout.contains("fused[layer=6+10,pool=sum]"), "{}", show.stdout);
}

#[test]
fn include_and_exclude_shape_the_matrix() {
    let p = Project::new();
    let f = p.pipeline(
        "ie",
        r#"
name: ie
stages:
  ext:
    kind: mock.source
    matrix: {layer: [0, 6, 12], sae: [res]}
    include: [{layer: 12, sae: it}]
    exclude: [{layer: 0}]
"#,
    );
    let keys = p.keys(&f);
    assert_eq!(
        sorted(keys.keys().cloned().collect()),
        sorted(vec!["ext[layer=6,sae=res]".into(), "ext[layer=12,sae=res]".into(), "ext[layer=12,sae=it]".into()])
    );
}

#[test]
fn why_names_the_changed_field() {
    let p = Project::new();
    let f = p.pipeline("branchy", BRANCHY);
    assert_eq!(p.run(&["run", &f]).code, 0);
    p.pipeline("branchy", &BRANCHY.replace("weight: 3", "weight: 4"));
    let why = p.run(&["why", &f, "other"]);
    assert_eq!(why.code, 0, "{}", why.stderr);
    assert!(why.stdout.contains("params.weight: 3 → 4"), "{}", why.stdout);
    assert!(why.stdout.starts_with("other: would run: params changed: weight (3 → 4)\n"), "{}", why.stdout);
    let down = p.run(&["why", &f, "report"]);
    assert!(down.stdout.contains("input changed: from"), "{}", down.stdout);
    let typo = p.run(&["why", &f, "pooled[layer=6,method=summ]"]);
    assert_eq!(typo.code, 1);
    assert!(typo.stderr.contains("did you mean method=sum?"), "{}", typo.stderr);
}

#[test]
fn a_failure_blocks_only_what_depends_on_it_with_keep_going() {
    let p = Project::new();
    let f = p.pipeline(
        "kg",
        "name: kg\nstages:\n  a: {kind: mock.source}\n  bad: {kind: mock.map, from: a, fail: true}\n  after: {kind: mock.map, from: bad}\n  good: {kind: mock.map, from: a}\n",
    );
    let r = p.run(&["run", &f, "--keep-going"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("failed  bad"), "{}", r.stdout);
    assert!(r.stdout.contains("blocked after"), "{}", r.stdout);
    assert!(r.stdout.contains("ran     good"), "{}", r.stdout);
    let p2 = Project::new();
    let f2 = p2.pipeline(
        "kg",
        "name: kg\nstages:\n  a: {kind: mock.source}\n  bad: {kind: mock.map, from: a, fail: true}\n  good: {kind: mock.map, from: a}\n",
    );
    let r2 = p2.run(&["run", &f2]);
    assert_eq!(r2.code, 1);
    assert!(!r2.stdout.contains("ran     good"), "without --keep-going the run stops: {}", r2.stdout);
    assert!(r2.stdout.contains("1 failed, 1 not run"), "{}", r2.stdout);
    assert!(r2.stderr.contains("--keep-going"), "{}", r2.stderr);
}

#[test]
fn only_and_force_select_instances() {
    let p = Project::new();
    let f = p.pipeline("branchy", BRANCHY);
    let r = p.run(&["run", &f, "--only", "pooled[layer=6*"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        sorted(p.executed()),
        sorted(vec!["src".into(), "ext[layer=6]".into(), "pooled[layer=6,method=sum]".into(), "pooled[layer=6,method=top5]".into()])
    );
    let r = p.run(&["run", &f, "--force", "other"]);
    assert_eq!(r.code, 0);
    let ran = p.executed();
    assert!(ran.contains(&"other".to_string()) && !ran.contains(&"src".to_string()), "{ran:?}");
    let bad = p.run(&["run", &f, "--only", "nothing*"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("--only 'nothing*': no instance of pipeline 'branchy' matches the glob"), "{}", bad.stderr);
    // selectors too, coordinates in any order; a miss names the axes, not every id
    std::fs::remove_file(p.log()).ok();
    let r = p.run(&["run", &f, "--force", "pooled[method=top5, layer=10]"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(p.executed(), vec!["pooled[layer=10,method=top5]".to_string()]);
    let bad = p.run(&["run", &f, "--only", "pooled[layer=7]"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("its axes: layer (6, 10), method (sum, top5)") && bad.stderr.len() < 400, "{}", bad.stderr);
}

#[test]
fn fused_instances_run_as_one_computation_and_adding_a_layer_computes_only_it() {
    let p = Project::new();
    let yaml = "name: fz\nstages:\n  src: {kind: mock.source}\n  ext: {kind: mock.fused, from: src, matrix: {layer: [6, 10]}}\n";
    let f = p.pipeline("fz", yaml);
    assert_eq!(p.run(&["run", &f]).code, 0);
    assert!(p.log_lines().contains(&"fused-run ext[layer=6] ext[layer=10]".to_string()), "{:?}", p.log_lines());
    p.executed();
    p.pipeline("fz", &yaml.replace("[6, 10]", "[6, 10, 12]"));
    let plan = p.run(&["plan", &f]);
    assert!(plan.stdout.contains("run     ext[layer=12]"), "{}", plan.stdout);
    assert_eq!(p.run(&["run", &f]).code, 0);
    assert_eq!(p.log_lines(), vec!["fused-run ext[layer=12]".to_string(), "ext[layer=12]".to_string()]);
}

#[test]
fn every_parquet_file_explains_itself() {
    let p = Project::new();
    let f = p.pipeline("branchy", BRANCHY);
    assert_eq!(p.run(&["run", &f]).code, 0);
    let plan = p.run(&["plan", &f, "--json"]).json();
    let row = plan.as_array().unwrap().iter().find(|r| r["instance"] == "pooled[layer=10,method=top5]").unwrap().clone();
    let key = row["key"].as_str().unwrap();
    let (_, rows, meta) = saeflow::engine::table::read_footer(&p.cache().join(key).join("part-00000.parquet")).unwrap();
    assert!(rows > 0);
    let get = |k: &str| meta.iter().find(|(mk, _)| mk == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("missing {k}: {meta:?}"));
    assert_eq!(get("saeflow.key"), key);
    assert_eq!(get("saeflow.stage"), "pooled");
    assert_eq!(get("saeflow.kind"), "mock.map");
    assert_eq!(get("saeflow.instance"), "pooled[layer=10,method=top5]");
    assert!(get("saeflow.params").contains("\"method\":\"top5\""));
    assert!(get("saeflow.inputs").contains("ext[layer=10]"));
    assert_eq!(get("saeflow.version"), env!("CARGO_PKG_VERSION"));
    let _ = get("saeflow.revisions");
}

#[test]
fn export_then_import_into_another_cache_finds_it_cached() {
    let a = Project::new();
    let f = a.pipeline("branchy", BRANCHY);
    assert_eq!(a.run(&["run", &f]).code, 0);
    let out = a.root().join("handoff");
    let r = a.run(&["export", &f, "other", "--to", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = Project::new();
    let fb = b.pipeline("branchy", BRANCHY);
    let r = b.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("imported other"), "{}", r.stdout);
    let plan = b.run(&["plan", &fb]);
    assert!(plan.stdout.contains("cached  other"), "{}", plan.stdout);
    // an altered table is refused
    let part = std::fs::read_dir(out.join("stage=other").join("output=table"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&part).unwrap();
    let at = bytes.windows(5).position(|w| w == b"mock.").expect("kind in footer");
    bytes[at] = b'n';
    std::fs::write(&part, bytes).unwrap();
    let c = Project::new();
    let r = c.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
}

#[test]
fn gc_removes_only_what_no_pipeline_reaches() {
    let p = Project::new();
    let f = p.pipeline("branchy", BRANCHY);
    assert_eq!(p.run(&["run", &f]).code, 0);
    let before = saeflow::engine::cache::Cache::at(&p.cache()).keys().unwrap().len();
    p.pipeline("branchy", &BRANCHY.replace("weight: 3", "weight: 5"));
    assert_eq!(p.run(&["run", &f]).code, 0);
    let dry = p.run(&["gc", "--dry-run"]);
    assert!(dry.stdout.contains("would remove 2 entries"), "{}", dry.stdout);
    let gc = p.run(&["gc"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_eq!(saeflow::engine::cache::Cache::at(&p.cache()).keys().unwrap().len(), before);
    assert_eq!(p.run(&["plan", &f]).code, 0, "everything the pipeline reaches survived");
}

#[test]
fn dag_and_kinds_and_status_print() {
    let p = Project::new();
    let f = p.pipeline("branchy", BRANCHY);
    let dag = p.run(&["dag", &f, "--format", "mermaid", "--instances"]);
    assert!(dag.stdout.starts_with("flowchart LR"));
    assert_eq!(dag.stdout.matches("-->").count(), 2 + 4 + 1 + 4 + 1);
    // by default one node per stage, with its instances' counts, coloured by status
    let dot = p.run(&["dag", &f, "--format", "dot"]);
    assert!(dot.stdout.contains("digraph \"branchy\""), "{}", dot.stdout);
    assert!(dot.stdout.contains("ext (mock.fused, 2×: 2 never run)") && dot.stdout.contains("fillcolor=\"#e8e8e8\""), "{}", dot.stdout);
    assert_eq!(p.run(&["run", &f]).code, 0);
    let dot = p.run(&["dag", &f, "--format", "dot"]);
    assert!(dot.stdout.contains("ext (mock.fused, 2×: 2 cached)") && !dot.stdout.contains("#e8e8e8"), "{}", dot.stdout);
    let kinds = p.run(&["kinds"]);
    assert!(kinds.stdout.contains("mock.fused") && kinds.stdout.contains("fused over: layer"));
    p.pipeline("branchy", &BRANCHY.replace("weight: 3", "weight: 4"));
    let dag = p.run(&["dag", &f]);
    assert!(dag.stdout.contains("class") && dag.stdout.contains(":::stale"), "an edited stage is stale: {}", dag.stdout);
    std::fs::remove_dir_all(p.cache()).unwrap();
    let st = p.run(&["status", &f]);
    assert!(st.stdout.contains("missing src"), "{}", st.stdout);
}
