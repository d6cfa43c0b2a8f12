//! Moving a layer's gradient between the parameter tensors and its curvature block's matrix
//! `W̄ = [W | b]`, `[d_out, d_in (+1)]` in f64, bias as the last column.
//!
//! A conv weight `[C_out, C_in, kh, kw]` is row-major, so viewing it as `[C_out, C_in·kh·kw]` is
//! free: the patch columns of im2col use the same `(c_in, kh, kw)` order.

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::params::{LayerInfo, ParamStore};
use crate::tensor::Float;
use nalgebra::DMatrix;

/// `[∇W | ∇b]` of one layer as an f64 matrix, plus `weight_decay·[W | b]`.
pub fn gather<F: Float>(info: &LayerInfo, params: &ParamStore<F>, grads: &Gradients<F>, weight_decay: f64) -> Result<DMatrix<f64>> {
    let (d_out, d_in, cols) = (info.d_out, info.d_in, info.d_in_bar());
    let gw = grads.require(info.weight, params)?;
    let w = params.get(info.weight);
    if gw.len() != d_out * d_in {
        return Err(Error::invalid("natural gradient", format!("layer {} expects {d_out}x{d_in} weights, gradient has {}", info.name, gw.len())));
    }
    let mut m = DMatrix::<f64>::zeros(d_out, cols);
    for o in 0..d_out {
        for i in 0..d_in {
            let k = o * d_in + i;
            m[(o, i)] = gw.data()[k].to_f64() + weight_decay * w.data()[k].to_f64();
        }
    }
    if let Some(b) = info.bias {
        let (gb, bv) = (grads.require(b, params)?, params.get(b));
        for o in 0..d_out {
            m[(o, d_in)] = gb.data()[o].to_f64() + weight_decay * bv.data()[o].to_f64();
        }
    }
    Ok(m)
}

/// `θ ← θ − update` for the layer's weight and bias, from a `[d_out, d_in (+1)]` matrix.
pub fn apply<F: Float>(info: &LayerInfo, params: &mut ParamStore<F>, update: &DMatrix<f64>) {
    let (d_out, d_in) = (info.d_out, info.d_in);
    let w = params.get_mut(info.weight).data_mut();
    for o in 0..d_out {
        for i in 0..d_in {
            w[o * d_in + i] -= F::from_f64(update[(o, i)]);
        }
    }
    if let Some(b) = info.bias {
        let b = params.get_mut(b).data_mut();
        for o in 0..d_out {
            b[o] -= F::from_f64(update[(o, d_in)]);
        }
    }
}
