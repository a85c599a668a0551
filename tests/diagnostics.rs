//! Every broken pipeline in tests/fixtures/bad_yaml/ gives a located message (file:line:column,
//! the stage, a suggestion), snapshot-tested against tests/fixtures/bad_yaml/*.txt.
//! Regenerate the snapshots with `SAEFLOW_BLESS=1 cargo test --test diagnostics`.

mod common;

use std::path::Path;

use common::Project;

#[test]
fn broken_pipelines_give_located_messages_matching_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad_yaml");
    let mut cases: Vec<_> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    cases.sort();
    assert!(cases.len() >= 20, "expected 20+ broken pipelines, found {}", cases.len());
    let bless = std::env::var_os("SAEFLOW_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let p = Project::new();
        // bytes as they are: a case may be a file that is not utf-8
        let file = format!("pipelines/{name}.yaml");
        std::fs::write(p.root().join(&file), std::fs::read(case).unwrap()).unwrap();
        let o = p.command(&["plan", &file]).env_remove("SAEFLOW_MAX_INSTANCES").output().unwrap();
        let r = common::Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        if r.code != 1 {
            failures.push(format!("{name}: expected exit 1, got {} (stdout: {})", r.code, r.stdout));
            continue;
        }
        let first = r.stderr.lines().next().unwrap_or_default();
        let located = first.strip_prefix(&format!("saeflow: {file}:")).and_then(|rest| {
            let mut it = rest.splitn(3, ':');
            Some((it.next()?.parse::<usize>().ok()?, it.next()?.parse::<usize>().ok()?))
        });
        if !matches!(located, Some((l, c)) if l > 0 && c > 0) {
            failures.push(format!("{name}: first line does not start with file:line:column: {first}"));
        }
        if !r.stderr.contains("= help:") {
            failures.push(format!("{name}: no suggestion in: {}", r.stderr));
        }
        let snap = case.with_extension("txt");
        if bless {
            std::fs::write(&snap, &r.stderr).unwrap();
        } else {
            let want = std::fs::read_to_string(&snap).unwrap_or_default();
            if want != r.stderr {
                failures.push(format!("{name}: message differs from {}\n--- want\n{want}\n--- got\n{}", snap.display(), r.stderr));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}
