//! What `tekfac inspect` trains: the training images average-pooled by [`POOL`] (with the
//! library's `AvgPool2d`), the small f64 nets, and the optimizer named by `--optimizer`.
//!
//! ```text
//! images [N, 1, rows, cols] ─ AvgPool2d(4) ─▶ [N, 1, rows/4, cols/4]      (28×28 → 7×7 = 49)
//!   mlp:          flatten, fc1 49→H, ReLU, fc2 H→classes
//!   conv:         conv1 3×3 1→4 (valid, 7×7 → 5×5), ReLU, flatten 100, fc1 100→classes
//!   autoencoder:  flatten, 49→H→H/2→4→H/2→H→49, sigmoid hidden units, linear code, BCE logits
//! ```

use super::super::args::{FisherName, InspectArgs, InspectModel, InspectOptimizer, OptimizerName};
use super::super::optimizer::{damping_rule, default_lr};
use tekfac::dataset::{self, DataSource, Dataset, Split};
use tekfac::nn::{Activation, AvgPool2d, Conv2d, Linear, Module, Sequential};
use tekfac::optim::{
    Adam, AdamConfig, DampingPolicy, ExactConfig, ExactNaturalGradient, NaturalGradient, NgConfig,
    Optimizer, Sgd, SgdConfig, Variant, default_lambda,
};
use tekfac::train::Task;
use tekfac::{Error, FisherType, ParamStore, Result, Tape, Tensor};

/// The side of the pooling window: 28×28 images become 7×7.
pub const POOL: usize = 4;

/// The training split, pooled: images `[N, 1, rows/POOL, cols/POOL]` in f64, and labels.
pub struct Pooled {
    /// Pooled images, one after the other.
    pub images: Vec<f64>,
    /// Labels, one per image.
    pub labels: Vec<usize>,
    /// `(rows, cols)` of a pooled image.
    pub side: (usize, usize),
    /// Number of classes.
    pub classes: usize,
}

impl Pooled {
    /// Values per pooled image.
    pub fn pixels(&self) -> usize {
        self.side.0 * self.side.1
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The images at `indices` as `[B, 1, rows, cols]`, with their labels.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor<f64>, Vec<usize>)> {
        let p = self.pixels();
        let data = indices
            .iter()
            .flat_map(|&i| self.images[i * p..(i + 1) * p].iter().copied())
            .collect();
        let x = Tensor::from_vec(data, &[indices.len(), 1, self.side.0, self.side.1])?;
        Ok((x, indices.iter().map(|&i| self.labels[i]).collect()))
    }
}

/// Loads `--dataset`'s training split and average-pools it by [`POOL`].
pub fn load(a: &InspectArgs) -> Result<Pooled> {
    let source = DataSource {
        dir: a.data_dir.clone(),
        classes: a.classes,
        ..DataSource::default()
    };
    let data = dataset::load(&a.dataset, Split::Train, &source)?;
    if data.rows() % POOL != 0 || data.cols() % POOL != 0 || data.rows() < 3 * POOL {
        return Err(Error::Data(format!(
            "inspect pools {POOL}×{POOL}: {} has {}×{} images (need multiples of {POOL}, ≥ {})",
            a.dataset,
            data.rows(),
            data.cols(),
            3 * POOL
        )));
    }
    pool(&data)
}

/// Every image of `data` through `AvgPool2d(POOL)`, a chunk at a time on a no-grad tape.
fn pool(data: &Dataset) -> Result<Pooled> {
    let (none, pool) = (ParamStore::<f32>::seeded(0), AvgPool2d::new(POOL));
    let mut images = Vec::new();
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(4096) {
        let batch = data.batch(chunk)?;
        let mut tape = Tape::no_grad(&none);
        let x = tape.input(batch.images);
        let y = pool.forward(&mut tape, x)?;
        images.extend(tape.value(y).data().iter().map(|&v| v as f64));
    }
    Ok(Pooled {
        images,
        labels: data.labels().iter().map(|&l| l as usize).collect(),
        side: (data.rows() / POOL, data.cols() / POOL),
        classes: data.classes(),
    })
}

/// The small net of `--model` for pooled images of `side`, its task and a one-line description.
pub fn build(
    a: &InspectArgs,
    ps: &mut ParamStore<f64>,
    data: &Pooled,
) -> Result<(Sequential<f64>, Task, String)> {
    let (inputs, h, classes) = (data.pixels(), a.hidden, data.classes);
    let net = Sequential::new().push(Activation::Flatten);
    Ok(match a.model {
        InspectModel::Mlp => (
            net.push(Linear::new(ps, "fc1", inputs, h, true)?)
                .push(Activation::Relu)
                .push(Linear::new(ps, "fc2", h, classes, true)?),
            Task::Classify,
            format!("MLP {inputs}-{h}-{classes}"),
        ),
        InspectModel::Conv => {
            let (r, c) = (data.side.0 - 2, data.side.1 - 2);
            let conv = Conv2d::new(ps, "conv1", 1, 4, (3, 3), (1, 1), (0, 0), true)?;
            let net = Sequential::new()
                .push(conv)
                .push(Activation::Relu)
                .push(Activation::Flatten)
                .push(Linear::new(ps, "fc1", 4 * r * c, classes, true)?);
            let what = format!("conv 3×3 1→4, ReLU, dense {}→{classes}", 4 * r * c);
            (net, Task::Classify, what)
        }
        InspectModel::Autoencoder => {
            let sizes = [inputs, h, h.div_ceil(2), 4, h.div_ceil(2), h, inputs];
            let mut net = net;
            for (i, w) in sizes.windows(2).enumerate() {
                if i > 0 && i != 3 {
                    net = net.push(Activation::Sigmoid); // the code layer's output stays linear
                }
                net = net.push(Linear::new(ps, &format!("fc{}", i + 1), w[0], w[1], true)?);
            }
            let what = sizes.map(|s| s.to_string()).join("-");
            (net, Task::Autoencode, format!("autoencoder {what}"))
        }
    })
}

/// `--lr`, else `tekfac train`'s default for the optimizer (TEKFAC's for exact).
pub fn lr(a: &InspectArgs) -> f64 {
    let name = a.optimizer.trained().unwrap_or(OptimizerName::Tekfac);
    a.lr.unwrap_or_else(|| default_lr(name))
}

/// `--damping`, else the library's tuned default (`default_lambda`, as for `tekfac train`);
/// TEKFAC's (additive) for exact, and for SGD and Adam, which have none and use it only for u*.
pub fn damping(a: &InspectArgs) -> f64 {
    let variant = match a.optimizer {
        InspectOptimizer::Kfac => Variant::Kfac,
        InspectOptimizer::Ekfac => Variant::Ekfac,
        InspectOptimizer::Tkfac => Variant::Tkfac,
        _ => Variant::Tekfac,
    };
    let has_conv = matches!(a.model, InspectModel::Conv);
    a.damping
        .unwrap_or_else(|| default_lambda(variant, has_conv))
}

/// The damping policy of the run and of every probe: λ of [`damping`] for every block, in the
/// mode of `--damping-rule`.
pub fn policy(a: &InspectArgs) -> DampingPolicy {
    DampingPolicy {
        rule: damping_rule(a.damping_rule),
        ..DampingPolicy::with_lambda(damping(a))
    }
}

/// The Fisher type of the optimizer's statistics (`--fisher`, `--fisher-samples`).
fn fisher(a: &InspectArgs) -> FisherType {
    match a.fisher {
        FisherName::Empirical => FisherType::Empirical,
        FisherName::Exact => FisherType::Exact,
        FisherName::Sampled => FisherType::Sampled {
            k: a.fisher_samples,
            seed: a.seed,
        },
    }
}

/// The optimizer that trains the net; a natural-gradient one is kept by type for `running`.
pub enum Trainer {
    /// K-FAC, EKFAC, TKFAC or TEKFAC.
    Natural(Box<NaturalGradient<f64>>),
    /// SGD, Adam or the exact natural gradient.
    Other(Box<dyn Optimizer<f64>>),
}

impl Trainer {
    /// The optimizer of `--optimizer` with its flags.
    pub fn new(a: &InspectArgs, params: &ParamStore<f64>) -> Result<Self> {
        let variant = match a.optimizer {
            InspectOptimizer::Sgd => {
                let c = SgdConfig {
                    lr: lr(a),
                    momentum: a.momentum,
                    ..Default::default()
                };
                return Ok(Trainer::Other(Box::new(Sgd::<f64>::new(c))));
            }
            InspectOptimizer::Adam => {
                let c = AdamConfig {
                    lr: lr(a),
                    ..Default::default()
                };
                return Ok(Trainer::Other(Box::new(Adam::<f64>::new(c))));
            }
            InspectOptimizer::Exact => {
                let c = ExactConfig {
                    lr: lr(a),
                    damping: damping(a),
                    momentum: a.momentum,
                    decay: a.ema_decay,
                    stats_interval: a.stats_interval,
                    fisher: fisher(a),
                };
                let exact = ExactNaturalGradient::new(c, params)?;
                return Ok(Trainer::Other(Box::new(exact)));
            }
            InspectOptimizer::Kfac => Variant::Kfac,
            InspectOptimizer::Ekfac => Variant::Ekfac,
            InspectOptimizer::Tkfac => Variant::Tkfac,
            InspectOptimizer::Tekfac => Variant::Tekfac,
        };
        let config = NgConfig {
            lr: lr(a),
            damping: policy(a),
            momentum: a.momentum,
            decay: a.ema_decay,
            stats_interval: a.stats_interval,
            eigen_interval: a.eigen_interval,
            scale_interval: a.scale_interval,
            fisher: fisher(a),
            ..NgConfig::DEFAULT
        };
        let ng = NaturalGradient::new(variant, config, params)?;
        Ok(Trainer::Natural(Box::new(ng)))
    }

    /// The optimizer, to step with.
    pub fn optimizer(&mut self) -> &mut dyn Optimizer<f64> {
        match self {
            Trainer::Natural(ng) => ng.as_mut(),
            Trainer::Other(o) => o.as_mut(),
        }
    }

    /// The natural-gradient optimizer whose curvature is the `running` method, if any.
    pub fn running(&self) -> Option<&NaturalGradient<f64>> {
        match self {
            Trainer::Natural(ng) => Some(ng),
            Trainer::Other(_) => None,
        }
    }
}
