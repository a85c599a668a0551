//! Progress reporting: a running computation says how much work it has and how far it is; the
//! CLI draws bars, tests ignore it. A leaf: any layer may report progress through it.

/// Receives progress from a running stage (the CLI draws bars; tests ignore it).
pub trait Progress: Send + Sync {
    /// Add units of work to this job's total (images, rows, parts) and say what they are called.
    /// Each member of a fused job adds its own share.
    fn add_total(&self, _total: u64, _unit: &str) {}
    fn advance(&self, _n: u64) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}
