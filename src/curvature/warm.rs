//! The eigenbasis refresh policy: each factor is refined from its previous basis by GEMMs
//! ([`refine_eigenbasis`]) when that is close enough, and decomposed exactly by nalgebra's
//! `SymmetricEigen` otherwise; every refresh reports, per factor, which path ran and why.
//!
//! ```text
//! exact  if there is no previous basis, warm starts are off, its dims differ, or the factor
//!        has had `exact_every − 1` warm refreshes in a row (a periodic exact reset)
//! warm   Q ← refine(F, Q_prev): Q_prev kept as it is if off(Q_prev) ≤ keep and
//!        min_iterations is 0 (the defaults); else iterations while off(Q) > tolerance, at
//!        least min_iterations, at most max_iterations; d = diag(QᵀFQ) (Rayleigh quotients,
//!        clamped ≥ 0); keep = keep_tolerance, by default half the tolerance for EKFAC and
//!        the whole tolerance for TEKFAC
//! exact  if off(Q) > tolerance after max_iterations, or the previous basis is unusable
//! ```
//!
//! The exact path is nalgebra's `SymmetricEigen` of the factor's live block: exactly-zero rows
//! and columns (always-zero pixels, dead units) are split off as eigenvalue-0 coordinate
//! vectors first (`deflate.rs`), so every basis this policy returns restricts exactly to the
//! next live block, which is what the warm path starts from.
//!
//! with `off(Q) = ‖offdiag(QᵀFQ)‖_F / ‖F‖_F`. The result has the form of the exact path,
//! `KroneckerBasis { q_a, d_a, q_g, d_g }`, so a block installs either the same way.
//!
//! **Why an approximate basis keeps EKFAC's and TEKFAC's guarantee.** Lemma 1 of EKFAC (spec
//! §4.1, identity 7) holds for *any* orthogonal `Q`: the diagonal minimising `‖F − Q D Qᵀ‖_F`
//! is `D = diag(QᵀFQ)`, which is what re-scaling measures (`s*`, `Θ`). With `Q = Q_G ⊗ Q_A`
//! from a warm refresh, `Θ` is still the best diagonal in that basis and `Σ Θ = tr F` still
//! holds (identity 5); only how much of `F` a diagonal can capture depends on the basis.
//! K-FAC and TKFAC use `d_a`, `d_g` directly: with a warm basis they precondition with the
//! factors' pinched parts `Q diag(QᵀAQ) Qᵀ`, which keep the factors' traces (so TKFAC's
//! `tr Φ = tr Ψ = 1` survives) but differ from `A`, `G` by `off(Q)` in relative Frobenius norm.
//!
//! **Defaults** ([`WarmStart::default`]), measured on the real factors of the MLP preset
//! (`docs/PERFORMANCE.md`, "Warm-started eigenbasis refresh"): tolerance `0.05`, a previous
//! basis kept without iterating within it (TEKFAC) or within half of it (EKFAC; below), at
//! most 6 iterations, an exact refresh every 50th time, the steering products in f32
//! (`refine.rs`; the orthonormalisations stay f64). The tolerance is what guards each warm basis
//! (it is stricter than the 4–27 % an exact basis drifts to before it is replaced); the
//! periodic exact refresh is a backstop, once per 5,000 steps at the default intervals and per
//! 500 at kfac-jax's, where every 10th refresh made 2 of the 20 refreshes in a 200-step window
//! nalgebra decompositions. With the default 100 steps between refreshes, a basis early in
//! training is far from the factor's (`off(Q)` 0.07–0.25 after two
//! iterations at step 100); it reaches the tolerance in 3–5 iterations, each a fraction of
//! one nalgebra decomposition, where two iterations fell back to the exact path.
//!
//! **No iteration when none is needed** (`keep_tolerance`, `min_iterations` 0). The first
//! measurement of the previous basis against the new factor (`Y = FQ`, its Rayleigh quotients)
//! already tells how far it is from diagonalising it: within the keep threshold it is kept and
//! only `d` is refreshed; above, it iterates until it is within `tolerance`. A kept basis never
//! improves, so the threshold trades the quality of the bases for the cost of iterating (and of
//! moving a layer stored in the basis along), and the two variants were measured to want
//! different ones (`docs/RESULTS.md` §5g, `docs/PERFORMANCE.md`, "Issue 16, eighth pass"):
//! - **EKFAC keeps within half the tolerance** (`0.025`). Keeping every basis within the whole
//!   tolerance raised its training loss on Fashion-MNIST systematically (+0.003–0.004 at epoch
//!   5, in five seeds out of five); within half of it the shift was gone, and its step cost the
//!   same at both interval settings.
//! - **TEKFAC keeps within the whole tolerance** (`0.05`). Its loss showed no such shift (both
//!   signs between builds at a fixed seed, inside the spread between seeds), while keeping only
//!   within half of it made its step at kfac-jax's intervals about a quarter slower: fc1's 785²
//!   input factor sits 0.03–0.05 from its previous basis at most of those refreshes, and each
//!   then costs an iteration and a rebase instead of one product.
//!
//! `keep_tolerance: None` (the default) means that choice, made by [`WarmStart::for_variant`];
//! `Some(x)` sets it for every variant (`Some(tolerance)` is the policy before the setting
//! existed). On Fashion-MNIST's MLP the input factor of fc1 (785²: the largest, and the
//! costliest to iterate and to move a layer through) was within 0.05 of its previous basis at
//! 25 of the 29 warm refreshes of a 300-step run at kfac-jax's intervals and at 10 of 14 over
//! 1,500 steps at the default ones (`off(Q)` 0.025–0.047 once every pixel has been seen
//! non-zero; 0.051–0.125 at the first few, while its live block still grows); the hidden
//! layers' factors start at 0.03–0.91 and mostly iterate. Every accepted basis obeys
//! `off(Q) ≤ tolerance` whatever the keep threshold; `min_iterations: 1` runs an iteration at
//! every warm refresh.
//!
//! **Kept on tracked quotients.** Measuring the previous basis costs the `n³` product
//! `Y = FQ` (about 13 ms of the 21–27 a kept refresh of fc1's 785² factor took), only to learn
//! `d = diag(QᵀFQ)`: with `Q` orthonormal, `‖QᵀFQ‖_F = ‖F‖_F`, so
//! `off(Q) = √(‖F‖²_F − ‖d‖²) / ‖F‖_F` needs nothing else. A dense layer trained in its basis
//! forms `â = āQ_A` and `ĝ = gQ_G` in its own pass, and the moving average is linear, so the
//! block tracks `d` as the factors move (`pending.rs`, `block.rs`):
//! `d ← c_old·d + c_new·Σ_r w_r (x_r Q)^∘2`, with each factor's own row weights. When the block
//! hands these tracked quotients in and they put the previous basis within the keep threshold,
//! it is kept as it is (its change of coordinates the identity) at `O(n²)`; otherwise the
//! product measures it as above and iterates. Both measure the same `off(Q)`: the tracked one
//! from f32 rows (to about `1e-6`, like the f32 steering products), so thresholds below
//! [`F32_STEERING_FROM`] are always measured by the product. `tests/curvature_rayleigh.rs` pins
//! the tracked quotients to `diag(QᵀFQ)` formed in f64.

use super::basis::eigh;
use super::basis::{BasisFailure, KroneckerBasis};
use super::change::BasisChange;
use super::factors::KroneckerFactors;
use super::refine::{
    F32_STEERING_FROM, RefineFailure, Steering, Stopping, off_of_rayleigh, refine_within,
};
use super::variant::Variant;
use crate::error::{self, Error};
use nalgebra::{DMatrix, DVector};
use std::fmt;

/// When to refine the previous basis instead of decomposing afresh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmStart {
    /// Refine from the previous basis at all (`false`: nalgebra at every refresh).
    pub enabled: bool,
    /// Largest `off(Q)` accepted from a warm refresh (finite, `≥ 0`). Default `0.05`.
    pub tolerance: f64,
    /// Largest `off(Q)` at which the previous basis is kept without any iteration (only its
    /// Rayleigh quotients measured); above it the basis iterates until it is within
    /// `tolerance`. `None` (the default): the measured choice of each variant,
    /// [`for_variant`](Self::for_variant) (EKFAC half the tolerance, TEKFAC the whole of it;
    /// module docs), and the whole tolerance where no variant is given. `Some(x)`: `x` for
    /// every variant, finite and in `[0, tolerance]` ([`check`](Self::check)).
    pub keep_tolerance: Option<f64>,
    /// Iterations run whatever `off(Q)` is. Default 0: a previous basis within the keep
    /// threshold is kept (module docs); 1 runs an iteration at every warm refresh.
    pub min_iterations: usize,
    /// Refinement iterations before falling back to the exact path. Default 6.
    pub max_iterations: usize,
    /// Every `exact_every`-th refresh of a factor is exact (0: only when needed). Default 50.
    pub exact_every: u64,
    /// The precision of the products that steer a warm refinement (`refine.rs`): f32 by default
    /// (the orthonormalisations stay f64; `NaturalGradient<f64>` always steers in f64).
    pub steering: Steering,
}

impl Default for WarmStart {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl WarmStart {
    /// The defaults (field docs; module docs for how they were measured).
    pub const DEFAULT: WarmStart = WarmStart {
        enabled: true,
        tolerance: 0.05,
        keep_tolerance: None,
        min_iterations: 0,
        max_iterations: 6,
        exact_every: 50,
        steering: Steering::F32,
    };

    /// Warm starts switched off: the exact path at every refresh.
    pub fn exact_only() -> Self {
        WarmStart {
            enabled: false,
            ..Self::DEFAULT
        }
    }

    /// These settings with the keep threshold of `variant` filled in when it is `None` (module
    /// docs): half the tolerance for EKFAC, the whole tolerance for the others.
    pub fn for_variant(self, variant: Variant) -> Self {
        let keep = match variant {
            Variant::Ekfac => 0.5 * self.tolerance,
            _ => self.tolerance,
        };
        WarmStart {
            keep_tolerance: Some(self.keep_tolerance.unwrap_or(keep)),
            ..self
        }
    }

    /// The largest `off(Q)` at which a previous basis is kept: `keep_tolerance`, or the
    /// whole tolerance when it is `None`.
    pub fn keep(&self) -> f64 {
        self.keep_tolerance.unwrap_or(self.tolerance)
    }

    /// `Ok` when the thresholds are usable: `tolerance` finite and `≥ 0`, a given
    /// `keep_tolerance` finite and in `[0, tolerance]`; else [`Error::InvalidArgument`] naming
    /// the field and its range. Checked whether or not warm starts are enabled.
    pub fn check(&self) -> error::Result<()> {
        let tolerance = self.tolerance;
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            let msg = format!("tolerance must be finite and ≥ 0, got {tolerance}");
            return Err(Error::invalid("WarmStart", msg));
        }
        match self.keep_tolerance {
            Some(keep) if !(keep.is_finite() && (0.0..=tolerance).contains(&keep)) => {
                let hint = match keep > tolerance {
                    true => " (a smaller tolerance needs a keep_tolerance at most as small)",
                    false => "",
                };
                let msg = format!(
                    "keep_tolerance must be finite and lie in [0, tolerance] = [0, {tolerance}], \
                     got {keep}{hint}"
                );
                Err(Error::invalid("WarmStart", msg))
            }
            _ => Ok(()),
        }
    }
}

/// Why a factor was decomposed exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExactReason {
    /// The first decomposition: no previous basis.
    NoPrevious,
    /// Warm starts are switched off.
    Disabled,
    /// The previous basis has other dimensions.
    DimsChanged,
    /// The periodic exact refresh (`exact_every`).
    Scheduled,
    /// The refinement stopped above the tolerance.
    NotConverged {
        /// `off(Q)` reached.
        off_diagonal: f64,
        /// Iterations run.
        iterations: usize,
    },
    /// The refinement could not run on the previous basis.
    Failed(RefineFailure),
}

/// How one factor's basis was obtained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FactorRefresh {
    /// Refined from the previous basis.
    Warm {
        /// Iterations run.
        iterations: usize,
        /// `off(Q)` reached.
        off_diagonal: f64,
    },
    /// Decomposed by nalgebra's `SymmetricEigen`.
    Exact(ExactReason),
}

/// What one block refresh did with each factor: the event a front end may print.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefreshReport {
    /// The input factor (`A` or `δΦ`).
    pub a: FactorRefresh,
    /// The output factor (`G` or `δΨ`).
    pub g: FactorRefresh,
}

impl fmt::Display for ExactReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExactReason::NoPrevious => f.write_str("first decomposition"),
            ExactReason::Disabled => f.write_str("warm starts off"),
            ExactReason::DimsChanged => f.write_str("previous basis has other dimensions"),
            ExactReason::Scheduled => f.write_str("periodic exact refresh"),
            ExactReason::NotConverged {
                off_diagonal,
                iterations,
            } => write!(
                f,
                "off-diagonal mass {off_diagonal:.2e} above tolerance after {iterations} iterations"
            ),
            ExactReason::Failed(why) => write!(f, "warm start failed: {why}"),
        }
    }
}

impl fmt::Display for FactorRefresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FactorRefresh::Warm {
                iterations,
                off_diagonal,
            } => write!(
                f,
                "warm ({iterations} iterations, off-diagonal mass {off_diagonal:.2e})"
            ),
            FactorRefresh::Exact(reason) => write!(f, "exact ({reason})"),
        }
    }
}

impl fmt::Display for RefreshReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "input factor {}, output factor {}", self.a, self.g)
    }
}

/// The refresh policy of one block: the settings and, per factor, how many warm refreshes ran
/// since its last exact one.
///
/// ```
/// use nalgebra::DMatrix;
/// use tekfac::curvature::{EigenRefresh, FactorRefresh, KroneckerFactors, WarmStart};
/// let mut policy = EigenRefresh::new(WarmStart::default()).unwrap();
/// let f = |s: f64| KroneckerFactors {
///     a_factor: DMatrix::from_row_slice(2, 2, &[2.0, s, s, 1.0]),
///     g_factor: DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 3.0]),
///     trace_scale: 1.0,
/// };
/// let (basis, report) = policy.refresh(&f(0.1), None).unwrap();
/// assert!(matches!(report.a, FactorRefresh::Exact(_)));
/// let (_, report) = policy.refresh(&f(0.11), Some(&basis)).unwrap();
/// assert!(matches!(report.a, FactorRefresh::Warm { .. }));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EigenRefresh {
    settings: WarmStart,
    /// Consecutive warm refreshes of the input and output factor.
    warm_streak: [u64; 2],
}

impl EigenRefresh {
    /// A policy with `settings` and no history; `Err` for settings that
    /// [`WarmStart::check`] refuses.
    pub fn new(settings: WarmStart) -> error::Result<Self> {
        Self::resume(settings, [0, 0])
    }

    /// A policy with `settings` that resumes a history saved by [`warm_streak`](Self::warm_streak)
    /// (so a resumed run schedules its exact refreshes as the uninterrupted one would); `Err` for
    /// settings that [`WarmStart::check`] refuses.
    pub fn resume(settings: WarmStart, warm_streak: [u64; 2]) -> error::Result<Self> {
        settings.check()?;
        Ok(EigenRefresh {
            settings,
            warm_streak,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &WarmStart {
        &self.settings
    }

    /// Warm refreshes of the input and output factor since their last exact one: the policy's
    /// only state, for checkpoints.
    pub fn warm_streak(&self) -> [u64; 2] {
        self.warm_streak
    }

    /// The basis of `factors`, refined from `previous` where the policy allows (module docs),
    /// both factors concurrently. `Err` (and no change to the policy's history) for non-finite
    /// factors or a failed eigensolver, as [`KroneckerBasis::from_factors`].
    pub fn refresh(
        &mut self,
        factors: &KroneckerFactors,
        previous: Option<&KroneckerBasis>,
    ) -> Result<(KroneckerBasis, RefreshReport), BasisFailure> {
        let (basis, report, _) = self.refresh_with_changes(factors, previous, None)?;
        Ok((basis, report))
    }

    /// [`refresh`](Self::refresh), with each factor's change of coordinates from `previous`
    /// (`[input, output]`): the refinement's [`BasisChange`] for a warm factor, `None` for an
    /// exact one (or a warm one whose dead coordinates the change cannot express). `tracked`:
    /// `previous`' Rayleigh quotients against `factors` (`[diag(Q_AᵀAQ_A), diag(Q_GᵀGQ_G)]`,
    /// tracked by the block, `block.rs`), from which a factor's basis is kept without a product
    /// when they put it within the keep threshold (module docs, "Kept on tracked quotients").
    pub fn refresh_with_changes(
        &mut self,
        factors: &KroneckerFactors,
        previous: Option<&KroneckerBasis>,
        tracked: Option<&[DVector<f64>; 2]>,
    ) -> Result<(KroneckerBasis, RefreshReport, [Option<BasisChange>; 2]), BasisFailure> {
        if !factors.is_finite() {
            return Err(BasisFailure::NonFinite);
        }
        let prev_a = previous.map(|b| &b.q_a);
        let prev_g = previous.map(|b| &b.q_g);
        let [d_a, d_g] = tracked.map(|[a, g]| [Some(a), Some(g)]).unwrap_or_default();
        let (a, g) = rayon::join(
            || self.refresh_factor(&factors.a_factor, prev_a, d_a, self.warm_streak[0]),
            || self.refresh_factor(&factors.g_factor, prev_g, d_g, self.warm_streak[1]),
        );
        let ((q_a, d_a, how_a, change_a), (q_g, d_g, how_g, change_g)) = (a?, g?);
        for (streak, how) in self.warm_streak.iter_mut().zip([how_a, how_g]) {
            *streak = match how {
                FactorRefresh::Warm { .. } => *streak + 1,
                FactorRefresh::Exact(_) => 0,
            };
        }
        let report = RefreshReport { a: how_a, g: how_g };
        let basis = KroneckerBasis { q_a, d_a, q_g, d_g };
        Ok((basis, report, [change_a, change_g]))
    }

    /// One factor: the warm path if allowed and good enough (with its change of coordinates),
    /// else the exact one. `tracked`: `previous`' Rayleigh quotients against `f`, if known.
    fn refresh_factor(
        &self,
        f: &DMatrix<f64>,
        previous: Option<&DMatrix<f64>>,
        tracked: Option<&DVector<f64>>,
        streak: u64,
    ) -> Result<FactorBasis, BasisFailure> {
        let s = &self.settings;
        let reason = match previous {
            _ if !s.enabled => ExactReason::Disabled,
            None => ExactReason::NoPrevious,
            Some(q) if q.shape() != f.shape() => ExactReason::DimsChanged,
            _ if s.exact_every > 0 && streak + 1 >= s.exact_every => ExactReason::Scheduled,
            Some(q) => {
                if let Some(kept) = tracked.and_then(|d| self.kept_on_tracked(f, q, d)) {
                    return Ok(kept);
                }
                let stop = Stopping {
                    keep: s.keep(),
                    tolerance: s.tolerance,
                    min: s.min_iterations,
                    max: s.max_iterations,
                };
                match refine_within(f, q, stop, s.steering) {
                    Ok(r) if r.off_diagonal <= s.tolerance => {
                        let how = FactorRefresh::Warm {
                            iterations: r.iterations,
                            off_diagonal: r.off_diagonal,
                        };
                        return Ok((r.q, r.d, how, r.change));
                    }
                    Ok(r) => ExactReason::NotConverged {
                        off_diagonal: r.off_diagonal,
                        iterations: r.iterations,
                    },
                    Err(RefineFailure::NonFinite) => return Err(BasisFailure::NonFinite),
                    Err(why) => ExactReason::Failed(why),
                }
            }
        };
        let (q, d) = eigh(f)?;
        Ok((q, d, FactorRefresh::Exact(reason), None))
    }

    /// `previous` kept as it is when its tracked Rayleigh quotients `d` put
    /// `off(Q) = √(‖F‖² − ‖d‖²) / ‖F‖` within the keep threshold (module docs, "Kept on tracked
    /// quotients"); `None` (measure by the product) when they do not, when an iteration is
    /// asked for at every refresh, or when the threshold is below what quotients from f32 rows
    /// resolve ([`F32_STEERING_FROM`]).
    fn kept_on_tracked(
        &self,
        f: &DMatrix<f64>,
        previous: &DMatrix<f64>,
        d: &DVector<f64>,
    ) -> Option<FactorBasis> {
        let s = &self.settings;
        let keep = s.keep();
        if s.min_iterations > 0 || keep < F32_STEERING_FROM || d.len() != f.nrows() {
            return None;
        }
        // NOTE: the factors are exactly symmetric (`fast_stats.rs`, `factors.rs`), so this is
        // the `‖F‖_F` of the symmetric part the refinement measures against.
        let off = off_of_rayleigh(f.norm(), d.as_slice());
        (off <= keep).then(|| {
            let how = FactorRefresh::Warm {
                iterations: 0,
                off_diagonal: off,
            };
            let change = BasisChange::identity(previous.ncols());
            (previous.clone(), d.map(|x| x.max(0.0)), how, Some(change))
        })
    }
}

/// One factor's refreshed basis: eigenvectors, eigenvalues, how, and the change from the
/// previous basis (warm only).
type FactorBasis = (
    DMatrix<f64>,
    DVector<f64>,
    FactorRefresh,
    Option<BasisChange>,
);
