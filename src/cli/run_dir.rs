//! A run folder as the CLI lays it out: the library's [`tekfac::train::RunFolder`] (lock,
//! `metrics.csv`, `checkpoints/`, cleaned of what a killed run left) plus `config.json`
//! (everything to reproduce the run) and the charts. A new run in an old folder also removes
//! the old run's charts, so nothing in the folder belongs to another run.

use super::args::TrainArgs;
use super::charts::{self, Curves};
use super::say;
use std::path::Path;
use tekfac::checkpoint::write_atomic;
use tekfac::train::{
    Checkpoint, Checkpoints, METRICS_FILE, MetricsCsv, Position, Row, RunFolder, read_metrics,
};
use tekfac::{Error, Result};

/// An open run folder, locked for this process.
pub struct RunDir {
    folder: RunFolder,
}

impl RunDir {
    /// Opens `args.out` ([`RunFolder::open`]), removes an earlier run's charts when this run is
    /// new, and writes `config.json` (with the run's `steps_per_epoch`, which places its `step`
    /// rows on the epoch axis of the charts). `resumed` is the checkpoint a resumed run
    /// continues from.
    pub fn open(
        args: &TrainArgs,
        resumed: Option<&Checkpoint>,
        steps_per_epoch: u64,
    ) -> Result<Self> {
        let folder = RunFolder::open(&args.out, resumed)?;
        if resumed.is_none() {
            folder.remove_files(|name| {
                name.contains("_vs_") && (name.ends_with(".png") || name.ends_with(".svg"))
            })?;
        }
        let mut config =
            serde_json::to_value(args).map_err(|e| Error::Checkpoint(e.to_string()))?;
        config["crate_version"] = env!("CARGO_PKG_VERSION").into();
        config["steps_per_epoch"] = steps_per_epoch.into();
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| Error::Checkpoint(e.to_string()))?;
        write_atomic(&folder.path().join("config.json"), text.as_bytes())?;
        Ok(RunDir { folder })
    }

    /// The run's checkpoints.
    pub fn checkpoints(&self) -> &Checkpoints {
        self.folder.checkpoints()
    }

    /// `metrics.csv`: new, or for a run resumed at `pos` the rows up to it.
    pub fn metrics(&self, resumed_at: Option<&Position>) -> Result<MetricsCsv> {
        self.folder.metrics(resumed_at)
    }

    /// Writes the run's charts, then prints where everything is and what to run next.
    pub fn finish(&self, args: &TrainArgs, saved: Option<&Checkpoint>) -> Result<()> {
        let dir = self.folder.path();
        let curves = read_curves(dir)?;
        charts::write_curves(
            dir,
            &[(args.optimizer.name().to_string(), curves)],
            false,
            args.eval_split(),
        )?;
        let checkpoint = saved.map_or(String::new(), |c| {
            let rel = c.path.strip_prefix(dir).unwrap_or(&c.path);
            format!(", checkpoint {}/", rel.display())
        });
        let dir = dir.display();
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
    let rows = read_metrics(&dir.join(METRICS_FILE))?;
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
