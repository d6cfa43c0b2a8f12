//! Dense layers trained in their Kronecker eigenbasis (`ops/eigen_dense.rs`,
//! `optim/natural/eigenbasis.rs`) against the plain path: the same forward pass and gradients
//! (`∂L/∂W̃ = Q_Gᵀ ∇W̄ Q_A`), the same EKFAC/TEKFAC updates across basis refreshes with momentum,
//! weight decay and KL-clipping, on 1 and 2 threads (1e-10 in f64, f32 rounding in f32), and
//! checkpoints that hold the standard `W̄`.

mod support;

use nalgebra::DMatrix;
use support::tensors::on_threads;
use tekfac::checkpoint::{TensorDict, load_params, save_params};
use tekfac::curvature::{FastRows, fast_corrected_batch, fast_corrected_in_basis};
use tekfac::nn::{Activation, Linear, Module, Sequential};
use tekfac::optim::{
    DampingPolicy, NaturalGradient, NgConfig, Optimizer, Variant, eigenbasis_pays,
};
use tekfac::params::LayerEigenbasis;
use tekfac::tensor::seeded_rng;
use tekfac::{FisherType, LayerId, ParamStore, Tape, Tensor, Var};

/// Dense 12→16 with its ReLU fused into the dense op (`Linear::forward_relu`), dense 16→9 (no
/// bias), tanh, dense 9→2: small enough for f64, and at batch 6 the first two layers take the
/// eigenbasis (`eigenbasis_pays`), fc3 does not.
struct Net<F: tekfac::tensor::Float> {
    fc1: Linear,
    rest: Sequential<F>,
}

fn net<F: tekfac::tensor::Float>(ps: &mut ParamStore<F>) -> Net<F> {
    let fc1 = Linear::new(ps, "fc1", 12, 16, true).unwrap();
    let rest = Sequential::new()
        .push(Linear::new(ps, "fc2", 16, 9, false).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(ps, "fc3", 9, 2, true).unwrap());
    Net { fc1, rest }
}

impl<F: tekfac::tensor::Float> Module<F> for Net<F> {
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> tekfac::Result<Var> {
        let h = self.fc1.forward_relu(tape, x)?;
        self.rest.forward(tape, h)
    }
}

const BATCH: usize = 6;

fn batch<F: tekfac::tensor::Float>(step: u64) -> (Tensor<F>, Vec<usize>) {
    let x = Tensor::<f64>::rand_uniform(&[BATCH, 12], -1.0, 1.0, &mut seeded_rng(100 + step));
    let labels = (0..BATCH).map(|i| (i * 3 + step as usize) % 2).collect();
    (x.cast(), labels)
}

/// A random orthogonal `n × n` matrix, row-major.
fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let m = Tensor::<f64>::rand_uniform(&[n, n], -1.0, 1.0, &mut seeded_rng(seed));
    let q = DMatrix::from_row_slice(n, n, m.data()).qr().q();
    q.transpose().iter().copied().collect()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y.powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

/// Every parameter of the standard `W̄`, flattened.
fn standard<F: tekfac::tensor::Float>(ps: &ParamStore<F>) -> Vec<f64> {
    let std = ps.to_standard();
    std.ids()
        .flat_map(|id| {
            std.get(id)
                .data()
                .iter()
                .map(|x| x.to_f64())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_basis_pays_for_wide_dense_layers_only() {
    let mut ps = ParamStore::<f32>::seeded(0);
    tekfac::nn::Mlp::new(&mut ps, 784, 10).unwrap(); // 784-512-256-10
    let pays: Vec<bool> = ps
        .layers()
        .iter()
        .map(|l| eigenbasis_pays(l, 128))
        .collect();
    assert_eq!(pays, [true, true, false]);
    let mut ps = ParamStore::<f32>::seeded(0);
    tekfac::nn::Cnn::new(&mut ps, 10).unwrap();
    let pays: Vec<bool> = ps
        .layers()
        .iter()
        .map(|l| eigenbasis_pays(l, 128))
        .collect();
    assert_eq!(
        pays,
        [false, false, true, false],
        "convolutions keep the plain path"
    );
}

#[test]
fn eigenbasis_dense_layer_is_the_plain_layer() {
    let mut plain = ParamStore::<f64>::seeded(1);
    let model = net(&mut plain);
    let mut rotated = plain.clone();
    // fc1 and fc2 in random orthogonal bases.
    for (l, seed) in [(0, 7), (1, 8)] {
        let info = plain.layer(LayerId(l)).clone();
        let basis = LayerEigenbasis {
            q_a: orthogonal(info.d_in_bar(), seed),
            q_g: orthogonal(info.d_out, seed + 10),
        };
        let w_bar = plain.block(LayerId(l));
        rotated.set_block(
            LayerId(l),
            &basis.rotate_in(&w_bar, info.d_out, info.d_in_bar()),
        );
        rotated.set_eigenbasis(LayerId(l), Some(basis)).unwrap();
    }
    assert!(rel(&standard(&rotated), &standard(&plain)) < 1e-14);
    let (x, labels) = batch::<f64>(0);
    let run = |ps: &ParamStore<f64>| {
        let mut tape = Tape::new(ps);
        let xv = tape.input(x.clone());
        let out = model.forward(&mut tape, xv).unwrap();
        let logits = tape.value(out).clone();
        let loss = tape.cross_entropy(out, &labels).unwrap();
        (logits, tape.backward_with(loss, FisherType::Exact).unwrap())
    };
    let (logits_p, pass_p) = run(&plain);
    let (logits_r, pass_r) = run(&rotated);
    assert!(rel(logits_r.data(), logits_p.data()) < 1e-13, "forward");
    assert!((pass_r.loss - pass_p.loss).abs() < 1e-13, "loss");
    for l in 0..3 {
        let id = LayerId(l);
        let info = plain.layer(id).clone();
        let (o, i) = (info.d_out, info.d_in_bar());
        let grad = |ps: &ParamStore<f64>, pass: &tekfac::BackwardOutput<f64>| -> Vec<f64> {
            let mut g = pass.grads.get(info.weight).unwrap().data().to_vec();
            if let Some(b) = info.bias {
                let gb = pass.grads.get(b).unwrap().data();
                g = g
                    .chunks(info.d_in)
                    .zip(gb)
                    .flat_map(|(row, &b)| row.iter().copied().chain([b]))
                    .collect();
            }
            let _ = ps;
            g
        };
        let (gp, gr) = (grad(&plain, &pass_p), grad(&rotated, &pass_r));
        let want = match rotated.eigenbasis(id) {
            Some(basis) => basis.rotate_in(&gp, o, i),
            None => gp,
        };
        assert!(rel(&gr, &want) < 1e-12, "layer {l}: ∂L/∂W̃ = Q_Gᵀ ∇W̄ Q_A");
        // The captured rows are the standard ones.
        let find = |pass: &tekfac::BackwardOutput<f64>| {
            pass.captures
                .iter()
                .find(|c| c.layer == id)
                .unwrap()
                .clone()
        };
        let (cp, cr) = (find(&pass_p), find(&pass_r));
        assert!(
            rel(cr.a.data(), cp.a.data()) < 1e-13,
            "layer {l}: ā {}",
            rel(cr.a.data(), cp.a.data())
        );
        for (sp, sr) in cp.g.iter().zip(&cr.g) {
            assert!(rel(sr.data(), sp.data()) < 1e-12, "layer {l}: g");
        }
    }
    // A changed forward (the negative control): a wrong basis changes the output.
    let mut wrong = rotated.clone();
    let info = plain.layer(LayerId(0)).clone();
    let basis = LayerEigenbasis {
        q_a: orthogonal(info.d_in_bar(), 99),
        q_g: orthogonal(info.d_out, 98),
    };
    wrong.set_eigenbasis(LayerId(0), Some(basis)).unwrap();
    let (logits_w, _) = run(&wrong);
    assert!(rel(logits_w.data(), logits_p.data()) > 1e-3);
}

/// The rows a layer in its eigenbasis hands out with its capture (`pass.rotated`) are the
/// captured rows rotated by its basis, so EKFAC/TEKFAC's re-scaling from them
/// (`fast_corrected_in_basis`) is the one that rotates the capture (`fast_corrected_batch`), to
/// f32 rounding; a plain layer hands out none, nor does a pass without captures.
#[test]
fn rotated_rows_rescale_like_the_rotated_capture() {
    let mut ps = ParamStore::<f32>::seeded(1);
    let model = net(&mut ps);
    let mut bases = Vec::new();
    for (l, seed) in [(0, 7), (1, 8)] {
        let info = ps.layer(LayerId(l)).clone();
        let basis = LayerEigenbasis {
            q_a: orthogonal(info.d_in_bar(), seed)
                .iter()
                .map(|&x| x as f32)
                .collect(),
            q_g: orthogonal(info.d_out, seed + 10)
                .iter()
                .map(|&x| x as f32)
                .collect(),
        };
        let w_bar = ps.block(LayerId(l));
        ps.set_block(
            LayerId(l),
            &basis.rotate_in(&w_bar, info.d_out, info.d_in_bar()),
        );
        ps.set_eigenbasis(LayerId(l), Some(basis.clone())).unwrap();
        bases.push(basis);
    }
    let pass = |fisher: FisherType| {
        let (x, labels) = batch::<f32>(0);
        let mut tape = Tape::new(&ps);
        let xv = tape.input(x);
        let out = model.forward(&mut tape, xv).unwrap();
        let loss = tape.cross_entropy(out, &labels).unwrap();
        tape.backward_full(loss, fisher, false).unwrap()
    };
    assert!(pass(FisherType::Off).rotated.is_empty());
    for fisher in [FisherType::Empirical, FisherType::Sampled { k: 2, seed: 3 }] {
        let pass = pass(fisher);
        let layers: Vec<usize> = pass.rotated.iter().map(|r| r.layer.0).collect();
        assert_eq!(
            layers,
            [1, 0],
            "{fisher:?}: fc2 and fc1, in sweep order; fc3 is plain"
        );
        for (r, basis) in pass.rotated.iter().rev().zip(&bases) {
            let c = pass.captures.iter().find(|c| c.layer == r.layer).unwrap();
            let rows = FastRows::in_basis(c, r)
                .unwrap()
                .expect("rows of the capture's shape");
            let got = fast_corrected_in_basis(&rows);
            let want = fast_corrected_batch(c, &basis.q_a, &basis.q_g).unwrap();
            let err = rel(got.as_slice(), want.as_slice());
            assert!(err < 1e-5, "{fisher:?} layer {}: {err:.2e}", r.layer.0);
            let other = pass.captures.iter().find(|o| o.layer != r.layer).unwrap();
            assert!(
                FastRows::in_basis(other, r).unwrap().is_none(),
                "another layer's rows"
            );
        }
    }
}

fn config(variant: Variant, in_basis: bool) -> NgConfig {
    let _ = variant;
    NgConfig {
        lr: 0.05,
        damping: DampingPolicy::with_lambda(0.05),
        momentum: 0.9,
        stats_interval: 1,
        eigen_interval: 3,
        scale_interval: 2,
        kl_clip: Some(0.05),
        weight_decay: 1e-3,
        fisher: FisherType::Sampled { k: 2, seed: 5 },
        eigenbasis_layers: in_basis,
        ..NgConfig::default()
    }
}

/// One step of `opt` on the batch of `step` (the sampled Fisher's captures when it asks).
fn step_once<F: tekfac::tensor::Float>(
    ps: &mut ParamStore<F>,
    opt: &mut NaturalGradient<F>,
    model: &Net<F>,
    step: u64,
) {
    step_on(ps, opt, model, batch::<F>(step));
}

/// One step of `opt` on `(x, labels)`.
fn step_on<F: tekfac::tensor::Float>(
    ps: &mut ParamStore<F>,
    opt: &mut NaturalGradient<F>,
    model: &impl Module<F>,
    (x, labels): (Tensor<F>, Vec<usize>),
) {
    let mut tape = Tape::new(ps);
    let xv = tape.input(x);
    let logits = model.forward(&mut tape, xv).unwrap();
    let loss = tape.cross_entropy(logits, &labels).unwrap();
    let pass = tape
        .backward_full(loss, opt.fisher(), opt.gradient_rows())
        .unwrap();
    opt.step(ps, &pass).unwrap();
}

/// `steps` training steps; the standard weights after each.
fn train<F: tekfac::tensor::Float>(variant: Variant, in_basis: bool, steps: u64) -> Vec<Vec<f64>> {
    let mut ps = ParamStore::<F>::seeded(2);
    let model = net(&mut ps);
    let mut opt = NaturalGradient::new(variant, config(variant, in_basis), &ps).unwrap();
    let mut out = Vec::new();
    for step in 0..steps {
        step_once(&mut ps, &mut opt, &model, step);
        let in_basis_now = (0..2).all(|l| ps.eigenbasis(LayerId(l)).is_some());
        assert_eq!(
            in_basis_now, in_basis,
            "{variant} step {step}: fc1, fc2 in their basis"
        );
        assert!(
            ps.eigenbasis(LayerId(2)).is_none(),
            "fc3 keeps the plain path"
        );
        out.push(standard(&ps));
    }
    out
}

#[test]
fn eigenbasis_training_is_the_plain_training_f64() {
    for threads in [1, 2] {
        for v in [Variant::Ekfac, Variant::Tekfac] {
            let (plain, rotated) = on_threads(threads, || {
                (train::<f64>(v, false, 8), train::<f64>(v, true, 8))
            });
            for (step, (p, r)) in plain.iter().zip(&rotated).enumerate() {
                let err = rel(r, p);
                assert!(
                    err < 1e-10,
                    "{v}, {threads} threads, step {step}: {err:.2e}"
                );
            }
            // The runs really moved (the comparison is not between two initial states).
            assert!(rel(&plain[7], &plain[0]) > 1e-3);
        }
    }
}

/// Seven steps: step 6 refreshes the basis and re-scales in the new one, where the rows the
/// pass rotated into the old basis must not be used.
#[test]
fn eigenbasis_training_is_the_plain_training_f32() {
    for v in [Variant::Ekfac, Variant::Tekfac] {
        let (plain, rotated) = (train::<f32>(v, false, 7), train::<f32>(v, true, 7));
        for (step, (p, r)) in plain.iter().zip(&rotated).enumerate() {
            let err = rel(r, p);
            assert!(err < 1e-5, "{v} step {step}: {err:.2e}");
        }
    }
}

/// Dense 300→260, ReLU, dense 260→3, at batch 8: wide enough that a refresh's head and tail
/// split both of fc1's factors (`refine_head_columns`: 64 of 301 and of 260 columns), so a warm
/// refresh of one iteration moves `W̃`, its momentum and the gradient through the iterations
/// (`BasisChange`: per side `3·(rows·n·h + …)` multiply-adds, against `n³ + 3·rows·n²` for the
/// product; 0.48 against 0.98 and 0.49 against 0.79, in 10⁸). The factors of a few batches of
/// 8 rows move far between refreshes, so the warm policy here runs one iteration and accepts
/// what it reaches: any orthogonal basis must give the plain training.
fn train_wide<F: tekfac::tensor::Float>(variant: Variant, in_basis: bool) -> Vec<Vec<f64>> {
    let mut ps = ParamStore::<F>::seeded(4);
    let model = Sequential::new()
        .push(Linear::new(&mut ps, "fc1", 300, 260, true).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(&mut ps, "fc2", 260, 3, true).unwrap());
    let mut config = config(variant, in_basis);
    config.warm_start.tolerance = 1.0;
    (
        config.warm_start.min_iterations,
        config.warm_start.max_iterations,
    ) = (1, 1);
    let mut opt = NaturalGradient::new(variant, config, &ps).unwrap();
    let mut out = Vec::new();
    for step in 0..8u64 {
        let x = Tensor::<f64>::rand_uniform(&[8, 300], -1.0, 1.0, &mut seeded_rng(300 + step));
        let labels = (0..8).map(|i| (i + step as usize) % 3).collect();
        step_on(&mut ps, &mut opt, &model, (x.cast(), labels));
        assert_eq!(ps.eigenbasis(LayerId(0)).is_some(), in_basis);
        out.push(standard(&ps));
    }
    // Step 6 refreshed warm, one iteration per factor: the moves above ran.
    let block = &opt.blocks()[0];
    let changes = block.basis_change(block.basis_revision() - 1);
    let iterations = changes.map(|[a, g]| [a, g].map(|c| c.as_ref().map(|c| c.iterations())));
    assert_eq!(iterations, Some([Some(1), Some(1)]), "{variant}");
    out
}

#[test]
fn a_warm_refresh_moves_wide_layers_like_the_plain_training() {
    for v in [Variant::Ekfac, Variant::Tekfac] {
        for (f64s, tol) in [(true, 1e-10), (false, 1e-5)] {
            let (plain, rotated) = match f64s {
                true => (train_wide::<f64>(v, false), train_wide::<f64>(v, true)),
                false => (train_wide::<f32>(v, false), train_wide::<f32>(v, true)),
            };
            for (step, (p, r)) in plain.iter().zip(&rotated).enumerate() {
                let err = rel(r, p);
                assert!(err < tol, "{v}, f64 {f64s}, step {step}: {err:.2e}");
            }
            assert!(rel(&plain[7], &plain[0]) > 1e-3);
        }
    }
}

/// A run saved at step 5 of 10 (between two refreshes, with a statistics step held as rows,
/// `curvature/pending.rs`) and resumed in a fresh optimizer and store is bit-identical to the
/// uninterrupted run; the saved weights are the standard `W̄` and predict like the run.
#[test]
fn checkpoints_hold_the_standard_weights_and_resume_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let v = Variant::Tekfac;
    let mut ps = ParamStore::<f32>::seeded(2);
    let model = net(&mut ps);
    let mut opt = NaturalGradient::new(v, config(v, true), &ps).unwrap();
    for step in 0..5 {
        step_once(&mut ps, &mut opt, &model, step);
    }
    assert!(ps.eigenbasis(LayerId(0)).is_some());
    save_params(&path, &ps, &[]).unwrap();
    let mut state = TensorDict::default();
    opt.save_state(&ps, &mut state);
    let held = state
        .names()
        .iter()
        .filter(|n| n.ends_with("pending_a_rows"))
        .count();
    assert_eq!(held, 3, "every layer holds the statistics of step 4");
    // The file holds W̄: a plain model loaded from it predicts what the run predicts.
    let mut plain = ParamStore::<f32>::seeded(9);
    let plain_model = net(&mut plain);
    load_params(&path, &mut plain).unwrap();
    assert!(plain.eigenbasis(LayerId(0)).is_none());
    let (x, _) = batch::<f32>(50);
    let predict = |ps: &ParamStore<f32>, m: &Net<f32>| {
        let mut tape = Tape::no_grad(ps);
        let xv = tape.input(x.clone());
        let out = m.forward(&mut tape, xv).unwrap();
        tape.value(out)
            .data()
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<_>>()
    };
    assert!(rel(&predict(&plain, &plain_model), &predict(&ps, &model)) < 1e-5);
    // Resume: weights file, then the optimizer state (which puts fc1, fc2 back in their basis).
    let mut resumed = ParamStore::<f32>::seeded(9);
    let resumed_model = net(&mut resumed);
    load_params(&path, &mut resumed).unwrap();
    let mut opt2 = NaturalGradient::new(v, config(v, true), &resumed).unwrap();
    opt2.load_state(&mut resumed, &state).unwrap();
    for step in 5..10 {
        step_once(&mut ps, &mut opt, &model, step);
        step_once(&mut resumed, &mut opt2, &resumed_model, step);
    }
    for id in ps.ids() {
        assert_eq!(ps.get(id).data(), resumed.get(id).data(), "{}", ps.name(id));
    }
}
