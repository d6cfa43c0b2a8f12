//! Running the `tekfac` binary from the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary with `args`, ignoring any `TEKFAC_DATA_DIR` of the caller (the tests use
/// the embedded subset, found through the source tree).
pub fn tekfac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tekfac"))
        .args(args)
        .env_remove("TEKFAC_DATA_DIR")
        .output()
        .expect("the tekfac binary runs")
}

/// A fresh (removed) directory under the system temp dir, unique per test process, removed
/// again when the test is done with it (kept when the test fails, for a look).
pub fn tmp(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("tekfac-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Scratch(d)
}

/// The path of a [`tmp`] directory; dropping it removes the directory unless the thread is
/// panicking.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// stdout followed by stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that the binary refused with exit code 2 (a usage error) and said `needle`.
pub fn assert_usage_error(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", text(o));
    assert!(
        text(o).contains(needle),
        "expected {needle:?} in: {}",
        text(o)
    );
}

/// The newest checkpoint folder of a run (`<run>/checkpoints/epoch-E-step-S`).
pub fn latest_checkpoint(run: &std::path::Path) -> PathBuf {
    tekfac::train::Checkpoints::new(run)
        .latest()
        .unwrap()
        .unwrap_or_else(|| panic!("{} holds no checkpoint", run.display()))
        .path
}
