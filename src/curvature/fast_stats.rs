//! The f32 statistics path (issue 16, lever 3): the batch estimates of `factors.rs` and
//! `correction.rs`, formed with f32 GEMMs straight on the captured f32 rows and summed in f64,
//! so a block can blend them into its f64 running averages. The f64 path stays the teaching
//! code and the test oracle; `tests/curvature_fast_stats.rs` pins this one to it.
//!
//! Every statistic is a sum over the `R = N·T` captured rows (`T = 1` for dense layers):
//!
//! ```text
//! Σ_r w_r x_r x_rᵀ   =  Σ_blocks  Xᵀ_b diag(w_b) X_b        f32 GEMM per block, + into f64
//! ```
//!
//! * The rows are cut into blocks of [`ROW_BLOCK`] rows; each block's product is one f32 GEMM
//!   (matrixmultiply accumulates ≤ 256 products in registers, then into the f32 block result),
//!   and the block results are added in f64. An f32 sum of `k` terms carries a relative
//!   error of order `√k·u` (`u = 2⁻²⁴ ≈ 6e-8`), so the 8192 rows of the CNN's conv2 never form
//!   one long f32 sum.
//! * A gram `XᵀX` is symmetric: it is split into column panels of at least [`PANEL`] columns
//!   and only the upper block triangle is multiplied (`p(p+1)/2` of `p²` panel products: 2/3
//!   of the FLOPs for conv2's 801 columns), then mirrored. The diagonal panels are symmetrised
//!   `(M + Mᵀ)/2` like the f64 path, so the result is exactly symmetric.
//! * Row norms `‖x_r‖²` (TKFAC's weights) are summed in f64.
//!
//! | file | job |
//! |---|---|
//! | `fast_stats.rs` | [`FastRows`] (the capture as f32 slices), the blocked gram |
//! | `fast_factors.rs` | `A, G` or `δ, δΦ, δΨ` (the f32 twin of `factors.rs`) |
//! | `fast_correction.rs` | `s*`/`Θ` batch (the f32 twin of `correction.rs`) |

use super::average::Blend;
use super::rows::RowLayout;
use crate::autograd::{LayerCapture, RotatedRows};
use crate::error::Result;
use crate::kernels::gemm::{MatRef, gemm_columns_into};
use crate::kernels::transpose::transpose_batched;
use nalgebra::DMatrix;
use rayon::prelude::*;
use std::ops::Range;

/// Rows per f32 GEMM before its result is added into the f64 total.
pub const ROW_BLOCK: usize = 1024;

/// The narrowest column panel of a split gram (narrower panels would slow the GEMMs down).
pub const PANEL: usize = 256;

/// A capture's rows as borrowed row-major f32 slices, with its checked layout.
#[derive(Clone, Debug)]
pub struct FastRows<'c> {
    /// `ā`, `[R, d_in']` row-major.
    pub a: &'c [f32],
    /// One `g`, `[R, d_out]` row-major, per backpropagated sweep.
    pub g: Vec<&'c [f32]>,
    /// Rows, widths, examples `N` and locations `T`.
    pub layout: RowLayout,
}

impl<'c> FastRows<'c> {
    /// Checks the capture's shapes (the same errors as
    /// [`CaptureRows::from_capture`](super::CaptureRows::from_capture)) and borrows its rows.
    pub fn from_capture(capture: &'c LayerCapture<f32>) -> Result<Self> {
        let layout = RowLayout::of(capture)?;
        Ok(FastRows {
            a: capture.a.data(),
            g: capture.g.iter().map(|g| g.data()).collect(),
            layout,
        })
    }

    /// The rows of `rotated` (`â`, `ĝ_s`) under the checked layout of the capture they were
    /// rotated from; `None` when they are not of its shape (another layer, another pass).
    pub fn in_basis(
        capture: &'c LayerCapture<f32>,
        rotated: &'c RotatedRows<f32>,
    ) -> Result<Option<Self>> {
        let layout = RowLayout::of(capture)?;
        let fits = rotated.layer == capture.layer
            && rotated.a_hat.len() == layout.rows * layout.d_in_bar
            && rotated.g_hat.len() == capture.g.len()
            && rotated
                .g_hat
                .iter()
                .all(|g| g.len() == layout.rows * layout.d_out);
        Ok(fits.then(|| FastRows {
            a: rotated.a_hat.data(),
            g: rotated.g_hat.iter().map(|g| g.data()).collect(),
            layout,
        }))
    }

    /// `‖ā_r‖²` for every row, summed in f64.
    pub fn a_norms_sq(&self) -> Vec<f64> {
        row_norms_sq(self.a, self.layout.d_in_bar)
    }

    /// `Σ_s ‖g_{s,r}‖²` for every row, summed in f64.
    pub fn g_norms_sq(&self) -> Vec<f64> {
        let mut sum = vec![0.0; self.layout.rows];
        for g in &self.g {
            let norms = row_norms_sq(g, self.layout.d_out);
            sum.iter_mut().zip(norms).for_each(|(s, x)| *s += x);
        }
        sum
    }
}

/// `‖x_r‖²` of each row of a row-major `[R, cols]` buffer, in f64.
fn row_norms_sq(x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks_exact(cols)
        .map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect()
}

/// How [`gram`] cuts its work: rows per f32 GEMM and the narrowest column panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GramSplit {
    /// Rows per f32 GEMM before the result is added in f64.
    pub row_block: usize,
    /// The narrowest column panel.
    pub panel: usize,
}

impl GramSplit {
    /// [`ROW_BLOCK`] rows, panels of at least [`PANEL`] columns.
    pub const DEFAULT: GramSplit = GramSplit {
        row_block: ROW_BLOCK,
        panel: PANEL,
    };
    /// One f32 GEMM over all rows and columns (the benchmark's and tests' comparison).
    pub const WHOLE: GramSplit = GramSplit {
        row_block: usize::MAX,
        panel: usize::MAX,
    };
}

/// `scale · Σ_{x ∈ xs} Σ_r w_r x_r x_rᵀ` (`w_r = 1` without `weights`), `[cols, cols]`, for
/// row-major `[R, cols]` buffers: f32 GEMMs over [`ROW_BLOCK`] rows, the upper block triangle
/// only, summed in f64 (module docs). The f32 form of `factors.rs`' `aᵀa` and `weighted_gram`.
///
/// # Panics
/// When a buffer is not `R·cols` long for the `R` of `weights` (callers check shapes).
pub fn gram(xs: &[&[f32]], cols: usize, weights: Option<&[f64]>, scale: f64) -> DMatrix<f64> {
    gram_with(xs, cols, weights, scale, GramSplit::DEFAULT)
}

/// [`gram`] with a chosen [`GramSplit`].
pub fn gram_with(
    xs: &[&[f32]],
    cols: usize,
    weights: Option<&[f64]>,
    scale: f64,
    split: GramSplit,
) -> DMatrix<f64> {
    let panels = panels(cols, split.panel);
    let widest = panels.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut full = vec![0.0f64; cols * cols];
    // NOTE: each panel's band of rows of `full` (its products with itself and every panel to
    // its right) is one task: the bands are disjoint, and every element still sees the same
    // products in the same order, whatever the number of threads.
    let mut bands: Vec<_> = row_bands(&mut full, cols, &panels)
        .into_iter()
        .map(|(p, band)| (p.clone(), band, vec![0f32; p.len() * widest]))
        .collect();
    let mut scaled = Vec::new();
    for x in xs {
        for (block, r) in row_blocks(x, cols, split.row_block) {
            let left = match weights {
                None => block,
                Some(w) => scale_rows(&mut scaled, block, cols, &w[r]),
            };
            let rows = block.len() / cols;
            let lt = MatRef::new(left, rows, cols, true);
            let right = MatRef::new(block, rows, cols, false);
            bands.par_iter_mut().for_each(|(pi, band, scratch)| {
                for pj in panels.iter().filter(|pj| pj.start >= pi.start) {
                    let out = &mut scratch[..pi.len() * pj.len()];
                    gemm_columns_into(1.0, lt, pi.clone(), right, pj.clone(), 0.0, out);
                    for (row, dst) in out.chunks_exact(pj.len()).zip(band.chunks_exact_mut(cols)) {
                        dst[pj.clone()]
                            .iter_mut()
                            .zip(row)
                            .for_each(|(s, &x)| *s += f64::from(x));
                    }
                }
            });
        }
    }
    drop(bands);
    symmetrise(&mut full, cols, &panels, scale);
    // NOTE: symmetric, so the row-major buffer is also its column-major storage.
    DMatrix::from_vec(cols, cols, full)
}

/// Each panel's band of rows of a row-major `[cols, cols]` buffer, with the panel: disjoint,
/// so each band can be one task.
fn row_bands<'m>(
    m: &'m mut [f64],
    cols: usize,
    panels: &[Range<usize>],
) -> Vec<(Range<usize>, &'m mut [f64])> {
    let mut bands = Vec::with_capacity(panels.len());
    let mut rest = m;
    for p in panels {
        let (band, tail) = rest.split_at_mut(p.len() * cols);
        bands.push((p.clone(), band));
        rest = tail;
    }
    bands
}

/// `avg ← c_old·avg + c_new·gram(xs, cols, weights, scale)` for a symmetric `[cols, cols]`
/// average, bit for bit `avg.blend(c_old, c_new, &gram(..))`. When the gram is one f32 product
/// (one buffer of at most [`ROW_BLOCK`] rows: a dense layer's batch, one sweep), each panel
/// product is blended into the average's upper block triangle as it leaves the GEMM, with the
/// diagonal blocks symmetrised as [`gram`] does, and the lower block triangle is then mirrored:
/// no `[cols, cols]` batch is formed. Otherwise the gram is formed and blended.
///
/// # Panics
/// When `avg` is not `[cols, cols]` or a buffer is not `R·cols` long (callers check shapes).
pub fn blend_gram(
    avg: &mut DMatrix<f64>,
    (c_old, c_new): (f64, f64),
    xs: &[&[f32]],
    cols: usize,
    weights: Option<&[f64]>,
    scale: f64,
) {
    assert_eq!(
        avg.shape(),
        (cols, cols),
        "blend_gram: average of another size"
    );
    let one_product = match xs {
        [x] => x.len() / cols.max(1) <= ROW_BLOCK,
        _ => false,
    };
    if !one_product {
        avg.blend(c_old, c_new, &gram(xs, cols, weights, scale));
        return;
    }
    let x = xs[0];
    let rows = x.len() / cols;
    let mut scaled = Vec::new();
    let left = match weights {
        None => x,
        Some(w) => scale_rows(&mut scaled, x, cols, w),
    };
    let lt = MatRef::new(left, rows, cols, true);
    let right = MatRef::new(x, rows, cols, false);
    let panels = panels(cols, PANEL);
    let widest = panels.iter().map(|p| p.len()).max().unwrap_or(0);
    let blend = Blender {
        c_old,
        c_new,
        scale,
    };
    // NOTE: symmetric, so the column-major storage is also the row-major one; each panel's
    // band of rows is one task, and writes its upper blocks only.
    let mut bands = row_bands(avg.as_mut_slice(), cols, &panels);
    bands.par_iter_mut().for_each(|(pi, band)| {
        let mut out = vec![0f32; pi.len() * widest];
        let mut flipped = vec![0f32; pi.len() * pi.len()];
        for pj in panels.iter().filter(|pj| pj.start >= pi.start) {
            let out = &mut out[..pi.len() * pj.len()];
            gemm_columns_into(1.0, lt, pi.clone(), right, pj.clone(), 0.0, out);
            if pj == pi {
                transpose_batched(out, pi.len(), pi.len(), 1.0, &mut flipped);
                blend.diagonal_block(band, cols, pj.clone(), out, &flipped);
            } else {
                blend.block(band, cols, pj.clone(), out);
            }
        }
    });
    mirror_lower_blocks(avg.as_mut_slice(), cols, &panels);
}

/// The blend of [`blend_gram`], entry by entry: `avg ← c_old·avg + c_new·(x·scale)`, with
/// `x` the f32 panel product widened to f64 (off-diagonal blocks) or the average of its two
/// mirrored entries (diagonal blocks), as [`symmetrise`] forms them.
#[derive(Clone, Copy)]
struct Blender {
    c_old: f64,
    c_new: f64,
    scale: f64,
}

impl Blender {
    /// An upper off-diagonal block: `out` (`[rows of band, columns]` row-major) into the
    /// `columns` of `band`'s rows.
    fn block(self, band: &mut [f64], cols: usize, columns: Range<usize>, out: &[f32]) {
        let Blender {
            c_old,
            c_new,
            scale,
        } = self;
        let rows = out.chunks_exact(columns.len());
        for (dst, row) in band.chunks_exact_mut(cols).zip(rows) {
            for (d, &x) in dst[columns.clone()].iter_mut().zip(row) {
                *d = c_old * *d + c_new * (f64::from(x) * scale);
            }
        }
    }

    /// A diagonal block, `out` square with its transpose `flipped`: entry `(a, b)` blends
    /// `½(out_ab + out_ba)`. NOTE: on the diagonal `½(u + u) = u` exactly (an f32 widened to
    /// f64 doubles and halves without rounding), so the diagonal needs no case of its own.
    fn diagonal_block(
        self,
        band: &mut [f64],
        cols: usize,
        columns: Range<usize>,
        out: &[f32],
        flipped: &[f32],
    ) {
        let Blender {
            c_old,
            c_new,
            scale,
        } = self;
        let w = columns.len();
        let pairs = out.chunks_exact(w).zip(flipped.chunks_exact(w));
        for (dst, (row, column)) in band.chunks_exact_mut(cols).zip(pairs) {
            for ((d, &u), &l) in dst[columns.clone()].iter_mut().zip(row).zip(column) {
                let x = 0.5 * (f64::from(u) + f64::from(l));
                *d = c_old * *d + c_new * (x * scale);
            }
        }
    }
}

/// Copies the upper block triangle of a row-major `[cols, cols]` buffer onto the lower one (the
/// blocks left of each panel's diagonal block), 32 rows per task.
fn mirror_lower_blocks(full: &mut [f64], cols: usize, panels: &[Range<usize>]) {
    const TILE: usize = 32;
    for p in panels.iter().skip(1) {
        let (top, bottom) = full.split_at_mut(p.start * cols);
        let top: &[f64] = top;
        bottom[..p.len() * cols]
            .par_chunks_mut(TILE * cols)
            .enumerate()
            .for_each(|(t, tile)| {
                let first = p.start + t * TILE;
                for c in 0..p.start {
                    let column = &top[c * cols + first..];
                    for (k, row) in tile.chunks_exact_mut(cols).enumerate() {
                        row[c] = column[k];
                    }
                }
            });
    }
}

/// Column panels of at least `panel` columns (one panel for narrow matrices).
fn panels(cols: usize, panel: usize) -> Vec<Range<usize>> {
    let count = (cols / panel.max(1)).max(1);
    (0..count)
        .map(|p| p * cols / count..(p + 1) * cols / count)
        .collect()
}

/// Consecutive blocks of at most `row_block` whole rows of a row-major `[R, cols]` buffer, with
/// their row ranges.
pub fn row_blocks(
    x: &[f32],
    cols: usize,
    row_block: usize,
) -> impl Iterator<Item = (&[f32], Range<usize>)> {
    let step = row_block.max(1);
    x.chunks(step.saturating_mul(cols).max(1))
        .enumerate()
        .map(move |(b, chunk)| {
            let start = b.saturating_mul(step);
            (chunk, start..start + chunk.len() / cols)
        })
}

/// `diag(w) x` for a block of rows, into `out` (resized); returns the scaled block.
fn scale_rows<'s>(out: &'s mut Vec<f32>, block: &[f32], cols: usize, w: &[f64]) -> &'s [f32] {
    out.clear();
    for (row, &w) in block.chunks_exact(cols).zip(w) {
        let w = w as f32;
        out.extend(row.iter().map(|&v| v * w));
    }
    out
}

/// Completes a row-major `[cols, cols]` buffer holding the upper panel blocks and scales it:
/// diagonal blocks are symmetrised `(M + Mᵀ)/2`, off-diagonal ones mirrored, in 32 × 32 tiles
/// so that the transposed accesses stay in cache.
fn symmetrise(full: &mut [f64], cols: usize, panels: &[Range<usize>], scale: f64) {
    const TILE: usize = 32;
    let panel_of: Vec<usize> = panels
        .iter()
        .enumerate()
        .flat_map(|(p, r)| r.clone().map(move |_| p))
        .collect();
    (0..cols).for_each(|r| full[r * cols + r] *= scale);
    for r0 in (0..cols).step_by(TILE) {
        for c0 in (r0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(cols) {
                for c in c0.max(r + 1)..(c0 + TILE).min(cols) {
                    let upper = full[r * cols + c];
                    let x = if panel_of[r] == panel_of[c] {
                        0.5 * (upper + full[c * cols + r])
                    } else {
                        upper
                    };
                    full[r * cols + c] = x * scale;
                    full[c * cols + r] = x * scale;
                }
            }
        }
    }
}
