//! `saeflow-testkit`: the saeflow command line with the built-in kinds plus the `mock.*` stand-in
//! kinds, which exist only here. The integration tests drive this binary (`tests/common::bin`);
//! users get `saeflow`, whose `kinds` lists no mock kind.

mod mock;

fn main() -> std::process::ExitCode {
    let mut registry = saeflow::stages::builtin();
    for kind in mock::kinds() {
        registry.register(kind);
    }
    saeflow::cli::main(registry)
}
