//! A run folder as the CLI lays it out: `config.json` (everything to reproduce the run),
//! `metrics.csv`, the charts, and `checkpoints/` (written by [`tekfac::train::Checkpoints`]).
//!
//! Opening a folder takes its lock (one writer at a time) and removes what a killed run left:
//! temporary files and folders, and checkpoints older than the newest. A new run in an old
//! folder also removes the old run's checkpoints and charts, so nothing in the folder belongs
//! to another run.

use super::args::TrainArgs;
use super::charts::{self, Curves};
use super::say;
use std::path::{Path, PathBuf};
use tekfac::checkpoint::write_atomic;
use tekfac::train::{Checkpoint, Checkpoints, MetricsCsv, Position, Row, RunLock, read_metrics};
use tekfac::{Error, Result};

/// An open run folder, locked for this process.
pub struct RunDir {
    path: PathBuf,
    checkpoints: Checkpoints,
    _lock: RunLock,
}

impl RunDir {
    /// Creates (or reuses) and locks `args.out`, cleans it, and writes `config.json` (with the
    /// run's `steps_per_epoch`, which places its `step` rows on the epoch axis of the charts).
    /// `resumed` is the checkpoint a resumed run continues from: it must still be the newest.
    pub fn open(
        args: &TrainArgs,
        resumed: Option<&Checkpoint>,
        steps_per_epoch: u64,
    ) -> Result<Self> {
        let path = args.out.clone();
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        let lock = RunLock::acquire(&path)?;
        let checkpoints = Checkpoints::new(&path);
        remove_temporaries(&path)?;
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
                remove_stale_outputs(&path)?;
            }
        }
        let mut config =
            serde_json::to_value(args).map_err(|e| Error::Checkpoint(e.to_string()))?;
        config["crate_version"] = env!("CARGO_PKG_VERSION").into();
        config["steps_per_epoch"] = steps_per_epoch.into();
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| Error::Checkpoint(e.to_string()))?;
        write_atomic(&path.join("config.json"), text.as_bytes())?;
        Ok(RunDir {
            path,
            checkpoints,
            _lock: lock,
        })
    }

    /// The run's checkpoints.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// `metrics.csv`: new, or for a run resumed at `pos` the rows up to it.
    pub fn metrics(&self, resumed_at: Option<&Position>) -> Result<MetricsCsv> {
        let path = self.path.join("metrics.csv");
        match resumed_at {
            Some(pos) => MetricsCsv::resume(&path, pos),
            None => MetricsCsv::create(&path),
        }
    }

    /// Writes the run's charts, then prints where everything is and what to run next.
    pub fn finish(&self, args: &TrainArgs, saved: Option<&Checkpoint>) -> Result<()> {
        let curves = read_curves(&self.path)?;
        charts::write_curves(
            &self.path,
            &[(args.optimizer.name().to_string(), curves)],
            false,
            args.eval_split(),
        )?;
        let dir = self.path.display();
        let checkpoint = saved.map_or(String::new(), |c| {
            let rel = c.path.strip_prefix(&self.path).unwrap_or(&c.path);
            format!(", checkpoint {}/", rel.display())
        });
        note(
            args,
            &format!(
                "run saved in {dir}/ (config.json, metrics.csv, charts *_vs_epoch.png/.svg{checkpoint})"
            ),
        )?;
        note(
            args,
            &format!(
                "next: tekfac eval --run {dir}   |   tekfac train --dataset {} --optimizer sgd --out runs/sgd   |   tekfac train --help",
                args.dataset
            ),
        )
    }
}

/// Prints a line for the person at the terminal: on stdout, or on stderr under `--json`
/// (whose stdout carries JSON lines only).
pub fn note(args: &TrainArgs, line: &str) -> Result<()> {
    if args.json {
        eprintln!("{line}");
        Ok(())
    } else {
        say(line)
    }
}

/// Removes the temporary files a killed process left in `dir` (`.<name>.tmp-<pid>…`, from
/// atomic writes). Call it while holding the lock.
fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with('.') && n.contains(".tmp-")) && path.is_file() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Removes what an earlier run in the folder wrote and this run will not overwrite at once: its
/// charts, and the checkpoint files of the layout before `checkpoints/`.
fn remove_stale_outputs(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let chart = name.contains("_vs_") && (name.ends_with(".png") || name.ends_with(".svg"));
        let old_checkpoint = name == "weights.safetensors" || name == "optimizer.safetensors";
        if (chart || old_checkpoint) && path.is_file() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Reads the `config.json` of a run folder (for `--resume` and `eval`).
pub fn load_config(dir: &Path) -> Result<TrainArgs> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut args: TrainArgs = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    args.out = dir.to_path_buf();
    args.resume = Some(dir.to_path_buf());
    Ok(args)
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

/// The curves of a run folder's `metrics.csv`: the training loss of the `step` rows at their
/// fractional epoch `step / steps_per_epoch` (the epoch means when there are none), and the
/// evaluation after each epoch.
pub fn read_curves(dir: &Path) -> Result<Curves> {
    let rows = read_metrics(&dir.join("metrics.csv"))?;
    let mut c = Curves::default();
    let mut steps = Vec::new();
    for r in &rows {
        c.seconds = c.seconds.max(r.seconds);
        let epoch = r.epoch as f64;
        if r.kind == "step" {
            steps.push(r);
            continue;
        }
        c.epoch_train_loss.push(r.train_loss);
        c.loss_by_epoch.push((epoch, r.train_loss));
        c.loss_by_seconds.push((r.seconds, r.train_loss));
        if let Some(test) = r.test_loss {
            c.test_loss_by_epoch.push((epoch, test));
            c.test_loss_by_seconds.push((r.seconds, test));
        }
        if let Some(acc) = r.test_accuracy {
            c.accuracy_by_epoch.push((epoch, acc));
            c.accuracy_by_seconds.push((r.seconds, acc));
        }
    }
    let per_epoch = steps_per_epoch(dir)?.or_else(|| {
        let r = rows.iter().find(|r| r.kind == "epoch" && r.epoch > 0)?;
        Some(r.step / r.epoch as u64)
    });
    if let (Some(spe), false) = (per_epoch, steps.is_empty()) {
        let spe = spe.max(1) as f64;
        c.loss_by_epoch = steps
            .iter()
            .map(|r| (r.step as f64 / spe, r.train_loss))
            .collect();
        c.loss_by_seconds = steps.iter().map(|r| (r.seconds, r.train_loss)).collect();
    }
    Ok(c)
}

/// The `steps_per_epoch` recorded in a run folder's config.json (absent in older runs).
fn steps_per_epoch(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok(v["steps_per_epoch"].as_u64())
}
