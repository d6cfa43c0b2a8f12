//! The fused dense layer `Y = X·Wᵀ + b`, `X: [batch, in]`, `W: [out, in]`, `b: [out]`.
//!
//! Backward: `dX = dY·W`, `dW = dYᵀ·X`, `db = Σ_rows dY`. When the sweep captures, the same rows
//! leave as a [`crate::LayerCapture`]: `ā = [X | 1]` and `g = dY · batch`.
//! NOTE: `dY` is the gradient of the *mean* loss, i.e. `(1/B)·∂ℓ_n/∂s`; multiplying by the batch
//! size makes every captured row a per-example gradient, as the Fisher `E[vec(DW) vec(DW)ᵀ]` needs.

use crate::autograd::op::Op;
use crate::autograd::{GradientRows, Sweep, Tape, Var};
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, gemm_into};
use crate::params::LayerId;
use crate::tensor::{Float, Tensor, column_sums};

impl<F: Float> Tape<'_, F> {
    /// `x·wᵀ + b` for `x: [batch, in]`, `w: [out, in]`, `b: [out]`; `layer` names the curvature
    /// block whose statistics this op captures (`None`: never captured). A layer the
    /// `ParamStore` holds in its Kronecker eigenbasis takes `eigen_dense.rs` instead.
    pub fn dense(&mut self, x: Var, w: Var, b: Option<Var>, layer: Option<LayerId>) -> Result<Var> {
        if let Some(layer) = layer.filter(|&l| self.params.eigenbasis(l).is_some()) {
            return self.eigen_dense(x, w, b, layer);
        }
        let out = dense_forward(self.value(x), self.value(w), b.map(|b| self.value(b)))?;
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        Ok(self.push(Op::Dense { x, w, b, layer }, out, &inputs))
    }
}

/// `x·wᵀ + b` with shape checks; the bias is written first and the gemm accumulates onto it.
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
    let mut out = Tensor::zeros(&[n, d_out]);
    if let Some(b) = b {
        if b.len() != d_out {
            return Err(Error::ShapeMismatch {
                op: "dense",
                why: "bias length differs from weight rows",
                left: w.shape(),
                right: b.shape(),
            });
        }
        out.data_mut()
            .chunks_mut(d_out.max(1))
            .for_each(|row| row.copy_from_slice(b.data()));
    }
    let beta = if b.is_some() { F::ONE } else { F::ZERO };
    gemm_into(
        F::ONE,
        MatRef::new(x.data(), n, d_in, false),
        MatRef::new(w.data(), d_out, d_in, true),
        beta,
        out.data_mut(),
    );
    Ok(out)
}

/// Backward of the dense layer, plus its capture when the sweep records one.
pub(crate) fn dense_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    x: Var,
    w: Var,
    b: Option<Var>,
    layer: Option<LayerId>,
    g: Tensor<F>,
) -> Result<()> {
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
            let mut dw = Tensor::zeros(&[d_out, d_in]);
            gemm_into(
                F::ONE,
                MatRef::new(g.data(), n, d_out, true),
                MatRef::new(vx.data(), n, d_in, false),
                F::ZERO,
                dw.data_mut(),
            );
            sw.add(w, dw)?;
        }
    }
    if sw.wants(x) {
        let mut dx = Tensor::zeros(&[n, d_in]);
        gemm_into(
            F::ONE,
            MatRef::new(g.data(), n, d_out, false),
            MatRef::new(vw.data(), d_out, d_in, false),
            F::ZERO,
            dx.data_mut(),
        );
        sw.add(x, dx)?;
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
