//! The tracker of issue 18 (`tekfac::train::track`, `tekfac::curvature::probe`) and the exact
//! natural gradient it is measured against: the exact cases where every step must equal it, the
//! order Lemma 1 imposes on the Fisher errors, and the exact optimizer's step. The command,
//! `tekfac inspect --steps N --every K`, is tested in `tests/cli_inspect.rs`.

mod support;

use support::nets::{Net, conv_net, deep_linear_net, dense_net};
use tekfac::FisherType;
use tekfac::ParamStore;
use tekfac::curvature::Variant;
use tekfac::nn::{Activation, Linear, Sequential};
use tekfac::optim::{DampingPolicy, DampingRule};
use tekfac::train::track::{Method, TrackRow, probe_pass};

/// Every fitted method's rows of one probe of `net` on `n` examples.
fn probe(net: &Net, n: usize, fisher: FisherType, rule: DampingRule) -> Vec<TrackRow> {
    let pass = net.pass(&net.input(n, 5), fisher);
    let policy = DampingPolicy {
        rule,
        ..DampingPolicy::with_lambda(0.1)
    };
    probe_pass(&net.ps, &pass, &policy, None, 0).unwrap()
}

#[test]
fn the_probe_refuses_a_policy_without_a_fixed_lambda() {
    let net = dense_net(3);
    let pass = net.pass(&net.input(4, 5), FisherType::Exact);
    let err = probe_pass(&net.ps, &pass, &DampingPolicy::DEFAULT, None, 0).unwrap_err();
    assert!(err.to_string().contains("fixed λ"), "{err}");
}

fn fitted(rows: &[TrackRow], v: Variant) -> impl Iterator<Item = &TrackRow> {
    rows.iter().filter(move |r| r.method == Method::Fitted(v))
}

#[test]
fn batch_of_one_every_method_steps_exactly() {
    for fisher in [FisherType::Exact, FisherType::Empirical] {
        let rows = probe(&dense_net(3), 1, fisher, DampingRule::Additive);
        assert_eq!(rows.len(), 2 * 4, "two layers, four methods");
        for r in &rows {
            let a = &r.agreement;
            let what = format!("{fisher:?} {} {}: {a:?}", r.layer, r.method.name());
            assert!(a.fisher_error < 1e-10, "{what}");
            assert!(1.0 - a.update_cosine < 1e-12, "{what}");
            assert!(a.update_error < 1e-10, "{what}");
        }
    }
    // Negative control: the same F̂ = F, but K-FAC's and TKFAC's own (factored) damping is not
    // F + λI, so their step differs from u* while EKFAC's and TEKFAC's (additive) does not.
    let rows = probe(&dense_net(3), 1, FisherType::Exact, DampingRule::Own);
    for r in &rows {
        let additive = matches!(r.method, Method::Fitted(Variant::Ekfac | Variant::Tekfac));
        assert_eq!(r.agreement.update_error < 1e-10, additive, "{r:?}");
    }
}

#[test]
fn deep_linear_mse_kfac_and_tkfac_step_exactly() {
    // Identity 12: g does not depend on the example, so F = G ⊗ A for any batch.
    let rows = probe(
        &deep_linear_net(4),
        6,
        FisherType::Exact,
        DampingRule::Additive,
    );
    assert_eq!(rows.len(), 3 * 4);
    for v in [Variant::Kfac, Variant::Tkfac] {
        for r in fitted(&rows, v) {
            assert!(r.agreement.update_error < 1e-9, "{r:?}");
            assert!(r.agreement.fisher_error < 1e-9, "{r:?}");
        }
    }
    // Negative control: with tanh between the layers g depends on the example.
    let rows = probe(&dense_net(4), 6, FisherType::Exact, DampingRule::Additive);
    let worst = fitted(&rows, Variant::Kfac)
        .map(|r| r.agreement.update_error)
        .fold(0.0, f64::max);
    assert!(
        worst > 1e-3,
        "K-FAC is not exact on a non-linear net: {worst}"
    );
}

#[test]
fn corrected_methods_fit_f_at_least_as_well_on_real_layers() {
    for (name, net, n) in [("dense", dense_net(5), 7), ("conv", conv_net(6), 4)] {
        for fisher in [FisherType::Exact, FisherType::Empirical] {
            let rows = probe(&net, n, fisher, DampingRule::Own);
            for (plain, corrected) in [
                (Variant::Kfac, Variant::Ekfac),
                (Variant::Tkfac, Variant::Tekfac),
            ] {
                for (p, c) in fitted(&rows, plain).zip(fitted(&rows, corrected)) {
                    assert_eq!(p.layer, c.layer);
                    let (p, c) = (p.agreement.fisher_error, c.agreement.fisher_error);
                    assert!(
                        c <= p * (1.0 + 1e-12),
                        "{name} {fisher:?} {plain}: {c} > {p}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_exact_step_is_a_dense_solve() {
    // u* from probe::exact_natural_gradient against an independent LU solve of (F + λI) u = ∇.
    let mut ps = ParamStore::<f64>::seeded(9);
    let model = Sequential::new()
        .push(Linear::new(&mut ps, "fc", 3, 2, true).unwrap())
        .push(Activation::Tanh);
    let net = Net {
        ps,
        model,
        example: vec![3],
        outputs: 2,
        loss: support::nets::Loss::Mse,
    };
    let pass = net.pass(&net.input(4, 1), FisherType::Exact);
    let f = tekfac::curvature::exact::exact_fisher(&pass.captures[0]).unwrap();
    let g =
        tekfac::train::track::layer_gradient(&net.ps.layers()[0], &net.ps, &pass.grads).unwrap();
    let u = tekfac::curvature::probe::exact_natural_gradient(&f, &g, 0.3).unwrap();
    let m = &f + nalgebra::DMatrix::identity(f.nrows(), f.ncols()) * 0.3;
    let v = tekfac::curvature::exact::vec_rows(&g);
    let want = m.lu().solve(&v).unwrap();
    let got = tekfac::curvature::exact::vec_rows(&u);
    assert!((got - &want).norm() < 1e-12 * want.norm());
    assert!(tekfac::curvature::probe::exact_natural_gradient(&f, &g, 0.0).is_err());
}

#[test]
fn exact_optimizer_steps_along_the_exact_damped_natural_gradient() {
    use tekfac::optim::Optimizer;
    use tekfac::optim::{ExactConfig, ExactNaturalGradient};
    let mut net = dense_net(8);
    let config = ExactConfig {
        lr: 0.5,
        damping: 0.2,
        momentum: 0.0,
        decay: 0.0,
        stats_interval: 1,
        fisher: FisherType::Empirical,
    };
    let mut opt = ExactNaturalGradient::new(config.clone(), &net.ps).unwrap();
    let before = net.ps.clone();
    let pass = net.pass(&net.input(5, 2), Optimizer::<f64>::fisher(&opt));
    opt.step(&mut net.ps, &pass).unwrap();
    for (l, info) in before.layers().iter().enumerate() {
        let c = pass.captures.iter().find(|c| c.layer.0 == l).unwrap();
        let f = tekfac::curvature::exact::exact_fisher(c).unwrap();
        let g = tekfac::train::track::layer_gradient(info, &before, &pass.grads).unwrap();
        let u = tekfac::curvature::probe::exact_natural_gradient(&f, &g, config.damping).unwrap();
        let moved =
            support::nets::param_block(info, &before) - support::nets::param_block(info, &net.ps);
        let err = (&moved - &u * config.lr).norm() / (u.norm() * config.lr);
        assert!(
            err < 1e-10,
            "{}: ΔW̄ = −η u* (f64 net, f64 step), got {err}",
            info.name
        );
    }
    let mut ps = ParamStore::<f64>::seeded(0);
    Linear::new(&mut ps, "big", 100, 50, true).unwrap();
    assert!(
        ExactNaturalGradient::new(config.clone(), &ps).is_err(),
        "5050² block refused"
    );
    let zero = ExactConfig {
        damping: 0.0,
        ..config
    };
    assert!(
        ExactNaturalGradient::new(zero, &net.ps).is_err(),
        "λ = 0 refused"
    );
}
