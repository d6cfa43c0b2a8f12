//! Engine benchmark: f32 GEMM GFLOP/s and the SGD-momentum training step of the 784-512-256-10
//! ReLU MLP at batch 128, side by side with the JAX peer (`../shared/bench/peer`) when its venv
//! exists (`../shared/bench/peer/setup.sh`).
//!
//! Run: cargo bench --bench engine -- [--threads 2] [--rounds 5] [--no-peer]

#[path = "common/peer.rs"]
mod peer;

use std::time::Instant;
use tekfac::kernels::gemm::{MatRef, gemm_into};
use tekfac::nn::{Linear, Module};
use tekfac::optim::{Optimizer, Sgd, SgdConfig};
use tekfac::tensor::seeded_rng;
use tekfac::{ParamStore, Tape, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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

fn gemm_gflops(m: usize, k: usize, n: usize) -> f64 {
    let mut rng = seeded_rng(0);
    let a = Tensor::<f32>::randn(&[m, k], 0.0, 1.0, &mut rng);
    let b = Tensor::<f32>::randn(&[k, n], 0.0, 1.0, &mut rng);
    let mut c = vec![0f32; m * n];
    let reps = (2e9 / (2.0 * (m * k * n) as f64)).clamp(1.0, 200.0) as usize;
    let s = time(reps, 7, || {
        gemm_into(
            1.0,
            MatRef::new(a.data(), m, k, false),
            MatRef::new(b.data(), k, n, false),
            0.0,
            &mut c,
        )
    });
    2.0 * (m * k * n) as f64 / s / 1e9
}

/// Milliseconds of (forward, backward, update) of one MLP step, medians.
fn mlp_breakdown(
    ps: &mut ParamStore<f32>,
    layers: &[Linear],
    x: &Tensor<f32>,
    y: &[usize],
    opt: &mut Sgd<f32>,
) -> [f64; 3] {
    let mut parts = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..200 {
        let t0 = Instant::now();
        let mut t = Tape::new(ps);
        let mut h = t.input(x.clone());
        for (i, l) in layers.iter().enumerate() {
            h = l.forward(&mut t, h).unwrap();
            if i < 2 {
                h = t.relu(h);
            }
        }
        let loss = t.cross_entropy(h, y).unwrap();
        let t1 = Instant::now();
        let out = t.backward(loss).unwrap();
        let t2 = Instant::now();
        opt.step(ps, &out).unwrap();
        let t3 = Instant::now();
        for (p, (a, b)) in parts.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3)]) {
            p.push((b - a).as_secs_f64() * 1e3);
        }
    }
    parts.map(median)
}

fn mlp_step_ms() -> f64 {
    let mut ps = ParamStore::<f32>::seeded(0);
    let sizes = [784, 512, 256, 10];
    let layers: Vec<Linear> = (0..3)
        .map(|i| {
            Linear::new(
                &mut ps,
                &format!("fc{}", i + 1),
                sizes[i],
                sizes[i + 1],
                true,
            )
            .unwrap()
        })
        .collect();
    let mut rng = seeded_rng(1);
    let x = Tensor::<f32>::rand_uniform(&[128, 784], 0.0, 1.0, &mut rng);
    let y: Vec<usize> = (0..128).map(|i| i % 10).collect();
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        ..Default::default()
    });
    let s = time(50, 7, || {
        let mut t = Tape::new(&ps);
        let mut h = t.input(x.clone());
        for (i, l) in layers.iter().enumerate() {
            h = l.forward(&mut t, h).unwrap();
            if i < 2 {
                h = t.relu(h);
            }
        }
        let loss = t.cross_entropy(h, &y).unwrap();
        let out = t.backward(loss).unwrap();
        opt.step(&mut ps, &out).unwrap();
    });
    let [f, b, u] = mlp_breakdown(&mut ps, &layers, &x, &y, &mut opt);
    println!("  breakdown: forward {f:.2} ms, backward {b:.2} ms, update {u:.2} ms");
    s * 1e3
}

fn main() {
    let threads = std::env::args()
        .skip_while(|a| a != "--threads")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    tekfac::set_threads(threads);
    let retained = tekfac::tensor::retain_freed_memory();
    println!("allocator keeps freed memory: {retained}");
    println!("threads: {threads}");
    for (m, k, n) in [(128, 784, 512), (1024, 1024, 1024)] {
        println!("sgemm {m}x{k}x{n}: {:.1} GFLOP/s", gemm_gflops(m, k, n));
    }
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let use_peer = !std::env::args().any(|a| a == "--no-peer");
    // NOTE: the shared machines drift by 2x within a minute; each round times tekfac then the
    // JAX peer, and the ratio reported is the median of the per-round ratios.
    let (mut ours, mut jax, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let o = mlp_step_ms();
        let j = if use_peer {
            peer::jax_step_ms("mlp", &["--blocks", "5", "--steps", "50"])
        } else {
            None
        };
        let shown = j.map_or("-".into(), |j| format!("{j:.2}"));
        println!("round {round}: tekfac {o:.2} ms, JAX {shown} ms");
        ours.push(o);
        if let Some(j) = j {
            jax.push(j);
            ratios.push(o / j);
        }
    }
    let o = median(ours);
    println!(
        "MLP 784-512-256-10 SGD step, batch 128: tekfac {o:.2} ms (median of {rounds} rounds)"
    );
    if ratios.is_empty() {
        println!("JAX peer not found (run ../shared/bench/peer/setup.sh); no ratio");
    } else {
        println!(
            "MLP step: JAX {:.2} ms, ratio tekfac/JAX = {:.2} (median of per-round ratios; range {:.2}-{:.2})",
            median(jax),
            median(ratios.clone()),
            ratios.iter().cloned().fold(f64::MAX, f64::min),
            ratios.iter().cloned().fold(0.0, f64::max),
        );
    }
}
