//! Planning stays cheap and bounded: a plan above the instance limit is refused before its
//! instances are made (with the count and the stage it comes from), `--max-instances` or
//! `SAEFLOW_MAX_INSTANCES` raises the limit, and large but legitimate specs still plan. No test
//! here measures time (docs/PERF.md records the timings).

mod common;

use common::{Project, Run};

fn values(n: usize) -> String {
    (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// `saeflow ARGS` with `SAEFLOW_MAX_INSTANCES` set to `env`, or unset.
fn run(p: &Project, args: &[&str], env: Option<&str>) -> Run {
    let mut c = p.command(args);
    match env {
        Some(v) => c.env("SAEFLOW_MAX_INSTANCES", v),
        None => c.env_remove("SAEFLOW_MAX_INSTANCES"),
    };
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// 30 `a` variants, and `b` reads each with 3 values of its own: 120 instances in all.
fn two_stages(p: &Project) -> String {
    p.pipeline(
        "two",
        &format!(
            "name: two\nstages:\n  a: {{kind: mock.source, rows: 1, matrix: {{n: [{}]}}}}\n  b: {{kind: mock.map, from: a, matrix: {{m: [x, y, z]}}}}\n",
            values(30)
        ),
    )
}

#[test]
fn a_ten_thousand_value_axis_plans() {
    let p = Project::new();
    let file =
        p.pipeline("wide", &format!("name: wide\nstages:\n  a: {{kind: mock.source, rows: 1, matrix: {{n: [{}]}}}}\n", values(10_000)));
    let r = run(&p, &["plan", &file], None);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.stdout.starts_with("plan wide: 10000 instances"), "{}", r.stdout.lines().next().unwrap_or_default());
}

#[test]
fn a_plan_above_the_limit_is_refused_with_its_count_and_where_it_comes_from() {
    let p = Project::new();
    let file = two_stages(&p);
    let r = run(&p, &["plan", &file, "--max-instances", "100"], None);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let first = r.stderr.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "saeflow: {file}:4:3: stage 'b': the plan would have more than 100 instances: this stage makes 90 \
             (30 input variants × matrix m: 3) (the stages before it have 30)"
        )
    );
    assert!(r.stderr.contains("= help: use fewer axis values or add `exclude` rows; if the plan is meant to be this large, raise the limit with `saeflow --max-instances N`"), "{}", r.stderr);
    // the environment sets the same limit; the flag wins over it
    let r = run(&p, &["plan", &file], Some("100"));
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("more than 100 instances"), "{}", r.stderr);
    let r = run(&p, &["plan", &file, "--max-instances", "120"], Some("100"));
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.stdout.starts_with("plan two: 120 instances"), "{}", r.stdout);
}

#[test]
fn every_command_that_plans_honours_the_limit() {
    let p = Project::new();
    let file = two_stages(&p);
    for cmd in [&["run", file.as_str()][..], &["status", &file], &["dag", &file], &["why", &file, "a[n=0]"]] {
        let r = run(&p, &[cmd, &["--max-instances", "100"]].concat(), None);
        assert_eq!(r.code, 1, "{cmd:?}: {}", r.stdout);
        assert!(r.stderr.contains("the plan would have more than 100 instances"), "{cmd:?}: {}", r.stderr);
    }
    assert!(p.executed().is_empty(), "a refused run computes nothing");
    let r = run(&p, &["run", &file, "--max-instances", "120"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn inputs_crossed_past_the_limit_are_refused_before_they_are_combined() {
    let p = Project::new();
    let file = p.pipeline(
        "cross",
        &format!(
            "name: cross\nstages:\n  a: {{kind: mock.source, rows: 1, matrix: {{n: [{v}]}}}}\n  s: {{kind: mock.source, rows: 2, matrix: {{k: [{v}]}}}}\n  c: {{kind: mock.map, from: a, with: s}}\n",
            v = values(30)
        ),
    );
    let r = run(&p, &["plan", &file, "--max-instances", "500"], None);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let first = r.stderr.lines().next().unwrap();
    assert!(first.starts_with(&format!("saeflow: {file}:5:3: stage 'c': the plan would have more than 500 instances: ")), "{first}");
    assert!(first.contains("input 'with' (30 variants) combined with its inputs before it (30 variants) makes more than 440"), "{first}");
    assert!(first.ends_with("(the stages before it have 60)"), "{first}");
    let r = run(&p, &["plan", &file, "--max-instances", "960"], None);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.stdout.starts_with("plan cross: 960 instances"), "{}", r.stdout);
}

#[test]
fn a_limit_of_zero_is_a_usage_error() {
    let p = Project::new();
    let file = two_stages(&p);
    let r = run(&p, &["plan", &file, "--max-instances", "0"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid value '0' for '--max-instances <N>'"), "{}", r.stderr);
}
