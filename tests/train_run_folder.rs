//! `tekfac::train::RunFolder`, the run folder a library training loop opens: what it cleans
//! for a new run and for a resumed one, and what it refuses. (The command's use of it, with
//! kills and tampering, is tested in tests/cli_checkpoints.rs.)

use std::path::Path;
use tekfac::optim::{Sgd, SgdConfig};
use tekfac::train::{Checkpoint, Position, RunFolder, read_metrics};
use tekfac::{ParamStore, Tensor};

/// A checkpoint of a one-parameter model at `step` in the run folder `run`.
fn checkpoint(run: &RunFolder, step: u64) -> Checkpoint {
    let mut ps = ParamStore::<f32>::seeded(0);
    ps.add("w", Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap())
        .unwrap();
    let pos = Position {
        step,
        batch: step as usize,
        ..Position::default()
    };
    let opt = Sgd::new(SgdConfig::default());
    run.checkpoints().save(&ps, &opt, &pos).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn a_new_run_clears_the_old_runs_checkpoints_and_temporaries_and_keeps_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run");
    let old = RunFolder::open(&path, None).unwrap();
    checkpoint(&old, 10);
    drop(old);
    for leftover in [
        ".metrics.csv.tmp-4242",
        "weights.safetensors",
        "optimizer.safetensors",
    ] {
        std::fs::write(path.join(leftover), b"left by an older or killed run").unwrap();
    }
    std::fs::write(path.join("notes.txt"), b"the user's").unwrap();
    let run = RunFolder::open(&path, None).unwrap();
    assert!(run.checkpoints().latest().unwrap().is_none());
    assert_eq!(names(&path), [".lock", "checkpoints", "notes.txt"]);
    run.metrics(None).unwrap();
    assert!(read_metrics(&path.join("metrics.csv")).unwrap().is_empty());
}

#[test]
fn a_resumed_run_keeps_the_newest_checkpoint_and_is_refused_when_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run");
    let run = RunFolder::open(&path, None).unwrap();
    let first = checkpoint(&run, 10);
    // NOTE: a killed run can leave an older checkpoint beside the newest (save removes the
    // older ones after the rename); copy one back in to stand for it.
    let newest = checkpoint(&run, 20);
    let stale = run.checkpoints().dir().join("epoch-0-step-10");
    std::fs::create_dir_all(&stale).unwrap();
    drop(run);

    let refused = RunFolder::open(&path, Some(&first))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("changed while this run started"),
        "{refused}"
    );
    assert!(stale.exists(), "a refused open keeps every checkpoint");

    let run = RunFolder::open(&path, Some(&newest)).unwrap();
    assert_eq!(
        run.checkpoints().list().unwrap(),
        std::slice::from_ref(&newest)
    );
    assert!(
        RunFolder::open(&path, Some(&newest)).is_err(),
        "the lock is held"
    );
    let pos = newest.position().unwrap();
    assert_eq!(pos.step, 20);
    run.metrics(Some(&pos)).unwrap();
}
