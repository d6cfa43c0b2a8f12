//! 2-D max and average pooling over NCHW input, no padding.
//!
//! Shapes: `X: [N, C, H, W] → Y: [N, C, H_out, W_out]` with `H_out = (H − kh)/sh + 1` (likewise
//! for the width). Each `(n, c)` plane is independent, so planes are split across threads.
//!
//! - max: `Y = max` over each window; the forward stores the position of the maximum
//!   (the first one on ties) and the backward routes `dY` there: `dX[argmax] += dY`. The same
//!   op can fuse a ReLU onto its output, `Y = max(0, max over the window)`.
//! - average: `Y = (1/(kh·kw)) Σ` over each window; `dX` spreads `dY/(kh·kw)` over the window.

use crate::autograd::op::Op;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::kernels::im2col::ConvGeometry;
use crate::kernels::{written_by, zip_chunks};
use crate::ops::activation;
use crate::tensor::{Float, Tensor};
use std::mem::MaybeUninit;

/// The pooling window geometry of `x: [N, C, H, W]` (no padding).
fn pool_geometry<F: Float>(
    x: &Tensor<F>,
    kernel: (usize, usize),
    stride: (usize, usize),
    op: &'static str,
) -> Result<ConvGeometry> {
    let (_, c, h, w) = x.shape().dims4(op)?;
    ConvGeometry::new(op, c, (h, w), kernel, stride, (0, 0))
}

/// Calls `f(loc, start)` for every output location, `start` being the plane index of the
/// top-left corner of its window.
fn for_each_window(g: &ConvGeometry, mut f: impl FnMut(usize, usize)) {
    let (out_h, out_w) = g.out_size;
    for oh in 0..out_h {
        for ow in 0..out_w {
            f(
                oh * out_w + ow,
                oh * g.stride.0 * g.in_size.1 + ow * g.stride.1,
            );
        }
    }
}

/// The rows of the window whose top-left corner is `start`: `(plane index, slice)` pairs.
fn window_rows<'a, F>(
    g: &ConvGeometry,
    plane: &'a [F],
    start: usize,
) -> impl Iterator<Item = (usize, &'a [F])> {
    let (kw, w) = (g.kernel.1, g.in_size.1);
    (0..g.kernel.0).map(move |i| {
        let row = start + i * w;
        (row, &plane[row..row + kw])
    })
}

/// Plane index of the largest element of a window (the first one on ties).
fn argmax_window<F: Float>(g: &ConvGeometry, img: &[F], start: usize) -> usize {
    let (mut best, mut best_v) = (start, img[start]);
    for (row, vals) in window_rows(g, img, start) {
        for (j, &v) in vals.iter().enumerate() {
            // NOTE: written as two selects (no branch), so random data costs no mispredictions.
            let better = v > best_v;
            best = if better { row + j } else { best };
            best_v = if better { v } else { best_v };
        }
    }
    best
}

impl<F: Float> Tape<'_, F> {
    /// Max pooling of `x: [N, C, H, W]` with a `kernel` window moved by `stride` (no padding).
    pub fn max_pool2d(
        &mut self,
        x: Var,
        kernel: (usize, usize),
        stride: (usize, usize),
    ) -> Result<Var> {
        self.record_max_pool(x, kernel, stride, false)
    }

    /// `relu(max_pool2d(x))` as one op: the same values and gradients as [`Tape::max_pool2d`]
    /// followed by [`Tape::relu`], without a second tensor and pass for the activation. (A
    /// ReLU before the pool gives the same too: max and ReLU commute.)
    pub fn max_pool2d_relu(
        &mut self,
        x: Var,
        kernel: (usize, usize),
        stride: (usize, usize),
    ) -> Result<Var> {
        self.record_max_pool(x, kernel, stride, true)
    }

    /// Max pooling, with or without a ReLU fused onto its output.
    fn record_max_pool(
        &mut self,
        x: Var,
        kernel: (usize, usize),
        stride: (usize, usize),
        relu: bool,
    ) -> Result<Var> {
        self.check_var(x, "max_pool2d")?;
        let vx = self.value(x);
        let geom = pool_geometry(vx, kernel, stride, "max_pool2d")?;
        let (n, c) = (vx.dims()[0], geom.channels);
        let (plane, locs) = (geom.in_size.0 * geom.in_size.1, geom.locations());
        let find = |arg: &mut [MaybeUninit<u32>], img: &[F]| {
            for_each_window(&geom, |loc, start| {
                // NOTE: plane indices fit in u32: a 65536×65536 image is far beyond any use.
                arg[loc].write(argmax_window(&geom, img, start) as u32);
            });
        };
        // SAFETY: `for_each_window` visits every output location of every plane, so every
        // element of `argmax` is written, and then every element of `out`.
        let (argmax, out) = unsafe {
            let argmax = written_by(n * c * locs, |arg| {
                zip_chunks(arg, locs, vx.data(), plane, vx.len(), |_, a, img| {
                    find(a, img)
                })
            });
            let out = written_by(argmax.len(), |out| {
                zip_chunks(out, locs, &argmax, locs, argmax.len(), |p, y, arg| {
                    let img = &vx.data()[p * plane..(p + 1) * plane];
                    y.iter_mut().zip(arg).for_each(|(y, &i)| {
                        let v = img[i as usize];
                        y.write(if relu { activation::relu(v) } else { v });
                    });
                })
            });
            (argmax, out)
        };
        let out = Tensor::from_vec(out, &[n, c, geom.out_size.0, geom.out_size.1])?;
        Ok(self.push(Op::MaxPool2d { x, argmax, relu }, out, &[x]))
    }

    /// Average pooling of `x: [N, C, H, W]` with a `kernel` window moved by `stride`.
    pub fn avg_pool2d(
        &mut self,
        x: Var,
        kernel: (usize, usize),
        stride: (usize, usize),
    ) -> Result<Var> {
        self.check_var(x, "avg_pool2d")?;
        let vx = self.value(x);
        let geom = pool_geometry(vx, kernel, stride, "avg_pool2d")?;
        let (n, c) = (vx.dims()[0], geom.channels);
        let (plane, locs) = (geom.in_size.0 * geom.in_size.1, geom.locations());
        let inv = F::from_f64(1.0 / (kernel.0 * kernel.1) as f64);
        let mut out = Tensor::zeros(&[n, c, geom.out_size.0, geom.out_size.1]);
        zip_chunks(
            out.data_mut(),
            locs,
            vx.data(),
            plane,
            vx.len(),
            |_, y, img| {
                for_each_window(&geom, |loc, start| {
                    let sum: F = window_rows(&geom, img, start)
                        .map(|(_, r)| r.iter().copied().sum::<F>())
                        .sum();
                    y[loc] = inv * sum;
                });
            },
        );
        Ok(self.push(Op::AvgPool2d { x, geom }, out, &[x]))
    }
}

/// Backward of max pooling: `dY` goes to the position of each window's maximum. With a fused
/// ReLU (`relu_out` is the op's output), `dY ∘ [Y > 0]` does.
pub(crate) fn max_pool2d_backward<F: Float>(
    x: &Tensor<F>,
    argmax: &[u32],
    relu_out: Option<&Tensor<F>>,
    g: &Tensor<F>,
) -> Tensor<F> {
    let plane = x.dims()[2] * x.dims()[3];
    let locs = g.dims()[2] * g.dims()[3];
    // NOTE: each plane is zeroed by the thread that scatters into it, while it is in cache,
    // instead of one zero fill of the whole gradient beforehand.
    // SAFETY: every plane chunk is written whole (zeros) before it is read.
    let dx = unsafe {
        written_by(x.len(), |dx| {
            zip_chunks(dx, plane, g.data(), locs, x.len(), |p, dx, g| {
                dx.iter_mut().for_each(|d| {
                    d.write(F::ZERO);
                });
                // SAFETY: all of `dx` was just written.
                let dx = &mut *(dx as *mut [MaybeUninit<F>] as *mut [F]);
                let arg = &argmax[p * locs..(p + 1) * locs];
                match relu_out {
                    // NOTE: the masked value is added as 0, exactly what `relu_backward`
                    // hands an unfused pool.
                    Some(y) => (g.iter().zip(arg))
                        .zip(&y.data()[p * locs..(p + 1) * locs])
                        .for_each(|((&gv, &i), &y)| {
                            dx[i as usize] += if y > F::ZERO { gv } else { F::ZERO }
                        }),
                    None => g.iter().zip(arg).for_each(|(gv, &i)| dx[i as usize] += *gv),
                }
            })
        })
    };
    Tensor::from_vec(dx, x.dims()).expect("as many values as x")
}

/// Backward of average pooling: `dY/(kh·kw)` spread over each window.
pub(crate) fn avg_pool2d_backward<F: Float>(
    x: &Tensor<F>,
    geom: &ConvGeometry,
    g: &Tensor<F>,
) -> Tensor<F> {
    let plane = geom.in_size.0 * geom.in_size.1;
    let inv = F::from_f64(1.0 / (geom.kernel.0 * geom.kernel.1) as f64);
    let mut dx = Tensor::zeros(x.dims());
    zip_chunks(
        dx.data_mut(),
        plane,
        g.data(),
        geom.locations(),
        x.len(),
        |_, dx, g| {
            let (kw, w) = (geom.kernel.1, geom.in_size.1);
            for_each_window(geom, |loc, start| {
                let v = inv * g[loc];
                for i in 0..geom.kernel.0 {
                    let row = start + i * w;
                    dx[row..row + kw].iter_mut().for_each(|d| *d += v);
                }
            });
        },
    );
    dx
}
