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
//! from, so `⟨im2col x, y⟩ = ⟨x, col2im y⟩`. Both split the batch across threads with rayon.

use super::zip_chunks;
use crate::error::{Error, Result};
use crate::tensor::Float;

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

/// im2col of one `[C, H, W]` example into `[H_out·W_out, ld]` rows.
fn unfold_example<F: Float>(img: &[F], g: &ConvGeometry, ld: usize, out: &mut [F]) {
    let (h, w) = g.in_size;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    for (loc, row) in out.chunks_exact_mut(ld).enumerate() {
        let (oh, ow) = (loc / g.out_size.1, loc % g.out_size.1);
        if ld > g.patch_len() {
            row[ld - 1] = F::ONE;
        }
        for (ck, seg) in row[..g.patch_len()].chunks_exact_mut(kw).enumerate() {
            let (c, ki) = (ck / kh, ck % kh);
            let Some(ih) = ConvGeometry::source(oh, ki, sh, ph, h) else {
                seg.fill(F::ZERO);
                continue;
            };
            let src = &img[(c * h + ih) * w..(c * h + ih + 1) * w];
            let x0 = ow * sw;
            if sw == 1 && x0 >= pw && x0 + kw <= w + pw {
                seg.copy_from_slice(&src[x0 - pw..x0 - pw + kw]);
            } else {
                for (kj, v) in seg.iter_mut().enumerate() {
                    *v = ConvGeometry::source(ow, kj, sw, pw, w).map_or(F::ZERO, |iw| src[iw]);
                }
            }
        }
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
