//! `Sequential`: a model built from a list of modules, applied in order.

use super::Module;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Float;

/// Modules applied one after another.
///
/// ```
/// use tekfac::nn::{Activation, Conv2d, Linear, MaxPool2d, Module, Sequential};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut ps = ParamStore::<f32>::seeded(0);
/// let net = Sequential::new()
///     .push(Conv2d::new(&mut ps, "conv", 1, 4, (3, 3), (1, 1), (1, 1), true)?)
///     .push(Activation::Relu)
///     .push(MaxPool2d::new(2))
///     .push(Activation::Flatten)
///     .push(Linear::new(&mut ps, "fc", 4 * 4 * 4, 10, true)?);
/// let mut tape = Tape::new(&ps);
/// let x = tape.input(Tensor::zeros(&[2, 1, 8, 8]));
/// let logits = net.forward(&mut tape, x)?;
/// assert_eq!(tape.value(logits).dims(), &[2, 10]);
/// assert_eq!(ps.layers().len(), 2); // conv and fc: two curvature blocks
/// # Ok::<(), tekfac::Error>(())
/// ```
pub struct Sequential<F: Float = f32> {
    layers: Vec<Box<dyn Module<F> + Send + Sync>>,
}

impl<F: Float> Default for Sequential<F> {
    fn default() -> Self {
        Sequential { layers: Vec::new() }
    }
}

impl<F: Float> Sequential<F> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a module (builder style).
    pub fn push(mut self, m: impl Module<F> + Send + Sync + 'static) -> Self {
        self.layers.push(Box::new(m));
        self
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<F: Float> Module<F> for Sequential<F> {
    fn forward(&self, tape: &mut Tape<'_, F>, mut x: Var) -> Result<Var> {
        for m in &self.layers {
            x = m.forward(tape, x)?;
        }
        Ok(x)
    }

    fn flattens_input(&self) -> bool {
        self.layers.first().is_some_and(|m| m.flattens_input())
    }
}
