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
//! depend on how the weights are stored. `â` is kept on the node for the backward sweep; a
//! capturing sweep also hands out `â` and its `ĝ` ([`RotatedRows`]), which EKFAC's and TEKFAC's
//! re-scaling would otherwise form again from `ā` and `g`. `W̃ = [w̃ | b̃]` and `â`'s weight and
//! bias columns are read in place by strided GEMMs, never copied into one block.
//! `tests/ng_eigenbasis_layers.rs` pins this op to the plain dense layer.

use crate::autograd::op::Op;
use crate::autograd::{RotatedRows, Sweep, Tape, Var};
use crate::error::{Error, Result};
use crate::kernels::gemm::{
    MatRef, Strided, gemm_into, gemm_new, gemm_strided_into, gemm_strided_new,
};
use crate::ops::activation::relu_backward;
use crate::ops::dense::{homogeneous, relu_inplace};
use crate::params::{LayerEigenbasis, LayerId};
use crate::tensor::{Float, Tensor};

/// What the backward of an eigenbasis dense node needs.
pub(crate) struct EigenDenseNode<F: Float> {
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) b: Option<Var>,
    pub(crate) layer: LayerId,
    /// A ReLU fused onto the output (as [`Tape::dense_relu`]).
    pub(crate) relu: bool,
    /// `â = ā Q_A`, `[n, d_in']`.
    pub(crate) a_hat: Tensor<F>,
}

impl<F: Float> Tape<'_, F> {
    /// [`Tape::dense`] for a layer with an eigenbasis: `s = ((ā Q_A) W̃ᵀ) Q_Gᵀ`, then
    /// `max(s, 0)` in place when `relu` (the fused [`Tape::dense_relu`]).
    pub(crate) fn eigen_dense(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        layer: LayerId,
        relu: bool,
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
        let a_hat = rotate_inputs(xv, &basis.q_a, bv.is_some());
        let t = times_stored_transposed(&a_hat, wv, bv);
        // s = t Q_Gᵀ.
        let s = gemm_new(
            F::ONE,
            MatRef::new(&t, n, d_out, false),
            MatRef::new(&basis.q_g, d_out, d_out, true),
        );
        let mut s = Tensor::from_vec(s, &[n, d_out])?;
        if relu {
            relu_inplace(s.data_mut());
        }
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        let node = EigenDenseNode {
            x,
            w,
            b,
            layer,
            relu,
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
    y: &Tensor<F>,
    g: Tensor<F>,
) -> Result<()> {
    let g = if node.relu { relu_backward(y, g) } else { g };
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
        // ∂L/∂W̃ = ĝᵀ â, its weight and bias columns read in place from â.
        let g_t = Strided::whole(g_hat.data(), n, d_out, true);
        let a_hat = |cols: std::ops::Range<usize>| {
            Strided::new(
                node.a_hat.data(),
                cols.start,
                n,
                cols.len(),
                d_in_bar,
                false,
            )
        };
        let dw = gemm_strided_new(F::ONE, g_t, a_hat(0..d_in));
        sw.add(node.w, Tensor::from_vec(dw, &[d_out, d_in])?)?;
        if let Some(b) = node.b {
            let db = gemm_strided_new(F::ONE, g_t, a_hat(d_in..d_in_bar));
            sw.add(b, Tensor::from_vec(db, &[d_out])?)?;
        }
    }
    if sw.wants(node.x) {
        // ∂L/∂x = (ĝ W̃) Q_Aᵀ without the bias column: Q_A's first d_in rows.
        let z = times_stored(&g_hat, vw, node.b.map(|b| sw.value(b)));
        let dx = gemm_new(
            F::ONE,
            MatRef::new(&z, n, d_in_bar, false),
            MatRef::new(&basis.q_a[..d_in * d_in_bar], d_in, d_in_bar, true),
        );
        sw.add(node.x, Tensor::from_vec(dx, &[n, d_in])?)?;
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
        // The same rows in the basis, for the re-scaling: ĝ of the batch-scaled g is the
        // batch-scaled ĝ (exactly so for a power-of-two batch).
        let g_hat = g_hat.map(|v| v * scale);
        match sw.rotated.iter_mut().find(|r| r.layer == node.layer) {
            Some(r) => r.g_hat.push(g_hat),
            None => sw.rotated.push(RotatedRows {
                layer: node.layer,
                a_hat: node.a_hat.clone(),
                g_hat: vec![g_hat],
            }),
        }
    }
    Ok(())
}

/// `x · m` for row-major `x: [n, k]` and `m: [k, cols]`.
fn matmul<F: Float>(x: &Tensor<F>, m: &[F], n: usize, k: usize, cols: usize) -> Tensor<F> {
    let out = gemm_new(
        F::ONE,
        MatRef::new(x.data(), n, k, false),
        MatRef::new(m, k, cols, false),
    );
    Tensor::from_vec(out, &[n, cols]).expect("n·cols values")
}

/// `â = ā Q_A` for `ā = [x | 1]` (with a bias) or `x`, without forming `ā`: with a bias, each
/// row starts as Q_A's last row (the `1` column's contribution) and `x · Q_A[..d_in]`
/// accumulates onto it (β = 1).
fn rotate_inputs<F: Float>(x: &Tensor<F>, q_a: &[F], bias: bool) -> Tensor<F> {
    let (n, d_in) = x.shape().as_matrix();
    let d_in_bar = d_in + usize::from(bias);
    if !bias {
        return matmul(x, q_a, n, d_in, d_in_bar);
    }
    let last = &q_a[d_in * d_in_bar..];
    let mut out = Vec::with_capacity(n * d_in_bar);
    (0..n).for_each(|_| out.extend_from_slice(last));
    gemm_into(
        F::ONE,
        MatRef::new(x.data(), n, d_in, false),
        MatRef::new(&q_a[..d_in * d_in_bar], d_in, d_in_bar, false),
        F::ONE,
        &mut out,
    );
    Tensor::from_vec(out, &[n, d_in_bar]).expect("n·d_in' values")
}

/// `â W̃ᵀ = â[:, ..d_in] w̃ᵀ + â[:, d_in] b̃ᵀ` for the stored `W̃ = [w̃ | b̃]`, reading `â`'s
/// columns in place: the bias term (an outer product) is written first and the weight product
/// accumulates onto it.
fn times_stored_transposed<F: Float>(
    a_hat: &Tensor<F>,
    w: &Tensor<F>,
    b: Option<&Tensor<F>>,
) -> Vec<F> {
    let (n, d_in_bar) = a_hat.shape().as_matrix();
    let (d_out, d_in) = w.shape().as_matrix();
    let w_t = Strided::whole(w.data(), d_out, d_in, true);
    let a_w = Strided::new(a_hat.data(), 0, n, d_in, d_in_bar, false);
    let Some(b) = b else {
        return gemm_strided_new(F::ONE, a_w, w_t);
    };
    let mut out = Vec::with_capacity(n * d_out);
    for row in a_hat.data().chunks_exact(d_in_bar) {
        let last = row[d_in];
        out.extend(b.data().iter().map(|&b| last * b));
    }
    gemm_strided_into(F::ONE, a_w, w_t, F::ONE, &mut out, 0, d_out);
    out
}

/// `ĝ W̃ = [ĝ w̃ | ĝ b̃]`, `[n, d_in']`, each part written in place into its columns.
fn times_stored<F: Float>(g_hat: &Tensor<F>, w: &Tensor<F>, b: Option<&Tensor<F>>) -> Vec<F> {
    let (n, d_out) = g_hat.shape().as_matrix();
    let d_in = w.shape().as_matrix().1;
    let d_in_bar = d_in + usize::from(b.is_some());
    let g = Strided::whole(g_hat.data(), n, d_out, false);
    let Some(b) = b else {
        return gemm_strided_new(F::ONE, g, Strided::whole(w.data(), d_out, d_in, false));
    };
    let mut z = vec![F::ZERO; n * d_in_bar];
    let w = Strided::whole(w.data(), d_out, d_in, false);
    gemm_strided_into(F::ONE, g, w, F::ZERO, &mut z, 0, d_in_bar);
    let b = Strided::whole(b.data(), d_out, 1, false);
    gemm_strided_into(F::ONE, g, b, F::ZERO, &mut z, d_in, d_in_bar);
    z
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
