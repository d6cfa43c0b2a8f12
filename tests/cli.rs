//! The `tekfac` binary end to end on real data (the embedded Fashion-MNIST subset): training,
//! evaluation of its checkpoint, bit-identical resume (with augmentation), clean stop on divergence, and exit code 2
//! with a clear message for bad flags and missing data.

use std::path::Path;

mod support;
use support::cli::{assert_usage_error, latest_checkpoint, tekfac, text, tmp};

/// `(step, train_loss)` of every step row of a run's metrics.csv.
fn step_losses(dir: &Path) -> Vec<(u64, String)> {
    losses(dir, "step,")
}

/// `(step, train_loss)` of the metrics rows of one kind (`step,` or `epoch,`).
fn losses(dir: &Path, kind: &str) -> Vec<(u64, String)> {
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    csv.lines()
        .filter(|l| l.starts_with(kind))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].parse().unwrap(), f[4].to_string())
        })
        .collect()
}

#[test]
fn train_then_eval_on_the_embedded_subset() {
    let out = tmp("train");
    let o = tekfac(&[
        "train",
        "--optimizer",
        "sgd",
        "--train-limit",
        "6400",
        "--batch-size",
        "64",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["config.json", "metrics.csv", "checkpoints/epoch-2-step-200"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let checkpoint = latest_checkpoint(&out);
    for f in [
        "weights.safetensors",
        "optimizer.safetensors",
        "manifest.json",
    ] {
        assert!(checkpoint.join(f).exists(), "{f} missing");
    }
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(
        config.contains("\"fisher\"") && config.contains("crate_version"),
        "{config}"
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let last_epoch = csv.lines().rfind(|l| l.starts_with("epoch,")).unwrap();
    let acc: f64 = last_epoch.split(',').nth(6).unwrap().parse().unwrap();
    assert!(
        acc > 0.70,
        "200 SGD steps reach > 70% test accuracy, got {acc}"
    );
    let e = tekfac(&["eval", "--run", out.to_str().unwrap()]);
    assert!(e.status.success(), "{}", text(&e));
    assert!(
        text(&e).contains(&format!("{:.2}%", 100.0 * acc)),
        "eval reproduces the logged accuracy: {}",
        text(&e)
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn resume_continues_bit_identically() {
    let (straight, split) = (tmp("straight"), tmp("split"));
    let common = [
        "train",
        "--optimizer",
        "tekfac",
        "--damping",
        "0.1",
        "--train-limit",
        "2000",
        "--batch-size",
        "50",
        "--stats-interval",
        "3",
        "--eigen-interval",
        "7",
        "--scale-interval",
        "2",
        "--log-every",
        "5",
        "--flip",
        "--shift",
        "2",
        "--quiet",
    ];
    let run = |out: &Path, steps: &str, resume: bool| {
        let mut a: Vec<&str> = common.to_vec();
        a.extend(["--max-steps", steps, "--out", out.to_str().unwrap()]);
        if resume {
            a.extend(["--resume", out.to_str().unwrap()]);
        }
        let o = tekfac(&a);
        assert!(o.status.success(), "{}", text(&o));
    };
    // 40 steps per epoch; the resume at step 22 falls inside a logging window and inside the
    // first epoch, whose mean loss (and that window's) must still cover every step. The random
    // flips and shifts of the resumed half must be those the straight run drew.
    run(&straight, "48", false);
    run(&split, "22", false);
    run(&split, "48", true);
    // Rows at 5, 10, …, 45, and at --max-steps 48 the mean of steps 46–48.
    assert_eq!(step_losses(&straight).len(), 10);
    // The stop at 22 logged the mean of steps 21–22 too; the resumed run's row at 25 still
    // covers 21–25, as the straight run's does.
    let mut resumed = step_losses(&split);
    let stop = resumed
        .iter()
        .position(|r| r.0 == 22)
        .expect("a row at the stop");
    resumed.remove(stop);
    assert_eq!(step_losses(&straight), resumed);
    assert_eq!(losses(&straight, "epoch,").len(), 1);
    assert_eq!(losses(&straight, "epoch,"), losses(&split, "epoch,"));
    let file = |d: &Path, f: &str| std::fs::read(latest_checkpoint(d).join(f)).unwrap();
    assert!(
        file(&straight, "weights.safetensors") == file(&split, "weights.safetensors"),
        "weights differ"
    );
    // NOTE: compared as dicts: safetensors writes the metadata in HashMap order.
    let state = |d: &Path| {
        tekfac::checkpoint::read_dict(&latest_checkpoint(d).join("optimizer.safetensors")).unwrap()
    };
    assert!(state(&straight) == state(&split), "optimizer state differs");
    std::fs::remove_dir_all(straight).unwrap();
    std::fs::remove_dir_all(split).unwrap();
}

#[test]
fn step_rows_report_the_mean_loss_of_their_window() {
    let (every, fourth) = (tmp("log1"), tmp("log4"));
    for (out, n) in [(&every, "1"), (&fourth, "4")] {
        let o = tekfac(&[
            "train",
            "--optimizer",
            "sgd",
            "--train-limit",
            "1000",
            "--batch-size",
            "50",
            "--epochs",
            "1",
            "--log-every",
            n,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let value = |v: &(u64, String)| v.1.parse::<f64>().unwrap();
    let per_step: Vec<f64> = step_losses(&every).iter().map(value).collect();
    let windows = step_losses(&fourth);
    assert_eq!((per_step.len(), windows.len()), (20, 5));
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(w.0, 4 * (i as u64 + 1));
        let mean = per_step[4 * i..4 * i + 4].iter().sum::<f64>() / 4.0;
        // NOTE: the CSV rounds losses to 6 decimals.
        assert!((value(w) - mean).abs() <= 2e-6, "{w:?} vs {mean}");
    }
    // The epoch row is the mean of all 20 batch losses.
    let epoch = losses(&fourth, "epoch,");
    let mean = per_step.iter().sum::<f64>() / 20.0;
    assert!(
        (value(&epoch[0]) - mean).abs() <= 2e-6,
        "{epoch:?} vs {mean}"
    );
    for d in [every, fourth] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn init_flag_is_recorded_and_sparse_init_trains_the_autoencoder() {
    let out = tmp("init");
    let o = tekfac(&[
        "train",
        "--model",
        "autoencoder",
        "--init",
        "sparse",
        "--optimizer",
        "sgd",
        "--train-limit",
        "512",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains("\"init\": \"sparse\""), "{config}");
    assert_usage_error(
        &tekfac(&["train", "--init", "orthogonal"]),
        "invalid value 'orthogonal'",
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn divergence_stops_cleanly_and_keeps_the_checkpoint() {
    let out = tmp("diverge");
    let o = tekfac(&[
        "train",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--checkpoint-every",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("non-finite") && msg.contains("at step") && msg.contains("layer fc"),
        "{msg}"
    );
    let weights = latest_checkpoint(&out).join("weights.safetensors");
    let mut params = tekfac::ParamStore::<f32>::seeded(0);
    tekfac::nn::presets::Mlp::new(&mut params, 784, 10).unwrap();
    tekfac::checkpoint::load_params(&weights, &mut params).expect("the last checkpoint loads");
    assert!(
        params.ids().all(|id| params.get(id).all_finite()),
        "the kept checkpoint is finite"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn bad_flags_and_missing_data_exit_with_code_2() {
    let o = tekfac(&["train", "--optimizer", "newton"]);
    assert_usage_error(&o, "invalid value 'newton'");
    let out = tmp("missing");
    let o = tekfac(&[
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        "/nonexistent/tekfac",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_usage_error(&o, "mnist train files not found");
    assert!(text(&o).contains("/nonexistent/tekfac"), "{}", text(&o));
    let o = tekfac(&["eval", "--run", "/nonexistent/run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn natural_gradient_defaults_train_the_cnn_preset() {
    // K-FAC and TKFAC took λ = 0.03 on the CNN and diverged by step 23; TEKFAC's literal
    // Eq. 3.5 conv damping diverged by step 6. The defaults must get through the first
    // statistics refreshes (steps 0, 10, 20) with a finite, falling loss.
    for optimizer in ["kfac", "tkfac", "tekfac"] {
        let out = tmp(&format!("cnn-{optimizer}"));
        let o = tekfac(&[
            "train",
            "--model",
            "cnn",
            "--optimizer",
            optimizer,
            "--max-steps",
            "25",
            "--batch-size",
            "64",
            "--log-every",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{optimizer}: {}", text(&o));
        let losses: Vec<f64> = step_losses(&out)
            .iter()
            .map(|(_, l)| l.parse().unwrap())
            .collect();
        assert!(losses.len() >= 20, "{optimizer}: {losses:?}");
        let n = losses.len();
        let (first, last) = (
            losses[..3].iter().sum::<f64>(),
            losses[n - 3..].iter().sum::<f64>(),
        );
        assert!(last < first, "{optimizer}: the loss falls: {losses:?}");
    }
}

#[test]
fn cli_flag_trains_ekfac_with_the_shift_and_records_it() {
    let out = tmp("damping-rule");
    let o = tekfac(&[
        "train",
        "--optimizer",
        "ekfac",
        "--damping-rule",
        "factored-shift",
        "--max-steps",
        "12",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(
        config.contains("\"damping_rule\": \"factored-shift\""),
        "{config}"
    );
    assert_usage_error(
        &tekfac(&["train", "--damping-rule", "pi"]),
        "invalid value 'pi'",
    );
    std::fs::remove_dir_all(out).unwrap();
}
