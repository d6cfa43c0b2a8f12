//! Command-line arguments of `tekfac` (clap derive). Every hyperparameter of the optimizers is a
//! flag; defaults are the library's own (`NgConfig::DEFAULT`, `SgdConfig`, `AdamConfig`,
//! `default_lambda`), documented in docs/math.md.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tekfac::optim::{DampingPolicy, NgConfig};
use tekfac::train::RunDefaults;

/// Second-order optimisation (K-FAC, EKFAC, TKFAC, TEKFAC) from scratch, on real data.
#[derive(Parser, Debug)]
#[command(name = "tekfac", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: `train` with its defaults).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model and write metrics, charts and checkpoints to a run directory.
    ///
    /// Example: tekfac train --dataset fashion-mnist --model cnn --optimizer tekfac --epochs 5
    // NOTE: negative numbers are values, so `--lr -0.1` reaches the range check's message.
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Evaluate a run's checkpoint: loss and accuracy on a split.
    ///
    /// Example: tekfac eval --run runs/latest --split test
    Eval(EvalArgs),
    /// Download MNIST or Fashion-MNIST into ./data/<name>/ (checksums verified).
    ///
    /// Example: tekfac download fashion-mnist
    Download(DownloadArgs),
    /// Train with several optimizers (same model, data, seed); write a results table and charts.
    ///
    /// Writes results.md, results.csv and charts (training loss and test accuracy against
    /// epochs and against seconds, SVG and PNG) into --out. Every training flag applies to every
    /// run; learning rate and damping default per optimizer. Each run keeps its own directory
    /// <out>/<optimizer>/.
    ///
    /// Example: tekfac compare --epochs 5 --optimizers sgd,adam,kfac,tekfac --out runs/compare
    #[command(
        allow_negative_numbers = true,
        mut_arg("out", |a| a.default_value("runs/compare")
            .help("Directory for results.md, results.csv, the charts and one run directory per optimizer")),
        mut_arg("optimizer", |a| a.hide(true)),
        mut_arg("resume", |a| a.hide(true)),
    )]
    Compare(Box<CompareArgs>),
    /// Exact Fisher blocks and natural-gradient steps vs. K-FAC, EKFAC, TKFAC, TEKFAC on a
    /// small net, tracked while it trains.
    ///
    /// Trains a small net (MLP, conv or autoencoder on 4×4-pooled images, f64) with --optimizer
    /// for --steps steps. At step 0, every --every steps and after the last, it takes the fixed
    /// probe batch and, per layer, the exact Fisher block F of that batch, its gradient ∇ and
    /// u* = (F + λI)⁻¹∇, the exact damped natural gradient. Each of the four approximations is
    /// fitted to the probe batch alone (decay 0, fresh eigenbasis) and takes its damped step û
    /// for ∇ with its own damping rule; `running` is the optimizer's own curvature as it stands
    /// (running averages, the basis of its last refresh) with its own damping. Per layer and
    /// method, track.csv (step,layer,method,fisher_error,update_cosine,update_error,
    /// length_ratio) holds:
    ///
    ///   fisher_error  = ‖F − F̂‖/‖F‖ (Frobenius): how close the matrix is; EKFAC ≤ K-FAC and
    ///                   TEKFAC ≤ TKFAC at every probe (Lemma 1);
    ///   update_cosine = cos(û, u*): 1 when the step points the exact way;
    ///   update_error  = ‖û − u*‖/‖u*‖: 0 when direction and length are both exact;
    ///   length_ratio  = ‖û‖/‖u*‖: above 1 the step is longer than the exact one.
    ///
    /// loss.csv holds the mean training loss between probes and the probe batch's loss. Charts
    /// (SVG, PNG) of each measure against step, one per layer, one line per method; the last
    /// probe's table is printed, with one heatmap PNG per layer (F and the four F̂).
    ///
    /// Example: tekfac inspect --optimizer ekfac --steps 500 --every 25 --out runs/track
    #[command(allow_negative_numbers = true)]
    Inspect(InspectArgs),
}

/// Arguments of `tekfac compare`: the training flags, shared by every run, plus the list.
#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Training flags shared by all runs (`--optimizer` and `--resume` are not used).
    #[command(flatten)]
    pub train: TrainArgs,
    /// Optimizers to compare, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sgd,adam,kfac,ekfac,tkfac,tekfac"
    )]
    pub optimizers: Vec<OptimizerName>,
    /// Test accuracy whose first epoch and time the table reports.
    #[arg(long, default_value_t = 0.85)]
    pub target_accuracy: f64,
    /// Learning rate of one optimizer, overriding --lr for it: `OPT=LR`, comma-separated
    /// (e.g. `--lr-for sgd=0.1,adam=3e-4`).
    #[arg(long, value_delimiter = ',', value_parser = per_optimizer, value_name = "OPT=LR")]
    pub lr_for: Vec<(OptimizerName, f64)>,
    /// Damping λ of one natural-gradient optimizer, overriding --damping for it: `OPT=λ`,
    /// comma-separated (e.g. `--damping-for kfac=0.01,tekfac=0.3`).
    #[arg(long, value_delimiter = ',', value_parser = per_optimizer, value_name = "OPT=λ")]
    pub damping_for: Vec<(OptimizerName, f64)>,
    /// Damping rule of one natural-gradient optimizer, overriding --damping-rule for it:
    /// `OPT=RULE`, comma-separated (e.g. `--damping-rule-for ekfac=factored-shift`).
    #[arg(long, value_delimiter = ',', value_parser = per_optimizer_rule, value_name = "OPT=RULE")]
    pub damping_rule_for: Vec<(OptimizerName, DampingRuleName)>,
}

impl CompareArgs {
    /// The training flags of one optimizer's run: --lr-for / --damping-for /
    /// --damping-rule-for override --lr / --damping / --damping-rule for it (the last entry
    /// wins when an optimizer is listed twice).
    pub fn train_args(&self, optimizer: OptimizerName) -> TrainArgs {
        let pick = |list: &[(OptimizerName, f64)], fallback: Option<f64>| {
            list.iter()
                .rev()
                .find(|(o, _)| *o == optimizer)
                .map(|p| p.1)
                .or(fallback)
        };
        TrainArgs {
            optimizer,
            lr: pick(&self.lr_for, self.train.lr),
            damping: pick(&self.damping_for, self.train.damping),
            damping_rule: self
                .damping_rule_for
                .iter()
                .rev()
                .find(|(o, _)| *o == optimizer)
                .map_or(self.train.damping_rule, |p| p.1),
            out: self.train.out.join(optimizer.name()),
            ..self.train.clone()
        }
    }
}

/// Parses `OPT=VALUE` (an optimizer name and a positive, finite number).
fn per_optimizer(s: &str) -> Result<(OptimizerName, f64), String> {
    let (optimizer, value) = optimizer_and_value(s, "sgd=0.1")?;
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{value}` must be positive and finite"));
    }
    Ok((optimizer, v))
}

/// Parses `OPT=RULE` (an optimizer name and a `--damping-rule` value).
fn per_optimizer_rule(s: &str) -> Result<(OptimizerName, DampingRuleName), String> {
    let (optimizer, value) = optimizer_and_value(s, "ekfac=factored-shift")?;
    let rule = DampingRuleName::from_str(value.trim(), true)
        .map_err(|_| format!("`{value}` is not a damping rule (own, additive, factored-shift)"))?;
    Ok((optimizer, rule))
}

/// Splits `OPT=VALUE` and parses the optimizer name (`example` in the message when malformed).
fn optimizer_and_value<'a>(s: &'a str, example: &str) -> Result<(OptimizerName, &'a str), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not OPT=VALUE (e.g. {example})"))?;
    let optimizer = OptimizerName::from_str(name.trim(), true).map_err(|_| {
        format!("`{name}` is not an optimizer (sgd, adam, kfac, ekfac, tkfac, tekfac)")
    })?;
    Ok((optimizer, value))
}

/// Arguments of `tekfac inspect`.
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// Dataset (as for `tekfac train`); images are average-pooled 4×4 (28×28 → 7×7 = 49 inputs).
    #[arg(long, default_value = "fashion-mnist-mini")]
    pub dataset: String,
    /// Directory holding the dataset's IDX files (searched first).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of classes of idx: data (as for `tekfac train`).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Small net: mlp (49-H-10), conv (conv 3×3 1→4, ReLU, dense 100→10) or autoencoder
    /// (49-H-H/2-4-H/2-H-49, sigmoid, linear code, BCE against the pooled pixels).
    #[arg(long, value_enum, default_value = "mlp")]
    pub model: InspectModel,
    /// Hidden width H of the mlp and autoencoder (1–64; the MLP's blocks are H·50 and 10·(H+1)
    /// square).
    #[arg(long, default_value_t = 16)]
    pub hidden: usize,
    /// Optimizer that trains the net between probes (exact: block-diagonal natural gradient
    /// with each layer's exact Fisher block, the reference the others approximate).
    #[arg(long, value_enum, default_value = "tekfac")]
    pub optimizer: InspectOptimizer,
    /// Training steps (0: probe the initial weights only).
    #[arg(long, default_value_t = 0)]
    pub steps: u64,
    /// Probe every K steps (and after the last step).
    #[arg(long, default_value_t = 20)]
    pub every: u64,
    /// Training mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Examples in the fixed probe batch (the first N of the training split), on which F, ∇
    /// and the fitted approximations are computed.
    #[arg(long, default_value_t = 64)]
    pub probe_size: usize,
    /// The probe's Fisher F: exact (type-2, the expectation over the model's labels) or
    /// empirical (the probe batch's labels).
    #[arg(long, value_enum, default_value = "exact")]
    pub probe_fisher: ProbeFisherName,
    /// Learning rate (default as for `tekfac train`: 0.05 sgd, 1e-3 adam, 0.01 the others).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Damping λ: the optimizer's, and the λ of u* = (F + λI)⁻¹∇ (default as for `tekfac
    /// train`: 0.03 kfac/tkfac, 0.1 the others, and 0.1 on conv).
    #[arg(long)]
    pub damping: Option<f64>,
    /// How λ enters each approximation: each method's own rule, additive for all, or K-FAC's
    /// factored shift for all (as `tekfac train --damping-rule`).
    #[arg(long, value_enum, default_value = "own")]
    pub damping_rule: DampingRuleName,
    /// Fisher type of the optimizer's statistics.
    #[arg(long, value_enum, default_value = "sampled")]
    pub fisher: FisherName,
    /// Labels sampled per example for --fisher sampled (1–100).
    #[arg(long, default_value_t = 1)]
    pub fisher_samples: usize,
    /// Update curvature statistics every N steps.
    #[arg(long, default_value_t = 10)]
    pub stats_interval: u64,
    /// Recompute eigenbases every N steps.
    #[arg(long, default_value_t = 100)]
    pub eigen_interval: u64,
    /// Re-estimate s* / Θ every N steps.
    #[arg(long, default_value_t = 10)]
    pub scale_interval: u64,
    /// EMA decay ρ of the running averages, in [0, 1).
    #[arg(long, default_value_t = 0.95)]
    pub ema_decay: f64,
    /// Seed of the initial weights, the batch order and the label sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory for track.csv, loss.csv, the charts and the heatmaps.
    #[arg(long, default_value = "runs/inspect")]
    pub out: PathBuf,
}

/// Optimizers of `tekfac inspect`: those of `tekfac train`, and the exact natural gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InspectOptimizer {
    /// SGD with momentum.
    Sgd,
    /// Adam.
    Adam,
    /// K-FAC.
    Kfac,
    /// EKFAC.
    Ekfac,
    /// TKFAC.
    Tkfac,
    /// TEKFAC.
    Tekfac,
    /// (F + λI)⁻¹∇ with each layer's exact Fisher block F (running average), small nets only.
    Exact,
}

impl InspectOptimizer {
    /// The optimizer of `tekfac train` with the same name (`None` for exact).
    pub fn trained(self) -> Option<OptimizerName> {
        Some(match self {
            InspectOptimizer::Sgd => OptimizerName::Sgd,
            InspectOptimizer::Adam => OptimizerName::Adam,
            InspectOptimizer::Kfac => OptimizerName::Kfac,
            InspectOptimizer::Ekfac => OptimizerName::Ekfac,
            InspectOptimizer::Tkfac => OptimizerName::Tkfac,
            InspectOptimizer::Tekfac => OptimizerName::Tekfac,
            InspectOptimizer::Exact => return None,
        })
    }
}

/// The Fisher a probe measures against (`--probe-fisher`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeFisherName {
    /// Type-2: one backpropagated vector per output, the exact expectation over the labels.
    Exact,
    /// The probe batch's own labels.
    Empirical,
}

/// The small nets of `tekfac inspect` (every Fisher block at most a few thousand square).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InspectModel {
    /// MLP 49-H-10 with ReLU (blocks H·50 and 10·(H+1) square).
    Mlp,
    /// conv 3×3 1→4 (valid, 7×7 → 5×5), ReLU, dense 100→10 (blocks 40 and 1010 square).
    Conv,
    /// Autoencoder 49-H-H/2-4-H/2-H-49, sigmoid hidden units, linear code, BCE on pixels.
    Autoencoder,
}

/// Models with documented presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelName {
    /// MLP 784-512-256-10, ReLU, softmax cross-entropy.
    Mlp,
    /// conv5x5 1→32, ReLU, maxpool2, conv5x5 32→64, ReLU, maxpool2, dense 1024→128, ReLU, dense 128→10.
    Cnn,
    /// MNIST deep autoencoder 784-1000-500-250-30 with mirrored decoder, BCE on pixels.
    Autoencoder,
}

/// Optimizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerName {
    /// SGD with momentum.
    Sgd,
    /// Adam.
    Adam,
    /// K-FAC (Martens & Grosse 2015; KFC for conv).
    Kfac,
    /// EKFAC (George et al. 2018).
    Ekfac,
    /// TKFAC (Gao et al. 2021).
    Tkfac,
    /// TEKFAC (Gao et al., arXiv 2011.13609).
    Tekfac,
}

impl OptimizerName {
    /// The name used on the command line (`sgd`, `tekfac`, ...).
    pub fn name(self) -> &'static str {
        match self {
            OptimizerName::Sgd => "sgd",
            OptimizerName::Adam => "adam",
            OptimizerName::Kfac => "kfac",
            OptimizerName::Ekfac => "ekfac",
            OptimizerName::Tkfac => "tkfac",
            OptimizerName::Tekfac => "tekfac",
        }
    }
}

/// Labels behind the curvature statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FisherName {
    /// Training labels.
    Empirical,
    /// Labels sampled from the model (true Fisher, Monte Carlo; see --fisher-samples).
    Sampled,
    /// One backpropagated vector per output class (type-2 / GGN; small models only).
    Exact,
}

/// How TEKFAC damps the dense layers of a CNN (spec §6.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenseInCnnName {
    /// The fixed --damping, like any dense layer.
    #[default]
    Fixed,
    /// β, the largest damping of the conv layers.
    Beta,
    /// β · --damping.
    BetaTimesLambda,
}

/// The damping mode of every curvature block (`--damping-rule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DampingRuleName {
    /// Each optimizer's own: factored (π) for kfac, TKFAC's normal damping for tkfac, λ added
    /// to s*/Θ for ekfac and tekfac.
    #[default]
    Own,
    /// λ added to the diagonal in the eigenbasis for every optimizer: exactly (F̂ + λI)⁻¹.
    Additive,
    /// K-FAC's factored damping as a shift of any diagonal, D + √λ(π·d_g + d_a/π) + λ
    /// (direction-dependent; for ekfac and tekfac; the same as own on kfac).
    FactoredShift,
}

fn default_conv_floor() -> f64 {
    1e-3
}

fn yes() -> bool {
    true
}

/// Weight initialisers (`--init`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitName {
    /// The preset's own: PyTorch's U(±1/√fan_in) for the MLP and CNN, Xavier for the autoencoder.
    #[default]
    Preset,
    /// PyTorch's default U(±1/√fan_in), weights and biases.
    FanInUniform,
    /// Kaiming/He normal N(0, 2/fan_in), zero bias.
    Kaiming,
    /// Xavier/Glorot uniform, zero bias.
    Xavier,
    /// Martens (2010): 15 N(0, 1) incoming weights per unit, the rest and the bias 0 (the
    /// initialisation of the K-FAC papers' autoencoders).
    Sparse,
}

/// Learning-rate schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleName {
    /// Constant rate.
    Constant,
    /// Multiply by --gamma at each epoch in --milestones.
    Step,
    /// Cosine decay to 0 over the run.
    Cosine,
}

impl ScheduleName {
    /// The library's default (`tekfac::train::RunDefaults`).
    pub const DEFAULT: ScheduleName = match RunDefaults::DEFAULT.cosine {
        true => ScheduleName::Cosine,
        false => ScheduleName::Constant,
    };
}

/// Arguments of `tekfac train`.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct TrainArgs {
    /// fashion-mnist-mini (ships in data/), fashion-mnist, mnist, or idx:DIR (any MNIST-format data).
    #[arg(long, default_value = "fashion-mnist-mini")]
    pub dataset: String,
    /// Directory holding the dataset's IDX files (searched first).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of classes of idx: data, 1 to 256 (default: inferred from the training labels,
    /// which must then be 0..K-1 with every class present).
    #[arg(long)]
    #[serde(default)]
    pub classes: Option<usize>,
    /// Model preset.
    #[arg(long, value_enum, default_value = "mlp")]
    pub model: ModelName,
    /// Weight initialisation.
    #[arg(long, value_enum, default_value = "preset")]
    #[serde(default)]
    pub init: InitName,
    /// Optimizer.
    #[arg(long, value_enum, default_value = "tekfac")]
    pub optimizer: OptimizerName,
    /// Learning rate (default: 0.05 for sgd, 1e-3 for adam, 0.01 for the natural-gradient methods).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Momentum (heavy-ball; on the preconditioned step for natural-gradient methods).
    #[arg(long, default_value_t = NgConfig::DEFAULT.momentum)]
    pub momentum: f64,
    /// Damping λ of the curvature blocks (default: 0.03 for kfac and tkfac, whose factored
    /// damping adds cross terms, on the MLP and autoencoder, 0.1 on the CNN; 0.1 for ekfac and
    /// tekfac, whose λ is added to s*/Θ alone).
    #[arg(long)]
    pub damping: Option<f64>,
    /// Update curvature statistics every N steps.
    #[arg(long, default_value_t = NgConfig::DEFAULT.stats_interval)]
    pub stats_interval: u64,
    /// Recompute eigenbases every N steps.
    #[arg(long, default_value_t = NgConfig::DEFAULT.eigen_interval)]
    pub eigen_interval: u64,
    /// Re-estimate s* / Θ every N steps.
    #[arg(long, default_value_t = NgConfig::DEFAULT.scale_interval)]
    pub scale_interval: u64,
    /// EMA decay ρ of the running averages.
    #[arg(long, default_value_t = NgConfig::DEFAULT.decay)]
    pub ema_decay: f64,
    /// Fisher type of the curvature statistics.
    #[arg(long, value_enum, default_value = "sampled")]
    pub fisher: FisherName,
    /// Labels sampled per example for --fisher sampled.
    #[arg(long, default_value_t = 1)]
    pub fisher_samples: usize,
    /// KL-clipping threshold (off when absent).
    #[arg(long)]
    pub kl_clip: Option<f64>,
    /// TEKFAC conv layers: ϑ, the trace floor of λ = max(ΣΘ, ϑ)/dim Θ (Eq. 3.5; the paper's
    /// value is unknown).
    #[arg(long, default_value_t = DampingPolicy::DEFAULT.conv_floor)]
    #[serde(default = "default_conv_floor")]
    pub conv_damping_floor: f64,
    /// TEKFAC conv layers: also floor λ at --damping (true), or use Eq. 3.5 literally (false;
    /// its λ ≈ mean(Θ) is tiny on real conv layers and diverged with the defaults).
    #[arg(long, default_value_t = DampingPolicy::DEFAULT.conv_at_least_lambda, action = clap::ArgAction::Set)]
    #[serde(default = "yes")]
    pub conv_damping_at_least_lambda: bool,
    /// EKFAC/TEKFAC: refresh the eigenbasis warm-started from the previous one by GEMMs, with
    /// an exact decomposition first, every 50th time and whenever it misses its tolerance (true),
    /// or decompose exactly at every refresh (false). K-FAC and TKFAC always decompose exactly.
    #[arg(long, default_value_t = NgConfig::DEFAULT.warm_start.enabled, action = clap::ArgAction::Set)]
    #[serde(default = "yes")]
    pub warm_refresh: bool,
    /// TEKFAC dense layers inside a CNN: fixed --damping, or β (the largest conv λ), or β·λ.
    #[arg(long, value_enum, default_value = "fixed")]
    #[serde(default)]
    pub dense_in_cnn: DenseInCnnName,
    /// How λ enters each curvature block: each optimizer's own rule, additive for all, or
    /// K-FAC's direction-dependent factored shift for all (docs/math.md).
    #[arg(long, value_enum, default_value = "own")]
    #[serde(default)]
    pub damping_rule: DampingRuleName,
    /// L2 weight decay, for every optimizer (the default was chosen for TEKFAC on a hold-out
    /// split: docs/RESULTS.md §7).
    #[arg(long, default_value_t = RunDefaults::DEFAULT.weight_decay)]
    pub weight_decay: f64,
    /// Learning-rate schedule (the default was chosen with --weight-decay: docs/RESULTS.md §7).
    #[arg(long, value_enum, default_value_t = ScheduleName::DEFAULT)]
    pub schedule: ScheduleName,
    /// Epochs at which --schedule step multiplies the rate by --gamma.
    #[arg(long, value_delimiter = ',')]
    pub milestones: Vec<u64>,
    /// Factor of --schedule step.
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Use only the first N training examples (0: all).
    #[arg(long, default_value_t = 0)]
    pub train_limit: usize,
    /// Hold out the last N training examples as a validation set: train on the others and
    /// report each epoch's loss and accuracy on the held-out ones instead of the test split
    /// (for tuning without looking at the test set; metrics.csv's test_* columns then hold the
    /// validation figures; 0: off).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub holdout: usize,
    /// Mirror each training image left–right with probability ½ (torchvision's
    /// RandomHorizontalFlip: label-preserving for clothes, not for digits).
    #[arg(long)]
    #[serde(default)]
    pub flip: bool,
    /// Move each training image by up to N pixels along each axis, filling with 0
    /// (torchvision's RandomCrop(28, padding=N); 0: off).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub shift: usize,
    /// Stop after this many steps in total (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_steps: u64,
    /// Seed of initialisation, shuffling and label sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default and 0: all available cores; at most 4 × the cores). config.json
    /// records the number used.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run directory for config.json, metrics.csv, charts and checkpoints.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Continue the run in this directory from its newest checkpoint, with the settings of its
    /// config.json. Flags given on the command line may change --epochs, --log-every,
    /// --checkpoint-every, --data-dir and --no-verify; --max-steps, --threads, --quiet, --json
    /// and --reset-optimizer apply to this invocation; any other flag must repeat the saved value.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// With --resume: restore the weights and the position but start the optimizer afresh
    /// (momentum and curvature statistics from zero), e.g. when its saved state is damaged.
    #[arg(long, requires = "resume")]
    #[serde(default)]
    pub reset_optimizer: bool,
    /// Also write a checkpoint every N steps (0: only at the end of each epoch). Checkpoints
    /// are folders under <out>/checkpoints/, each written completely before it replaces the
    /// previous one.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// Log metrics (a `step` row of metrics.csv: the mean loss of the last N steps) every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object per log line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Skip the SHA-256 check of the data files.
    #[arg(long)]
    pub no_verify: bool,
}

impl TrainArgs {
    /// The worker threads a run uses: `--threads`, with absent or 0 meaning every available core.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            None | Some(0) => super::checks::available_cores(),
            Some(n) => n,
        }
    }

    /// Where and how to read `--dataset`: `--data-dir`, `--no-verify`, `--classes`.
    pub fn data_source(&self) -> tekfac::dataset::DataSource {
        tekfac::dataset::DataSource {
            dir: self.data_dir.clone(),
            verify: !self.no_verify,
            classes: self.classes,
        }
    }

    /// The split each epoch is evaluated on: "validation" under `--holdout`, else "test".
    pub fn eval_split(&self) -> &'static str {
        if self.holdout > 0 {
            "validation"
        } else {
            "test"
        }
    }
}

/// Arguments of `tekfac eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Run directory written by `tekfac train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Which split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitName,
    /// Directory holding the dataset's IDX files (overrides the run's).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Dataset splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitName {
    /// Training examples (all of them, including any a `--holdout` run held out).
    Train,
    /// Test examples.
    Test,
    /// The training examples a `--holdout` run held out.
    Validation,
}

/// Arguments of `tekfac download`.
#[derive(Args, Debug, Clone)]
pub struct DownloadArgs {
    /// mnist or fashion-mnist.
    pub name: String,
    /// Destination root (files go to <root>/<name>/).
    #[arg(long, default_value = "data")]
    pub root: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tekfac train` without flags trains with the library's defaults: one set, one place.
    #[test]
    fn train_defaults_are_the_librarys() {
        let Some(Command::Train(a)) = Cli::parse_from(["tekfac", "train"]).command else {
            panic!("`tekfac train` parses to the train command");
        };
        let ng = NgConfig::DEFAULT;
        assert_eq!(a.weight_decay, RunDefaults::DEFAULT.weight_decay);
        assert_eq!(a.schedule, ScheduleName::DEFAULT);
        assert_eq!(
            a.schedule == ScheduleName::Cosine,
            RunDefaults::DEFAULT.cosine
        );
        assert_eq!(
            (a.momentum, a.ema_decay, a.stats_interval),
            (ng.momentum, ng.decay, ng.stats_interval)
        );
        assert_eq!(
            (a.eigen_interval, a.scale_interval, a.lr, a.damping),
            (ng.eigen_interval, ng.scale_interval, None, None)
        );
    }
}
