//! One batch, one layer: a block fitted to exactly that batch, the exact damped natural
//! gradient of the batch, and how far an approximate step is from it (the measures of
//! `tekfac inspect` and `tekfac::train::track`).
//!
//! With `F` the exact Fisher block of one capture ([`exact_fisher`]), `F̂` an approximation of
//! it, `∇` the layer's gradient `[d_out, d_in']` and `λ > 0`:
//!
//! ```text
//! fitted block       observe → refresh → rescale on the capture alone, decay 0     (fit)
//!                    (EKFAC's s* is then diag(Qᵀ F Q), the best diagonal in its basis)
//! fisher_error       ‖F − F̂‖_F / ‖F‖_F
//! u*                 unvec((F + λI)⁻¹ vec ∇)      the exact damped natural gradient
//! û                  the approximation's own damped step, precondition(∇, damping)
//! update_cosine      ⟨û, u*⟩ / (‖û‖ ‖u*‖)          1 when the direction is right
//! update_error       ‖û − u*‖ / ‖u*‖               0 when direction and length are right
//! length_ratio       ‖û‖ / ‖u*‖                    > 1: û is longer than the exact step
//! ```
//!
//! `vec` stacks rows (see [`exact`](super::exact)). `F + λI` is positive definite for `λ > 0`,
//! so `u*` is one Cholesky solve; `O((d_out·d_in')³)`, for small layers only.

use super::block::CurvatureBlock;
use super::damping::Damping;
use super::exact::{unvec_rows, vec_rows};
use super::variant::Variant;
use crate::autograd::LayerCapture;
use crate::error::{Error, Result};
use crate::params::LayerInfo;
use nalgebra::DMatrix;

/// A block of `variant` fitted to one capture alone: decay 0, then observe → refresh →
/// rescale, so its `to_dense()` approximates exactly that capture's Fisher block.
///
/// ```
/// use tekfac::curvature::{Variant, exact::exact_fisher, probe};
/// use tekfac::{LayerCapture, LayerId, LayerInfo, LayerKind, ParamId, Tensor};
///
/// let info = LayerInfo { name: "fc".into(), kind: LayerKind::Dense, weight: ParamId(0),
///                        bias: Some(ParamId(1)), d_out: 2, d_in: 1 };
/// let a = Tensor::<f64>::from_vec(vec![0.5, 1.0], &[1, 2])?; // one example: ā = [a, 1]
/// let g = Tensor::<f64>::from_vec(vec![1.0, -0.3], &[1, 2])?;
/// let capture = LayerCapture { layer: tekfac::LayerId(0), a, g: vec![g], rows_per_example: 1 };
/// let block = probe::fit(Variant::Ekfac, &info, &capture)?;
/// // One example: every variant is exact (identity 11).
/// let error = probe::fisher_error(&exact_fisher(&capture)?, &block.to_dense()?);
/// assert!(error < 1e-12);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub fn fit(
    variant: Variant,
    info: &LayerInfo,
    capture: &LayerCapture<f64>,
) -> Result<CurvatureBlock> {
    let mut block = CurvatureBlock::new(variant, info, 0.0);
    block.observe(capture)?;
    block.refresh()?;
    block.rescale(capture)?;
    Ok(block)
}

/// `‖F − F̂‖_F / ‖F‖_F` (0 when both are zero).
pub fn fisher_error(exact: &DMatrix<f64>, approx: &DMatrix<f64>) -> f64 {
    relative(&(exact - approx), exact.norm())
}

/// `u* = unvec((F + λI)⁻¹ vec ∇)`, the exact damped natural gradient of one block.
///
/// Errors unless `F` is `[d, d]` with `d = d_out·d_in'` of `grad`, and `λ` is finite and > 0.
pub fn exact_natural_gradient(
    exact: &DMatrix<f64>,
    grad: &DMatrix<f64>,
    lambda: f64,
) -> Result<DMatrix<f64>> {
    const OP: &str = "exact_natural_gradient";
    let d = grad.len();
    if exact.shape() != (d, d) {
        let msg = format!(
            "F is {}×{}, the gradient has {d} entries",
            exact.nrows(),
            exact.ncols()
        );
        return Err(Error::invalid(OP, msg));
    }
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(Error::invalid(OP, format!("λ must be > 0, got {lambda}")));
    }
    let damped = exact + DMatrix::identity(d, d) * lambda;
    let chol = damped
        .cholesky()
        .ok_or_else(|| Error::invalid(OP, "F + λI is not positive definite (non-finite F?)"))?;
    Ok(unvec_rows(
        &chol.solve(&vec_rows(grad)),
        grad.nrows(),
        grad.ncols(),
    ))
}

/// How one block's approximation compares with the exact one on one batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// `‖F − F̂‖_F / ‖F‖_F`.
    pub fisher_error: f64,
    /// `cos(û, u*)`.
    pub update_cosine: f64,
    /// `‖û − u*‖ / ‖u*‖`.
    pub update_error: f64,
    /// `‖û‖ / ‖u*‖` (with the cosine, it says whether an error is one of length).
    pub length_ratio: f64,
}

impl Agreement {
    /// Compares `block` (its `F̂`, and its step under `damping`) with `exact = F` and
    /// `exact_step = u*` for the gradient `grad`.
    pub fn of(
        block: &CurvatureBlock,
        damping: &Damping,
        exact: &DMatrix<f64>,
        exact_step: &DMatrix<f64>,
        grad: &DMatrix<f64>,
    ) -> Result<Self> {
        let step = block.precondition(grad, damping)?;
        let (update_cosine, update_error) = compare_steps(&step, exact_step);
        Ok(Agreement {
            fisher_error: fisher_error(exact, &block.to_dense()?),
            update_cosine,
            update_error,
            length_ratio: relative(&step, exact_step.norm()),
        })
    }
}

/// `(cos(û, u*), ‖û − u*‖/‖u*‖)`; the cosine is 0 when either step is zero.
pub fn compare_steps(step: &DMatrix<f64>, exact_step: &DMatrix<f64>) -> (f64, f64) {
    let norms = step.norm() * exact_step.norm();
    let cosine = if norms > 0.0 {
        step.dot(exact_step) / norms
    } else {
        0.0
    };
    (cosine, relative(&(step - exact_step), exact_step.norm()))
}

/// `‖x‖ / scale`, with `0/0 = 0`.
fn relative(x: &DMatrix<f64>, scale: f64) -> f64 {
    let n = x.norm();
    if n == 0.0 { 0.0 } else { n / scale }
}
