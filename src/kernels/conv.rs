//! The three matrix products of a convolution over im2col patch rows, arranged to run near the
//! GEMM ceiling on a few cores.
//!
//! With `ā: [N·L, ld]` the patch rows (`L = H_out·W_out` per example, `ld = C_in·kh·kw (+1)`),
//! `W̄: [C_out, ld]` and `g: [N·L, C_out]` the output gradient in the same row order:
//!
//! - [`conv_forward`]: `Y_n = W̄ · ā_nᵀ`, written straight into NCHW `[N, C_out, L]`;
//! - [`weight_grad`]: `dW̄ = α·gᵀ·ā`, a reduction over all `N·L` rows (or, for a small layer,
//!   [`weight_grad_per_example`]: `Σ_n g_n·ā_n` from the NCHW gradient);
//! - [`input_grad`]: `dX = col2im(α·g·W)`, computed as `col2im_columns(α·Wᵀ·gᵀ)`.
//!
//! A product that is small per example runs one example per rayon task, and a long reduction
//! with a tiny output (the first layer's `dW̄`) is cut into per-example products summed in a
//! fixed order (deterministic for any thread count). Large products are one call, which
//! [`super::gemm`] cuts into per-thread panels of its output along the longer side, so the
//! operand each panel packs again is the small one: `dW̄ᵀ = āᵀ·g` (panels of `āᵀ`'s rows, each
//! packed once, contiguously), and `dcolsᵀ = Wᵀ·gᵀ` a slice of examples at a time.

use super::gemm::{MatRef, gemm_into, gemm_new, gemm_uninit};
use super::im2col::{ConvGeometry, col2im_columns};
use super::transpose::{transpose_into, transpose_new};
use super::{PAR_MIN_WORK, as_uninit, written_by, zip_chunks};
use crate::tensor::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `m·k + k·n` of one example's product below which the examples run as separate products, one
/// per rayon task.
const SINGLE_THREAD_GEMM: usize = 1 << 15;

/// Elements of `dcolsᵀ` computed per slice in [`input_grad`]: `2¹⁹` (2 MiB in f32) stay in cache
/// between the product and the fold.
const SLICE_ELEMENTS: usize = 1 << 19;

/// `out[n] = W̄ · ā_nᵀ` for every example: `out` is NCHW `[N, C_out, L]`, `cols` is `[N·L, ld]`,
/// `w_bar` is `[C_out, ld]`.
pub fn conv_forward<F: Float>(
    cols: &[F],
    w_bar: &[F],
    geom: &ConvGeometry,
    c_out: usize,
    out: &mut [F],
) {
    // SAFETY: the products and the transpose write initialised values only.
    conv_forward_into(cols, w_bar, geom, c_out, unsafe { as_uninit(out) })
}

/// [`conv_forward`] of `n` examples into a new buffer of `N·C_out·L` values, written once (no
/// zero fill first).
pub fn conv_forward_new<F: Float>(
    cols: &[F],
    w_bar: &[F],
    geom: &ConvGeometry,
    (n, c_out): (usize, usize),
) -> Vec<F> {
    // SAFETY: `conv_forward_into` writes every element of its output.
    unsafe {
        written_by(n * c_out * geom.locations(), |out| {
            conv_forward_into(cols, w_bar, geom, c_out, out)
        })
    }
}

/// [`conv_forward`] into a buffer that need not be initialised; writes every element (each
/// example's product with β = 0, or the transpose of one product).
fn conv_forward_into<F: Float>(
    cols: &[F],
    w_bar: &[F],
    geom: &ConvGeometry,
    c_out: usize,
    out: &mut [MaybeUninit<F>],
) {
    let (locs, ld) = (geom.locations(), w_bar.len() / c_out.max(1));
    let w = MatRef::new(w_bar, c_out, ld, false);
    if c_out * ld + ld * locs < SINGLE_THREAD_GEMM {
        let work = out.len() * ld;
        zip_chunks(out, c_out * locs, cols, locs * ld, work, |_, y, a| {
            gemm_uninit(F::ONE, w, MatRef::new(a, locs, ld, true), y)
        });
    } else {
        let rows = cols.len() / ld.max(1);
        let a = MatRef::new(cols, rows, ld, false);
        let y_rows = gemm_new(F::ONE, a, MatRef::new(w_bar, c_out, ld, true));
        transpose_into(&y_rows, locs, c_out, F::ONE, out);
    }
}

/// `dW̄ = α·gᵀ·ā` as a row-major `[C_out, ld]` vector, for `g: [rows, C_out]`, `ā: [rows, ld]`:
/// one threaded product `dW̄ᵀ = α·āᵀ·g`, then a small transpose.
pub fn weight_grad<F: Float>(g: &[F], cols: &[F], c_out: usize, ld: usize, alpha: F) -> Vec<F> {
    let rows = g.len() / c_out.max(1);
    let a_t = MatRef::new(cols, rows, ld, true);
    let dw_t = gemm_new(alpha, a_t, MatRef::new(g, rows, c_out, false));
    transpose_new(&dw_t, ld, c_out, F::ONE)
}

/// Output channels per product in [`weight_grad_per_example`], if its products can stay on one
/// thread with at least 8 channels each (`None`: use [`weight_grad`]).
pub fn per_example_block(c_out: usize, ld: usize, locs: usize) -> Option<usize> {
    let most = (SINGLE_THREAD_GEMM - 1).checked_sub(locs * ld)? / locs.max(1);
    (most >= c_out.min(8)).then(|| c_out.div_ceil(c_out.div_ceil(most.max(1))))
}

/// Examples per rayon task in [`weight_grad_per_example`]; partial sums are added in task order.
const EXAMPLES_PER_TASK: usize = 8;

/// `dW̄ = α·Σ_n g_n·ā_n` straight from the NCHW gradient `g: [N, C_out, L]`, for layers whose
/// per-example product is small (the first conv of a CNN: long reduction, tiny output). Each
/// product covers `block` output channels of one example and stays on one thread; examples are
/// split across rayon tasks. No transpose of `g` is needed.
pub fn weight_grad_per_example<F: Float>(
    g: &[F],
    cols: &[F],
    (c_out, ld, locs): (usize, usize, usize),
    block: usize,
    alpha: F,
) -> Vec<F> {
    let (per_g, per_a) = ((c_out * locs).max(1), (locs * ld).max(1));
    let task = |(g, a): (&[F], &[F])| {
        let mut part = vec![F::ZERO; c_out * ld];
        for (g_n, a_n) in g.chunks(per_g).zip(a.chunks(per_a)) {
            let a_n = MatRef::new(a_n, locs, ld, false);
            for (g_b, dw_b) in g_n.chunks(block * locs).zip(part.chunks_mut(block * ld)) {
                let g_b = MatRef::new(g_b, g_b.len() / locs.max(1), locs, false);
                gemm_into(alpha, g_b, a_n, F::ONE, dw_b);
            }
        }
        part
    };
    let tasks = (g.chunks(EXAMPLES_PER_TASK * per_g)).zip(cols.chunks(EXAMPLES_PER_TASK * per_a));
    let parts: Vec<Vec<F>> = if cols.len() + g.len() >= PAR_MIN_WORK {
        let par = g.par_chunks(EXAMPLES_PER_TASK * per_g);
        par.zip(cols.par_chunks(EXAMPLES_PER_TASK * per_a))
            .map(task)
            .collect()
    } else {
        tasks.map(task).collect()
    };
    let mut total = vec![F::ZERO; c_out * ld];
    for part in parts {
        total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
    }
    total
}

/// `dx += col2im(α·g·W)` for `g: [N·L, C_out]` and `w: [C_out, C_in·kh·kw]`; `dx` is NCHW.
pub fn input_grad<F: Float>(g: &[F], w: &[F], geom: &ConvGeometry, alpha: F, dx: &mut [F]) {
    let (locs, k) = (geom.locations(), geom.patch_len());
    let c_out = w.len() / k.max(1);
    let w_t = MatRef::new(w, c_out, k, true);
    let examples = (SLICE_ELEMENTS / (locs * k).max(1)).max(1);
    let (per_g, per_x) = (locs * c_out, geom.in_len());
    let mut d_cols_t = Vec::new();
    for (dx, g) in dx
        .chunks_mut((examples * per_x).max(1))
        .zip(g.chunks((examples * per_g).max(1)))
    {
        let n = g.len() / c_out.max(1);
        d_cols_t.resize(k * n, F::ZERO);
        let g_t = MatRef::new(g, n, c_out, true);
        gemm_into(alpha, w_t, g_t, F::ZERO, &mut d_cols_t);
        col2im_columns(&d_cols_t, geom, dx);
    }
}
