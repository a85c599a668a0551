//! The notebook-like run log: one line per instance that ran, failed or was blocked (cached ones
//! with `-v`), on stdout; on a terminal, a progress bar per running job with items/s and ETA
//! (plain lines otherwise), and notes, on stderr — so `saeflow run … > run.log` keeps the results.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::executor::{Observer, Outcome};
use crate::plan::Instance;
use crate::progress::Progress;

pub struct RunLog {
    multi: MultiProgress,
    /// stderr is a terminal: progress bars are drawn there.
    tty: bool,
    /// stdout is that terminal too: results are printed above the bars, not through them.
    shared: bool,
    width: usize,
    /// Print a line for each cached instance too.
    verbose: bool,
}

impl RunLog {
    pub fn new(width: usize, verbose: bool) -> RunLog {
        let tty = std::io::stderr().is_terminal();
        let target = if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let shared = tty && std::io::stdout().is_terminal();
        RunLog { multi: MultiProgress::with_draw_target(target), tty, shared, width, verbose }
    }

    /// A result (an instance ran, failed, …): stdout.
    fn line(&self, text: String) {
        if self.shared {
            let _ = self.multi.println(text);
        } else {
            println!("{text}");
        }
    }

    /// A note or progress: stderr.
    fn note_line(&self, text: String) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }
}

pub use crate::report::html::{fmt_rows, fmt_secs};

impl Observer for RunLog {
    fn started(&self, members: &[&Instance]) {
        if members.len() > 1 {
            let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
            self.line(format!("  {:<8}{} as one fused computation", "running", ids.join(", ")));
        }
    }

    fn finished(&self, inst: &Instance, outcome: &Outcome) {
        let w = self.width;
        let text = match outcome {
            Outcome::Cached { .. } if !self.verbose => return,
            Outcome::Cached { rows } => format!("  {:<8}{:<w$}  {:>8}  {:>12} rows", "cached", inst.id, "", fmt_rows(*rows)),
            Outcome::Ran { seconds, rows } => {
                format!("  {:<8}{:<w$}  {:>8}  {:>12} rows", "ran", inst.id, fmt_secs(*seconds), fmt_rows(*rows))
            }
            Outcome::Failed(e) => format!("  {:<8}{:<w$}  {e}", "failed", inst.id),
            Outcome::Blocked(by) => format!("  {:<8}{:<w$}  (input {by} failed)", "blocked", inst.id),
            Outcome::Skipped | Outcome::Stopped => return,
        };
        self.line(text.trim_end().to_string());
    }

    fn progress(&self, inst: &Instance) -> Box<dyn Progress> {
        if self.tty {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_prefix(inst.id.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            Box::new(Bar { bar })
        } else {
            Box::new(Plain { id: inst.id.clone(), started: Instant::now(), state: Mutex::new((0, 0, String::new(), Instant::now())) })
        }
    }

    fn note(&self, message: &str) {
        let text = if message.starts_with("warning:") { format!("  {message}") } else { format!("  note: {message}") };
        self.note_line(text);
    }
}

struct Bar {
    bar: ProgressBar,
}

impl Progress for Bar {
    fn add_total(&self, total: u64, unit: &str) {
        self.bar.set_length(self.bar.length().unwrap_or(0) + total);
        let style = ProgressStyle::with_template(&format!("  {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        self.bar.set_style(style);
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Without a terminal: a progress line at most every 10 seconds.
struct Plain {
    id: String,
    started: Instant,
    /// (done, total, unit, last line printed)
    state: Mutex<(u64, u64, String, Instant)>,
}

impl Progress for Plain {
    fn add_total(&self, total: u64, unit: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.1 += total;
            s.2 = unit.to_string();
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 += n;
            // no total known (a probe's fits): no "1/0 eta ?" line
            if s.1 > 0 && s.3.elapsed() >= Duration::from_secs(10) {
                let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                let rate = s.0 as f64 / secs;
                let eta = if rate > 0.0 && s.1 > s.0 { fmt_secs((s.1 - s.0) as f64 / rate) } else { "?".into() };
                eprintln!("  {:<8}{}  {}/{} {}  {:.1} {}/s  eta {eta}", "...", self.id, s.0, s.1, s.2, rate, s.2);
                s.3 = Instant::now();
            }
        }
    }
}
