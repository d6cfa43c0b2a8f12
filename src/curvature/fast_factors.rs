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

use super::average::{BatchStatistic, Blend};
use super::factors::KroneckerFactors;
use super::fast_stats::{FastRows, blend_gram, gram};
use crate::autograd::LayerCapture;
use crate::error::Result;

/// The batch factors of an f32 capture: TKFAC's raw numerators when `trace_restricted`, else
/// K-FAC's `A, G`. The f32 twin of [`KroneckerFactors::from_capture`] (same errors).
pub fn fast_factors(
    trace_restricted: bool,
    capture: &LayerCapture<f32>,
) -> Result<KroneckerFactors> {
    Ok(FastFactors::new(trace_restricted, capture)?.form())
}

/// The batch factors of an f32 capture on their way into a block's running average
/// ([`CurvatureBlock::observe_factors`](super::CurvatureBlock::observe_factors)): formed by
/// [`fast_kfac`] / [`fast_tkfac`] for the first observation, afterwards blended into the average
/// panel by panel ([`blend_gram`]), bit for bit the same as blending the formed batch.
#[derive(Clone, Debug)]
pub struct FastFactors<'c> {
    rows: FastRows<'c>,
    trace_restricted: bool,
}

impl<'c> FastFactors<'c> {
    /// Checks the capture's shapes (as [`FastRows::from_capture`]) and borrows its rows.
    pub fn new(trace_restricted: bool, capture: &'c LayerCapture<f32>) -> Result<Self> {
        Ok(Self::of_rows(
            trace_restricted,
            FastRows::from_capture(capture)?,
        ))
    }

    /// The batch factors of rows already checked.
    pub fn of_rows(trace_restricted: bool, rows: FastRows<'c>) -> Self {
        FastFactors {
            rows,
            trace_restricted,
        }
    }
}

impl BatchStatistic<KroneckerFactors> for FastFactors<'_> {
    fn shape(&self) -> (usize, usize) {
        (self.rows.layout.d_out, self.rows.layout.d_in_bar)
    }

    fn form(self) -> KroneckerFactors {
        if self.trace_restricted {
            fast_tkfac(&self.rows)
        } else {
            fast_kfac(&self.rows)
        }
    }

    /// The same sums as [`fast_kfac`] / [`fast_tkfac`], each gram blended in place.
    fn blend_into(self, avg: &mut KroneckerFactors, c_old: f64, c_new: f64) {
        let (rows, l) = (&self.rows, self.rows.layout);
        let n = l.examples as f64;
        let c = (c_old, c_new);
        if self.trace_restricted {
            let (a_norms, g_norms, delta) = tkfac_weights(rows);
            blend_gram(
                &mut avg.a_factor,
                c,
                &[rows.a],
                l.d_in_bar,
                Some(&g_norms),
                1.0 / n,
            );
            blend_gram(
                &mut avg.g_factor,
                c,
                &rows.g,
                l.d_out,
                Some(&a_norms),
                1.0 / n,
            );
            avg.trace_scale.blend(c_old, c_new, &(delta / n));
        } else {
            let nt = (l.examples * l.locations) as f64;
            blend_gram(&mut avg.a_factor, c, &[rows.a], l.d_in_bar, None, 1.0 / n);
            blend_gram(&mut avg.g_factor, c, &rows.g, l.d_out, None, 1.0 / nt);
            avg.trace_scale.blend(c_old, c_new, &1.0);
        }
    }
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
    let (a_norms, g_norms, delta) = tkfac_weights(rows);
    KroneckerFactors {
        a_factor: gram(&[rows.a], l.d_in_bar, Some(&g_norms), 1.0 / n),
        g_factor: gram(&rows.g, l.d_out, Some(&a_norms), 1.0 / n),
        trace_scale: delta / n,
    }
}

/// TKFAC's row weights `‖ā_r‖²`, `Σ_s ‖g_{s,r}‖²` and `δ·N = Σ_r ‖ā_r‖² Σ_s ‖g_{s,r}‖²`, in f64.
pub(super) fn tkfac_weights(rows: &FastRows<'_>) -> (Vec<f64>, Vec<f64>, f64) {
    let a_norms = rows.a_norms_sq();
    let g_norms = rows.g_norms_sq();
    let delta = a_norms.iter().zip(&g_norms).map(|(a, g)| a * g).sum();
    (a_norms, g_norms, delta)
}
