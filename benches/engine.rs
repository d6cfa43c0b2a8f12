//! Engine benchmark: f32 GEMM rates, and the training step of the MLP preset 784-512-256-10
//! (ReLU) at batch 128 with SGD-momentum and with Adam, side by side with the JAX peer
//! (`../shared/bench/peer`) when its venv exists (`../shared/bench/peer/setup.sh`). With `--cli`
//! it times one epoch of `tekfac train` instead: a 2-epoch run minus a 1-epoch run on
//! Fashion-MNIST (`TEKFAC_DATA_DIR`), against the peer's epoch of jitted steps.
//!
//! With `--loop` it interleaves, in one process, blocks of the bare SGD step with blocks of the
//! library pieces of `tekfac train`'s loop (batch gather + `train_step`) and blocks of the
//! command's own loop (`tekfac::cli::Steps`: the same turn of the loop the binary runs, progress
//! bar and metrics rows included) on Fashion-MNIST.
//!
//! Run: cargo bench --bench engine -- [--threads 2] [--rounds 5] [--no-peer] [--cli] [--loop]
//! [--no-spin]
//!
//! The steps run with `tekfac::spin_workers` (rayon's workers poll instead of sleeping between
//! kernels), as `tekfac train` runs them; `--no-spin` times them without.
//!
//! NOTE: the shared machines drift by 2× within a minute. Each round times SGD, then Adam, then
//! the peer, and every ratio reported is the median of the per-round ratios, with their range.

#[path = "common/peer.rs"]
mod peer;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tekfac::kernels::gemm::{MatRef, gemm_into};
use tekfac::kernels::transpose::transpose_batched;
use tekfac::nn::{Mlp, Module};
use tekfac::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use tekfac::tensor::seeded_rng;
use tekfac::{ParamStore, Tape, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn arg(name: &str) -> Option<usize> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|s| s.parse().ok())
}

/// `median (min–max)` of per-round ratios.
fn spread(ratios: &[f64]) -> String {
    spread_to(ratios, 2)
}

/// [`spread`] to `digits` decimals.
fn spread_to(ratios: &[f64], digits: usize) -> String {
    let lo = ratios.iter().cloned().fold(f64::MAX, f64::min);
    let hi = ratios.iter().cloned().fold(0.0, f64::max);
    let mid = median(ratios.to_vec());
    format!("{mid:.digits$} (rounds {lo:.digits$}-{hi:.digits$})")
}

/// Median seconds per call of `f` over `blocks` blocks of `reps` calls, after a warm-up.
fn time(reps: usize, blocks: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps {
        f();
    }
    median(
        (0..blocks)
            .map(|_| {
                let t = Instant::now();
                (0..reps).for_each(|_| f());
                t.elapsed().as_secs_f64() / reps as f64
            })
            .collect(),
    )
}

/// GFLOP/s of `op(A)·op(B)` (`m×k` times `k×n`), each operand stored as its op's transpose when
/// its flag is set (so `(false, true)` is the dense forward `X·Wᵀ`).
fn gemm_gflops((m, k, n): (usize, usize, usize), (ta, tb): (bool, bool)) -> f64 {
    let mut rng = seeded_rng(0);
    let a = Tensor::<f32>::randn(&[m * k], 0.0, 1.0, &mut rng);
    let b = Tensor::<f32>::randn(&[k * n], 0.0, 1.0, &mut rng);
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    let mut c = vec![0f32; m * n];
    let reps = (2e9 / (2.0 * (m * k * n) as f64)).clamp(1.0, 200.0) as usize;
    let s = time(reps, 7, || {
        gemm_into(
            1.0,
            MatRef::new(a.data(), ar, ac, ta),
            MatRef::new(b.data(), br, bc, tb),
            0.0,
            &mut c,
        )
    });
    2.0 * (m * k * n) as f64 / s / 1e9
}

/// The MLP preset, one optimizer and one batch, as `tekfac train --model mlp` steps them.
struct MlpStep {
    ps: ParamStore<f32>,
    model: Mlp,
    opt: Box<dyn Optimizer<f32>>,
    x: Tensor<f32>,
    y: Vec<usize>,
}

impl MlpStep {
    fn new(opt: Box<dyn Optimizer<f32>>) -> Self {
        let mut ps = ParamStore::<f32>::seeded(0);
        let model = Mlp::new(&mut ps, 784, 10).expect("the MLP preset registers its parameters");
        // NOTE: the batch flat, `[128, 784]`, as `tekfac train` hands it to a model that
        // flattens its input (`Module::flattens_input`): no flatten copy in the step.
        let x = Tensor::<f32>::rand_uniform(&[128, 784], 0.0, 1.0, &mut seeded_rng(1));
        let y = (0..128).map(|i| i % 10).collect();
        MlpStep {
            ps,
            model,
            opt,
            x,
            y,
        }
    }

    /// One step; returns the end times of its forward (with the loss) and backward passes.
    fn step(&mut self) -> (Instant, Instant) {
        let mut tape = Tape::new(&self.ps);
        let xv = tape.input(self.x.clone());
        let logits = self.model.forward(&mut tape, xv).expect("valid shapes");
        let loss = tape.cross_entropy(logits, &self.y).expect("valid labels");
        let forward = Instant::now();
        let pass = tape.backward(loss).expect("a loss node");
        let backward = Instant::now();
        self.opt.step(&mut self.ps, &pass).expect("matching shapes");
        (forward, backward)
    }

    /// Median milliseconds per step (7 blocks of 50 steps).
    fn step_ms(&mut self) -> f64 {
        time(50, 7, || {
            self.step();
        }) * 1e3
    }

    /// Median milliseconds of (forward, backward, update) over 200 single steps.
    fn breakdown(&mut self) -> [f64; 3] {
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..200 {
            let start = Instant::now();
            let (forward, backward) = self.step();
            let end = Instant::now();
            for (p, (a, b)) in
                parts
                    .iter_mut()
                    .zip([(start, forward), (forward, backward), (backward, end)])
            {
                p.push((b - a).as_secs_f64() * 1e3);
            }
        }
        parts.map(median)
    }
}

fn sgd() -> Box<dyn Optimizer<f32>> {
    Box::new(Sgd::new(SgdConfig::default()))
}

fn adam() -> Box<dyn Optimizer<f32>> {
    Box::new(Adam::new(AdamConfig::default()))
}

/// Rounds of (SGD step, Adam step, JAX step), and the ratios of each round; `spin`: with
/// [`tekfac::spin_workers`] (as `tekfac train` runs).
fn step_rounds(rounds: usize, use_peer: bool, spin: bool) {
    let (mut sgd_ms, mut adam_ms, mut jax_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut vs_jax, mut adam_vs_sgd) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // NOTE: fresh weights each round. Training on one batch for thousands of steps drives
        // the gradients of that batch to 0 and the momentum buffers into subnormal numbers,
        // whose arithmetic is many times slower: a benchmark artefact.
        let (mut sgd_step, mut adam_step) = (MlpStep::new(sgd()), MlpStep::new(adam()));
        // NOTE: the workers poll for work while tekfac's steps run, as in `tekfac train`, and
        // may sleep again before the peer runs.
        let awake = spin.then(tekfac::spin_workers);
        let s = sgd_step.step_ms();
        let [f, b, u] = sgd_step.breakdown();
        let a = adam_step.step_ms();
        let [_, _, au] = adam_step.breakdown();
        drop(awake);
        let j = use_peer
            .then(|| peer::jax_step_ms("mlp", &["--blocks", "5", "--steps", "50"]))
            .flatten();
        let shown = j.map_or("-".into(), |j| format!("{j:.2}"));
        println!(
            "round {round}: SGD {s:.2} ms (forward {f:.2}, backward {b:.2}, update {u:.2}), \
             Adam {a:.2} ms (update {au:.2}), JAX {shown} ms"
        );
        sgd_ms.push(s);
        adam_ms.push(a);
        adam_vs_sgd.push(a / s);
        if let Some(j) = j {
            jax_ms.push(j);
            vs_jax.push(s / j);
        }
    }
    println!(
        "MLP 784-512-256-10, batch 128: SGD step {:.2} ms, Adam step {:.2} ms (medians of {rounds} rounds)",
        median(sgd_ms),
        median(adam_ms)
    );
    println!("Adam step / SGD step = {}", spread(&adam_vs_sgd));
    if vs_jax.is_empty() {
        println!("JAX peer not found (run ../shared/bench/peer/setup.sh); no ratio");
    } else {
        println!(
            "JAX step {:.2} ms; SGD step tekfac / JAX = {}",
            median(jax_ms),
            spread(&vs_jax)
        );
    }
}

/// Wall-clock seconds of `tekfac train` on Fashion-MNIST for `epochs` epochs (MLP, SGD).
fn cli_seconds(epochs: usize, threads: usize, out: &PathBuf) -> f64 {
    let _ = std::fs::remove_dir_all(out);
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_tekfac"))
        .args(["train", "--dataset", "fashion-mnist", "--model", "mlp"])
        .args([
            "--optimizer",
            "sgd",
            "--quiet",
            "--epochs",
            &epochs.to_string(),
        ])
        .args(["--threads", &threads.to_string(), "--out"])
        .arg(out)
        .status()
        .expect("the tekfac binary runs");
    assert!(
        status.success(),
        "tekfac train failed (is TEKFAC_DATA_DIR set?)"
    );
    start.elapsed().as_secs_f64()
}

/// Milliseconds per step of the training loop alone, from the `seconds` column (wall clock
/// since the run started, to the millisecond) of a run's `step` rows (one every 10 steps):
/// within each epoch, from its first row after the epoch's first 50 steps (warm-up: the
/// first steps allocate the buffers) to its last row. No window holds an evaluation or a
/// checkpoint (both come after the epoch's last step, before the next epoch's first); each
/// holds batch assembly, the steps, progress and the metrics rows. Returns the median over
/// the windows' consecutive blocks of 50 steps (as the bench times its step: the median of
/// blocks of 50) and the mean over the whole windows (what a user waits, every hiccup of the
/// machine included).
fn loop_ms_per_step(metrics: &str, steps_per_epoch: u64) -> (f64, f64) {
    let mut windows: Vec<Vec<(u64, f64)>> = Vec::new();
    for line in metrics.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[0] != "step" {
            continue;
        }
        let epoch: u64 = f[1].parse().expect("an epoch number");
        let step: u64 = f[2].parse().expect("a step number");
        let seconds: f64 = f[3].parse().expect("seconds");
        if step <= (epoch - 1) * steps_per_epoch + 50 {
            continue;
        }
        if windows.len() < epoch as usize {
            windows.push(Vec::new());
        }
        windows[epoch as usize - 1].push((step, seconds));
    }
    let per_step = |a: (u64, f64), b: (u64, f64)| (b.1 - a.1) / (b.0 - a.0) as f64 * 1e3;
    let mut blocks = Vec::new();
    let (mut steps, mut seconds) = (0, 0.0);
    for w in windows.iter().filter(|w| w.len() >= 2) {
        let (first, last) = (w[0], w[w.len() - 1]);
        steps += last.0 - first.0;
        seconds += last.1 - first.1;
        let ends: Vec<_> = w.iter().filter(|r| (r.0 - first.0) % 50 == 0).collect();
        blocks.extend(ends.windows(2).map(|e| per_step(*e[0], *e[1])));
    }
    (median(blocks), seconds / steps as f64 * 1e3)
}

/// Rounds of (CLI epoch, JAX epoch): the epoch of `tekfac train` is a 2-epoch run minus a
/// 1-epoch run, so start-up, data loading and the first evaluation cancel out (the second
/// epoch's evaluation and checkpoint do not). Each round also prints the training loop's own
/// milliseconds per step in the 2-epoch run ([`loop_ms_per_step`]).
fn cli_rounds(rounds: usize, threads: usize, use_peer: bool) {
    let out = std::env::temp_dir().join(format!("tekfac-bench-cli-{}", std::process::id()));
    let (mut ours, mut jax, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let one = cli_seconds(1, threads, &out);
        let two = cli_seconds(2, threads, &out);
        let epoch = two - one;
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
        let (loop_ms, loop_mean) = loop_ms_per_step(&metrics, 468);
        let j = use_peer
            .then(|| peer::jax_run("mlp", &["--blocks", "1", "--steps", "10", "--epochs", "2"]))
            .flatten()
            .and_then(|v| v["epoch_s"]["median"].as_f64());
        let shown = j.map_or("-".into(), |j| format!("{j:.3}"));
        println!(
            "round {round}: tekfac train epoch {epoch:.3} s ({:.3} ms per step of 468), JAX epoch {shown} s; \
             training loop {loop_ms:.3} ms per step (median of 50-step blocks; mean {loop_mean:.3})",
            epoch / 468.0 * 1e3
        );
        ours.push(epoch);
        if let Some(j) = j {
            jax.push(j);
            ratios.push(epoch / j);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    println!(
        "tekfac train epoch (2 epochs - 1 epoch): {:.3} s",
        median(ours)
    );
    if !ratios.is_empty() {
        println!(
            "JAX epoch {:.3} s; tekfac / JAX = {}",
            median(jax),
            spread(&ratios)
        );
    }
}

/// The library pieces of `tekfac train`'s per-step loop on Fashion-MNIST (MLP, SGD): the
/// learning rate set, the batch gathered from the shuffled epoch order (`Dataset::batch`) and
/// `train_step` (forward, loss and its check, backward, the gradient check, the fused update
/// with its weight check). The binary's own loop around these (its progress bar, hidden under
/// `--quiet`, and a metrics row every 10 steps) is `tekfac::cli::Steps`, timed beside it.
struct LoopStep {
    train: tekfac::dataset::Dataset,
    ps: ParamStore<f32>,
    model: Mlp,
    opt: Sgd<f32>,
    order: Vec<usize>,
    step: u64,
}

impl LoopStep {
    fn new(train: &tekfac::dataset::Dataset) -> Self {
        let mut ps = ParamStore::<f32>::seeded(0);
        let model = Mlp::new(&mut ps, 784, 10).expect("the MLP preset registers its parameters");
        LoopStep {
            train: train.clone(),
            ps,
            model,
            opt: Sgd::new(SgdConfig::default()),
            order: Vec::new(),
            step: 0,
        }
    }

    fn step(&mut self) {
        let per_epoch = self.train.len() / 128;
        let (epoch, i) = (self.step / per_epoch as u64, self.step as usize % per_epoch);
        if i == 0 {
            self.order = tekfac::dataset::permutation(self.train.len(), 0, epoch);
        }
        self.opt.set_lr(SgdConfig::default().lr);
        let batch = self
            .train
            .batch(&self.order[i * 128..(i + 1) * 128])
            .expect("indices in range");
        tekfac::train::train_step(
            &self.model,
            tekfac::train::Task::Classify,
            &mut self.ps,
            &mut self.opt,
            batch.images,
            &batch.labels,
            self.step,
        )
        .expect("a finite step");
        self.step += 1;
    }
}

/// The orders of the three kinds of blocks in [`loop_rounds`]: every permutation, so that over
/// six blocks each kind runs first, second and last twice.
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [2, 1, 0],
    [1, 2, 0],
    [0, 2, 1],
    [2, 0, 1],
    [1, 0, 2],
];

/// Rounds of interleaved blocks in one process: 7 triples of 50-step blocks of the bare SGD
/// step of the bench, of [`LoopStep`] (the library pieces of `tekfac train`'s loop) and of
/// `tekfac::cli::Steps` (the command's own loop: a run started from `tekfac train --model mlp
/// --optimizer sgd --quiet` flags, each step one turn of its epoch loop, bar and metrics rows
/// included), in the orders of [`ORDERS`], after 50 warm-up steps of each; fresh weights and a
/// fresh run folder each round, whose 400 steps stay within the run's first epoch (468). Per
/// round the median block of each and their ratios. The blocks of a triple are a fraction of a
/// second apart, so the machine's drift cancels better than between processes.
fn loop_rounds(rounds: usize) {
    let source = tekfac::dataset::DataSource::default();
    let (train, _) = tekfac::dataset::load_train_eval("fashion-mnist", 0, &source)
        .expect("Fashion-MNIST (set TEKFAC_DATA_DIR)");
    let dir = std::env::temp_dir().join(format!("tekfac-bench-loop-{}", std::process::id()));
    let (mut lib_ratios, mut cli_ratios, mut cli_lib) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.to_str().expect("a UTF-8 temporary directory");
        let flags = [
            "--dataset",
            "fashion-mnist",
            "--model",
            "mlp",
            "--optimizer",
            "sgd",
            "--quiet",
            "--out",
            out,
        ];
        let mut cli = tekfac::cli::Steps::new(&flags).expect("a run of tekfac train");
        let (mut bare, mut looped) = (MlpStep::new(sgd()), LoopStep::new(&train));
        let awake = tekfac::spin_workers();
        let mut ms: [Vec<f64>; 3] = Default::default();
        let mut run = |kind: usize, steps: usize| {
            let t = Instant::now();
            for _ in 0..steps {
                match kind {
                    0 => {
                        bare.step();
                    }
                    1 => looped.step(),
                    _ => cli.step().expect("a step of tekfac train's loop"),
                }
            }
            t.elapsed().as_secs_f64() / steps as f64 * 1e3
        };
        (0..3).for_each(|kind| {
            run(kind, 50);
        });
        for order in ORDERS.iter().cycle().take(7) {
            for &kind in order {
                ms[kind].push(run(kind, 50));
            }
        }
        drop(awake);
        let [b, l, c] = ms.map(median);
        println!(
            "round {round}: bare step {b:.3} ms, library loop {l:.3} ms (gather + train_step, \
             ratio {:.3}), CLI loop {c:.3} ms (tekfac train's turn, ratio {:.3}; / library \
             loop {:.3})",
            l / b,
            c / b,
            c / l
        );
        lib_ratios.push(l / b);
        cli_ratios.push(c / b);
        cli_lib.push(c / l);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "library loop step / bare step = {}",
        spread_to(&lib_ratios, 3)
    );
    println!("CLI loop step / bare step = {}", spread_to(&cli_ratios, 3));
    println!(
        "CLI loop step / library loop step = {}",
        spread_to(&cli_lib, 3)
    );
}

fn main() {
    let threads = arg("--threads").unwrap_or(2);
    let rounds = arg("--rounds").unwrap_or(5);
    let use_peer = !std::env::args().any(|a| a == "--no-peer");
    tekfac::set_threads(threads);
    let retained = tekfac::tensor::retain_freed_memory();
    println!("threads: {threads}; allocator keeps freed memory: {retained}");
    if std::env::args().any(|a| a == "--cli") {
        return cli_rounds(rounds, threads, use_peer);
    }
    if std::env::args().any(|a| a == "--loop") {
        return loop_rounds(rounds);
    }
    // The MLP's first layer at batch 128: forward X·W₁ᵀ, weight gradient dW₁ = gᵀ·X, the same
    // forward with W₁ᵀ stored, and a large square product.
    let products = [
        ("X·Wᵀ 128x784x512", (128, 784, 512), (false, true)),
        ("gᵀ·X 512x128x784", (512, 128, 784), (true, false)),
        ("X·B 128x784x512", (128, 784, 512), (false, false)),
        ("Xᵀ·Wᵀ 128x784x512", (128, 784, 512), (true, true)),
        ("g·W 128x512x784", (128, 512, 784), (false, false)),
        ("A·B 1024x1024x1024", (1024, 1024, 1024), (false, false)),
    ];
    for (name, dims, t) in products {
        println!("sgemm {name}: {:.1} GFLOP/s", gemm_gflops(dims, t));
    }
    let w = Tensor::<f32>::randn(&[512 * 784], 0.0, 1.0, &mut seeded_rng(2));
    let mut w_t = vec![0f32; w.len()];
    let t = time(100, 7, || {
        transpose_batched(w.data(), 512, 784, 1.0, &mut w_t)
    });
    println!("transpose 512x784 (one thread): {:.3} ms", t * 1e3);
    step_rounds(
        rounds,
        use_peer,
        !std::env::args().any(|a| a == "--no-spin"),
    );
}
