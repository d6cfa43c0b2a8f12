//! A run folder, opened for one writer and cleaned of what a killed run left.
//!
//! ```text
//! <run>/
//!   .lock                 held while a process writes the folder (RunLock)
//!   metrics.csv           one row per logged step and per epoch (MetricsCsv)
//!   checkpoints/          one atomic folder per checkpoint (Checkpoints)
//!   .<name>.tmp-<pid>…    an atomic write in progress (a kill leaves it; removed at the next open)
//!   …                     whatever the caller adds (the CLI: config.json and charts)
//! ```
//!
//! [`RunFolder::open`] takes the lock, then removes temporary files and every checkpoint but
//! the newest. A new run in an old folder also removes the old run's checkpoints (and the
//! weights and optimizer files of the layout before `checkpoints/`), so no checkpoint in the
//! folder belongs to another run; a resumed run keeps the newest, which must be the one it
//! resumes from.

use super::checkpoints::{Checkpoint, Checkpoints, OPTIMIZER, WEIGHTS};
use super::metrics::MetricsCsv;
use super::position::Position;
use super::run_lock::RunLock;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The metrics file of a run folder.
pub const METRICS_FILE: &str = "metrics.csv";

/// An open run folder, locked for this process until dropped.
#[derive(Debug)]
pub struct RunFolder {
    path: PathBuf,
    checkpoints: Checkpoints,
    _lock: RunLock,
}

impl RunFolder {
    /// Creates (or reuses) and locks the folder `path`, and cleans it (module docs). `resumed`
    /// is the checkpoint a resumed run continues from: it must still be the newest, else the
    /// folder changed since it was read and nothing is removed.
    ///
    /// ```
    /// use tekfac::train::RunFolder;
    /// let dir = tempfile::tempdir().unwrap();
    /// let run = RunFolder::open(&dir.path().join("run"), None)?;
    /// assert!(RunFolder::open(run.path(), None).is_err()); // one writer at a time
    /// run.metrics(None)?; // metrics.csv with its header
    /// assert!(run.path().join("metrics.csv").exists());
    /// # Ok::<(), tekfac::Error>(())
    /// ```
    pub fn open(path: &Path, resumed: Option<&Checkpoint>) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let lock = RunLock::acquire(path)?;
        let checkpoints = Checkpoints::new(path);
        remove_temporaries(path)?;
        match resumed {
            Some(c) => {
                if checkpoints.latest()?.as_ref() != Some(c) {
                    return Err(Error::Checkpoint(format!(
                        "{} changed while this run started; try again",
                        checkpoints.dir().display()
                    )));
                }
                checkpoints.clean()?;
            }
            None => {
                checkpoints.clear()?;
                remove_files(path, |name| name == WEIGHTS || name == OPTIMIZER)?;
            }
        }
        Ok(RunFolder {
            path: path.to_path_buf(),
            checkpoints,
            _lock: lock,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's checkpoints.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// `metrics.csv`: new, or for a run resumed at `pos` the rows up to it
    /// ([`MetricsCsv::resume`]).
    pub fn metrics(&self, resumed_at: Option<&Position>) -> Result<MetricsCsv> {
        let path = self.path.join(METRICS_FILE);
        match resumed_at {
            Some(pos) => MetricsCsv::resume(&path, pos),
            None => MetricsCsv::create(&path),
        }
    }

    /// Removes every file (not folder) directly in the folder whose name `doomed` accepts: what
    /// an earlier run wrote that this one will not overwrite at once (the CLI's charts).
    ///
    /// ```
    /// use tekfac::train::RunFolder;
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("loss_vs_epoch.png"), b"").unwrap();
    /// std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
    /// let run = RunFolder::open(dir.path(), None)?;
    /// run.remove_files(|name| name.ends_with(".png"))?;
    /// assert!(!dir.path().join("loss_vs_epoch.png").exists());
    /// assert!(dir.path().join("notes.txt").exists());
    /// # Ok::<(), tekfac::Error>(())
    /// ```
    pub fn remove_files(&self, doomed: impl Fn(&str) -> bool) -> Result<()> {
        remove_files(&self.path, doomed)
    }
}

/// Removes the temporary files a killed process left in `dir` (`.<name>.tmp-<pid>…`, from
/// atomic writes). Call it while holding the lock.
fn remove_temporaries(dir: &Path) -> Result<()> {
    remove_files(dir, |name| name.starts_with('.') && name.contains(".tmp-"))
}

/// Removes every file (not folder) directly in `dir` whose name `doomed` accepts.
fn remove_files(dir: &Path, doomed: impl Fn(&str) -> bool) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if doomed(&name) && path.is_file() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}
