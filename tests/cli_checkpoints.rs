//! Run folders that tell the truth (issue 14 §3): a checkpoint is one atomic folder, so a
//! SIGKILL at any moment leaves a checkpoint that resumes bit-identically or none at all;
//! resume refuses a mixed, edited or incomplete checkpoint by name (unless the optimizer is
//! reset on purpose); two runs cannot write one folder; a resume keeps the saved settings.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tekfac::checkpoint::{TensorDict, read_dict};
use tekfac::train::{Checkpoints, RunLock, read_metrics};

mod support;
use support::cli::{Scratch, assert_usage_error, latest_checkpoint, tekfac, text, tmp};

/// Adam on 2,000 images in batches of 20: 100 steps an epoch, a metrics row every step.
const SMALL: [&str; 10] = [
    "train",
    "--optimizer",
    "adam",
    "--train-limit",
    "2000",
    "--batch-size",
    "20",
    "--log-every",
    "1",
    "--quiet",
];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

/// Every metrics row without its wall-clock seconds.
fn rows_without_seconds(run: &Path) -> Vec<String> {
    read_metrics(&run.join("metrics.csv"))
        .unwrap()
        .into_iter()
        .map(|r| format!("{:?}", tekfac::train::Row { seconds: 0.0, ..r }))
        .collect()
}

/// The finished run in `run` matches the uninterrupted one in `straight`: same metrics rows
/// (apart from seconds), same final weights bytes, same optimizer state.
fn assert_same_run(straight: &Path, run: &Path) {
    assert_eq!(rows_without_seconds(straight), rows_without_seconds(run));
    let (a, b) = (latest_checkpoint(straight), latest_checkpoint(run));
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert!(read(&a, "weights.safetensors") == read(&b, "weights.safetensors"));
    let state = |d: &Path| read_dict(&d.join("optimizer.safetensors")).unwrap();
    assert!(state(&a) == state(&b), "optimizer state differs");
}

/// Starts the killed series' next process: a resume when a complete checkpoint exists, else a
/// fresh start.
fn spawn_next(run: &Path) -> std::process::Child {
    let out = run.to_str().unwrap();
    let mut args = with(
        &SMALL,
        &["--epochs", "3", "--checkpoint-every", "2", "--out", out],
    );
    if Checkpoints::new(run).latest().unwrap().is_some() {
        args.extend(["--resume", out]);
    }
    Command::new(env!("CARGO_BIN_EXE_tekfac"))
        .args(&args)
        .env_remove("TEKFAC_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether the killed series in `run` has its last epoch's checkpoint (all 3 epochs done).
fn finished_series(run: &Path) -> bool {
    let latest = Checkpoints::new(run).latest().unwrap();
    latest.is_some_and(|c| c.epoch == 3)
}

/// Waits up to `delay` for the child; `None` when it is still running.
fn wait_up_to(
    child: &mut std::process::Child,
    delay: Duration,
) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_mixed_checkpoint() {
    use rand::RngExt;
    let (straight, run) = (tmp("kill-straight"), tmp("kill-run"));
    let o = tekfac(&with(
        &SMALL,
        &["--epochs", "3", "--out", straight.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", text(&o));
    let mut rng = tekfac::tensor::seeded_rng(14);
    let (mut kills, mut finished) = (0, 0);
    // Kills that left a checkpoint half-written, and two complete ones (before the older one
    // was deleted): the moments a non-atomic checkpoint would have been mixed.
    let (mut mid_write, mut two_complete) = (0, 0);
    while kills < 24 {
        // NOTE: a kill after the last epoch's checkpoint (while the charts are drawn) leaves a
        // finished run, which `--resume` refuses to extend (exit 2): the series is over.
        if finished_series(&run) {
            assert_same_run(&straight, &run);
            finished += 1;
            std::fs::remove_dir_all(&run).unwrap();
        }
        let mut child = spawn_next(&run);
        let delay = Duration::from_millis(rng.random_range(150..1200));
        match wait_up_to(&mut child, delay) {
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                let folders = |prefix: &str| {
                    std::fs::read_dir(run.join("checkpoints")).map_or(0, |d| {
                        d.filter(|e| {
                            let name = e.as_ref().unwrap().file_name();
                            name.to_string_lossy().starts_with(prefix)
                        })
                        .count()
                    })
                };
                mid_write += usize::from(folders(".tmp-") > 0);
                two_complete += usize::from(folders("epoch-") > 1);
                // Whatever the moment, the newest complete checkpoint is whole.
                if let Some(c) = Checkpoints::new(&run).latest().unwrap() {
                    let pos = c.position().unwrap();
                    let mut params = tekfac::ParamStore::<f32>::seeded(0);
                    tekfac::nn::presets::Mlp::new(&mut params, 784, 10).unwrap();
                    c.load_weights(&mut params).unwrap();
                    assert_eq!((pos.epoch, pos.step), (c.epoch, c.step));
                }
            }
            Some(status) => {
                let o = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&o.stderr).to_string();
                assert!(status.success(), "a restart after a kill failed: {err}");
                // The series finished: it must be the uninterrupted run, bit for bit.
                assert_same_run(&straight, &run);
                finished += 1;
                std::fs::remove_dir_all(&run).unwrap();
            }
        }
    }
    let child = spawn_next(&run);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_run(&straight, &run);
    eprintln!(
        "{kills} kills ({mid_write} while a checkpoint was being written, {two_complete} \
         between its rename and the removal of the previous one), {} series resumed to the end",
        finished + 1
    );
    std::fs::remove_dir_all(run).unwrap();
    std::fs::remove_dir_all(straight).unwrap();
}

/// A TEKFAC run of one epoch with a checkpoint every 5 steps, stopped at step 15.
fn tekfac_run(name: &str) -> Scratch {
    let out = tmp(name);
    let o = tekfac(&[
        "train",
        "--optimizer",
        "tekfac",
        "--train-limit",
        "500",
        "--batch-size",
        "25",
        "--epochs",
        "1",
        "--checkpoint-every",
        "5",
        "--max-steps",
        "15",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    out
}

/// `tekfac train --resume run` with `extra` flags.
fn resume(run: &Path, extra: &[&str]) -> std::process::Output {
    let out = run.to_str().unwrap();
    tekfac(&with(&["train", "--resume", out, "--quiet"], extra))
}

/// Rewrites the optimizer file of the newest checkpoint after `edit` (the manifest is kept).
fn edit_optimizer(run: &Path, edit: impl FnOnce(&mut TensorDict)) {
    let path = latest_checkpoint(run).join("optimizer.safetensors");
    let mut dict = read_dict(&path).unwrap();
    edit(&mut dict);
    std::fs::write(&path, dict.to_bytes().unwrap()).unwrap();
}

/// A change to an optimizer file.
type Edit = Box<dyn Fn(&mut TensorDict)>;

#[test]
fn a_damaged_optimizer_state_is_refused_by_name_unless_reset_on_purpose() {
    let momentum = "ng.fc1.momentum";
    let cases: [(&str, Edit, &str); 5] = [
        (
            "missing",
            Box::new(|d| assert!(d.remove(momentum))),
            momentum,
        ),
        (
            "renamed",
            Box::new(|d| {
                let t = d.tensor::<f32>(momentum).unwrap();
                d.remove(momentum);
                d.put_tensor("ng.fc1.momentun", &t);
            }),
            momentum,
        ),
        (
            "cut short",
            Box::new(|d| {
                let t = d.tensor::<f32>(momentum).unwrap();
                let short = tekfac::Tensor::from_vec(t.data()[..10].to_vec(), &[10]).unwrap();
                d.put_tensor(momentum, &short);
            }),
            momentum,
        ),
        (
            "NaN",
            Box::new(|d| {
                let (shape, mut data) = d.f64s("ng.fc2.g_factor").unwrap();
                data[3] = f64::NAN;
                d.put_f64("ng.fc2.g_factor", &shape, &data);
            }),
            "ng.fc2.g_factor",
        ),
        (
            "edited",
            Box::new(|d| {
                let (shape, mut data) = d.f64s("ng.fc3.d_a").unwrap();
                data[0] *= 2.0;
                d.put_f64("ng.fc3.d_a", &shape, &data);
            }),
            "SHA-256",
        ),
    ];
    for (what, edit, needle) in cases {
        let run = tekfac_run(&format!("damaged-{}", what.replace(' ', "-")));
        edit_optimizer(&run, edit);
        let o = resume(&run, &[]);
        assert_usage_error(&o, needle);
        assert!(
            text(&o).contains("--reset-optimizer"),
            "{what}: {}",
            text(&o)
        );
        let o = resume(&run, &["--reset-optimizer"]);
        assert!(o.status.success(), "{what}: {}", text(&o));
        assert!(text(&o).contains("restarts from zero"), "{}", text(&o));
        std::fs::remove_dir_all(run).unwrap();
    }
}

#[test]
fn a_mixed_checkpoint_is_refused() {
    let run = tekfac_run("mixed");
    // Weights of the uninterrupted run at step 20, copied into the checkpoint of step 15.
    let other = tmp("mixed-other");
    let o = tekfac(&[
        "train",
        "--optimizer",
        "tekfac",
        "--train-limit",
        "500",
        "--batch-size",
        "25",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let weights = |d: &Path| latest_checkpoint(d).join("weights.safetensors");
    std::fs::copy(weights(&other), weights(&run)).unwrap();
    assert_usage_error(&resume(&run, &[]), "was written at step 20, not 15");
    // The weights of the same step from another run (same names, same step): the hash.
    let manifest = latest_checkpoint(&run).join("manifest.json");
    let text_of = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text_of.replace("\"step\": \"15\"", "\"step\": \"16\""),
    )
    .unwrap();
    assert_usage_error(&resume(&run, &[]), "named for epoch 0 step 15");
    for d in [run, other] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_checkpoint_stores_every_loss_of_its_epoch() {
    // --checkpoint-every 5 saves at step 15 after adding that step's loss to the epoch's sum.
    let run = tekfac_run("loss-count");
    let pos = Checkpoints::new(&run)
        .latest()
        .unwrap()
        .unwrap()
        .position()
        .unwrap();
    assert_eq!((pos.step, pos.batch, pos.epoch_loss.count), (15, 15, 15));
    // Resumed to the end of the epoch, the epoch row is the mean of all 20 losses, as in a
    // run that was never stopped.
    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let straight = tmp("loss-count-straight");
    let o = tekfac(&[
        "train",
        "--optimizer",
        "tekfac",
        "--train-limit",
        "500",
        "--batch-size",
        "25",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        straight.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let epoch_rows = |d: &Path| {
        let rows = read_metrics(&d.join("metrics.csv")).unwrap();
        rows.into_iter()
            .filter(|r| r.kind == "epoch")
            .map(|r| r.train_loss)
            .collect::<Vec<_>>()
    };
    assert_eq!(epoch_rows(&run), epoch_rows(&straight));
    for d in [run, straight] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_resume_keeps_the_saved_settings_and_refuses_changed_ones() {
    let run = tmp("saved-settings");
    let out = run.to_str().unwrap();
    let o = tekfac(&with(
        &SMALL,
        &["--epochs", "2", "--max-steps", "30", "--out", out],
    ));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("stopped at --max-steps 30"),
        "{}",
        text(&o)
    );
    // No --epochs: the saved 2, not the default 3.
    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = read_metrics(&run.join("metrics.csv")).unwrap();
    let epochs: Vec<usize> = rows
        .iter()
        .filter(|r| r.kind == "epoch")
        .map(|r| r.epoch)
        .collect();
    assert_eq!(epochs, [1, 2]);
    assert_usage_error(&resume(&run, &[]), "--epochs");
    assert_usage_error(
        &resume(&run, &["--epochs", "3", "--lr", "0.5"]),
        "--lr 0.5 differs",
    );
    assert_usage_error(
        &resume(&run, &["--epochs", "3", "--out", "/tmp/x"]),
        "--out",
    );
    // Repeating a saved value is fine; --epochs may grow.
    let o = resume(
        &run,
        &["--epochs", "3", "--optimizer", "adam", "--batch-size", "20"],
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(run).unwrap();
}

#[test]
fn a_second_writer_of_a_run_folder_is_refused() {
    let run = tmp("locked");
    std::fs::create_dir_all(&run).unwrap();
    let lock = RunLock::acquire(&run).unwrap();
    let o = tekfac(&with(
        &SMALL,
        &["--epochs", "1", "--out", run.to_str().unwrap()],
    ));
    assert_usage_error(&o, "in use by another tekfac process");
    assert_eq!(
        std::fs::read_dir(&run).unwrap().count(),
        1,
        "only the lock file"
    );
    drop(lock);
    let o = tekfac(&with(
        &SMALL,
        &["--epochs", "1", "--out", run.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(run).unwrap();
}
