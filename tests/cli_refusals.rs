//! Every nonsense setting is refused before anything is written: exit code 2, a message that
//! names the flag, no panic, and no run folder created or changed (issue 14 §2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod support;
use support::cli::{Scratch, tekfac, text, tmp};

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let modified = path.metadata().unwrap().modified().unwrap();
                files.insert(path.clone(), (std::fs::read(&path).unwrap(), modified));
            }
        }
    }
    files
}

/// `(arguments after the subcommand, text the message must contain)`.
const TRAIN_REFUSALS: &[(&[&str], &str)] = &[
    (&["--lr=-0.1"], "--lr"),
    (&["--lr", "-0.1"], "--lr"),
    (&["--lr", "nan"], "--lr"),
    (&["--lr", "inf"], "--lr"),
    (&["--lr", "0"], "--lr"),
    (&["--momentum=-5"], "--momentum"),
    (&["--momentum", "1"], "--momentum"),
    (&["--weight-decay=-1"], "--weight-decay"),
    (&["--gamma=-1"], "--gamma"),
    (&["--kl-clip", "nan"], "--kl-clip"),
    (&["--kl-clip", "0"], "--kl-clip"),
    (&["--damping=-0.1"], "--damping"),
    (&["--damping", "nan"], "--damping"),
    (&["--optimizer", "sgd", "--damping", "0.1"], "--damping"),
    (&["--optimizer", "adam", "--kl-clip", "0.01"], "--kl-clip"),
    (&["--ema-decay", "2"], "--ema-decay"),
    (&["--ema-decay", "nan"], "--ema-decay"),
    (&["--ema-decay=-0.5"], "--ema-decay"),
    (&["--stats-interval", "0"], "--stats-interval"),
    (&["--eigen-interval", "0"], "--eigen-interval"),
    (&["--scale-interval", "0"], "--scale-interval"),
    (&["--fisher-samples", "0"], "--fisher-samples"),
    (&["--conv-damping-floor=-1"], "--conv-damping-floor"),
    (&["--epochs", "0"], "--epochs"),
    (&["--epochs=-1"], "--epochs"),
    (&["--batch-size", "0"], "--batch-size"),
    (&["--batch-size", "10001"], "--batch-size"),
    (
        &["--train-limit", "100", "--batch-size", "101"],
        "--batch-size",
    ),
    (&["--train-limit", "10001"], "--train-limit"),
    (&["--log-every", "0"], "--log-every"),
    (&["--threads", "100000"], "--threads"),
    (&["--holdout", "10000"], "--holdout"),
    (&["--shift", "28"], "--shift"),
    (&["--optimizer", "newton"], "--optimizer"),
    (&["--classes", "10"], "--classes"),
];

const COMPARE_REFUSALS: &[(&[&str], &str)] = &[
    (&["--target-accuracy", "2"], "--target-accuracy"),
    (&["--lr-for", "sgd=-1"], "--lr-for"),
    (&["--lr", "-1"], "--lr"),
    (&["--ema-decay", "1.5"], "--ema-decay"),
];

/// An `idx:` data folder: `n_train` training images with labels `i % 3`, and `n_test` test
/// images.
fn idx_folder(name: &str, n_train: usize, n_test: usize) -> Scratch {
    use tekfac::dataset::idx::encode_idx;
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let images = encode_idx(&[n, 28, 28], &vec![7u8; n * 784]).unwrap();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        let labels = encode_idx(&[n], &labels).unwrap();
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
    dir
}

/// Runs `sub args --out out` and checks the refusal.
fn assert_refused(sub: &str, args: &[&str], needle: &str, out: &Path) {
    let mut all = vec![sub];
    all.extend_from_slice(args);
    all.extend(["--quiet", "--out", out.to_str().unwrap()]);
    let o = tekfac(&all);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(2), "{all:?}: {msg}");
    assert!(msg.contains(needle), "{all:?}: {needle:?} not in {msg}");
    assert!(!msg.contains("panicked"), "{all:?}: {msg}");
}

#[test]
fn every_refused_setting_exits_2_names_the_flag_and_touches_nothing() {
    let existing = tmp("refusals-run");
    let o = tekfac(&[
        "train",
        "--optimizer",
        "sgd",
        "--train-limit",
        "500",
        "--batch-size",
        "50",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        existing.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let before = snapshot(&existing);
    let fresh = tmp("refusals-fresh");
    let no_test = idx_folder("refusals-no-test", 30, 0);
    let no_test = format!("idx:{}", no_test.display());
    let stray = idx_folder("refusals-stray-label", 30, 10);
    let mut labels: Vec<u8> = (0..30).map(|i| (i % 3) as u8).collect();
    labels[5] = 255;
    let labels = tekfac::dataset::idx::encode_idx(&[30], &labels).unwrap();
    std::fs::write(stray.join("train-labels-idx1-ubyte"), labels).unwrap();
    let stray = format!("idx:{}", stray.display());
    let data_refusals: &[(&[&str], &str)] = &[
        (&["--dataset", &no_test, "--batch-size", "10"], "--dataset"),
        (&["--dataset", &stray], "train-labels-idx1-ubyte"),
        (&["--dataset", &stray, "--classes", "0"], "--classes"),
        (&["--dataset", &stray, "--classes", "257"], "--classes"),
        (
            &["--dataset", &stray, "--classes", "200"],
            "out of range for 200 classes",
        ),
    ];
    let run = existing.to_str().unwrap();
    let resume_refusals: &[(&[&str], &str)] = &[
        (&["--resume", run], "--epochs"),
        (&["--resume", run, "--epochs", "0"], "--epochs"),
        (&["--resume", run, "--epochs", "2", "--lr", "0.5"], "--lr"),
        (
            &["--resume", run, "--epochs", "2", "--model", "cnn"],
            "--model",
        ),
        (
            &["--resume", run, "--epochs", "2", "--max-steps", "5"],
            "--max-steps",
        ),
        (&["--reset-optimizer"], "--resume"),
    ];
    for (args, needle) in resume_refusals {
        assert_refused("train", args, needle, &existing);
    }
    assert_refused("train", &["--resume", run], "--out", &fresh);
    let tables = [
        ("train", TRAIN_REFUSALS),
        ("compare", COMPARE_REFUSALS),
        ("train", data_refusals),
    ];
    for (sub, table) in tables {
        for (args, needle) in table {
            assert_refused(sub, args, needle, &existing);
            assert_refused(sub, args, needle, &fresh);
            assert!(
                !fresh.exists(),
                "{sub} {args:?} created {}",
                fresh.display()
            );
        }
    }
    assert!(
        snapshot(&existing) == before,
        "a refused command changed the run folder"
    );
    std::fs::remove_dir_all(existing).unwrap();
}

#[test]
fn json_output_is_pure_and_a_closed_pipe_stops_cleanly() {
    let out = tmp("json");
    let o = tekfac(&[
        "train",
        "--optimizer",
        "sgd",
        "--train-limit",
        "500",
        "--batch-size",
        "50",
        "--epochs",
        "2",
        "--log-every",
        "3",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    // 10 steps per epoch: step rows at 3, 6, 9, 12, 15, 18 and two epoch rows.
    assert_eq!(lines.len(), 8, "{stdout}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["kind"] == "step" || v["kind"] == "epoch", "{line}");
    }
    assert!(String::from_utf8_lossy(&o.stderr).contains("run saved in"));

    // The reader of stdout goes away after one line: a message and exit 1, not a panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tekfac"))
        .args(["train", "--optimizer", "sgd", "--log-every", "1", "--json"])
        .args(["--out", out.to_str().unwrap()])
        .env_remove("TEKFAC_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("stdout") && !err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(out).unwrap();
}
