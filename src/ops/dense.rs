//! The fused dense layer `Y = X·Wᵀ + b`, `X: [batch, in]`, `W: [out, in]`, `b: [out]`, and the
//! same layer with a ReLU fused onto its output, `H = max(Y, 0)`.
//!
//! Backward: `dX = dY·W`, `dW = dYᵀ·X`, `db = Σ_rows dY`, where with the fused ReLU
//! `dY = dH ∘ [H > 0]` first. When the sweep captures, the same rows leave as a
//! [`crate::LayerCapture`]: `ā = [X | 1]` and `g = dY · batch`.
//! NOTE: `dY` is the gradient of the *mean* loss, i.e. `(1/B)·∂ℓ_n/∂s`; multiplying by the batch
//! size makes every captured row a per-example gradient, as the Fisher `E[vec(DW) vec(DW)ᵀ]` needs.

use crate::autograd::op::Op;
use crate::autograd::{GradientRows, Sweep, Tape, Var};
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, gemm_into, gemm_new};
use crate::ops::activation::{relu, relu_backward};
use crate::params::LayerId;
use crate::tensor::{Float, Tensor, column_sums};

/// What a dense node records: its inputs, the curvature block whose statistics it captures
/// (`None`: never captured), and whether a ReLU is fused onto its output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DenseNode {
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) b: Option<Var>,
    pub(crate) layer: Option<LayerId>,
    pub(crate) relu: bool,
}

impl<F: Float> Tape<'_, F> {
    /// `x·wᵀ + b` for `x: [batch, in]`, `w: [out, in]`, `b: [out]`; `layer` names the curvature
    /// block whose statistics this op captures (`None`: never captured). A layer the
    /// `ParamStore` holds in its Kronecker eigenbasis takes `eigen_dense.rs` instead.
    pub fn dense(&mut self, x: Var, w: Var, b: Option<Var>, layer: Option<LayerId>) -> Result<Var> {
        self.record_dense(x, w, b, layer, false)
    }

    /// `relu(x·wᵀ + b)` as one op: the same values and gradients as [`Tape::dense`] followed by
    /// [`Tape::relu`], without a second tensor and pass for the activation (the ReLU runs over
    /// the product's output while it is in cache).
    pub fn dense_relu(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        layer: Option<LayerId>,
    ) -> Result<Var> {
        self.record_dense(x, w, b, layer, true)
    }

    /// The dense op with or without its fused ReLU. A layer the `ParamStore` holds in its
    /// Kronecker eigenbasis takes `eigen_dense.rs` (which fuses the ReLU the same way).
    fn record_dense(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        layer: Option<LayerId>,
        relu: bool,
    ) -> Result<Var> {
        if let Some(layer) = layer.filter(|&l| self.params.eigenbasis(l).is_some()) {
            return self.eigen_dense(x, w, b, layer, relu);
        }
        let mut out = dense_forward(self.value(x), self.value(w), b.map(|b| self.value(b)))?;
        if relu {
            relu_inplace(out.data_mut());
        }
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        let node = DenseNode {
            x,
            w,
            b,
            layer,
            relu,
        };
        Ok(self.push(Op::Dense(node), out, &inputs))
    }
}

/// `x·wᵀ + b` with shape checks. The bias rows are written first and the product accumulates
/// onto them (`β = 1`), so the output buffer is written by the bias, not zero-filled.
pub(crate) fn dense_forward<F: Float>(
    x: &Tensor<F>,
    w: &Tensor<F>,
    b: Option<&Tensor<F>>,
) -> Result<Tensor<F>> {
    let (n, d_in) = x.shape().dims2("dense")?;
    let (d_out, w_in) = w.shape().dims2("dense")?;
    if w_in != d_in {
        return Err(Error::ShapeMismatch {
            op: "dense",
            why: "input features differ from weight columns",
            left: x.shape(),
            right: w.shape(),
        });
    }
    let (xm, wm) = (
        MatRef::new(x.data(), n, d_in, false),
        MatRef::new(w.data(), d_out, d_in, true),
    );
    let Some(b) = b else {
        return Tensor::from_vec(gemm_new(F::ONE, xm, wm), &[n, d_out]);
    };
    if b.len() != d_out {
        return Err(Error::ShapeMismatch {
            op: "dense",
            why: "bias length differs from weight rows",
            left: w.shape(),
            right: b.shape(),
        });
    }
    let mut out = Vec::with_capacity(n * d_out);
    (0..n).for_each(|_| out.extend_from_slice(b.data()));
    gemm_into(F::ONE, xm, wm, F::ONE, &mut out);
    Tensor::from_vec(out, &[n, d_out])
}

/// `h ← max(h, 0)` in place, on the calling thread (the fused ReLU of [`Tape::dense_relu`]).
pub(crate) fn relu_inplace<F: Float>(h: &mut [F]) {
    h.iter_mut().for_each(|v| *v = relu(*v));
}

/// Backward of the dense layer (and of its fused ReLU, whose output is `y`), plus its capture
/// when the sweep records one.
pub(crate) fn dense_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    node: &DenseNode,
    y: &Tensor<F>,
    g: Tensor<F>,
) -> Result<()> {
    let DenseNode {
        x,
        w,
        b,
        layer,
        relu,
    } = *node;
    let g = if relu { relu_backward(y, g) } else { g };
    let (vx, vw) = (sw.value(x), sw.value(w));
    let (n, d_in) = vx.shape().dims2("dense backward")?;
    let d_out = vw.dims()[0];
    if sw.mode.param_grads {
        if let Some(b) = b {
            sw.add(
                b,
                Tensor::from_vec(column_sums(g.data(), n, d_out), &[d_out])?,
            )?;
        }
        if sw.wants(w) {
            let (gt, xm) = (
                MatRef::new(g.data(), n, d_out, true),
                MatRef::new(vx.data(), n, d_in, false),
            );
            sw.add(
                w,
                Tensor::from_vec(gemm_new(F::ONE, gt, xm), &[d_out, d_in])?,
            )?;
        }
    }
    if sw.wants(x) {
        let (gm, wm) = (
            MatRef::new(g.data(), n, d_out, false),
            MatRef::new(vw.data(), d_out, d_in, false),
        );
        sw.add(x, Tensor::from_vec(gemm_new(F::ONE, gm, wm), &[n, d_in])?)?;
    }
    if let (true, Some(layer)) = (sw.gradient_rows, layer) {
        let a = homogeneous(vx, b.is_some());
        let g = g.clone();
        sw.rows.push(GradientRows { layer, a, g });
    }
    if let (true, Some(layer)) = (sw.mode.capture, layer) {
        let scale = sw.batch_scale;
        sw.capture(
            layer,
            1,
            || homogeneous(vx, b.is_some()),
            g.map(|v| v * scale),
        );
    }
    Ok(())
}

/// `[x | 1]` when `bias`, else a copy of `x`: the homogeneous inputs ā of a `[rows, in]` matrix.
pub(crate) fn homogeneous<F: Float>(x: &Tensor<F>, bias: bool) -> Tensor<F> {
    let (rows, cols) = x.shape().as_matrix();
    if !bias {
        return x
            .clone()
            .reshape(&[rows, cols])
            .expect("same element count");
    }
    let mut data = Vec::with_capacity(rows * (cols + 1));
    for row in x.data().chunks(cols.max(1)).take(rows) {
        data.extend_from_slice(row);
        data.push(F::ONE);
    }
    Tensor::from_vec(data, &[rows, cols + 1]).expect("rows * (cols + 1) elements were pushed")
}
