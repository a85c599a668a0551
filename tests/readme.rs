//! The README's stage-kind reference is `saeflow kinds --markdown`, kept current by this test
//! (`SAEFLOW_BLESS=1 cargo test --test readme` rewrites it).

mod common;

#[test]
fn the_readme_kind_reference_matches_the_registry() {
    let out = std::process::Command::new(common::user_bin()).args(["kinds", "--markdown"]).output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- kinds:begin -->\n", "<!-- kinds:end -->");
    let start = readme.find(begin).expect("README has the kinds:begin marker") + begin.len();
    let stop = readme.find(end).expect("README has the kinds:end marker");
    if std::env::var_os("SAEFLOW_BLESS").is_some() {
        std::fs::write(path, format!("{}{generated}{}", &readme[..start], &readme[stop..])).unwrap();
        return;
    }
    assert_eq!(&readme[start..stop], generated, "README's kind reference is stale: run SAEFLOW_BLESS=1 cargo test --test readme");
    for kind in ["dataset", "split", "probe", "table"] {
        assert!(generated.contains(&format!("#### `{kind}`")), "{kind} is documented");
    }
}
