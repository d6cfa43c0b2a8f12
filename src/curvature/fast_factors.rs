//! The batch factors of `factors.rs` (the first place where the variants differ), formed from
//! the f32 rows with f32 GEMMs summed in f64 (`fast_stats.rs`). Same estimates, same
//! normalisations, f64 results:
//!
//! ```text
//! K-FAC / EKFAC (spec §3.1, §3.3, KFC)          TKFAC / TEKFAC raw numerators (spec §5.1, §5.2)
//! A  = (1/N)  Σ_r ā_r ā_rᵀ                      δ  = (1/N) Σ_r ‖ā_r‖² Σ_s ‖g_{s,r}‖²
//! G  = (1/NT) Σ_r Σ_s g_{s,r} g_{s,r}ᵀ          δΦ = (1/N) Σ_r (Σ_s ‖g_{s,r}‖²) ā_r ā_rᵀ
//! trace_scale = 1                               δΨ = (1/N) Σ_r Σ_s ‖ā_r‖² g_{s,r} g_{s,r}ᵀ
//! ```

use super::factors::KroneckerFactors;
use super::fast_stats::{FastRows, gram};
use crate::autograd::LayerCapture;
use crate::error::Result;

/// The batch factors of an f32 capture: TKFAC's raw numerators when `trace_restricted`, else
/// K-FAC's `A, G`. The f32 twin of [`KroneckerFactors::from_capture`] (same errors).
pub fn fast_factors(
    trace_restricted: bool,
    capture: &LayerCapture<f32>,
) -> Result<KroneckerFactors> {
    let rows = FastRows::from_capture(capture)?;
    Ok(if trace_restricted {
        fast_tkfac(&rows)
    } else {
        fast_kfac(&rows)
    })
}

/// K-FAC (KFC for conv), spec §3.1/§3.3: `A = Σ_r ā āᵀ / N`, `G = Σ_{r,s} g gᵀ / (N·T)`,
/// `trace_scale = 1`; the f32 twin of [`KroneckerFactors::kfac`].
pub fn fast_kfac(rows: &FastRows<'_>) -> KroneckerFactors {
    let l = rows.layout;
    let n = l.examples as f64;
    let nt = (l.examples * l.locations) as f64;
    KroneckerFactors {
        a_factor: gram(&[rows.a], l.d_in_bar, None, 1.0 / n),
        g_factor: gram(&rows.g, l.d_out, None, 1.0 / nt),
        trace_scale: 1.0,
    }
}

/// TKFAC raw numerators, spec §5.1 Eq. 4.9 (conv: §5.2, sums over locations):
/// `δ = E[‖ā‖²‖g‖²]`, `δΦ = E[‖g‖² āāᵀ]`, `δΨ = E[‖ā‖² ggᵀ]`; the f32 twin of
/// [`KroneckerFactors::tkfac`].
pub fn fast_tkfac(rows: &FastRows<'_>) -> KroneckerFactors {
    let l = rows.layout;
    let n = l.examples as f64;
    let a_norms = rows.a_norms_sq();
    let g_norms = rows.g_norms_sq();
    let delta: f64 = a_norms.iter().zip(&g_norms).map(|(a, g)| a * g).sum();
    KroneckerFactors {
        a_factor: gram(&[rows.a], l.d_in_bar, Some(&g_norms), 1.0 / n),
        g_factor: gram(&rows.g, l.d_out, Some(&a_norms), 1.0 / n),
        trace_scale: delta / n,
    }
}
