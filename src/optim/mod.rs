//! Optimizers. Each sees the whole backward output (gradients, captures) and says which Fisher
//! type the training loop should capture next.

mod adam;
mod exact;
mod natural;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use exact::{ExactConfig, ExactNaturalGradient, MAX_BLOCK};
pub use natural::{
    DampingPolicy, DampingRule, DenseInCnn, NaturalGradient, NgConfig, Variant, beta,
    default_lambda, eigenbasis_pays,
};
pub use schedule::{LrSchedule, Schedule};
pub use sgd::{Sgd, SgdConfig};

use crate::autograd::{BackwardOutput, FisherType};
use crate::checkpoint::TensorDict;
use crate::curvature::RefreshReport;
use crate::error::Result;
use crate::params::{ParamId, ParamStore};
use crate::tensor::{Float, Tensor};

/// What one optimizer step did, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Loss of the forward pass the step used.
    pub loss: f64,
    /// ‖∇‖ over all parameters.
    pub grad_norm: f64,
    /// ‖Δθ‖ of the applied update.
    pub update_norm: f64,
    /// λ per curvature block (`(layer name, λ)`), empty for first-order methods.
    pub lambda: Vec<(String, f64)>,
    /// Seconds spent on curvature statistics (factors and re-scaling).
    pub time_stats: f64,
    /// Seconds spent on eigendecompositions.
    pub time_eigen: f64,
    /// Seconds spent preconditioning.
    pub time_precondition: f64,
    /// What the step skipped or changed on its own, for the front end to report.
    pub events: Vec<StepEvent>,
    /// How each layer's eigenbasis was refreshed on this step (warm or exact, and why;
    /// `curvature/warm.rs`), `(layer name, report)`; empty on other steps.
    pub refreshes: Vec<(String, RefreshReport)>,
    /// Whether the update pass checked the weights it wrote (every parameter with a gradient):
    /// `Some(true)` when all are finite, `Some(false)` when one is not, `None` when the
    /// optimizer did not check (the training loop then checks every weight itself). SGD and
    /// Adam check each chunk right after updating it, while it is in cache.
    pub weights_finite: Option<bool>,
}

/// Something an optimizer step did on its own that the user should hear about. The library
/// never prints: the CLI prints these as warnings.
#[derive(Clone, Debug, PartialEq)]
pub enum StepEvent {
    /// A curvature update of one layer failed and was skipped; the previous basis or diagonal
    /// stays in use and training goes on (spec §1.9).
    CurvatureSkipped {
        /// `"eigenbasis refresh"` or `"re-scaling"`.
        what: &'static str,
        /// The layer's name.
        layer: String,
        /// Why (the error's message).
        reason: String,
    },
}

impl std::fmt::Display for StepEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepEvent::CurvatureSkipped {
                what,
                layer,
                reason,
            } => write!(
                f,
                "{what} of {layer} skipped, previous values kept ({reason})"
            ),
        }
    }
}

impl StepStats {
    /// Stats of a first-order step: loss, gradient norm and update norm only.
    pub fn first_order<F: Float>(pass: &BackwardOutput<F>, update_norm: f64) -> Self {
        StepStats {
            loss: pass.loss,
            grad_norm: pass.grads.global_norm(),
            update_norm,
            ..Default::default()
        }
    }
}

/// A parameter update rule.
///
/// The training loop asks the optimizer what to capture, runs the backward pass accordingly,
/// and hands it the whole output. The same loop drives first-order and natural-gradient
/// methods:
///
/// ```
/// use tekfac::nn::{Activation, Linear, Module, Sequential};
/// use tekfac::optim::{DampingPolicy, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig, Variant};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let x = Tensor::<f32>::from_vec((0..32).map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5).collect(), &[8, 4])?;
/// let labels = [0, 1, 2, 0, 1, 2, 0, 1];
/// for name in ["sgd", "tekfac"] {
///     let mut params = ParamStore::<f32>::seeded(0);
///     let net = Sequential::new()
///         .push(Linear::new(&mut params, "fc1", 4, 16, true)?)
///         .push(Activation::Tanh)
///         .push(Linear::new(&mut params, "fc2", 16, 3, true)?);
///     let mut opt: Box<dyn Optimizer> = match name {
///         "sgd" => Box::new(Sgd::new(SgdConfig { lr: 0.5, ..Default::default() })),
///         _ => {
///             let damping = DampingPolicy::with_lambda(0.1);
///             let config = NgConfig { lr: 0.05, damping, ..NgConfig::default() };
///             Box::new(NaturalGradient::new(Variant::Tekfac, config, &params)?)
///         }
///     };
///     let mut losses = Vec::new();
///     for _ in 0..30 {
///         let mut tape = Tape::new(&params);
///         let xv = tape.input(x.clone());
///         let logits = net.forward(&mut tape, xv)?;
///         let loss = tape.cross_entropy(logits, &labels)?;
///         let pass = tape.backward_full(loss, opt.fisher(), opt.gradient_rows())?;
///         losses.push(opt.step(&mut params, &pass)?.loss);
///     }
///     assert!(losses[29] < 0.5 * losses[0], "{name}: {losses:?}");
/// }
/// # Ok::<(), tekfac::Error>(())
/// ```
pub trait Optimizer<F: Float = f32> {
    /// What the next backward pass should capture (first-order methods: nothing).
    fn fisher(&self) -> FisherType {
        FisherType::Off
    }

    /// Whether the next backward pass should also hand out the dense layers' gradient rows
    /// ([`BackwardOutput::rows`]; natural-gradient methods rotate the gradient in that low-rank
    /// form). Default: no.
    fn gradient_rows(&self) -> bool {
        false
    }

    /// Updates `params` in place from one backward pass.
    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<StepStats>;

    /// Sets the learning rate (schedules call this before each step).
    fn set_lr(&mut self, lr: f64);

    /// Everything needed to continue bit-identically (buffers, counters), for checkpoints.
    fn save_state(&self, params: &ParamStore<F>, dict: &mut TensorDict);

    /// Restores what [`Optimizer::save_state`] wrote; errors on missing or mismatched entries.
    /// Called after the weights are loaded: an optimizer that stores layers in other
    /// coordinates (natural gradient, eigenbasis layers) puts them back into `params`.
    fn load_state(&mut self, params: &mut ParamStore<F>, dict: &TensorDict) -> Result<()>;
}

/// Saves per-parameter buffers as `<prefix>.<param name>` (absent buffers are skipped).
pub(crate) fn save_buffers<F: Float>(
    params: &ParamStore<F>,
    bufs: &[Option<Tensor<F>>],
    prefix: &str,
    dict: &mut TensorDict,
) {
    for (i, b) in bufs.iter().enumerate() {
        if let Some(b) = b {
            dict.put_tensor(&format!("{prefix}.{}", params.name(ParamId(i))), b);
        }
    }
}

/// Loads buffers saved by [`save_buffers`]; a parameter without an entry gets none.
pub(crate) fn load_buffers<F: Float>(
    params: &ParamStore<F>,
    prefix: &str,
    dict: &TensorDict,
) -> Result<Vec<Option<Tensor<F>>>> {
    params
        .ids()
        .map(|id| {
            let name = format!("{prefix}.{}", params.name(id));
            if !dict.contains(&name) {
                return Ok(None);
            }
            dict.tensor_shaped::<F>(&name, params.get(id).dims())
                .map(Some)
        })
        .collect()
}
