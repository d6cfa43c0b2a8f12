//! SGD-momentum and Adam against hand-computed updates, and a loss decrease on a small MLP.

use tekfac::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use tekfac::{ParamStore, Tape, Tensor};

/// One step of `loss = Σ wᵢ²/2` (gradient = w) from `w0`; returns the new weights.
fn quadratic_steps(opt: &mut dyn Optimizer<f64>, w0: &[f64], steps: usize) -> Vec<f64> {
    let mut ps = ParamStore::<f64>::seeded(0);
    let id = ps
        .add("w", Tensor::from_vec(w0.to_vec(), &[w0.len()]).unwrap())
        .unwrap();
    for _ in 0..steps {
        let mut t = Tape::new(&ps);
        let w = t.param(id);
        let sq = t.mul(w, w).unwrap();
        let s = t.sum(sq);
        let loss = t.scale(s, 0.5);
        let out = t.backward(loss).unwrap();
        opt.step(&mut ps, &out).unwrap();
    }
    ps.get(id).data().to_vec()
}

#[test]
fn sgd_momentum_matches_hand_computation() {
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.5,
        nesterov: false,
        weight_decay: 0.0,
    });
    // w1 = 1 − 0.1·1 = 0.9; m = 0.5·1 + 0.9 = 1.4; w2 = 0.9 − 0.14 = 0.76.
    let w = quadratic_steps(&mut opt, &[1.0], 2);
    assert!((w[0] - 0.76).abs() < 1e-12, "{w:?}");
    let mut nest = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.5,
        nesterov: true,
        weight_decay: 0.0,
    });
    // m = 1, step d + μm = 1.5 → w1 = 0.85.
    assert!((quadratic_steps(&mut nest, &[1.0], 1)[0] - 0.85).abs() < 1e-12);
}

#[test]
fn adam_first_step_is_lr_times_sign_and_adamw_decays() {
    let mut opt = Adam::new(AdamConfig {
        lr: 0.01,
        ..Default::default()
    });
    let w = quadratic_steps(&mut opt, &[2.0, -3.0], 1);
    assert!(
        (w[0] - 1.99).abs() < 1e-9 && (w[1] + 2.99).abs() < 1e-9,
        "{w:?}"
    );
    let mut adamw = Adam::new(AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        decoupled: true,
        ..Default::default()
    });
    let w = quadratic_steps(&mut adamw, &[2.0], 1);
    assert!(
        (w[0] - (2.0 - 0.01 - 0.01 * 0.1 * 2.0)).abs() < 1e-9,
        "{w:?}"
    );
}

#[test]
fn both_drive_a_quadratic_towards_zero() {
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        ..Default::default()
    });
    let mut adam = Adam::new(AdamConfig {
        lr: 0.1,
        ..Default::default()
    });
    for opt in [&mut sgd as &mut dyn Optimizer<f64>, &mut adam] {
        let w = quadratic_steps(opt, &[1.0, -2.0, 0.5], 200);
        assert!(w.iter().all(|x| x.abs() < 0.05), "{w:?}");
    }
}
