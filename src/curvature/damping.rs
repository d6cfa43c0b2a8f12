//! Damping: what is added to the diagonal `D` of `F̂` in the Kronecker eigenbasis before the
//! division of [`CurvatureBlock::precondition`](super::CurvatureBlock::precondition) (spec §1.7).
//!
//! Write the factor eigenvalues split evenly by the trace scale, `u = d_g/√ts`, `v = d_a/√ts`
//! (`ts = 1` for K-FAC, so `u = γ`, `v = α`; `ts = δ` for TKFAC, so `u = √δ ψ`, `v = √δ φ`), so
//! that `D = u vᵀ` for the uncorrected variants. The damped diagonal at `(k, i)` is
//!
//! | mode | damped diagonal | dense matrix it inverts (row-major) |
//! |---|---|---|
//! | [`Damping::Additive`] | `D_ki + λ` | `F̂ + λI` (EKFAC, TEKFAC, spec §4.1, §6.3 Eq. 3.4) |
//! | [`Damping::FactoredTikhonov`] | `(u_k + √λ/π)(v_i + π√λ)` | `(G + √λ/π·I) ⊗ (A + π√λ·I)` (K-FAC §6.3) |
//! | [`Damping::TkfacNormal`] | `(u_k + √λ)(v_i + √λ)` | `Ψ̂ ⊗ Φ̂`, `Φ̂ = √δΦ + √λI` (TKFAC Eq. 5.14–5.15) |
//! | [`Damping::FactoredShift`] | `D_ki + √λ(π u_k + v_i/π) + λ` | `F̂ + √λ(π·G⊗I + I⊗A/π) + λI` (option) |
//!
//! with `π = √((Σv/d_in') / (Σu/d_out))` (the factors' mean eigenvalues; Thrandis `_inv_covs`).
//! The factored forms need `D = u vᵀ`, so they are refused for EKFAC/TEKFAC.
//!
//! **The factored shift** (an explicit option, issue 18; not a default of any variant). Expanded
//! in the eigenbasis, K-FAC's factored damping is `(u_k + √λ/π)(v_i + π√λ) = u_k v_i +
//! √λ(π u_k + v_i/π) + λ`: its diagonal plus a shift that depends on the direction and grows with
//! the factors' curvature, where EKFAC/TEKFAC add the constant `λ`. `FactoredShift` adds that
//! same shift to any diagonal, so EKFAC's `s*` (or TEKFAC's `Θ`, on TKFAC's `√δ`-split factors)
//! is damped as K-FAC damps its own diagonal; on K-FAC it equals `FactoredTikhonov`. The
//! network's policy (`optim::DampingPolicy::rule`) picks it, or plain additive damping, for
//! every variant.
//!
//! **TEKFAC on conv layers** (Eq. 3.5): `λ = max(ΣΘ, ϑ) / dim Θ` ([`trace_adaptive`]), the mean
//! eigenvalue of the block floored at `ϑ/dim Θ`. Which block gets which mode and λ is the
//! network-level policy of the optimizer (`optim::DampingPolicy`, spec §1.7).

use super::variant::Variant;
use nalgebra::{DMatrix, DVector};

/// How the diagonal in the eigenbasis is damped. The payload is `λ ≥ 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Damping {
    /// `D + λ`: exactly `(F̂ + λI)⁻¹`. EKFAC and TEKFAC; valid for every variant.
    Additive(f64),
    /// K-FAC's factored Tikhonov damping with π: `(G + √λ/π·I) ⊗ (A + π√λ·I)`.
    FactoredTikhonov(f64),
    /// TKFAC's "normal" damping: `(√δΨ + √λI) ⊗ (√δΦ + √λI)` (π = 1 on the `√δ`-split factors).
    TkfacNormal(f64),
    /// `D + √λ(π u_k + v_i/π) + λ`: K-FAC's factored damping as a shift of any diagonal (an
    /// option for EKFAC/TEKFAC; equal to `FactoredTikhonov` on K-FAC). Module docs.
    FactoredShift(f64),
}

impl Damping {
    /// The project default mode of each variant (spec §1.7): K-FAC factored Tikhonov, TKFAC
    /// normal damping, EKFAC and TEKFAC additive.
    pub fn for_variant(variant: Variant, lambda: f64) -> Self {
        match variant {
            Variant::Kfac => Damping::FactoredTikhonov(lambda),
            Variant::Tkfac => Damping::TkfacNormal(lambda),
            Variant::Ekfac | Variant::Tekfac => Damping::Additive(lambda),
        }
    }

    /// `λ`.
    pub fn lambda(&self) -> f64 {
        match *self {
            Damping::Additive(l)
            | Damping::FactoredTikhonov(l)
            | Damping::TkfacNormal(l)
            | Damping::FactoredShift(l) => l,
        }
    }

    /// True for the modes that damp each factor separately (they need `D = u vᵀ`).
    pub fn is_factored(&self) -> bool {
        matches!(self, Damping::FactoredTikhonov(_) | Damping::TkfacNormal(_))
    }
}

/// TEKFAC Eq. 3.5: `λ = max(ΣΘ, ϑ) / dim Θ`, with `diagonal_sum = ΣΘ = tr F̂`, `numel = dim Θ`.
pub fn trace_adaptive(diagonal_sum: f64, numel: usize, floor: f64) -> f64 {
    diagonal_sum.max(floor) / numel.max(1) as f64
}

impl Damping {
    /// The damped diagonal `[d_out, d_in']` from the undamped one, `D`. `split` is `(u, v)`, the
    /// factor eigenvalues split by the trace scale (`D = u vᵀ` for the uncorrected variants).
    /// `None` for a negative or non-finite λ, or a mode that needs a split without one.
    pub(crate) fn damped(
        &self,
        diagonal: &DMatrix<f64>,
        split: Option<(DVector<f64>, DVector<f64>)>,
    ) -> Option<DMatrix<f64>> {
        let lambda = self.lambda();
        if !(lambda.is_finite() && lambda >= 0.0) {
            return None;
        }
        if let Damping::Additive(_) = self {
            return Some(diagonal.add_scalar(lambda));
        }
        let (u, v) = split?;
        if let Damping::FactoredShift(_) = self {
            return Some(factored_shift(diagonal, &u, &v, lambda));
        }
        let (du, dv) = self.factored(&u, &v)?;
        Some(du * dv.transpose())
    }

    /// The damped factor diagonals `(u + √λ/π, v + π√λ)` (K-FAC) or `(u + √λ, v + √λ)`
    /// (TKFAC) whose outer product is the damped diagonal of a factored mode: the inverse of
    /// the damped block is then `Ĝ⁻¹ ⊗ Â⁻¹` with `Ĝ⁻¹ = Q_G diag(1/du) Q_Gᵀ`. `None` for
    /// [`Damping::Additive`] or an invalid λ.
    pub(crate) fn factored(
        &self,
        u: &DVector<f64>,
        v: &DVector<f64>,
    ) -> Option<(DVector<f64>, DVector<f64>)> {
        let lambda = self.lambda();
        if !(lambda.is_finite() && lambda >= 0.0) {
            return None;
        }
        let root = lambda.sqrt();
        let (on_u, on_v) = match self {
            Damping::Additive(_) | Damping::FactoredShift(_) => return None,
            Damping::FactoredTikhonov(_) => {
                let pi = pi(u, v);
                (root / pi, root * pi)
            }
            Damping::TkfacNormal(_) => (root, root),
        };
        Some((u.add_scalar(on_u), v.add_scalar(on_v)))
    }
}

/// `D_ki + √λ(π u_k + v_i/π) + λ` ([`Damping::FactoredShift`]).
fn factored_shift(
    d: &DMatrix<f64>,
    u: &DVector<f64>,
    v: &DVector<f64>,
    lambda: f64,
) -> DMatrix<f64> {
    let (root, pi) = (lambda.sqrt(), pi(u, v));
    DMatrix::from_fn(d.nrows(), d.ncols(), |k, i| {
        d[(k, i)] + root * (pi * u[k] + v[i] / pi) + lambda
    })
}

/// `π = √((Σv/d_in') / (Σu/d_out))`, the ratio of the factors' mean eigenvalues (K-FAC §6.3);
/// 1 when either factor has no positive trace.
fn pi(u: &DVector<f64>, v: &DVector<f64>) -> f64 {
    let ratio = v.mean() / u.mean();
    if ratio.is_finite() && ratio > 0.0 {
        ratio.sqrt()
    } else {
        1.0
    }
}
