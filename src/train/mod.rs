//! The training loop pieces shared by the CLI and the examples: one step (forward, loss,
//! backward with the optimizer's Fisher type, divergence check, update) and evaluation; and
//! the run layer around a loop: its [`Position`], [`Checkpoints`] written as one atomic folder
//! each, `metrics.csv` ([`MetricsCsv`], [`read_metrics`]), and the [`RunFolder`] that holds
//! them, opened under its [`RunLock`] and cleaned of what a killed run left; and
//! [`RunDefaults`], the weight decay and learning-rate schedule a run uses by default.
//!
//! The loop itself stays visible in its callers; these functions only keep the step honest:
//! a NaN or infinity in the loss, a gradient or the updated weights stops training with an
//! error naming the step and the first offending parameter, before anything is saved.

mod checkpoints;
mod defaults;
mod metrics;
mod position;
mod run_folder;
mod run_lock;
pub mod track;

pub use checkpoints::{Checkpoint, Checkpoints};
pub use defaults::RunDefaults;
pub use metrics::{COLUMNS, MetricsCsv, Row, read_metrics};
pub use position::{LossSum, Position};
pub use run_folder::{METRICS_FILE, RunFolder};
pub use run_lock::RunLock;

use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::optim::{Optimizer, StepStats};
use crate::params::ParamStore;
use crate::tensor::{Float, Tensor};

/// What the model is trained to do, which decides the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Softmax cross-entropy against integer labels.
    Classify,
    /// Reconstruct the (flattened) input pixels: sigmoid BCE with logits.
    Autoencode,
}

/// Records `loss(model(x))` on `tape` and returns the output and loss variables.
fn record_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    model: &dyn Module<F>,
    task: Task,
    x: Tensor<F>,
    labels: &[usize],
) -> Result<(crate::Var, crate::Var)> {
    let x = match model.flattens_input() {
        true => flat(x)?,
        false => x,
    };
    let targets = (task == Task::Autoencode).then(|| {
        let (n, d) = x.shape().as_matrix();
        x.clone().reshape(&[n, d])
    });
    let xv = tape.input(x);
    let out = model.forward(tape, xv)?;
    let loss = match targets {
        Some(t) => tape.bce_with_logits(out, &t?)?,
        None => tape.cross_entropy(out, labels)?,
    };
    Ok((out, loss))
}

/// `x` as `[n, features]`: a move of the same values, no copy.
fn flat<F: Float>(x: Tensor<F>) -> Result<Tensor<F>> {
    let (n, d) = x.shape().as_matrix();
    x.reshape(&[n, d])
}

/// One training step at global step `step`; errors on any non-finite value.
///
/// Forward, loss (by `task`), backward with the optimizer's Fisher type, update. A NaN or
/// infinity in the loss, a gradient or the updated weights is an `Error::NonFinite` naming the
/// step and the first offending layer or parameter:
///
/// ```
/// use tekfac::nn::{Linear, Module, Sequential};
/// use tekfac::optim::{Sgd, SgdConfig};
/// use tekfac::train::{Task, evaluate, train_step};
/// use tekfac::{Error, ParamStore, Tensor};
///
/// let mut params = ParamStore::<f32>::seeded(0);
/// let net = Sequential::new().push(Linear::new(&mut params, "fc", 2, 2, true)?);
/// let mut opt = Sgd::new(SgdConfig { lr: 0.5, ..Default::default() });
/// let x = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2])?;
/// for step in 0..20 {
///     train_step(&net, Task::Classify, &mut params, &mut opt, x.clone(), &[0, 1], step)?;
/// }
/// let (loss, accuracy) = evaluate(&net, Task::Classify, &params, [Ok((x.clone(), vec![0, 1]))].into_iter())?;
/// assert!(loss < 0.1 && accuracy == 1.0);
///
/// let bad = Tensor::from_vec(vec![f32::NAN, 0.0, 0.0, 1.0], &[2, 2])?;
/// let err = train_step(&net, Task::Classify, &mut params, &mut opt, bad, &[0, 1], 20);
/// assert!(matches!(err, Err(Error::NonFinite { step: Some(20), .. })));
/// # Ok::<(), tekfac::Error>(())
/// ```
pub fn train_step<F: Float>(
    model: &dyn Module<F>,
    task: Task,
    params: &mut ParamStore<F>,
    opt: &mut dyn Optimizer<F>,
    x: Tensor<F>,
    labels: &[usize],
    step: u64,
) -> Result<StepStats> {
    let mut tape = Tape::new(params);
    let (_, loss) = record_loss(&mut tape, model, task, x, labels)?;
    if !tape.value(loss).all_finite() {
        let what = match tape.first_non_finite_layer() {
            Some(l) => format!(
                "the loss (first non-finite output: layer {})",
                params.layer(l).name
            ),
            None => "the loss".to_string(),
        };
        return Err(Error::NonFinite {
            what,
            step: Some(step),
        });
    }
    let pass = tape.backward_full(loss, opt.fisher(), opt.gradient_rows())?;
    if let Some(id) = pass.grads.first_non_finite() {
        return Err(Error::NonFinite {
            what: format!("the gradient of {}", params.name(id)),
            step: Some(step),
        });
    }
    let stats = opt.step(params, &pass)?;
    // NOTE: SGD and Adam check the weights they wrote in their own pass; only the others (and
    // parameters without a gradient) are checked here, so that a step reads its half a million
    // weights once instead of twice. The first non-finite one is the same either way.
    let checked = |id| stats.weights_finite == Some(true) && pass.grads.get(id).is_some();
    if let Some(id) = params
        .ids()
        .find(|&id| !checked(id) && !params.get(id).all_finite())
    {
        return Err(Error::NonFinite {
            what: format!("the updated weights of {}", params.name(id)),
            step: Some(step),
        });
    }
    Ok(stats)
}

/// Mean loss and accuracy (classification; 0 for autoencoders) over batches, without a graph.
pub fn evaluate(
    model: &dyn Module<f32>,
    task: Task,
    params: &ParamStore<f32>,
    batches: impl Iterator<Item = Result<(Tensor<f32>, Vec<usize>)>>,
) -> Result<(f64, f64)> {
    let (mut loss, mut hits, mut n) = (0.0, 0usize, 0usize);
    for batch in batches {
        let (x, labels) = batch?;
        let b = x.dims()[0];
        let mut tape = Tape::no_grad(params);
        let (out, l) = record_loss(&mut tape, model, task, x, &labels)?;
        loss += tape.value(l).item()? as f64 * b as f64;
        if task == Task::Classify {
            hits += tape
                .value(out)
                .argmax_rows()
                .iter()
                .zip(&labels)
                .filter(|(p, y)| p == y)
                .count();
        }
        n += b;
    }
    let n = n.max(1) as f64;
    Ok((loss / n, hits as f64 / n))
}
