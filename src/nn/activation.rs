//! Parameter-free activation layers, so a [`super::Sequential`] can list them.

use super::Module;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Float;

/// An elementwise non-linearity (or a flatten, which reshapes `[N, …]` to `[N, rest]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh x`.
    Tanh,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `[N, C, H, W] → [N, C·H·W]`.
    Flatten,
}

impl<F: Float> Module<F> for Activation {
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        match self {
            Activation::Relu => Ok(tape.relu(x)),
            Activation::Tanh => Ok(tape.tanh(x)),
            Activation::Sigmoid => Ok(tape.sigmoid(x)),
            Activation::Flatten => {
                let (n, rest) = tape.value(x).shape().as_matrix();
                tape.reshape(x, &[n, rest])
            }
        }
    }
}
