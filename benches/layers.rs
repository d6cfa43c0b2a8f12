//! Layers benchmark: the SGD-momentum training step of the CNN preset (conv 5×5 1→32, pool,
//! conv 5×5 32→64, pool, dense 1024→128→10; 184,586 parameters) at batch 128 in f32, with
//! curvature capture off, empirical and sampled (k = 1), side by side with the JAX peer
//! (`../shared/bench/peer`) when its venv exists (`../shared/bench/peer/setup.sh`).
//!
//! Run: cargo bench --bench layers -- [--threads 2] [--no-peer] [--rounds 3]
//!
//! Each round times the three capture settings taking turns (5 blocks of `--steps` steps each,
//! medians), then the JAX peer; the figures are medians over rounds, and the JAX ratio is the
//! median of the per-round ratios, so that a change in machine load hits both sides alike. The
//! process keeps freed memory mapped (`retain_freed_memory`), as the peers' allocators do.

#[path = "common/peer.rs"]
mod peer;

use std::time::Instant;
use tekfac::nn::{Cnn, Module};
use tekfac::optim::{Optimizer, Sgd, SgdConfig};
use tekfac::tensor::seeded_rng;
use tekfac::{FisherType, ParamStore, Tape, Tensor};

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

/// One model, optimizer and batch, stepping with a chosen Fisher type.
struct Bench {
    ps: ParamStore<f32>,
    model: Cnn,
    opt: Sgd<f32>,
    x: Tensor<f32>,
    y: Vec<usize>,
}

impl Bench {
    fn new() -> Self {
        let mut ps = ParamStore::<f32>::seeded(0);
        let model = Cnn::new(&mut ps, 10).expect("the CNN preset registers its parameters");
        let mut rng = seeded_rng(1);
        let x = Tensor::<f32>::rand_uniform(&[128, 1, 28, 28], 0.0, 1.0, &mut rng);
        let y = (0..128).map(|i| i % 10).collect();
        let opt = Sgd::new(SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            ..Default::default()
        });
        Bench {
            ps,
            model,
            opt,
            x,
            y,
        }
    }

    /// One SGD-momentum training step: forward, backward with `fisher`, update.
    fn step(&mut self, fisher: FisherType) {
        let mut tape = Tape::new(&self.ps);
        let xv = tape.input(self.x.clone());
        let logits = self.model.forward(&mut tape, xv).expect("valid shapes");
        let loss = tape.cross_entropy(logits, &self.y).expect("valid labels");
        let out = tape.backward_with(loss, fisher).expect("a loss node");
        assert_eq!(out.captures.is_empty(), fisher == FisherType::Off);
        self.opt.step(&mut self.ps, &out).expect("matching shapes");
    }
}

/// Median milliseconds per step for each Fisher type, over `blocks` rounds of `steps` steps;
/// the types take turns within each round, so a change in machine load hits all of them alike.
fn step_ms(fishers: &[FisherType], steps: usize, blocks: usize) -> Vec<f64> {
    let mut bench = Bench::new();
    fishers
        .iter()
        .for_each(|&f| (0..2).for_each(|_| bench.step(f)));
    let mut times = vec![Vec::new(); fishers.len()];
    for _ in 0..blocks {
        for (&fisher, t) in fishers.iter().zip(&mut times) {
            let start = Instant::now();
            (0..steps).for_each(|_| bench.step(fisher));
            t.push(start.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
    }
    times.into_iter().map(median).collect()
}

fn main() {
    let threads = arg("--threads").unwrap_or(2);
    let steps = arg("--steps").unwrap_or(5);
    let rounds = arg("--rounds").unwrap_or(3);
    let peer = !std::env::args().any(|a| a == "--no-peer");
    tekfac::set_threads(threads);
    let retained = tekfac::tensor::retain_freed_memory();
    println!("threads: {threads}, CNN preset, batch 128, f32, SGD momentum 0.9");
    println!("allocator keeps freed memory (tekfac::tensor::retain_freed_memory): {retained}");
    let fishers = [
        FisherType::Off,
        FisherType::Empirical,
        FisherType::Sampled { k: 1, seed: 0 },
    ];
    let mut ours = vec![Vec::new(); fishers.len()];
    let mut jax = Vec::new();
    for round in 0..rounds {
        let ms = step_ms(&fishers, steps, 5);
        ours.iter_mut().zip(&ms).for_each(|(o, m)| o.push(*m));
        let peer_ms = if peer {
            peer::jax_step_ms("cnn", &["--blocks", "3", "--steps", "10", "--warmup", "5"])
        } else {
            None
        };
        let shown = peer_ms.map_or("-".into(), |j| format!("{j:.1}"));
        println!(
            "round {round}: off {:.1} ms, empirical {:.1} ms, sampled {:.1} ms, JAX {shown} ms",
            ms[0], ms[1], ms[2]
        );
        jax.extend(peer_ms);
    }
    let [off, emp, sampled] = [0, 1, 2].map(|i| median(ours[i].clone()));
    println!("CNN step, capture off:        {off:7.2} ms  (median of {rounds} rounds)");
    println!(
        "CNN step, empirical capture:  {emp:7.2} ms  ({:.2}x off)",
        emp / off
    );
    println!(
        "CNN step, sampled k=1:        {sampled:7.2} ms  ({:.2}x off)",
        sampled / off
    );
    if jax.len() == rounds {
        let ratios: Vec<f64> = ours[0].iter().zip(&jax).map(|(o, j)| o / j).collect();
        println!(
            "CNN step: JAX {:.2} ms, ratio tekfac/JAX = {:.2} (capture off, median of per-round ratios)",
            median(jax.clone()),
            median(ratios)
        );
    } else {
        println!("JAX peer not found (run ../shared/bench/peer/setup.sh); no ratio");
    }
}
