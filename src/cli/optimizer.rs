//! Building the optimizer named on the command line from its flags. Every default comes from
//! the library (`SgdConfig`, `AdamConfig`, `NgConfig`, `default_lambda`), so `tekfac train` and
//! a library user get the same optimizer from the same settings.

use super::args::{
    DampingRuleName, DenseInCnnName, FisherName, ModelName, OptimizerName, TrainArgs,
};
use tekfac::FisherType;
use tekfac::curvature::WarmStart;
use tekfac::optim::{
    Adam, AdamConfig, DampingPolicy, DampingRule, DenseInCnn, NaturalGradient, NgConfig, Optimizer,
    Sgd, SgdConfig, Variant, default_lambda,
};
use tekfac::{ParamStore, Result};

/// Default learning rate of each optimizer when `--lr` is absent: the library's.
pub fn default_lr(name: OptimizerName) -> f64 {
    match name {
        OptimizerName::Sgd => SgdConfig::default().lr,
        OptimizerName::Adam => AdamConfig::default().lr,
        _ => NgConfig::DEFAULT.lr,
    }
}

/// The curvature variant of a natural-gradient optimizer name (`None` for SGD and Adam).
fn variant(name: OptimizerName) -> Option<Variant> {
    match name {
        OptimizerName::Sgd | OptimizerName::Adam => None,
        OptimizerName::Kfac => Some(Variant::Kfac),
        OptimizerName::Ekfac => Some(Variant::Ekfac),
        OptimizerName::Tkfac => Some(Variant::Tkfac),
        OptimizerName::Tekfac => Some(Variant::Tekfac),
    }
}

/// The learning rate a run trains with: `--lr`, else the optimizer's default.
pub fn lr(args: &TrainArgs) -> f64 {
    args.lr.unwrap_or_else(|| default_lr(args.optimizer))
}

/// The damping λ a natural-gradient run uses: `--damping`, else the library's tuned default for
/// the variant and model (`None` for SGD and Adam, which have none).
pub fn damping(args: &TrainArgs) -> Option<f64> {
    let variant = variant(args.optimizer)?;
    let has_conv = matches!(args.model, ModelName::Cnn);
    Some(
        args.damping
            .unwrap_or_else(|| default_lambda(variant, has_conv)),
    )
}

/// The Fisher type selected by `--fisher` / `--fisher-samples` (sampling seeded from `--seed`).
pub fn fisher(args: &TrainArgs) -> FisherType {
    match args.fisher {
        FisherName::Empirical => FisherType::Empirical,
        FisherName::Sampled => FisherType::Sampled {
            k: args.fisher_samples.max(1),
            seed: args.seed,
        },
        FisherName::Exact => FisherType::Exact,
    }
}

/// The optimizer with every hyperparameter taken from the flags.
pub fn build(args: &TrainArgs, params: &ParamStore<f32>) -> Result<Box<dyn Optimizer<f32>>> {
    let lr = lr(args);
    let Some(variant) = variant(args.optimizer) else {
        return Ok(first_order(args, lr));
    };
    let config = NgConfig {
        lr,
        damping: DampingPolicy {
            lambda: damping(args),
            conv_floor: args.conv_damping_floor,
            conv_at_least_lambda: args.conv_damping_at_least_lambda,
            dense_in_cnn: match args.dense_in_cnn {
                DenseInCnnName::Fixed => DenseInCnn::Fixed,
                DenseInCnnName::Beta => DenseInCnn::Beta,
                DenseInCnnName::BetaTimesLambda => DenseInCnn::BetaTimesLambda,
            },
            rule: damping_rule(args.damping_rule),
        },
        momentum: args.momentum,
        decay: args.ema_decay,
        stats_interval: args.stats_interval,
        eigen_interval: args.eigen_interval,
        scale_interval: args.scale_interval,
        kl_clip: args.kl_clip,
        weight_decay: args.weight_decay,
        fisher: fisher(args),
        warm_start: WarmStart {
            enabled: args.warm_refresh,
            ..NgConfig::DEFAULT.warm_start
        },
        ..NgConfig::DEFAULT
    };
    Ok(Box::new(NaturalGradient::new(variant, config, params)?))
}

/// SGD or Adam from the flags.
fn first_order(args: &TrainArgs, lr: f64) -> Box<dyn Optimizer<f32>> {
    match args.optimizer {
        OptimizerName::Sgd => {
            let c = SgdConfig {
                lr,
                momentum: args.momentum,
                nesterov: false,
                weight_decay: args.weight_decay,
            };
            Box::new(Sgd::new(c))
        }
        _ => {
            let c = AdamConfig {
                lr,
                weight_decay: args.weight_decay,
                ..Default::default()
            };
            Box::new(Adam::new(c))
        }
    }
}

/// The library's damping rule for `--damping-rule`.
pub fn damping_rule(name: DampingRuleName) -> DampingRule {
    match name {
        DampingRuleName::Own => DampingRule::Own,
        DampingRuleName::Additive => DampingRule::Additive,
        DampingRuleName::FactoredShift => DampingRule::FactoredShift,
    }
}
