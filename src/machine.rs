//! The machine a computation ran on, as far as its numbers depend on it: the CPU architecture and
//! the widest vector instruction set the kernels pick at run time (candle's matmul and saeflow's
//! probe products choose AVX-512, AVX2 or a portable loop). Floating-point results of the same
//! key can differ in their last bits across these; manifests record them (keys do not).

/// `x86_64`, `aarch64`, …
pub fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// The widest vector instruction set this CPU offers of those the kernels use.
pub fn isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
        "sse2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_a_known_isa() {
        assert!(["avx512f", "avx2+fma", "sse2", "neon", "portable"].contains(&super::isa()));
        assert!(!super::arch().is_empty());
    }
}
