//! The test-only noise switch for neighbouring-database tests.
//!
//! With the `neighbouring-tests` feature, a test may call
//! [`set_noise_off`]: every discrete Laplace draw is then 0 and the keyed
//! group choice of contribution bounding uses a fixed key, so a job run on a
//! database D and on D minus one privacy unit can be compared statistic by
//! statistic against the declared sensitivities. The feature does not
//! compile without debug assertions, so no release build can switch noise
//! off; without the feature the switch does not exist and [`noise_off`] is
//! a constant `false`.

#[cfg(all(feature = "neighbouring-tests", not(debug_assertions)))]
compile_error!("the `neighbouring-tests` feature turns DP noise off and is for debug-build tests only");

#[cfg(feature = "neighbouring-tests")]
static NOISE_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether noise is switched off (tests only; always `false` otherwise).
#[inline]
pub fn noise_off() -> bool {
    #[cfg(feature = "neighbouring-tests")]
    {
        NOISE_OFF.load(std::sync::atomic::Ordering::SeqCst)
    }
    #[cfg(not(feature = "neighbouring-tests"))]
    {
        false
    }
}

/// Turns every noise draw into 0 (and fixes the group-choice key) for the
/// whole process. For neighbouring-database tests only.
#[cfg(feature = "neighbouring-tests")]
pub fn set_noise_off(off: bool) {
    NOISE_OFF.store(off, std::sync::atomic::Ordering::SeqCst);
}
