//! Moving a layer's gradient between the parameter tensors and its curvature block's matrix
//! `W̄ = [W | b]`, `[d_out, d_in (+1)]`, row-major, bias as the last column.
//!
//! A conv weight `[C_out, C_in, kh, kw]` is row-major, so viewing it as `[C_out, C_in·kh·kw]` is
//! free: the patch columns of im2col use the same `(c_in, kh, kw)` order.

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::params::{LayerInfo, ParamStore};
use crate::tensor::Float;

/// `[∇W | ∇b] + weight_decay·[W | b]` of one layer, row-major `[d_out, d_in']`.
pub fn gather<F: Float>(
    info: &LayerInfo,
    params: &ParamStore<F>,
    grads: &Gradients<F>,
    weight_decay: f64,
) -> Result<Vec<F>> {
    let (d_out, d_in, cols) = (info.d_out, info.d_in, info.d_in_bar());
    let gw = grads.require(info.weight, params)?;
    let w = params.get(info.weight);
    if gw.len() != d_out * d_in {
        let msg = format!(
            "layer {} expects {d_out}x{d_in} weights, its gradient has {} values",
            info.name,
            gw.len()
        );
        return Err(Error::invalid("natural gradient", msg));
    }
    let wd = F::from_f64(weight_decay);
    let mut m = vec![F::ZERO; d_out * cols];
    for (o, row) in m.chunks_mut(cols).enumerate() {
        let (g, w) = (
            &gw.data()[o * d_in..(o + 1) * d_in],
            &w.data()[o * d_in..(o + 1) * d_in],
        );
        row.iter_mut()
            .zip(g.iter().zip(w))
            .for_each(|(r, (&g, &w))| *r = g + wd * w);
    }
    if let Some(b) = info.bias {
        let (gb, bv) = (grads.require(b, params)?, params.get(b));
        for (o, row) in m.chunks_mut(cols).enumerate() {
            row[d_in] = gb.data()[o] + wd * bv.data()[o];
        }
    }
    Ok(m)
}

/// `θ ← θ − update` for the layer's weight and bias, from a row-major `[d_out, d_in']` slice.
/// Returns whether every value written is finite.
pub fn apply<F: Float>(info: &LayerInfo, params: &mut ParamStore<F>, update: &[F]) -> bool {
    let (d_in, cols) = (info.d_in, info.d_in_bar());
    let mut finite = true;
    let mut step = |x: &mut F, u: F| {
        *x -= u;
        finite &= x.is_finite();
    };
    let w = params.get_mut(info.weight).data_mut();
    for (wrow, urow) in w.chunks_mut(d_in).zip(update.chunks(cols)) {
        wrow.iter_mut().zip(urow).for_each(|(w, &u)| step(w, u));
    }
    if let Some(b) = info.bias {
        let b = params.get_mut(b).data_mut();
        b.iter_mut()
            .zip(update.chunks(cols))
            .for_each(|(b, urow)| step(b, urow[d_in]));
    }
    finite
}
