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
//!
//! with `π = √((Σv/d_in') / (Σu/d_out))` (the factors' mean eigenvalues; Thrandis `_inv_covs`).
//! The factored forms need `D = u vᵀ`, so they are refused for EKFAC/TEKFAC.
//!
//! **TEKFAC on conv layers** (Eq. 3.5): `λ = max(ΣΘ, ϑ) / dim Θ` ([`trace_adaptive`]), the mean
//! eigenvalue of the block floored at `ϑ/dim Θ`. **Dense layers inside a CNN** may follow
//! `β = max over conv layers of that λ` ([`DenseInCnn`]); how the paper applies β is \[U\].
//!
//! **Defaults** ([`DampingSettings::default`]): `λ = 1e-3` (spec §1.7; baolgr and LNGD's grid),
//! `ϑ = 1e-3` (the paper's value is \[U\]), dense-in-CNN [`DenseInCnn::Fixed`] (the conservative
//! reading: dense layers keep the plain additive λ; `Beta`/`BetaTimesLambda` are opt-in), and
//! the conv λ **floored at the dense λ** (`conv_at_least_lambda`): `max(ΣΘ/dim Θ, ϑ/dim Θ, λ)`.
//! NOTE: the literal Eq. 3.5 with any trace floor ϑ of the λ scale is `≈ mean(Θ)` on a real
//! conv layer (≈ 1e-5 on the CNN preset's conv2, since `ϑ/dim Θ ≈ 2e-8`), a hundred to ten
//! thousand times smaller than the dense layers' λ: conv directions that one sampled batch
//! sees as flat then take steps of `η·∇/mean(Θ)`, and TEKFAC with the CLI defaults diverged
//! within 6 steps on the CNN preset. Flooring at `λ` keeps the trace-adaptive rule where the
//! curvature is large (`mean Θ > λ`) and otherwise damps conv layers like dense ones. The
//! literal rule stays available (`conv_at_least_lambda = false`, CLI
//! `--conv-damping-at-least-lambda false`).

use super::block::CurvatureBlock;
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
            Damping::Additive(l) | Damping::FactoredTikhonov(l) | Damping::TkfacNormal(l) => l,
        }
    }

    /// True for the modes that damp each factor separately (they need `D = u vᵀ`).
    pub fn is_factored(&self) -> bool {
        !matches!(self, Damping::Additive(_))
    }
}

/// How TEKFAC damps dense layers in a network that also has conv layers (spec §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DenseInCnn {
    /// The fixed additive `λ`, like any dense layer (default).
    #[default]
    Fixed,
    /// `λ_dense := β`.
    Beta,
    /// `λ_dense := β·λ`.
    BetaTimesLambda,
}

impl DenseInCnn {
    /// The damping of a dense layer in a CNN, given the fixed `λ` and `β`.
    pub fn lambda(self, lambda: f64, beta: f64) -> f64 {
        match self {
            DenseInCnn::Fixed => lambda,
            DenseInCnn::Beta => beta,
            DenseInCnn::BetaTimesLambda => beta * lambda,
        }
    }
}

/// The damping hyperparameters of spec §1.7 in one place (defaults in the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DampingSettings {
    /// `λ`: additive for EKFAC/TEKFAC dense layers, Tikhonov for K-FAC/TKFAC (1e-3).
    pub lambda: f64,
    /// `ϑ`, the floor of TEKFAC's conv damping `max(ΣΘ, ϑ)/dim Θ` (1e-3).
    pub conv_floor: f64,
    /// Also floor TEKFAC's conv damping at `λ`: `max(ΣΘ/dim Θ, ϑ/dim Θ, λ)` (default true; the
    /// literal Eq. 3.5 when false). See the module docs for why.
    pub conv_at_least_lambda: bool,
    /// TEKFAC's dense layers inside a CNN ([`DenseInCnn::Fixed`]).
    pub dense_in_cnn: DenseInCnn,
}

impl Default for DampingSettings {
    fn default() -> Self {
        DampingSettings {
            lambda: 1e-3,
            conv_floor: 1e-3,
            conv_at_least_lambda: true,
            dense_in_cnn: DenseInCnn::Fixed,
        }
    }
}

/// TEKFAC Eq. 3.5: `λ = max(ΣΘ, ϑ) / dim Θ`, with `diagonal_sum = ΣΘ = tr F̂`, `numel = dim Θ`.
pub fn trace_adaptive(diagonal_sum: f64, numel: usize, floor: f64) -> f64 {
    diagonal_sum.max(floor) / numel.max(1) as f64
}

/// `β = max over conv layers of max(ΣΘ_l, ϑ)/dim Θ_l`, given those per-layer values
/// (0 for a network without conv layers).
pub fn beta(conv_lambdas: impl IntoIterator<Item = f64>) -> f64 {
    conv_lambdas.into_iter().fold(0.0, f64::max)
}

/// The damping of every block of one network under `variant` (spec §1.7): TEKFAC conv layers
/// trace-adaptive, TEKFAC dense layers in a CNN per [`DenseInCnn`], everything else
/// [`Damping::for_variant`] with the fixed `λ`.
pub fn network_damping(
    variant: Variant,
    settings: &DampingSettings,
    blocks: &[CurvatureBlock],
) -> Vec<Damping> {
    let floor = settings.conv_floor;
    let lower = if settings.conv_at_least_lambda {
        settings.lambda
    } else {
        0.0
    };
    let conv_lambda = |b: &CurvatureBlock| b.trace_adaptive_damping(floor).max(lower);
    let has_conv = blocks.iter().any(CurvatureBlock::is_conv);
    let conv = blocks.iter().filter(|b| b.is_conv());
    let beta = beta(conv.map(conv_lambda));
    blocks
        .iter()
        .map(|b| match (variant, b.is_conv(), has_conv) {
            (Variant::Tekfac, true, _) => Damping::Additive(conv_lambda(b)),
            (Variant::Tekfac, false, true) => {
                Damping::Additive(settings.dense_in_cnn.lambda(settings.lambda, beta))
            }
            _ => Damping::for_variant(variant, settings.lambda),
        })
        .collect()
}

impl Damping {
    /// The damped diagonal `[d_out, d_in']` from the undamped one, `D`. `split` is `(u, v)` with
    /// `D = u vᵀ` (uncorrected variants) or `None` (s*, Θ: only additive damping applies).
    /// `None` for a negative or non-finite λ, or a factored mode without a split.
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
            Damping::Additive(_) => return None,
            Damping::FactoredTikhonov(_) => {
                let pi = pi(u, v);
                (root / pi, root * pi)
            }
            Damping::TkfacNormal(_) => (root, root),
        };
        Some((u.add_scalar(on_u), v.add_scalar(on_v)))
    }
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
