//! `CurvatureBlock`: one layer's Fisher approximation, shared by all four variants.
//!
//! ```text
//! observe(capture)   factors ← EMA of KroneckerFactors::from_capture           (factors.rs)
//! refresh()          (Q_A, d_a, Q_G, d_g) ← eigh(a_factor), eigh(g_factor)     (basis.rs)
//!                    s*/Θ re-seeded := d_g d_aᵀ / trace_scale                 (spec §1.5)
//! rescale(capture)   s*/Θ ← EMA of (1/N) Σ_{n,s} (Q_Gᵀ DW_{n,s} Q_A)^∘2        (correction.rs)
//! precondition(∇)    Q_G [ (Q_Gᵀ ∇ Q_A) ⊘ damped(D) ] Q_Aᵀ = unvec((F̂ + damping)⁻¹ vec ∇)
//! ```
//!
//! `D` ([`CurvatureBlock::eigenvalues`]) is `d_g d_aᵀ / trace_scale` (K-FAC, TKFAC) or the
//! corrected average (EKFAC's `s*`, TEKFAC's `Θ`): with the choice of factors, the only places
//! the variants differ. `F̂ = (Q_G ⊗ Q_A) diag(vec D) (Q_G ⊗ Q_A)ᵀ` ([`CurvatureBlock::to_dense`]).
//!
//! **Non-finite statistics** (spec §1.9): `refresh` refuses non-finite factors, keeps the
//! previous basis and diagonal, returns `Err`, and drops the poisoned running averages so the
//! next observation starts them afresh (an EMA would otherwise carry the NaN forever).
//! `rescale` refuses a non-finite batch and keeps the previous `s*`/`Θ`.

use super::average::MovingAverage;
use super::basis::{BasisFailure, KroneckerBasis};
use super::correction::corrected_batch;
use super::damping::{Damping, trace_adaptive};
use super::factors::KroneckerFactors;
use super::fast::FastBasis;
use super::rows::CaptureRows;
use super::variant::Variant;
use crate::autograd::LayerCapture;
use crate::error::{Error, Result};
use crate::params::{LayerInfo, LayerKind};
use crate::tensor::{Float, Shape};
use nalgebra::{DMatrix, DVector};

/// The curvature state of one dense or conv layer (all f64).
#[derive(Clone, Debug)]
pub struct CurvatureBlock {
    name: String,
    variant: Variant,
    d_out: usize,
    d_in_bar: usize,
    conv: bool,
    /// Running average of the factors (`A, G` or `δΦ, δΨ, δ`).
    pub(super) factors: MovingAverage<KroneckerFactors>,
    /// The eigenbasis of the factors at the last successful refresh.
    pub(super) basis: Option<KroneckerBasis>,
    /// The `trace_scale` the basis was built with (`D = d_g d_aᵀ / basis_trace_scale`).
    pub(super) basis_trace_scale: f64,
    /// `s*` or `Θ`, `[d_out, d_in']` (EKFAC/TEKFAC only).
    pub(super) corrected: MovingAverage<DMatrix<f64>>,
    /// f32 copies of the basis for the training hot path (kept in step with `basis`).
    pub(super) fast: Option<FastBasis>,
    /// What the last [`prepare`](Self::prepare) built for the f32 paths; dropped whenever
    /// `D` changes.
    pub(super) damped_f32: Option<Prepared>,
}

/// The f32 preconditioning data of one damping, kept between refreshes.
#[derive(Clone, Debug)]
pub(super) struct Prepared {
    damping: Damping,
    /// The damped diagonal, row-major `[d_out, d_in']`.
    damped: Vec<f32>,
    /// For a factored damping (K-FAC, TKFAC): `Ĝ⁻¹` `[d_out]²` and `Â⁻¹` `[d_in']²`, row-major.
    inverses: Option<(Vec<f32>, Vec<f32>)>,
}

impl CurvatureBlock {
    /// An empty block for `info`'s `[d_out, d_in']` with EMA decay `ρ` for every average.
    ///
    /// # Panics
    /// When `decay` is outside `[0, 1]`.
    pub fn new(variant: Variant, info: &LayerInfo, decay: f64) -> Self {
        CurvatureBlock {
            name: info.name.clone(),
            variant,
            d_out: info.d_out,
            d_in_bar: info.d_in_bar(),
            conv: matches!(info.kind, LayerKind::Conv2d { .. }),
            factors: MovingAverage::new(decay),
            basis: None,
            basis_trace_scale: 1.0,
            corrected: MovingAverage::new(decay),
            fast: None,
            damped_f32: None,
        }
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(d_out, d_in')`.
    pub fn dims(&self) -> (usize, usize) {
        (self.d_out, self.d_in_bar)
    }

    /// True for a convolution layer.
    pub fn is_conv(&self) -> bool {
        self.conv
    }

    /// The averaged factors, `None` before the first observation.
    pub fn factors(&self) -> Option<&KroneckerFactors> {
        self.factors.value()
    }

    /// The eigenbasis, `None` before the first successful refresh.
    pub fn basis(&self) -> Option<&KroneckerBasis> {
        self.basis.as_ref()
    }

    /// Statistics step: blends the capture's factors into their running average.
    pub fn observe<F: Float>(&mut self, capture: &LayerCapture<F>) -> Result<()> {
        let rows = self.rows(capture, "CurvatureBlock::observe")?;
        let batch = if self.variant.trace_restricted() {
            KroneckerFactors::tkfac(&rows)
        } else {
            KroneckerFactors::kfac(&rows)
        };
        self.factors.update(batch);
        Ok(())
    }

    /// Replaces the averaged factors (tests, e.g. TEKFAC fed `Φ := A, Ψ := G, δ := 1`).
    pub fn set_factors(&mut self, factors: KroneckerFactors) -> Result<()> {
        if factors.dims() != self.dims() {
            let why = "factor dims differ from the block's";
            let got = Shape::new(&[factors.dims().0, factors.dims().1])?;
            return Err(self.shape_error("CurvatureBlock::set_factors", why, got));
        }
        self.factors.reseed(factors);
        Ok(())
    }

    /// Eigenbasis step: decomposes the averaged factors and re-seeds `s*`/`Θ`.
    ///
    /// On `Err` (no statistics yet, non-finite factors, eigensolver failure) the previous basis
    /// and diagonal stay in use; non-finite averages are dropped (module docs).
    pub fn refresh(&mut self) -> Result<()> {
        let Some(factors) = self.factors.value() else {
            let msg = format!("layer {}: refresh() before any observe()", self.name);
            return Err(Error::invalid("CurvatureBlock::refresh", msg));
        };
        match KroneckerBasis::from_factors(factors) {
            Ok(basis) => {
                self.basis_trace_scale = factors.trace_scale;
                if self.variant.corrects_eigenvalues() {
                    self.corrected
                        .reseed(basis.eigenvalue_products(factors.trace_scale));
                }
                self.fast = Some(FastBasis::new(&basis));
                self.basis = Some(basis);
                self.damped_f32 = None;
                Ok(())
            }
            Err(BasisFailure::NonFinite) => {
                self.factors.reset();
                let what = format!(
                    "curvature statistics of layer {} (refresh skipped, previous basis kept)",
                    self.name
                );
                Err(Error::NonFinite { what, step: None })
            }
            Err(BasisFailure::NoConvergence) => Err(Error::EigenFailed {
                layer: self.name.clone(),
            }),
        }
    }

    /// Re-scaling step (EKFAC/TEKFAC; a no-op for K-FAC/TKFAC): blends
    /// `(1/N) Σ_{n,s} (Q_Gᵀ DW_{n,s} Q_A)^∘2` into `s*`/`Θ` in the current basis.
    pub fn rescale<F: Float>(&mut self, capture: &LayerCapture<F>) -> Result<()> {
        const OP: &str = "CurvatureBlock::rescale";
        if !self.variant.corrects_eigenvalues() {
            return Ok(());
        }
        let rows = self.rows(capture, OP)?;
        let batch = corrected_batch(self.require_basis(OP)?, &rows);
        if batch.iter().any(|x| !x.is_finite()) {
            let what = format!(
                "re-scaling batch of layer {} (previous values kept)",
                self.name
            );
            return Err(Error::NonFinite { what, step: None });
        }
        self.corrected.update(batch);
        self.damped_f32 = None;
        Ok(())
    }

    /// `D`, the diagonal of `F̂` in the eigenbasis, `[d_out, d_in']`: `d_g d_aᵀ / trace_scale`
    /// (K-FAC, TKFAC) or `s*`/`Θ` (EKFAC, TEKFAC). `None` before the first refresh.
    pub fn eigenvalues(&self) -> Option<DMatrix<f64>> {
        let basis = self.basis.as_ref()?;
        if self.variant.corrects_eigenvalues() {
            self.corrected.value().cloned()
        } else {
            Some(basis.eigenvalue_products(self.basis_trace_scale))
        }
    }

    /// TEKFAC Eq. 3.5: `λ = max(ΣD, ϑ) / dim D` with `ϑ = floor` (`ϑ/dim D` before a refresh).
    pub fn trace_adaptive_damping(&self, floor: f64) -> f64 {
        let sum = self.eigenvalues().map_or(0.0, |d| d.sum());
        trace_adaptive(sum, self.d_out * self.d_in_bar, floor)
    }

    /// The damped diagonal that [`precondition`](Self::precondition) divides by.
    ///
    /// Errors before the first refresh, for a negative or non-finite λ, for a factored mode on
    /// a corrected variant, and when an entry is not positive (λ = 0 on a singular block).
    pub fn damped_eigenvalues(&self, damping: &Damping) -> Result<DMatrix<f64>> {
        const OP: &str = "CurvatureBlock::damped_eigenvalues";
        self.require_basis(OP)?;
        let d = self
            .eigenvalues()
            .expect("a block with a basis has eigenvalues");
        let damped = damping.damped(&d, self.split()).ok_or_else(|| {
            let msg = format!(
                "{damping:?} on a {} block: λ must be finite and ≥ 0, and factored modes \
                 need an uncorrected variant (kfac, tkfac)",
                self.variant
            );
            Error::invalid(OP, msg)
        })?;
        if damped.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            let msg = format!(
                "layer {}: damped diagonal not positive; use λ > 0",
                self.name
            );
            return Err(Error::invalid(OP, msg));
        }
        Ok(damped)
    }

    /// `v = (F̂ + damping)⁻¹ ∇`, computed in the Kronecker eigenbasis for every variant.
    /// `grad` is `[d_out, d_in']`, bias last.
    pub fn precondition(&self, grad: &DMatrix<f64>, damping: &Damping) -> Result<DMatrix<f64>> {
        const OP: &str = "CurvatureBlock::precondition";
        if grad.shape() != self.dims() {
            let got = Shape::new(&[grad.nrows(), grad.ncols()])?;
            return Err(self.shape_error(OP, "gradient shape differs from the block's", got));
        }
        let damped = self.damped_eigenvalues(damping)?;
        let basis = self.require_basis(OP)?;
        let rotated = basis.rotate_in(grad);
        let scaled = rotated.component_div(&damped);
        Ok(basis.rotate_out(&scaled))
    }

    /// Builds and keeps the f32 damped diagonal for `damping`, so that the f32 paths below do
    /// not rebuild it every step (it changes only on refresh, re-scaling or a new λ).
    pub fn prepare(&mut self, damping: &Damping) -> Result<()> {
        if matches!(&self.damped_f32, Some(p) if p.damping == *damping) {
            return Ok(());
        }
        let damped = self.damped_eigenvalues(damping)?;
        let damped: Vec<f32> = damped.transpose().iter().map(|&x| x as f32).collect();
        // NOTE: a factored damping inverts as `Ĝ⁻¹ ⊗ Â⁻¹`, so a low-rank gradient needs no
        // rotation at all: U = (Ĝ⁻¹gᵀ)(āÂ⁻¹) (see `fast.rs`).
        let inverses = match (self.split(), self.fast.as_ref()) {
            (Some((u, v)), Some(fast)) => damping.factored(&u, &v).map(|(du, dv)| {
                let to32 = |d: &DVector<f64>| d.iter().map(|&x| x as f32).collect::<Vec<_>>();
                fast.inverse_factors(&to32(&du), &to32(&dv))
            }),
            _ => None,
        };
        self.damped_f32 = Some(Prepared {
            damping: *damping,
            damped,
            inverses,
        });
        Ok(())
    }

    /// `(u, v) = (d_g, d_a)/√trace_scale` with `D = u vᵀ` (uncorrected variants), else `None`.
    fn split(&self) -> Option<(DVector<f64>, DVector<f64>)> {
        if self.variant.corrects_eigenvalues() {
            return None;
        }
        let basis = self.basis.as_ref()?;
        let root = self.basis_trace_scale.max(0.0).sqrt();
        let unsplit = |x: &DVector<f64>| if root > 0.0 { x / root } else { x * 0.0 };
        Some((unsplit(&basis.d_g), unsplit(&basis.d_a)))
    }

    /// [`precondition`](Self::precondition) in f32 on a row-major `[d_out, d_in']` slice: the
    /// training hot path (see `fast.rs`).
    pub fn precondition_f32(&self, grad: &[f32], damping: &Damping) -> Result<Vec<f32>> {
        const OP: &str = "CurvatureBlock::precondition_f32";
        if grad.len() != self.d_out * self.d_in_bar {
            let got = Shape::new(&[grad.len()])?;
            return Err(self.shape_error(OP, "gradient length differs from the block's", got));
        }
        let (fast, damped) = self.fast_parts(damping, OP)?;
        Ok(fast.precondition(grad, &damped))
    }

    /// The same update for a gradient in its low-rank form `∇W̄ = gᵀ ā` (`a`: `[rows, d_in']`,
    /// `g`: `[rows, d_out]`, row-major f32), without forming `∇W̄` (see `fast.rs`).
    pub fn precondition_low_rank_f32(
        &self,
        a: &[f32],
        g: &[f32],
        rows: usize,
        damping: &Damping,
    ) -> Result<Vec<f32>> {
        const OP: &str = "CurvatureBlock::precondition_low_rank_f32";
        if a.len() != rows * self.d_in_bar || g.len() != rows * self.d_out {
            let got = Shape::new(&[rows, a.len() / rows.max(1), g.len() / rows.max(1)])?;
            return Err(self.shape_error(OP, "rows of ā and g differ from the block's", got));
        }
        if let Some(Prepared {
            damping: d,
            inverses: Some((inv_g, inv_a)),
            ..
        }) = &self.damped_f32
            && d == damping
        {
            let fast = self.fast.as_ref().expect("prepared blocks have a basis");
            return Ok(fast.precondition_kronecker_low_rank(a, g, rows, inv_g, inv_a));
        }
        let (fast, damped) = self.fast_parts(damping, OP)?;
        Ok(fast.precondition_low_rank(a, g, rows, &damped))
    }

    /// True when the low-rank form with `rows` rows is the cheaper way in (after a refresh).
    pub fn low_rank_pays(&self, rows: usize) -> bool {
        self.fast.as_ref().is_some_and(|f| f.low_rank_pays(rows))
    }

    /// The f32 basis and damped diagonal (cached by [`prepare`](Self::prepare) or built now).
    fn fast_parts(
        &self,
        damping: &Damping,
        op: &'static str,
    ) -> Result<(&FastBasis, std::borrow::Cow<'_, [f32]>)> {
        let fast = self.fast.as_ref().ok_or_else(|| {
            Error::invalid(
                op,
                format!("layer {}: refresh() runs before precondition", self.name),
            )
        })?;
        let damped = match &self.damped_f32 {
            Some(p) if p.damping == *damping => std::borrow::Cow::Borrowed(p.damped.as_slice()),
            _ => {
                let damped = self.damped_eigenvalues(damping)?;
                std::borrow::Cow::Owned(damped.transpose().iter().map(|&x| x as f32).collect())
            }
        };
        Ok((fast, damped))
    }

    /// `F̂ = Q diag(vec D) Qᵀ`, `[d_out·d_in']²`, row-major vec order (`G ⊗ A` for K-FAC).
    pub fn to_dense(&self) -> Result<DMatrix<f64>> {
        let basis = self.require_basis("CurvatureBlock::to_dense")?;
        let d = self
            .eigenvalues()
            .expect("a block with a basis has eigenvalues");
        Ok(basis.dense(&d))
    }

    /// The dense matrix whose inverse [`precondition`](Self::precondition) applies.
    pub fn to_dense_damped(&self, damping: &Damping) -> Result<DMatrix<f64>> {
        let damped = self.damped_eigenvalues(damping)?;
        Ok(self
            .require_basis("CurvatureBlock::to_dense_damped")?
            .dense(&damped))
    }

    fn rows<F: Float>(&self, capture: &LayerCapture<F>, op: &'static str) -> Result<CaptureRows> {
        let rows = CaptureRows::from_capture(capture)?;
        rows.check_block(self.d_out, self.d_in_bar, op)?;
        Ok(rows)
    }

    fn require_basis(&self, op: &'static str) -> Result<&KroneckerBasis> {
        self.basis.as_ref().ok_or_else(|| {
            let msg = format!(
                "layer {}: no eigenbasis yet; observe() and refresh() first",
                self.name
            );
            Error::invalid(op, msg)
        })
    }

    fn shape_error(&self, op: &'static str, why: &'static str, got: Shape) -> Error {
        // NOTE: block dims are at most rank 2, so Shape::new cannot fail here.
        let left = Shape::new(&[self.d_out, self.d_in_bar]).expect("rank-2 shape");
        Error::ShapeMismatch {
            op,
            why,
            left,
            right: got,
        }
    }
}
