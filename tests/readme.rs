//! The user guide's stage-kind reference (docs/kinds.md, between the `kinds:begin` and `kinds:end`
//! markers) is `saeflow kinds --markdown`, kept current by this test
//! (`SAEFLOW_BLESS=1 cargo test --test readme` rewrites it).

mod common;

#[test]
fn the_kind_reference_in_docs_matches_the_registry() {
    let out = std::process::Command::new(common::user_bin()).args(["kinds", "--markdown"]).output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/kinds.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- kinds:begin -->\n", "<!-- kinds:end -->");
    let start = doc.find(begin).expect("docs/kinds.md has the kinds:begin marker") + begin.len();
    let stop = doc.find(end).expect("docs/kinds.md has the kinds:end marker");
    if std::env::var_os("SAEFLOW_BLESS").is_some() {
        std::fs::write(path, format!("{}{generated}{}", &doc[..start], &doc[stop..])).unwrap();
        return;
    }
    assert_eq!(&doc[start..stop], generated, "docs/kinds.md's kind reference is stale: run SAEFLOW_BLESS=1 cargo test --test readme");
    assert!(!generated.contains("mock."), "the saeflow binary registers no test kind (they live in saeflow-testkit)");
    for kind in ["dataset", "split", "probe", "table"] {
        assert!(generated.contains(&format!("#### `{kind}`")), "{kind} is documented");
    }
}
