//! im2col / col2im: a convolution as one matrix product over unfolded input patches.
//!
//! For NCHW input `x: [N, C, H, W]` and a `kh × kw` window with stride `(sh, sw)` and zero
//! padding `(ph, pw)`, `im2col` writes one row per output location, rows ordered `(n, oh, ow)`
//! (example-major) and columns ordered `(c, ki, kj)`, the order of a weight `[C_out, C, kh, kw]`
//! flattened row-major:
//!
//! `cols[(n·H_out + oh)·W_out + ow, (c·kh + ki)·kw + kj] = x[n, c, oh·sh + ki − ph, ow·sw + kj − pw]`
//!
//! (0 outside the image). With `homogeneous`, every row gets a trailing 1, the bias column of
//! `ā = [a; 1]`. `col2im` is the adjoint: it adds every patch entry back onto the pixel it came
//! from, so `⟨im2col x, y⟩ = ⟨x, col2im y⟩`. `col2im_columns` does the same from the transposed
//! layout `[C·kh·kw, N·H_out·W_out]`, where each kernel offset's values for one output row are
//! contiguous, so the fold is a few long vector adds (the convolution's input gradient uses it).
//! All split the batch across threads with rayon.

use super::{as_uninit, for_chunks, written_by, zip_chunks};
use crate::error::{Error, Result};
use crate::tensor::Float;
use std::mem::MaybeUninit;

/// Where a sliding window (convolution or pooling) goes over one `[C, H, W]` example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels `C`.
    pub channels: usize,
    /// Input height and width.
    pub in_size: (usize, usize),
    /// Window height and width `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Step between windows, rows and columns.
    pub stride: (usize, usize),
    /// Zeros added on each side, rows and columns.
    pub padding: (usize, usize),
    /// Output height and width: `(H + 2p − k) / s + 1` in each direction.
    pub out_size: (usize, usize),
}

impl ConvGeometry {
    /// Checks the window against the (padded) input and computes the output size.
    pub fn new(
        op: &'static str,
        channels: usize,
        in_size: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self> {
        let out = |n: usize, k: usize, s: usize, p: usize| -> Result<usize> {
            if k == 0 || s == 0 {
                return Err(Error::invalid(op, "kernel and stride must be at least 1"));
            }
            if n + 2 * p < k {
                return Err(Error::invalid(
                    op,
                    format!("kernel {k} is larger than the padded input {}", n + 2 * p),
                ));
            }
            Ok((n + 2 * p - k) / s + 1)
        };
        let out_size = (
            out(in_size.0, kernel.0, stride.0, padding.0)?,
            out(in_size.1, kernel.1, stride.1, padding.1)?,
        );
        Ok(ConvGeometry {
            channels,
            in_size,
            kernel,
            stride,
            padding,
            out_size,
        })
    }

    /// Entries of one patch, `C·kh·kw` (the weight's columns).
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }

    /// Output locations per example and channel, `H_out·W_out`.
    pub fn locations(&self) -> usize {
        self.out_size.0 * self.out_size.1
    }

    /// Elements of one input example, `C·H·W`.
    pub fn in_len(&self) -> usize {
        self.channels * self.in_size.0 * self.in_size.1
    }

    /// Input coordinate of window offset `k` at output position `o` along one axis, if inside.
    #[inline]
    fn source(o: usize, k: usize, stride: usize, pad: usize, len: usize) -> Option<usize> {
        (o * stride + k).checked_sub(pad).filter(|&i| i < len)
    }
}

/// Unfolds `x: [N, C, H, W]` into `cols: [N·H_out·W_out, C·kh·kw (+1)]` (see the module docs).
///
/// # Panics
/// When the buffer lengths do not match the geometry (callers check shapes first).
pub fn im2col<F: Float>(x: &[F], geom: &ConvGeometry, homogeneous: bool, cols: &mut [F]) {
    // SAFETY: the unfold writes initialised values only.
    im2col_into(x, geom, homogeneous, unsafe { as_uninit(cols) })
}

/// [`im2col`] into a new buffer, written once (no zero fill first).
pub fn im2col_new<F: Float>(x: &[F], geom: &ConvGeometry, homogeneous: bool) -> Vec<F> {
    let ld = geom.patch_len() + usize::from(homogeneous);
    let rows = x.len() / geom.in_len().max(1) * geom.locations();
    // SAFETY: `im2col_into` writes every element of its output (`unfold_example` writes each
    // segment of every row, and the ones column).
    unsafe { written_by(rows * ld, |cols| im2col_into(x, geom, homogeneous, cols)) }
}

/// [`im2col`] into a buffer that need not be initialised; writes every element.
fn im2col_into<F: Float>(
    x: &[F],
    geom: &ConvGeometry,
    homogeneous: bool,
    cols: &mut [MaybeUninit<F>],
) {
    let ld = geom.patch_len() + usize::from(homogeneous);
    let per_example = geom.locations() * ld;
    assert_eq!(x.len() % geom.in_len().max(1), 0, "im2col: ragged input");
    assert_eq!(
        cols.len() / per_example.max(1),
        x.len() / geom.in_len().max(1),
        "im2col: output buffer does not match the batch"
    );
    zip_chunks(
        cols,
        per_example,
        x,
        geom.in_len(),
        cols.len(),
        |_, out, img| unfold_example(img, geom, ld, out),
    );
}

/// im2col of one `[C, H, W]` example into `[H_out·W_out, ld]` rows; writes every element.
fn unfold_example<F: Float>(img: &[F], g: &ConvGeometry, ld: usize, out: &mut [MaybeUninit<F>]) {
    let ((h, w), (kh, kw), (sh, sw), (ph, pw)) = (g.in_size, g.kernel, g.stride, g.padding);
    for (loc, row) in out.chunks_exact_mut(ld).enumerate() {
        let (oh, ow) = (loc / g.out_size.1, loc % g.out_size.1);
        // The window's first input column, if all its columns are inside the image.
        let inside = (ow * sw).checked_sub(pw).filter(|&x| x + kw <= w);
        for c in 0..g.channels {
            for ki in 0..kh {
                let s0 = (c * kh + ki) * kw;
                let Some(ih) = ConvGeometry::source(oh, ki, sh, ph, h) else {
                    row[s0..s0 + kw].iter_mut().for_each(|v| {
                        v.write(F::ZERO);
                    });
                    continue;
                };
                let start = (c * h + ih) * w;
                match inside {
                    Some(x) => copy_segment(&mut row[s0..], &img[start + x..], kw),
                    None => row[s0..s0 + kw].iter_mut().enumerate().for_each(|(kj, v)| {
                        let iw = ConvGeometry::source(ow, kj, sw, pw, w);
                        v.write(iw.map_or(F::ZERO, |iw| img[start + iw]));
                    }),
                }
            }
        }
        if ld > g.patch_len() {
            row[g.patch_len()].write(F::ONE);
        }
    }
}

/// Copies the first `len` values of `src` to the front of `dst`.
///
/// NOTE: a kernel row is a handful of values, for which a call to `memcpy` costs more than the
/// copy. When both sides have 8 values to spare, all 8 are copied as one fixed-size block (a
/// vector move); the extra values land at the start of the patch row's next segment, which
/// `unfold_example` writes next (segments go in order, the ones column last).
fn copy_segment<F: Float>(dst: &mut [MaybeUninit<F>], src: &[F], len: usize) {
    if len <= 8 && dst.len() >= 8 && src.len() >= 8 {
        let block: [F; 8] = src[..8].try_into().expect("8 values were checked");
        dst[..8].iter_mut().zip(block).for_each(|(d, v)| {
            d.write(v);
        });
    } else {
        dst[..len].iter_mut().zip(&src[..len]).for_each(|(d, &v)| {
            d.write(v);
        });
    }
}

/// Folds `cols: [N·H_out·W_out, ld]` (its first `C·kh·kw` columns) back onto `dx: [N, C, H, W]`,
/// adding every entry to the pixel it was copied from: the adjoint of [`im2col`]. `dx` is
/// overwritten.
///
/// # Panics
/// When the buffer lengths do not match the geometry (callers check shapes first).
pub fn col2im<F: Float>(cols: &[F], geom: &ConvGeometry, ld: usize, dx: &mut [F]) {
    assert!(
        ld >= geom.patch_len(),
        "col2im: row stride shorter than a patch"
    );
    let per_example = geom.locations() * ld;
    assert_eq!(
        cols.len() / per_example.max(1),
        dx.len() / geom.in_len().max(1),
        "col2im: buffers do not match the batch"
    );
    zip_chunks(
        dx,
        geom.in_len(),
        cols,
        per_example,
        cols.len(),
        |_, img, rows| fold_example(rows, geom, ld, img),
    );
}

/// col2im of one example's `[H_out·W_out, ld]` rows into its `[C, H, W]` gradient.
fn fold_example<F: Float>(rows: &[F], g: &ConvGeometry, ld: usize, img: &mut [F]) {
    let (h, w) = g.in_size;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    img.fill(F::ZERO);
    for (loc, row) in rows.chunks_exact(ld).enumerate() {
        let (oh, ow) = (loc / g.out_size.1, loc % g.out_size.1);
        for (ck, seg) in row[..g.patch_len()].chunks_exact(kw).enumerate() {
            let (c, ki) = (ck / kh, ck % kh);
            let Some(ih) = ConvGeometry::source(oh, ki, sh, ph, h) else {
                continue;
            };
            let dst = &mut img[(c * h + ih) * w..(c * h + ih + 1) * w];
            let x0 = ow * sw;
            if sw == 1 && x0 >= pw && x0 + kw <= w + pw {
                dst[x0 - pw..x0 - pw + kw]
                    .iter_mut()
                    .zip(seg)
                    .for_each(|(d, s)| *d += *s);
            } else {
                for (kj, s) in seg.iter().enumerate() {
                    if let Some(iw) = ConvGeometry::source(ow, kj, sw, pw, w) {
                        dst[iw] += *s;
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`] from the transposed layout: `cols_t: [C·kh·kw, N·H_out·W_out]`
/// (columns ordered `(n, oh, ow)`), added onto `dx: [N, C, H, W]`.
///
/// # Panics
/// When the buffer lengths do not match the geometry (callers check shapes first).
pub fn col2im_columns<F: Float>(cols_t: &[F], geom: &ConvGeometry, dx: &mut [F]) {
    let n = dx.len() / geom.in_len().max(1);
    assert_eq!(
        cols_t.len(),
        geom.patch_len() * n * geom.locations(),
        "col2im_columns: buffers do not match the batch"
    );
    for_chunks(dx, geom.in_len(), cols_t.len(), |e, img| {
        fold_columns(cols_t, n * geom.locations(), e, geom, img)
    });
}

/// Adds example `e`'s columns of `cols_t` (rows of length `row_len`) onto its `[C, H, W]` image.
fn fold_columns<F: Float>(cols_t: &[F], row_len: usize, e: usize, g: &ConvGeometry, img: &mut [F]) {
    let ((h, w), (kh, kw), (sh, sw), (ph, pw)) = (g.in_size, g.kernel, g.stride, g.padding);
    let (out_w, locs) = (g.out_size.1, g.locations());
    for (k, row) in cols_t.chunks_exact(row_len.max(1)).enumerate() {
        let (c, ki, kj) = (k / (kh * kw), k / kw % kh, k % kw);
        let src = &row[e * locs..(e + 1) * locs];
        // Output columns whose input column `ow·sw + kj − pw` is inside the image.
        let lo = pw.saturating_sub(kj).div_ceil(sw);
        let hi = ((w + pw).saturating_sub(kj).div_ceil(sw)).min(out_w);
        for (oh, s) in src.chunks_exact(out_w.max(1)).enumerate() {
            let Some(ih) = ConvGeometry::source(oh, ki, sh, ph, h) else {
                continue;
            };
            let dst = &mut img[(c * h + ih) * w..(c * h + ih + 1) * w];
            if sw == 1 && lo < hi {
                let x0 = lo + kj - pw;
                add_assign(&mut dst[x0..x0 + hi - lo], &s[lo..hi]);
            } else {
                for ow in lo..hi {
                    dst[ow * sw + kj - pw] += s[ow];
                }
            }
        }
    }
}

/// `dst += src` for short rows (a conv output row is often 8–24 values): in blocks of 8, which
/// the compiler turns into single vector adds, where a plain loop is vectorised only for long
/// rows and runs element by element below that.
fn add_assign<F: Float>(dst: &mut [F], src: &[F]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        for i in 0..8 {
            d[i] += s[i];
        }
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d += *s;
    }
}
