//! The core engine: gemm against a naive reference, multiple sweeps from one forward, stable
//! cross-entropy, no-grad mode, clear shape errors, and a small MLP that learns.

mod support;

use support::tensors::{MATMUL_TOL, randn, store};
use tekfac::nn::{Linear, Module};
use tekfac::tensor::seeded_rng;
use tekfac::{Error, ParamId, ParamStore, SweepMode, Tape, Tensor};

fn naive(a: &Tensor<f64>, ta: bool, b: &Tensor<f64>, tb: bool) -> Vec<f64> {
    let at = if ta {
        a.transpose().unwrap()
    } else {
        a.clone()
    };
    let bt = if tb {
        b.transpose().unwrap()
    } else {
        b.clone()
    };
    let (m, k) = (at.dims()[0], at.dims()[1]);
    let n = bt.dims()[1];
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| at.data()[i * k + p] * bt.data()[p * n + j])
                .sum();
        }
    }
    c
}

#[test]
fn matmul_every_transpose_equals_naive_reference() {
    for (m, k, n) in [(1, 1, 1), (3, 5, 2), (7, 4, 9), (64, 33, 17)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randn(&if ta { [k, m] } else { [m, k] }, 1);
            let b = randn(&if tb { [n, k] } else { [k, n] }, 2);
            let got = a.matmul(&b, ta, tb).unwrap();
            let want = naive(&a, ta, &b, tb);
            assert_eq!(got.dims(), &[m, n]);
            let scale = want.iter().map(|x| x.abs()).fold(1.0, f64::max);
            for (g, w) in got.data().iter().zip(&want) {
                assert!(
                    (g - w).abs() <= MATMUL_TOL * scale,
                    "{m}x{k}x{n} ta={ta} tb={tb}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn matmul_shape_mismatch_is_a_clear_error() {
    let a = Tensor::<f64>::zeros(&[4, 3]);
    let b = Tensor::<f64>::zeros(&[5, 2]);
    let err = a.matmul(&b, false, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "matmul: inner dims differ, left [4, 3], right [5, 2]"
    );
    let ps = store(vec![a, b]);
    let mut t = Tape::new(&ps);
    let (x, y) = (t.param(ParamId(0)), t.param(ParamId(1)));
    assert!(matches!(t.matmul(x, y), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(t.add(x, y), Err(Error::ShapeMismatch { .. })));
    assert!(t.dense(x, y, None, None).is_err());
}

#[test]
fn two_sweeps_from_one_forward_equal_two_separate_runs() {
    let ps = store(vec![randn(&[4, 3], 1), randn(&[4], 2), randn(&[2, 4], 3)]);
    let x = randn(&[5, 3], 4);
    let forward = |t: &mut Tape<'_, f64>| {
        let xv = t.input(x.clone());
        let (w1, b1, w2) = (
            t.param(ParamId(0)),
            t.param(ParamId(1)),
            t.param(ParamId(2)),
        );
        let h = t.dense(xv, w1, Some(b1), None).unwrap();
        let h = t.tanh(h);
        t.dense(h, w2, None, None).unwrap()
    };
    let seeds = [randn(&[5, 2], 10), randn(&[5, 2], 11)];
    let mode = SweepMode {
        param_grads: true,
        capture: false,
    };
    let mut shared = Tape::new(&ps);
    let y = forward(&mut shared);
    let both: Vec<_> = seeds
        .iter()
        .map(|s| shared.sweep(&[(y, s.clone())], mode, 1).unwrap().0)
        .collect();
    for (seed, from_shared) in seeds.iter().zip(&both) {
        let mut fresh = Tape::new(&ps);
        let y = forward(&mut fresh);
        let separate = fresh.backward_from(y, seed.clone()).unwrap();
        for id in ps.ids() {
            assert_eq!(
                from_shared.get(id).unwrap().data(),
                separate.get(id).unwrap().data()
            );
        }
    }
    assert_ne!(
        both[0].get(ParamId(0)).unwrap().data(),
        both[1].get(ParamId(0)).unwrap().data()
    );
}

#[test]
fn cross_entropy_is_finite_and_correct_for_huge_logits() {
    let logits =
        Tensor::<f32>::from_vec(vec![1e4, -1e4, 0.0, -1e4, 1e4, 1e4 - 2.0], &[2, 3]).unwrap();
    let ps = ParamStore::<f32>::seeded(0);
    let mut ps = ps;
    let id = ps.add("logits", logits).unwrap();
    let mut t = Tape::new(&ps);
    let x = t.param(id);
    let loss = t.cross_entropy(x, &[1, 2]).unwrap();
    // Row 0: label 1 is 2e4 below the max → loss 2e4. Row 1: label 2 is 2 below the max, with
    // one more term 2 below: −log(e⁻²/(1 + e⁻² + e^{−2e4})) = 2 + ln(1 + e⁻²).
    let want = (2e4 + 2.0 + (1.0f64 + (-2.0f64).exp()).ln()) / 2.0;
    let got = t.value(loss).item().unwrap() as f64;
    assert!((got - want).abs() / want < 1e-6, "{got} vs {want}");
    let g = t.backward(loss).unwrap().grads;
    let g = g.get(id).unwrap();
    assert!(g.all_finite());
    // Row 0 gradient: (p − e_y)/2 = (1, −1, 0)/2.
    assert!((g.data()[0] - 0.5).abs() < 1e-6 && (g.data()[1] + 0.5).abs() < 1e-6);
}

#[test]
fn no_grad_tape_records_no_graph() {
    let ps = store(vec![randn(&[2, 3], 1)]);
    let mut t = Tape::no_grad(&ps);
    let x = t.param(ParamId(0));
    let y = t.tanh(x);
    let l = t.sum(y);
    assert!(t.value(l).item().unwrap().is_finite());
    assert!(matches!(t.backward(l), Err(Error::Autograd(_))));
}

#[test]
fn bad_labels_and_targets_are_errors_not_panics() {
    let ps = store(vec![randn(&[2, 3], 1)]);
    let mut t = Tape::new(&ps);
    let x = t.param(ParamId(0));
    assert!(
        t.cross_entropy(x, &[0, 3])
            .unwrap_err()
            .to_string()
            .contains("label 3 out of range")
    );
    assert!(t.cross_entropy(x, &[0]).is_err());
    assert!(t.mse(x, &Tensor::zeros(&[3, 2])).is_err());
    assert!(Tensor::<f32>::from_vec(vec![1.0; 5], &[2, 3]).is_err());
}

/// Four classes: inner or outer ring (radius 1 or 2.5) × upper or lower half-plane, with noise.
/// The ring boundary is a circle, so no linear model separates it.
fn synthetic(n: usize, seed: u64) -> (Tensor<f32>, Vec<usize>) {
    let mut rng = seeded_rng(seed);
    let noise = Tensor::<f32>::randn(&[n, 2], 0.0, 0.15, &mut rng);
    let angles = Tensor::<f32>::rand_uniform(&[n], 0.0, std::f64::consts::TAU, &mut rng);
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let outer = i % 2;
        let angle = angles.data()[i];
        let r = if outer == 1 { 2.5 } else { 1.0 };
        x.push(r * angle.cos() + noise.data()[2 * i]);
        x.push(r * angle.sin() + noise.data()[2 * i + 1]);
        y.push(2 * outer + usize::from(angle < std::f32::consts::PI));
    }
    (Tensor::from_vec(x, &[n, 2]).unwrap(), y)
}

#[test]
fn mlp_learns_synthetic_classification_to_95_percent() {
    let (x, y) = synthetic(400, 1);
    let mut ps = ParamStore::<f32>::seeded(42);
    let fc1 = Linear::new(&mut ps, "fc1", 2, 64, true).unwrap();
    let fc2 = Linear::new(&mut ps, "fc2", 64, 4, true).unwrap();
    let forward = |t: &mut Tape<'_, f32>, x| {
        let h = fc1.forward(t, x).unwrap();
        let h = t.relu(h);
        fc2.forward(t, h).unwrap()
    };
    let mut losses = Vec::new();
    for _ in 0..600 {
        let mut t = Tape::new(&ps);
        let xv = t.input(x.clone());
        let logits = forward(&mut t, xv);
        let loss = t.cross_entropy(logits, &y).unwrap();
        let out = t.backward(loss).unwrap();
        losses.push(out.loss);
        for (id, g) in out.grads.iter() {
            ps.get_mut(id).axpy(-0.5, g).unwrap();
        }
    }
    let mut t = Tape::no_grad(&ps);
    let xv = t.input(x.clone());
    let logits = forward(&mut t, xv);
    let pred = t.value(logits).argmax_rows();
    let acc = pred.iter().zip(&y).filter(|(p, y)| p == y).count() as f64 / y.len() as f64;
    assert!(
        acc >= 0.95,
        "training accuracy {acc}, loss {} → {}",
        losses[0],
        losses.last().unwrap()
    );
}

#[test]
fn finiteness_and_sum_of_squares_see_every_element() {
    // Lengths around the 8-wide lanes, a bad value in every position (lanes and tail).
    for len in [1, 7, 8, 9, 17, 64] {
        let base: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
        let t = Tensor::from_vec(base.clone(), &[len]).unwrap();
        assert!(t.all_finite(), "len {len}");
        let naive: f64 = base.iter().map(|&x| (x as f64).powi(2)).sum();
        assert!((t.sum_squares() - naive).abs() <= 1e-12 * naive.max(1.0));
        for pos in 0..len {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = base.clone();
                v[pos] = bad;
                let t = Tensor::from_vec(v, &[len]).unwrap();
                assert!(!t.all_finite(), "len {len}, {bad} at {pos}");
            }
        }
    }
    // Over two 32k chunks the check runs chunk by chunk on rayon: a bad value in the first, a
    // middle, the last full and the ragged last chunk.
    let len = 3 * (1 << 15) + 5;
    let base = vec![1.5f32; len];
    assert!(Tensor::from_vec(base.clone(), &[len]).unwrap().all_finite());
    for pos in [0, 40_000, 3 * (1 << 15) - 1, len - 1] {
        let mut v = base.clone();
        v[pos] = f32::NAN;
        assert!(!Tensor::from_vec(v, &[len]).unwrap().all_finite(), "{pos}");
    }
    // f32::MAX squared does not overflow the f64 accumulator.
    let big = Tensor::from_vec(vec![f32::MAX; 9], &[9]).unwrap();
    assert!(big.all_finite() && big.sum_squares().is_finite());
}
