//! The researcher's loop (issue 16): addressing instances by selector, `ls`, `--set`, quiet
//! output on the right streams, `why` that leads with the change, tables readers take whole.

mod common;

use std::fs;

use common::Project;

const GRID: &str = r#"
name: grid
stages:
  src:
    kind: mock.source
    rows: 40
    parts: 2
  probe:
    kind: mock.map
    from: src
    matrix: {layer: [1, 3, 10], method: [sum, top5]}
"#;

fn ran(p: &Project, f: &str) {
    let r = p.run(&["run", f]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn show_why_status_and_export_take_selectors_in_any_order() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    ran(&p, &f);
    // coordinates in another order than the id's, with spaces: the one instance
    let r = p.run(&["show", &f, "probe[method=top5, layer=3]"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("probe[layer=3,method=top5]"), "{}", r.stdout);
    let r = p.run(&["why", &f, "probe[method=sum,layer=10]"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("probe[layer=10,method=sum]: cached"), "{}", r.stdout);
    // several matches: listed compactly, with how to name one
    let r = p.run(&["show", &f, "probe[layer=3]"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("'probe[layer=3]' matches 2 instances"), "{}", r.stderr);
    assert!(r.stderr.contains("\n  probe[layer=3,method=sum]\n  probe[layer=3,method=top5]\n"), "{}", r.stderr);
    // no match: says which stage and its axes, in a short message (not every id on one line)
    let r = p.run(&["show", &f, "probe[layer=7]"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no instance of stage 'probe' matches") && r.stderr.contains("layer (1, 3, 10), method (sum, top5)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.len() < 300, "{}", r.stderr);
    let r = p.run(&["show", &f, "prob[layer=3]"]);
    assert!(r.stderr.contains("did you mean 'probe'"), "a stage, not an unrelated instance: {}", r.stderr);
    // status filters by selector
    let r = p.run(&["status", &f, "probe[method=top5]"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().filter(|l| l.trim_start().starts_with("cached")).count(), 3, "{}", r.stdout);
    // export takes every match
    let out = p.root().join("out");
    let r = p.run(&["export", &f, "probe[layer in (1, 3)]", "--to", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("exported 4 table(s) of 4 instance(s)"), "{}", r.stdout);
}

#[test]
fn export_writes_a_hive_layout_with_the_manifests_beside_the_data() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    ran(&p, &f);
    let out = p.root().join("out");
    let r = p.run(&["export", &f, "probe*", "--to", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let table = out.join("stage=probe/output=table");
    let mut parts = Vec::new();
    for layer in ["1", "3", "10"] {
        for method in ["sum", "top5"] {
            let dir = table.join(format!("layer={layer}")).join(format!("method={method}"));
            parts.extend(fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten().map(|e| e.path()));
        }
    }
    // only Parquet under the data folders: a reader can take `stage=probe/output=table` whole
    assert!(parts.iter().all(|p| p.extension().is_some_and(|e| e == "parquet")), "{parts:?}");
    assert_eq!(parts.len(), 12, "2 parts for each of 6 instances");
    assert_eq!(fs::read_dir(out.join("_saeflow")).unwrap().count(), 6, "one manifest per table, beside the data");
    // and it imports back, all of it
    let b = Project::new();
    let fb = b.pipeline("grid", GRID);
    let r = b.run(&["import", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.matches("imported probe[").count(), 6, "{}", r.stdout);
    let plan = b.run(&["plan", &fb]);
    assert!(plan.stdout.contains("probe  6 cached"), "{}", plan.stdout);
}

#[test]
fn ls_points_readers_at_every_table_and_its_parts() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    let r = p.run(&["ls", &f, "probe[layer=1]", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert!(rows.as_array().unwrap().iter().all(|t| t["status"] == "missing" && t["parts"].as_array().unwrap().is_empty()));
    ran(&p, &f);
    let r = p.run(&["ls", &f, "--json"]);
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 7, "src and 6 probes, one output each");
    for t in rows.as_array().unwrap() {
        assert_eq!(t["status"], "cached", "{t}");
        assert!(t["coords"].is_object(), "coordinates as an object: {t}");
        let parts = t["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 2);
        let rows_in_parts: usize = parts
            .iter()
            .map(|p| {
                let path = std::path::Path::new(p.as_str().unwrap());
                assert!(path.is_absolute(), "{}", path.display());
                common::read_parquet(path).iter().map(|b| b.num_rows()).sum::<usize>()
            })
            .sum();
        assert_eq!(rows_in_parts as u64, t["rows"].as_u64().unwrap());
    }
    let r = p.run(&["ls", &f, "probe[layer=10,method=sum]"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(r.stdout.contains("cached") && r.stdout.contains("part-*.parquet (2 parts)"), "{}", r.stdout);
}

#[test]
fn set_overrides_a_parameter_or_an_axis_and_the_run_remembers_it() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    ran(&p, &f);
    let before = p.keys(&f);
    // a parameter: src's rows, and with it every probe
    let r = p.run(&["plan", &f, "--set", "src.rows=50"]);
    assert_eq!(r.code, 10, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("params changed: rows (40 → 50)"), "{}", r.stdout);
    // an axis
    let r = p.run(&["plan", &f, "--json", "--set", "probe.matrix.method=[sum, top10]"]);
    let ids: Vec<String> = r.json().as_array().unwrap().iter().map(|i| i["instance"].as_str().unwrap().to_string()).collect();
    assert!(ids.contains(&"probe[layer=1,method=top10]".to_string()), "{ids:?}");
    assert!(!ids.contains(&"probe[layer=1,method=top5]".to_string()), "{ids:?}");
    // a run with it is recorded, and `why` says so
    let r = p.run(&["run", &f, "--set", "src.rows=50"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = p.run(&["why", &f, "src"]);
    assert!(r.stdout.contains("last run with --set src.rows=50; now no --set"), "{}", r.stdout);
    // the file's rows=40 entry is still cached from the first run; the last run used 50
    assert!(r.stdout.starts_with("src: cached\n  changed since its last run: params changed: rows (50 → 40)"), "{}", r.stdout);
    // the file was not touched, and its keys are the ones from before
    assert_eq!(fs::read_to_string(p.root().join(&f)).unwrap(), GRID);
    assert_eq!(p.keys(&f), before);
    // mistakes name the fix
    let r = p.run(&["plan", &f, "--set", "prob.rows=3"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no stage 'prob'") && r.stderr.contains("did you mean 'probe'"), "{}", r.stderr);
    let r = p.run(&["plan", &f, "--set", "src.rows"]);
    assert!(r.stderr.contains("--set STAGE.PARAM=VALUE"), "{}", r.stderr);
    // a mistake the plan finds in an overridden value says it was planned with --set
    let r = p.run(&["plan", &f, "--set", "src.rows=many"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("note: planned with --set src.rows=many"), "{}", r.stderr);
}

#[test]
fn export_writes_nothing_unless_every_picked_table_is_cached() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    ran(&p, &f);
    let g = p.pipeline("grid", &GRID.replace("rows: 40", "rows: 41"));
    let out = p.root().join("out");
    let r = p.run(&["export", &g, "*", "--to", out.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("7 of the tables '*' picks are not cached") && r.stderr.contains("nothing was exported"), "{}", r.stderr);
    assert!(!out.exists(), "no half export");
}

#[test]
fn a_plan_with_nothing_to_do_is_one_line_and_why_after_no_change_too() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    let r = p.run(&["plan", &f]);
    assert_eq!(r.code, 10);
    // one line per stage when it shares a reason, not one per instance
    assert!(r.stdout.contains("  run     probe  6 to run: never run"), "{}", r.stdout);
    assert!(r.stdout.lines().count() <= 4, "{}", r.stdout);
    ran(&p, &f);
    let r = p.run(&["plan", &f]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.trim(), "plan grid: 7 instances, all cached; nothing to run");
    let r = p.run(&["plan", &f, "-v"]);
    assert_eq!(r.stdout.lines().filter(|l| l.trim_start().starts_with("cached")).count(), 7, "{}", r.stdout);
    let r = p.run(&["why", &f, "probe[layer=1,method=sum]"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(r.stdout.contains("nothing changed since its last run"), "{}", r.stdout);
    let r = p.run(&["why", &f, "probe[layer=1,method=sum]", "--full"]);
    assert!(r.stdout.contains("key preimage:"), "{}", r.stdout);
}

#[test]
fn results_go_to_stdout_and_notes_to_stderr() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    let r = p.run(&["run", &f]);
    assert_eq!(r.code, 0);
    // every instance that ran is on stdout (so `run > run.log` keeps them), nothing of it on stderr
    assert_eq!(r.stdout.lines().filter(|l| l.trim_start().starts_with("ran ")).count(), 7, "{}", r.stdout);
    assert!(!r.stderr.contains("ran "), "{}", r.stderr);
    // a second run: no line per cached instance, the summary says it
    let r = p.run(&["run", &f]);
    assert!(r.stdout.contains("done: 0 ran, 7 cached"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    let r = p.run(&["run", &f, "-v"]);
    assert_eq!(r.stdout.lines().filter(|l| l.trim_start().starts_with("cached")).count(), 7, "{}", r.stdout);
}

#[test]
fn every_part_carries_its_provenance_where_each_reader_looks() {
    let p = Project::new();
    let f = p.pipeline("grid", GRID);
    ran(&p, &f);
    let r = p.run(&["ls", &f, "probe[layer=3,method=top5]", "--json"]);
    let part = r.json()[0]["parts"][0].as_str().unwrap().to_string();
    let file = fs::File::open(&part).unwrap();
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    let meta = reader.metadata().file_metadata();
    let kv = meta.key_value_metadata().unwrap();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    // the footer's key-value list (duckdb's parquet_kv_metadata, polars' read_parquet_metadata)
    assert_eq!(get("saeflow.instance").as_deref(), Some("probe[layer=3,method=top5]"));
    assert_eq!(get("saeflow.pipeline").as_deref(), Some("grid"));
    // the Arrow schema stored in the footer, alone (pyarrow's read_schema(f).metadata)
    let arrow_only: Vec<parquet::file::metadata::KeyValue> = kv.iter().filter(|e| e.key == "ARROW:schema").cloned().collect();
    assert_eq!(arrow_only.len(), 1, "the footer embeds the Arrow schema");
    let schema = parquet::arrow::parquet_to_arrow_schema(meta.schema_descr(), Some(&arrow_only)).unwrap();
    for k in
        ["saeflow.key", "saeflow.stage", "saeflow.params", "saeflow.inputs", "saeflow.revisions", "saeflow.version", "saeflow.pipeline"]
    {
        assert_eq!(schema.metadata().get(k).map(String::as_str), get(k).as_deref(), "{k} in both places, the same");
    }
}
