//! Building the optimizer named on the command line from its flags.

use super::args::{DenseInCnnName, FisherName, ModelName, OptimizerName, TrainArgs};
use tekfac::FisherType;
use tekfac::optim::{
    Adam, AdamConfig, DenseInCnn, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig, Variant,
};
use tekfac::{ParamStore, Result};

/// Default learning rate of each optimizer when `--lr` is absent.
pub fn default_lr(name: OptimizerName) -> f64 {
    match name {
        OptimizerName::Sgd => 0.05,
        OptimizerName::Adam => 1e-3,
        _ => 0.01,
    }
}

/// Default damping λ of each natural-gradient optimizer when `--damping` is absent, tuned on
/// the embedded Fashion-MNIST subset (docs/RESULTS.md): the spec's 1e-3 diverges within the
/// first ten steps there, while the factors still come from a single batch. K-FAC and TKFAC
/// take 0.03 on the MLP but 0.1 on the CNN, where 0.03 diverged by step 23 (their factored
/// damping splits √λ over conv factors of very different scales).
pub fn default_damping(name: OptimizerName, model: ModelName) -> f64 {
    match (name, model) {
        (OptimizerName::Kfac | OptimizerName::Tkfac, ModelName::Cnn) => 0.1,
        (OptimizerName::Kfac | OptimizerName::Tkfac, _) => 0.03,
        _ => 0.1,
    }
}

/// The learning rate a run trains with: `--lr`, else the optimizer's default.
pub fn lr(args: &TrainArgs) -> f64 {
    args.lr.unwrap_or_else(|| default_lr(args.optimizer))
}

/// The damping λ a natural-gradient run uses: `--damping`, else the default for the optimizer
/// and model (`None` for SGD and Adam, which have none).
pub fn damping(args: &TrainArgs) -> Option<f64> {
    let natural = !matches!(args.optimizer, OptimizerName::Sgd | OptimizerName::Adam);
    natural.then(|| ng_damping(args))
}

/// `--damping`, else the default for the optimizer and model.
fn ng_damping(args: &TrainArgs) -> f64 {
    args.damping
        .unwrap_or_else(|| default_damping(args.optimizer, args.model))
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
    let variant = match args.optimizer {
        OptimizerName::Sgd => {
            let c = SgdConfig {
                lr,
                momentum: args.momentum,
                nesterov: false,
                weight_decay: args.weight_decay,
            };
            return Ok(Box::new(Sgd::new(c)));
        }
        OptimizerName::Adam => {
            let c = AdamConfig {
                lr,
                weight_decay: args.weight_decay,
                ..Default::default()
            };
            return Ok(Box::new(Adam::new(c)));
        }
        OptimizerName::Kfac => Variant::Kfac,
        OptimizerName::Ekfac => Variant::Ekfac,
        OptimizerName::Tkfac => Variant::Tkfac,
        OptimizerName::Tekfac => Variant::Tekfac,
    };
    let config = NgConfig {
        lr,
        damping: ng_damping(args),
        momentum: args.momentum,
        decay: args.ema_decay,
        stats_interval: args.stats_interval,
        eigen_interval: args.eigen_interval,
        scale_interval: args.scale_interval,
        kl_clip: args.kl_clip,
        weight_decay: args.weight_decay,
        fisher: fisher(args),
        conv_damping_floor: args.conv_damping_floor,
        conv_damping_at_least_lambda: args.conv_damping_at_least_lambda,
        dense_in_cnn: match args.dense_in_cnn {
            DenseInCnnName::Fixed => DenseInCnn::Fixed,
            DenseInCnnName::Beta => DenseInCnn::Beta,
            DenseInCnnName::BetaTimesLambda => DenseInCnn::BetaTimesLambda,
        },
        low_rank: true,
    };
    Ok(Box::new(NaturalGradient::new(variant, config, params)?))
}
