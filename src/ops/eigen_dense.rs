//! The dense layer trained in its Kronecker eigenbasis: the same `Y = X·Wᵀ + b`, with the block
//! `W̄ = [W | b]` held as `W̄ = Q_G W̃ Q_Aᵀ` and `W̃` the stored parameter
//! ([`LayerEigenbasis`]; Desjardins et al. 2015, *Natural Neural Networks*; George et al. 2018).
//!
//! ```text
//! forward    â = ā Q_A                  [n, d_in']     ā = [x | 1]
//!            s = (â W̃ᵀ) Q_Gᵀ             [n, d_out]     = ā W̄ᵀ
//! backward   ĝ = g Q_G                  [n, d_out]     g = ∂L/∂s
//!            ∂L/∂W̃ = ĝᵀ â                               = Q_Gᵀ (gᵀā) Q_A = Q_Gᵀ ∇W̄ Q_A
//!            ∂L/∂x = (ĝ W̃) Q_Aᵀ, bias column dropped  = g W
//! ```
//!
//! So the gradient the optimizer receives is already the rotated gradient of EKFAC/TEKFAC, and
//! their update becomes elementwise in `W̃`; no rotation out of the basis is ever formed. Cost per
//! pass: `n·(d_in'² + d_out²)` more multiply-adds forward and `n·(d_out² + d_in'²)` backward,
//! instead of the `d_out·d_in'·(d_out + d_in')` of rotating each update out of the basis.
//!
//! The captured rows are the layer's standard ones (`ā`, `g`): the curvature statistics do not
//! depend on how the weights are stored. `â` is kept on the node for the backward sweep.
//! `tests/ng_eigenbasis_layers.rs` pins this op to the plain dense layer.

use crate::autograd::op::Op;
use crate::autograd::{Sweep, Tape, Var};
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, gemm_into};
use crate::ops::dense::homogeneous;
use crate::params::{LayerEigenbasis, LayerId};
use crate::tensor::{Float, Tensor};

/// What the backward of an eigenbasis dense node needs.
pub(crate) struct EigenDenseNode<F: Float> {
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) b: Option<Var>,
    pub(crate) layer: LayerId,
    /// `â = ā Q_A`, `[n, d_in']`.
    pub(crate) a_hat: Tensor<F>,
}

impl<F: Float> Tape<'_, F> {
    /// [`Tape::dense`] for a layer with an eigenbasis: `s = ((ā Q_A) W̃ᵀ) Q_Gᵀ`.
    pub(crate) fn eigen_dense(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        layer: LayerId,
    ) -> Result<Var> {
        let basis = self
            .params
            .eigenbasis(layer)
            .expect("eigen_dense is only called for a layer with an eigenbasis");
        let (xv, wv) = (self.value(x), self.value(w));
        let (n, d_in) = xv.shape().dims2("dense")?;
        let (d_out, w_in) = wv.shape().dims2("dense")?;
        let bv = b.map(|b| self.value(b));
        check_shapes(d_in, d_out, w_in, bv, basis)?;
        let w_tilde = stored_block(wv, bv);
        let d_in_bar = d_in + usize::from(b.is_some());
        let a_hat = matmul(
            &homogeneous(xv, b.is_some()),
            basis.q_a.as_slice(),
            n,
            d_in_bar,
            d_in_bar,
        );
        // t = â W̃ᵀ, then s = t Q_Gᵀ.
        let mut t = vec![F::ZERO; n * d_out];
        gemm_into(
            F::ONE,
            MatRef::new(a_hat.data(), n, d_in_bar, false),
            MatRef::new(&w_tilde, d_out, d_in_bar, true),
            F::ZERO,
            &mut t,
        );
        let mut s = Tensor::zeros(&[n, d_out]);
        gemm_into(
            F::ONE,
            MatRef::new(&t, n, d_out, false),
            MatRef::new(&basis.q_g, d_out, d_out, true),
            F::ZERO,
            s.data_mut(),
        );
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        let node = EigenDenseNode {
            x,
            w,
            b,
            layer,
            a_hat,
        };
        Ok(self.push(Op::EigenDense(Box::new(node)), s, &inputs))
    }
}

/// Backward of the eigenbasis dense layer, plus its (standard) capture when the sweep records
/// one.
pub(crate) fn eigen_dense_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    node: &EigenDenseNode<F>,
    g: Tensor<F>,
) -> Result<()> {
    let basis = sw
        .params()
        .eigenbasis(node.layer)
        .expect("the eigenbasis cannot change while a tape borrows the parameters");
    let (vx, vw) = (sw.value(node.x), sw.value(node.w));
    let (n, d_in) = vx.shape().dims2("dense backward")?;
    let d_out = vw.dims()[0];
    let d_in_bar = node.a_hat.dims()[1];
    // ĝ = g Q_G.
    let g_hat = matmul(&g, &basis.q_g, n, d_out, d_out);
    if sw.mode.param_grads && (sw.wants(node.w) || node.b.is_some_and(|b| sw.wants(b))) {
        // ∂L/∂W̃ = ĝᵀ â, split into the weight and bias columns.
        let mut dw_tilde = vec![F::ZERO; d_out * d_in_bar];
        gemm_into(
            F::ONE,
            MatRef::new(g_hat.data(), n, d_out, true),
            MatRef::new(node.a_hat.data(), n, d_in_bar, false),
            F::ZERO,
            &mut dw_tilde,
        );
        let (dw, db) = split_block(&dw_tilde, d_out, d_in, node.b.is_some());
        sw.add(node.w, dw)?;
        if let (Some(b), Some(db)) = (node.b, db) {
            sw.add(b, db)?;
        }
    }
    if sw.wants(node.x) {
        // ∂L/∂x = (ĝ W̃) Q_Aᵀ without the bias column: Q_A's first d_in rows.
        let w_tilde = stored_block(vw, node.b.map(|b| sw.value(b)));
        let mut z = vec![F::ZERO; n * d_in_bar];
        gemm_into(
            F::ONE,
            MatRef::new(g_hat.data(), n, d_out, false),
            MatRef::new(&w_tilde, d_out, d_in_bar, false),
            F::ZERO,
            &mut z,
        );
        let mut dx = Tensor::zeros(&[n, d_in]);
        gemm_into(
            F::ONE,
            MatRef::new(&z, n, d_in_bar, false),
            MatRef::new(&basis.q_a[..d_in * d_in_bar], d_in, d_in_bar, true),
            F::ZERO,
            dx.data_mut(),
        );
        sw.add(node.x, dx)?;
    }
    if sw.mode.capture {
        let scale = sw.batch_scale;
        let bias = node.b.is_some();
        sw.capture(
            node.layer,
            1,
            || homogeneous(vx, bias),
            g.map(|v| v * scale),
        );
    }
    Ok(())
}

/// `x · m` for row-major `x: [n, k]` and `m: [k, cols]`.
fn matmul<F: Float>(x: &Tensor<F>, m: &[F], n: usize, k: usize, cols: usize) -> Tensor<F> {
    let mut out = Tensor::zeros(&[n, cols]);
    gemm_into(
        F::ONE,
        MatRef::new(x.data(), n, k, false),
        MatRef::new(m, k, cols, false),
        F::ZERO,
        out.data_mut(),
    );
    out
}

/// The stored block `W̃ = [w̃ | b̃]`, row-major `[d_out, d_in']`.
fn stored_block<F: Float>(w: &Tensor<F>, b: Option<&Tensor<F>>) -> Vec<F> {
    let (d_out, d_in) = w.shape().as_matrix();
    let Some(b) = b else {
        return w.data().to_vec();
    };
    let mut out = Vec::with_capacity(d_out * (d_in + 1));
    for (row, &bias) in w.data().chunks(d_in.max(1)).zip(b.data()) {
        out.extend_from_slice(row);
        out.push(bias);
    }
    out
}

/// A row-major `[d_out, d_in']` block split into `[d_out, d_in]` and (with a bias) `[d_out]`.
fn split_block<F: Float>(
    block: &[F],
    d_out: usize,
    d_in: usize,
    bias: bool,
) -> (Tensor<F>, Option<Tensor<F>>) {
    if !bias {
        let w = Tensor::from_vec(block.to_vec(), &[d_out, d_in]).expect("d_out·d_in values");
        return (w, None);
    }
    let cols = d_in + 1;
    let mut w = Vec::with_capacity(d_out * d_in);
    let mut b = Vec::with_capacity(d_out);
    for row in block.chunks(cols) {
        w.extend_from_slice(&row[..d_in]);
        b.push(row[d_in]);
    }
    let w = Tensor::from_vec(w, &[d_out, d_in]).expect("d_out·d_in values");
    let b = Tensor::from_vec(b, &[d_out]).expect("d_out values");
    (w, Some(b))
}

fn check_shapes<F: Float>(
    d_in: usize,
    d_out: usize,
    w_in: usize,
    b: Option<&Tensor<F>>,
    basis: &LayerEigenbasis<F>,
) -> Result<()> {
    let d_in_bar = d_in + usize::from(b.is_some());
    let ok = w_in == d_in
        && b.is_none_or(|b| b.len() == d_out)
        && basis.q_a.len() == d_in_bar * d_in_bar
        && basis.q_g.len() == d_out * d_out;
    if ok {
        Ok(())
    } else {
        let msg = format!(
            "eigenbasis dense layer: input width {d_in}, weight [{d_out}, {w_in}], basis sizes {} and {}",
            basis.q_a.len(),
            basis.q_g.len()
        );
        Err(Error::invalid("dense", msg))
    }
}
