//! Captures against brute force, in f64 on tiny nets with a conv and two dense layers:
//! the mean of the per-example gradients rebuilt from captures is the tape's gradient (spec
//! identity 16), an `Exact` capture is the exact Fisher / GGN block built from per-class or
//! per-output backpropagation, and `Sampled` converges to `Exact` (spec identity 17).

mod support;

use support::layers::{
    add_outer, fisher_from_capture, layer_block, per_example_gradients, rel_error,
};
use support::tensors::randn;
use tekfac::nn::{Activation, Conv2d, Linear, Module, Sequential};
use tekfac::{FisherType, LayerCapture, ParamStore, Result, SweepMode, Tape, Tensor, Var};

/// The three losses the Fisher sweeps support.
#[derive(Clone, Copy, Debug)]
enum Loss {
    CrossEntropy,
    Bce,
    Mse,
}

/// conv 2→3 (3×2 kernel, stride (2, 1), padding (1, 0)) + ReLU + flatten + dense 36→4 + tanh +
/// dense 4→3 without bias, on `[N, 2, 6, 5]` input.
fn small_net(ps: &mut ParamStore<f64>, conv_bias: bool) -> Sequential<f64> {
    Sequential::new()
        .push(Conv2d::new(ps, "conv", 2, 3, (3, 2), (2, 1), (1, 0), conv_bias).unwrap())
        .push(Activation::Relu)
        .push(Activation::Flatten)
        .push(Linear::new(ps, "fc1", 36, 4, true).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(ps, "fc2", 4, 3, false).unwrap())
}

fn loss(
    t: &mut Tape<'_, f64>,
    kind: Loss,
    y: Var,
    labels: &[usize],
    target: &Tensor<f64>,
) -> Result<Var> {
    match kind {
        Loss::CrossEntropy => t.cross_entropy(y, labels),
        Loss::Bce => t.bce_with_logits(y, target),
        Loss::Mse => t.mse(y, target),
    }
}

/// One forward + backward with the given Fisher type; returns captures and gradients.
fn run(
    ps: &ParamStore<f64>,
    net: &Sequential<f64>,
    x: &Tensor<f64>,
    kind: Loss,
    labels: &[usize],
    fisher: FisherType,
) -> tekfac::BackwardOutput<f64> {
    let target = Tensor::from_vec(
        (0..x.dims()[0] * 3)
            .map(|i| [0.0, 1.0, 0.3][i % 3])
            .collect(),
        &[x.dims()[0], 3],
    )
    .unwrap();
    let mut t = Tape::new(ps);
    let xv = t.input(x.clone());
    let y = net.forward(&mut t, xv).unwrap();
    let l = loss(&mut t, kind, y, labels, &target).unwrap();
    t.backward_with(l, fisher).unwrap()
}

fn capture_of<'a>(
    out: &'a tekfac::BackwardOutput<f64>,
    ps: &ParamStore<f64>,
    name: &str,
) -> &'a LayerCapture<f64> {
    let id = ps.layers().iter().position(|l| l.name == name).unwrap();
    out.captures.iter().find(|c| c.layer.0 == id).unwrap()
}

#[test]
fn mean_of_per_example_gradients_is_the_tape_gradient() {
    for (conv_bias, batch) in [(true, 3), (false, 3), (true, 1)] {
        let mut ps = ParamStore::seeded(1);
        let net = small_net(&mut ps, conv_bias);
        let x = randn(&[batch, 2, 6, 5], 2);
        let labels: Vec<usize> = (0..batch).map(|i| (2 * i + 1) % 3).collect();
        let out = run(
            &ps,
            &net,
            &x,
            Loss::CrossEntropy,
            &labels,
            FisherType::Empirical,
        );
        assert_eq!(out.captures.len(), 3);
        for info in ps.layers() {
            let c = capture_of(&out, &ps, &info.name);
            assert_eq!(c.g.len(), 1, "empirical: one sweep");
            assert_eq!(
                c.a.dims()[1],
                info.d_in_bar(),
                "{}: ones column iff biased",
                info.name
            );
            let per = &per_example_gradients(c)[0];
            assert_eq!(per.len(), batch);
            let mut mean = vec![0.0; info.d_out * info.d_in_bar()];
            for dw in per {
                mean.iter_mut()
                    .zip(dw)
                    .for_each(|(m, d)| *m += d / batch as f64);
            }
            let want = layer_block(&out.grads, info, &ps);
            let err = rel_error(&mean, &want);
            assert!(
                err < 1e-12,
                "{} (bias {conv_bias}, batch {batch}): {err}",
                info.name
            );
        }
        let conv = capture_of(&out, &ps, "conv");
        assert_eq!(conv.rows_per_example, 12, "3×4 output locations");
        assert_eq!(conv.examples(), batch);
    }
}

#[test]
fn a_conv_with_large_patches_also_reproduces_its_gradient() {
    // 16 channels × 5×5 patches over 10×10 outputs: the per-example product is too large for one
    // thread, so the weight gradient takes the rows path (`āᵀ·g`) instead of the per-example one.
    let mut ps = ParamStore::seeded(8);
    let net = Sequential::new()
        .push(Conv2d::new(&mut ps, "conv", 16, 4, (5, 5), (1, 1), (0, 0), true).unwrap())
        .push(Activation::Tanh)
        .push(Activation::Flatten)
        .push(Linear::new(&mut ps, "fc", 400, 3, true).unwrap());
    let x = randn(&[2, 16, 14, 14], 9);
    let mut t = Tape::new(&ps);
    let xv = t.input(x);
    let y = net.forward(&mut t, xv).unwrap();
    let l = t.cross_entropy(y, &[2, 0]).unwrap();
    let out = t.backward_with(l, FisherType::Empirical).unwrap();
    let info = &ps.layers()[0];
    let per = &per_example_gradients(capture_of(&out, &ps, "conv"))[0];
    let mean: Vec<f64> = (0..per[0].len())
        .map(|i| (per[0][i] + per[1][i]) / 2.0)
        .collect();
    let err = rel_error(&mean, &layer_block(&out.grads, info, &ps));
    assert!(err < 1e-12, "{err}");
}

#[test]
fn capture_off_returns_no_captures_and_the_same_gradients() {
    let mut ps = ParamStore::seeded(1);
    let net = small_net(&mut ps, true);
    let x = randn(&[2, 2, 6, 5], 2);
    let off = run(&ps, &net, &x, Loss::CrossEntropy, &[0, 2], FisherType::Off);
    assert!(off.captures.is_empty());
    for fisher in [
        FisherType::Empirical,
        FisherType::Exact,
        FisherType::Sampled { k: 3, seed: 1 },
    ] {
        let on = run(&ps, &net, &x, Loss::CrossEntropy, &[0, 2], fisher);
        for id in ps.ids() {
            assert_eq!(
                on.grads.get(id).unwrap().data(),
                off.grads.get(id).unwrap().data()
            );
        }
    }
}

#[test]
fn a_reusable_sweep_captures_the_same_rows_as_backward_with() {
    // `Tape::sweep` keeps the tape, so the conv patches are copied into the capture;
    // `backward_with` consumes it and moves them. Both must hand out the same rows.
    let mut ps = ParamStore::seeded(1);
    let net = small_net(&mut ps, true);
    let x = randn(&[3, 2, 6, 5], 2);
    let consumed = run(
        &ps,
        &net,
        &x,
        Loss::CrossEntropy,
        &[0, 2, 1],
        FisherType::Empirical,
    );
    let mut t = Tape::new(&ps);
    let xv = t.input(x.clone());
    let y = net.forward(&mut t, xv).unwrap();
    let l = t.cross_entropy(y, &[0, 2, 1]).unwrap();
    let mode = SweepMode {
        param_grads: true,
        capture: true,
    };
    let (_, kept) = t.sweep(&[(l, Tensor::scalar(1.0))], mode, 3).unwrap();
    assert_eq!(kept.len(), consumed.captures.len());
    for (k, c) in kept.iter().zip(&consumed.captures) {
        assert_eq!((k.layer, k.rows_per_example), (c.layer, c.rows_per_example));
        assert_eq!(k.a, c.a);
        assert_eq!(k.g, c.g);
    }
}

/// Per-layer gradient blocks of one example's loss (for CE: with label `label`), from a fresh
/// tape, or the gradient of output unit `unit` when `unit` is set (a row of the Jacobian).
fn blocks(
    ps: &ParamStore<f64>,
    net: &Sequential<f64>,
    x: &Tensor<f64>,
    label: usize,
    unit: Option<usize>,
) -> Vec<Vec<f64>> {
    let mut t = Tape::new(ps);
    let xv = t.input(x.clone());
    let y = net.forward(&mut t, xv).unwrap();
    let grads = match unit {
        None => {
            let l = t.cross_entropy(y, &[label]).unwrap();
            t.backward(l).unwrap().grads
        }
        Some(d) => {
            let mut seed = Tensor::zeros(&[1, 3]);
            seed.data_mut()[d] = 1.0;
            t.backward_from(y, seed).unwrap()
        }
    };
    ps.layers()
        .iter()
        .map(|info| layer_block(&grads, info, ps))
        .collect()
}

/// The network output for one example, `[3]`.
fn output(ps: &ParamStore<f64>, net: &Sequential<f64>, x: &Tensor<f64>) -> Vec<f64> {
    let mut t = Tape::no_grad(ps);
    let xv = t.input(x.clone());
    let y = net.forward(&mut t, xv).unwrap();
    t.value(y).data().to_vec()
}

/// Exact Fisher (CE: `Σ_c p_c ∇_c∇_cᵀ`) or GGN (`Σ_d h_d J_dᵀJ_d`, `H = diag h`) of every
/// layer, by brute force, averaged over the examples of `x`.
fn brute_force_fisher(
    ps: &ParamStore<f64>,
    net: &Sequential<f64>,
    x: &Tensor<f64>,
    kind: Loss,
) -> Vec<Vec<f64>> {
    let n = x.dims()[0];
    let per = x.len() / n;
    let mut fisher: Vec<Vec<f64>> = ps
        .layers()
        .iter()
        .map(|l| vec![0.0; (l.d_out * l.d_in_bar()).pow(2)])
        .collect();
    for e in 0..n {
        let mut dims = x.dims().to_vec();
        dims[0] = 1;
        let xe = Tensor::from_vec(x.data()[e * per..(e + 1) * per].to_vec(), &dims).unwrap();
        let z = output(ps, net, &xe);
        for d in 0..3 {
            let (weight, bl) = match kind {
                Loss::CrossEntropy => {
                    let m = z.iter().cloned().fold(f64::MIN, f64::max);
                    let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
                    ((z[d] - m).exp() / s, blocks(ps, net, &xe, d, None))
                }
                Loss::Bce => {
                    let sig = 1.0 / (1.0 + (-z[d]).exp());
                    (sig * (1.0 - sig) / 3.0, blocks(ps, net, &xe, 0, Some(d)))
                }
                Loss::Mse => (2.0 / 3.0, blocks(ps, net, &xe, 0, Some(d))),
            };
            for (f, b) in fisher.iter_mut().zip(&bl) {
                add_outer(f, b, weight / n as f64);
            }
        }
    }
    fisher
}

#[test]
fn exact_capture_equals_brute_force_fisher_for_every_loss() {
    for kind in [Loss::CrossEntropy, Loss::Bce, Loss::Mse] {
        for batch in [1, 2] {
            let mut ps = ParamStore::seeded(3);
            let net = small_net(&mut ps, true);
            let x = randn(&[batch, 2, 6, 5], 4).scale(2.0);
            let labels = vec![1; batch];
            let out = run(&ps, &net, &x, kind, &labels, FisherType::Exact);
            let want = brute_force_fisher(&ps, &net, &x, kind);
            for (info, want) in ps.layers().iter().zip(&want) {
                let c = capture_of(&out, &ps, &info.name);
                assert_eq!(c.g.len(), 3, "one sweep per output column");
                let err = rel_error(&fisher_from_capture(c), want);
                assert!(err < 1e-10, "{kind:?} batch {batch} {}: {err}", info.name);
            }
        }
    }
}

#[test]
fn sampled_fisher_converges_to_exact_and_is_deterministic() {
    let mut ps = ParamStore::seeded(5);
    let net = small_net(&mut ps, true);
    let x = randn(&[2, 2, 6, 5], 6).scale(2.0);
    let sampled = FisherType::Sampled { k: 20_000, seed: 7 };
    for kind in [Loss::CrossEntropy, Loss::Bce, Loss::Mse] {
        let exact = run(&ps, &net, &x, kind, &[0, 1], FisherType::Exact);
        let mc = run(&ps, &net, &x, kind, &[0, 1], sampled);
        let again = run(&ps, &net, &x, kind, &[0, 1], sampled);
        for info in ps.layers() {
            let f_mc = fisher_from_capture(capture_of(&mc, &ps, &info.name));
            let f_exact = fisher_from_capture(capture_of(&exact, &ps, &info.name));
            let err = rel_error(&f_mc, &f_exact);
            assert!(err < 0.03, "{kind:?} {}: relative error {err}", info.name);
            let (c, c_again) = (
                capture_of(&mc, &ps, &info.name),
                capture_of(&again, &ps, &info.name),
            );
            assert!(
                c.g.iter().zip(&c_again.g).all(|(a, b)| a == b),
                "same seed, same samples"
            );
        }
    }
}
