//! `Op`: what each tape node computed, holding its inputs and whatever its backward needs.
//!
//! Each variant's forward and backward live together in one file under `src/ops/`; the reverse
//! sweep in `backward.rs` only dispatches, one call per arm.

use super::tape::Var;
use crate::kernels::im2col::ConvGeometry;
use crate::ops::conv2d::Conv2dNode;
use crate::ops::dense::DenseNode;
use crate::ops::eigen_dense::EigenDenseNode;
use crate::ops::loss::LossKind;
use crate::params::ParamId;
use crate::tensor::{Float, Tensor};

/// The recorded operation of one tape node.
pub(crate) enum Op<F: Float> {
    /// A constant leaf (data, or any value recorded in no-grad mode).
    Input,
    /// A parameter leaf; its value lives in the `ParamStore`.
    Param(ParamId),
    /// `a + b`; `b` may be a row vector broadcast over the rows of `a`.
    Add(Var, Var),
    /// `a − b`; `b` may be a broadcast row vector.
    Sub(Var, Var),
    /// `a ∘ b`; `b` may be a broadcast row vector.
    Mul(Var, Var),
    /// `c·x`.
    Scale(Var, F),
    /// `x + c`.
    AddScalar(Var),
    /// `max(x, 0)`.
    Relu(Var),
    /// `tanh x`.
    Tanh(Var),
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid(Var),
    /// `op(a)·op(b)` with optional transposes.
    MatMul { a: Var, b: Var, ta: bool, tb: bool },
    /// Fused dense layer `x·Wᵀ + b` (optionally with a fused ReLU); its backward can emit a
    /// `LayerCapture`.
    Dense(DenseNode),
    /// The dense layer stored in its Kronecker eigenbasis (`W̄ = Q_G W̃ Q_Aᵀ`); the node keeps
    /// `â = ā Q_A`.
    EigenDense(Box<EigenDenseNode<F>>),
    /// Fused 2-D convolution via im2col (the node keeps the patch rows); its backward can emit a
    /// `LayerCapture`.
    Conv2d(Box<Conv2dNode<F>>),
    /// Max pooling; `argmax` holds, per output element, the index of its maximum within the
    /// input's `H × W` plane; `relu`: a ReLU is fused onto the output.
    MaxPool2d {
        x: Var,
        argmax: Vec<u32>,
        relu: bool,
    },
    /// Average pooling with its window geometry.
    AvgPool2d { x: Var, geom: ConvGeometry },
    /// Row-wise `x − logsumexp(x)`.
    LogSoftmax(Var),
    /// A mean-reduced loss of `input` (logits or predictions); `saved` is what its backward needs
    /// (softmax probabilities, sigmoid of the logits, or the residual).
    Loss {
        input: Var,
        kind: LossKind<F>,
        saved: Tensor<F>,
    },
    /// Sum of all elements → scalar.
    Sum(Var),
    /// Mean of all elements → scalar.
    Mean(Var),
    /// Same data, new shape.
    Reshape(Var),
}
