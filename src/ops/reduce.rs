//! `sum` and `mean` of all elements → scalar, accumulated in f64.
//! Backward: every input element receives `g` (times `1/n` for the mean).

use crate::autograd::op::Op;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

impl<F: Float> Tape<'_, F> {
    /// Sum of all elements.
    pub fn sum(&mut self, x: Var) -> Var {
        let out = Tensor::scalar(F::from_f64(self.value(x).sum()));
        self.push(Op::Sum(x), out, &[x])
    }

    /// Mean of all elements.
    pub fn mean(&mut self, x: Var) -> Var {
        let v = self.value(x);
        let out = Tensor::scalar(F::from_f64(v.sum() / v.len().max(1) as f64));
        self.push(Op::Mean(x), out, &[x])
    }

    /// Same data, new shape (e.g. flatten `[N, C, H, W]` to `[N, C·H·W]`).
    pub fn reshape(&mut self, x: Var, dims: &[usize]) -> Result<Var> {
        let out = self.value(x).clone().reshape(dims)?;
        Ok(self.push(Op::Reshape(x), out, &[x]))
    }
}

/// Broadcasts the scalar gradient `g·factor` to the input's shape.
pub(crate) fn sum_backward<F: Float>(
    x: &Tensor<F>,
    g: &Tensor<F>,
    factor: f64,
) -> Result<Tensor<F>> {
    let v = g.item()? * F::from_f64(factor);
    Ok(Tensor::full(x.dims(), v))
}
