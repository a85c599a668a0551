//! Process-wide settings applied once at start-up, before any thread runs.

/// Keep freed tensor buffers in the heap instead of returning them to the kernel.
///
/// Every candle op allocates its output; glibc's defaults hand each freed block of ≥ 128 KiB back
/// with `munmap`/trim, so the next op page-faults and zeroes fresh pages for the same size again.
/// Raising the mmap threshold to 32 MiB and the trim threshold to 1 GiB keeps those buffers reused
/// (≈ 14 % of a CPU forward of the mid-size LLaVA-Gemma, docs/PERF.md). Memory stays bounded: the
/// heap holds at most what the largest batch needed. No-op off glibc, and when the user set
/// `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` themselves.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt only changes glibc's tunables; it is called before other threads start.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        }
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
        }
    }
}
