//! Optimizer benchmark: the per-step time of SGD, Adam, K-FAC, EKFAC, TKFAC and TEKFAC on the
//! MLP and CNN presets at batch 128 (f32, embedded Fashion-MNIST subset), at the default
//! intervals and at kfac-jax's usual setting (statistics every step, eigenbasis every 10); one
//! eigen-refresh per factor (nalgebra) next to numpy's LAPACK `eigh`; TEKFAC's FLOP floor from
//! the GEMM rates of the same run; and the JAX SGD step of `../shared/bench/peer` for the ratio.
//!
//! Run: cargo bench --bench optim -- [--threads 2] [--model mlp|cnn|both]
//!      [--steps 200] [--optimizers sgd,adam,kfac,ekfac,tkfac,tekfac] [--no-peer] [--no-eigen]
//!
//! A step's time is the mean over whole intervals (`--steps` is a multiple of 100), so refreshes
//! are amortized exactly as in training.

#[path = "common/peer.rs"]
mod peer;

use std::time::Instant;
use tekfac::curvature::Variant;
use tekfac::dataset::{self, Batches, DataSource, Dataset, LastBatch, Split};
use tekfac::kernels::gemm::{MatRef, gemm_into};
use tekfac::nn::{Cnn, Mlp, Module};
use tekfac::optim::{
    Adam, AdamConfig, DampingPolicy, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig,
};
use tekfac::tensor::{Float, seeded_rng};
use tekfac::train::{Task, train_step};
use tekfac::{LayerKind, ParamStore, Tensor};

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// GFLOP/s of an `n×n×n` GEMM in `F` (best of 5).
fn gemm_rate<F: Float>(n: usize) -> f64 {
    let mut rng = seeded_rng(0);
    let a = Tensor::<F>::randn(&[n, n], 0.0, 1.0, &mut rng);
    let b = Tensor::<F>::randn(&[n, n], 0.0, 1.0, &mut rng);
    let mut c = vec![F::ZERO; n * n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let (ma, mb) = (
            MatRef::new(a.data(), n, n, false),
            MatRef::new(b.data(), n, n, false),
        );
        gemm_into(F::ONE, ma, mb, F::ZERO, &mut c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// Statistics / eigenbasis / re-scaling intervals.
#[derive(Clone, Copy)]
struct Intervals {
    name: &'static str,
    stats: u64,
    eigen: u64,
    scale: u64,
}

const DEFAULT: Intervals = Intervals {
    name: "default (stats 10, eigen 100, scale 10)",
    stats: 10,
    eigen: 100,
    scale: 10,
};
const KFAC_JAX: Intervals = Intervals {
    name: "kfac-jax (stats 1, eigen 10, scale 1)",
    stats: 1,
    eigen: 10,
    scale: 1,
};

fn optimizer(name: &str, ps: &ParamStore<f32>, iv: Intervals) -> Box<dyn Optimizer> {
    let variant = match name {
        "sgd" => {
            return Box::new(Sgd::new(SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                ..Default::default()
            }));
        }
        "adam" => return Box::new(Adam::new(AdamConfig::default())),
        other => Variant::ALL
            .into_iter()
            .find(|v| v.name() == other)
            .expect("a variant"),
    };
    // NOTE: the library's (and the CLI's) default λ, tuned per variant and network.
    let config = NgConfig {
        stats_interval: iv.stats,
        eigen_interval: iv.eigen,
        scale_interval: iv.scale,
        ..Default::default()
    };
    Box::new(NaturalGradient::new(variant, config, ps).expect("valid config"))
}

fn model(name: &str, ps: &mut ParamStore<f32>) -> Box<dyn Module<f32>> {
    match name {
        "mlp" => Box::new(Mlp::new(ps, 784, 10).unwrap()),
        _ => Box::new(Cnn::new(ps, 10).unwrap()),
    }
}

/// Mean step time and its parts (ms): total, statistics, eigenbasis, preconditioning.
struct Timing {
    total: f64,
    stats: f64,
    eigen: f64,
    precondition: f64,
}

/// Runs one step (first statistics and basis), then times `steps` more over the data.
fn time_steps(
    model_name: &str,
    opt_name: &str,
    iv: Intervals,
    data: &Dataset,
    steps: usize,
) -> Result<Timing, String> {
    let mut ps = ParamStore::<f32>::seeded(0);
    let model = model(model_name, &mut ps);
    let mut opt = optimizer(opt_name, &ps, iv);
    let mut t = Timing {
        total: 0.0,
        stats: 0.0,
        eigen: 0.0,
        precondition: 0.0,
    };
    let mut step = 0u64;
    let mut clock = None;
    'epochs: for epoch in 0.. {
        let batches = Batches::new(data.len(), 128, 0, epoch, LastBatch::Drop).unwrap();
        for indices in batches.iter() {
            let b = data.batch(indices).unwrap();
            let s = train_step(
                model.as_ref(),
                Task::Classify,
                &mut ps,
                opt.as_mut(),
                b.images,
                &b.labels,
                step,
            )
            .map_err(|e| e.to_string())?;
            if step == 0 {
                clock = Some(Instant::now());
            } else {
                t.stats += s.time_stats;
                t.eigen += s.time_eigen;
                t.precondition += s.time_precondition;
            }
            step += 1;
            if step as usize > steps {
                break 'epochs;
            }
        }
    }
    let n = steps as f64 / 1e3;
    t.total = clock.unwrap().elapsed().as_secs_f64() / n;
    t.stats /= n;
    t.eigen /= n;
    t.precondition /= n;
    Ok(t)
}

/// FLOPs of one amortized TEKFAC step at batch `b` (sampled Fisher, k = 1), split into the f32
/// part (forward, backward, sampled sweep, rotations) and the f64 part (statistics, re-scaling,
/// eigendecompositions at ≈ 9n³ each: Householder tridiagonalization, forming Q, implicit QR).
fn tekfac_flops(ps: &ParamStore<f32>, b: usize, iv: Intervals, low_rank: bool) -> (f64, f64) {
    let (mut f32s, mut f64s) = (0.0, 0.0);
    for (idx, l) in ps.layers().iter().enumerate() {
        let (o, i, ib) = (l.d_out as f64, l.d_in as f64, l.d_in_bar() as f64);
        let positions = match l.kind {
            LayerKind::Dense => 1.0,
            // NOTE: the presets' conv geometry: 28→24 and 12→8 ("valid" 5×5).
            LayerKind::Conv2d { .. } => {
                if idx == 0 {
                    576.0
                } else {
                    64.0
                }
            }
        };
        let r = b as f64 * positions;
        let first = idx == 0;
        let dx = if first { 0.0 } else { 2.0 * r * o * i };
        f32s += 2.0 * r * o * i + 2.0 * r * o * ib + dx;
        // Sampled sweep (input gradients only) on every statistics or re-scaling step.
        f32s += dx / iv.stats.min(iv.scale) as f64;
        // Statistics: δΦ, δΨ grams.
        f64s += (2.0 * r * ib * ib + 2.0 * r * o * o) / iv.stats as f64;
        // Re-scaling: rotate ā and g, then the squared per-example sum.
        f64s += (2.0 * r * ib * ib + 2.0 * r * o * o + 2.0 * r * o * ib) / iv.scale as f64;
        f64s += 9.0 * (ib.powi(3) + o.powi(3)) / iv.eigen as f64;
        let full_in = 2.0 * o * ib * (o + ib);
        let low_in = 2.0 * b as f64 * (o * o + ib * ib + o * ib);
        let dense = matches!(l.kind, LayerKind::Dense);
        f32s += if low_rank && dense && low_in < full_in {
            low_in
        } else {
            full_in
        };
        f32s += 2.0 * o * ib * (o + ib);
    }
    (f32s, f64s)
}

fn main() {
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(2);
    let which = arg("--model").unwrap_or_else(|| "both".into());
    let steps: usize = arg("--steps").and_then(|s| s.parse().ok()).unwrap_or(200);
    let use_peer = !std::env::args().any(|a| a == "--no-peer");
    tekfac::set_threads(threads);
    tekfac::tensor::retain_freed_memory();
    let data = dataset::load("fashion-mnist-mini", Split::Train, &DataSource::default())
        .expect("the embedded data set");
    println!("threads {threads}, batch 128, f32 (f64 curvature state), {steps} timed steps");
    let (mut s_rate, mut d_rate) = (gemm_rate::<f32>(1024), gemm_rate::<f64>(1024));
    println!("GEMM 1024³: sgemm {s_rate:.1} GFLOP/s, dgemm {d_rate:.1} GFLOP/s");

    let models: Vec<&str> = match which.as_str() {
        "both" => vec!["mlp", "cnn"],
        m => vec![if m == "cnn" { "cnn" } else { "mlp" }],
    };
    let all = "sgd,adam,kfac,ekfac,tkfac,tekfac".to_string();
    let list = arg("--optimizers").unwrap_or(all);
    let names: Vec<&str> = list.split(',').collect();
    let eigen = !std::env::args().any(|a| a == "--no-eigen");
    for m in models {
        let jax = use_peer.then(|| peer::jax_step_ms(m, &[])).flatten();
        println!("\n## {m}: per-step time (ms), mean over {steps} steps after the first");
        match jax {
            Some(j) => println!("JAX SGD step (peer, same run): {j:.2} ms"),
            None => println!("JAX peer not found (run ../shared/bench/peer/setup.sh)"),
        }
        println!("| intervals | optimizer | step | stats | eigen | precondition | × JAX SGD |");
        println!("|---|---|---|---|---|---|---|");
        let mut tekfac_default = None;
        for iv in [DEFAULT, KFAC_JAX] {
            for &name in &names {
                if iv.stats == 1 && matches!(name, "sgd" | "adam") {
                    continue;
                }
                let t = match time_steps(m, name, iv, &data, steps) {
                    Ok(t) => t,
                    Err(e) => {
                        println!("| {} | {name} | diverged: {e} | | | | |", iv.name);
                        continue;
                    }
                };
                let ratio = jax.map_or("-".into(), |j| format!("{:.1}", t.total / j));
                println!(
                    "| {} | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {ratio} |",
                    iv.name, t.total, t.stats, t.eigen, t.precondition
                );
                if name == "tekfac" && iv.stats == DEFAULT.stats {
                    tekfac_default = Some(t.total);
                }
            }
        }
        let mut ps = ParamStore::<f32>::seeded(0);
        let _ = model(m, &mut ps);
        let (f32s, f64s) = tekfac_flops(&ps, 128, DEFAULT, true);
        // NOTE: the ceiling is the best GEMM rate seen in this run (start and here): a rate
        // measured during a noisy second would make the floor look slow and the ratio good.
        s_rate = s_rate.max(gemm_rate::<f32>(1024));
        d_rate = d_rate.max(gemm_rate::<f64>(1024));
        println!(
            "GEMM 1024³ ceiling of this run: sgemm {s_rate:.1} GFLOP/s, dgemm {d_rate:.1} GFLOP/s"
        );
        let floor = (f32s / s_rate + f64s / d_rate) / 1e6;
        let Some(measured) = tekfac_default else {
            continue;
        };
        println!(
            "TEKFAC default intervals: {:.3} GFLOP f32 + {:.3} GFLOP f64 per step → floor {floor:.2} ms \
             at this run's GEMM rates; measured {measured:.2} ms = {:.2}× the floor",
            f32s / 1e9,
            f64s / 1e9,
            measured / floor
        );
        if eigen {
            eigen_table(m, &data);
        }
    }
}

/// One eigendecomposition per factor of a TEKFAC net after a few statistics, nalgebra vs numpy.
fn eigen_table(m: &str, data: &Dataset) {
    let mut ps = ParamStore::<f32>::seeded(0);
    let model = model(m, &mut ps);
    let iv = Intervals {
        name: "",
        stats: 1,
        eigen: 1,
        scale: 1,
    };
    let mut opt = NaturalGradient::new(
        Variant::Tekfac,
        NgConfig {
            stats_interval: iv.stats,
            eigen_interval: 1000,
            scale_interval: 1000,
            damping: DampingPolicy::with_lambda(0.1),
            ..Default::default()
        },
        &ps,
    )
    .unwrap();
    let batches = Batches::new(data.len(), 128, 0, 0, LastBatch::Drop).unwrap();
    for (step, indices) in batches.iter().take(3).enumerate() {
        let b = data.batch(indices).unwrap();
        let task = Task::Classify;
        train_step(
            model.as_ref(),
            task,
            &mut ps,
            &mut opt,
            b.images,
            &b.labels,
            step as u64,
        )
        .unwrap();
    }
    println!("\n{m}: one eigendecomposition per factor (f64), ms");
    println!(
        "| layer | factor | n | nalgebra SymmetricEigen | numpy eigh (LAPACK) | block refresh (A ∥ G) |"
    );
    println!("|---|---|---|---|---|---|");
    for block in opt.blocks() {
        let f = block.factors().expect("observed");
        let mut refresh = block.clone();
        let t = Instant::now();
        refresh.refresh().unwrap();
        let both = t.elapsed().as_secs_f64() * 1e3;
        for (label, mat) in [("Φ (input)", &f.a_factor), ("Ψ (output)", &f.g_factor)] {
            let n = mat.nrows();
            let t = Instant::now();
            let e = nalgebra::SymmetricEigen::new(mat.clone());
            std::hint::black_box(&e);
            let ours = t.elapsed().as_secs_f64() * 1e3;
            let np = peer::numpy_eigh_ms(n).map_or("-".into(), |x| format!("{x:.1}"));
            println!(
                "| {} | {label} | {n} | {ours:.1} | {np} | {both:.1} |",
                block.name()
            );
        }
    }
}
