//! The batch estimate of EKFAC's `s*` (spec §4.1) and TEKFAC's `Θ` (spec §6.2 Eq. 3.2), formed
//! from the f32 rows with f32 GEMMs summed in f64: the f32 twin of `correction.rs`.
//!
//! ```text
//! batch = (1/N) Σ_n Σ_s (Q_Gᵀ DW_{n,s} Q_A)^∘2 = (1/N) Σ_n Σ_s (ĝ_{s,n}ᵀ â_n)^∘2    [d_out, d_in']
//! â = ā Q_A,  ĝ_s = g_s Q_G                      (rows rotated once, in f32)
//! dense (T = 1):  (1/N) Σ_s (ĝ_s^∘2)ᵀ (â^∘2)      one GEMM per block of rows and sweep
//! conv  (T > 1):  (1/N) Σ_n Σ_s (ĝ_{s,n}ᵀ â_n)^∘2  one [d_out, T]·[T, d_in'] GEMM per example,
//!                                                  cross-location terms kept (spec §1.6)
//! ```
//!
//! The rows are rotated one block of whole examples (about [`ROW_BLOCK`] rows) at a time, so
//! the rotated rows stay small and cache-resident; each block's result is added in f64. A dense
//! layer's batch of one block and one sweep is a single f32 product, which [`FastCorrection`]
//! keeps in f32 and widens entry by entry as it is blended into the block's average. The
//! sums are formed transposed, `[d_in', d_out]` row-major, which is the column-major storage
//! of the `[d_out, d_in']` result. The basis comes as row-major f32 copies of `Q_A`
//! (`[d_in', d_in']`) and `Q_G` (`[d_out, d_out]`).

use super::average::{AllFinite, BatchStatistic};
use super::fast_stats::{FastRows, ROW_BLOCK, row_blocks};
use super::rows::RowLayout;
use crate::autograd::LayerCapture;
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, gemm_into};
use nalgebra::DMatrix;
use rayon::prelude::*;

/// `(1/N) Σ_n Σ_s (Q_Gᵀ DW_{n,s} Q_A)^∘2` of an f32 capture, `[d_out, d_in']` (EKFAC §3.2,
/// TEKFAC Eq. 3.2); the f32 twin of [`corrected_batch`](super::corrected_batch).
///
/// Errors on a malformed capture (as [`FastRows::from_capture`]) and when `q_a` is not
/// `d_in'²` or `q_g` not `d_out²` long.
pub fn fast_corrected_batch(
    capture: &LayerCapture<f32>,
    q_a: &[f32],
    q_g: &[f32],
) -> Result<DMatrix<f64>> {
    Ok(FastCorrection::of_capture(capture, q_a, q_g)?.form())
}

/// [`fast_corrected_batch`] on checked rows.
///
/// # Panics
/// When `q_a`, `q_g` do not fit the rows' widths (checked by [`fast_corrected_batch`]).
pub fn fast_corrected(rows: &FastRows<'_>, q_a: &[f32], q_g: &[f32]) -> DMatrix<f64> {
    corrected_sum(rows, Some((q_a, q_g)))
}

/// [`fast_corrected`] of rows already in the basis, `rows.a = â = ā Q_A` and
/// `rows.g[s] = ĝ_s = g_s Q_G`: the same sum without the two rotations (a dense layer trained in
/// its eigenbasis hands these rows out, [`RotatedRows`](crate::autograd::RotatedRows)).
/// `tests/ng_fast_curvature.rs` pins it to [`fast_corrected_batch`] on the same pass.
pub fn fast_corrected_in_basis(rows: &FastRows<'_>) -> DMatrix<f64> {
    corrected_sum(rows, None)
}

/// `(1/N) Σ_n Σ_s (ĝ_{s,n}ᵀ â_n)^∘2`, rotating the rows by `(Q_A, Q_G)` first, or taking them
/// as they are (`None`: already rotated).
fn corrected_sum(rows: &FastRows<'_>, basis: Option<(&[f32], &[f32])>) -> DMatrix<f64> {
    FastCorrection::new(rows, basis).form()
}

/// The batch `s*`/`Θ` of the f32 path on its way into a block's average
/// ([`CurvatureBlock::rescale_batch`](super::CurvatureBlock::rescale_batch)). For a dense
/// layer whose rows fit one block and one sweep it is one f32 product `(ĝ^∘2)ᵀ (â^∘2)`, which
/// blending widens to f64 and divides by `N` entry by entry on its way into the average (no
/// `[d_out, d_in']` f64 batch is formed); otherwise the products are summed in f64 first. Either
/// way bit for bit the batch [`fast_corrected`] forms, blended.
#[derive(Clone, Debug)]
pub struct FastCorrection {
    d_out: usize,
    d_in: usize,
    examples: f64,
    /// `[d_in', d_out]` row-major, i.e. the column-major `[d_out, d_in']` sum.
    sum: Sum,
}

#[derive(Clone, Debug)]
enum Sum {
    Product(Vec<f32>),
    Summed(Vec<f64>),
}

impl FastCorrection {
    /// [`fast_corrected_batch`]'s sum, not yet blended: the same checks and errors.
    pub fn of_capture(capture: &LayerCapture<f32>, q_a: &[f32], q_g: &[f32]) -> Result<Self> {
        let rows = FastRows::from_capture(capture)?;
        let l = rows.layout;
        if q_a.len() != l.d_in_bar * l.d_in_bar || q_g.len() != l.d_out * l.d_out {
            let msg = format!(
                "basis of {} and {} entries for a [{}, {}] capture (need d_in'² = {} and d_out² = {})",
                q_a.len(),
                q_g.len(),
                l.d_out,
                l.d_in_bar,
                l.d_in_bar * l.d_in_bar,
                l.d_out * l.d_out
            );
            return Err(Error::invalid("fast_corrected_batch", msg));
        }
        Ok(Self::new(&rows, Some((q_a, q_g))))
    }

    /// The sum over `rows`, rotated by `(Q_A, Q_G)` first or taken as they are (`None`: rows
    /// already in the basis, [`fast_corrected_in_basis`]).
    ///
    /// # Panics
    /// When `basis` does not fit the rows' widths (checked by [`fast_corrected_batch`]).
    pub fn new(rows: &FastRows<'_>, basis: Option<(&[f32], &[f32])>) -> Self {
        let l = rows.layout;
        let (d_in, d_out, t) = (l.d_in_bar, l.d_out, l.locations);
        let block_rows = (ROW_BLOCK / t).max(1) * t;
        let mut a_hat = vec![0f32; block_rows.min(l.rows) * d_in];
        let mut g_hat = vec![0f32; block_rows.min(l.rows) * d_out];
        let mut dw = vec![0f32; d_out * d_in];
        let one_product = t == 1 && l.rows <= block_rows && rows.g.len() == 1;
        let mut sum = if one_product {
            Vec::new()
        } else {
            vec![0.0f64; d_out * d_in]
        };
        for (a, r) in row_blocks(rows.a, d_in, block_rows) {
            let b = r.len();
            let a_hat = &mut a_hat[..b * d_in];
            match basis {
                Some((q_a, _)) => rotate(a, q_a, d_in, a_hat),
                None => a_hat.copy_from_slice(a),
            }
            if t == 1 {
                a_hat.iter_mut().for_each(|x| *x *= *x);
            }
            for g in &rows.g {
                let g_hat = &mut g_hat[..b * d_out];
                let g = &g[r.start * d_out..r.end * d_out];
                match basis {
                    Some((_, q_g)) => rotate(g, q_g, d_out, g_hat),
                    None => g_hat.copy_from_slice(g),
                }
                if t > 1 {
                    per_example_block(a_hat, g_hat, l, &mut dw, &mut sum);
                    continue;
                }
                squared_product(a_hat, g_hat, l, &mut dw);
                if !one_product {
                    add_widened(&mut sum, &dw);
                }
            }
        }
        FastCorrection {
            d_out,
            d_in,
            examples: l.examples as f64,
            sum: if one_product {
                Sum::Product(dw)
            } else {
                Sum::Summed(sum)
            },
        }
    }
}

impl BatchStatistic<DMatrix<f64>> for FastCorrection {
    fn shape(&self) -> (usize, usize) {
        (self.d_out, self.d_in)
    }

    fn form(self) -> DMatrix<f64> {
        let sum = match self.sum {
            Sum::Product(dw) => dw.into_iter().map(f64::from).collect(),
            Sum::Summed(sum) => sum,
        };
        let mut batch = DMatrix::from_vec(self.d_out, self.d_in, sum);
        batch /= self.examples;
        batch
    }

    /// `avg ← c_old·avg + c_new·(sum / N)` entry by entry, in parallel. NOTE: when `N` is a
    /// power of two (the batch of 128), `1/N` is exact and `x·(1/N)` is the correctly rounded
    /// `x/N` itself, so the blend multiplies instead of dividing: the same bits, and with the
    /// chunked loop of [`blend_chunks`] less than half the time on fc1's `[512, 785]` in a
    /// stand-alone measurement (docs/PERFORMANCE.md).
    fn blend_into(self, avg: &mut DMatrix<f64>, c_old: f64, c_new: f64) {
        let n = self.examples;
        let avg = avg.as_mut_slice();
        let exact_inverse = (n as u64).is_power_of_two().then(|| 1.0 / n);
        let blend = |a: f64, s: f64| c_old * a + c_new * s;
        match (&self.sum, exact_inverse) {
            (Sum::Product(dw), Some(inv)) => {
                blend_chunks(avg, dw, |a, x| blend(a, f64::from(x) * inv))
            }
            (Sum::Product(dw), None) => blend_chunks(avg, dw, |a, x| blend(a, f64::from(x) / n)),
            (Sum::Summed(sum), Some(inv)) => blend_chunks(avg, sum, |a, s| blend(a, s * inv)),
            (Sum::Summed(sum), None) => blend_chunks(avg, sum, |a, s| blend(a, s / n)),
        }
    }
}

/// `avg_k ← f(avg_k, sum_k)` for every entry, in parallel chunks of 2¹⁴ entries (each chunk a
/// plain loop the compiler vectorises).
fn blend_chunks<T: Copy + Send + Sync>(
    avg: &mut [f64],
    sum: &[T],
    f: impl Fn(f64, T) -> f64 + Sync,
) {
    const CHUNK: usize = 1 << 14;
    avg.par_chunks_mut(CHUNK)
        .zip(sum.par_chunks(CHUNK))
        .for_each(|(avg, sum)| {
            for (a, &s) in avg.iter_mut().zip(sum) {
                *a = f(*a, s);
            }
        });
}

impl AllFinite for FastCorrection {
    /// In parallel chunks of vectorised loops (`tensor::all_finite`): a check of every entry at
    /// every re-scaling step.
    fn all_finite(&self) -> bool {
        match &self.sum {
            Sum::Product(dw) => crate::tensor::all_finite(dw),
            Sum::Summed(sum) => crate::tensor::all_finite(sum),
        }
    }
}

/// `sum += dw`, each f32 entry widened to f64.
fn add_widened(sum: &mut [f64], dw: &[f32]) {
    sum.iter_mut()
        .zip(dw)
        .for_each(|(s, &x)| *s += f64::from(x));
}

/// `x̂ = x Q` for a row-major block `x: [b, d]` and `q: [d, d]`.
fn rotate(x: &[f32], q: &[f32], d: usize, out: &mut [f32]) {
    let b = x.len() / d;
    let (x, q) = (MatRef::new(x, b, d, false), MatRef::new(q, d, d, false));
    gemm_into(1.0, x, q, 0.0, out);
}

/// Dense rows: `dw = (ĝ^∘2)ᵀ (â^∘2)` (`[d_in', d_out]` row-major), with `a_sq = â^∘2` already
/// squared; `g_hat` is squared here.
fn squared_product(a_sq: &[f32], g_hat: &mut [f32], l: RowLayout, dw: &mut [f32]) {
    let b = a_sq.len() / l.d_in_bar;
    g_hat.iter_mut().for_each(|x| *x *= *x);
    let (a_sq_t, g_sq) = (
        MatRef::new(a_sq, b, l.d_in_bar, true),
        MatRef::new(g_hat, b, l.d_out, false),
    );
    gemm_into(1.0, a_sq_t, g_sq, 0.0, dw);
}

/// Conv rows: `sumᵀ += Σ_n (ĝ_nᵀ â_n)^∘2` over the whole examples of the block, each rotated
/// per-example gradient squared in f64.
fn per_example_block(a_hat: &[f32], g_hat: &[f32], l: RowLayout, dw: &mut [f32], sum: &mut [f64]) {
    let (t, d_in, d_out) = (l.locations, l.d_in_bar, l.d_out);
    let examples = a_hat
        .chunks_exact(t * d_in)
        .zip(g_hat.chunks_exact(t * d_out));
    for (a_n, g_n) in examples {
        let (a_n_t, g_n) = (
            MatRef::new(a_n, t, d_in, true),
            MatRef::new(g_n, t, d_out, false),
        );
        gemm_into(1.0, a_n_t, g_n, 0.0, dw);
        sum.iter_mut().zip(dw.iter()).for_each(|(s, &x)| {
            let x = f64::from(x);
            *s += x * x;
        });
    }
}
