//! Tidy test, in the manner of rust-analyzer's: the library's modules form one-way layers. The
//! allowed order is the table in ARCHITECTURE.md (between `<!-- layers:begin -->` and
//! `<!-- layers:end -->`), the one place it is written; this test reads it, reads every file under
//! `src/`, and fails on any `crate::x` (or `super::`… climbing to the crate root) that names a module
//! of the same or a higher layer, and on a module the table does not place.

use std::collections::BTreeMap;
use std::path::Path;

/// Module name → layer rank, from ARCHITECTURE.md's table: rows `| rank | `a`, `b` | … |`.
fn layers(architecture: &str) -> BTreeMap<String, usize> {
    let (begin, end) = ("<!-- layers:begin -->", "<!-- layers:end -->");
    let start = architecture.find(begin).expect("ARCHITECTURE.md has the layers:begin marker");
    let stop = architecture.find(end).expect("ARCHITECTURE.md has the layers:end marker");
    let mut out = BTreeMap::new();
    for line in architecture[start..stop].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(rank) = cells.get(1).and_then(|c| c.parse::<usize>().ok()) else { continue };
        for m in cells[2].split(',') {
            let m = m.trim().trim_matches('`');
            assert!(out.insert(m.to_string(), rank).is_none(), "ARCHITECTURE.md places module '{m}' twice");
        }
    }
    assert!(!out.is_empty(), "no layer rows between the markers");
    out
}

/// The module path of a file: `src/engine/job.rs` → [engine, job]; `src/plan/mod.rs` → [plan].
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Code without `//` comments (doc links may name any module) and without string literals.
fn code_only(src: &str) -> String {
    let mut out = String::new();
    for line in src.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_str {
                if c == '"' && prev != '\\' {
                    in_str = false;
                }
                prev = if prev == '\\' && c == '\\' { ' ' } else { c };
                continue;
            }
            if c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\'' {
                in_str = true;
                prev = ' ';
                continue;
            }
            out.push(c);
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Top-level modules a file's code names: `crate::x`, each item of `crate::{x, y::z}`, and `super`
/// chains that climb to the crate root (`super::super::x` from `src/a/b.rs`; one more `super` per
/// inline `mod m { … }` the line sits in).
fn referenced(rel: &str, src: &str) -> Vec<(String, usize)> {
    let code = code_only(src);
    let depth = module_path(rel).len();
    let mut found = Vec::new();
    let mut push = |name: String, line: usize| {
        if !name.is_empty() {
            found.push((name, line));
        }
    };
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    // brace depth, and the depths at which inline modules opened
    let (mut braces, mut inline): (usize, Vec<usize>) = (0, Vec::new());
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::`, `other_crate::`
            }
            match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or_default().split(',').for_each(|item| push(ident(item.trim()), n + 1)),
                None => push(ident(rest), n + 1),
            }
        }
        let supers = "super::".repeat(depth + inline.len());
        let mut rest = line;
        while let Some(i) = rest.find(&supers) {
            rest = &rest[i + supers.len()..];
            if !rest.starts_with("super") {
                push(ident(rest), n + 1);
            }
        }
        let trimmed = line.trim_start();
        let opens_mod =
            ["mod ", "pub mod ", "pub(crate) mod ", "pub(super) mod "].iter().any(|p| trimmed.starts_with(p)) && line.contains('{');
        for c in line.chars() {
            match c {
                '{' => {
                    if opens_mod && inline.last() != Some(&braces) {
                        inline.push(braces);
                    }
                    braces += 1;
                }
                '}' => {
                    braces = braces.saturating_sub(1);
                    if inline.last() == Some(&braces) {
                        inline.pop();
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// Every import in `files` (path relative to `src/`, contents) that breaks the layering.
fn violations(table: &BTreeMap<String, usize>, files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, src) in files {
        let path = module_path(rel);
        let own = &path[0];
        if own == "lib" || own == "main" {
            continue; // the crate roots list the modules and start the program
        }
        let Some(&rank) = table.get(own) else {
            out.push(format!("src/{rel}: module '{own}' has no row in ARCHITECTURE.md's layer table; place it in a layer"));
            continue;
        };
        for (name, line) in referenced(rel, src) {
            if &name == own {
                continue;
            }
            match table.get(&name) {
                Some(&r) if r < rank => {}
                Some(&r) => out.push(format!(
                    "src/{rel}:{line}: '{own}' (layer {rank}) uses '{name}' (layer {r}); a module may only use modules of lower layers: \
                     move the shared item down, or pass it in from above"
                )),
                None => out.push(format!("src/{rel}:{line}: '{own}' uses 'crate::{name}', which the layer table does not place")),
            }
        }
    }
    out
}

fn read_tree(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(&p, base, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

fn project_table() -> BTreeMap<String, usize> {
    layers(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap())
}

#[test]
fn modules_only_use_lower_layers() {
    let table = project_table();
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut files = Vec::new();
    read_tree(src, src, &mut files);
    assert!(files.len() > 50, "read the source tree ({} files)", files.len());
    let found = violations(&table, &files);
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
    // every module of the crate is placed (and the table names no module that is gone)
    let mut present: Vec<&str> = files.iter().map(|(rel, _)| rel.split(['/', '.']).next().unwrap()).collect();
    present.retain(|m| *m != "lib" && *m != "main");
    present.dedup();
    for m in table.keys() {
        assert!(present.contains(&m.as_str()), "ARCHITECTURE.md's layer table names '{m}', which src/ does not have");
    }
}

#[test]
fn the_check_catches_the_upward_imports_it_exists_for() {
    let table = project_table();
    // the upward imports of the code before the layering (issue 14), and the shapes they take
    let before = [
        ("plan/mod.rs", "use crate::stages::Registry;"),
        ("plan/key.rs", "use crate::stages::signature::Signature;"),
        ("engine/executor.rs", "use crate::{plan::Plan, stages::Registry};"),
        ("engine/mod.rs", "fn f() { crate::stages::builtin(); }"),
        ("data/neuronpedia_api.rs", "use crate::engine::job::Progress;"),
        ("tables.rs", "pub fn f() -> Result<(), crate::engine::EngineError> { todo!() }"),
        ("spec/value.rs", "use super::super::plan::Plan;"),
        ("models/sae.rs", "use crate::stages::images;"),
    ];
    for (rel, line) in before {
        let found = violations(&table, &[(rel.to_string(), format!("//! x\n{line}\n"))]);
        assert_eq!(found.len(), 1, "{rel}: `{line}` must be reported once: {found:?}");
        assert!(found[0].starts_with(&format!("src/{rel}:2: ")), "{}", found[0]);
    }
    // what stays legal: downward imports, own-module paths, comments, strings, same-module `super`
    let fine = "//! see crate::cli\nuse crate::spec::Value;\nuse super::job::Job;\nconst S: &str = \"crate::cli\";\n// crate::report\n";
    assert_eq!(violations(&table, &[("engine/executor.rs".into(), fine.into())]), Vec::<String>::new());
    // `super` inside an inline module climbs one level less far
    let tests_mod = "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::Value;\n}\n";
    assert_eq!(violations(&table, &[("spec/value.rs".into(), tests_mod.into())]), Vec::<String>::new());
    let climbing = "mod tests {\n    use super::super::super::engine::EngineError;\n}\n";
    assert_eq!(violations(&table, &[("spec/value.rs".into(), climbing.into())]).len(), 1);
    // a module the table does not place is reported
    let found = violations(&table, &[("newthing.rs".into(), String::new())]);
    assert!(found[0].contains("has no row"), "{found:?}");
}
