//! Tracked Rayleigh quotients (issue 16): a dense layer trained in its eigenbasis hands its
//! rotated rows `â = āQ_A`, `ĝ = gQ_G` to the statistics it holds (`curvature/pending.rs`), the
//! block folds their weighted squares into `diag(QᵀFQ)` of its current basis (`block.rs`), and
//! a warm refresh keeps a basis on them without the `n³` product that would measure it
//! (`warm.rs`, "Kept on tracked quotients"). Checked here: the tracked quotients are
//! `diag(QᵀFQ)` formed in f64 from the block's own factors, to f32 rounding, through refreshes,
//! both variants' row weights and two sweeps; a kept factor keeps its basis bit for bit and its
//! change of coordinates is the identity; the policy keeps a basis on what the quotients say,
//! and measures by the product when asked to iterate or for a threshold below what f32 rows
//! resolve; the tracking stops at an observation without rotated rows; checkpoints carry it
//! (bit-identical resume) and drop it beside a basis that is not orthonormal.

mod support;

use nalgebra::{DMatrix, DVector};
use support::curvature::{info, random_capture};
use support::nets::{black_border_batch, image_mlp};
use tekfac::checkpoint::TensorDict;
use tekfac::curvature::{
    CurvatureBlock, EigenRefresh, FactorRefresh, FastRows, KroneckerBasis, KroneckerFactors,
    PendingFactors, StateArray, Variant, WarmStart,
};
use tekfac::nn::{Module, Sequential};
use tekfac::optim::{DampingPolicy, NaturalGradient, NgConfig, Optimizer, StepStats};
use tekfac::{FisherType, LayerCapture, ParamStore, Tape, Tensor};

/// Flatten + dense 784→256 + ReLU + dense 256→10, in f32: fc1 trains in its basis at batch 64,
/// fc2 (10 outputs) does not.
fn mlp(ps: &mut ParamStore<f32>) -> Sequential<f32> {
    image_mlp(ps, 256)
}

/// Statistics and re-scaling every step, a refresh every 4th; two sampled sweeps; a previous
/// basis kept within a tolerance of 0.5, so that most refreshes keep fc1's factors.
fn config() -> NgConfig {
    NgConfig {
        lr: 0.02,
        damping: DampingPolicy::with_lambda(0.03),
        momentum: 0.9,
        stats_interval: 1,
        eigen_interval: 4,
        scale_interval: 1,
        fisher: FisherType::Sampled { k: 2, seed: 5 },
        warm_start: WarmStart {
            tolerance: 0.5,
            keep_tolerance: Some(0.5),
            ..WarmStart::DEFAULT
        },
        ..NgConfig::DEFAULT
    }
}

fn step(
    ps: &mut ParamStore<f32>,
    opt: &mut NaturalGradient<f32>,
    model: &Sequential<f32>,
    s: u64,
) -> StepStats {
    let (x, labels) = black_border_batch(s);
    let mut tape = Tape::new(ps);
    let xv = tape.input(x);
    let out = model.forward(&mut tape, xv).unwrap();
    let loss = tape.cross_entropy(out, &labels).unwrap();
    let (fisher, rows) = (opt.fisher(), opt.gradient_rows());
    let pass = tape.backward_full(loss, fisher, rows).unwrap();
    opt.step(ps, &pass).unwrap()
}

/// `max_j |d_j − (QᵀFQ)_jj| / ‖F‖_F`, the product formed in f64.
fn quotient_error(d: &DVector<f64>, q: &DMatrix<f64>, f: &DMatrix<f64>) -> f64 {
    let exact = (q.transpose() * f * q).diagonal();
    (d - exact).amax() / f.norm()
}

/// Both tracked quotients of `block` against its factors and basis, in f64.
fn block_error(block: &CurvatureBlock) -> Option<f64> {
    let [d_a, d_g] = block.rayleigh_quotients()?;
    let (f, b) = (block.factors()?, block.basis()?);
    Some(quotient_error(d_a, &b.q_a, &f.a_factor).max(quotient_error(d_g, &b.q_g, &f.g_factor)))
}

#[test]
fn tracked_quotients_are_those_of_the_factors_and_keep_the_basis() {
    for variant in [Variant::Ekfac, Variant::Tekfac] {
        let mut ps = ParamStore::<f32>::seeded(3);
        let model = mlp(&mut ps);
        let mut opt = NaturalGradient::new(variant, config(), &ps).unwrap();
        let (mut checked, mut kept_on_tracked) = (0, 0);
        for s in 0..14 {
            let before = opt.blocks()[0].basis().cloned();
            let tracked = opt.blocks()[0].rayleigh_quotients().is_some();
            let stats = step(&mut ps, &mut opt, &model, s);
            let fc1 = &opt.blocks()[0];
            if let Some(err) = block_error(fc1) {
                assert!(
                    err < 2e-6,
                    "{variant} step {s}: tracked quotients off by {err:.2e}"
                );
                checked += 1;
            }
            let report = stats
                .refreshes
                .iter()
                .find(|(n, _)| n == "fc1")
                .map(|(_, r)| r);
            // Every row since step 0's refresh came with its twin, so a kept input factor was
            // kept on tracked quotients: as it was, through the identity (the product path
            // would have re-embedded its dead columns).
            let kept =
                report.is_some_and(|r| matches!(r.a, FactorRefresh::Warm { iterations: 0, .. }));
            if let (true, Some(before), true) = (kept, before, tracked) {
                let after = fc1.basis().unwrap();
                assert_eq!(
                    after.q_a, before.q_a,
                    "{variant} step {s}: kept bit for bit"
                );
                let change = fc1.basis_change(fc1.basis_revision() - 1).unwrap();
                assert!(change[0].as_ref().unwrap().is_identity());
                kept_on_tracked += 1;
            }
        }
        // fc2 is not stored in its basis: its rows come without twins, and once they are
        // blended its quotients are no longer known (they are only from a refresh to the next
        // observation).
        opt.flush_statistics().unwrap();
        assert!(opt.blocks()[1].rayleigh_quotients().is_none());
        let err = block_error(&opt.blocks()[0]).expect("still tracked after the flush");
        assert!(err < 2e-6, "{variant} after the flush: {err:.2e}");
        assert!(
            checked >= 10 && kept_on_tracked >= 2,
            "{variant}: {checked}, {kept_on_tracked}"
        );
    }
}

/// A 6×6 factor and a basis rotated away from its eigenvectors by `angle` in two planes.
fn factor_and_basis(angle: f64) -> (KroneckerFactors, KroneckerBasis) {
    let d = DVector::from_vec(vec![6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
    let f = DMatrix::from_diagonal(&d);
    let mut q = DMatrix::<f64>::identity(6, 6);
    let (c, s) = (angle.cos(), angle.sin());
    for (i, j) in [(0, 1), (2, 3)] {
        (q[(i, i)], q[(i, j)], q[(j, i)], q[(j, j)]) = (c, -s, s, c);
    }
    let factors = KroneckerFactors {
        a_factor: f.clone(),
        g_factor: f,
        trace_scale: 1.0,
    };
    let basis = KroneckerBasis {
        q_a: q.clone(),
        d_a: d.clone(),
        q_g: q,
        d_g: d,
    };
    (factors, basis)
}

/// The policy keeps a basis on what the tracked quotients say (here quotients that claim the
/// rotated basis is exact), and measures by the product when asked for an iteration at every
/// refresh, for a keep threshold below `1e-4`, or when the quotients put the basis outside it.
#[test]
fn the_policy_keeps_on_tracked_quotients_within_their_reach() {
    let (f, previous) = factor_and_basis(0.3);
    let claims_exact = [previous.d_a.clone(), previous.d_g.clone()];
    let truthful = |q: &DMatrix<f64>, m: &DMatrix<f64>| (q.transpose() * m * q).diagonal();
    let truth = [
        truthful(&previous.q_a, &f.a_factor),
        truthful(&previous.q_g, &f.g_factor),
    ];
    let settings = WarmStart {
        keep_tolerance: Some(0.05),
        ..WarmStart::DEFAULT
    };
    let refresh = |s: WarmStart, tracked: &[DVector<f64>; 2]| {
        let mut policy = EigenRefresh::new(s).unwrap();
        policy
            .refresh_with_changes(&f, Some(&previous), Some(tracked))
            .unwrap()
    };
    let (kept, report, changes) = refresh(settings, &claims_exact);
    assert_eq!(kept.q_a, previous.q_a, "kept bit for bit");
    assert_eq!(kept.d_a, previous.d_a, "with the tracked quotients");
    assert!(
        matches!(report.a, FactorRefresh::Warm { iterations: 0, off_diagonal } if off_diagonal < 1e-12)
    );
    assert!(
        changes
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| c.is_identity()))
    );
    let iterate = WarmStart {
        min_iterations: 1,
        ..settings
    };
    let tight = WarmStart {
        tolerance: 5e-5,
        keep_tolerance: Some(5e-5),
        ..settings
    };
    for (what, s, tracked) in [
        ("min_iterations 1", iterate, &claims_exact),
        ("a keep threshold of 5e-5", tight, &claims_exact),
        ("quotients outside the threshold", settings, &truth),
    ] {
        let (basis, report, _) = refresh(s, tracked);
        assert_ne!(basis.q_a, previous.q_a, "{what}: measured, not kept");
        assert!(
            !matches!(report.a, FactorRefresh::Warm { iterations: 0, .. }),
            "{what}"
        );
    }
}

/// One capture of 20 examples of a dense 30→12 layer with two sweeps, in f32.
fn capture32(seed: u64) -> LayerCapture<f32> {
    let c = random_capture(seed, 20, 1, 30, 12, 2);
    LayerCapture {
        layer: c.layer,
        a: c.a.cast(),
        g: c.g.iter().map(Tensor::cast).collect(),
        rows_per_example: 1,
    }
}

/// A block of `v` (decay 0.9) observed once and refreshed: its tracked quotients start there.
fn refreshed(v: Variant) -> CurvatureBlock {
    let mut block = CurvatureBlock::new(v, &info(12, 30, false), 0.9);
    block
        .observe(&random_capture(60, 20, 1, 30, 12, 2))
        .unwrap();
    block.refresh().unwrap();
    block
}

/// Adds capture `seed`'s rows to `p`, with their twins rotated into `b`'s basis (in f64, then
/// rounded to f32 as a layer's pass would hand them) when `rotated`.
fn push(p: &mut PendingFactors, b: &CurvatureBlock, seed: u64, rotated: bool) {
    let c = capture32(seed);
    let rows = FastRows::from_capture(&c).unwrap();
    let basis = b.basis().unwrap();
    let rotate = |x: &[f32], q: &DMatrix<f64>| -> Vec<f32> {
        let n = q.nrows();
        let x = DMatrix::from_iterator(n, x.len() / n, x.iter().map(|&v| f64::from(v)));
        (x.transpose() * q)
            .transpose()
            .iter()
            .map(|&v| v as f32)
            .collect()
    };
    let a_hat = rotate(rows.a, &basis.q_a);
    let g_hat: Vec<Vec<f32>> = rows.g.iter().map(|g| rotate(g, &basis.q_g)).collect();
    let twin = FastRows {
        a: &a_hat,
        g: g_hat.iter().map(Vec::as_slice).collect(),
        layout: rows.layout,
    };
    let rho = b.factor_decay();
    let tr = b.variant().trace_restricted();
    p.push(&rows, rotated.then_some(&twin), tr, (rho, 1.0 - rho), false);
}

#[test]
fn rotated_rows_track_and_a_row_without_stops_the_tracking() {
    for v in [Variant::Ekfac, Variant::Tekfac] {
        let mut block = refreshed(v);
        assert!(
            block.rayleigh_quotients().is_some(),
            "{v}: a refresh starts the tracking"
        );
        let mut pending = PendingFactors::new(block.dims());
        for seed in 61..64 {
            push(&mut pending, &block, seed, true);
        }
        let stale = block.rayleigh_quotients().unwrap().clone();
        block.observe_pending(pending).unwrap();
        let err = block_error(&block).unwrap();
        assert!(err < 1e-6, "{v}: {err:.2e}");
        let moved = (&stale[0] - &block.rayleigh_quotients().unwrap()[0]).amax();
        assert!(
            moved > 1e-3,
            "{v}: the observation moved the quotients ({moved:.2e})"
        );
        // One row without its rotated twin: the held share and then the block's tracking stop.
        let mut pending = PendingFactors::new(block.dims());
        push(&mut pending, &block, 64, true);
        push(&mut pending, &block, 65, false);
        assert!(pending.rayleigh().is_none(), "{v}");
        block.observe_pending(pending).unwrap();
        assert!(block.rayleigh_quotients().is_none(), "{v}");
    }
}

/// Saved at step 6 (held rows with their shares, tracked quotients), resumed in a fresh
/// optimizer: bit-identical to the uninterrupted run. Beside a basis that is not orthonormal
/// the saved quotients are dropped, and half of them is refused.
#[test]
fn checkpoints_carry_the_tracking() {
    let v = Variant::Tekfac;
    let mut ps = ParamStore::<f32>::seeded(3);
    let model = mlp(&mut ps);
    let mut opt = NaturalGradient::new(v, config(), &ps).unwrap();
    for s in 0..6 {
        step(&mut ps, &mut opt, &model, s);
    }
    let mut state = TensorDict::default();
    opt.save_state(&ps, &mut state);
    for key in ["ng.fc1.rayleigh_a", "ng.fc1.pending_rayleigh_g"] {
        assert!(state.contains(key), "{key} saved");
    }
    let mut resumed = ps.clone();
    let mut opt2 = NaturalGradient::new(v, config(), &resumed).unwrap();
    opt2.load_state(&mut resumed, &state).unwrap();
    for s in 6..13 {
        step(&mut ps, &mut opt, &model, s);
        step(&mut resumed, &mut opt2, &model, s);
    }
    for id in ps.ids() {
        assert_eq!(ps.get(id).data(), resumed.get(id).data(), "{}", ps.name(id));
    }
    // The block's own state: a spoiled basis drops the quotients, half of them is refused.
    let block = &opt.blocks()[0];
    let arrays = block.state();
    let mut copy = CurvatureBlock::new(v, &info(256, 784, false), 0.95);
    copy.restore(&arrays).unwrap();
    assert_eq!(copy.rayleigh_quotients(), block.rayleigh_quotients());
    let spoiled: Vec<StateArray> = (arrays.iter().cloned())
        .map(|mut a| {
            if a.name == "q_a" {
                a.data[0] += 0.1;
            }
            a
        })
        .collect();
    copy.restore(&spoiled).unwrap();
    assert!(copy.rayleigh_quotients().is_none());
    let half: Vec<StateArray> = (arrays.iter())
        .filter(|a| a.name != "rayleigh_g")
        .cloned()
        .collect();
    assert!(copy.restore(&half).is_err());
}
