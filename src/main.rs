//! `saeflow`: main only reports — the error chain on stderr and an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("saeflow: {e:#}");
            ExitCode::from(1)
        }
    }
}
