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
//! The optimizer's fast paths enter through three doors beside these: `observe_factors` and
//! `rescale_batch` blend batches of the f32 statistics path (`fast_factors.rs`,
//! `fast_correction.rs`, which write them straight into the averages), and `refresh_warm`
//! installs a basis refined from the previous one (`warm.rs`). Each ends in the same averaging
//! and re-seeding as the plain step.
//!
//! **Tracked Rayleigh quotients.** Between refreshes the block also keeps
//! `diag(Q_Aᵀ A Q_A)`, `diag(Q_Gᵀ G Q_G)` of its current basis against its current factors,
//! when every observation since the refresh came with its rows rotated into that basis
//! (`pending.rs`: `O(rows·n)` per step from the rows a layer stored in its basis forms anyway).
//! A warm refresh then knows `off(Q)` of the previous basis from `‖F‖_F` alone and keeps it
//! without the `n³` product that would measure it (`warm.rs`).
//!
//! `D` ([`CurvatureBlock::eigenvalues`]) is `d_g d_aᵀ / trace_scale` (K-FAC, TKFAC) or the
//! corrected average (EKFAC's `s*`, TEKFAC's `Θ`): with the choice of factors, the only places
//! the variants differ. `F̂ = (Q_G ⊗ Q_A) diag(vec D) (Q_G ⊗ Q_A)ᵀ` ([`CurvatureBlock::to_dense`]).
//!
//! **Non-finite statistics** (spec §1.9): `refresh` refuses non-finite factors, keeps the
//! previous basis and diagonal, returns `Err`, and drops the poisoned running averages so the
//! next observation starts them afresh (an EMA would otherwise carry the NaN forever).
//! `rescale` refuses a non-finite batch and keeps the previous `s*`/`Θ`.

use super::average::{AllFinite, BatchStatistic, MovingAverage};
use super::basis::{BasisFailure, KroneckerBasis};
use super::change::BasisChange;
use super::correction::corrected_batch;
use super::damping::{Damping, trace_adaptive};
use super::factors::KroneckerFactors;
use super::rows::CaptureRows;
use super::variant::Variant;
use super::warm::{EigenRefresh, RefreshReport};
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
    /// Bumped whenever the basis or the diagonal `D` changes (see [`revision`](Self::revision)).
    revision: u64,
    /// Bumped whenever the basis changes.
    basis_revision: u64,
    /// The basis revision the last refresh started from and its change of coordinates per
    /// factor (`[input, output]`, `None` for an exact factor); `None` after any other change.
    change: Option<(u64, [Option<BasisChange>; 2])>,
    /// `[diag(Q_Aᵀ a_factor Q_A), diag(Q_Gᵀ g_factor Q_G)]` of the current basis and factors,
    /// while tracked from rotated rows (module docs); `None` once an observation came without.
    /// Only `Some` beside factors and a basis: set at a refresh, dropped wherever they go.
    pub(super) rayleigh: Option<[DVector<f64>; 2]>,
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
            revision: 0,
            basis_revision: 0,
            change: None,
            rayleigh: None,
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
        self.rayleigh = None;
        Ok(())
    }

    /// The statistics step with the batch factors formed elsewhere: blends them into the running
    /// average as [`observe`](Self::observe) does. The f32 statistics path hands in
    /// [`FastFactors`](super::FastFactors), which blends each f32 panel product straight into
    /// the average instead of forming the batch.
    pub fn observe_factors(&mut self, batch: impl BatchStatistic<KroneckerFactors>) -> Result<()> {
        self.check_factor_dims("CurvatureBlock::observe_factors", batch.shape())?;
        self.factors.update(batch);
        self.rayleigh = None;
        Ok(())
    }

    /// The statistics steps held by the f32 path since the factors were last read
    /// ([`PendingFactors`](super::PendingFactors), `pending.rs`): blended into the running
    /// average in one, as the same observations one by one would be (up to f32 rounding).
    /// Their share of the Rayleigh quotients, when they carry one, goes into the tracked
    /// quotients the same way (module docs); without one, the tracking stops until the next
    /// refresh.
    pub fn observe_pending(&mut self, pending: super::PendingFactors) -> Result<()> {
        self.check_factor_dims("CurvatureBlock::observe_pending", pending.shape())?;
        if !pending.is_empty() {
            let (decay, count) = (pending.decay(), pending.count());
            self.rayleigh = match (self.rayleigh.take(), pending.rayleigh()) {
                (Some(mut d), Some(shares)) => {
                    for (d, share) in d.iter_mut().zip(shares) {
                        d.iter_mut()
                            .zip(share)
                            .for_each(|(x, s)| *x = decay * *x + s);
                    }
                    Some(d)
                }
                _ => None,
            };
            self.factors.absorb(decay, count, pending);
        }
        Ok(())
    }

    /// The tracked Rayleigh quotients `[diag(Q_Aᵀ a_factor Q_A), diag(Q_Gᵀ g_factor Q_G)]` of
    /// the current basis against the current factors (module docs), `None` when not tracked.
    pub fn rayleigh_quotients(&self) -> Option<&[DVector<f64>; 2]> {
        self.rayleigh.as_ref()
    }

    /// The EMA decay `ρ` of the factors' running average.
    pub fn factor_decay(&self) -> f64 {
        self.factors.decay()
    }

    /// Replaces the averaged factors (tests, e.g. TEKFAC fed `Φ := A, Ψ := G, δ := 1`).
    pub fn set_factors(&mut self, factors: KroneckerFactors) -> Result<()> {
        self.check_factor_dims("CurvatureBlock::set_factors", factors.dims())?;
        self.factors.reseed(factors);
        self.rayleigh = None;
        Ok(())
    }

    /// Eigenbasis step: decomposes the averaged factors and re-seeds `s*`/`Θ`.
    ///
    /// On `Err` (no statistics yet, non-finite factors, eigensolver failure) the previous basis
    /// and diagonal stay in use; non-finite averages are dropped (module docs).
    pub fn refresh(&mut self) -> Result<()> {
        let factors = self.require_factors("CurvatureBlock::refresh")?;
        let trace_scale = factors.trace_scale;
        match KroneckerBasis::from_factors(factors) {
            Ok(basis) => {
                self.install(basis, trace_scale);
                Ok(())
            }
            Err(failure) => Err(self.refresh_failed(failure)),
        }
    }

    /// The eigenbasis step with a warm start (`warm.rs`): `policy` refines the previous basis by
    /// GEMMs, or decomposes exactly, and reports which; then the same re-seeding and failure
    /// handling as [`refresh`](Self::refresh). For EKFAC/TEKFAC, whose `s*`/`Θ` is the best
    /// diagonal in any orthogonal basis (identity 7).
    pub fn refresh_warm(&mut self, policy: &mut EigenRefresh) -> Result<RefreshReport> {
        let factors = self.require_factors("CurvatureBlock::refresh_warm")?;
        let trace_scale = factors.trace_scale;
        let tracked = self.rayleigh.as_ref();
        match policy.refresh_with_changes(factors, self.basis.as_ref(), tracked) {
            Ok((basis, report, changes)) => {
                let from = self.basis_revision;
                self.install(basis, trace_scale);
                self.change = Some((from, changes));
                Ok(report)
            }
            Err(failure) => Err(self.refresh_failed(failure)),
        }
    }

    /// Installs a refreshed basis and re-seeds `s*`/`Θ := d_g d_aᵀ / trace_scale` (spec §1.5);
    /// its Rayleigh quotients against the factors it was refreshed from start the tracked ones.
    fn install(&mut self, basis: KroneckerBasis, trace_scale: f64) {
        self.basis_trace_scale = trace_scale;
        if self.variant.corrects_eigenvalues() {
            self.corrected
                .reseed(basis.eigenvalue_products(trace_scale));
        }
        let rayleigh = [basis.d_a.clone(), basis.d_g.clone()];
        self.basis = Some(basis);
        self.basis_changed();
        self.rayleigh = Some(rayleigh);
    }

    /// A failed refresh keeps the previous basis; non-finite averages are dropped (module docs).
    fn refresh_failed(&mut self, failure: BasisFailure) -> Error {
        match failure {
            BasisFailure::NonFinite => {
                self.factors.reset();
                self.rayleigh = None;
                let what = format!(
                    "curvature statistics of layer {} (refresh skipped, previous basis kept)",
                    self.name
                );
                Error::NonFinite { what, step: None }
            }
            BasisFailure::NoConvergence => Error::EigenFailed {
                layer: self.name.clone(),
            },
        }
    }

    /// The averaged factors, or the error of a refresh before any observation.
    fn require_factors(&self, op: &'static str) -> Result<&KroneckerFactors> {
        self.factors.value().ok_or_else(|| {
            let msg = format!("layer {}: refresh before any observation", self.name);
            Error::invalid(op, msg)
        })
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
        self.rescale_batch(batch)
    }

    /// The re-scaling step with the batch `(1/N) Σ_{n,s} (Q_Gᵀ DW_{n,s} Q_A)^∘2` formed elsewhere
    /// in the current basis: blends it into `s*`/`Θ` as [`rescale`](Self::rescale) does,
    /// refusing a non-finite batch. The f32 statistics path hands in
    /// [`FastCorrection`](super::FastCorrection), the f32 product not yet widened to f64.
    pub fn rescale_batch(
        &mut self,
        batch: impl BatchStatistic<DMatrix<f64>> + AllFinite,
    ) -> Result<()> {
        const OP: &str = "CurvatureBlock::rescale_batch";
        if !self.variant.corrects_eigenvalues() {
            return Ok(());
        }
        self.require_basis(OP)?;
        let (rows, cols) = batch.shape();
        if (rows, cols) != (self.d_out, self.d_in_bar) {
            let got = Shape::new(&[rows, cols])?;
            return Err(self.shape_error(OP, "batch shape differs from [d_out, d_in']", got));
        }
        if !batch.all_finite() {
            let what = format!(
                "re-scaling batch of layer {} (previous values kept)",
                self.name
            );
            return Err(Error::NonFinite { what, step: None });
        }
        self.corrected.update(batch);
        self.revision += 1;
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

    /// `s*`/`Θ` in place (EKFAC, TEKFAC), without the copy [`eigenvalues`](Self::eigenvalues)
    /// makes; `None` for K-FAC, TKFAC and before the first refresh.
    pub(crate) fn corrected_eigenvalues(&self) -> Option<&DMatrix<f64>> {
        self.basis.as_ref()?;
        self.variant
            .corrects_eigenvalues()
            .then(|| self.corrected.value())
            .flatten()
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
        // NOTE: the factored modes damp `u vᵀ` itself, so they cannot apply to s*/Θ.
        let refused = damping.is_factored() && self.variant.corrects_eigenvalues();
        let damped = (!refused).then(|| damping.damped(&d, self.split()));
        let damped = damped.flatten().ok_or_else(|| {
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

    /// `(u, v) = (d_g, d_a)/√trace_scale`, so that `D = u vᵀ` for the uncorrected variants
    /// (`None` before the first refresh).
    fn split(&self) -> Option<(DVector<f64>, DVector<f64>)> {
        let basis = self.basis.as_ref()?;
        let root = self.basis_trace_scale.max(0.0).sqrt();
        let unsplit = |x: &DVector<f64>| if root > 0.0 { x / root } else { x * 0.0 };
        Some((unsplit(&basis.d_g), unsplit(&basis.d_a)))
    }

    /// The damped factor diagonals `(du, dv)` of a factored damping, whose outer product is the
    /// damped diagonal: the inverse of the damped block is then `Ĝ⁻¹ ⊗ Â⁻¹` with
    /// `Ĝ⁻¹ = Q_G diag(1/du) Q_Gᵀ`, `Â⁻¹ = Q_A diag(1/dv) Q_Aᵀ`. `None` for an additive damping,
    /// a corrected variant (EKFAC, TEKFAC), an invalid λ, or before the first refresh.
    pub fn damped_factors(&self, damping: &Damping) -> Option<(DVector<f64>, DVector<f64>)> {
        if self.variant.corrects_eigenvalues() {
            return None;
        }
        let (u, v) = self.split()?;
        damping.factored(&u, &v)
    }

    /// A counter that changes whenever the basis or the diagonal `D` changes (refresh,
    /// re-scaling, restore), so a cache built from the block knows when to rebuild.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A counter that changes whenever the basis changes (refresh, restore).
    pub fn basis_revision(&self) -> u64 {
        self.basis_revision
    }

    /// The change of coordinates `[R_A, R_G]`, `R = Q_oldᵀ Q_new` ([`BasisChange`]), by which the
    /// basis at revision `from` became the current one in a single warm refresh
    /// ([`refresh_warm`](Self::refresh_warm)), per factor (`None` for a factor decomposed
    /// exactly); `None` when the current basis did not come from `from` that way.
    pub fn basis_change(&self, from: u64) -> Option<&[Option<BasisChange>; 2]> {
        match &self.change {
            Some((start, changes)) if *start == from && from + 1 == self.basis_revision => {
                Some(changes)
            }
            _ => None,
        }
    }

    /// Records that the basis (and with it `D`) changed; the tracked Rayleigh quotients, which
    /// belong to the old one, are dropped.
    pub(super) fn basis_changed(&mut self) {
        self.basis_revision += 1;
        self.revision += 1;
        self.change = None;
        self.rayleigh = None;
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

    fn check_factor_dims(&self, op: &'static str, dims: (usize, usize)) -> Result<()> {
        if dims == self.dims() {
            return Ok(());
        }
        let got = Shape::new(&[dims.0, dims.1])?;
        Err(self.shape_error(op, "factor dims differ from the block's", got))
    }

    fn shape_error(&self, op: &'static str, why: &'static str, got: Shape) -> Error {
        block_shape_error(op, why, self.dims(), got)
    }
}

/// A shape mismatch against a block of `[d_out, d_in']` (shared with `FastBlock`).
pub(super) fn block_shape_error(
    op: &'static str,
    why: &'static str,
    (d_out, d_in_bar): (usize, usize),
    got: Shape,
) -> Error {
    // NOTE: block dims are at most rank 2, so Shape::new cannot fail here.
    let left = Shape::new(&[d_out, d_in_bar]).expect("rank-2 shape");
    Error::ShapeMismatch {
        op,
        why,
        left,
        right: got,
    }
}
