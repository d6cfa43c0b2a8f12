//! The fast curvature paths inside `NaturalGradient`: statistics formed by f32 GEMMs
//! (`config.f32_statistics`, `curvature/fast_stats.rs`) blend the same batch factors and the same
//! `s*`/`Θ` batch as the f64 spec path, in the basis the optimizer holds; the warm-started
//! refresh (`config.warm_start`, `curvature/warm.rs`) runs for EKFAC/TEKFAC only, keeps the basis
//! orthonormal, re-seeds `s*`/`Θ` from it, and a run resumed from a checkpoint continues bit for
//! bit (the policy's streak is saved).

mod support;

use nalgebra::DMatrix;
use support::nets::{black_border_batch, image_mlp};
use tekfac::checkpoint::TensorDict;
use tekfac::curvature::{
    CaptureRows, CurvatureBlock, FactorRefresh, KroneckerFactors, Steering, Variant, WarmStart,
    corrected_batch,
};
use tekfac::nn::{Module, Sequential};
use tekfac::optim::{DampingPolicy, NaturalGradient, NgConfig, Optimizer, StepStats};
use tekfac::{BackwardOutput, FisherType, ParamStore, Tape};

/// Flatten + dense 784→48 + ReLU + dense 48→10, in f32.
fn mlp(ps: &mut ParamStore<f32>) -> Sequential<f32> {
    image_mlp(ps, 48)
}

fn pass_of(
    model: &Sequential<f32>,
    ps: &ParamStore<f32>,
    opt: &NaturalGradient<f32>,
    step: u64,
) -> BackwardOutput<f32> {
    let (x, labels) = black_border_batch(step);
    let mut tape = Tape::new(ps);
    let xv = tape.input(x);
    let out = model.forward(&mut tape, xv).unwrap();
    let loss = tape.cross_entropy(out, &labels).unwrap();
    let fisher = Optimizer::<f32>::fisher(opt);
    let rows = Optimizer::<f32>::gradient_rows(opt);
    tape.backward_full(loss, fisher, rows).unwrap()
}

fn config(decay: f64, warm_start: WarmStart) -> NgConfig {
    NgConfig {
        lr: 0.05,
        damping: DampingPolicy::with_lambda(0.03),
        decay,
        stats_interval: 1,
        eigen_interval: 2,
        scale_interval: 1,
        fisher: FisherType::Sampled { k: 1, seed: 5 },
        warm_start,
        ..NgConfig::DEFAULT
    }
}

/// `‖a − b‖_F / ‖b‖_F`.
fn rel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).norm() / b.norm()
}

/// With decay 0 the averages are the last batch, so after one step each block holds exactly
/// what the f32 path formed: the batch factors, and `s*`/`Θ` of the batch in the block's own
/// basis. Both must be the f64 spec path's within f32 rounding.
#[test]
fn f32_statistics_blend_the_spec_paths_batches() {
    for variant in Variant::ALL {
        let mut ps = ParamStore::<f32>::seeded(3);
        let model = mlp(&mut ps);
        let mut opt = NaturalGradient::new(variant, config(0.0, WarmStart::DEFAULT), &ps).unwrap();
        assert!(opt.config.f32_statistics, "on by default");
        let pass = pass_of(&model, &ps, &opt, 0);
        opt.step(&mut ps, &pass).unwrap();
        for (i, block) in opt.blocks().iter().enumerate() {
            let capture = pass.captures.iter().find(|c| c.layer.0 == i).unwrap();
            let rows = CaptureRows::from_capture(capture).unwrap();
            let spec = if variant.trace_restricted() {
                KroneckerFactors::tkfac(&rows)
            } else {
                KroneckerFactors::kfac(&rows)
            };
            let got = block.factors().unwrap();
            let (a, g) = (
                rel(&got.a_factor, &spec.a_factor),
                rel(&got.g_factor, &spec.g_factor),
            );
            assert!(
                a < 1e-5 && g < 1e-5,
                "{variant:?} {}: factors {a:.1e} {g:.1e}",
                block.name()
            );
            assert!((got.trace_scale - spec.trace_scale).abs() <= 1e-12 * spec.trace_scale);
            if variant.corrects_eigenvalues() {
                let theta = corrected_batch(block.basis().unwrap(), &rows);
                let e = rel(&block.eigenvalues().unwrap(), &theta);
                assert!(e < 1e-5, "{variant:?} {}: s*/Θ {e:.1e}", block.name());
            }
        }
    }
}

/// The same step with the f32 statistics switched off uses the block's f64 path: the factors
/// then agree with the spec to f64 rounding (the switch really switches).
#[test]
fn f64_statistics_when_switched_off() {
    let mut ps = ParamStore::<f32>::seeded(3);
    let model = mlp(&mut ps);
    let mut config = config(0.0, WarmStart::DEFAULT);
    config.f32_statistics = false;
    let mut opt = NaturalGradient::new(Variant::Tekfac, config, &ps).unwrap();
    let pass = pass_of(&model, &ps, &opt, 0);
    opt.step(&mut ps, &pass).unwrap();
    let fc1 = pass.captures.iter().find(|c| c.layer.0 == 0).unwrap();
    let rows = CaptureRows::from_capture(fc1).unwrap();
    let spec = KroneckerFactors::tkfac(&rows);
    let got = opt.blocks()[0].factors().unwrap();
    assert!(rel(&got.a_factor, &spec.a_factor) < 1e-14);
}

fn orthonormality_error(q: &DMatrix<f64>) -> f64 {
    (q.transpose() * q - DMatrix::identity(q.ncols(), q.ncols())).norm()
}

/// Twelve steps with a refresh every second one: EKFAC/TEKFAC decompose exactly first, then
/// refine warm; K-FAC/TKFAC always decompose exactly. Every basis stays orthonormal to 1e-10,
/// and `s*`/`Θ` is re-seeded from the refreshed basis (identity 7 holds for any orthogonal
/// basis, `tests/curvature_warm_identities.rs`).
#[test]
fn warm_refresh_for_the_eigenvalue_corrected_variants_only() {
    for variant in Variant::ALL {
        let mut ps = ParamStore::<f32>::seeded(4);
        let model = mlp(&mut ps);
        let mut opt = NaturalGradient::new(variant, config(0.95, WarmStart::DEFAULT), &ps).unwrap();
        let mut reports: Vec<StepStats> = Vec::new();
        for step in 0..12 {
            let pass = pass_of(&model, &ps, &opt, step);
            reports.push(opt.step(&mut ps, &pass).unwrap());
            for block in opt.blocks() {
                let basis = block.basis().unwrap();
                for q in [&basis.q_a, &basis.q_g] {
                    let e = orthonormality_error(q);
                    assert!(e <= 1e-10, "{variant:?} step {step}: ‖QᵀQ − I‖ = {e:.1e}");
                }
            }
        }
        let refreshes: Vec<_> = reports.iter().flat_map(|s| s.refreshes.clone()).collect();
        assert_eq!(
            refreshes.len(),
            6 * 2,
            "{variant:?}: a report per refresh and layer"
        );
        let warm = |f: &FactorRefresh| matches!(f, FactorRefresh::Warm { .. });
        let warm_count = refreshes
            .iter()
            .filter(|(_, r)| warm(&r.a) || warm(&r.g))
            .count();
        if variant.corrects_eigenvalues() {
            assert!(!warm(&refreshes[0].1.a), "the first refresh is exact");
            assert!(
                warm_count >= 6,
                "{variant:?}: only {warm_count} warm refreshes of 10"
            );
        } else {
            assert_eq!(warm_count, 0, "{variant:?} decomposes exactly");
        }
    }
}

/// A warm refresh hands the block the refined basis with its Rayleigh quotients
/// `d = diag(QᵀFQ)` (clamped ≥ 0), from which `s*`/`Θ` is re-seeded as after an exact one: to
/// f64 rounding when the refresh steers in f64, to the f32 rounding of its products (about
/// `ε₃₂‖F‖`) when it steers in f32, the default of an f32 run.
#[test]
fn a_warm_basis_carries_its_rayleigh_quotients() {
    const EPS32: f64 = f32::EPSILON as f64;
    for (steering, tolerance) in [(Steering::F64, 1e-10), (Steering::F32, 4.0 * EPS32)] {
        let mut ps = ParamStore::<f32>::seeded(5);
        let model = mlp(&mut ps);
        let settings = WarmStart {
            steering,
            ..WarmStart::DEFAULT
        };
        let mut opt = NaturalGradient::new(Variant::Tekfac, config(0.95, settings), &ps).unwrap();
        let mut last = StepStats::default();
        for step in 0..3 {
            let pass = pass_of(&model, &ps, &opt, step);
            last = opt.step(&mut ps, &pass).unwrap();
        }
        let (_, report) = &last.refreshes[0];
        assert!(
            matches!(report.a, FactorRefresh::Warm { .. }),
            "step 2 refines fc1's input basis"
        );
        let block: &CurvatureBlock = &opt.blocks()[0];
        let (basis, factors) = (block.basis().unwrap(), block.factors().unwrap());
        let pairs = [
            (&basis.q_a, &basis.d_a, &factors.a_factor),
            (&basis.q_g, &basis.d_g, &factors.g_factor),
        ];
        for (q, d, f) in pairs {
            let rayleigh = (q.transpose() * f * q).diagonal().map(|x| x.max(0.0));
            let gap = (&rayleigh - d).norm() / f.norm();
            eprintln!("{steering:?}: ‖d − diag(QᵀFQ)‖ = {gap:.1e}‖F‖");
            assert!(
                gap <= tolerance,
                "{steering:?}: d = diag(QᵀFQ) to {gap:.1e}‖F‖"
            );
        }
    }
}

/// Saved after 7 steps (warm streaks under way) and resumed in a fresh optimizer and store,
/// the run continues bit for bit.
#[test]
fn warm_refresh_resumes_bit_identically() {
    let run = |stop_at: Option<u64>| -> Vec<f32> {
        let mut ps = ParamStore::<f32>::seeded(6);
        let model = mlp(&mut ps);
        let mut opt =
            NaturalGradient::new(Variant::Ekfac, config(0.95, WarmStart::DEFAULT), &ps).unwrap();
        for step in 0..14 {
            if Some(step) == stop_at {
                let mut dict = TensorDict::default();
                opt.save_state(&ps, &mut dict);
                let streak_saved = dict.contains("ng.fc1.warm_streak");
                assert!(streak_saved);
                let weights = ps.to_standard();
                ps = weights;
                let mut resumed =
                    NaturalGradient::new(Variant::Ekfac, config(0.95, WarmStart::DEFAULT), &ps)
                        .unwrap();
                resumed.load_state(&mut ps, &dict).unwrap();
                opt = resumed;
            }
            let pass = pass_of(&model, &ps, &opt, step);
            opt.step(&mut ps, &pass).unwrap();
        }
        let std = ps.to_standard();
        std.ids()
            .flat_map(|id| std.get(id).data().to_vec())
            .collect()
    };
    let straight = run(None);
    let resumed = run(Some(7));
    assert!(
        straight
            .iter()
            .zip(&resumed)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// `config.stacked_statistics` (`curvature/pending.rs`): two optimizers fed the same passes,
/// one holding its f32 statistics as rows and one blending them every step, hold the same
/// factors to f32 rounding — after a refresh (which blends the held rows in first), after more
/// statistics steps than one stack takes (64-row batches: 16 fit, the 17th blends them), and
/// after `flush_statistics` between two refreshes. Before the flush the holding optimizer's
/// factors are those of its last refresh.
#[test]
fn stacked_statistics_average_like_the_step_by_step_blends() {
    let mut ps = ParamStore::<f32>::seeded(7);
    let model = mlp(&mut ps);
    let settings = |stacked: bool| NgConfig {
        eigen_interval: 20,
        stacked_statistics: stacked,
        ..config(0.95, WarmStart::DEFAULT)
    };
    let (mut ps_each, mut ps_held) = (ps.clone(), ps.clone());
    for variant in [Variant::Ekfac, Variant::Tkfac] {
        let mut each = NaturalGradient::new(variant, settings(false), &ps).unwrap();
        let mut held = NaturalGradient::new(variant, settings(true), &ps).unwrap();
        let compare = |each: &NaturalGradient<f32>, held: &NaturalGradient<f32>, when: &str| {
            for (e, h) in each.blocks().iter().zip(held.blocks()) {
                let (e, h) = (e.factors().unwrap(), h.factors().unwrap());
                let (a, g) = (rel(&h.a_factor, &e.a_factor), rel(&h.g_factor, &e.g_factor));
                assert!(a < 1e-5 && g < 1e-5, "{variant:?} {when}: {a:.1e} {g:.1e}");
                let t = (h.trace_scale - e.trace_scale).abs() / e.trace_scale;
                assert!(t < 1e-12, "{variant:?} {when}: trace_scale {t:.1e}");
            }
        };
        for step in 0..30 {
            let pass = pass_of(&model, &ps, &each, step);
            each.step(&mut ps_each, &pass).unwrap();
            held.step(&mut ps_held, &pass).unwrap();
            if step == 0 || step == 20 {
                compare(&each, &held, &format!("refresh at step {step}"));
            }
            if step == 19 {
                let (e, h) = (each.blocks()[0].factors(), held.blocks()[0].factors());
                let moved = rel(&h.unwrap().a_factor, &e.unwrap().a_factor);
                assert!(moved > 1e-3, "{variant:?}: rows still held ({moved:.1e})");
            }
        }
        held.flush_statistics().unwrap();
        compare(&each, &held, "flushed at step 29");
    }
}
