//! `metrics.csv`: one row per logged step and per epoch end, flushed as it is written.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Column names of `metrics.csv`.
pub const COLUMNS: &str =
    "kind,epoch,step,seconds,train_loss,test_loss,test_accuracy,grad_norm,update_norm,lr";

/// An append-only CSV file of training metrics.
pub struct MetricsCsv {
    path: PathBuf,
    file: std::fs::File,
}

/// One row of metrics (`kind` is `step` or `epoch`; absent values are left empty).
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// `step` or `epoch`.
    pub kind: &'static str,
    /// Epoch (1-based for epoch rows).
    pub epoch: usize,
    /// Global step.
    pub step: u64,
    /// Wall-clock seconds of training so far.
    pub seconds: f64,
    /// Training loss (averaged over the steps since the last row of its kind: the logging
    /// window for `step` rows, the epoch for `epoch` rows).
    pub train_loss: f64,
    /// Test loss.
    pub test_loss: Option<f64>,
    /// Test accuracy in [0, 1].
    pub test_accuracy: Option<f64>,
    /// Gradient norm.
    pub grad_norm: Option<f64>,
    /// Update norm.
    pub update_norm: Option<f64>,
    /// Learning rate.
    pub lr: f64,
}

impl MetricsCsv {
    /// Creates the file with its header, or opens it for appending when `append` (resume).
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let exists = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut m = MetricsCsv {
            path: path.to_path_buf(),
            file,
        };
        if !(append && exists) {
            m.file.set_len(0).map_err(|e| Error::io(path, e))?;
            m.line(COLUMNS)?;
        }
        Ok(m)
    }

    /// Appends one row.
    pub fn write(&mut self, r: &Row) -> Result<()> {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        let line = format!(
            "{},{},{},{:.3},{:.6},{},{},{},{},{:.6e}",
            r.kind,
            r.epoch,
            r.step,
            r.seconds,
            r.train_loss,
            opt(r.test_loss),
            opt(r.test_accuracy),
            opt(r.grad_norm),
            opt(r.update_norm),
            r.lr
        );
        self.line(&line)
    }

    fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.file, "{s}")
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}
