//! Parameter-free activation layers, so a [`super::Sequential`] can list them.

use super::Module;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Float;

/// An elementwise non-linearity (or a flatten, which reshapes `[N, …]` to `[N, rest]`).
///
/// ```
/// use tekfac::nn::{Activation, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let ps = ParamStore::<f32>::seeded(0);
/// let mut tape = Tape::new(&ps);
/// let x = tape.input(Tensor::from_vec(vec![-1.0, 0.0, 2.0, 3.0], &[1, 1, 2, 2])?);
/// let flat = Activation::Flatten.forward(&mut tape, x)?;
/// let y = Activation::Relu.forward(&mut tape, flat)?;
/// assert_eq!(tape.value(y).dims(), &[1, 4]);
/// assert_eq!(tape.value(y).data(), &[0.0, 0.0, 2.0, 3.0]);
/// # Ok::<(), tekfac::Error>(())
/// ```
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
            // NOTE: an input that is already `[n, rest]` is passed on as it is: a reshape would
            // copy it for nothing (the MLP's whole batch, every step).
            Activation::Flatten if tape.value(x).dims().len() == 2 => Ok(x),
            Activation::Flatten => {
                let (n, rest) = tape.value(x).shape().as_matrix();
                tape.reshape(x, &[n, rest])
            }
        }
    }

    fn flattens_input(&self) -> bool {
        *self == Activation::Flatten
    }
}
