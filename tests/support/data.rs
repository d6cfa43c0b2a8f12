//! The real MNIST / Fashion-MNIST files, for the tests that need them (issue 14 §5).
//!
//! Such a test is marked
//! `#[cfg_attr(not(tekfac_real_data), ignore = "needs the real data: set TEKFAC_DATA_DIR")]`;
//! build.rs sets that cfg when `TEKFAC_DATA_DIR` is set at build time. Without the data the
//! test shows as `ignored` with its reason; with it, the test runs and fails if the files are
//! not there.

use std::path::PathBuf;

/// `$TEKFAC_DATA_DIR`; panics with the reason when a test built with it runs without it.
pub fn dir() -> PathBuf {
    std::env::var_os("TEKFAC_DATA_DIR")
        .map(PathBuf::from)
        .expect("built with TEKFAC_DATA_DIR set, but it is unset now: set it (CI sets it to ../shared/data)")
}
