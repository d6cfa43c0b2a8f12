//! `tekfac train`'s loop trains exactly as the library's textbook loop does: the weights of its
//! checkpoint after 14 steps (an epoch boundary, with its evaluation and checkpoint, on the way)
//! are bit for bit those of `train_step` over the same `Batches`, each batch copied row by row
//! from the training set, for SGD and Adam on 1 and 2 threads. Also: `Dataset::batch` (gathered
//! on rayon's threads for large batches) gives the values of that row-by-row copy, and
//! `tekfac::cli::Steps` (the engine bench's handle on the command's loop) trains as it does.

use std::path::{Path, PathBuf};
use tekfac::dataset::{Batches, DataSource, Dataset, LastBatch, load_train_eval};
use tekfac::nn::{Init, Mlp};
use tekfac::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use tekfac::train::{Checkpoints, Task, train_step};
use tekfac::{ParamStore, Tensor};

mod support;
use support::cli::{tekfac, text, tmp};
use support::tensors::on_threads;

const SEED: u64 = 5;
const BATCH: usize = 100;
const LIMIT: usize = 1000;
const STEPS: u64 = 14;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-mini")
}

/// The training split the CLI trains on (`--train-limit 1000` of the embedded subset).
fn train_split() -> Dataset {
    let source = DataSource::from_dir(data_dir());
    let (train, _) =
        load_train_eval("fashion-mnist-mini", 0, &source).expect("the embedded subset");
    train.take(LIMIT)
}

/// The batch `indices` copied row by row (the textbook gather).
fn copied(data: &Dataset, indices: &[usize]) -> (Tensor<f32>, Vec<usize>) {
    let images: Vec<f32> = indices
        .iter()
        .flat_map(|&i| data.image(i).expect("an index in range").iter().copied())
        .collect();
    let labels = indices.iter().map(|&i| data.labels()[i] as usize).collect();
    let dims = [indices.len(), 1, data.rows(), data.cols()];
    (Tensor::from_vec(images, &dims).unwrap(), labels)
}

fn optimizer(name: &str) -> Box<dyn Optimizer<f32>> {
    match name {
        "sgd" => Box::new(Sgd::new(SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        })),
        _ => Box::new(Adam::new(AdamConfig {
            lr: 0.001,
            weight_decay: 0.0,
            ..Default::default()
        })),
    }
}

fn lr(name: &str) -> &'static str {
    if name == "sgd" { "0.05" } else { "0.001" }
}

/// A fresh MLP preset as `tekfac train --model mlp --seed 5` builds it.
fn fresh(data: &Dataset) -> (Mlp, ParamStore<f32>) {
    let mut ps = ParamStore::<f32>::seeded(SEED);
    let model = Mlp::with_init(&mut ps, data.pixels(), data.classes(), Init::FanInUniform).unwrap();
    (model, ps)
}

/// The weights after `steps` steps of `train_step` over the epochs' batches.
fn textbook(data: &Dataset, name: &str, steps: u64) -> Vec<Vec<f32>> {
    let (model, mut ps) = fresh(data);
    let mut opt = optimizer(name);
    let mut step = 0;
    for epoch in 0.. {
        let batches = Batches::new(data.len(), BATCH, SEED, epoch, LastBatch::Drop).unwrap();
        for indices in batches.iter() {
            let (x, labels) = copied(data, indices);
            train_step(
                &model,
                Task::Classify,
                &mut ps,
                opt.as_mut(),
                x,
                &labels,
                step,
            )
            .unwrap();
            step += 1;
            if step == steps {
                return ps.ids().map(|id| ps.get(id).data().to_vec()).collect();
            }
        }
    }
    unreachable!("the epochs never end")
}

/// `tekfac train`'s flags for a run of `name` on [`train_split`] into `out` (no `--threads`,
/// no `--max-steps`).
fn flags(name: &str, out: &Path) -> Vec<String> {
    let dir = data_dir();
    let flags = [
        "--dataset",
        "fashion-mnist-mini",
        "--data-dir",
        dir.to_str().unwrap(),
        "--model",
        "mlp",
        "--optimizer",
        name,
        "--lr",
        lr(name),
        "--momentum",
        "0.9",
        "--weight-decay",
        "0",
        "--schedule",
        "constant",
        "--warmup",
        "0",
        "--batch-size",
        &BATCH.to_string(),
        "--train-limit",
        &LIMIT.to_string(),
        "--seed",
        &SEED.to_string(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    flags.iter().map(|f| f.to_string()).collect()
}

/// The weights of `out`'s newest checkpoint, which must be at step `steps`.
fn checkpointed(data: &Dataset, out: &Path, steps: u64) -> Vec<Vec<f32>> {
    let ckpt = Checkpoints::new(out)
        .latest()
        .unwrap()
        .expect("a checkpoint");
    let (_, mut ps) = fresh(data);
    let pos = ckpt.restore(&mut ps, None).unwrap();
    assert_eq!(pos.step, steps);
    ps.ids().map(|id| ps.get(id).data().to_vec()).collect()
}

/// The weights of the checkpoint `tekfac train` writes after [`STEPS`] steps.
fn cli(data: &Dataset, name: &str, threads: usize) -> Vec<Vec<f32>> {
    let out = tmp(&format!("loop-{name}-{threads}"));
    let mut args = vec!["train".to_string()];
    args.extend(flags(name, &out));
    let (steps, threads) = (STEPS.to_string(), threads.to_string());
    args.extend(["--max-steps", &steps, "--threads", &threads].map(String::from));
    let o = tekfac(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    checkpointed(data, &out, STEPS)
}

fn bits(w: &[Vec<f32>]) -> Vec<Vec<u32>> {
    w.iter()
        .map(|p| p.iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn the_cli_loop_trains_as_train_step_over_copied_batches() {
    let data = train_split();
    for name in ["sgd", "adam"] {
        let reference = bits(&on_threads(1, || textbook(&data, name, STEPS)));
        assert_eq!(
            bits(&on_threads(2, || textbook(&data, name, STEPS))),
            reference,
            "{name}"
        );
        for threads in [1, 2] {
            assert_eq!(
                bits(&cli(&data, name, threads)),
                reference,
                "{name}, --threads {threads}: the CLI's weights differ from train_step's"
            );
        }
    }
}

/// `tekfac::cli::Steps`, through which the engine bench times the command's loop in its own
/// process, runs that loop: the checkpoint it writes after 8 of the epoch's 10 steps
/// (`--checkpoint-every 4`) holds `train_step`'s weights, and it refuses an 11th step (the
/// epoch's end is not a step).
#[test]
fn the_bench_handle_on_the_cli_loop_trains_as_the_cli() {
    let data = train_split();
    let reference = bits(&textbook(&data, "sgd", 8));
    let out = tmp("loop-steps");
    let mut args = flags("sgd", &out);
    args.extend(["--checkpoint-every", "4"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steps = tekfac::cli::Steps::new(&args).unwrap();
    for _ in 0..8 {
        steps.step().unwrap();
    }
    assert_eq!(bits(&checkpointed(&data, &out, 8)), reference);
    steps.step().unwrap();
    steps.step().unwrap();
    assert_eq!(steps.steps(), 10);
    let err = steps.step().unwrap_err().to_string();
    assert!(err.contains("used up"), "{err}");
}

#[test]
fn gathered_batches_equal_row_by_row_copies_on_any_thread_count() {
    let data = train_split();
    // NOTE: 128 and 1000 rows are gathered in parallel (≥ 2·32k values), 3 and 40 are not.
    for n in [3, 40, 128, 1000] {
        let order = Batches::new(data.len(), n, 9, 1, LastBatch::Drop).unwrap();
        let indices = order.iter().next().unwrap();
        let (x, labels) = copied(&data, indices);
        for threads in [1, 2, 3] {
            let b = on_threads(threads, || data.batch(indices)).unwrap();
            assert_eq!(b.images.dims(), x.dims(), "{n} rows");
            assert_eq!(b.images.data(), x.data(), "{n} rows, {threads} threads");
            assert_eq!(b.labels, labels);
        }
    }
    // An index past the end is refused, the first such index named, whatever its position.
    let mut indices: Vec<usize> = (0..200).collect();
    indices[150] = LIMIT + 7;
    indices[190] = LIMIT + 9;
    let err = data.batch(&indices).unwrap_err().to_string();
    assert!(err.contains(&(LIMIT + 7).to_string()), "{err}");
    assert!(!err.contains(&(LIMIT + 9).to_string()), "{err}");
}
