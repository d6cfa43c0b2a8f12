//! Layer-level finite-difference checks in f64 (relative error ≤ 1e-6): `Linear`, `Conv2d`
//! (stride 1 and 2, padding 0 and 1, non-square kernels and images, batch 1 and 3, with and
//! without bias), both pools, every activation as a module, every loss on a conv net, and the
//! CNN preset. Inputs are parameters too, so input gradients are checked as well.

mod support;

use support::tensors::{GRAD_TOL, randn};
use tekfac::gradcheck::{GradCheckOptions, check_gradients, weighted_sum};
use tekfac::nn::{Activation, AvgPool2d, Cnn, Conv2d, Linear, MaxPool2d, Module, Sequential};
use tekfac::{ParamId, ParamStore, Result, Tape, Tensor, Var};

fn check(ps: &ParamStore<f64>, what: &str, f: impl Fn(&mut Tape<'_, f64>) -> Result<Var>) {
    let r = check_gradients(ps, f, GradCheckOptions::default()).unwrap();
    assert!(
        r.max_rel_error <= GRAD_TOL,
        "{what}: relative error {} in {} ({} coords)",
        r.max_rel_error,
        r.worst,
        r.coords
    );
}

/// A store whose first parameter `x` is the layer input, so its gradient is checked too.
fn with_input(x: Tensor<f64>) -> (ParamStore<f64>, ParamId) {
    let mut ps = ParamStore::seeded(11);
    let id = ps.add("x", x).unwrap();
    (ps, id)
}

/// `module(x)` reduced with fixed random weights.
fn check_module(ps: &ParamStore<f64>, x: ParamId, m: &impl Module<f64>, what: &str) {
    check(ps, what, |t| {
        let xv = t.param(x);
        let y = m.forward(t, xv)?;
        weighted_sum(t, y, 3)
    });
}

#[test]
fn linear_with_and_without_bias() {
    for (n, d_in, d_out) in [(1, 3, 2), (3, 5, 4)] {
        for bias in [false, true] {
            let (mut ps, x) = with_input(randn(&[n, d_in], 1));
            let fc = Linear::new(&mut ps, "fc", d_in, d_out, bias).unwrap();
            check_module(
                &ps,
                x,
                &fc,
                &format!("linear {n}x{d_in}->{d_out} bias {bias}"),
            );
        }
    }
}

#[test]
fn conv2d_every_geometry() {
    type Geometry = (
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
        usize,
        usize,
    );
    let cases: [Geometry; 6] = [
        (1, 1, 2, (5, 5), (3, 3), 1, 0),
        (3, 2, 3, (6, 5), (3, 2), 1, 1),
        (3, 2, 2, (7, 6), (2, 3), 2, 0),
        (1, 3, 2, (5, 8), (3, 3), 2, 1),
        (3, 1, 4, (4, 7), (1, 2), 1, 1),
        (1, 2, 3, (6, 6), (4, 4), 2, 1),
    ];
    for (s, &(n, ci, co, (h, w), k, stride, pad)) in cases.iter().enumerate() {
        for bias in [false, true] {
            let (mut ps, x) = with_input(randn(&[n, ci, h, w], s as u64));
            let conv = Conv2d::new(
                &mut ps,
                "conv",
                ci,
                co,
                k,
                (stride, stride),
                (pad, pad),
                bias,
            )
            .unwrap();
            check_module(&ps, x, &conv, &format!("conv case {s} bias {bias}"));
        }
    }
}

/// Distinct values 0.05 apart in a scrambled order: no ties, and no finite-difference step can
/// change which element of a window is the largest.
fn without_ties(dims: &[usize]) -> Tensor<f64> {
    let n: usize = dims.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % n) as f64 * 0.05 - 1.0)
        .collect();
    Tensor::from_vec(data, dims).unwrap()
}

#[test]
fn pools_match_finite_differences() {
    for (dims, kernel, stride) in [
        ([1, 1, 4, 4], (2, 2), (2, 2)),
        ([3, 2, 7, 6], (3, 2), (2, 2)),
        ([2, 3, 5, 6], (2, 3), (1, 1)),
    ] {
        let (ps, x) = with_input(without_ties(&dims));
        let max = MaxPool2d { kernel, stride };
        check_module(&ps, x, &max, &format!("max_pool2d {dims:?} {kernel:?}"));
        let avg = AvgPool2d { kernel, stride };
        check_module(&ps, x, &avg, &format!("avg_pool2d {dims:?} {kernel:?}"));
    }
}

#[test]
fn activations_as_modules_on_images() {
    let x = support::tensors::away_from_zero(randn(&[2, 3, 4, 5], 5), 1e-3);
    let (ps, xid) = with_input(x);
    for act in [
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Flatten,
    ] {
        check_module(&ps, xid, &act, &format!("{act:?}"));
    }
}

/// conv 2→3 (3×3, padding 1) + ReLU + maxpool 2 + flatten + dense 12→4 on `[3, 2, 4, 5]`.
fn conv_net(ps: &mut ParamStore<f64>, out: usize) -> Sequential<f64> {
    Sequential::new()
        .push(Conv2d::new(ps, "conv", 2, 3, (3, 3), (1, 1), (1, 1), true).unwrap())
        .push(Activation::Relu)
        .push(MaxPool2d::new(2))
        .push(Activation::Flatten)
        .push(Linear::new(ps, "fc", 12, out, true).unwrap())
}

#[test]
fn every_loss_through_a_conv_net() {
    let x = randn(&[3, 2, 4, 5], 21);
    let mut ps = ParamStore::seeded(22);
    let net = conv_net(&mut ps, 4);
    let forward = |t: &mut Tape<'_, f64>| {
        let xv = t.input(x.clone());
        net.forward(t, xv)
    };
    check(&ps, "cross_entropy", |t| {
        let y = forward(t)?;
        t.cross_entropy(y, &[3, 0, 1])
    });
    let bits = randn(&[3, 4], 23).map(|v| if v > 0.0 { 1.0 } else { 0.0 });
    check(&ps, "bce_with_logits", |t| {
        let y = forward(t)?;
        t.bce_with_logits(y, &bits)
    });
    let target = randn(&[3, 4], 24);
    check(&ps, "mse", |t| {
        let y = forward(t)?;
        t.mse(y, &target)
    });
}

#[test]
fn cnn_preset_end_to_end() {
    let mut ps = ParamStore::seeded(31);
    let cnn = Cnn::new(&mut ps, 10).unwrap();
    let x = randn(&[2, 1, 28, 28], 32);
    let opts = GradCheckOptions {
        max_coords: 12,
        ..Default::default()
    };
    let r = check_gradients(
        &ps,
        |t| {
            let xv = t.input(x.clone());
            let y = cnn.forward(t, xv)?;
            t.cross_entropy(y, &[3, 8])
        },
        opts,
    )
    .unwrap();
    assert!(r.max_rel_error <= GRAD_TOL, "{r:?}");
}
