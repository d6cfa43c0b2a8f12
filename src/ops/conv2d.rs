//! The fused 2-D convolution `Y = conv(X, W) + b` via im2col and one matrix product.
//!
//! Shapes: `X: [N, C_in, H, W]`, `W: [C_out, C_in, kh, kw]`, `b: [C_out]`, `Y: [N, C_out, H_out,
//! W_out]`. With `ā` the patch rows of [`im2col`] (rows `(n, oh, ow)`, a trailing 1 when there is
//! a bias) and `W̄ = [W | b]` viewed as `[C_out, C_in·kh·kw (+1)]`:
//!
//! - forward: `Y_n = W̄ · ā_nᵀ` for every example, NCHW (the bias comes out of the product);
//! - backward, with `g = dY` brought back to rows `[N·H_out·W_out, C_out]`:
//!   `dW̄ = gᵀ · ā` (bias gradient = its last column), `dX = col2im(g · W)`;
//!   how each product is laid out for speed is the business of [`crate::kernels::conv`];
//! - capture: the same `ā` and `g` rows, `g` times the batch size (see `dense.rs`), with
//!   `H_out·W_out` rows per example, so `DW_n = Σ_t g_{n,t} ā_{n,t}ᵀ` (spec §2).
//!
//! The patches are kept on the tape node: the weight gradient and the capture both need them.

use crate::autograd::op::Op;
use crate::autograd::{LayerCapture, Node, Sweep, Tape, Var};
use crate::error::{Error, Result};
use crate::kernels::conv::{
    conv_forward_new, input_grad, per_example_block, weight_grad, weight_grad_per_example,
};
use crate::kernels::im2col::{ConvGeometry, im2col_new};
use crate::kernels::transpose::transpose_new;
use crate::params::LayerId;
use crate::tensor::{Float, Tensor};
use std::borrow::Cow;

/// What a convolution node keeps for its backward sweep.
pub(crate) struct Conv2dNode<F: Float> {
    x: Var,
    w: Var,
    b: Option<Var>,
    pub(crate) layer: Option<LayerId>,
    geom: ConvGeometry,
    /// `ā`: `[N·H_out·W_out, C_in·kh·kw (+1)]` patch rows, with the ones column when biased.
    cols: Tensor<F>,
}

impl<F: Float> Tape<'_, F> {
    /// 2-D convolution of `x: [N, C_in, H, W]` with `w: [C_out, C_in, kh, kw]` and optional
    /// `b: [C_out]`, stride and zero padding per axis (rows, cols). `layer` names the curvature
    /// block whose statistics this op captures (`None`: never captured).
    pub fn conv2d(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        layer: Option<LayerId>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Var> {
        self.check_var(x, "conv2d")?;
        self.check_var(w, "conv2d")?;
        let (vx, vw, vb) = (self.value(x), self.value(w), b.map(|b| self.value(b)));
        let geom = conv_geometry(vx, vw, vb, stride, padding)?;
        let (out, cols) = conv2d_forward(vx, vw, vb, &geom);
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        let node = Conv2dNode {
            x,
            w,
            b,
            layer,
            geom,
            cols,
        };
        Ok(self.push(Op::Conv2d(Box::new(node)), out, &inputs))
    }
}

/// Checks the shapes of a convolution and returns its geometry.
fn conv_geometry<F: Float>(
    x: &Tensor<F>,
    w: &Tensor<F>,
    b: Option<&Tensor<F>>,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<ConvGeometry> {
    let (_, c_in, h, wd) = x.shape().dims4("conv2d")?;
    let (c_out, w_in, kh, kw) = w.shape().dims4("conv2d")?;
    if w_in != c_in {
        return Err(Error::ShapeMismatch {
            op: "conv2d",
            why: "input channels differ from the weight's second dimension",
            left: x.shape(),
            right: w.shape(),
        });
    }
    if let Some(b) = b.filter(|b| b.dims() != [c_out]) {
        return Err(Error::ShapeMismatch {
            op: "conv2d",
            why: "bias length differs from the weight's output channels",
            left: w.shape(),
            right: b.shape(),
        });
    }
    ConvGeometry::new("conv2d", c_in, (h, wd), (kh, kw), stride, padding)
}

/// `[W | b]` as a `[C_out, C_in·kh·kw + 1]` matrix (`W` itself, viewed as `[C_out, C_in·kh·kw]`,
/// without a bias).
fn weight_bar<'a, F: Float>(w: &'a Tensor<F>, b: Option<&Tensor<F>>) -> Cow<'a, [F]> {
    let Some(b) = b else {
        return Cow::Borrowed(w.data());
    };
    let k = w.len() / w.dims()[0].max(1);
    let mut out = Vec::with_capacity(w.len() + b.len());
    for (row, bias) in w.data().chunks_exact(k.max(1)).zip(b.data()) {
        out.extend_from_slice(row);
        out.push(*bias);
    }
    Cow::Owned(out)
}

/// Forward: the output `[N, C_out, H_out, W_out]` and the patch rows `ā` kept for backward.
/// Both are written once, into buffers that are not zero-filled first.
fn conv2d_forward<F: Float>(
    x: &Tensor<F>,
    w: &Tensor<F>,
    b: Option<&Tensor<F>>,
    geom: &ConvGeometry,
) -> (Tensor<F>, Tensor<F>) {
    let (n, c_out) = (x.dims()[0], w.dims()[0]);
    let (rows, ld) = (
        n * geom.locations(),
        geom.patch_len() + usize::from(b.is_some()),
    );
    let cols = im2col_new(x.data(), geom, b.is_some());
    let (oh, ow) = geom.out_size;
    let out = conv_forward_new(&cols, &weight_bar(w, b), geom, (n, c_out));
    (
        Tensor::from_vec(out, &[n, c_out, oh, ow]).expect("N·C_out·L values"),
        Tensor::from_vec(cols, &[rows, ld]).expect("rows·ld values"),
    )
}

/// Backward of the convolution, plus its capture when the sweep records one.
pub(crate) fn conv2d_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    node: &Conv2dNode<F>,
    g: Tensor<F>,
) -> Result<()> {
    let geom = &node.geom;
    let capture = node.layer.filter(|_| sw.mode.capture);
    // NOTE: when capturing, the rows are scaled by the batch size once, here, and the products
    // below undo it with α = 1/scale; so the captured `g` costs no extra pass over the data.
    let scale = if capture.is_some() {
        sw.batch_scale
    } else {
        F::ONE
    };
    let block = per_example_block(g.dims()[1], node.cols.dims()[1], geom.locations());
    // NOTE: the rows layout `[N·L, C_out]` costs a transpose; it is made only when the capture,
    // the input gradient or the large-layer weight gradient reads it.
    let needs_rows =
        capture.is_some() || sw.wants(node.x) || (sw.mode.param_grads && block.is_none());
    let g_rows = needs_rows.then(|| output_rows(&g, geom.locations(), scale));
    if sw.mode.param_grads {
        let dw_bar = weight_gradient(node, &g, g_rows.as_ref(), block, scale);
        add_weight_grads(sw, node, dw_bar)?;
    }
    drop(g);
    let Some(g_rows) = g_rows else {
        return Ok(());
    };
    if sw.wants(node.x) {
        let mut dx = Tensor::zeros(sw.value(node.x).dims());
        let w = sw.value(node.w).data();
        input_grad(g_rows.data(), w, geom, F::ONE / scale, dx.data_mut());
        sw.add(node.x, dx)?;
    }
    if let Some(layer) = capture {
        capture_rows(sw, node, layer, g_rows);
    }
    Ok(())
}

/// `scale·g` from NCHW `[N, C_out, L]` to rows `[N·L, C_out]`, in the patch rows' order.
fn output_rows<F: Float>(g: &Tensor<F>, locs: usize, scale: F) -> Tensor<F> {
    let c_out = g.dims()[1];
    let rows = transpose_new(g.data(), c_out, locs, scale);
    Tensor::from_vec(rows, &[g.len() / c_out.max(1), c_out]).expect("as many values as g")
}

/// `dW̄ = gᵀ·ā`, per example from the NCHW `g` for a small layer (`block` is set), else from the
/// rows (scaled by `scale`).
fn weight_gradient<F: Float>(
    node: &Conv2dNode<F>,
    g: &Tensor<F>,
    g_rows: Option<&Tensor<F>>,
    block: Option<usize>,
    scale: F,
) -> Vec<F> {
    let (c_out, ld) = (g.dims()[1], node.cols.dims()[1]);
    match (block, g_rows) {
        (Some(block), _) => {
            let shape = (c_out, ld, node.geom.locations());
            weight_grad_per_example(g.data(), node.cols.data(), shape, block, F::ONE)
        }
        (None, Some(rows)) => weight_grad(rows.data(), node.cols.data(), c_out, ld, F::ONE / scale),
        (None, None) => unreachable!("conv2d_backward makes the rows whenever dW̄ needs them"),
    }
}

/// Hands the layer's rows to the sweep's captures: `g` now, `ā` copied, or, when the tape is
/// consumed, moved afterwards by [`hand_over_patches`].
fn capture_rows<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    node: &Conv2dNode<F>,
    layer: LayerId,
    g_rows: Tensor<F>,
) {
    let (cols, later) = (&node.cols, sw.tape_consumed);
    // NOTE: the patch rows are the largest tensor of the layer (26 MB for the CNN's second conv
    // at batch 128); when the tape is consumed they are moved, not copied.
    let a = || {
        if later {
            Tensor::zeros(&[0, cols.dims()[1]])
        } else {
            cols.clone()
        }
    };
    sw.capture(layer, node.geom.locations(), a, g_rows);
}

/// Moves each convolution's patch rows from the consumed tape into its capture, where they were
/// left out (empty) by `conv2d_backward`. Nodes go in sweep (reverse) order, so a layer applied
/// twice gets the rows of the application captured first, as `Sweep::capture` does.
pub(crate) fn hand_over_patches<F: Float>(nodes: Vec<Node<F>>, captures: &mut [LayerCapture<F>]) {
    for node in nodes.into_iter().rev() {
        let Op::Conv2d(conv) = node.op else { continue };
        let target = captures
            .iter_mut()
            .find(|c| Some(c.layer) == conv.layer && c.a.is_empty() && !c.g.is_empty());
        if let Some(c) = target {
            c.a = conv.cols;
        }
    }
}

/// Splits `dW̄ = [dW | db]` (`[C_out, ld]`) into the weight and (last column) bias gradients.
fn add_weight_grads<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    node: &Conv2dNode<F>,
    dw_bar: Vec<F>,
) -> Result<()> {
    let w_dims = sw.value(node.w).dims();
    let Some(b) = node.b else {
        return sw.add(node.w, Tensor::from_vec(dw_bar, w_dims)?);
    };
    let ld = node.cols.dims()[1];
    let db: Vec<F> = dw_bar.chunks_exact(ld).map(|row| row[ld - 1]).collect();
    let dw: Vec<F> = dw_bar
        .chunks_exact(ld)
        .flat_map(|row| &row[..ld - 1])
        .copied()
        .collect();
    sw.add(node.w, Tensor::from_vec(dw, w_dims)?)?;
    let c_out = db.len();
    sw.add(b, Tensor::from_vec(db, &[c_out])?)
}
