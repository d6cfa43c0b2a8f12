//! Hyperparameters of the natural-gradient optimizers, with the project defaults of
//! `docs/math.md` (spec §1). They are the defaults of `tekfac train` too: the CLI reads them from
//! [`NgConfig::DEFAULT`]. Every field but `low_rank`, `eigenbasis_layers`, `warm_start`,
//! `f32_statistics` and `stacked_statistics` (fast paths with the same mathematics, not hyperparameters) is a CLI flag.

use super::damping::DampingPolicy;
use crate::autograd::FisherType;
use crate::curvature::{Variant, WarmStart};

/// Settings shared by K-FAC, EKFAC, TKFAC and TEKFAC.
#[derive(Clone, Debug, PartialEq)]
pub struct NgConfig {
    /// Learning rate η (0.01; usual: 1e-3 … 1e-1 with momentum 0.9).
    pub lr: f64,
    /// How each block is damped: λ (tuned per variant when `None`), TEKFAC's conv rule.
    pub damping: DampingPolicy,
    /// Heavy-ball momentum μ on the preconditioned step (0.9).
    pub momentum: f64,
    /// EMA decay ρ of every running average: `new = ρ·old + (1−ρ)·batch` (0.95).
    pub decay: f64,
    /// Update the factor statistics every this many steps (T_stats, 10).
    pub stats_interval: u64,
    /// Recompute the Kronecker eigenbasis every this many steps (T_eig, 100).
    pub eigen_interval: u64,
    /// Re-estimate s* / Θ every this many steps (T_scale, 10).
    pub scale_interval: u64,
    /// KL-clipping threshold κ (`None`: off; K-FAC codes use 1e-3 … 1e-2).
    pub kl_clip: Option<f64>,
    /// L2 weight decay added to the gradient before preconditioning (0; `tekfac train` gives
    /// every optimizer `train::RunDefaults`' weight decay unless `--weight-decay` is set).
    pub weight_decay: f64,
    /// Labels behind the curvature statistics (spec §1.1; default: sampled, k = 1).
    pub fisher: FisherType,
    /// Rotate a dense layer's gradient into the eigenbasis from its low-rank form
    /// `∇W̄ = gᵀā` when that is cheaper (same update up to rounding; needs weight decay 0).
    pub low_rank: bool,
    /// EKFAC/TEKFAC: store a dense layer in its Kronecker eigenbasis, `W̄ = Q_G W̃ Q_Aᵀ`, when
    /// that costs fewer multiply-adds per step, so the update is elementwise (same update up to
    /// rounding; `optim/natural/eigenbasis.rs`).
    pub eigenbasis_layers: bool,
    /// EKFAC/TEKFAC: refresh the eigenbasis warm-started from the previous one by GEMMs, with
    /// nalgebra's exact decomposition as the first and periodic fallback (`curvature/warm.rs`;
    /// their `s*`/`Θ` is the best diagonal in any basis, identity 7). K-FAC and TKFAC, which use
    /// the factors' eigenvalues themselves, always refresh exactly.
    pub warm_start: WarmStart,
    /// Form the batch grams of f32 captures with f32 GEMMs, summed into the f64 averages
    /// (`curvature/fast_stats.rs`; same statistics up to f32 rounding). f64 runs always use f64.
    pub f32_statistics: bool,
    /// With `f32_statistics`: hold a dense layer's f32 rows of consecutive statistics steps and
    /// blend them into the f64 averages as one stacked gram, at the next refresh or every
    /// `ROW_BLOCK` rows (`curvature/pending.rs`; same averages up to f32 rounding), instead of
    /// blending every step's batch into them at once.
    pub stacked_statistics: bool,
}

impl NgConfig {
    /// The project defaults (field docs), shared with the CLI.
    pub const DEFAULT: NgConfig = NgConfig {
        lr: 0.01,
        damping: DampingPolicy::DEFAULT,
        momentum: 0.9,
        decay: 0.95,
        stats_interval: 10,
        eigen_interval: 100,
        scale_interval: 10,
        kl_clip: None,
        weight_decay: 0.0,
        fisher: FisherType::Sampled { k: 1, seed: 0 },
        low_rank: true,
        eigenbasis_layers: true,
        warm_start: WarmStart::DEFAULT,
        f32_statistics: true,
        stacked_statistics: true,
    };
}

impl NgConfig {
    /// The refresh policy of `variant`: `warm_start` for EKFAC/TEKFAC, with the variant's own
    /// keep threshold when none is set ([`WarmStart::for_variant`]); exact for K-FAC/TKFAC.
    pub fn refresh_settings(&self, variant: Variant) -> WarmStart {
        if variant.corrects_eigenvalues() {
            self.warm_start.for_variant(variant)
        } else {
            WarmStart::exact_only()
        }
    }
}

impl Default for NgConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}
