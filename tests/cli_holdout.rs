//! `--holdout` (a validation split cut from the training set) and `--flip` / `--shift`
//! (augmentation of training images), end to end on the embedded Fashion-MNIST subset.

use std::path::Path;

mod support;
use support::cli::{assert_usage_error, tekfac, text, tmp};

/// The `train_loss` column of the step rows of a run's metrics.csv.
fn step_losses(dir: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    csv.lines()
        .filter(|l| l.starts_with("step,"))
        .map(|l| l.split(',').nth(4).unwrap().to_string())
        .collect()
}

/// Trains SGD for one epoch on 2,000 examples (batch 100) with `extra` flags into `out`.
fn train(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "--optimizer",
        "sgd",
        "--train-limit",
        "2000",
        "--batch-size",
        "100",
        "--epochs",
        "1",
        "--log-every",
        "5",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = tekfac(&args);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

#[test]
fn holdout_evaluates_on_the_last_training_examples_and_eval_reproduces_it() {
    let out = tmp("holdout");
    let printed = train(&out, &["--holdout", "1500"]);
    let line = printed
        .lines()
        .find(|l| l.starts_with("epoch   1"))
        .unwrap_or_else(|| panic!("no epoch line in {printed}"));
    assert!(
        line.contains("validation loss") && line.contains("validation accuracy"),
        "{line}"
    );
    let acc = line.rsplit(' ').next().unwrap();
    let e = tekfac(&[
        "eval",
        "--run",
        out.to_str().unwrap(),
        "--split",
        "validation",
    ]);
    assert!(e.status.success(), "{}", text(&e));
    let said = text(&e);
    assert!(
        said.contains(acc) && said.contains("(1500 examples)"),
        "eval --split validation reproduces {acc} on 1500 examples: {said}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn holdout_and_shift_misuse_are_clear_errors_with_exit_code_2() {
    let out = tmp("holdout-bad");
    let o = tekfac(&[
        "train",
        "--holdout",
        "10000",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_usage_error(&o, "leaves nothing to train on");
    let o = tekfac(&[
        "train",
        "--shift",
        "28",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_usage_error(&o, "out of view");
    assert!(!out.exists(), "a refused run must not create its directory");

    train(&out, &["--max-steps", "3"]);
    let e = tekfac(&[
        "eval",
        "--run",
        out.to_str().unwrap(),
        "--split",
        "validation",
    ]);
    assert_usage_error(&e, "without --holdout");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn flips_and_shifts_change_the_batches_reproducibly() {
    let (plain, flipped, again, shifted) = (
        tmp("aug-plain"),
        tmp("aug-flip"),
        tmp("aug-again"),
        tmp("aug-shift"),
    );
    train(&plain, &[]);
    train(&flipped, &["--flip"]);
    train(&again, &["--flip"]);
    train(&shifted, &["--shift", "2"]);
    let (p, f, a, s) = (
        step_losses(&plain),
        step_losses(&flipped),
        step_losses(&again),
        step_losses(&shifted),
    );
    assert_eq!(p.len(), 4);
    // Same seed, same shuffling, same initial weights: only the images differ.
    assert_ne!(p, f, "--flip changed nothing");
    assert_ne!(p, s, "--shift changed nothing");
    assert_ne!(f, s);
    assert_eq!(f, a, "the same flags and seed draw the same flips");
    let config = std::fs::read_to_string(shifted.join("config.json")).unwrap();
    assert!(
        config.contains("\"shift\": 2") && config.contains("\"flip\": false"),
        "{config}"
    );
    for d in [plain, flipped, again, shifted] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
