//! Warm-started eigenbasis refresh (issue 16, lever 2; target 3): one refresh of the MLP
//! preset's fc1 factors (TEKFAC `δΦ` 785×785, `δΨ` 512×512) by nalgebra's `SymmetricEigen`, by
//! the warm path (`refine_eigenbasis_with` from the previous refresh's basis, default settings,
//! and again with f64 steering products) and by numpy's LAPACK `eigh` of the same matrix (its BLAS on the same number of threads),
//! interleaved in rounds (each the median of 3 calls); the ratios are medians of per-round
//! ratios with their range. Before that, the refresh policy's trace along training:
//! which path each factor of each layer took at each eigenbasis refresh, `off(Q)` and time.
//!
//! Run: flock /tmp/tekfac-bench.lock cargo bench --bench warm -- [--rounds 7] [--threads 2]
//!      [--data fashion-mnist-mini|mnist] [--steps 60]
//!
//! Training follows kfac-jax's setting (statistics and re-scaling every step, eigenbasis every
//! 10), batch 128, λ = 0.1; the timed refresh is the last one, warm-started from the policy's
//! basis 10 steps earlier, as training would do.

#[path = "common/peer.rs"]
mod peer;

use nalgebra::{DMatrix, SymmetricEigen};
use std::time::Instant;
use tekfac::ParamStore;
use tekfac::curvature::{
    EigenRefresh, FactorRefresh, KroneckerBasis, KroneckerFactors, Steering, Variant, WarmStart,
    off_diagonal_mass, refine_eigenbasis_with,
};
use tekfac::dataset::{self, Batches, DataSource, LastBatch, Split};
use tekfac::nn::{Mlp, Module};
use tekfac::optim::{NaturalGradient, NgConfig};
use tekfac::train::{Task, train_step};

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// The factors of every layer at each eigenbasis refresh (every 10 steps) of TEKFAC training.
fn factors_along_training(data: &str, steps: usize) -> Vec<Vec<KroneckerFactors>> {
    let data = dataset::load(data, Split::Train, &DataSource::default()).expect("data set");
    let mut ps = ParamStore::<f32>::seeded(0);
    let model = Mlp::new(&mut ps, 784, 10).unwrap();
    let config = NgConfig {
        stats_interval: 1,
        eigen_interval: 10,
        scale_interval: 1,
        damping: tekfac::optim::DampingPolicy::with_lambda(0.1),
        ..Default::default()
    };
    let mut opt = NaturalGradient::new(Variant::Tekfac, config, &ps).unwrap();
    let batches = Batches::new(data.len(), 128, 0, 0, LastBatch::Drop).unwrap();
    let mut out = Vec::new();
    for (step, idx) in batches.iter().cycle().take(steps).enumerate() {
        let b = data.batch(idx).unwrap();
        let model = &model as &dyn Module<f32>;
        train_step(
            model,
            Task::Classify,
            &mut ps,
            &mut opt,
            b.images,
            &b.labels,
            step as u64,
        )
        .unwrap();
        if step % 10 == 9 {
            out.push(
                opt.blocks()
                    .iter()
                    .map(|block| block.factors().expect("observed").clone())
                    .collect(),
            );
        }
    }
    out
}

/// Runs the default policy along the refreshes of every layer, printing each step; returns the
/// policy's fc1 basis before the last refresh.
fn policy_trace(along: &[Vec<KroneckerFactors>]) -> KroneckerBasis {
    let layers = along[0].len();
    let mut policies = vec![EigenRefresh::new(WarmStart::default()).unwrap(); layers];
    let mut bases: Vec<Option<KroneckerBasis>> = vec![None; layers];
    let mut before_last = None;
    println!("\n## Policy trace (default WarmStart), one row per refresh and layer");
    println!(
        "| step | layer | input: stale off | input factor | output: stale off | output factor | ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (r, factors) in along.iter().enumerate() {
        for (l, f) in factors.iter().enumerate() {
            if l == 0 && r + 1 == along.len() {
                before_last = bases[0].clone();
            }
            // How far the basis in use has drifted: what an exact refresh would replace.
            let stale = |pick: fn(&KroneckerBasis) -> &DMatrix<f64>, m: &DMatrix<f64>| {
                bases[l].as_ref().map_or("–".into(), |b| {
                    format!("{:.1e}", off_diagonal_mass(m, pick(b)))
                })
            };
            let (stale_a, stale_g) = (
                stale(|b| &b.q_a, &f.a_factor),
                stale(|b| &b.q_g, &f.g_factor),
            );
            let t = Instant::now();
            let (basis, report) = policies[l].refresh(f, bases[l].as_ref()).unwrap();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            println!(
                "| {} | fc{} | {stale_a} | {} | {stale_g} | {} | {ms:.0} |",
                10 * r + 10,
                l + 1,
                short(&report.a),
                short(&report.g)
            );
            bases[l] = Some(basis);
        }
    }
    before_last.expect("at least two refreshes")
}

fn short(how: &FactorRefresh) -> String {
    match how {
        FactorRefresh::Warm {
            iterations,
            off_diagonal,
        } => format!("warm {iterations} it, off {off_diagonal:.1e}"),
        FactorRefresh::Exact(reason) => format!("exact ({reason})"),
    }
}

fn median(mut x: Vec<f64>) -> f64 {
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

fn ms<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64() * 1e3, out)
}

/// Interleaved rounds: nalgebra, warm (default f32 steering), warm with f64 steering, numpy on
/// the same factor; prints the per-round figures and the medians of the per-round ratios.
fn timed(name: &str, f: &DMatrix<f64>, previous: &DMatrix<f64>, rounds: usize, threads: usize) {
    let n = f.nrows();
    let settings = WarmStart::default();
    let path = std::env::temp_dir().join(format!("tekfac-warm-bench-{}.f64", std::process::id()));
    let bytes: Vec<u8> = f.transpose().iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&path, bytes).expect("temp file for numpy");
    let refresh = |steering| {
        refine_eigenbasis_with(
            f,
            previous,
            settings.tolerance,
            settings.max_iterations,
            steering,
        )
        .unwrap()
    };
    println!(
        "\n## {name}: n = {n}, off(Q_prev) {:.2e}",
        off_diagonal_mass(f, previous)
    );
    for steering in [Steering::F32, Steering::F64] {
        let warm = refresh(steering);
        println!(
            "warm, {steering:?} steering: off(Q) {:.2e} in {} iterations, ‖QᵀQ − I‖_F {:.1e}",
            off_diagonal_mass(f, &warm.q),
            warm.iterations,
            (warm.q.transpose() * &warm.q - DMatrix::<f64>::identity(n, n)).norm()
        );
    }
    println!(
        "| round | nalgebra ms | warm ms | warm f64-steered ms | numpy eigh ms | warm / numpy | \
         nalgebra / numpy | warm / f64-steered |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let (mut warm_np, mut nal_np, mut steer) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let t_nal = median(
            (0..3)
                .map(|_| ms(|| SymmetricEigen::new(f.clone())).0)
                .collect(),
        );
        let t_warm = median((0..3).map(|_| ms(|| refresh(Steering::F32)).0).collect());
        let t_f64 = median((0..3).map(|_| ms(|| refresh(Steering::F64)).0).collect());
        let Some(t_np) = peer::numpy_eigh_file_ms(&path, n, threads) else {
            println!("numpy peer not found (/tmp/tekfac-peer-venv)");
            break;
        };
        warm_np.push(t_warm / t_np);
        nal_np.push(t_nal / t_np);
        steer.push(t_warm / t_f64);
        println!(
            "| {round} | {t_nal:.1} | {t_warm:.1} | {t_f64:.1} | {t_np:.1} | {:.2} | {:.2} | {:.2} |",
            t_warm / t_np,
            t_nal / t_np,
            t_warm / t_f64
        );
    }
    let _ = std::fs::remove_file(&path);
    if !warm_np.is_empty() {
        let range = |x: &[f64]| {
            let lo = x.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = x.iter().cloned().fold(0.0, f64::max);
            format!("{lo:.2}–{hi:.2}")
        };
        println!(
            "{name}: warm / numpy eigh = **{:.2}** (rounds {}); nalgebra / numpy = {:.2} ({}); \
             f32 / f64 steering = {:.2} ({})",
            median(warm_np.clone()),
            range(&warm_np),
            median(nal_np.clone()),
            range(&nal_np),
            median(steer.clone()),
            range(&steer)
        );
    }
}

fn main() {
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(2);
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(7);
    let steps: usize = arg("--steps").and_then(|s| s.parse().ok()).unwrap_or(60);
    let data = arg("--data").unwrap_or_else(|| "fashion-mnist-mini".into());
    tekfac::set_threads(threads);
    println!("threads {threads}, data {data}, MLP 784-512-256-10, TEKFAC, {steps} steps");
    let along = factors_along_training(&data, steps.max(20));
    let previous = policy_trace(&along);
    let last = &along.last().unwrap()[0];
    timed(
        "fc1 δΦ (input)",
        &last.a_factor,
        &previous.q_a,
        rounds,
        threads,
    );
    timed(
        "fc1 δΨ (output)",
        &last.g_factor,
        &previous.q_g,
        rounds,
        threads,
    );
}
