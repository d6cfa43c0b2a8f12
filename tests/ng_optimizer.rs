//! `NaturalGradient` end to end: the f32 hot path against the f64 block, one optimizer step
//! against a dense solve, non-finite values and singular factors, and a bad decay refused.
//! Training on real MNIST (and with 1 and 2 threads) is in `tests/ng_training.rs`.

mod support;

use nalgebra::DMatrix;
use support::curvature::{EXACT, check, dense_solve, rel_err};
use support::nets::*;
use tekfac::curvature::exact::per_example_gradients;
use tekfac::curvature::{Damping, FastBlock, Variant, WarmStart};
use tekfac::nn::{Activation, Linear, Sequential};
use tekfac::optim::{
    Adam, AdamConfig, DampingPolicy, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig,
};
use tekfac::tensor::seeded_rng;
use tekfac::train::{Task, train_step};
use tekfac::{Error, FisherType, ParamStore, Tensor};

/// The f32 hot path against the f64 `precondition` (spec: f32 GEMMs, f64 state).
const F32_PATH: f64 = 1e-4;
/// One optimizer step (f32 rotations) against an f64 dense solve.
const F32_STEP: f64 = 1e-5;

#[test]
fn precondition_f32_agrees_with_f64_every_variant() {
    let mut worst: f64 = 0.0;
    for case in real_cases() {
        let (info, c) = (&case.info, &case.capture);
        let dw = per_example_gradients(c).unwrap();
        let grad = dw.iter().sum::<DMatrix<f64>>() / c.examples() as f64;
        // Row-major f32, bias last, as `NaturalGradient` hands it over.
        let grad32: Vec<f32> = grad.transpose().iter().map(|&x| x as f32).collect();
        for v in Variant::ALL {
            let block = fit(v, info, c);
            let mut dampings = vec![
                Damping::for_variant(v, 1e-3),
                Damping::for_variant(v, 3e-2),
                Damping::Additive(1e-3),
            ];
            let blocks = std::slice::from_ref(&block);
            dampings.extend(DampingPolicy::with_lambda(1e-3).per_block(v, blocks));
            for d in dampings {
                let want = block.precondition(&grad, &d).unwrap();
                let mut hot = FastBlock::<f32>::new(&block);
                hot.sync(&block, &d).unwrap();
                let got = hot.precondition(&grad32).unwrap();
                let got = DMatrix::from_row_slice(info.d_out, info.d_in_bar(), &got);
                let got = got.map(f64::from);
                let err = rel_err(&got, &want);
                worst = worst.max(err);
                check(
                    &format!("{} {v} {d:?}: precondition_f32 = precondition", case.name),
                    err,
                    F32_PATH,
                );
            }
        }
    }
    eprintln!("worst f32/f64 relative error: {worst:.2e}");
}

/// Natural-gradient settings for the exact step tests: a refresh of everything every step from
/// this step's capture alone (decay 0), empirical Fisher, no clipping.
fn exact_step_config(momentum: f64, weight_decay: f64) -> NgConfig {
    NgConfig {
        lr: 0.1,
        damping: DampingPolicy::with_lambda(0.05),
        momentum,
        decay: 0.0,
        stats_interval: 1,
        eigen_interval: 1,
        scale_interval: 1,
        kl_clip: None,
        weight_decay,
        fisher: FisherType::Empirical,
        // NOTE: these tests read W̄ and ∇W̄ straight from the store and the pass, so every layer
        // stays in standard coordinates; tests/ng_eigenbasis_layers.rs pins the eigenbasis
        // storage to this plain path.
        eigenbasis_layers: false,
        // NOTE: the block must equal one fitted to the capture exactly: nalgebra at every refresh
        // (tests/ng_fast_curvature.rs covers the warm-started refresh).
        warm_start: WarmStart::exact_only(),
        ..Default::default()
    }
}

/// Runs 3 steps of `variant` on `net` and checks each parameter change against
/// `−η·m`, `m ← μm + unvec((F̂ + damping)⁻¹ vec(∇W̄ + wd·W̄))`, with F̂ and the damping taken
/// from the optimizer's blocks (`to_dense_damped`, `dampings`) and solved densely in f64.
fn check_steps(label: &str, mut net: Net, variant: Variant, config: NgConfig) {
    let mut opt = NaturalGradient::new(variant, config.clone(), &net.ps).unwrap();
    let layers = net.ps.layers().to_vec();
    let mut momentum: Vec<Option<DMatrix<f64>>> = vec![None; layers.len()];
    for step in 0..3 {
        let fisher = Optimizer::<f64>::fisher(&opt);
        assert_eq!(fisher, FisherType::Empirical, "every step captures");
        let before: Vec<DMatrix<f64>> = layers.iter().map(|l| param_block(l, &net.ps)).collect();
        let out = net.pass(&net.input(4, 40 + step), fisher);
        let stats = opt.step(&mut net.ps, &out).unwrap();
        let blocks = opt.blocks();
        let dampings = config.damping.per_block(variant, blocks);
        for (i, info) in layers.iter().enumerate() {
            let name = format!("{label} {variant} step {step} {}", info.name);
            // The optimizer's block is this step's capture alone (decay 0, refresh every step).
            let c = capture_of(&out, &net, &info.name);
            check(
                &format!("{name}: optimizer block = block fitted to the capture"),
                rel_err(
                    &blocks[i].to_dense().unwrap(),
                    &fit(variant, info, c).to_dense().unwrap(),
                ),
                EXACT,
            );
            assert_eq!(stats.lambda[i].1, dampings[i].lambda(), "logged λ");
            let g = grad_block(&out.grads, info, &net.ps) + &before[i] * config.weight_decay;
            let u = dense_solve(&blocks[i].to_dense_damped(&dampings[i]).unwrap(), &g);
            let m = match &momentum[i] {
                Some(prev) => u + prev * config.momentum,
                None => u,
            };
            let want = &m * -config.lr;
            momentum[i] = Some(m);
            let got = param_block(info, &net.ps) - &before[i];
            check(
                &format!("{name}: Δθ = −η·unvec((F̂+damping)⁻¹vec ∇)"),
                rel_err(&got, &want),
                F32_STEP,
            );
        }
    }
}

#[test]
fn natural_gradient_step_equals_a_dense_solve() {
    for v in Variant::ALL {
        check_steps("dense net", dense_net(50), v, exact_step_config(0.0, 0.0));
        // Conv + bias-free dense: TEKFAC damps the conv block trace-adaptively (spec §1.7).
        check_steps("conv net", conv_net(51), v, exact_step_config(0.0, 0.0));
    }
}

#[test]
fn natural_gradient_momentum_and_weight_decay_act_on_the_preconditioned_step() {
    // Spec §1.8: weight decay is added to the gradient before preconditioning; heavy-ball
    // momentum accumulates the preconditioned steps.
    for v in Variant::ALL {
        check_steps("dense net", dense_net(52), v, exact_step_config(0.5, 0.01));
        check_steps("conv net", conv_net(53), v, exact_step_config(0.5, 0.01));
    }
}

/// Flatten + dense 16→5 + ReLU + dense 5→3 in f32 (the `train_step` path).
fn small_f32_mlp(ps: &mut ParamStore<f32>) -> Sequential<f32> {
    Sequential::new()
        .push(Activation::Flatten)
        .push(Linear::new(ps, "fc1", 16, 5, true).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(ps, "fc2", 5, 3, true).unwrap())
}

/// The six optimizers with settings that suit the tiny nets of these tests.
fn all_optimizers(ps: &ParamStore<f32>, ng: &NgConfig) -> Vec<(&'static str, Box<dyn Optimizer>)> {
    let mut out: Vec<(&'static str, Box<dyn Optimizer>)> = vec![
        ("sgd", Box::new(Sgd::new(SgdConfig::default()))),
        ("adam", Box::new(Adam::new(AdamConfig::default()))),
    ];
    for v in Variant::ALL {
        out.push((
            v.name(),
            Box::new(NaturalGradient::new(v, ng.clone(), ps).unwrap()),
        ));
    }
    out
}

#[test]
fn nan_gradient_is_refused_and_the_weights_are_unchanged() {
    // A NaN pixel makes fc1's pre-activations NaN; ReLU maps them to 0, so the loss is finite,
    // but ∂L/∂W₁ = g₁ᵀx = 0·NaN is not: `train_step` must stop before the optimizer runs.
    let mut x = Tensor::<f32>::rand_uniform(&[4, 1, 4, 4], 0.0, 1.0, &mut seeded_rng(60));
    let labels = [0, 1, 2, 1];
    let ng = NgConfig {
        stats_interval: 1,
        eigen_interval: 1,
        scale_interval: 1,
        ..Default::default()
    };
    let mut bad = x.clone();
    bad.data_mut()[16 + 5] = f32::NAN;
    let params0 = {
        let mut ps = ParamStore::<f32>::seeded(61);
        small_f32_mlp(&mut ps);
        ps
    };
    for (name, mut opt) in all_optimizers(&params0, &ng) {
        let mut ps = ParamStore::<f32>::seeded(61);
        let model = small_f32_mlp(&mut ps);
        let task = Task::Classify;
        train_step(&model, task, &mut ps, opt.as_mut(), x.clone(), &labels, 0).unwrap();
        let snapshot: Vec<Vec<f32>> = ps.ids().map(|id| ps.get(id).data().to_vec()).collect();
        let err = train_step(&model, task, &mut ps, opt.as_mut(), bad.clone(), &labels, 1);
        eprintln!("{name}: {err:?}");
        match err {
            Err(Error::NonFinite { what, step }) => {
                assert_eq!(
                    what, "the gradient of fc1.weight",
                    "{name}: names the parameter"
                );
                assert_eq!(step, Some(1), "{name}: names the step");
            }
            other => panic!("{name}: expected NonFinite, got {other:?}"),
        }
        for (id, old) in ps.ids().zip(&snapshot) {
            assert_eq!(ps.get(id).data(), &old[..], "{name}: weights unchanged");
        }
        // Training goes on from the same state.
        x.data_mut()[0] = 0.5;
        let stats = train_step(&model, task, &mut ps, opt.as_mut(), x.clone(), &labels, 1);
        assert!(
            stats.unwrap().loss.is_finite(),
            "{name}: the next step works"
        );
    }
}

#[test]
fn nan_capture_keeps_the_previous_basis_and_the_weights_finite() {
    for v in Variant::ALL {
        let mut net = dense_net(62);
        let config = exact_step_config(0.0, 0.0);
        let mut opt = NaturalGradient::new(v, config.clone(), &net.ps).unwrap();
        for step in 0..2 {
            let out = net.pass(&net.input(4, 63 + step), FisherType::Empirical);
            opt.step(&mut net.ps, &out).unwrap();
        }
        let fc1 = net.info("fc1");
        let kept = opt.blocks()[0].clone();
        let before = param_block(&fc1, &net.ps);
        // A NaN in fc1's captured input rows, with finite gradients: statistics, refresh and
        // re-scaling of fc1 see it; the step must keep fc1's basis and diagonal (spec §1.9).
        let mut out = net.pass(&net.input(4, 65), FisherType::Empirical);
        let poisoned = out.captures.iter_mut().find(|c| c.layer.0 == 0).unwrap();
        poisoned.a.data_mut()[2] = f64::NAN;
        opt.step(&mut net.ps, &out).unwrap();
        let block = &opt.blocks()[0];
        assert_eq!(block.basis(), kept.basis(), "{v}: previous basis kept");
        assert_eq!(
            block.eigenvalues(),
            kept.eigenvalues(),
            "{v}: diagonal kept"
        );
        let after = param_block(&fc1, &net.ps);
        assert!(after.iter().all(|x| x.is_finite()), "{v}: weights finite");
        // The step was preconditioned with the kept block.
        let d = config.damping.per_block(v, std::slice::from_ref(&kept));
        let g = grad_block(&out.grads, &fc1, &net.ps);
        let want = kept.precondition(&g, &d[0]).unwrap() * -config.lr;
        check(
            &format!("{v}: NaN step used the kept basis"),
            rel_err(&(after - before), &want),
            F32_STEP,
        );
        // The poisoned statistics were dropped: the next good step refreshes again.
        let out = net.pass(&net.input(4, 66), FisherType::Empirical);
        opt.step(&mut net.ps, &out).unwrap();
        assert_ne!(
            opt.blocks()[0].basis(),
            kept.basis(),
            "{v}: refreshed again"
        );
        assert!(param_block(&fc1, &net.ps).iter().all(|x| x.is_finite()));
    }
}

/// Flatten + dense 36→5 + ReLU + dense 5→3 (f64) on 6×6 images whose 20 border pixels are 0.
fn border_zero_net() -> (Net, Tensor<f64>) {
    let mut ps = ParamStore::seeded(70);
    let model = Sequential::new()
        .push(Activation::Flatten)
        .push(Linear::new(&mut ps, "fc1", 36, 5, true).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(&mut ps, "fc2", 5, 3, true).unwrap());
    let mut x = Tensor::<f64>::rand_uniform(&[8, 1, 6, 6], 0.0, 1.0, &mut seeded_rng(71));
    for (k, p) in x.data_mut().iter_mut().enumerate() {
        let (r, c) = ((k % 36) / 6, k % 6);
        if r == 0 || r == 5 || c == 0 || c == 5 {
            *p = 0.0;
        }
    }
    let net = Net {
        ps,
        model,
        example: vec![1, 6, 6],
        outputs: 3,
        loss: Loss::CrossEntropy,
    };
    (net, x)
}

/// True for an input column of fc1 that is a border pixel.
fn border(i: usize) -> bool {
    let (r, c) = (i / 6, i % 6);
    i < 36 && (r == 0 || r == 5 || c == 0 || c == 5)
}

#[test]
fn singular_factor_gives_a_finite_update() {
    for v in Variant::ALL {
        for fisher in [FisherType::Empirical, FisherType::Sampled { k: 1, seed: 3 }] {
            let (mut net, x) = border_zero_net();
            let config = NgConfig {
                stats_interval: 1,
                eigen_interval: 1,
                scale_interval: 1,
                fisher,
                ..Default::default() // λ = 1e-3, momentum 0.9, decay 0.95
            };
            let mut opt = NaturalGradient::new(v, config, &net.ps).unwrap();
            let fc1 = net.info("fc1");
            for step in 0..3 {
                let before = param_block(&fc1, &net.ps);
                let out = net.pass(&x, Optimizer::<f64>::fisher(&opt));
                opt.step(&mut net.ps, &out).unwrap();
                let d_a = &opt.blocks()[0].basis().unwrap().d_a;
                let zeros = d_a.iter().filter(|&&e| e < 1e-12).count();
                assert!(zeros >= 20, "{v}: the 20 border columns make A singular");
                let delta = param_block(&fc1, &net.ps) - before;
                assert!(delta.iter().all(|x| x.is_finite()), "{v}: finite update");
                // Border columns have zero gradient and zero curvature: they must not move.
                let largest = delta.amax();
                let leak = (0..fc1.d_in)
                    .filter(|&i| border(i))
                    .map(|i| delta.column(i).amax())
                    .fold(0.0, f64::max);
                eprintln!("{v} {fisher:?} step {step}: max |Δθ| {largest:.2e}, border {leak:.2e}");
                assert!(largest > 0.0 && leak <= 1e-6 * largest, "{v}: border moved");
            }
        }
    }
    // With λ = 0 the damped diagonal of a singular block is not positive: the step is refused
    // with an error and nothing moves.
    for v in Variant::ALL {
        let (mut net, x) = border_zero_net();
        let config = NgConfig {
            damping: DampingPolicy {
                conv_floor: 0.0,
                ..DampingPolicy::with_lambda(0.0)
            },
            ..exact_step_config(0.0, 0.0)
        };
        let mut opt = NaturalGradient::new(v, config, &net.ps).unwrap();
        let snapshot: Vec<Vec<f64>> = net
            .ps
            .ids()
            .map(|id| net.ps.get(id).data().to_vec())
            .collect();
        let out = net.pass(&x, FisherType::Empirical);
        let err = opt.step(&mut net.ps, &out);
        assert!(
            matches!(err, Err(Error::InvalidArgument { .. })),
            "{v}: {err:?}"
        );
        for (id, old) in net.ps.ids().zip(&snapshot) {
            assert_eq!(net.ps.get(id).data(), &old[..], "{v}: weights unchanged");
        }
    }
}

#[test]
fn a_decay_outside_zero_to_one_is_an_error_not_a_panic() {
    let mut ps = ParamStore::<f32>::seeded(0);
    small_f32_mlp(&mut ps);
    for decay in [2.0, -0.5, f64::NAN] {
        let config = NgConfig {
            decay,
            ..NgConfig::default()
        };
        let err = NaturalGradient::new(Variant::Tekfac, config, &ps).unwrap_err();
        assert!(err.to_string().contains("decay"), "{err}");
    }
}
