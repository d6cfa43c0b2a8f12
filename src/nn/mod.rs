//! Layers: the [`Module`] trait and the layers that register parameters in a `ParamStore`.
//!
//! A layer keeps only parameter ids; `forward` records ops on a [`Tape`]. Models read top to
//! bottom, either as a struct with a hand-written `forward` or as a [`Sequential`] list.

mod activation;
mod conv2d;
mod linear;
mod pool;
pub mod presets;
mod sequential;

pub use activation::Activation;
pub use conv2d::Conv2d;
pub use linear::{Init, Linear};
pub use pool::{AvgPool2d, MaxPool2d};
pub use presets::{Autoencoder, Cnn, Mlp};
pub use sequential::Sequential;

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Float;

/// Anything that maps a tape variable to another by recording ops.
///
/// A model is a struct of layers with a hand-written `forward`; generic over [`Float`], the same
/// model runs in f32 to train and in f64 to verify:
///
/// ```
/// use tekfac::nn::{Linear, Module};
/// use tekfac::{Float, ParamStore, Result, Tape, Tensor, Var};
///
/// struct TwoLayer {
///     fc1: Linear,
///     fc2: Linear,
/// }
///
/// impl<F: Float> Module<F> for TwoLayer {
///     fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
///         let h = self.fc1.forward(tape, x)?;
///         let h = tape.tanh(h);
///         self.fc2.forward(tape, h)
///     }
/// }
///
/// let mut ps = ParamStore::<f64>::seeded(0);
/// let net = TwoLayer {
///     fc1: Linear::new(&mut ps, "fc1", 3, 8, true)?,
///     fc2: Linear::new(&mut ps, "fc2", 8, 2, true)?,
/// };
/// let mut tape = Tape::new(&ps);
/// let x = tape.input(Tensor::ones(&[4, 3]));
/// let y = net.forward(&mut tape, x)?;
/// assert_eq!(tape.value(y).dims(), &[4, 2]);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub trait Module<F: Float = f32> {
    /// Records this module's forward pass on `tape`.
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var>;

    /// True when `forward` starts by flattening its input to `[n, features]` and so takes that
    /// flat input as it is: the training loop ([`crate::train::train_step`],
    /// [`crate::train::evaluate`]) then hands it the batch already reshaped (a move), instead of
    /// the tape copying the batch into a flattened tensor. Default: false.
    fn flattens_input(&self) -> bool {
        false
    }
}
