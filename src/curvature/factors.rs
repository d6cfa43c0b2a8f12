//! The two Kronecker factors of a block, estimated from one capture (the first of the two places
//! where the variants differ).
//!
//! Rows `r = (n, t)` of a capture with `N` examples, `T` locations per example and sweeps `s`.
//! Every estimate is a sum over locations and sweeps, averaged over examples:
//!
//! **K-FAC / EKFAC** (spec §3.1, §3.3; KFC for conv: input factor *summed* over locations,
//! output factor *averaged* over locations):
//!
//! ```text
//! A = (1/N)   Σ_r ā_r ā_rᵀ                       [d_in', d_in']
//! G = (1/NT)  Σ_r Σ_s g_{s,r} g_{s,r}ᵀ            [d_out, d_out]      trace_scale = 1
//! ```
//!
//! **TKFAC / TEKFAC** raw numerators (spec §5.1 Eq. 4.9 with `tr Φ = tr Ψ = 1`; conv under the
//! spatially-uncorrelated Assumption 4.1, spec §5.2: sums over locations):
//!
//! ```text
//! δ     = (1/N) Σ_r Σ_s ‖ā_r‖² ‖g_{s,r}‖²          = tr F  (dense; conv: under the assumption)
//! δΦ    = (1/N) Σ_r (Σ_s ‖g_{s,r}‖²) ā_r ā_rᵀ       [d_in', d_in']   (Φ_raw, a_factor)
//! δΨ    = (1/N) Σ_r Σ_s ‖ā_r‖² g_{s,r} g_{s,r}ᵀ     [d_out, d_out]   (Ψ_raw, g_factor)
//! ```
//!
//! so `tr(δΦ) = tr(δΨ) = δ` for every batch, and for any linear average of batches
//! (identity 15). In both cases the approximation is `F̂ = (g_factor ⊗ a_factor) / trace_scale`
//! in row-major vec order. The scale of the conv factors only matters through the damping;
//! the eigenvectors do not depend on it (spec §3.3). Identity 18 pins these normalisations.

use super::average::{Blend, Shaped};
use super::exact::kron_rows;
use super::rows::CaptureRows;
use crate::autograd::LayerCapture;
use crate::error::Result;
use crate::tensor::Float;
use nalgebra::{DMatrix, DVector};

/// The averaged statistics of one block: `F̂ = (g_factor ⊗ a_factor) / trace_scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct KroneckerFactors {
    /// Input side, `[d_in', d_in']`: `A` (K-FAC) or `δΦ` (TKFAC raw numerator).
    pub a_factor: DMatrix<f64>,
    /// Output side, `[d_out, d_out]`: `G` (K-FAC) or `δΨ` (TKFAC raw numerator).
    pub g_factor: DMatrix<f64>,
    /// `1` for K-FAC/EKFAC, `δ = E[‖ā‖²‖g‖²]` for TKFAC/TEKFAC.
    pub trace_scale: f64,
}

impl KroneckerFactors {
    /// The batch estimate of a capture: TKFAC's raw numerators when `trace_restricted`, else
    /// K-FAC's `A`, `G` (see [`Variant::trace_restricted`](super::Variant::trace_restricted)).
    pub fn from_capture<F: Float>(
        trace_restricted: bool,
        capture: &LayerCapture<F>,
    ) -> Result<Self> {
        let rows = CaptureRows::from_capture(capture)?;
        Ok(if trace_restricted {
            Self::tkfac(&rows)
        } else {
            Self::kfac(&rows)
        })
    }

    /// K-FAC (KFC for conv): `A = Σ_r ā āᵀ / N`, `G = Σ_{r,s} g gᵀ / (N·T)`, `trace_scale = 1`.
    pub fn kfac(rows: &CaptureRows) -> Self {
        let n = rows.examples as f64;
        let nt = (rows.examples * rows.locations) as f64;
        let a_factor = symmetric(rows.a.transpose() * &rows.a) / n;
        let g_sum = rows
            .g
            .iter()
            .map(|g| g.transpose() * g)
            .reduce(|x, y| x + y);
        // NOTE: CaptureRows guarantees at least one sweep.
        let g_factor = symmetric(g_sum.expect("a capture has at least one sweep")) / nt;
        KroneckerFactors {
            a_factor,
            g_factor,
            trace_scale: 1.0,
        }
    }

    /// TKFAC raw numerators: `δ`, `δΦ = E[‖g‖²āāᵀ]`, `δΨ = E[‖ā‖²ggᵀ]` (sums over locations).
    pub fn tkfac(rows: &CaptureRows) -> Self {
        let n = rows.examples as f64;
        let a_norms = row_norms_sq(&rows.a);
        let g_norms = rows
            .g
            .iter()
            .map(row_norms_sq)
            .reduce(|x, y| x + y)
            .expect("a capture has at least one sweep");
        let trace_scale = a_norms.dot(&g_norms) / n;
        let a_factor = weighted_gram(&rows.a, &g_norms) / n;
        let g_sum = rows
            .g
            .iter()
            .map(|g| weighted_gram(g, &a_norms))
            .reduce(|x, y| x + y);
        let g_factor = g_sum.expect("a capture has at least one sweep") / n;
        KroneckerFactors {
            a_factor,
            g_factor,
            trace_scale,
        }
    }

    /// True when every entry and the trace scale are finite.
    pub fn is_finite(&self) -> bool {
        self.trace_scale.is_finite()
            && self.a_factor.iter().all(|x| x.is_finite())
            && self.g_factor.iter().all(|x| x.is_finite())
    }

    /// `(d_out, d_in')` of the block these factors describe.
    pub fn dims(&self) -> (usize, usize) {
        (self.g_factor.nrows(), self.a_factor.nrows())
    }

    /// The dense `F̂ = (g_factor ⊗ a_factor) / trace_scale`, row-major vec order (tests only:
    /// `O((d_out·d_in')²)`). Zero when `trace_scale` is not positive.
    pub fn to_dense(&self) -> DMatrix<f64> {
        let k = kron_rows(&self.g_factor, &self.a_factor);
        if self.trace_scale > 0.0 {
            k / self.trace_scale
        } else {
            k * 0.0
        }
    }
}

impl Shaped for KroneckerFactors {
    /// `(d_out, d_in')`.
    fn shape(&self) -> (usize, usize) {
        self.dims()
    }
}

impl Blend for KroneckerFactors {
    /// Blends all three with the same coefficients, so `tr(δΦ) = tr(δΨ) = δ` survives.
    fn blend(&mut self, c_old: f64, c_new: f64, batch: &Self) {
        self.a_factor.blend(c_old, c_new, &batch.a_factor);
        self.g_factor.blend(c_old, c_new, &batch.g_factor);
        self.trace_scale.blend(c_old, c_new, &batch.trace_scale);
    }
}

/// `‖x_r‖²` for every row `r` of `x`.
pub fn row_norms_sq(x: &DMatrix<f64>) -> DVector<f64> {
    x.component_mul(x).column_sum()
}

/// `xᵀ diag(w) x` (one GEMM), symmetrised.
fn weighted_gram(x: &DMatrix<f64>, w: &DVector<f64>) -> DMatrix<f64> {
    let mut scaled = x.clone();
    for mut column in scaled.column_iter_mut() {
        column.component_mul_assign(w);
    }
    symmetric(x.transpose() * scaled)
}

/// `(m + mᵀ)/2`: removes the rounding asymmetry of a GEMM before the eigensolver sees it.
fn symmetric(m: DMatrix<f64>) -> DMatrix<f64> {
    (&m + m.transpose()) * 0.5
}
