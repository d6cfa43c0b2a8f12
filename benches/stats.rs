//! Statistics benchmark (issue 16, lever 3): each layer's statistics step (K-FAC's `A, G`,
//! TKFAC's `δ, δΦ, δΨ`) and re-scaling step (`s*`/`Θ` in TEKFAC's basis), by the f64 path
//! (`KroneckerFactors::from_capture`, `corrected_batch`: f32 → f64 rows, f64 GEMMs) and by the
//! f32 path (`fast_factors`, `fast_corrected_batch`: f32 GEMMs summed in f64), on the MLP and CNN
//! presets at batch 128 (embedded Fashion-MNIST subset, sampled Fisher k = 1, initial weights).
//! Then the whole network's TEKFAC statistics + re-scaling step with the layers on rayon (as
//! the optimizer runs them) and one after another, what a training step runs after the first
//! (each batch blended in place into a block's averages, and the damped diagonal `Θ + λ` of
//! `FastBlock::sync`), and the f32 path's accuracy.
//!
//! Run: flock /tmp/tekfac-bench.lock cargo bench --bench stats -- [--threads 2]
//!      [--model mlp|cnn|both] [--rounds 7]
//!
//! Each round times every (layer, step) f64 then f32, back to back; the figures are medians
//! over rounds and the speed-ups medians of the per-round ratios with their range, so that a
//! change in machine load hits both paths alike.

use rayon::prelude::*;
use std::time::Instant;
use tekfac::curvature::{
    BatchStatistic, CaptureRows, CurvatureBlock, Damping, FastBlock, FastCorrection, FastFactors,
    GramSplit, KroneckerBasis, KroneckerFactors, PANEL, ROW_BLOCK, Variant, corrected_batch,
    fast_corrected_batch, fast_factors, gram_with,
};
use tekfac::dataset::{self, DataSource, Split};
use tekfac::nn::{Cnn, Mlp, Module};
use tekfac::{FisherType, LayerCapture, LayerInfo, ParamStore, Tape};

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().cloned().fold(f64::MAX, f64::min);
    (lo, v.iter().cloned().fold(f64::MIN, f64::max))
}

/// Milliseconds of one call of `f` (the mean over enough calls to fill ~30 ms).
fn time_ms(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64();
    let reps = ((0.03 / once.max(1e-9)) as usize).clamp(1, 200);
    let t = Instant::now();
    (0..reps).for_each(|_| f());
    t.elapsed().as_secs_f64() * 1e3 / reps as f64
}

/// One layer's capture with TEKFAC's basis (f64, and row-major f32 copies).
struct Layer {
    name: String,
    info: LayerInfo,
    capture: LayerCapture<f32>,
    basis: KroneckerBasis,
    q_a: Vec<f32>,
    q_g: Vec<f32>,
}

fn row_major_f32(m: &nalgebra::DMatrix<f64>) -> Vec<f32> {
    m.transpose().iter().map(|&x| x as f32).collect()
}

/// The layers of `model_name` on the first 128 images, sampled Fisher k = 1.
fn layers(model_name: &str) -> Vec<Layer> {
    let data = dataset::load("fashion-mnist-mini", Split::Train, &DataSource::default())
        .expect("the embedded data set");
    let b = data.batch(&(0..128).collect::<Vec<_>>()).unwrap();
    let mut ps = ParamStore::<f32>::seeded(0);
    let model: Box<dyn Module<f32>> = match model_name {
        "mlp" => Box::new(Mlp::new(&mut ps, 784, 10).unwrap()),
        _ => Box::new(Cnn::new(&mut ps, 10).unwrap()),
    };
    let mut tape = Tape::new(&ps);
    let x = tape.input(b.images);
    let logits = model.forward(&mut tape, x).unwrap();
    let loss = tape.cross_entropy(logits, &b.labels).unwrap();
    let fisher = FisherType::Sampled { k: 1, seed: 0 };
    let mut captures = tape.backward_with(loss, fisher).unwrap().captures;
    captures.sort_by_key(|c| c.layer.0);
    captures
        .into_iter()
        .map(|capture| {
            let factors = KroneckerFactors::from_capture(true, &capture).unwrap();
            let basis = KroneckerBasis::from_factors(&factors).unwrap();
            Layer {
                name: ps.layers()[capture.layer.0].name.clone(),
                info: ps.layers()[capture.layer.0].clone(),
                q_a: row_major_f32(&basis.q_a),
                q_g: row_major_f32(&basis.q_g),
                capture,
                basis,
            }
        })
        .collect()
}

const STEPS: [&str; 3] = ["kfac factors", "tkfac factors", "rescale"];

/// The f64 path of `step` on `l`.
fn slow(step: &str, l: &Layer) {
    match step {
        "kfac factors" => drop(KroneckerFactors::from_capture(false, &l.capture).unwrap()),
        "tkfac factors" => drop(KroneckerFactors::from_capture(true, &l.capture).unwrap()),
        _ => drop(corrected_batch(
            &l.basis,
            &CaptureRows::from_capture(&l.capture).unwrap(),
        )),
    }
}

/// The f32 path of `step` on `l`.
fn fast(step: &str, l: &Layer) {
    match step {
        "kfac factors" => drop(fast_factors(false, &l.capture).unwrap()),
        "tkfac factors" => drop(fast_factors(true, &l.capture).unwrap()),
        _ => drop(fast_corrected_batch(&l.capture, &l.q_a, &l.q_g).unwrap()),
    }
}

/// TEKFAC's statistics + re-scaling of every layer, on rayon or in sequence.
fn network_step(layers: &[Layer], f32_path: bool, parallel: bool) {
    let one = |l: &Layer| {
        for step in ["tkfac factors", "rescale"] {
            if f32_path {
                fast(step, l)
            } else {
                slow(step, l)
            }
        }
    };
    if parallel {
        layers.par_iter().for_each(one);
    } else {
        layers.iter().for_each(one);
    }
}

fn bench_model(model_name: &str, rounds: usize) {
    let layers = layers(model_name);
    println!("\n## {model_name} preset, batch 128, sampled Fisher k = 1, {rounds} rounds");
    println!(
        "| layer | rows × d_in' | d_out | step | f64 path (ms) | f32 path (ms) | speed-up (range) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for l in &layers {
        let (rows, d_in) = (l.capture.a.dims()[0], l.capture.a.dims()[1]);
        for step in STEPS {
            let (mut t64, mut t32, mut ratio) = (vec![], vec![], vec![]);
            for _ in 0..rounds {
                let a = time_ms(|| slow(step, l));
                let b = time_ms(|| fast(step, l));
                t64.push(a);
                t32.push(b);
                ratio.push(a / b);
            }
            let (lo, hi) = range(&ratio);
            println!(
                "| {} | {rows} × {d_in} | {} | {step} | {:.2} | {:.2} | {:.2}× ({lo:.2}–{hi:.2}) |",
                l.name,
                l.capture.g[0].dims()[1],
                median(t64),
                median(t32),
                median(ratio.clone())
            );
        }
    }
    let modes = [
        ("f64, layers on rayon", false, true),
        ("f32, layers on rayon", true, true),
        ("f32, layers in sequence", true, false),
    ];
    let mut times = vec![Vec::new(); modes.len()];
    for _ in 0..rounds {
        for (t, &(_, f32_path, parallel)) in times.iter_mut().zip(&modes) {
            t.push(time_ms(|| network_step(&layers, f32_path, parallel)));
        }
    }
    println!(
        "\nWhole network, TEKFAC statistics + re-scaling step (δ, δΦ, δΨ and Θ of every layer):"
    );
    for ((name, _, _), t) in modes.iter().zip(&times) {
        let ratios: Vec<f64> = times[0].iter().zip(t).map(|(a, b)| a / b).collect();
        let (lo, hi) = range(&ratios);
        println!(
            "  {name:26} {:8.2} ms   f64-rayon / this = {:.2} ({lo:.2}–{hi:.2})",
            median(t.clone()),
            median(ratios.clone())
        );
    }
    in_place(&layers, rounds);
    accuracy(&layers);
}

/// What a training step runs once the averages exist: TEKFAC's `δΦ, δΨ` and `Θ` batches
/// blended in place into a fitted block's averages (`FastFactors`, `FastCorrection`), and the
/// damped diagonal `Θ + λ` that `FastBlock::sync` rebuilds after each re-scaling (timed by
/// alternating two values of λ, so that every call rebuilds it).
fn in_place(layers: &[Layer], rounds: usize) {
    const C: (f64, f64) = (0.95, 0.05);
    println!("\nIn place (a training step after the first), median ms over {rounds} rounds:");
    println!("| layer | δΦ, δΨ blend | Θ blend | damped Θ + λ |");
    println!("|---|---|---|---|");
    for l in layers {
        let mut block = CurvatureBlock::new(Variant::Tekfac, &l.info, 0.95);
        block.observe(&l.capture).unwrap();
        block.refresh().unwrap();
        block.rescale(&l.capture).unwrap();
        let mut factors = fast_factors(true, &l.capture).unwrap();
        let mut theta = fast_corrected_batch(&l.capture, &l.q_a, &l.q_g).unwrap();
        let mut hot = FastBlock::<f32>::new(&block);
        let mut lambda = [Damping::Additive(0.1), Damping::Additive(0.2)]
            .into_iter()
            .cycle();
        let (mut tf, mut tc, mut td) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            tf.push(time_ms(|| {
                let batch = FastFactors::new(true, &l.capture).unwrap();
                batch.blend_into(&mut factors, C.0, C.1);
            }));
            tc.push(time_ms(|| {
                let batch = FastCorrection::of_capture(&l.capture, &l.q_a, &l.q_g).unwrap();
                batch.blend_into(&mut theta, C.0, C.1);
            }));
            td.push(time_ms(|| {
                hot.sync(&block, &lambda.next().unwrap()).unwrap();
            }));
        }
        println!(
            "| {} | {:.3} | {:.3} | {:.3} |",
            l.name,
            median(tf),
            median(tc),
            median(td)
        );
    }
}

/// The f32 path's relative Frobenius error against the f64 path, per layer, and the error of
/// the input-side gram formed as one f32 GEMM over all rows (no f64 blocks).
fn accuracy(layers: &[Layer]) {
    let rel = |a: &nalgebra::DMatrix<f64>, b: &nalgebra::DMatrix<f64>| (a - b).norm() / b.norm();
    println!("\nAccuracy (relative Frobenius error against the f64 path):");
    for l in layers {
        let slow_f = KroneckerFactors::from_capture(true, &l.capture).unwrap();
        let fast_f = fast_factors(true, &l.capture).unwrap();
        let slow_k = KroneckerFactors::from_capture(false, &l.capture).unwrap();
        let (n, d_in) = (l.capture.examples() as f64, l.capture.a.dims()[1]);
        let a = l.capture.a.data();
        let blocked = gram_with(&[a], d_in, None, 1.0 / n, GramSplit::DEFAULT);
        let one_gemm = gram_with(&[a], d_in, None, 1.0 / n, GramSplit::WHOLE);
        let rows = CaptureRows::from_capture(&l.capture).unwrap();
        let slow_c = corrected_batch(&l.basis, &rows);
        let fast_c = fast_corrected_batch(&l.capture, &l.q_a, &l.q_g).unwrap();
        println!(
            "  {:6} δΦ {:.1e}  δΨ {:.1e}  Θ {:.1e}  A: blocked {:.1e}, one f32 GEMM {:.1e}",
            l.name,
            rel(&fast_f.a_factor, &slow_f.a_factor),
            rel(&fast_f.g_factor, &slow_f.g_factor),
            rel(&fast_c, &slow_c),
            rel(&blocked, &slow_k.a_factor),
            rel(&one_gemm, &slow_k.a_factor),
        );
    }
}

fn main() {
    let threads = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(2);
    let rounds = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(7);
    let which = arg("--model").unwrap_or_else(|| "both".into());
    tekfac::set_threads(threads);
    println!("threads: {threads} (rayon and matrixmultiply), row block {ROW_BLOCK}, panel {PANEL}");
    for model_name in ["mlp", "cnn"] {
        if which == "both" || which == model_name {
            bench_model(model_name, rounds);
        }
    }
}
