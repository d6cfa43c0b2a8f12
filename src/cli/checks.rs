//! Range checks of every numeric flag, run before any file is read or written.
//!
//! Each check names the flag, the value it got and the range it allows, so a refusal reads
//! `--lr: -0.1 is out of range (allowed: a finite number > 0)` and exits with code 2. Checks
//! that need the data (the batch size against the training set) are in [`against_data`].

use super::args::{CompareArgs, InspectArgs, OptimizerName, TrainArgs};
use std::path::Path;
use tekfac::dataset::Dataset;
use tekfac::train::Position;
use tekfac::{Error, Result};

/// The refusal of `value` for `flag`, with the `allowed` range in words.
pub fn out_of_range(flag: &'static str, value: impl std::fmt::Display, allowed: &str) -> Error {
    Error::invalid(
        flag,
        format!("{value} is out of range (allowed: {allowed})"),
    )
}

/// `Ok` when `ok`, else [`out_of_range`].
fn check(flag: &'static str, value: impl std::fmt::Display, ok: bool, allowed: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(out_of_range(flag, value, allowed))
    }
}

fn positive(flag: &'static str, v: f64) -> Result<()> {
    check(flag, v, v.is_finite() && v > 0.0, "a finite number > 0")
}

fn non_negative(flag: &'static str, v: f64) -> Result<()> {
    check(flag, v, v.is_finite() && v >= 0.0, "a finite number ≥ 0")
}

fn at_least_one(flag: &'static str, v: u64) -> Result<()> {
    check(flag, v, v >= 1, "an integer ≥ 1")
}

/// The largest `--threads`: 4 × the available cores (more only adds scheduling overhead; about
/// 1,000 threads made a run hang).
pub fn max_threads() -> usize {
    4 * available_cores()
}

/// The cores this process may use (1 when the system cannot tell).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Every flag of `tekfac train` that can be checked without the data.
pub fn train(a: &TrainArgs) -> Result<()> {
    if let Some(lr) = a.lr {
        positive("--lr", lr)?;
    }
    let m = a.momentum;
    check("--momentum", m, (0.0..1.0).contains(&m), "0 ≤ μ < 1")?;
    if let Some(d) = a.damping {
        positive("--damping", d)?;
    }
    if let Some(k) = a.kl_clip {
        positive("--kl-clip", k)?;
    }
    let natural = !matches!(a.optimizer, OptimizerName::Sgd | OptimizerName::Adam);
    for (flag, given) in [
        ("--damping", a.damping.is_some()),
        ("--kl-clip", a.kl_clip.is_some()),
    ] {
        if given && !natural {
            return Err(Error::invalid(
                flag,
                format!(
                    "applies to kfac, ekfac, tkfac and tekfac, not to --optimizer {}",
                    a.optimizer.name()
                ),
            ));
        }
    }
    let rho = a.ema_decay;
    check("--ema-decay", rho, (0.0..1.0).contains(&rho), "0 ≤ ρ < 1")?;
    at_least_one("--stats-interval", a.stats_interval)?;
    at_least_one("--eigen-interval", a.eigen_interval)?;
    at_least_one("--scale-interval", a.scale_interval)?;
    at_least_one("--fisher-samples", a.fisher_samples as u64)?;
    non_negative("--conv-damping-floor", a.conv_damping_floor)?;
    non_negative("--weight-decay", a.weight_decay)?;
    positive("--gamma", a.gamma)?;
    at_least_one("--epochs", a.epochs as u64)?;
    at_least_one("--batch-size", a.batch_size as u64)?;
    at_least_one("--log-every", a.log_every)?;
    classes(&a.dataset, a.classes)?;
    if let Some(t) = a.threads {
        let max = max_threads();
        let allowed = format!(
            "0 for all cores, or 1 to {max}: 4 × the {} cores of this machine",
            available_cores()
        );
        check("--threads", t, t <= max, &allowed)?;
    }
    Ok(())
}

/// The flags of `tekfac compare`: the training flags and the comparison's own.
pub fn compare(a: &CompareArgs) -> Result<()> {
    train(&TrainArgs {
        // NOTE: --damping applies to the natural-gradient runs of the comparison only.
        optimizer: OptimizerName::Tekfac,
        ..a.train.clone()
    })?;
    let t = a.target_accuracy;
    check(
        "--target-accuracy",
        t,
        (0.0..=1.0).contains(&t),
        "0 ≤ a ≤ 1",
    )
}

/// `--classes K`, when given: 1 to 256, and for `idx:` data only (the named data sets know
/// their classes).
fn classes(dataset: &str, classes: Option<usize>) -> Result<()> {
    let Some(k) = classes else { return Ok(()) };
    check("--classes", k, (1..=256).contains(&k), "1 to 256")?;
    if !dataset.starts_with("idx:") {
        return Err(Error::invalid(
            "--classes",
            format!("applies to idx:DIR data only; {dataset} knows its own classes"),
        ));
    }
    Ok(())
}

/// The largest `--hidden` of `tekfac inspect` (the MLP's first block is `50·H` square, the
/// autoencoder's `49·(H+1)`).
pub const MAX_HIDDEN: usize = 64;

/// The flags of `tekfac inspect` (the sizes against the data: [`inspect_against_data`]).
pub fn inspect(a: &InspectArgs) -> Result<()> {
    classes(&a.dataset, a.classes)?;
    let h = a.hidden;
    check("--hidden", h, (1..=MAX_HIDDEN).contains(&h), "1 to 64")?;
    at_least_one("--every", a.every)?;
    at_least_one("--batch-size", a.batch_size as u64)?;
    at_least_one("--probe-size", a.probe_size as u64)?;
    if let Some(lr) = a.lr {
        positive("--lr", lr)?;
    }
    if let Some(d) = a.damping {
        positive("--damping", d)?;
    }
    let m = a.momentum;
    check("--momentum", m, (0.0..1.0).contains(&m), "0 ≤ μ < 1")?;
    let rho = a.ema_decay;
    check("--ema-decay", rho, (0.0..1.0).contains(&rho), "0 ≤ ρ < 1")?;
    at_least_one("--stats-interval", a.stats_interval)?;
    at_least_one("--eigen-interval", a.eigen_interval)?;
    at_least_one("--scale-interval", a.scale_interval)?;
    let k = a.fisher_samples;
    check("--fisher-samples", k, (1..=100).contains(&k), "1 to 100")
}

/// `--batch-size` and `--probe-size` of `tekfac inspect` against the `n` training examples.
pub fn inspect_against_data(a: &InspectArgs, n: usize) -> Result<()> {
    let allowed = format!("1 to the {n} training examples");
    check("--batch-size", a.batch_size, a.batch_size <= n, &allowed)?;
    check("--probe-size", a.probe_size, a.probe_size <= n, &allowed)
}

/// The checks that need the loaded data: a batch must fit the training set and the
/// evaluation split must hold examples.
pub fn against_data(a: &TrainArgs, train: &Dataset, eval: &Dataset) -> Result<()> {
    let n = train.len();
    let allowed = format!("1 to the {n} training examples");
    check("--batch-size", a.batch_size, a.batch_size <= n, &allowed)?;
    if eval.is_empty() {
        return Err(Error::invalid(
            "--dataset",
            format!(
                "the {} split of {} holds no examples, so there is nothing to evaluate on",
                a.eval_split(),
                a.dataset
            ),
        ));
    }
    Ok(())
}

/// The checks of a resumed run against the position of its checkpoint: something must be left
/// to train.
pub fn resumable(a: &TrainArgs, pos: &Position, dir: &Path) -> Result<()> {
    let dir = dir.display();
    if a.epochs <= pos.epoch {
        return Err(Error::invalid(
            "--epochs",
            format!(
                "the run in {dir} has completed {} epochs and is set to {}; give --epochs N \
                 with N > {} to train it further",
                pos.epoch, a.epochs, pos.epoch
            ),
        ));
    }
    if a.max_steps > 0 && a.max_steps <= pos.step {
        return Err(Error::invalid(
            "--max-steps",
            format!(
                "{} is not past step {} where the run in {dir} stands; give a larger limit, \
                 or 0 for none",
                a.max_steps, pos.step
            ),
        ));
    }
    Ok(())
}
