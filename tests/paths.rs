//! Paths a pipeline names are trusted only as far as they can be: an input that never ends (a
//! device, a FIFO, a socket) is refused at plan time, a folder reached twice through symlinks (a
//! loop, a diamond) is read once, a report folder stays inside the project however its path is
//! spelled or linked (at plan time and when written), and `gc` works on pipelines whose inputs
//! are missing without deleting what they could still reach. Every command that could hang runs
//! under a deadline (and is killed past it), so a regression fails instead of hanging.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Project, Run};

/// Run saeflow in `p`, killing it (and failing the test) if it is still running after `secs`.
fn run_within(p: &Project, args: &[&str], secs: u64) -> Run {
    let (out, err) = (p.root().join(".stdout"), p.root().join(".stderr"));
    let mut child = p
        .command(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start saeflow");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("saeflow {args:?} still running after {secs} s (killed): a walk or a read that never ends");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// Call `f` on another thread; fail if it has not returned after `secs` (the thread is left behind).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).unwrap_or_else(|_| panic!("{what} still running after {secs} s: a walk that never ends"))
}

fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

#[test]
fn devices_fifos_and_sockets_are_refused_at_plan_time_naming_the_line() {
    let p = Project::new();
    let data = p.root().join("data");
    std::fs::create_dir_all(data.join("folder")).unwrap();
    mkfifo(&data.join("pipe"));
    mkfifo(&data.join("folder/pipe.parquet"));
    let _socket = std::os::unix::net::UnixListener::bind(data.join("sock")).unwrap();
    let cases = [
        ("zero", "table, path: /dev/zero, type: pooled", "'/dev/zero' is a character device"),
        ("fifo", "table, path: data/pipe, type: pooled", "'data/pipe' is a FIFO (named pipe)"),
        ("socket", "mock.source, data: data/sock", "'data/sock' is a socket"),
        ("inside", "table, path: data/folder, type: pooled", "'data/folder' holds 'pipe.parquet', a FIFO (named pipe)"),
    ];
    for (name, stage, said) in cases {
        let f = p.pipeline(name, &format!("name: {name}\nstages:\n  a: {{kind: {stage}}}\n"));
        let r = run_within(&p, &["plan", &f], 30);
        assert_eq!(r.code, 1, "{name}: {}{}", r.stdout, r.stderr);
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("saeflow: {f}:3:")), "{name}: the message names the parameter's line: {}", r.stderr);
        assert!(first.contains(said) && first.contains("not a regular file or a folder"), "{name}: {}", r.stderr);
        assert!(r.stderr.contains("= help: ") && r.stderr.contains("copy the data into a regular file"), "{name}: {}", r.stderr);
    }
}

#[test]
fn folders_reached_twice_through_symlinks_are_read_once() {
    let p = Project::new();
    let ds = p.root().join("data/ds");
    std::fs::create_dir_all(ds.join("d0")).unwrap();
    std::fs::write(ds.join("x.bin"), b"x").unwrap();
    // two links back to the folder itself: 2^64 paths before the walk's depth limit
    symlink(".", ds.join("again"));
    symlink(".", ds.join("self"));
    // a diamond: d0/{l,r} → d1, d1/{l,r} → d2
    std::fs::create_dir_all(ds.join("d1")).unwrap();
    std::fs::create_dir_all(ds.join("d2")).unwrap();
    std::fs::write(ds.join("d2/leaf.bin"), b"leaf").unwrap();
    for (dir, to) in [("d0", "../d1"), ("d1", "../d2")] {
        symlink(to, ds.join(dir).join("l"));
        symlink(to, ds.join(dir).join("r"));
    }
    symlink("ds", p.root().join("data/linked"));
    let f =
        p.pipeline("loops", "name: loops\nstages:\n  a: {kind: mock.source, data: data/ds}\n  b: {kind: mock.source, data: data/linked}\n");
    let r = run_within(&p, &["plan", &f, "--json"], 30);
    assert_eq!(r.code, 10, "{}{}", r.stdout, r.stderr);
    let keys: Vec<String> = r.json().as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys[0], keys[1], "the same folder has the same fingerprint whether reached through a symlink or not");
}

#[test]
fn an_image_folder_with_symlink_loops_lists_each_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(root.join(class).join("sub")).unwrap();
        std::fs::write(root.join(class).join("sub/1.png"), b"not decoded when listing").unwrap();
        symlink("..", root.join(class).join("sub/up"));
        symlink("..", root.join(class).join("sub/back"));
    }
    let listed = within(30, "ImageFolder::open", move || {
        use saeflow::data::ImageSource;
        let folder = saeflow::data::folder::ImageFolder::open(&root, None).unwrap();
        (0..folder.records().len() as u32).map(|i| folder.source(i)).collect::<Vec<_>>()
    });
    assert_eq!(listed, ["cat/sub/1.png", "dog/sub/1.png"]);
}

const REPORT: &str = "name: esc
stages:
  dataset: {kind: mock.dataset, classes: 2, per_class: 10}
  features: {kind: mock.features, from: dataset}
  split: {kind: split, from: dataset, folds: 2}
  probe: {kind: probe, features: features, split: split}
  report: {kind: report, metrics: probe.metrics, out: OUT}
";

fn report_pipeline(p: &Project, out: &str) -> String {
    p.pipeline("esc", &REPORT.replace("OUT", out))
}

#[test]
fn a_report_folder_through_a_symlink_out_of_the_project_is_refused() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), p.root().join("reports"));
    let f = report_pipeline(&p, "reports/x");
    let r = run_within(&p, &["plan", &f], 30);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("saeflow: {f}:7:")), "{}", r.stderr);
    assert!(first.contains("output folder 'reports/x' leaves the project through a symlink: 'reports' is"), "{}", r.stderr);
    assert!(r.stderr.contains("reports/<name>"), "{}", r.stderr);
    let run = run_within(&p, &["run", &f], 120);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside the project");
}

#[test]
fn a_report_folder_naming_the_project_its_cache_or_its_pipelines_is_refused() {
    let p = Project::new();
    std::fs::create_dir_all(p.root().join("cache")).unwrap();
    symlink("cache", p.root().join("to_cache"));
    symlink(".", p.root().join("here"));
    let cases = [
        ("\"\"", "is the project folder itself"),
        (".", "is the project folder itself"),
        ("reports/..", "is the project folder itself"),
        ("here", "is the project folder itself"),
        ("cache", "is the cache folder"),
        ("cache/x", "is inside the cache folder"),
        ("to_cache/x", "is inside the cache folder"),
        ("pipelines", "is the pipelines folder"),
        ("./pipelines/r", "is inside the pipelines folder"),
    ];
    for (out, why) in cases {
        let f = report_pipeline(&p, out);
        let r = run_within(&p, &["plan", &f], 30);
        assert_eq!(r.code, 1, "out: {out}: {}{}", r.stdout, r.stderr);
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("saeflow: {f}:7:")) && first.contains(why), "out: {out}: {}", r.stderr);
        assert!(r.stderr.contains("`out: reports/<name>`"), "out: {out}: {}", r.stderr);
    }
    // and a folder of its own is fine
    let r = run_within(&p, &["plan", &report_pipeline(&p, "reports/esc")], 30);
    assert_eq!(r.code, 10, "{}{}", r.stdout, r.stderr);
}

#[test]
fn a_report_folder_symlinked_away_after_planning_is_not_written_through() {
    let project = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    // what the plan resolved: the real path, checked inside the project
    let planned = std::fs::canonicalize(project.path()).unwrap().join("reports/x");
    // … then, before the report is written, `reports` becomes a link out of the project
    symlink(outside.path(), project.path().join("reports"));
    let files = [("index.html".to_string(), b"<html>".to_vec())].into_iter().collect();
    let err = saeflow::report::write_folder(&planned, &files, "k").expect_err("written through a symlink made after planning");
    let text = err.to_string();
    assert!(text.contains("changed since the plan checked it") && text.contains("is now a symlink to"), "{text}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside the project");
}

#[test]
fn gc_works_on_pipelines_whose_inputs_are_missing_and_keeps_what_they_could_reach() {
    let p = Project::new();
    std::fs::create_dir_all(p.root().join("data")).unwrap();
    std::fs::write(p.root().join("data/seed.bin"), b"seed").unwrap();
    let a = p.pipeline("a", "name: a\nstages:\n  src: {kind: mock.source, data: data/seed.bin}\n  m: {kind: mock.map, from: src}\n  own: {kind: mock.source, rows: 7}\n");
    let b = p.pipeline("b", "name: b\nstages:\n  other: {kind: mock.source, rows: 10}\n");
    // the same computation first made under another name, by a pipeline deleted since: a's `m` reaches it
    let c = p.pipeline("c", "name: c\nstages:\n  first: {kind: mock.source, data: data/seed.bin}\n  m2: {kind: mock.map, from: first}\n");
    assert_eq!(p.run(&["run", &c]).code, 0);
    std::fs::remove_file(p.root().join(&c)).unwrap();
    assert_eq!(p.run(&["run", &a]).code, 0);
    assert_eq!(p.run(&["run", &b]).code, 0);
    let cache = saeflow::engine::cache::Cache::at(&p.cache());
    let a_keys: Vec<String> = p.keys(&a).into_values().collect();
    // b's entry becomes unreachable; a's data goes away (a colleague's disk, a dataset not downloaded)
    p.pipeline("b", "name: b\nstages:\n  other: {kind: mock.source, rows: 20}\n");
    std::fs::remove_file(p.root().join("data/seed.bin")).unwrap();
    assert_eq!(cache.keys().unwrap().len(), 4);
    let gc = run_within(&p, &["gc"], 60);
    assert_eq!(gc.code, 0, "{}{}", gc.stdout, gc.stderr);
    assert!(
        gc.stdout.contains("pipelines/a.yaml has unresolved inputs: src.data 'data/seed.bin' (missing); entries of the 2 instance(s)"),
        "gc says which pipeline had unresolved inputs: {}",
        gc.stdout
    );
    assert!(gc.stdout.contains("removed 1 entries"), "{}", gc.stdout);
    let left = cache.keys().unwrap();
    for k in &a_keys {
        assert!(left.contains(k), "an entry pipeline a can still reach was removed: {k}\n{}", gc.stdout);
    }
    assert_eq!(left.len(), 3, "{}", gc.stdout);
}
