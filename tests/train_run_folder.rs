//! `tekfac::train::RunFolder`, the run folder a library training loop opens: what it cleans
//! for a new run and for a resumed one, and what it refuses; and a loop written with the
//! library's run layer alone (`RunFolder`, `Checkpoint::restore`, `MetricsCsv`,
//! `RunDefaults`), stopped and resumed, against one that never stopped. (The command's use of
//! it, with kills and tampering, is tested in tests/cli_checkpoints.rs.)

use std::path::Path;
use tekfac::dataset::{Batches, DataSource, FashionMnist, LastBatch, Split};
use tekfac::nn::{Activation, Linear, Sequential};
use tekfac::optim::{LrSchedule, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig, Variant};
use tekfac::train::{
    Checkpoint, Checkpoints, METRICS_FILE, Position, Row, RunDefaults, RunFolder, Task, evaluate,
    read_metrics, train_step,
};
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

/// What a library loop keeps of a run: its final weights and its `metrics.csv` rows without
/// the seconds.
struct Outcome {
    weights: Vec<Vec<f32>>,
    rows: Vec<String>,
}

/// A training loop written with the library's run layer alone: TEKFAC on a small MLP over the
/// first 640 images of the embedded Fashion-MNIST subset, [`RunDefaults`]' weight decay and
/// schedule, 3 epochs of 10 batches, a checkpoint every 4 steps and after each epoch, an
/// `epoch` row per epoch. With `resume` it continues the newest checkpoint in `dir`; with
/// `stop_after` it stops after that many steps (a checkpoint first), as a killed run would.
fn library_run(dir: &Path, resume: bool, stop_after: Option<u64>) -> Outcome {
    const EPOCHS: usize = 3;
    const BATCH: usize = 64;
    let data = FashionMnist::load_mini(Split::Train, &DataSource::default())
        .unwrap()
        .take(640);
    let mut params = ParamStore::<f32>::seeded(5);
    let net = Sequential::new()
        .push(Activation::Flatten)
        .push(Linear::new(&mut params, "fc1", 784, 32, true).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(&mut params, "fc2", 32, 10, true).unwrap());
    let defaults = RunDefaults::DEFAULT;
    let config = NgConfig {
        stats_interval: 2,
        scale_interval: 2,
        eigen_interval: 6,
        weight_decay: defaults.weight_decay,
        ..NgConfig::DEFAULT
    };
    let mut opt = NaturalGradient::new(Variant::Tekfac, config, &params).unwrap();
    let steps_per_epoch = (data.len() / BATCH) as u64;
    let schedule = LrSchedule {
        schedule: defaults.schedule(steps_per_epoch * EPOCHS as u64),
        warmup: 0,
    };

    // The run layer: the newest checkpoint restored, then the folder opened for this run.
    let resumed = match resume {
        true => Checkpoints::new(dir).latest().unwrap(),
        false => None,
    };
    let mut pos = match &resumed {
        Some(c) => c
            .restore(&mut params, Some(&mut opt as &mut dyn Optimizer<f32>))
            .unwrap(),
        None => Position::default(),
    };
    let run = RunFolder::open(dir, resumed.as_ref()).unwrap();
    let mut metrics = run.metrics(resumed.as_ref().map(|_| &pos)).unwrap();

    while pos.epoch < EPOCHS {
        let batches =
            Batches::new(data.len(), BATCH, 5, pos.epoch as u64, LastBatch::Drop).unwrap();
        for indices in batches.iter().skip(pos.batch) {
            opt.set_lr(NgConfig::DEFAULT.lr * schedule.factor(pos.step));
            let b = data.batch(indices).unwrap();
            let stats = train_step(
                &net,
                Task::Classify,
                &mut params,
                &mut opt,
                b.images,
                &b.labels,
                pos.step,
            )
            .unwrap();
            pos.step += 1;
            pos.batch += 1;
            pos.epoch_loss.add(stats.loss);
            if pos.step.is_multiple_of(4) {
                run.checkpoints().save(&params, &opt, &pos).unwrap();
            }
            if stop_after == Some(pos.step) {
                run.checkpoints().save(&params, &opt, &pos).unwrap();
                return outcome(&params, dir);
            }
        }
        let (loss, accuracy) = evaluate(
            &net,
            Task::Classify,
            &params,
            data.take(128).eval_batches(64),
        )
        .unwrap();
        pos.epoch += 1;
        pos.batch = 0;
        let row = Row {
            kind: "epoch",
            epoch: pos.epoch,
            step: pos.step,
            seconds: 0.0,
            train_loss: pos.epoch_loss.take_mean(),
            test_loss: Some(loss),
            test_accuracy: Some(accuracy),
            ..Row::default()
        };
        metrics.write(&row).unwrap();
        run.checkpoints().save(&params, &opt, &pos).unwrap();
    }
    outcome(&params, dir)
}

fn outcome(params: &ParamStore<f32>, dir: &Path) -> Outcome {
    let rows = read_metrics(&dir.join(METRICS_FILE)).unwrap();
    Outcome {
        weights: params
            .ids()
            .map(|id| params.get(id).data().to_vec())
            .collect(),
        rows: rows
            .iter()
            .map(|r| {
                Row {
                    seconds: 0.0,
                    ..r.clone()
                }
                .to_csv()
            })
            .collect(),
    }
}

#[test]
fn a_library_loop_stopped_and_resumed_from_its_folder_trains_as_one_that_never_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let whole = library_run(&dir.path().join("whole"), false, None);
    assert_eq!(whole.rows.len(), 3, "one epoch row per epoch");

    let parts = dir.path().join("parts");
    // Stops mid-epoch 2 (step 13 of 30), between two checkpoints of the schedule.
    library_run(&parts, false, Some(13));
    let resumed = library_run(&parts, true, None);
    assert_eq!(resumed.weights, whole.weights, "bit for bit");
    assert_eq!(resumed.rows, whole.rows);
}
