//! Where a training run stands: the state a checkpoint must restore, beside the weights and the
//! optimizer, for a resumed run to continue bit-identically.
//!
//! ```text
//! epoch   completed epochs           step         global steps done
//! batch   batches done in this epoch seconds      training time so far
//! epoch_loss  Σ and count of this epoch's batch losses (its `epoch` row is their mean)
//! window_loss Σ and count since the last `step` row (that row's `train_loss`)
//! ```

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Where training stands (module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    /// Completed epochs.
    pub epoch: usize,
    /// Batches done in the current epoch.
    pub batch: usize,
    /// Global steps done.
    pub step: u64,
    /// Training seconds so far (for wall-clock charts across resumes).
    pub seconds: f64,
    /// Sum and count of the batch losses of the current epoch.
    pub epoch_loss: LossSum,
    /// Sum and count of the batch losses since the last `step` row.
    pub window_loss: LossSum,
}

/// A running sum of batch losses, for a mean that survives a resume.
///
/// ```
/// use tekfac::train::LossSum;
/// let mut s = LossSum::default();
/// s.add(1.0);
/// s.add(2.0);
/// assert_eq!(s.take_mean(), 1.5);
/// assert_eq!(s, LossSum::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSum {
    /// Sum of the losses.
    pub sum: f64,
    /// Number of losses.
    pub count: usize,
}

impl LossSum {
    /// Adds one batch loss.
    pub fn add(&mut self, loss: f64) {
        self.sum += loss;
        self.count += 1;
    }

    /// The mean so far, and a reset (NaN when nothing was added).
    pub fn take_mean(&mut self) -> f64 {
        let mean = self.sum / self.count as f64;
        *self = LossSum::default();
        mean
    }
}

impl Position {
    /// A copy with the elapsed seconds set.
    pub fn with_seconds(&self, seconds: f64) -> Self {
        Position {
            seconds,
            ..self.clone()
        }
    }

    /// The position as named strings, for a checkpoint's manifest.
    // NOTE: f64 Display is the shortest string that parses back to the same value, so the
    // running sums (and with them the logged means) survive a resume bit for bit.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        [
            ("epoch", self.epoch.to_string()),
            ("batch", self.batch.to_string()),
            ("step", self.step.to_string()),
            ("seconds", self.seconds.to_string()),
            ("epoch_loss_sum", self.epoch_loss.sum.to_string()),
            ("epoch_loss_count", self.epoch_loss.count.to_string()),
            ("window_loss_sum", self.window_loss.sum.to_string()),
            ("window_loss_count", self.window_loss.count.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads what [`Position::to_fields`] wrote; `source` names the file in errors.
    pub fn from_fields(fields: &BTreeMap<String, String>, source: &str) -> Result<Self> {
        fn get<T: std::str::FromStr>(
            f: &BTreeMap<String, String>,
            k: &str,
            source: &str,
        ) -> Result<T> {
            let v = f
                .get(k)
                .ok_or_else(|| Error::Checkpoint(format!("{source} lacks `{k}`")))?;
            v.parse()
                .map_err(|_| Error::Checkpoint(format!("{source} has a malformed `{k}`: `{v}`")))
        }
        let sum = |k: &str| -> Result<LossSum> {
            Ok(LossSum {
                sum: get(fields, &format!("{k}_sum"), source)?,
                count: get(fields, &format!("{k}_count"), source)?,
            })
        };
        Ok(Position {
            epoch: get(fields, "epoch", source)?,
            batch: get(fields, "batch", source)?,
            step: get(fields, "step", source)?,
            seconds: get(fields, "seconds", source)?,
            epoch_loss: sum("epoch_loss")?,
            window_loss: sum("window_loss")?,
        })
    }
}
