//! `metrics.csv`: one row per logged step and per epoch end, flushed as it is written, and the
//! reader that gives the rows back by column name.
//!
//! ```text
//! kind,epoch,step,seconds,train_loss,test_loss,test_accuracy,grad_norm,update_norm,lr
//! step,1,10,0.412,2.104311,,,0.912345,0.045678,1.000000e-2      mean loss of steps 1..=10
//! epoch,1,78,3.201,1.502210,1.203344,0.612500,,,1.000000e-2     epoch mean; evaluation
//! ```

use super::position::Position;
use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use std::collections::HashMap;
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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// `step` or `epoch`.
    pub kind: &'static str,
    /// Epoch (1-based: for a `step` row the epoch in progress, for an `epoch` row the one that
    /// ended).
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

impl Row {
    /// The row as one CSV line (no newline), in the order of [`COLUMNS`].
    pub fn to_csv(&self) -> String {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        format!(
            "{},{},{},{:.3},{:.6},{},{},{},{},{:.6e}",
            self.kind,
            self.epoch,
            self.step,
            self.seconds,
            self.train_loss,
            opt(self.test_loss),
            opt(self.test_accuracy),
            opt(self.grad_norm),
            opt(self.update_norm),
            self.lr
        )
    }

    /// Whether a checkpoint at `pos` already covers this row (it was written before it).
    pub fn is_within(&self, pos: &Position) -> bool {
        match self.kind {
            "epoch" => self.epoch <= pos.epoch,
            _ => self.step <= pos.step,
        }
    }
}

impl MetricsCsv {
    /// Creates the file with its header (replacing any earlier file).
    pub fn create(path: &Path) -> Result<Self> {
        write_atomic(path, format!("{COLUMNS}\n").as_bytes())?;
        Self::append(path)
    }

    /// Reopens the file of a run resumed from a checkpoint at `pos`: rows written after that
    /// checkpoint (by a run stopped before its next one) are dropped, since the resumed run
    /// writes them again; the header and the covered rows are kept byte for byte. A missing
    /// file is created.
    pub fn resume(path: &Path, pos: &Position) -> Result<Self> {
        if !path.exists() {
            return Self::create(path);
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let rows = parse(&text, path)?;
        let mut kept = String::new();
        for (line, row) in text.lines().skip(1).zip(&rows) {
            if row.is_within(pos) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        let header = text.lines().next().unwrap_or(COLUMNS);
        write_atomic(path, format!("{header}\n{kept}").as_bytes())?;
        Self::append(path)
    }

    fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsCsv {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one row.
    pub fn write(&mut self, r: &Row) -> Result<()> {
        writeln!(self.file, "{}", r.to_csv())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every row of a `metrics.csv`, by the column names of its header.
///
/// ```
/// use tekfac::train::{MetricsCsv, Row, read_metrics};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("metrics.csv");
/// let row = Row { kind: "step", epoch: 1, step: 10, train_loss: 0.5, lr: 0.01, ..Default::default() };
/// MetricsCsv::create(&path)?.write(&row)?;
/// assert_eq!(read_metrics(&path)?, vec![row]);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub fn read_metrics(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

/// The rows of a metrics text; `path` names it in errors.
fn parse(text: &str, path: &Path) -> Result<Vec<Row>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let columns: HashMap<&str, usize> =
        header.split(',').enumerate().map(|(i, c)| (c, i)).collect();
    let bad =
        |line: &str, why: &str| Error::Data(format!("{}: {why} in row `{line}`", path.display()));
    for needed in ["kind", "epoch", "step", "train_loss"] {
        if !columns.contains_key(needed) {
            return Err(Error::Data(format!(
                "{}: the header `{header}` has no `{needed}` column",
                path.display()
            )));
        }
    }
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let field = |c: &str| {
                columns
                    .get(c)
                    .and_then(|&i| f.get(i))
                    .copied()
                    .unwrap_or("")
            };
            let num = |c: &str| -> Result<Option<f64>> {
                match field(c) {
                    "" => Ok(None),
                    s => s
                        .parse()
                        .map(Some)
                        .map_err(|_| bad(line, &format!("a malformed `{c}`"))),
                }
            };
            let int = |c: &str| {
                field(c)
                    .parse::<u64>()
                    .map_err(|_| bad(line, &format!("a malformed `{c}`")))
            };
            let kind = match field("kind") {
                "step" => "step",
                "epoch" => "epoch",
                other => return Err(bad(line, &format!("an unknown kind `{other}`"))),
            };
            Ok(Row {
                kind,
                epoch: int("epoch")? as usize,
                step: int("step")?,
                seconds: num("seconds")?.unwrap_or(0.0),
                train_loss: num("train_loss")?.ok_or_else(|| bad(line, "no `train_loss`"))?,
                test_loss: num("test_loss")?,
                test_accuracy: num("test_accuracy")?,
                grad_norm: num("grad_norm")?,
                update_norm: num("update_norm")?,
                lr: num("lr")?.unwrap_or(f64::NAN),
            })
        })
        .collect()
}
