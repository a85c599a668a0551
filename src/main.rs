//! `saeflow`: main only reports — the error chain on stderr and an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // `saeflow plan x.yaml | head` should stop quietly, like any Unix tool, not panic on EPIPE
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    saeflow::process::tune_allocator();
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("saeflow: {e:#}");
            ExitCode::from(1)
        }
    }
}
