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
pub trait Module<F: Float = f32> {
    /// Records this module's forward pass on `tape`.
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var>;
}
