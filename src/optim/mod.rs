//! Optimizers. Each sees the whole backward output (gradients, captures) and says which Fisher
//! type the training loop should capture next.

mod sgd;

pub use sgd::{Sgd, SgdConfig};

use crate::autograd::{BackwardOutput, FisherType};
use crate::error::Result;
use crate::params::ParamStore;
use crate::tensor::Float;

/// A parameter update rule.
pub trait Optimizer<F: Float = f32> {
    /// What the next backward pass should capture (first-order methods: nothing).
    fn fisher(&self) -> FisherType {
        FisherType::Off
    }

    /// Updates `params` in place from one backward pass.
    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<()>;
}
