//! Activations: ReLU, tanh, sigmoid, and row-wise log-softmax.
//!
//! Each backward is written in terms of the op's output `y`, which the tape already holds:
//! `relu' = [y > 0]`, `tanh' = 1 − y²`, `sigmoid' = y(1 − y)`,
//! `log_softmax: ∂x = g − softmax(x)·Σ_j g_j` with `softmax(x) = eʸ`.

use crate::autograd::op::Op;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::{Float, Tensor, zip_inplace};

/// `max(x, 0)` of one value (0 for NaN); shared by [`Tape::relu`] and the fused ReLU of
/// `Tape::dense_relu`, so both give the same bits.
#[inline]
pub(crate) fn relu<F: Float>(x: F) -> F {
    if x > F::ZERO { x } else { F::ZERO }
}

/// Numerically stable logistic function.
pub(crate) fn sigmoid<F: Float>(x: F) -> F {
    if x >= F::ZERO {
        F::ONE / (F::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::ONE + e)
    }
}

/// Row-wise `x − logsumexp(x)` of a matrix-viewed tensor, max-shifted so it never overflows.
pub(crate) fn log_softmax_rows<F: Float>(x: &Tensor<F>) -> Tensor<F> {
    let (_, cols) = x.shape().as_matrix();
    let mut out = x.clone();
    for row in out.data_mut().chunks_mut(cols.max(1)) {
        let max = row
            .iter()
            .fold(F::from_f64(f64::NEG_INFINITY), |m, &v| m.max(v));
        let lse: f64 = row
            .iter()
            .map(|&v| (v - max).to_f64().exp())
            .sum::<f64>()
            .ln();
        let shift = max + F::from_f64(lse);
        row.iter_mut().for_each(|v| *v -= shift);
    }
    out
}

impl<F: Float> Tape<'_, F> {
    /// `max(x, 0)`.
    pub fn relu(&mut self, x: Var) -> Var {
        let out = self.value(x).map(relu);
        self.push(Op::Relu(x), out, &[x])
    }

    /// `tanh x`.
    pub fn tanh(&mut self, x: Var) -> Var {
        let out = self.value(x).map(F::tanh);
        self.push(Op::Tanh(x), out, &[x])
    }

    /// `1 / (1 + e⁻ˣ)`.
    pub fn sigmoid(&mut self, x: Var) -> Var {
        let out = self.value(x).map(sigmoid);
        self.push(Op::Sigmoid(x), out, &[x])
    }

    /// Row-wise log-softmax of `[batch, classes]` logits.
    pub fn log_softmax(&mut self, x: Var) -> Result<Var> {
        self.value(x).shape().dims2("log_softmax")?;
        let out = log_softmax_rows(self.value(x));
        Ok(self.push(Op::LogSoftmax(x), out, &[x]))
    }
}

/// `g ∘ [y > 0]`, in place. NOTE: the derivative at exactly 0 is taken as 0 (as in PyTorch).
pub(crate) fn relu_backward<F: Float>(y: &Tensor<F>, mut g: Tensor<F>) -> Tensor<F> {
    zip_inplace(g.data_mut(), y.data(), |g, y| {
        if y > F::ZERO { g } else { F::ZERO }
    });
    g
}

/// `g ∘ (1 − y²)`, in place.
pub(crate) fn tanh_backward<F: Float>(y: &Tensor<F>, mut g: Tensor<F>) -> Tensor<F> {
    zip_inplace(g.data_mut(), y.data(), |g, y| g * (F::ONE - y * y));
    g
}

/// `g ∘ y(1 − y)`, in place.
pub(crate) fn sigmoid_backward<F: Float>(y: &Tensor<F>, mut g: Tensor<F>) -> Tensor<F> {
    zip_inplace(g.data_mut(), y.data(), |g, y| g * y * (F::ONE - y));
    g
}

/// `g − eʸ·Σ_j g_j` row by row, in place.
pub(crate) fn log_softmax_backward<F: Float>(y: &Tensor<F>, mut g: Tensor<F>) -> Tensor<F> {
    let (_, cols) = y.shape().as_matrix();
    for (grow, yrow) in g
        .data_mut()
        .chunks_mut(cols.max(1))
        .zip(y.data().chunks(cols.max(1)))
    {
        let total: F = grow.iter().copied().sum();
        grow.iter_mut()
            .zip(yrow)
            .for_each(|(g, y)| *g -= y.exp() * total);
    }
    g
}
