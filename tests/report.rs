//! The `report` stage and `saeflow report` on the demo pipeline (tiny LLaVA-Gemma fixture): the
//! notebook has one cell per instance of `plan --json`, every figure's CSV holds the probe
//! metrics (or clean statistics) it was drawn from — recomputed here from the cached Parquet,
//! means and standard deviations over the `seed` axis included — every figure's PNG decodes at
//! its SVG's size, reports are byte-identical across runs, and an edited parameter shows up as a
//! cell not yet run.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray, UInt64Array};
use common::column;
use common::{Project, Run};
use serde_json::Value;

/// A project holding `pipelines/demo.yaml` (as `yaml`) and the fixture models it names, at the
/// same relative path as in the repository.
fn demo_project(yaml: &str) -> (Project, String) {
    let p = Project::new();
    let f = p.pipeline("demo", yaml);
    for rel in ["tests/fixtures/llava/a", "tests/fixtures/resnet/models/a"] {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        let dest = p.root().join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&fixture, &dest).unwrap();
    }
    (p, f)
}

fn demo_yaml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.yaml")).unwrap()
}

fn ok(r: Run, what: &str) -> Run {
    assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
    r
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Every value of attribute `attr` in document order.
fn attributes(html: &str, attr: &str) -> Vec<String> {
    let pat = format!(" {attr}=\"");
    html.match_indices(&pat)
        .map(|(i, _)| {
            let rest = &html[i + pat.len()..];
            unescape(&rest[..rest.find('"').unwrap()])
        })
        .collect()
}

/// RFC 4180 CSV (quoted fields, doubled quotes) into header → values rows.
fn read_csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let (mut field, mut record, mut quoted) = (String::new(), Vec::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (c, _) => field.push(c),
        }
    }
    let header = records.remove(0);
    records.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect()
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap().map(Result::unwrap).collect()
}

/// A probe's metrics row, read from its cache entry: (macro_f1, n_train, n_test).
fn probe_metrics(p: &Project, key: &str) -> (f64, u64, u64) {
    let b = &read_parquet(&p.cache().join(key).join("part-00000.parquet"))[0];
    let f64_col = |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().value(0);
    let u64_col = |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<UInt64Array>().unwrap().value(0);
    (f64_col("macro_f1"), u64_col("n_train"), u64_col("n_test"))
}

fn output_key(inst: &Value, output: &str) -> String {
    inst["outputs"].as_array().unwrap().iter().find(|o| o["name"] == output).unwrap()["key"].as_str().unwrap().to_string()
}

#[test]
fn the_demo_report_and_notebook_are_complete_exact_and_deterministic() {
    let (p, f) = demo_project(&demo_yaml());
    ok(p.run(&["run", &f]), "run");
    let plan = p.run(&["plan", &f, "--json"]);
    assert_eq!(plan.code, 0, "everything cached after the run: {}", plan.stdout);
    let plan = plan.json();
    let plan = plan.as_array().unwrap();

    // the notebook: one cell per instance, in plan order, every one cached
    let r = ok(p.run(&["report", &f]), "report");
    let notebook_path = p.root().join("reports/demo/notebook.html");
    assert!(r.stdout.contains(&format!("{n} instances, {n} cached", n = plan.len())), "{}", r.stdout);
    let notebook = std::fs::read_to_string(&notebook_path).unwrap();
    let ids: Vec<String> = plan.iter().map(|i| i["instance"].as_str().unwrap().to_string()).collect();
    assert_eq!(attributes(&notebook, "data-instance"), ids);
    assert!(attributes(&notebook, "data-status").iter().all(|s| s == "cached"));
    for inst in plan {
        assert!(notebook.contains(inst["key"].as_str().unwrap()), "the cell of {} shows its key", inst["instance"]);
    }
    assert!(notebook.matches("<svg").count() >= 5, "the report instance's cell embeds its figures");
    // a table of contents at the top links every embedded figure
    let first_cell = notebook.find("<section class=\"cell").unwrap();
    let links: Vec<&str> = notebook[..first_cell].split("href=\"#fig-").skip(1).map(|r| r.split('"').next().unwrap()).collect();
    assert!(links.len() >= 5, "{links:?}");
    for l in &links {
        assert!(notebook.contains(&format!("<figure id=\"fig-{l}\">")), "the contents link {l} lands on a figure");
    }

    // the report folder
    let dir = p.root().join("reports/demo");
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for (i, marker) in ["id=\"health\"", "id=\"figures\"", "id=\"classes\"", "id=\"summary\""].iter().enumerate() {
        let at = index.find(marker).unwrap_or_else(|| panic!("no {marker}"));
        if i > 0 {
            assert!(at > index.find("id=\"health\"").unwrap(), "health comes first");
        }
    }
    // self-contained: no scripts, no fetched resources; the only URL is the SVG namespace
    assert!(!index.contains("<script") && !index.contains(" src=") && !index.contains("<link"));
    assert_eq!(index.matches("http").count(), index.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
    for label in ["red circle", "green square"] {
        assert!(index.contains(label), "class table of {label}");
    }

    // every figure's CSV holds exactly the probe metrics of every probe variant
    let probes: BTreeMap<String, (f64, u64, u64)> = plan
        .iter()
        .filter(|i| i["kind"] == "probe")
        .map(|i| (i["instance"].as_str().unwrap().to_string(), probe_metrics(&p, &output_key(i, "metrics"))))
        .collect();
    // the SAE variants (probe, fused_probe) have the pooling axes; the baselines' probes do not
    let sae_variants: Vec<&String> = probes.keys().filter(|id| id.starts_with("probe[") || id.starts_with("fused_probe[")).collect();
    assert_eq!(sae_variants.len(), 72, "(2 layers + fused) × 3 poolings × 2 modes × 2 splits × 2 seeds");
    let mut csvs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("f1_by_") && n.ends_with(".csv"))
        .collect();
    csvs.sort();
    assert_eq!(csvs, ["f1_by_pooling_train_folds-1.csv", "f1_by_pooling_train_folds-5.csv", "f1_by_train_fraction.csv"]);
    let results = probe_results(&p, plan);
    check_points(&dir, &csvs, &results);
    check_baselines(&dir, &results);
    check_repeats(&dir, &index, &results);
    check_feature_occurrence(&p, plan, &dir);
    check_pngs(&dir);
    for figure in ["f1_by_pooling", "f1_by_train_fraction"] {
        let mut drawn: BTreeMap<String, f64> = BTreeMap::new();
        for name in csvs.iter().filter(|n| n.starts_with(figure)) {
            assert!(dir.join(name.replace(".csv", ".svg")).is_file(), "{name} has its svg");
            for row in read_csv(&std::fs::read_to_string(dir.join(name)).unwrap()) {
                let id = row["instance"].clone();
                // the zero-shot baseline (no probe table) may be drawn too
                let Some(&(f1, n_train, n_test)) = probes.get(&id) else { continue };
                let fraction: f64 = row["train_fraction"].parse().unwrap();
                assert_eq!(fraction, n_train as f64 / (n_train + n_test) as f64, "{name}: {id}");
                assert!(drawn.insert(id.clone(), row["macro_f1"].parse().unwrap()).is_none(), "{id} drawn twice in {figure}");
                assert_eq!(drawn[&id], f1, "{name}: {id}'s macro F1 is the probe table's, to the last bit");
            }
        }
        for id in &sae_variants {
            assert!(drawn.contains_key(*id), "{figure} draws every SAE variant: {id} missing");
        }
    }

    // the summary output: one row per probe variant, with its coordinates as columns
    let report = plan.iter().find(|i| i["kind"] == "report").unwrap();
    let summary = &read_parquet(&p.cache().join(output_key(report, "summary")).join("part-00000.parquet"))[0];
    // every gathered metrics table: the probes and the zero-shot baseline
    let gathered = plan.iter().filter(|i| i["kind"] == "probe" || i["kind"] == "zeroshot_score").count();
    assert_eq!(summary.num_rows(), gathered);
    let instances = summary.column_by_name("instance").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    let f1s = summary.column_by_name("macro_f1").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
    for i in 0..summary.num_rows() {
        if let Some(probe) = probes.get(instances.value(i)) {
            assert_eq!(f1s.value(i), probe.0);
        }
    }
    for axis in ["layer", "method", "mode", "train_folds"] {
        assert!(summary.column_by_name(axis).is_some(), "summary has a {axis} column");
    }
    let summary_csv = read_csv(&std::fs::read_to_string(dir.join("summary.csv")).unwrap());
    assert_eq!(summary_csv.len(), gathered);

    // deterministic: the notebook again, and the whole report folder from a fresh project
    ok(p.run(&["report", &f]), "report again");
    assert_eq!(std::fs::read_to_string(&notebook_path).unwrap(), notebook, "the notebook is byte-identical");
    let (q, g) = demo_project(&demo_yaml());
    ok(q.run(&["run", &g]), "run in a second project");
    let report_files = |p: &Project| {
        let mut files = common::files(&p.root().join("reports/demo"));
        files.remove("notebook.html");
        files
    };
    let first = report_files(&p);
    assert!(first.contains_key("index.html") && first.contains_key("health.csv") && first.len() >= 10, "{:?}", first.keys());
    assert_eq!(report_files(&q), first, "a second run writes the same report bytes");

    // an edited parameter: the notebook shows what would run, and no stale figures
    let edited = demo_yaml().replace("    top_k: 5\n", "    top_k: 4\n");
    assert_ne!(edited, demo_yaml());
    p.pipeline("demo", &edited);
    let plan = p.run(&["plan", &f, "--json"]).json();
    let to_run: Vec<String> =
        plan.as_array().unwrap().iter().filter(|i| i["status"] == "run").map(|i| i["instance"].as_str().unwrap().to_string()).collect();
    assert_eq!(to_run, ["classes[layer=1]", "classes[layer=3]", "report"]);
    let r = ok(p.run(&["report", &f]), "report after an edit");
    assert!(r.stdout.contains(&format!("{} cached, 3 not yet run", plan.as_array().unwrap().len() - 3)), "{}", r.stdout);
    let notebook = std::fs::read_to_string(&notebook_path).unwrap();
    let statuses: Vec<(String, String)> =
        attributes(&notebook, "data-instance").into_iter().zip(attributes(&notebook, "data-status")).collect();
    let not_run: Vec<&str> = statuses.iter().filter(|(_, s)| s == "run").map(|(i, _)| i.as_str()).collect();
    assert_eq!(not_run, to_run);
    assert!(notebook.contains("params changed: top_k (5 → 4)"), "the cell says why it would run");
    assert!(!notebook.contains("<svg"), "a report that has not run embeds no figures");
}

/// A gathered metrics table, read back from the cache: instance, stage, coordinates, scores.
struct Result_ {
    instance: String,
    stage: String,
    coords: serde_json::Map<String, Value>,
    f1: f64,
}

impl Result_ {
    /// The variant over its repeats: the stage and every coordinate but `seed`.
    fn variant(&self) -> String {
        let rest: Vec<String> = self.coords.iter().filter(|(k, _)| *k != "seed").map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}[{}]", self.stage, rest.join(","))
    }

    fn split(&self) -> String {
        format!("train_folds={}", self.coords["train_folds"])
    }
}

/// Every probe and zero-shot result of the plan, read from its cached metrics table.
fn probe_results(p: &Project, plan: &[Value]) -> Vec<Result_> {
    plan.iter()
        .filter(|i| i["kind"] == "probe" || i["kind"] == "zeroshot_score")
        .map(|i| Result_ {
            instance: i["instance"].as_str().unwrap().to_string(),
            stage: i["stage"].as_str().unwrap().to_string(),
            coords: i["coords"].as_object().unwrap().clone(),
            f1: probe_metrics(p, &output_key(i, "metrics")).0,
        })
        .collect()
}

/// Mean and sample standard deviation (n − 1), by hand.
fn mean_sd(xs: &[f64]) -> (f64, Option<f64>) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let sd = (xs.len() > 1).then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt());
    (mean, sd)
}

/// Variant → its results' macro F1s, in plan order.
fn by_variant(results: &[Result_]) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in results {
        out.entry(r.variant()).or_default().push(r.f1);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A CSV row's point columns: the variant's mean, sd (empty for one result) and n, by hand.
fn check_point(what: &str, row: &BTreeMap<String, String>, f1s: &[f64]) {
    let (mean, sd) = mean_sd(f1s);
    assert!(close(row["mean_macro_f1"].parse().unwrap(), mean), "{what}: mean of {f1s:?}");
    match sd {
        Some(sd) => assert!(close(row["sd_macro_f1"].parse().unwrap(), sd), "{what}: sd of {f1s:?}"),
        None => assert_eq!(row["sd_macro_f1"], "", "{what}"),
    }
    assert_eq!(row["n"], f1s.len().to_string(), "{what}");
}

/// The line figures: every row's point is its variant's mean ± sd over the seeds.
fn check_points(dir: &Path, csvs: &[String], results: &[Result_]) {
    let variants = by_variant(results);
    let of: BTreeMap<&str, &Result_> = results.iter().map(|r| (r.instance.as_str(), r)).collect();
    for name in csvs {
        for row in read_csv(&std::fs::read_to_string(dir.join(name)).unwrap()) {
            let r = of[row["instance"].as_str()];
            check_point(&format!("{name}: {}", r.instance), &row, &variants[&r.variant()]);
        }
    }
}

/// `baselines.csv`: per split, the best SAE variant of each layer (by mean macro F1 over the
/// seeds, the first in plan order at a tie) and every baseline result, each with its scores.
fn check_baselines(dir: &Path, results: &[Result_]) {
    let rows = read_csv(&std::fs::read_to_string(dir.join("baselines.csv")).unwrap());
    let variants = by_variant(results);
    let sae = |r: &Result_| r.coords.contains_key("method");
    for split in ["train_folds=1", "train_folds=5"] {
        let here: Vec<&Result_> = results.iter().filter(|r| r.split() == split).collect();
        let drawn: Vec<&BTreeMap<String, String>> = rows.iter().filter(|r| r["panel"].starts_with(split)).collect();
        // the best SAE variant of each layer, by hand
        let mut best: BTreeMap<String, (String, f64)> = BTreeMap::new();
        for r in here.iter().filter(|r| sae(r)) {
            let mean = mean_sd(&variants[&r.variant()]).0;
            let layer = r.coords["layer"].to_string();
            if best.get(&layer).is_none_or(|(_, m)| mean > *m) {
                best.insert(layer, (r.variant(), mean));
            }
        }
        let mut want: Vec<String> =
            here.iter().filter(|r| !sae(r) || best.values().any(|(v, _)| *v == r.variant())).map(|r| r.instance.clone()).collect();
        want.sort();
        let mut got: Vec<String> = drawn.iter().map(|r| r["instance"].clone()).collect();
        got.sort();
        assert_eq!(got, want, "{split}: the best SAE variant per layer and every baseline");
        assert_eq!(best.len(), 3, "layers 1, 3 and the fused 1+3");
        for row in drawn {
            let r = results.iter().find(|r| r.instance == row["instance"]).unwrap();
            assert_eq!(row["macro_f1"].parse::<f64>().unwrap(), r.f1, "{}: the metrics table's macro F1", r.instance);
            assert_eq!(row["role"], if sae(r) { "best SAE" } else { "baseline" });
            check_point(&format!("baselines: {}", r.instance), row, &variants[&r.variant()]);
        }
    }
}

/// `summary_mean_sd.csv` and the page: one row per variant, mean ± sd over its seeds by hand.
fn check_repeats(dir: &Path, index: &str, results: &[Result_]) {
    let rows = read_csv(&std::fs::read_to_string(dir.join("summary_mean_sd.csv")).unwrap());
    let variants = by_variant(results);
    assert_eq!(rows.len(), variants.len());
    for row in &rows {
        let instances: Vec<&str> = row["instances"].split(';').collect();
        let first = results.iter().find(|r| r.instance == instances[0]).unwrap();
        let f1s = &variants[&first.variant()];
        let mine: Vec<&str> = results.iter().filter(|r| r.variant() == first.variant()).map(|r| r.instance.as_str()).collect();
        assert_eq!(instances, mine, "the seeds of {}", first.variant());
        assert_eq!(f1s.len(), 2, "two seeds each");
        let (mean, sd) = mean_sd(f1s);
        assert!(close(row["macro_f1_mean"].parse().unwrap(), mean) && close(row["macro_f1_sd"].parse().unwrap(), sd.unwrap()));
        let shown = format!("{mean:.3} ± {:.3} (n=2)", sd.unwrap());
        assert!(index.contains(&shown), "the page shows {shown} for {}", first.variant());
    }
}

/// `feature_occurrence.csv`: one row per `clean` variant, its `stats` table's numbers.
fn check_feature_occurrence(p: &Project, plan: &[Value], dir: &Path) {
    let rows = read_csv(&std::fs::read_to_string(dir.join("feature_occurrence.csv")).unwrap());
    let cleans: Vec<&Value> = plan.iter().filter(|i| i["kind"] == "clean").collect();
    assert_eq!(rows.len(), cleans.len());
    for (row, inst) in rows.iter().zip(&cleans) {
        assert_eq!(row["instance"], inst["instance"].as_str().unwrap());
        assert_eq!(row["layer"], inst["coords"]["layer"].to_string());
        let b = &common::read_entry(p, &output_key(inst, "stats"))[0];
        for name in ["images", "unique_before", "unique_after", "images_with_features"] {
            assert_eq!(row[name], column::<UInt64Array>(b, name).value(0).to_string(), "{}: {name}", row["instance"]);
        }
        for name in ["fraction_images_with_features", "max_images"] {
            assert_eq!(row[name].parse::<f64>().unwrap(), column::<Float64Array>(b, name).value(0), "{}: {name}", row["instance"]);
        }
        assert!(row["unique_after"].parse::<u64>().unwrap() < row["unique_before"].parse::<u64>().unwrap(), "cleaning dropped some");
    }
}

/// Every figure's PNG: beside its SVG, decodes, the SVG's size, and drawn (many colours).
fn check_pngs(dir: &Path) {
    let mut svgs = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".svg") else { continue };
        svgs += 1;
        let svg = std::fs::read_to_string(e.path()).unwrap();
        let size = |attr: &str| -> u32 { attributes(&svg[..svg.find('>').unwrap()], attr)[0].parse().unwrap() };
        let png = image::load_from_memory(&std::fs::read(dir.join(format!("{stem}.png"))).unwrap()).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (2 * size("width"), 2 * size("height")), "{stem}.png is twice the svg's size (print)");
        let colours: std::collections::BTreeSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
        assert!(colours.len() >= 20, "{stem}.png is drawn: {} colours", colours.len());
        for series in [[31u8, 119, 180], [255, 127, 14]] {
            assert!(colours.contains(&series), "{stem}.png draws the first series' colours");
        }
    }
    assert_eq!(svgs, 5, "features, pooling × 2 splits, training fraction, baselines");
}

/// `${pipeline}` (the report's default `out: reports/${pipeline}`) is the pipeline's name in any
/// string parameter; an axis of that name wins.
#[test]
fn the_pipeline_name_interpolates_unless_an_axis_takes_it() {
    let p = Project::new();
    let f = p.pipeline(
        "named",
        "name: study-7\nstages:\n  s: {kind: mock.source, tag: \"${pipeline}/x\"}\n  t: {kind: mock.source, tag: \"${pipeline}\", matrix: {pipeline: [a]}}\n",
    );
    let why = ok(p.run(&["why", &f, "s", "--full"]), "why s");
    assert!(why.stdout.contains("\"tag\": \"study-7/x\""), "{}", why.stdout);
    let why = ok(p.run(&["why", &f, "t[pipeline=a]", "--full"]), "why t");
    assert!(why.stdout.contains("\"tag\": \"a\""), "{}", why.stdout);
}

/// Kills the watcher when the test ends, passing or not.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `cond` every 50 ms for up to a minute (the watcher polls every 50 ms).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `saeflow watch`: a save re-plans and runs only what the edit made stale, then rewrites the
/// notebook; a broken save prints its error and leaves the notebook's bytes as they were.
#[test]
fn watch_reruns_what_an_edit_touches_and_keeps_the_report_through_a_broken_edit() {
    let p = Project::new();
    let yaml = "name: w\nstages:\n  a: {kind: mock.source, rows: 10}\n  b: {kind: mock.map, from: a, matrix: {k: [1, 2]}}\n";
    let f = p.pipeline("w", yaml);
    let stdout = p.root().join("watch.out");
    let mut cmd = p.command(&["watch", &f, "--interval-ms", "50"]);
    cmd.stdout(std::fs::File::create(&stdout).unwrap()).stderr(std::fs::File::create(p.root().join("watch.err")).unwrap());
    let _watcher = Watcher(cmd.spawn().unwrap());
    let passes = || std::fs::read_to_string(&stdout).unwrap_or_default().matches("watch: waiting for changes").count();
    let notebook = p.root().join("reports/w/notebook.html");

    wait_for("the first pass", || passes() == 1);
    assert_eq!(common::sorted(p.executed()), ["a", "b[k=1]", "b[k=2]"]);
    assert!(attributes(&std::fs::read_to_string(&notebook).unwrap(), "data-status").iter().all(|s| s == "cached"));

    // an edit of b: only b's instances run again
    p.pipeline("w", &yaml.replace("matrix: {k: [1, 2]}", "matrix: {k: [1, 2]}, extra: 1"));
    wait_for("the pass after the edit", || passes() == 2);
    assert_eq!(common::sorted(p.executed()), ["b[k=1]", "b[k=2]"]);
    let good = std::fs::read(&notebook).unwrap();

    // a broken edit: the error is printed, nothing runs, the notebook stays byte for byte
    p.pipeline("w", "name: w\nstages:\n  a: {kind: mock.sorce}\n");
    wait_for("the broken edit's message", || std::fs::read_to_string(&stdout).unwrap_or_default().contains("the last good report stays"));
    let err = std::fs::read_to_string(p.root().join("watch.err")).unwrap();
    assert!(err.contains("unknown stage kind 'mock.sorce'"), "{err}");
    assert_eq!(std::fs::read(&notebook).unwrap(), good);
    assert!(p.executed().is_empty());
}
