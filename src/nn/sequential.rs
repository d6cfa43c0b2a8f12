//! `Sequential`: a model built from a list of modules, applied in order.

use super::Module;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Float;

/// Modules applied one after another.
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
}
