//! TEKFAC's conv damping (Eq. 3.5) and the project's floor at the dense λ: the rule on a real
//! conv block, and TEKFAC on the CNN preset training with the CLI's defaults (the literal rule
//! diverged there within 6 steps; docs/math.md, `src/curvature/damping.rs`).

mod support;

use support::nets::*;
use tekfac::curvature::{Damping, Variant};
use tekfac::dataset::{self, DataSource, LastBatch, Split};
use tekfac::nn::Cnn;
use tekfac::optim::{DampingPolicy, DampingRule, DenseInCnn, NaturalGradient, NgConfig};
use tekfac::train::{Task, train_step};
use tekfac::{FisherType, ParamStore};

#[test]
fn conv_damping_is_the_mean_eigenvalue_floored_at_lambda() {
    let net = conv_net(21);
    let cases = cases_of(&net, "conv net", 4, FisherType::Empirical);
    let blocks: Vec<_> = cases
        .iter()
        .map(|c| fit(Variant::Tekfac, &c.info, &c.capture))
        .collect();
    let conv = &blocks[0];
    assert!(conv.is_conv() && !blocks[1].is_conv());
    let (o, i) = conv.dims();
    let mean = conv.eigenvalues().unwrap().sum() / (o * i) as f64;
    assert!(mean > 0.0);
    let lambda_of = |policy: &DampingPolicy| -> Vec<f64> {
        policy
            .per_block(Variant::Tekfac, &blocks)
            .iter()
            .map(Damping::lambda)
            .collect()
    };
    // λ below the mean eigenvalue: both rules give Eq. 3.5's mean(Θ).
    let low = DampingPolicy {
        lambda: Some(mean / 10.0),
        conv_floor: 0.0,
        conv_at_least_lambda: true,
        dense_in_cnn: DenseInCnn::Fixed,
        rule: DampingRule::Own,
    };
    let literal = DampingPolicy {
        conv_at_least_lambda: false,
        ..low
    };
    assert_eq!(lambda_of(&low), vec![mean, mean / 10.0]);
    assert_eq!(lambda_of(&literal), vec![mean, mean / 10.0]);
    // λ above it: the floor takes over, the literal rule keeps mean(Θ).
    let high = DampingPolicy {
        lambda: Some(mean * 10.0),
        ..low
    };
    let high_literal = DampingPolicy {
        conv_at_least_lambda: false,
        ..high
    };
    assert_eq!(lambda_of(&high), vec![mean * 10.0, mean * 10.0]);
    assert_eq!(lambda_of(&high_literal), vec![mean, mean * 10.0]);
    // ϑ still floors the trace: max(ΣΘ, ϑ)/dim Θ.
    let theta = DampingPolicy {
        conv_floor: mean * (o * i) as f64 * 3.0,
        ..literal
    };
    let got = lambda_of(&theta)[0];
    assert!(
        (got - 3.0 * mean).abs() <= 1e-12 * mean,
        "{got} vs {}",
        3.0 * mean
    );
    // β: dense layers of a CNN take the (floored) conv λ.
    let beta = DampingPolicy {
        dense_in_cnn: DenseInCnn::Beta,
        ..high
    };
    assert_eq!(lambda_of(&beta)[1], mean * 10.0);
}

#[test]
fn tekfac_trains_the_cnn_preset_with_the_cli_defaults() {
    // The CLI's TEKFAC defaults: lr 0.01, momentum 0.9, λ 0.1, sampled Fisher, intervals
    // 10/100/10. 12 steps of batch 64 on the embedded Fashion-MNIST subset.
    let data = dataset::load("fashion-mnist-mini", Split::Train, &DataSource::default())
        .unwrap()
        .take(768);
    let mut ps = ParamStore::<f32>::seeded(0);
    let model = Cnn::new(&mut ps, 10).unwrap();
    let config = NgConfig::default();
    assert_eq!((config.lr, config.damping.lambda), (0.01, None));
    let mut opt = NaturalGradient::new(Variant::Tekfac, config, &ps).unwrap();
    let mut losses = Vec::new();
    for (step, b) in data.batches(64, 0, 0, LastBatch::Drop).unwrap().enumerate() {
        let s = train_step(
            &model,
            Task::Classify,
            &mut ps,
            &mut opt,
            b.images,
            &b.labels,
            step as u64,
        )
        .unwrap_or_else(|e| panic!("step {step}: {e}"));
        losses.push(s.loss);
    }
    eprintln!("losses {losses:?}");
    assert_eq!(losses.len(), 12);
    let first: f64 = losses[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = losses[9..].iter().sum::<f64>() / 3.0;
    assert!(last < 0.9 * first, "loss {first:.3} → {last:.3}");
}
