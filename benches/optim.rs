//! Optimizer benchmark: the per-step time of SGD, Adam, K-FAC, EKFAC, TKFAC and TEKFAC on the
//! MLP and CNN presets at batch 128 (f32, embedded Fashion-MNIST subset), at the default
//! intervals and at kfac-jax's usual setting (statistics every step, eigenbasis every 10), next
//! to EKFAC and TEKFAC with their fast paths off ("-plain": no eigenbasis-parametrised layers,
//! exact refreshes, f64 statistics) and to the JAX SGD step of `../shared/bench/peer`; then one
//! eigen-refresh per factor (nalgebra) next to numpy's LAPACK `eigh`, and TEKFAC's FLOP floor
//! from the GEMM rates of the same run.
//!
//! Run: flock /tmp/tekfac-bench.lock cargo bench --bench optim -- [--rounds 3] [--threads 2]
//!      [--model mlp|cnn|both] [--steps 200] [--optimizers sgd,adam,kfac,ekfac,tkfac,tekfac]
//!      [--no-plain] [--no-peer] [--no-eigen]
//!
//! The machine drifts by up to 2× within a minute, so every figure is a same-run ratio: each
//! round times, back to back, the JAX SGD step, tekfac's SGD step and every requested optimizer
//! at both interval settings (a fast path and its plain twin adjacent, their order alternating
//! between rounds). The summary gives the median step over rounds and the medians of the
//! per-round ratios with their [min–max] range. A step's time is the mean over whole intervals
//! (`--steps` is a multiple of 100), so refreshes are amortized exactly as in training.

#[path = "common/peer.rs"]
mod peer;

use std::time::Instant;
use tekfac::curvature::{Variant, WarmStart};
use tekfac::dataset::{self, Batches, DataSource, Dataset, LastBatch, Split};
use tekfac::kernels::gemm::{MatRef, gemm_into};
use tekfac::nn::{Cnn, Mlp, Module};
use tekfac::optim::{
    Adam, AdamConfig, DampingPolicy, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig,
};
use tekfac::tensor::{Float, seeded_rng};
use tekfac::train::{Task, train_step};
use tekfac::{LayerKind, ParamStore, Tensor};

/// The optimizers `--optimizers` accepts (and its default).
const OPTIMIZERS: [&str; 6] = ["sgd", "adam", "kfac", "ekfac", "tkfac", "tekfac"];

/// The value following `name` on the command line, if the flag is given.
fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// True when the bare flag `name` is given.
fn has_flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Prints which flag is wrong and what it accepts, then exits with status 2 (usage error).
fn usage_error(flag: &str, allowed: &str) -> ! {
    eprintln!("error: {flag} must be {allowed}");
    eprintln!(
        "usage: cargo bench --bench optim -- [--rounds 3] [--threads 2] [--model mlp|cnn|both] \
         [--steps 200] [--optimizers sgd,adam,kfac,ekfac,tkfac,tekfac] [--no-plain] [--no-peer] \
         [--no-eigen]"
    );
    std::process::exit(2);
}

/// The whole number given with `flag` (`default` when absent); exits 2 unless `ok` accepts it.
fn count_flag(flag: &str, default: usize, ok: impl Fn(usize) -> bool, allowed: &str) -> usize {
    if !has_flag(flag) {
        return default;
    }
    match arg(flag).and_then(|s| s.parse().ok()) {
        Some(v) if ok(v) => v,
        _ => usage_error(flag, allowed),
    }
}

/// The command line, checked before anything runs.
struct Options {
    threads: usize,
    rounds: usize,
    steps: usize,
    models: Vec<&'static str>,
    optimizers: Vec<&'static str>,
    plain: bool,
    peer: bool,
    eigen: bool,
}

impl Options {
    /// Parses and checks every flag; a bad value exits 2 naming the flag and its allowed values.
    fn parse() -> Options {
        let threads = count_flag("--threads", 2, |t| (1..=256).contains(&t), "in 1..=256");
        let rounds = count_flag("--rounds", 3, |r| (1..=100).contains(&r), "in 1..=100");
        let steps = count_flag(
            "--steps",
            200,
            |s| s > 0 && s % 100 == 0,
            "a positive multiple of 100 (whole eigenbasis intervals)",
        );
        let models = match arg("--model").as_deref() {
            None if !has_flag("--model") => vec!["mlp", "cnn"],
            Some("both") => vec!["mlp", "cnn"],
            Some("mlp") => vec!["mlp"],
            Some("cnn") => vec!["cnn"],
            _ => usage_error("--model", "one of mlp, cnn, both"),
        };
        let optimizers = match arg("--optimizers") {
            None if has_flag("--optimizers") => usage_error("--optimizers", "a comma list"),
            None => OPTIMIZERS.to_vec(),
            Some(list) => (list.split(','))
                .map(|n| OPTIMIZERS.into_iter().find(|&o| o == n))
                .collect::<Option<Vec<_>>>()
                .unwrap_or_else(|| {
                    usage_error(
                        "--optimizers",
                        "a comma list of sgd, adam, kfac, ekfac, tkfac, tekfac",
                    )
                }),
        };
        Options {
            threads,
            rounds,
            steps,
            models,
            optimizers,
            plain: !has_flag("--no-plain"),
            peer: !has_flag("--no-peer"),
            eigen: !has_flag("--no-eigen"),
        }
    }
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
#[derive(Clone, Copy, PartialEq)]
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

/// The optimizer `name` at intervals `iv`; `plain` switches EKFAC/TEKFAC's fast paths off
/// (eigenbasis-parametrised layers, warm-started refreshes, f32 statistics).
fn optimizer(name: &str, ps: &ParamStore<f32>, iv: Intervals, plain: bool) -> Box<dyn Optimizer> {
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
    let mut config = NgConfig {
        stats_interval: iv.stats,
        eigen_interval: iv.eigen,
        scale_interval: iv.scale,
        ..Default::default()
    };
    if plain {
        config.eigenbasis_layers = false;
        config.warm_start = WarmStart::exact_only();
        config.f32_statistics = false;
    }
    Box::new(NaturalGradient::new(variant, config, ps).expect("valid config"))
}

fn model(name: &str, ps: &mut ParamStore<f32>) -> Box<dyn Module<f32>> {
    match name {
        "mlp" => Box::new(Mlp::new(ps, 784, 10).unwrap()),
        _ => Box::new(Cnn::new(ps, 10).unwrap()),
    }
}

/// Mean step time and its parts (ms): total, statistics, eigenbasis, preconditioning.
#[derive(Clone, Copy)]
struct Timing {
    total: f64,
    stats: f64,
    eigen: f64,
    precondition: f64,
}

/// One timed configuration of a round: an optimizer at some intervals, fast or plain.
#[derive(Clone, Copy)]
struct Entry {
    iv: Intervals,
    name: &'static str,
    plain: bool,
}

impl Entry {
    /// The row label: `tekfac`, or `tekfac-plain` with the fast paths off.
    fn label(&self) -> String {
        if self.plain {
            format!("{}-plain", self.name)
        } else {
            self.name.to_string()
        }
    }
}

/// What one round times, in order: tekfac's SGD (the reference, default intervals) first, then
/// every requested optimizer at each interval setting (SGD and Adam only at the default, which
/// they ignore), each EKFAC/TEKFAC followed by its plain twin unless `plain` is false.
fn plan(optimizers: &[&'static str], plain: bool) -> Vec<Entry> {
    let mut entries = vec![Entry {
        iv: DEFAULT,
        name: "sgd",
        plain: false,
    }];
    for iv in [DEFAULT, KFAC_JAX] {
        for &name in optimizers {
            let first_order = matches!(name, "sgd" | "adam");
            if name == "sgd" || (first_order && iv != DEFAULT) {
                continue;
            }
            entries.push(Entry {
                iv,
                name,
                plain: false,
            });
            if plain && matches!(name, "ekfac" | "tekfac") {
                entries.push(Entry {
                    iv,
                    name,
                    plain: true,
                });
            }
        }
    }
    entries
}

/// The order in which round `round` times `plan`: as planned, except that in odd rounds each
/// fast/plain pair is timed plain first, so drift within a round favours neither.
fn round_order(plan: &[Entry], round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..plan.len()).collect();
    if round % 2 == 1 {
        for (i, e) in plan.iter().enumerate().skip(1) {
            if e.plain {
                order.swap(i - 1, i);
            }
        }
    }
    order
}

/// Runs one step (first statistics and basis), then times `steps` more over the data.
fn time_steps(
    model_name: &str,
    entry: Entry,
    data: &Dataset,
    steps: usize,
) -> Result<Timing, String> {
    let mut ps = ParamStore::<f32>::seeded(0);
    let model = model(model_name, &mut ps);
    let mut opt = optimizer(entry.name, &ps, entry.iv, entry.plain);
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

/// The median of `v` (not empty).
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `median [min–max]` of per-round figures, `-` when there are none.
fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} [{lo:.2}–{hi:.2}]", median(v))
}

/// One model's rounds: the JAX SGD step of each round and `timings[round][entry]` of the plan
/// (an `Err` when that run failed, e.g. diverged).
struct Rounds {
    plan: Vec<Entry>,
    jax: Vec<Option<f64>>,
    timings: Vec<Vec<Result<Timing, String>>>,
}

impl Rounds {
    /// The plan index of the fast `name` at `iv`.
    fn find(&self, iv: Intervals, name: &str) -> Option<usize> {
        (self.plan.iter()).position(|e| e.iv == iv && e.name == name && !e.plain)
    }

    /// Entry `i`'s figure `f` in every round where it ran.
    fn figures(&self, i: usize, f: impl Fn(&Timing) -> f64) -> Vec<f64> {
        (self.timings.iter())
            .filter_map(|row| row[i].as_ref().ok().map(&f))
            .collect()
    }

    /// Entry `i`'s per-round step time over `reference(round)`, in rounds where both exist.
    fn ratios(&self, i: usize, reference: impl Fn(usize) -> Option<f64>) -> Vec<f64> {
        (self.timings.iter().enumerate())
            .filter_map(|(r, row)| Some(row[i].as_ref().ok()?.total / reference(r)?))
            .collect()
    }

    /// Per-round ratios of entry `i` to tekfac's SGD step (entry 0) of the same round.
    fn over_sgd(&self, i: usize) -> Vec<f64> {
        self.ratios(i, |r| self.timings[r][0].as_ref().ok().map(|t| t.total))
    }

    /// Per-round ratios of entry `i` to the JAX SGD step of the same round.
    fn over_jax(&self, i: usize) -> Vec<f64> {
        self.ratios(i, |r| self.jax[r])
    }

    /// Per-round speed-ups of the fast entry `i` over its plain twin (`plain ÷ fast`), if any.
    fn gain(&self, i: usize) -> Vec<f64> {
        let e = self.plan[i];
        let twin = (self.plan.iter()).position(|p| p.plain && p.iv == e.iv && p.name == e.name);
        match twin {
            Some(j) if !e.plain => (self.timings.iter())
                .filter_map(|row| Some(row[j].as_ref().ok()?.total / row[i].as_ref().ok()?.total))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Times `opts.rounds` rounds of the plan on model `m`, printing each round's table.
fn run_rounds(m: &str, opts: &Options, data: &Dataset) -> Rounds {
    let mut rounds = Rounds {
        plan: plan(&opts.optimizers, opts.plain),
        jax: Vec::new(),
        timings: Vec::new(),
    };
    for round in 0..opts.rounds {
        let jax = opts.peer.then(|| peer::jax_step_ms(m, &[])).flatten();
        let mut row = vec![Err("not run".to_string()); rounds.plan.len()];
        for i in round_order(&rounds.plan, round) {
            row[i] = time_steps(m, rounds.plan[i], data, opts.steps);
        }
        rounds.jax.push(jax);
        rounds.timings.push(row);
        print_round(m, round, opts, &rounds);
    }
    rounds
}

/// The table of the latest round of `rounds`.
fn print_round(m: &str, round: usize, opts: &Options, rounds: &Rounds) {
    let jax = rounds.jax[round];
    println!(
        "\n### {m}, round {} of {}: per-step time (ms), mean over {} steps after the first",
        round + 1,
        opts.rounds,
        opts.steps
    );
    match jax {
        Some(j) => println!("JAX SGD step (peer, this round): {j:.2} ms"),
        None if opts.peer => println!("JAX peer not found (run ../shared/bench/peer/setup.sh)"),
        None => println!("JAX peer skipped (--no-peer)"),
    }
    println!(
        "| intervals | optimizer | step | stats | eigen | precondition | × tekfac SGD | × JAX SGD |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let row = &rounds.timings[round];
    let sgd = row[0].as_ref().ok().map(|t| t.total);
    for (e, timing) in rounds.plan.iter().zip(row) {
        let (iv, label) = (e.iv.name, e.label());
        match timing {
            Ok(t) => {
                let over = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.2}", t.total / r));
                println!(
                    "| {iv} | {label} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                    t.total,
                    t.stats,
                    t.eigen,
                    t.precondition,
                    over(sgd),
                    over(jax)
                );
            }
            Err(err) => println!("| {iv} | {label} | failed: {err} | | | | | |"),
        }
    }
}

/// Medians over the rounds: step and its parts, and the medians of the per-round ratios to
/// tekfac's SGD, to the JAX SGD and of the plain twin to the fast path, each with [min–max].
fn print_summary(m: &str, rounds: &Rounds) {
    let n = rounds.timings.len();
    println!(
        "\n## {m}: summary over {n} rounds — step parts are medians (ms); ratios are medians of \
         per-round ratios [min–max]"
    );
    println!(
        "| intervals | optimizer | step | stats | eigen | precondition | × tekfac SGD | × JAX SGD \
         | plain ÷ fast | rounds |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, e) in rounds.plan.iter().enumerate() {
        let totals = rounds.figures(i, |t| t.total);
        if totals.is_empty() {
            println!(
                "| {} | {} | failed in every round | | | | | | | 0 |",
                e.iv.name,
                e.label()
            );
            continue;
        }
        let part = |f: fn(&Timing) -> f64| format!("{:.2}", median(&rounds.figures(i, f)));
        println!(
            "| {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} of {n} |",
            e.iv.name,
            e.label(),
            median(&totals),
            part(|t| t.stats),
            part(|t| t.eigen),
            part(|t| t.precondition),
            spread(&rounds.over_sgd(i)),
            spread(&rounds.over_jax(i)),
            spread(&rounds.gain(i)),
            totals.len()
        );
    }
}

/// Which reference step a target of issue 16 divides by.
#[derive(Clone, Copy)]
enum Reference {
    TekfacSgd,
    JaxSgd,
}

/// Issue 16's speed targets: model, intervals, optimizer, reference, largest ratio.
const TARGETS: [(&str, Intervals, &str, Reference, f64); 4] = [
    ("mlp", DEFAULT, "tekfac", Reference::TekfacSgd, 3.0),
    ("mlp", DEFAULT, "ekfac", Reference::TekfacSgd, 3.0),
    ("mlp", KFAC_JAX, "tekfac", Reference::JaxSgd, 7.0),
    ("cnn", DEFAULT, "tekfac", Reference::TekfacSgd, 1.3),
];

/// Issue 16's targets for model `m` that this run measured: the median of the per-round ratios
/// [min–max] against the bound, and in how many rounds the ratio was within it.
fn print_targets(m: &str, rounds: &Rounds) {
    for (model, iv, name, reference, bound) in TARGETS {
        let Some(i) = rounds.find(iv, name).filter(|_| model == m) else {
            continue;
        };
        let (ratios, what) = match reference {
            Reference::TekfacSgd => (rounds.over_sgd(i), "tekfac's SGD step"),
            Reference::JaxSgd => (rounds.over_jax(i), "the JAX SGD step"),
        };
        if ratios.is_empty() {
            continue;
        }
        let within = ratios.iter().filter(|&&r| r <= bound).count();
        let verdict = if median(&ratios) <= bound {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "issue 16 target: {m} {}, {name} ≤ {bound}× {what}: {}, {verdict} by the median \
             (within the bound in {within} of {} rounds)",
            iv.name,
            spread(&ratios),
            ratios.len()
        );
    }
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

/// TEKFAC's FLOP floor at the default intervals against its `measured` step (ms), at the best
/// GEMM rates seen in this run (`s_rate`, `d_rate` are raised by a fresh measurement).
fn print_floor(m: &str, measured: Option<f64>, s_rate: &mut f64, d_rate: &mut f64) {
    let mut ps = ParamStore::<f32>::seeded(0);
    let _ = model(m, &mut ps);
    let (f32s, f64s) = tekfac_flops(&ps, 128, DEFAULT, true);
    // NOTE: the ceiling is the best GEMM rate seen in this run (start and here): a rate
    // measured during a noisy second would make the floor look slow and the ratio good.
    *s_rate = s_rate.max(gemm_rate::<f32>(1024));
    *d_rate = d_rate.max(gemm_rate::<f64>(1024));
    println!(
        "\nGEMM 1024³ ceiling of this run: sgemm {s_rate:.1} GFLOP/s, dgemm {d_rate:.1} GFLOP/s"
    );
    let floor = (f32s / *s_rate + f64s / *d_rate) / 1e6;
    let Some(measured) = measured else {
        return;
    };
    println!(
        "TEKFAC default intervals: {:.3} GFLOP f32 + {:.3} GFLOP f64 per step → floor {floor:.2} ms \
         at this run's GEMM rates; measured {measured:.2} ms (median over rounds) = {:.2}× the floor",
        f32s / 1e9,
        f64s / 1e9,
        measured / floor
    );
}

fn main() {
    let opts = Options::parse();
    tekfac::set_threads(opts.threads);
    tekfac::tensor::retain_freed_memory();
    let data = dataset::load("fashion-mnist-mini", Split::Train, &DataSource::default())
        .expect("the embedded data set");
    println!(
        "threads {}, batch 128, f32 (f64 curvature state), {} timed steps, {} rounds",
        opts.threads, opts.steps, opts.rounds
    );
    let (mut s_rate, mut d_rate) = (gemm_rate::<f32>(1024), gemm_rate::<f64>(1024));
    println!("GEMM 1024³: sgemm {s_rate:.1} GFLOP/s, dgemm {d_rate:.1} GFLOP/s");
    for &m in &opts.models {
        let rounds = run_rounds(m, &opts, &data);
        print_summary(m, &rounds);
        print_targets(m, &rounds);
        let tekfac = rounds.find(DEFAULT, "tekfac");
        let measured = tekfac
            .map(|i| rounds.figures(i, |t| t.total))
            .filter(|v| !v.is_empty())
            .map(|v| median(&v));
        print_floor(m, measured, &mut s_rate, &mut d_rate);
        if opts.eigen {
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
