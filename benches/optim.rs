//! Optimizer benchmark: the per-step time of SGD, Adam, K-FAC, EKFAC, TKFAC and TEKFAC on the
//! MLP and CNN presets at batch 128 (f32, embedded Fashion-MNIST subset), at the default
//! intervals and at kfac-jax's usual setting (statistics every step, eigenbasis every 10), next
//! to EKFAC and TEKFAC with their fast paths off ("-plain": no eigenbasis-parametrised layers,
//! exact refreshes, f64 statistics) and to the JAX SGD step of `../shared/bench/peer`; then one
//! eigen-refresh per factor (nalgebra) next to numpy's LAPACK `eigh`, and the GEMM floors of TEKFAC
//! and SGD (every GEMM of a step listed from the layer shapes, each timed at its shape, same run).
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

use std::collections::HashMap;
use std::time::Instant;
use tekfac::curvature::{FactorRefresh, PANEL, Variant, WarmStart, refine_head_columns};
use tekfac::dataset::{self, Batches, DataSource, Dataset, LastBatch, Split};
use tekfac::kernels::gemm::{MatRef, gemm_into};
use tekfac::nn::{Cnn, Mlp, Module};
use tekfac::optim::{
    Adam, AdamConfig, DampingPolicy, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig,
    eigenbasis_pays,
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

/// Mean step time and its parts (ms): total, statistics, eigenbasis, preconditioning; and the
/// mean number of warm-refresh iterations per factor refresh in the timed steps (an exact
/// refresh counted as [`EXACT_AS_ITERATIONS`]), 0 without refreshes.
#[derive(Clone, Copy)]
struct Timing {
    total: f64,
    stats: f64,
    eigen: f64,
    precondition: f64,
    iterations: f64,
}

/// What the floor counts an exact (nalgebra) refresh of a factor as, in warm iterations: about
/// its cost (`≈ 9n³` FLOPs) against one iteration's products.
const EXACT_AS_ITERATIONS: f64 = 4.5;

/// The iterations of one factor refresh as the floor counts them.
fn iterations(r: &FactorRefresh) -> f64 {
    match r {
        FactorRefresh::Warm { iterations, .. } => *iterations as f64,
        FactorRefresh::Exact(_) => EXACT_AS_ITERATIONS,
    }
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
        iterations: 0.0,
    };
    let mut factor_refreshes = 0usize;
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
                for (_, r) in &s.refreshes {
                    t.iterations += iterations(&r.a) + iterations(&r.g);
                    factor_refreshes += 2;
                }
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
    t.iterations /= factor_refreshes.max(1) as f64;
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

/// Rows per example of a preset's layer: 1 for dense layers, output locations for convs.
fn positions(idx: usize, kind: &LayerKind) -> usize {
    match kind {
        LayerKind::Dense => 1,
        // NOTE: the presets' conv geometry: 28→24 and 12→8 ("valid" 5×5).
        LayerKind::Conv2d { .. } => {
            if idx == 0 {
                576
            } else {
                64
            }
        }
    }
}

/// One GEMM `[m, k]·[k, n]` of a step, `per_step` times per step on average (amortised over
/// the intervals), in f32 or f64.
#[derive(Clone, Copy)]
struct Gemm {
    m: usize,
    k: usize,
    n: usize,
    per_step: f64,
    f64: bool,
}

impl Gemm {
    fn f32(m: usize, k: usize, n: usize, per_step: f64) -> Self {
        Gemm {
            m,
            k,
            n,
            per_step,
            f64: false,
        }
    }

    fn f64(m: usize, k: usize, n: usize, per_step: f64) -> Self {
        Gemm {
            f64: true,
            ..Gemm::f32(m, k, n, per_step)
        }
    }

    fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64 * self.per_step
    }

    /// Milliseconds of one product of this shape in steady state.
    fn once_ms(&self) -> f64 {
        if self.f64 {
            time_gemm::<f64>(self.m, self.k, self.n)
        } else {
            time_gemm::<f32>(self.m, self.k, self.n)
        }
    }
}

/// Milliseconds of one `[m, k]·[k, n]` product in `F` in steady state: the mean over a batch
/// of back-to-back products (as a step runs them: caches and GEMM threads warm), best of 3
/// batches, after two warm-up products.
fn time_gemm<F: Float>(m: usize, k: usize, n: usize) -> f64 {
    let mut rng = seeded_rng(0);
    let a = Tensor::<F>::randn(&[m, k], 0.0, 1.0, &mut rng);
    let b = Tensor::<F>::randn(&[k, n], 0.0, 1.0, &mut rng);
    let mut c = vec![F::ZERO; m * n];
    let (ma, mb) = (
        MatRef::new(a.data(), m, k, false),
        MatRef::new(b.data(), k, n, false),
    );
    let mut product = || gemm_into(F::ONE, ma, mb, F::ZERO, &mut c);
    product();
    product();
    // NOTE: about 20 ms per batch, at least 3 products.
    let t = Instant::now();
    product();
    let reps = ((0.02 / t.elapsed().as_secs_f64().max(1e-9)) as usize).clamp(3, 200);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        (0..reps).for_each(|_| product());
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best * 1e3
}

/// The GEMMs of one SGD step at batch `b`: forward `āW̄ᵀ`, backward `gᵀā` and (but for the
/// first layer) `gW`.
fn sgd_gemms(ps: &ParamStore<f32>, b: usize) -> Vec<Gemm> {
    let mut out = Vec::new();
    for (idx, l) in ps.layers().iter().enumerate() {
        let (o, i, ib, r) = (l.d_out, l.d_in, l.d_in_bar(), b * positions(idx, &l.kind));
        out.push(Gemm::f32(r, ib, o, 1.0));
        out.push(Gemm::f32(o, r, ib, 1.0));
        if idx > 0 {
            out.push(Gemm::f32(r, o, i, 1.0));
        }
    }
    out
}

/// The GEMMs of one amortised TEKFAC step at batch `b` (sampled Fisher, k = 1) as the code
/// runs them, at interval setting `iv`. A floor: elementwise work, copies, the sampled sweep's
/// loss and the tail completion's `O(n·h²)` products count nothing; each warm refresh runs the
/// timed run's mean number of iterations per factor (an exact refresh in the timed steps,
/// `≈ 9n³` FLOPs, counted as [`EXACT_AS_ITERATIONS`] of them).
///
/// Per layer (`r = b·T` rows, `ib = d_in + 1`): a dense layer trained in its eigenbasis
/// (`eigenbasis_pays`) adds `â = āQ_A`, `·Q_Gᵀ`, `ĝ = gQ_G` and `·Q_Aᵀ` to its passes
/// (`ops/eigen_dense.rs`) and is updated elementwise, its `W̃` and momentum rotated into each
/// new basis; any other layer rotates its update into and out of the basis every step.
fn tekfac_gemms(ps: &ParamStore<f32>, b: usize, iv: Intervals, iterations: f64) -> Vec<Gemm> {
    let mut out = Vec::new();
    let (stats, scale, eigen) = (iv.stats as f64, iv.scale as f64, iv.eigen as f64);
    let capture = 1.0 / iv.stats.min(iv.scale) as f64;
    for (idx, l) in ps.layers().iter().enumerate() {
        let (o, i, ib, r) = (l.d_out, l.d_in, l.d_in_bar(), b * positions(idx, &l.kind));
        let first = idx == 0;
        if eigenbasis_pays(l, b) {
            // Forward â = āQ_A, t = âW̃ᵀ, s = tQ_Gᵀ; backward ĝ = gQ_G (also in the sampled
            // sweep), ∂W̃ = ĝᵀâ, and but for the first layer dx = (ĝW̃)Q_Aᵀ (also sampled).
            out.extend([
                Gemm::f32(r, ib, ib, 1.0),
                Gemm::f32(r, ib, o, 1.0),
                Gemm::f32(r, o, o, 1.0 + capture),
                Gemm::f32(r, o, o, 1.0),
                Gemm::f32(o, r, ib, 1.0),
            ]);
            if !first {
                out.push(Gemm::f32(r, o, ib, 1.0 + capture));
                out.push(Gemm::f32(r, ib, i, 1.0 + capture));
            }
            // W̃, its momentum and the step's gradient follow each new basis, X ↦ R_Gᵀ X R_A
            // for three X, each side as the code chooses (`optim/natural/eigenbasis.rs`): the
            // refresh's iterations on X (`curvature/change.rs`), or R = Q_oldᵀ Q_new and the
            // product with it.
            for (n, rows) in [(ib, o), (o, ib)] {
                out.extend(basis_change_gemms(n, rows, iterations, eigen));
            }
        } else {
            out.push(Gemm::f32(r, ib, o, 1.0));
            out.push(Gemm::f32(o, r, ib, 1.0));
            if !first {
                out.push(Gemm::f32(r, o, i, 1.0 + capture));
            }
            // Rotation into the basis and out: Q_Gᵀ ∇ Q_A, Q_G U Q_Aᵀ.
            out.push(Gemm::f32(o, o, ib, 2.0));
            out.push(Gemm::f32(o, ib, ib, 2.0));
        }
        // Statistics: TKFAC's δΦ and δΨ grams (upper block triangle of ≥ PANEL-wide panels).
        for n in [ib, o] {
            let p = (n / PANEL).max(1) as f64;
            out.push(Gemm::f32(n, r, n, (p + 1.0) / (2.0 * p) / stats));
        }
        // Re-scaling: â = āQ_A, ĝ = gQ_G, then Σ (ĝ^∘2)ᵀ(â^∘2) or the per-example products. A
        // layer in its basis hands in the pass's â and ĝ unless the basis changed in the step.
        let rotations = match eigenbasis_pays(l, b) {
            true => 1.0 / lcm(iv.scale, iv.eigen) as f64,
            false => 1.0 / scale,
        };
        out.push(Gemm::f32(r, ib, ib, rotations));
        out.push(Gemm::f32(r, o, o, rotations));
        out.push(Gemm::f32(ib, r, o, 1.0 / scale));
        // The warm refresh, per factor (`curvature/refine.rs`, f32 steering): `Y = F Q` once,
        // then per iteration (the timed run's mean count) the head's steering products in f32
        // (`B_H = Q_Hᵀ Y`, `Q K_H`, `F Q'_H`, the tail of `Y`: `Y_T Cᵀ`, `W C`) and its
        // orthonormalisation in f64 (`Z_Hᵀ Z_H`, `C = Q'_Hᵀ Q_T`, `Q_T Cᵀ`, `W C`).
        for n in [ib, o] {
            let (h, per) = (refine_head_columns(n), iterations / eigen);
            out.extend([
                Gemm::f32(n, n, n, 1.0 / eigen),
                Gemm::f32(h, n, n, per),
                Gemm::f32(n, n, h, 2.0 * per),
                Gemm::f64(h, n, h, per),
            ]);
            let t = n - h;
            if t > 0 {
                out.extend([
                    Gemm::f32(n, t, h, per),
                    Gemm::f32(n, h, t, per),
                    Gemm::f64(h, n, t, per),
                    Gemm::f64(n, t, h, per),
                    Gemm::f64(n, h, t, per),
                ]);
            }
        }
    }
    out
}

/// The GEMMs that move three `[rows, n]` matrices into a refreshed basis of one factor of size
/// `n` per step (`iterations` warm iterations, a refresh every `eigen` steps), by the code's
/// rule: the iterations' products on the three stacked (`X K_H`, `·L⁻ᵀ`, `X_T Cᵀ`, `X'_H CCᵀ`,
/// `·S`, `·C`) when they cost fewer multiply-adds than `R = Q_oldᵀ Q_new` (`n³`) and `X R`.
fn basis_change_gemms(n: usize, rows: usize, iterations: f64, eigen: f64) -> Vec<Gemm> {
    const COUNT: usize = 3;
    let (h, stacked) = (refine_head_columns(n), COUNT * rows);
    let t = n - h;
    let per_row = (n * h + 3 * h * h + 2 * t * h) as f64;
    let steps = iterations * (stacked as f64) * per_row;
    let product = (n * n * n + stacked * n * n) as f64;
    if steps < product {
        let per = iterations / eigen;
        let mut gemms = vec![Gemm::f32(stacked, n, h, per), Gemm::f32(stacked, h, h, per)];
        if t > 0 {
            gemms.extend([
                Gemm::f32(stacked, t, h, per),
                Gemm::f32(stacked, h, h, 2.0 * per),
                Gemm::f32(stacked, h, t, per),
            ]);
        }
        gemms
    } else {
        vec![
            Gemm::f32(n, n, n, 1.0 / eigen),
            Gemm::f32(stacked, n, n, 1.0 / eigen),
        ]
    }
}

/// The least common multiple of two intervals: how often both fall on one step.
fn lcm(a: u64, b: u64) -> u64 {
    let gcd = |mut x: u64, mut y: u64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

/// TEKFAC's GEMM floor at both interval settings beside SGD's, each GEMM timed at its own shape
/// in this run, against the medians `rounds` measured: what the GEMMs alone allow for the
/// targets (× tekfac's SGD step at the default intervals, × the JAX SGD step at kfac-jax's).
fn print_floor(m: &str, rounds: &Rounds) {
    let mut ps = ParamStore::<f32>::seeded(0);
    let _ = model(m, &mut ps);
    // NOTE: each shape is timed once; SGD's and both settings' lists share most of them.
    let mut timed: HashMap<(usize, usize, usize, bool), f64> = HashMap::new();
    let mut floor = |gemms: &[Gemm]| -> (f64, f64, f64) {
        let ms = (gemms.iter())
            .map(|g| {
                g.per_step
                    * *timed
                        .entry((g.m, g.k, g.n, g.f64))
                        .or_insert_with(|| g.once_ms())
            })
            .sum();
        let f32s = gemms.iter().filter(|g| !g.f64).map(Gemm::flops).sum();
        let f64s = gemms.iter().filter(|g| g.f64).map(Gemm::flops).sum();
        (ms, f32s, f64s)
    };
    let measured = |iv: Intervals, name: &str| {
        let v = rounds
            .find(iv, name)
            .map(|i| rounds.figures(i, |t| t.total))
            .unwrap_or_default();
        (!v.is_empty()).then(|| median(&v))
    };
    let (sgd_ms, sgd_flops, _) = floor(&sgd_gemms(&ps, 128));
    println!(
        "\nGEMM floors (every GEMM of the step timed at its own shape in this run; elementwise \
         work free): SGD {:.3} GFLOP = {sgd_ms:.2} ms",
        sgd_flops / 1e9
    );
    let sgd = measured(DEFAULT, "sgd");
    if let Some(sgd) = sgd {
        println!(
            "  SGD measured {sgd:.2} ms = {:.2}× its floor",
            sgd / sgd_ms
        );
    }
    let jax: Vec<f64> = rounds.jax.iter().flatten().copied().collect();
    for iv in [DEFAULT, KFAC_JAX] {
        // NOTE: one iteration per refresh when the run made none in its timed steps.
        let iterations = rounds
            .find(iv, "tekfac")
            .map(|i| rounds.figures(i, |t| t.iterations))
            .filter(|v| !v.is_empty())
            .map(|v| median(&v))
            .filter(|&x| x > 0.0)
            .unwrap_or(1.0);
        let (ms, f32s, f64s) = floor(&tekfac_gemms(&ps, 128, iv, iterations));
        print!(
            "  TEKFAC, {} ({iterations:.1} refresh iterations per factor): {:.3} GFLOP f32 + \
             {:.3} GFLOP f64 = {ms:.2} ms = {:.2}× SGD's floor",
            iv.name,
            f32s / 1e9,
            f64s / 1e9,
            ms / sgd_ms
        );
        if let Some(t) = measured(iv, "tekfac") {
            print!("; measured {t:.2} ms = {:.2}× its floor", t / ms);
        }
        if let Some(sgd) = sgd.filter(|_| iv == DEFAULT) {
            print!(
                "; SGD's measured step + TEKFAC's extra GEMMs at the floor = {:.2}× SGD",
                (sgd + ms - sgd_ms) / sgd
            );
        }
        if !jax.is_empty() && iv == KFAC_JAX {
            print!(
                "; the floor alone = {:.2}× the JAX SGD step (median)",
                ms / median(&jax)
            );
        }
        println!();
    }
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
    let (s_rate, d_rate) = (gemm_rate::<f32>(1024), gemm_rate::<f64>(1024));
    println!("GEMM 1024³: sgemm {s_rate:.1} GFLOP/s, dgemm {d_rate:.1} GFLOP/s");
    for &m in &opts.models {
        let rounds = run_rounds(m, &opts, &data);
        print_summary(m, &rounds);
        print_targets(m, &rounds);
        print_floor(m, &rounds);
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
