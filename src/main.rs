//! `saeflow`: the command line over the built-in kinds. `cli::main` parses, runs, prints the error
//! chain and picks the exit code.

fn main() -> std::process::ExitCode {
    saeflow::cli::main(saeflow::stages::builtin())
}
