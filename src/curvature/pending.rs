//! Factor statistics of several steps kept as their f32 rows and formed as one stacked gram
//! (issue 16, the f32 statistics path). The factors are read only when the eigenbasis is
//! refreshed, so a dense layer's batches need not be blended into the f64 averages one step at
//! a time. By linearity of the moving average (`average.rs`), `k` blends
//! `x̄ ← c_old,j·x̄ + c_new,j·B_j` are one:
//!
//! ```text
//! x̄ ← (Π_j c_old,j)·x̄ + Σ_j W_j B_j,      W_j = c_new,j · Π_{i>j} c_old,i
//! Σ_j W_j B_j = Σ_j Σ_r ω_r x_r x_rᵀ = (diag(ω) X)ᵀ X      X = [X_1; …; X_k] stacked, ω_r = W_j·w_r/N_j
//! ```
//!
//! with `w_r` the row weight of the variant's batch estimate (`fast_factors.rs`: 1 and `1/T`
//! for K-FAC's `A` and `G`, TKFAC's `‖g_r‖²` and `‖ā_r‖²`) and `W_j` kept up to date by
//! multiplying the held weights by each new `c_old`. An empty average is seeded by its first
//! observation (`x̄₁ = B₁`): that batch enters with `W = 1` and the old average with
//! coefficient 0. The stacked gram is formed by [`blend_gram`], an f32 GEMM over at most
//! [`ROW_BLOCK`] rows blended in place: the same f32 summation length the gram module allows
//! one product, so the statistics still match the f64 path to f32 rounding
//! (`tests/curvature_pending.rs` pins the stacked blend to the step-by-step one). What it saves
//! is the pass over every f64 average at every statistics step (`785²`, `512²`, `513²`, `256²`
//! and two small ones on the MLP preset), paid now once per refresh or per [`ROW_BLOCK`] rows.
//!
//! The optimizer holds one [`PendingFactors`] per layer, takes a batch into it while its rows
//! fit ([`PendingFactors::fits`]; a convolution's batch is `N·T` rows, 8,192 for the CNN
//! preset's conv2, and is blended at once as before), and
//! hands it to the block ([`CurvatureBlock::observe_pending`]) before a refresh, when it is
//! full, or when asked to (`NaturalGradient::flush_statistics`). Checkpoints save it as it
//! is, so a resumed run continues bit-identically.
//!
//! **Rayleigh quotients from rotated rows.** A dense layer stored in its eigenbasis
//! (`optim/natural/eigenbasis.rs`) forms `â_r = ā_r Q_A` and `ĝ_r = g_r Q_G` in its own pass.
//! Pushed beside the rows ([`PendingFactors::push`]), they give, with the same weights and by the
//! same linearity, what the held rows add to the factors' Rayleigh quotients in that basis:
//!
//! ```text
//! diag(Qᵀ x̄ Q) ← (Π_j c_old,j)·diag(Qᵀ x̄ Q) + Σ_r ω_r (x_r Q)^∘2        O(rows·n), no n³ product
//! ```
//!
//! held as [`PendingFactors::rayleigh`] while every held row came with its rotated twin, and
//! folded into the block's tracked quotients by [`CurvatureBlock::observe_pending`] (`warm.rs`
//! keeps a basis on them).
//!
//! [`CurvatureBlock::observe_pending`]: super::CurvatureBlock::observe_pending

use super::average::{BatchStatistic, Blend};
use super::factors::KroneckerFactors;
use super::fast_factors::tkfac_weights;
use super::fast_stats::{FastRows, ROW_BLOCK, blend_gram, gram};
use crate::error::{Error, Result};
use nalgebra::DMatrix;

/// The held observations of one layer's factors: stacked f32 rows with their f64 weights
/// (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct PendingFactors {
    /// `(d_out, d_in')`.
    dims: (usize, usize),
    /// `ā` rows, `[rows, d_in']` row-major.
    a_rows: Vec<f32>,
    /// `ω_r` of each `ā` row.
    a_weights: Vec<f64>,
    /// `g` rows of every sweep, `[rows, d_out]` row-major.
    g_rows: Vec<f32>,
    /// `ω_r` of each `g` row.
    g_weights: Vec<f64>,
    /// `Σ_j W_j · trace_scale_j`.
    trace_scale: f64,
    /// `Π_j c_old,j`: the coefficient of the average the rows will be blended into (0 when
    /// the first row seeds it).
    decay: f64,
    /// Observations held.
    count: u64,
    /// `[Σ_r ω_r (ā_r Q_A)^∘2, Σ_r ω_r (g_r Q_G)^∘2]`, `[d_in']` and `[d_out]`: the held rows'
    /// share of the Rayleigh quotients in the basis their rotated twins were formed in (module
    /// docs); `None` once a row came without one (or nothing is held).
    rayleigh: Option<[Vec<f64>; 2]>,
}

/// The parts of a [`PendingFactors`] as plain arrays (checkpoints): rows, weights and the three
/// scalars `[trace_scale, decay, count]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingParts {
    /// `ā` rows, `[rows, d_in']` row-major.
    pub a_rows: Vec<f32>,
    /// Their weights.
    pub a_weights: Vec<f64>,
    /// `g` rows, `[rows, d_out]` row-major.
    pub g_rows: Vec<f32>,
    /// Their weights.
    pub g_weights: Vec<f64>,
    /// `[trace_scale, decay, count]`.
    pub scalars: [f64; 3],
    /// The held rows' share of the Rayleigh quotients, `[d_in']` and `[d_out]`, when tracked.
    pub rayleigh: Option<[Vec<f64>; 2]>,
}

impl PendingFactors {
    /// Nothing held, for a layer of `(d_out, d_in')`.
    pub fn new(dims: (usize, usize)) -> Self {
        PendingFactors {
            dims,
            a_rows: Vec::new(),
            a_weights: Vec::new(),
            g_rows: Vec::new(),
            g_weights: Vec::new(),
            trace_scale: 0.0,
            decay: 1.0,
            count: 0,
            rayleigh: None,
        }
    }

    /// `[Σ_r ω_r (ā_r Q_A)^∘2, Σ_r ω_r (g_r Q_G)^∘2]` of the held rows (module docs), `None`
    /// unless every held row was pushed with its rotated twin.
    pub fn rayleigh(&self) -> Option<&[Vec<f64>; 2]> {
        self.rayleigh.as_ref()
    }

    /// Observations held.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `Π_j c_old,j` of the held observations (module docs).
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// True when `rows` (this layer's shape) can be held beside what is held: at most
    /// [`ROW_BLOCK`] stacked rows per factor.
    pub fn fits(&self, rows: &FastRows<'_>) -> bool {
        let l = rows.layout;
        let (d_out, d_in) = self.dims;
        let held_a = self.a_weights.len();
        let held_g = self.g_weights.len();
        (l.d_out, l.d_in_bar) == self.dims
            && held_a + l.rows <= ROW_BLOCK
            && held_g + l.rows * rows.g.len() <= ROW_BLOCK
            && d_out > 0
            && d_in > 0
    }

    /// Takes one observation, as [`MovingAverage::blend`](super::MovingAverage::blend) with
    /// `(c_old, c_new)` would; `seeds` when the average it will be blended into is empty and
    /// nothing is held yet (the observation then initialises it). TKFAC's raw numerators when
    /// `trace_restricted`, else K-FAC's `A`, `G` (the estimates of `fast_factors.rs`).
    /// `rotated`: the same rows in the layer's eigenbasis (`â`, `ĝ_s`, as
    /// [`FastRows::in_basis`] gives them), whose squares, weighted like the rows, are added to
    /// [`rayleigh`](Self::rayleigh) (module docs); `None` stops that tracking until the held
    /// rows are taken.
    ///
    /// # Panics
    /// When the rows do not [`fit`](Self::fits), or `rotated` has another layout (the caller
    /// checks).
    pub fn push(
        &mut self,
        rows: &FastRows<'_>,
        rotated: Option<&FastRows<'_>>,
        trace_restricted: bool,
        (c_old, c_new): (f64, f64),
        seeds: bool,
    ) {
        assert!(
            self.fits(rows) && rotated.is_none_or(|r| r.layout == rows.layout),
            "PendingFactors::push: rows that do not fit"
        );
        let (first_a, first_g) = (self.a_weights.len(), self.g_weights.len());
        if self.is_empty() {
            self.rayleigh = rotated.map(|_| [vec![0.0; self.dims.1], vec![0.0; self.dims.0]]);
        } else if rotated.is_none() {
            self.rayleigh = None;
        }
        let l = rows.layout;
        let n = l.examples as f64;
        let w = if seeds && self.is_empty() {
            self.decay = 0.0;
            1.0
        } else {
            self.a_weights.iter_mut().for_each(|x| *x *= c_old);
            self.g_weights.iter_mut().for_each(|x| *x *= c_old);
            self.rayleigh
                .iter_mut()
                .flatten()
                .flatten()
                .for_each(|x| *x *= c_old);
            self.trace_scale *= c_old;
            self.decay *= c_old;
            c_new
        };
        self.a_rows.extend_from_slice(rows.a);
        rows.g.iter().for_each(|g| self.g_rows.extend_from_slice(g));
        if trace_restricted {
            let (a_norms, g_norms, delta) = tkfac_weights(rows);
            self.a_weights.extend(g_norms.iter().map(|g| w * g / n));
            for _ in &rows.g {
                self.g_weights.extend(a_norms.iter().map(|a| w * a / n));
            }
            self.trace_scale += w * (delta / n);
        } else {
            let nt = (l.examples * l.locations) as f64;
            self.a_weights.extend(std::iter::repeat_n(w / n, l.rows));
            let g_rows = l.rows * rows.g.len();
            self.g_weights.extend(std::iter::repeat_n(w / nt, g_rows));
            self.trace_scale += w;
        }
        if let (Some([a_sums, g_sums]), Some(r)) = (&mut self.rayleigh, rotated) {
            let (d_in, d_out) = (r.layout.d_in_bar, r.layout.d_out);
            add_weighted_squares(a_sums, r.a, d_in, &self.a_weights[first_a..]);
            let g_weights = self.g_weights[first_g..].chunks_exact(r.layout.rows);
            for (g, w) in r.g.iter().zip(g_weights) {
                add_weighted_squares(g_sums, g, d_out, w);
            }
        }
        self.count += 1;
    }

    /// Everything held, leaving this empty.
    pub fn take(&mut self) -> PendingFactors {
        std::mem::replace(self, PendingFactors::new(self.dims))
    }

    /// The held rows and scalars as plain arrays.
    pub fn parts(&self) -> PendingParts {
        PendingParts {
            a_rows: self.a_rows.clone(),
            a_weights: self.a_weights.clone(),
            g_rows: self.g_rows.clone(),
            g_weights: self.g_weights.clone(),
            scalars: [self.trace_scale, self.decay, self.count as f64],
            rayleigh: self.rayleigh.clone(),
        }
    }

    /// The pending observations of a layer of `(d_out, d_in')` from [`parts`](Self::parts);
    /// errors on rows of another width, weights that do not match them, more than
    /// [`ROW_BLOCK`] rows, scalars that are not a finite trace, a decay in `[0, 1]` and a
    /// whole count (held rows with a zero count, or the reverse), or Rayleigh quotient shares
    /// that are not finite, non-negative and of the layer's widths (or held beside no rows).
    pub fn from_parts(dims: (usize, usize), parts: PendingParts) -> Result<Self> {
        let (d_out, d_in) = dims;
        let [trace_scale, decay, count] = parts.scalars;
        let rows_fit = |rows: &[f32], weights: &[f64], width: usize| {
            width > 0 && rows.len() == weights.len() * width && weights.len() <= ROW_BLOCK
        };
        let whole = count >= 0.0 && count.fract() == 0.0 && count <= u32::MAX as f64;
        let held = !parts.a_weights.is_empty() || !parts.g_weights.is_empty();
        let ok = rows_fit(&parts.a_rows, &parts.a_weights, d_in)
            && rows_fit(&parts.g_rows, &parts.g_weights, d_out)
            && trace_scale.is_finite()
            && (0.0..=1.0).contains(&decay)
            && whole
            && held == (count > 0.0)
            && parts.rayleigh.as_ref().is_none_or(|[a, g]| {
                held && a.len() == d_in
                    && g.len() == d_out
                    && a.iter().chain(g).all(|x| x.is_finite() && *x >= 0.0)
            });
        if !ok {
            return Err(Error::Checkpoint(format!(
                "pending statistics of a [{d_out}, {d_in}] layer do not fit it ({} ā and {} g \
                 rows of {} and {} values, scalars {:?})",
                parts.a_weights.len(),
                parts.g_weights.len(),
                parts.a_rows.len(),
                parts.g_rows.len(),
                parts.scalars
            )));
        }
        Ok(PendingFactors {
            dims,
            a_rows: parts.a_rows,
            a_weights: parts.a_weights,
            g_rows: parts.g_rows,
            g_weights: parts.g_weights,
            trace_scale,
            decay,
            count: count as u64,
            rayleigh: parts.rayleigh,
        })
    }
}

/// `sums[j] += Σ_r w_r x_rj²` for the row-major `[rows, cols]` f32 buffer `x`, in f64.
fn add_weighted_squares(sums: &mut [f64], x: &[f32], cols: usize, weights: &[f64]) {
    for (row, &w) in x.chunks_exact(cols).zip(weights) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += w * f64::from(v) * f64::from(v);
        }
    }
}

impl BatchStatistic<KroneckerFactors> for PendingFactors {
    fn shape(&self) -> (usize, usize) {
        self.dims
    }

    /// `Σ_j W_j B_j` (module docs): what an empty average becomes.
    fn form(self) -> KroneckerFactors {
        let (d_out, d_in) = self.dims;
        let stacked = |rows: &[f32], weights: &[f64], width: usize| -> DMatrix<f64> {
            gram(&[rows], width, Some(weights), 1.0)
        };
        KroneckerFactors {
            a_factor: stacked(&self.a_rows, &self.a_weights, d_in),
            g_factor: stacked(&self.g_rows, &self.g_weights, d_out),
            trace_scale: self.trace_scale,
        }
    }

    /// `avg ← c_old·avg + c_new·Σ_j W_j B_j`, each stacked gram blended in place
    /// ([`blend_gram`]); a block calls it with `(decay, 1)`.
    fn blend_into(self, avg: &mut KroneckerFactors, c_old: f64, c_new: f64) {
        let (d_out, d_in) = self.dims;
        let c = (c_old, c_new);
        blend_gram(
            &mut avg.a_factor,
            c,
            &[&self.a_rows],
            d_in,
            Some(&self.a_weights),
            1.0,
        );
        blend_gram(
            &mut avg.g_factor,
            c,
            &[&self.g_rows],
            d_out,
            Some(&self.g_weights),
            1.0,
        );
        avg.trace_scale.blend(c_old, c_new, &self.trace_scale);
    }
}
