//! The engine's fast paths against their plain twins, bit for bit: GEMM panels against one
//! call, `gemm_new` against a zero-filled product, the fused dense + ReLU against dense then
//! ReLU, the fused max-pool + ReLU against pool then ReLU, the CNN preset (pools with a fused
//! ReLU) against conv → ReLU → pool, the chunked SGD and Adam updates against a
//! one-element-at-a-time loop; and whole training steps on one, two and three threads. Plus the
//! f64 finite-difference check of the fused dense + ReLU.

mod support;

use support::tensors::{GRAD_TOL, on_threads};
use tekfac::gradcheck::{GradCheckOptions, check_gradients, weighted_sum};
use tekfac::kernels::gemm::{MatRef, gemm_into, gemm_new};
use tekfac::nn::{Cnn, Conv2d, Linear, Mlp, Module};
use tekfac::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use tekfac::tensor::seeded_rng;
use tekfac::{BackwardOutput, FisherType, Float, LayerId, ParamStore, Tape, Tensor, Var};

fn rand<F: Float>(dims: &[usize], seed: u64) -> Tensor<F> {
    Tensor::randn(dims, 0.0, 1.0, &mut seeded_rng(seed))
}

/// `α·op(a)·op(b) + β·c` on `threads` threads, for shapes above the panel threshold.
fn product<F: Float>(
    threads: usize,
    (m, k, n): (usize, usize, usize),
    ta: bool,
    tb: bool,
) -> Vec<F> {
    let a = rand::<F>(&[m * k], 1);
    let b = rand::<F>(&[k * n], 2);
    let mut c = rand::<F>(&[m * n], 3).into_vec();
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    let (a, b) = (
        MatRef::new(a.data(), ar, ac, ta),
        MatRef::new(b.data(), br, bc, tb),
    );
    let (alpha, beta) = (F::from_f64(0.7), F::from_f64(-0.3));
    on_threads(threads, || gemm_into(alpha, a, b, beta, &mut c));
    c
}

#[test]
fn gemm_panels_give_the_bits_of_one_call_on_any_thread_count() {
    // Both split directions, ragged panel edges, several `k` blocks.
    let shapes = [
        (130, 300, 777),
        (777, 300, 130),
        (64, 1000, 200),
        (200, 40, 1100),
    ];
    for shape in shapes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let one = product::<f32>(1, shape, ta, tb);
            for threads in [2, 3] {
                let split = product::<f32>(threads, shape, ta, tb);
                assert!(
                    one == split,
                    "f32 {shape:?} ta={ta} tb={tb}, {threads} threads"
                );
            }
            let one = product::<f64>(1, shape, ta, tb);
            assert!(
                one == product::<f64>(2, shape, ta, tb),
                "f64 {shape:?} ta={ta} tb={tb}"
            );
        }
    }
}

#[test]
fn gemm_new_equals_a_product_into_zeros() {
    for (m, k, n) in [(3, 5, 2), (128, 784, 512), (7, 0, 4)] {
        let a = rand::<f32>(&[m * k], 1);
        let b = rand::<f32>(&[n * k], 2);
        let (a, b) = (
            MatRef::new(a.data(), m, k, false),
            MatRef::new(b.data(), n, k, true),
        );
        let mut zeros = vec![0.0; m * n];
        gemm_into(1.5, a, b, 0.0, &mut zeros);
        assert!(gemm_new(1.5, a, b) == zeros, "{m}x{k}x{n}");
    }
}

/// A store with an input `x` `[n, d_in]` (a parameter, so its gradient is compared too) and a
/// biased dense layer `fc`.
fn dense_store<F: Float>(n: usize, d_in: usize, d_out: usize) -> (ParamStore<F>, Linear) {
    let mut ps = ParamStore::seeded(5);
    ps.add("x", rand::<F>(&[n, d_in], 4)).unwrap();
    let fc = Linear::new(&mut ps, "fc", d_in, d_out, true).unwrap();
    (ps, fc)
}

/// Everything a backward pass hands out, compared bit for bit.
fn assert_same_pass<F: Float>(
    a: &BackwardOutput<F>,
    b: &BackwardOutput<F>,
    ps: &ParamStore<F>,
    what: &str,
) {
    assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{what}: loss");
    for id in ps.ids() {
        assert!(
            a.grads.get(id) == b.grads.get(id),
            "{what}: gradient of {}",
            ps.name(id)
        );
    }
    let captures = a.captures.iter().map(|c| (c.layer, &c.a, &c.g[..]));
    let other = b.captures.iter().map(|c| (c.layer, &c.a, &c.g[..]));
    assert_same_rows(captures.collect(), other.collect(), what, "captures");
    let rows = a
        .rows
        .iter()
        .map(|r| (r.layer, &r.a, std::slice::from_ref(&r.g)));
    let other = b
        .rows
        .iter()
        .map(|r| (r.layer, &r.a, std::slice::from_ref(&r.g)));
    assert_same_rows(rows.collect(), other.collect(), what, "rows");
}

/// Two lists of `(layer, ā, g per sweep)` rows, compared bit for bit.
type Rows<'a, F> = Vec<(LayerId, &'a Tensor<F>, &'a [Tensor<F>])>;
fn assert_same_rows<F: Float>(x: Rows<'_, F>, y: Rows<'_, F>, what: &str, name: &str) {
    assert_eq!(x.len(), y.len(), "{what}: number of {name}");
    for ((l, a, g), (m, b, h)) in x.into_iter().zip(y) {
        assert_eq!(l, m, "{what}: {name} layer");
        assert!(a == b && g == h, "{what}: {name} rows of layer {l:?}");
    }
}

#[test]
fn dense_relu_equals_dense_then_relu() {
    let (ps, fc) = dense_store::<f32>(33, 70, 40);
    let labels: Vec<usize> = (0..33).map(|i| i % 40).collect();
    let run = |fused: bool| {
        let mut t = Tape::new(&ps);
        let x = t.param(ps.find("x").unwrap());
        let h = if fused {
            fc.forward_relu(&mut t, x).unwrap()
        } else {
            let s = fc.forward(&mut t, x).unwrap();
            t.relu(s)
        };
        let value = t.value(h).clone();
        let loss = t.cross_entropy(h, &labels).unwrap();
        (
            value,
            t.backward_full(loss, FisherType::Empirical, true).unwrap(),
        )
    };
    let ((fused_h, fused), (plain_h, plain)) = (run(true), run(false));
    assert!(fused_h == plain_h, "forward values");
    assert!(
        plain_h.data().contains(&0.0),
        "some units are cut by the ReLU"
    );
    assert_same_pass(&fused, &plain, &ps, "dense_relu");
}

#[test]
fn dense_relu_passes_the_f64_gradient_check() {
    let (mut ps, fc) = dense_store::<f64>(4, 6, 5);
    // Keep every pre-activation at least 0.05 from the ReLU's kink, by moving each unit's bias.
    let x = ps.get(ps.find("x").unwrap()).clone();
    let pre = x.matmul(ps.get(fc.weight()), false, true).unwrap();
    let (rows, cols) = (pre.dims()[0], pre.dims()[1]);
    let bias = ps.get_mut(fc.bias().unwrap());
    for j in 0..cols {
        let b = &mut bias.data_mut()[j];
        while (0..rows).any(|i| (pre.data()[i * cols + j] + *b).abs() < 0.05) {
            *b += 0.05;
        }
    }
    let xid = ps.find("x").unwrap();
    let r = check_gradients(
        &ps,
        |t| {
            let xv = t.param(xid);
            let h = fc.forward_relu(t, xv)?;
            weighted_sum(t, h, 3)
        },
        GradCheckOptions::default(),
    )
    .unwrap();
    assert!(r.max_rel_error <= GRAD_TOL, "{r:?}");
}

#[test]
fn max_pool_relu_equals_max_pool_then_relu() {
    // Non-overlapping and overlapping windows; N(0, 1) inputs, so some windows are all ≤ 0.
    for (kernel, stride) in [((2, 2), (2, 2)), ((3, 2), (1, 2))] {
        let ps = support::tensors::store(vec![support::tensors::randn(&[3, 4, 9, 8], 7)]);
        let run = |fused: bool| {
            let mut t = Tape::new(&ps);
            let x = t.param(tekfac::ParamId(0));
            let y = if fused {
                t.max_pool2d_relu(x, kernel, stride).unwrap()
            } else {
                let p = t.max_pool2d(x, kernel, stride).unwrap();
                t.relu(p)
            };
            let value = t.value(y).clone();
            let seed = support::tensors::randn(value.dims(), 8);
            (value, t.backward_from(y, seed).unwrap())
        };
        let ((fused_y, fused), (plain_y, plain)) = (run(true), run(false));
        assert!(fused_y == plain_y, "{kernel:?}: values");
        assert!(plain_y.data().contains(&0.0), "some windows are cut");
        let id = tekfac::ParamId(0);
        assert!(fused.get(id) == plain.get(id), "{kernel:?}: gradients");
    }
}

/// The CNN preset's layers, built again in the same order, so a seeded store gets the same
/// weights: the conv → ReLU → pool ordering spelled out with plain ops.
struct PlainCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

impl PlainCnn {
    fn new(ps: &mut ParamStore<f32>) -> Self {
        let (k, s, p) = ((5, 5), (1, 1), (0, 0));
        PlainCnn {
            conv1: Conv2d::new(ps, "conv1", 1, 32, k, s, p, true).unwrap(),
            conv2: Conv2d::new(ps, "conv2", 32, 64, k, s, p, true).unwrap(),
            fc1: Linear::new(ps, "fc1", 1024, 128, true).unwrap(),
            fc2: Linear::new(ps, "fc2", 128, 10, true).unwrap(),
        }
    }
}

impl Module<f32> for PlainCnn {
    fn forward(&self, t: &mut Tape<'_, f32>, x: Var) -> tekfac::Result<Var> {
        let h = self.conv1.forward(t, x)?;
        let h = t.relu(h);
        let h = t.max_pool2d(h, (2, 2), (2, 2))?;
        let h = self.conv2.forward(t, h)?;
        let h = t.relu(h);
        let h = t.max_pool2d(h, (2, 2), (2, 2))?;
        let n = t.value(h).dims()[0];
        let h = t.reshape(h, &[n, 1024])?;
        let h = self.fc1.forward(t, h)?;
        let h = t.relu(h);
        self.fc2.forward(t, h)
    }
}

#[test]
fn cnn_preset_equals_conv_relu_pool_bit_for_bit() {
    let mut fused_ps = ParamStore::<f32>::seeded(3);
    let cnn = Cnn::new(&mut fused_ps, 10).unwrap();
    let mut plain_ps = ParamStore::<f32>::seeded(3);
    let plain = PlainCnn::new(&mut plain_ps);
    for id in fused_ps.ids() {
        assert!(
            fused_ps.get(id) == plain_ps.get(id),
            "same initial {}",
            fused_ps.name(id)
        );
    }
    let images = rand::<f32>(&[6, 1, 28, 28], 9);
    let labels = [0, 3, 9, 1, 1, 7];
    let run = |ps: &ParamStore<f32>, m: &dyn Module<f32>| {
        let mut t = Tape::new(ps);
        let x = t.input(images.clone());
        let logits = m.forward(&mut t, x).unwrap();
        let loss = t.cross_entropy(logits, &labels).unwrap();
        t.backward_full(loss, FisherType::Empirical, true).unwrap()
    };
    let (a, b) = (run(&fused_ps, &cnn), run(&plain_ps, &plain));
    assert_same_pass(&a, &b, &fused_ps, "CNN preset");
}

/// `θ` after three steps of `opt` on `L = Σ cᵢθᵢ + ½Σθᵢ²` (gradient `c + θ`), with the step
/// statistics; `θ` has 200,003 elements, so the update runs in several chunks and threads.
fn three_steps<O: Optimizer<f32> + Send>(
    opt: &mut O,
    threads: usize,
) -> (Tensor<f32>, Vec<(f64, f64)>) {
    let mut ps = ParamStore::<f32>::seeded(0);
    let id = ps.add("theta", rand(&[200_003], 1)).unwrap();
    let c = rand::<f32>(&[200_003], 2);
    let mut stats = Vec::new();
    for _ in 0..3 {
        let pass = {
            let mut t = Tape::new(&ps);
            let th = t.param(id);
            let cv = t.input(c.clone());
            let lin = t.mul(th, cv).unwrap();
            let sq = t.mul(th, th).unwrap();
            let half = t.scale(sq, 0.5);
            let sum = t.add(lin, half).unwrap();
            let loss = t.sum(sum);
            t.backward(loss).unwrap()
        };
        let s = on_threads(threads, || opt.step(&mut ps, &pass)).unwrap();
        assert_eq!(
            s.grad_norm,
            pass.grads.global_norm(),
            "grad_norm is the global norm"
        );
        stats.push((s.grad_norm, s.update_norm));
    }
    (ps.get(id).clone(), stats)
}

/// The same three steps, one element at a time, with the textbook formulas.
fn three_steps_plain(update: impl Fn(&mut f32, usize, f32, u64)) -> Vec<f32> {
    let mut theta = rand::<f32>(&[200_003], 1).into_vec();
    let c = rand::<f32>(&[200_003], 2);
    for t in 1..=3 {
        for (i, th) in theta.iter_mut().enumerate() {
            let g = c.data()[i] + *th;
            update(th, i, g, t);
        }
    }
    theta
}

#[test]
fn chunked_sgd_equals_the_plain_update_on_any_thread_count() {
    for (nesterov, wd) in [(false, 0.0), (true, 1e-2)] {
        let config = SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov,
            weight_decay: wd,
        };
        let m = std::cell::RefCell::new(vec![0f32; 200_003]);
        let (lr, mu, wd) = (0.05f32, 0.9f32, wd as f32);
        let want = three_steps_plain(|th, i, g, _| {
            let d = g + wd * *th;
            let m = &mut m.borrow_mut()[i];
            *m = mu * *m + d;
            *th -= if nesterov {
                lr * (d + mu * *m)
            } else {
                lr * *m
            };
        });
        let (one, stats_one) = three_steps(&mut Sgd::new(config), 1);
        let (two, stats_two) = three_steps(&mut Sgd::new(config), 2);
        assert!(
            one.data() == want.as_slice(),
            "SGD nesterov={nesterov}: 1 thread vs plain loop"
        );
        assert!(
            one == two && stats_one == stats_two,
            "SGD nesterov={nesterov}: 1 vs 2 threads"
        );
    }
}

#[test]
fn chunked_adam_equals_the_plain_update_on_any_thread_count() {
    for (decoupled, wd) in [(false, 0.0), (false, 1e-2), (true, 1e-2)] {
        let config = AdamConfig {
            lr: 1e-2,
            weight_decay: wd,
            decoupled,
            ..Default::default()
        };
        let mv = std::cell::RefCell::new(vec![(0f32, 0f32); 200_003]);
        let want = three_steps_plain(|th, i, g, t| {
            let c = &config;
            let (bc1, bc2) = (1.0 - c.beta1.powi(t as i32), 1.0 - c.beta2.powi(t as i32));
            let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
            let (l2, decay) = if decoupled {
                (0.0, (c.lr * wd) as f32)
            } else {
                (wd as f32, 0.0)
            };
            let (m, v) = &mut mv.borrow_mut()[i];
            let d = g + l2 * *th;
            *m = b1 * *m + (1.0 - b1) * d;
            *v = b2 * *v + (1.0 - b2) * d * d;
            let u = (c.lr / bc1) as f32 * *m / (v.sqrt() / bc2.sqrt() as f32 + eps) + decay * *th;
            *th -= u;
        });
        let (one, stats_one) = three_steps(&mut Adam::new(config), 1);
        let (two, stats_two) = three_steps(&mut Adam::new(config), 2);
        assert!(
            one.data() == want.as_slice(),
            "Adam decoupled={decoupled} wd={wd}: vs plain loop"
        );
        assert!(
            one == two && stats_one == stats_two,
            "Adam decoupled={decoupled}: 1 vs 2 threads"
        );
    }
}

/// Losses and final weights of `steps` training steps of a preset on random data.
fn train(model: &str, optimizer: &str, steps: usize) -> (Vec<f64>, Vec<Tensor<f32>>) {
    let mut ps = ParamStore::<f32>::seeded(1);
    let net: Box<dyn Module<f32>> = match model {
        "mlp" => Box::new(Mlp::new(&mut ps, 784, 10).unwrap()),
        _ => Box::new(Cnn::new(&mut ps, 10).unwrap()),
    };
    let mut opt: Box<dyn Optimizer<f32>> = match optimizer {
        "sgd" => Box::new(Sgd::new(SgdConfig::default())),
        _ => Box::new(Adam::new(AdamConfig::default())),
    };
    let mut losses = Vec::new();
    for step in 0..steps {
        let x = Tensor::rand_uniform(&[32, 1, 28, 28], 0.0, 1.0, &mut seeded_rng(step as u64));
        let labels: Vec<usize> = (0..32).map(|i| (i * 7 + step) % 10).collect();
        let mut t = Tape::new(&ps);
        let xv = t.input(x);
        let logits = net.forward(&mut t, xv).unwrap();
        let loss = t.cross_entropy(logits, &labels).unwrap();
        let pass = t.backward_with(loss, opt.fisher()).unwrap();
        let s = opt.step(&mut ps, &pass).unwrap();
        losses.extend([s.loss, s.grad_norm, s.update_norm]);
    }
    (losses, ps.ids().map(|id| ps.get(id).clone()).collect())
}

#[test]
fn training_steps_are_identical_on_one_two_and_three_threads() {
    for (model, optimizer, steps) in [("mlp", "sgd", 4), ("mlp", "adam", 4), ("cnn", "sgd", 2)] {
        let one = on_threads(1, || train(model, optimizer, steps));
        for threads in [2, 3] {
            let other = on_threads(threads, || train(model, optimizer, steps));
            assert!(
                one.0
                    .iter()
                    .zip(&other.0)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{model} {optimizer}: loss and norms on 1 vs {threads} threads: {:?} vs {:?}",
                one.0,
                other.0
            );
            assert!(
                one.1 == other.1,
                "{model} {optimizer}: weights on 1 vs {threads} threads"
            );
        }
    }
}
