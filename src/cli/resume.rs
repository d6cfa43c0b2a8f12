//! The settings of a resumed run: those saved in its config.json, except the flags given on the
//! command line, which must be ones a run can change midway.
//!
//! | flags | on `--resume` |
//! |---|---|
//! | `--max-steps`, `--threads`, `--quiet`, `--json`, `--reset-optimizer` | this invocation's (default when absent) |
//! | `--epochs`, `--log-every`, `--checkpoint-every`, `--data-dir`, `--no-verify` | saved, unless given |
//! | every other flag (model, data, optimizer, hyperparameters, seed, …) | saved; giving a different value is refused |

use super::args::TrainArgs;
use super::run_dir;
use serde_json::Value;
use std::path::Path;
use tekfac::{Error, Result};

/// Flags that belong to one invocation, not to the run.
const PER_INVOCATION: [&str; 5] = ["max_steps", "threads", "quiet", "json", "reset_optimizer"];
/// Flags whose saved value a resume may replace when the flag is given.
const CHANGEABLE: [&str; 5] = [
    "epochs",
    "log_every",
    "checkpoint_every",
    "data_dir",
    "no_verify",
];
/// Flags that name the run folder itself.
const FOLDER: [&str; 2] = ["resume", "out"];

/// The arguments to resume the run in `dir` with: its saved config.json merged with `now`, the
/// command line, whose explicitly given flags are `explicit` (clap ids, e.g. `max_steps`).
pub fn merged(dir: &Path, now: &TrainArgs, explicit: &[String]) -> Result<TrainArgs> {
    let saved = run_dir::load_config(dir)?;
    let to_value = |a: &TrainArgs| {
        serde_json::to_value(a).map_err(|e| Error::Checkpoint(format!("config: {e}")))
    };
    let (mut merged, now_v) = (to_value(&saved)?, to_value(now)?);
    for key in PER_INVOCATION {
        merged[key] = now_v[key].clone();
    }
    for key in explicit {
        let key = key.as_str();
        if CHANGEABLE.contains(&key) {
            merged[key] = now_v[key].clone();
        } else if key == "out" && now.out != dir {
            return Err(Error::invalid(
                "--out",
                format!(
                    "a resumed run stays in its folder {}; leave --out out or give the same folder",
                    dir.display()
                ),
            ));
        } else if !PER_INVOCATION.contains(&key)
            && !FOLDER.contains(&key)
            && !same(&merged[key], &now_v[key])
        {
            return Err(changed_setting(key, &merged[key], &now_v[key], dir));
        }
    }
    serde_json::from_value(merged).map_err(|e| Error::Checkpoint(format!("config: {e}")))
}

/// Whether a flag's value equals the saved one (numbers compared as numbers: `0.10` = `0.1`).
fn same(saved: &Value, now: &Value) -> bool {
    match (saved.as_f64(), now.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => saved == now,
    }
}

/// The refusal of a flag that a resumed run cannot change.
fn changed_setting(key: &str, saved: &Value, now: &Value, dir: &Path) -> Error {
    let flag = format!("--{}", key.replace('_', "-"));
    // NOTE: `Error::InvalidArgument` takes a static op name; the flag goes into the message.
    Error::invalid(
        "--resume",
        format!(
            "{flag} {now} differs from the {saved} that the run in {} was trained with; a \
             resumed run keeps its settings (start a new run with another --out to change it)",
            dir.display()
        ),
    )
}
