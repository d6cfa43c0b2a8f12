//! Batched, scaled matrix transposes: `dst[b] = s · src[b]ᵀ` for a stack of row-major matrices.
//!
//! The convolution needs this twice: its one big GEMM produces rows ordered `(n, oh, ow)` with
//! one column per output channel, `[N·H_out·W_out, C_out]`, while activations are NCHW,
//! `[N, C_out, H_out·W_out]`; the backward goes the other way. Each example is transposed in
//! 16×16 tiles so both the reads and the writes stay contiguous, and the batch is split across
//! threads with rayon.

use super::{as_uninit, written_by, zip_chunks};
use crate::tensor::Float;
use std::mem::MaybeUninit;

/// Tile edge: a 16-value row of a tile is one whole 64-byte cache line in f32 (two in f64), so
/// every line of `dst` is written completely at once. (With half lines, a line is revisited
/// after a sweep over all the tiles of a row band; for a destination row stride of a power of
/// two those lines compete for the same few cache sets and are fetched again, which made an
/// 8×8-tiled transpose of a 512 × 784 weight 3-4× slower.)
const TILE: usize = 16;

/// `dst[b] = scale · src[b]ᵀ` for each `rows × cols` matrix `src[b]` (so `dst[b]` is
/// `cols × rows`), over as many matrices as the buffers hold.
///
/// # Panics
/// When the buffers differ in length or do not hold whole matrices.
pub fn transpose_batched<F: Float>(src: &[F], rows: usize, cols: usize, scale: F, dst: &mut [F]) {
    // SAFETY: the transpose writes initialised values only.
    transpose_into(src, rows, cols, scale, unsafe { as_uninit(dst) })
}

/// [`transpose_batched`] into a new buffer, written once (no zero fill first).
pub fn transpose_new<F: Float>(src: &[F], rows: usize, cols: usize, scale: F) -> Vec<F> {
    // SAFETY: `transpose_into` writes every element of its output (`transpose_one` covers every
    // `(c, r)` of each matrix: full tiles and the ragged edges).
    unsafe { written_by(src.len(), |dst| transpose_into(src, rows, cols, scale, dst)) }
}

/// [`transpose_batched`] into a buffer that need not be initialised; writes every element.
pub(crate) fn transpose_into<F: Float>(
    src: &[F],
    rows: usize,
    cols: usize,
    scale: F,
    dst: &mut [MaybeUninit<F>],
) {
    let per = rows * cols;
    assert_eq!(src.len(), dst.len(), "transpose: buffers differ in length");
    if per == 0 {
        assert!(src.is_empty(), "transpose: values for an empty matrix");
        return;
    }
    assert_eq!(
        src.len() % per,
        0,
        "transpose: not a whole number of matrices"
    );
    zip_chunks(dst, per, src, per, src.len(), |_, d, s| {
        transpose_one(s, rows, cols, scale, d)
    });
}

/// One tiled transpose `d = scale · sᵀ`, `s: rows × cols`: full tiles go through a local array
/// (contiguous reads and writes), the ragged edges element by element. Writes every element.
fn transpose_one<F: Float>(s: &[F], rows: usize, cols: usize, scale: F, d: &mut [MaybeUninit<F>]) {
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            if r0 + TILE <= rows && c0 + TILE <= cols {
                let mut tile = [[F::ZERO; TILE]; TILE];
                for i in 0..TILE {
                    let row = &s[(r0 + i) * cols + c0..][..TILE];
                    for j in 0..TILE {
                        tile[j][i] = scale * row[j];
                    }
                }
                for (j, t) in tile.iter().enumerate() {
                    let out = &mut d[(c0 + j) * rows + r0..][..TILE];
                    out.iter_mut().zip(t).for_each(|(o, &v)| {
                        o.write(v);
                    });
                }
            } else {
                for r in r0..(r0 + TILE).min(rows) {
                    for c in c0..(c0 + TILE).min(cols) {
                        d[c * rows + r].write(scale * s[r * cols + c]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose_batched;

    #[test]
    fn transposes_each_matrix_of_a_stack() {
        let (rows, cols) = (19, 37);
        let src: Vec<f64> = (0..2 * rows * cols).map(|i| i as f64).collect();
        let mut dst = vec![0.0; src.len()];
        transpose_batched(&src, rows, cols, 2.0, &mut dst);
        for b in 0..2 {
            for r in 0..rows {
                for c in 0..cols {
                    let want = 2.0 * src[b * rows * cols + r * cols + c];
                    assert_eq!(dst[b * rows * cols + c * rows + r], want);
                }
            }
        }
    }
}
