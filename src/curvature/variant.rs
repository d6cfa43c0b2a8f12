//! `Variant`: which of the four natural-gradient approximations a block computes.
//!
//! The four are one algorithm with two switches (STYLE.md: "four variants share one block and
//! differ in exactly two places"):
//!
//! | variant | `trace_restricted` (factors) | `corrects_eigenvalues` (diagonal) |
//! |---|---|---|
//! | K-FAC  (Martens & Grosse 2015)  | no: `A`, `G`       | no: `d_g d_aᵀ`            |
//! | EKFAC  (George et al. 2018)     | no: `A`, `G`       | yes: `s*` (spec §4.1)     |
//! | TKFAC  (Gao et al. 2021)        | yes: `δ`, `δΦ`, `δΨ` | no: `e_Ψ e_Φᵀ / δ`      |
//! | TEKFAC (Gao et al. 2020/2023)   | yes: `δ`, `δΦ`, `δΨ` | yes: `Θ` (spec §6.2)    |

use std::fmt;

/// One of the four Kronecker-factored natural-gradient approximations.
///
/// ```
/// use tekfac::curvature::Variant;
/// assert!(Variant::Tekfac.trace_restricted() && Variant::Tekfac.corrects_eigenvalues());
/// assert!(!Variant::Kfac.trace_restricted() && !Variant::Kfac.corrects_eigenvalues());
/// assert_eq!(Variant::ALL.len(), 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// K-FAC: `F̂ = G ⊗ A` (row-major order), diagonal `d_g d_aᵀ` in its eigenbasis.
    Kfac,
    /// EKFAC: K-FAC's eigenbasis, diagonal re-estimated as `s* = E[(Q_Gᵀ DW Q_A)^∘2]`.
    Ekfac,
    /// TKFAC: `F̂ = δ Ψ ⊗ Φ` with `tr Φ = tr Ψ = 1`, `δ = tr F` (trace-restricted).
    Tkfac,
    /// TEKFAC: TKFAC's eigenbasis, diagonal re-estimated as `Θ = E[(Q_Ψᵀ DW Q_Φ)^∘2]`.
    Tekfac,
}

impl Variant {
    /// All four, in the order K-FAC, EKFAC, TKFAC, TEKFAC.
    pub const ALL: [Variant; 4] = [
        Variant::Kfac,
        Variant::Ekfac,
        Variant::Tkfac,
        Variant::Tekfac,
    ];

    /// Switch 1: the factors are TKFAC's raw numerators `δΦ, δΨ, δ` instead of `A, G`.
    pub fn trace_restricted(self) -> bool {
        matches!(self, Variant::Tkfac | Variant::Tekfac)
    }

    /// Switch 2: the diagonal in the eigenbasis is a running average of squared rotated
    /// per-example gradients (`s*`, `Θ`) instead of the product of factor eigenvalues.
    pub fn corrects_eigenvalues(self) -> bool {
        matches!(self, Variant::Ekfac | Variant::Tekfac)
    }

    /// Lower-case name, as used on the command line and in logs (`kfac`, `tekfac`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Kfac => "kfac",
            Variant::Ekfac => "ekfac",
            Variant::Tkfac => "tkfac",
            Variant::Tekfac => "tekfac",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
