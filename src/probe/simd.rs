//! Run-time choice of CPU features for the probe's hot loops: one token,
//! [`Isa`], and one macro, [`multiversion!`], used alike by the L-BFGS vector
//! passes (`logreg::vector`) and the sparse products (`matrix::kernels`).
//!
//! A function written with [`multiversion!`] is compiled three times (with
//! AVX-512F, with AVX2, and portable) and runs the copy its [`Isa`] argument
//! names. The copies differ only in the instructions the compiler may use:
//! every body keeps its arithmetic explicit (one `f64` multiply and one add
//! per term, in a fixed order, never fused), so all copies give the same bits.

/// The instruction sets a kernel can be compiled for, narrowest first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Level {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Every [`Level`], narrowest first.
const LEVELS: &[Level] = &[
    Level::Portable,
    #[cfg(target_arch = "x86_64")]
    Level::Avx2,
    #[cfg(target_arch = "x86_64")]
    Level::Avx512,
];

/// A [`Level`] this CPU runs. Apart from [`Isa::PORTABLE`] an `Isa` is only
/// made by detection ([`Isa::detect`], [`Isa::available`]) or inside a
/// function compiled for its level, so holding one proves the CPU has the
/// features it names: kernels may call `#[target_feature]` code on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Isa(Level);

impl Isa {
    /// The portable level, which every CPU runs.
    pub(crate) const PORTABLE: Isa = Isa(Level::Portable);

    /// Every level this CPU runs, narrowest (portable) first.
    pub(crate) fn available() -> impl Iterator<Item = Isa> {
        LEVELS.iter().copied().filter(|&level| runs(level)).map(Isa)
    }

    /// The widest level this CPU runs: AVX-512F, else AVX2, else portable.
    pub(crate) fn detect() -> Isa {
        Isa::available().last().unwrap_or(Isa::PORTABLE)
    }

    /// The level this token names.
    pub(crate) const fn level(self) -> Level {
        self.0
    }

    /// A token for `level` without detection; for [`multiversion!`] only.
    ///
    /// # Safety
    /// The CPU must run `level` (e.g. the caller is compiled for it and is
    /// itself only called on such CPUs).
    #[doc(hidden)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) const unsafe fn unchecked(level: Level) -> Isa {
        Isa(level)
    }
}

/// Whether this CPU runs `level`.
fn runs(level: Level) -> bool {
    match level {
        Level::Portable => true,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
    }
}

/// Define `fn $name(isa: Isa, args…)` running `$body` compiled for the
/// level `isa` names (`#[target_feature(enable = "avx512f")]`,
/// `#[target_feature(enable = "avx2")]`, or portable code).
///
/// The first parameter is the name the body gives the token (write `_isa`
/// when the body does not use it); inside a compiled copy it is a constant,
/// so a body that picks a kernel by `isa.level()` (as the sparse products
/// pick their gather kernel) gets the branch folded away. Generic parameters
/// may carry one bound each.
///
/// ```ignore
/// multiversion! {
///     /// Doubles `a` into `o`.
///     fn double(_isa, a: &[f64], o: &mut [f64]) {
///         o.iter_mut().zip(a).for_each(|(o, &a)| *o = 2.0 * a);
///     }
/// }
/// double(Isa::detect(), &a, &mut o);
/// ```
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$($g:ident $(: $bound:path)?),+ $(,)?>)? ($isa:ident $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name $(<$($g $(: $bound)?),+>)? ($isa: $crate::probe::simd::Isa $(, $arg: $ty)*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body $(<$($g $(: $bound)?),+>)? ($isa: $crate::probe::simd::Isa $(, $arg: $ty)*) $(-> $ret)? $body
            match $isa.level() {
                #[cfg(target_arch = "x86_64")]
                $crate::probe::simd::Level::Avx512 => $crate::probe::simd::multiversion!(
                    @copy "avx512f", Avx512, [$(<$($g $(: $bound)?),+>)?] ($($arg: $ty),*) [$(-> $ret)?]
                ),
                #[cfg(target_arch = "x86_64")]
                $crate::probe::simd::Level::Avx2 => $crate::probe::simd::multiversion!(
                    @copy "avx2", Avx2, [$(<$($g $(: $bound)?),+>)?] ($($arg: $ty),*) [$(-> $ret)?]
                ),
                $crate::probe::simd::Level::Portable => body($isa $(, $arg)*),
            }
        }
    };
    // The copy of `body` compiled with `$feature`, called: only on a CPU
    // that has it, as the caller's token for `$level` proves.
    (@copy $feature:literal, $level:ident, [$($generics:tt)*] ($($arg:ident: $ty:ty),*) [$($ret:tt)*]) => {{
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        fn copy $($generics)* ($($arg: $ty),*) $($ret)* {
            // SAFETY: this copy only runs where the feature was detected (below).
            let isa = unsafe { $crate::probe::simd::Isa::unchecked($crate::probe::simd::Level::$level) };
            body(isa $(, $arg)*)
        }
        // SAFETY: the caller's token proves the CPU has the feature.
        unsafe { copy($($arg),*) }
    }};
}

pub(crate) use multiversion;
