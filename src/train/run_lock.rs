//! One writer per run folder: an exclusive advisory lock on `<run>/.lock`, held for the life of
//! the [`RunLock`] and released by the operating system when the process ends, even by a kill.
//!
//! A second process that asks for the same folder is refused at once (never made to wait),
//! with the process id of the holder, so two runs cannot interleave their `metrics.csv` rows or
//! overwrite each other's checkpoints.

use crate::error::{Error, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive lock on a run folder (released on drop).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
}

impl RunLock {
    /// Locks the run folder `dir` (which must exist), or refuses with an
    /// [`Error::InvalidArgument`] naming the process that holds it.
    ///
    /// ```
    /// use tekfac::train::RunLock;
    /// let dir = tempfile::tempdir().unwrap();
    /// let first = RunLock::acquire(dir.path())?;
    /// let second = RunLock::acquire(dir.path()).unwrap_err();
    /// assert!(second.to_string().contains("another tekfac process"));
    /// drop(first);
    /// RunLock::acquire(dir.path())?;
    /// # Ok::<(), tekfac::Error>(())
    /// ```
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(Error::invalid(
                    "--out",
                    format!(
                        "{} is in use by another tekfac process{holder}; wait for it to end or \
                         choose another folder",
                        dir.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let record = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            write!(f, "{}", std::process::id())?;
            f.flush()
        };
        record(&mut file).map_err(|e| Error::io(&path, e))?;
        Ok(RunLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
