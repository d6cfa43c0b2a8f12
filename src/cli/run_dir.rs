//! A run directory: `config.json` (everything to reproduce the run), `metrics.csv`, charts, and
//! the checkpoint (`weights.safetensors` + `optimizer.safetensors`, written atomically).

use super::args::TrainArgs;
use super::charts::{self, Curves};
use super::say;
use std::path::{Path, PathBuf};
use tekfac::checkpoint::{
    TensorDict, load_params, read_dict, save_params, write_atomic, write_dict,
};
use tekfac::optim::Optimizer;
use tekfac::train::{MetricsCsv, Row};
use tekfac::{Error, ParamStore, Result};

/// Where training stands: what a checkpoint must restore to continue bit-identically.
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
    /// Sum and count of the batch losses of the current epoch (its `epoch` row is their mean).
    pub epoch_loss: LossSum,
    /// Sum and count of the batch losses since the last `step` row (its `train_loss`).
    pub window_loss: LossSum,
}

/// A running sum of batch losses, for a mean that survives a resume.
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
}

/// An open run directory.
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates the directory and writes `config.json` (kept as is when resuming).
    pub fn create(path: &Path, args: &TrainArgs, resuming: bool) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let run = RunDir {
            path: path.to_path_buf(),
        };
        if !resuming {
            // NOTE: a new run replaces the run that was in the folder; its checkpoint must not
            // pass for this run's.
            for stale in ["weights.safetensors", "optimizer.safetensors"] {
                match std::fs::remove_file(path.join(stale)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(path.join(stale), e));
                    }
                    _ => {}
                }
            }
            let mut config =
                serde_json::to_value(args).map_err(|e| Error::Checkpoint(e.to_string()))?;
            config["crate_version"] = env!("CARGO_PKG_VERSION").into();
            let text = serde_json::to_string_pretty(&config)
                .map_err(|e| Error::Checkpoint(e.to_string()))?;
            write_atomic(&run.path.join("config.json"), text.as_bytes())?;
        }
        Ok(run)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `metrics.csv`, appended to when resuming.
    pub fn metrics(&self, resuming: bool) -> Result<MetricsCsv> {
        MetricsCsv::open(&self.path.join("metrics.csv"), resuming)
    }

    /// Writes weights and optimizer state (optimizer first: the weights file marks completion).
    pub fn save_checkpoint(
        &self,
        params: &ParamStore<f32>,
        opt: &dyn Optimizer<f32>,
        pos: &Position,
    ) -> Result<()> {
        let mut dict = TensorDict::default();
        opt.save_state(params, &mut dict);
        for (k, v) in [
            ("epoch", pos.epoch.to_string()),
            ("batch", pos.batch.to_string()),
            ("step", pos.step.to_string()),
            ("seconds", pos.seconds.to_string()),
            // NOTE: f64 Display is the shortest string that parses back to the same value.
            ("epoch_loss_sum", pos.epoch_loss.sum.to_string()),
            ("epoch_loss_count", pos.epoch_loss.count.to_string()),
            ("window_loss_sum", pos.window_loss.sum.to_string()),
            ("window_loss_count", pos.window_loss.count.to_string()),
        ] {
            dict.meta.insert(k.into(), v);
        }
        write_dict(&self.path.join("optimizer.safetensors"), &dict)?;
        save_params(
            &self.path.join("weights.safetensors"),
            params,
            &[("step", pos.step.to_string())],
        )
    }

    /// Writes the run's charts (loss and accuracy against epochs), then prints where
    /// everything is and what to run next.
    pub fn finish(&self, args: &TrainArgs) -> Result<()> {
        let curves = read_curves(&self.path)?;
        charts::write_curves(
            &self.path,
            &[(args.optimizer.name().to_string(), curves)],
            false,
            args.eval_split(),
        )?;
        let dir = self.path.display();
        let lines = [
            format!(
                "run saved in {dir}/ (config.json, metrics.csv, weights.safetensors, loss_vs_epoch.png/.svg)"
            ),
            format!(
                "next: tekfac eval --run {dir}   |   tekfac train --dataset {} --optimizer sgd --out runs/sgd   |   tekfac train --help",
                args.dataset
            ),
        ];
        for line in lines {
            // NOTE: under --json, stdout carries JSON lines only.
            if args.json {
                eprintln!("{line}");
            } else {
                say(&line)?;
            }
        }
        Ok(())
    }
}

/// Reads the `config.json` of a run directory (for `--resume`).
pub fn load_config(dir: &Path) -> Result<TrainArgs> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut args: TrainArgs = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    args.out = dir.to_path_buf();
    args.resume = Some(dir.to_path_buf());
    Ok(args)
}

/// Restores weights, optimizer state and the position from a run directory.
pub fn load_checkpoint(
    dir: &Path,
    params: &mut ParamStore<f32>,
    opt: &mut dyn Optimizer<f32>,
) -> Result<Position> {
    load_params(&dir.join("weights.safetensors"), params)?;
    let dict = read_dict(&dir.join("optimizer.safetensors"))?;
    opt.load_state(params, &dict)?;
    let get = |k: &str| {
        dict.meta
            .get(k)
            .ok_or_else(|| Error::Checkpoint(format!("optimizer.safetensors lacks `{k}`")))
    };
    let bad = |k: &str| Error::Checkpoint(format!("optimizer.safetensors has a malformed `{k}`"));
    // NOTE: checkpoints written before the running loss sums were kept lack them; they resume
    // with empty sums (only the first logged means after the resume differ).
    let sum = |k: &str| -> Result<LossSum> {
        let (s, c) = (format!("{k}_sum"), format!("{k}_count"));
        match (dict.meta.get(&s), dict.meta.get(&c)) {
            (Some(v), Some(n)) => Ok(LossSum {
                sum: v.parse().map_err(|_| bad(&s))?,
                count: n.parse().map_err(|_| bad(&c))?,
            }),
            _ => Ok(LossSum::default()),
        }
    };
    Ok(Position {
        epoch: get("epoch")?.parse().map_err(|_| bad("epoch"))?,
        batch: get("batch")?.parse().map_err(|_| bad("batch"))?,
        step: get("step")?.parse().map_err(|_| bad("step"))?,
        seconds: get("seconds")?.parse().map_err(|_| bad("seconds"))?,
        epoch_loss: sum("epoch_loss")?,
        window_loss: sum("window_loss")?,
    })
}

/// Prints a metrics row as one JSON object when `--json` is on.
pub fn json_line(args: &TrainArgs, row: &Row) -> Result<()> {
    if args.json {
        let v = serde_json::json!({
            "kind": row.kind, "epoch": row.epoch, "step": row.step, "seconds": row.seconds,
            "train_loss": row.train_loss, "test_loss": row.test_loss, "test_accuracy": row.test_accuracy,
            "grad_norm": row.grad_norm, "update_norm": row.update_norm, "lr": row.lr,
        });
        say(&v.to_string())?;
    }
    Ok(())
}

/// The per-epoch curves of a run directory's `metrics.csv` (its `epoch` rows).
pub fn read_curves(dir: &Path) -> Result<Curves> {
    let path = dir.join("metrics.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |line: &str| Error::Data(format!("{}: malformed row `{line}`", path.display()));
    let mut c = Curves::default();
    // `(step, seconds, mean loss of the window)` of the step rows.
    let mut steps = Vec::new();
    let mut steps_per_epoch = None;
    for line in text.lines().skip(1) {
        // Columns: kind,epoch,step,seconds,train_loss,test_loss,test_accuracy,...
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
        let (Some(epoch), Some(step), Some(seconds), Some(loss)) = (num(1), num(2), num(3), num(4))
        else {
            return Err(bad(line));
        };
        c.seconds = c.seconds.max(seconds);
        match f[0] {
            "step" => steps.push((step, seconds, loss)),
            "epoch" => {
                steps_per_epoch.get_or_insert(step / epoch);
                c.epoch_train_loss.push(loss);
                if let Some(test) = num(5) {
                    c.test_loss_by_epoch.push((epoch, test));
                    c.test_loss_by_seconds.push((seconds, test));
                }
                if let Some(acc) = num(6) {
                    c.accuracy_by_epoch.push((epoch, acc));
                    c.accuracy_by_seconds.push((seconds, acc));
                }
                c.loss_by_epoch.push((epoch, loss));
                c.loss_by_seconds.push((seconds, loss));
            }
            _ => return Err(bad(line)),
        }
    }
    // NOTE: the step rows give the training curve at the logging resolution (the mean of each
    // window); without them (or before the first epoch ends, when an epoch's length is not
    // known yet) the curve is the epoch means.
    if let (Some(spe), false) = (steps_per_epoch, steps.is_empty()) {
        c.loss_by_epoch = steps.iter().map(|&(s, _, l)| (s / spe, l)).collect();
        c.loss_by_seconds = steps.iter().map(|&(_, t, l)| (t, l)).collect();
    }
    Ok(c)
}
