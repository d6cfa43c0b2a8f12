//! The shortcuts of the natural-gradient hot path give the same updates as the plain path:
//! rotating a dense gradient in from its low-rank rows `∇W̄ = gᵀā`, the cached f32 damped
//! diagonal of `FastBlock` (rebuilt when `D` or the damping changes), and SGD-momentum for
//! parameters outside every layer.

use tekfac::curvature::{CurvatureBlock, Damping, FastBasis, FastBlock, Variant};
use tekfac::nn::{Activation, Linear, Module, Sequential};
use tekfac::optim::{DampingPolicy, NaturalGradient, NgConfig, Optimizer};
use tekfac::tensor::seeded_rng;
use tekfac::{FisherType, ParamStore, Tape, Tensor};

/// Flatten + dense 784→64 + ReLU + dense 64→10 in f32 (fc1 takes the low-rank way in at
/// batch 32: `32·(64² + 785² + 64·785) < 64·785·(64 + 785)`).
fn mlp(ps: &mut ParamStore<f32>) -> Sequential<f32> {
    mlp_of_width(ps, 64)
}

/// The MLP of [`mlp`] with `width` hidden units.
fn mlp_of_width(ps: &mut ParamStore<f32>, width: usize) -> Sequential<f32> {
    Sequential::new()
        .push(Activation::Flatten)
        .push(Linear::new(ps, "fc1", 784, width, true).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(ps, "fc2", width, 10, true).unwrap())
}

fn batch(seed: u64) -> (Tensor<f32>, Vec<usize>) {
    let x = Tensor::<f32>::rand_uniform(&[32, 784], 0.0, 1.0, &mut seeded_rng(seed));
    let labels = (0..32).map(|i| (i * 7 + seed as usize) % 10).collect();
    (x, labels)
}

/// `‖a − b‖ / ‖b‖`.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Five training steps of `variant` (every interval 1–2); at each, a clone of the optimizer
/// with the low-rank way in takes the same step. Returns the relative difference of the two
/// updates at each step.
///
/// (Whole runs cannot be compared: at batch 32 the factors have large null spaces whose
/// eigenvectors are arbitrary, and EKFAC/TEKFAC's s*/Θ depend on that choice, so rounding
/// differences of 1e-7 legitimately change later steps.)
fn update_differences(variant: Variant) -> Vec<f64> {
    let mut ps = ParamStore::<f32>::seeded(3);
    let model = mlp(&mut ps);
    let config = NgConfig {
        lr: 0.05,
        damping: DampingPolicy::with_lambda(0.03),
        stats_interval: 1,
        eigen_interval: 2,
        scale_interval: 1,
        fisher: FisherType::Sampled { k: 1, seed: 9 },
        low_rank: false,
        // NOTE: the low-rank way in is the plain path's; layers in their eigenbasis skip it.
        eigenbasis_layers: false,
        ..Default::default()
    };
    let mut opt = NaturalGradient::new(variant, config, &ps).unwrap();
    assert!(!Optimizer::<f32>::gradient_rows(&opt));
    let flat = |ps: &ParamStore<f32>| -> Vec<f32> {
        ps.ids().flat_map(|id| ps.get(id).data().to_vec()).collect()
    };
    let mut diffs = Vec::new();
    for step in 0..5 {
        let (x, labels) = batch(step);
        let mut tape = Tape::new(&ps);
        let xv = tape.input(x);
        let out = model.forward(&mut tape, xv).unwrap();
        let loss = tape.cross_entropy(out, &labels).unwrap();
        let fisher = Optimizer::<f32>::fisher(&opt);
        let pass = tape.backward_full(loss, fisher, true).unwrap();
        assert_eq!(pass.rows.len(), 2, "one row capture per dense layer");
        let mut fast = opt.clone();
        fast.config.low_rank = true;
        assert!(Optimizer::<f32>::gradient_rows(&fast));
        let before = flat(&ps);
        let mut ps_fast = ps.clone();
        fast.step(&mut ps_fast, &pass).unwrap();
        opt.step(&mut ps, &pass).unwrap();
        assert!(
            opt.fast_blocks()[0].low_rank_pays(32),
            "fc1 takes the low-rank way in"
        );
        assert!(
            !opt.fast_blocks()[1].low_rank_pays(32),
            "fc2 keeps the full rotation"
        );
        let delta = |after: Vec<f32>| -> Vec<f32> {
            after.iter().zip(&before).map(|(a, b)| a - b).collect()
        };
        diffs.push(rel(&delta(flat(&ps_fast)), &delta(flat(&ps))));
    }
    diffs
}

#[test]
fn low_rank_rotation_gives_the_full_rotation_update() {
    for v in Variant::ALL {
        for (step, err) in update_differences(v).into_iter().enumerate() {
            eprintln!("{v} step {step}: relative difference of the updates {err:.2e}");
            assert!(err < 1e-5, "{v} step {step}: {err:.2e}");
        }
    }
}

/// One f32 MLP pass with gradient rows; fc1's block fitted to its capture.
fn fitted_fc1(variant: Variant) -> (CurvatureBlock, tekfac::BackwardOutput<f32>) {
    fitted_fc1_of_width(variant, 64)
}

/// [`fitted_fc1`] for an MLP of `width` hidden units (fc1's `d_out`).
fn fitted_fc1_of_width(
    variant: Variant,
    width: usize,
) -> (CurvatureBlock, tekfac::BackwardOutput<f32>) {
    let mut ps = ParamStore::<f32>::seeded(4);
    let model = mlp_of_width(&mut ps, width);
    let (x, labels) = batch(1);
    let mut tape = Tape::new(&ps);
    let xv = tape.input(x);
    let out = model.forward(&mut tape, xv).unwrap();
    let loss = tape.cross_entropy(out, &labels).unwrap();
    let pass = tape
        .backward_full(loss, FisherType::Empirical, true)
        .unwrap();
    let mut block = CurvatureBlock::new(variant, &ps.layers()[0], 0.5);
    block.observe(fc1_capture(&pass)).unwrap();
    block.refresh().unwrap();
    (block, pass)
}

fn fc1_capture(pass: &tekfac::BackwardOutput<f32>) -> &tekfac::LayerCapture<f32> {
    pass.captures.iter().find(|c| c.layer.0 == 0).unwrap()
}

/// The hot path of `block` under `damping`.
fn fast(block: &CurvatureBlock, damping: &Damping) -> FastBlock<f32> {
    let mut fast = FastBlock::new(block);
    fast.sync(block, damping).unwrap();
    fast
}

#[test]
fn low_rank_rows_are_the_tape_gradient_and_precondition_alike() {
    for v in Variant::ALL {
        let (block, pass) = fitted_fc1(v);
        let rows = pass.rows.iter().find(|c| c.layer.0 == 0).unwrap();
        let (a, g) = (rows.a.data(), rows.g.data());
        let (n, o, i) = (32, 64, 785);
        // gᵀā reproduces [∂L/∂W | ∂L/∂b] exactly (up to f32 rounding).
        let mut grad = vec![0f32; o * i];
        for r in 0..n {
            for k in 0..o {
                for j in 0..i {
                    grad[k * i + j] += g[r * o + k] * a[r * i + j];
                }
            }
        }
        let info = &rows.layer;
        assert_eq!(info.0, 0);
        let mut tape_grad = Vec::with_capacity(o * i);
        let layer = &pass.grads;
        let (w, b) = (
            layer.get(tekfac::ParamId(0)).unwrap(),
            layer.get(tekfac::ParamId(1)).unwrap(),
        );
        for k in 0..o {
            tape_grad.extend_from_slice(&w.data()[k * 784..(k + 1) * 784]);
            tape_grad.push(b.data()[k]);
        }
        assert!(
            rel(&grad, &tape_grad) < 1e-6,
            "{v}: rows give the tape gradient"
        );
        let d = Damping::for_variant(v, 0.03);
        let hot = fast(&block, &d);
        let full = hot.precondition(&tape_grad).unwrap();
        // Rotated in from the rows: (g Q_G)ᵀ(ā Q_A), every variant.
        let basis = FastBasis::<f32>::new(block.basis().unwrap());
        let damped = block.damped_eigenvalues(&d).unwrap();
        let damped: Vec<f32> = damped.transpose().iter().map(|&x| x as f32).collect();
        let low = basis.precondition_low_rank(a, g, n, &damped);
        let err = rel(&low, &full);
        assert!(err < 1e-5, "{v}: low-rank update vs full: {err:.2e}");
        // The hot path's own choice: K-FAC/TKFAC (factored damping) apply (Ĝ⁻¹gᵀ)(āÂ⁻¹) with
        // no rotation, EKFAC/TEKFAC rotate in from the rows.
        let chosen = hot.precondition_low_rank(a, g, n).unwrap();
        let err = rel(&chosen, &full);
        assert!(
            err < 1e-5,
            "{v}: hot-path low-rank update vs full: {err:.2e}"
        );
        assert!(hot.precondition_low_rank(&a[1..], g, n).is_err());
    }
}

#[test]
fn cached_damped_diagonal_follows_rescaling_and_damping() {
    for v in [Variant::Ekfac, Variant::Tekfac] {
        let (block, pass) = fitted_fc1(v);
        let grad: Vec<f32> = (0..64 * 785)
            .map(|k| ((k % 13) as f32 - 6.0) * 0.01)
            .collect();
        let d = Damping::Additive(0.03);
        let mut cached = fast(&block, &d);
        let before = cached.precondition(&grad).unwrap();
        // Re-scaling changes D: the cache must not survive it.
        let mut rescaled = block.clone();
        rescaled.rescale(fc1_capture(&pass)).unwrap();
        cached.sync(&rescaled, &d).unwrap();
        let after = cached.precondition(&grad).unwrap();
        assert_eq!(
            after,
            fast(&rescaled, &d).precondition(&grad).unwrap(),
            "{v}: after rescale"
        );
        assert!(rel(&after, &before) > 1e-6, "{v}: re-scaling moved D");
        // Another λ is not served from the cache of the first.
        let other = Damping::Additive(0.5);
        cached.sync(&rescaled, &other).unwrap();
        assert_eq!(
            cached.precondition(&grad).unwrap(),
            fast(&rescaled, &other).precondition(&grad).unwrap(),
            "{v}: another damping"
        );
    }
}

/// The same bits as `damped_eigenvalues`, transposed and cast, or the block's own error.
fn check_synced_damped<F: tekfac::tensor::Float>(block: &CurvatureBlock, d: &Damping) {
    let mut hot = FastBlock::<F>::new(block);
    match block.damped_eigenvalues(d) {
        Ok(want) => {
            hot.sync(block, d).unwrap();
            let want: Vec<F> = want.transpose().iter().map(|&x| F::from_f64(x)).collect();
            assert!(hot.damped_in_basis().unwrap() == want.as_slice(), "{d:?}");
        }
        Err(e) => {
            let got = hot.sync(block, d).unwrap_err();
            assert_eq!(got.to_string(), e.to_string(), "{d:?}");
        }
    }
}

/// `FastBlock::sync` forms EKFAC's and TEKFAC's `D + λ` in one banded pass over `s*`/`Θ`: the
/// same bits as the block's `damped_eigenvalues`, transposed and cast, in f32 and f64, before
/// and after re-scaling, for every damping mode; and the block's own error when it refuses
/// (λ = 0 on a singular block, a factored mode on a corrected variant).
#[test]
fn synced_damped_diagonal_is_the_blocks_bit_for_bit() {
    let check = |b: &CurvatureBlock, d: &Damping| {
        check_synced_damped::<f32>(b, d);
        check_synced_damped::<f64>(b, d);
    };
    let mut refused = 0;
    for v in [Variant::Ekfac, Variant::Tekfac] {
        let (block, pass) = fitted_fc1(v);
        let mut rescaled = block.clone();
        rescaled.rescale(fc1_capture(&pass)).unwrap();
        for b in [&block, &rescaled] {
            for d in [
                Damping::Additive(0.03),
                Damping::Additive(0.0),
                Damping::Additive(f64::NAN),
                Damping::FactoredShift(0.03),
                Damping::FactoredTikhonov(0.03),
            ] {
                check(b, &d);
                refused += usize::from(b.damped_eigenvalues(&d).is_err());
            }
        }
    }
    // λ = 0 on the rank-32 blocks, NaN and the factored Tikhonov damping are refused.
    assert!(refused >= 3 * 4, "only {refused} refusals were exercised");
}

/// The banded pass of `FastBlock::sync` over a `d_out` of several bands and a last partial one
/// (150 rows): still the block's bits.
#[test]
fn synced_damped_diagonal_over_several_bands_is_the_blocks() {
    let (mut block, pass) = fitted_fc1_of_width(Variant::Tekfac, 150);
    block.rescale(fc1_capture(&pass)).unwrap();
    let d = Damping::Additive(0.03);
    check_synced_damped::<f32>(&block, &d);
    check_synced_damped::<f64>(&block, &d);
}

#[test]
fn parameters_outside_layers_get_sgd_momentum() {
    // logits = fc(x) · s with a learnable scalar s that belongs to no layer.
    let mut ps = ParamStore::<f32>::seeded(5);
    let fc = Linear::new(&mut ps, "fc", 6, 3, true).unwrap();
    let s = ps
        .add(
            "scale",
            Tensor::from_vec(vec![1.5, 0.5, 1.0], &[3]).unwrap(),
        )
        .unwrap();
    let config = NgConfig {
        lr: 0.1,
        momentum: 0.5,
        damping: DampingPolicy::with_lambda(0.1),
        fisher: FisherType::Empirical,
        ..Default::default()
    };
    let mut opt = NaturalGradient::new(Variant::Tekfac, config, &ps).unwrap();
    let x = Tensor::<f32>::rand_uniform(&[4, 6], -1.0, 1.0, &mut seeded_rng(6));
    let labels = [0, 2, 1, 2];
    let mut m = 0f32;
    for step in 0..3 {
        let mut tape = Tape::new(&ps);
        let xv = tape.input(x.clone());
        let h = fc.forward(&mut tape, xv).unwrap();
        let sv = tape.param(s);
        let out = tape.mul(h, sv).unwrap();
        let loss = tape.cross_entropy(out, &labels).unwrap();
        let pass = tape
            .backward_full(loss, Optimizer::<f32>::fisher(&opt), true)
            .unwrap();
        let g = pass.grads.get(s).unwrap().data()[1];
        assert!(g.abs() > 1e-6, "step {step}: the scale has a gradient");
        let before = ps.get(s).data()[1];
        opt.step(&mut ps, &pass).unwrap();
        m = 0.5 * m + g;
        let want = before - 0.1 * m;
        let got = ps.get(s).data()[1];
        assert!((got - want).abs() < 1e-6, "step {step}: {got} vs {want}");
    }
}
