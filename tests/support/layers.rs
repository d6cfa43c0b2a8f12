//! Brute-force references for the layer tests: a naive convolution, im2col patches by hand,
//! per-example gradients and Fisher blocks from captures, and the tape gradient of a layer as one
//! `[W | b]` block.
//!
//! Everything here is deliberately the slow, obvious loop, in f64, so that a test compares the
//! engine against arithmetic a reader can check by eye. Matrices are row-major `Vec<f64>`
//! (the patches: a `DMatrix`).

use nalgebra::DMatrix;
use tekfac::{Gradients, LayerCapture, LayerInfo, LayerKind, ParamStore, Tensor};

/// The 6-loop convolution `y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v]·x[n,c,i·s+u−p, j·s+v−p]`.
pub fn naive_conv2d(
    x: &Tensor<f64>,
    w: &Tensor<f64>,
    b: Option<&Tensor<f64>>,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Tensor<f64> {
    let (n, c, h, wd) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    let (co, kh, kw) = (w.dims()[0], w.dims()[2], w.dims()[3]);
    let oh = (h + 2 * padding.0 - kh) / stride.0 + 1;
    let ow = (wd + 2 * padding.1 - kw) / stride.1 + 1;
    let mut y = vec![0.0; n * co * oh * ow];
    for e in 0..n {
        for o in 0..co {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b.data()[o]);
                    for ci in 0..c {
                        for u in 0..kh {
                            for v in 0..kw {
                                let r = (i * stride.0 + u) as isize - padding.0 as isize;
                                let s = (j * stride.1 + v) as isize - padding.1 as isize;
                                if r < 0 || s < 0 || r >= h as isize || s >= wd as isize {
                                    continue;
                                }
                                let xi = ((e * c + ci) * h + r as usize) * wd + s as usize;
                                acc += w.data()[((o * c + ci) * kh + u) * kw + v] * x.data()[xi];
                            }
                        }
                    }
                    y[((e * co + o) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    Tensor::from_vec(y, &[n, co, oh, ow]).unwrap()
}

/// `DW_{n,s} = Σ_t g_{s,(n,t)} ā_{(n,t)}ᵀ` for every sweep `s` and example `n`, each a row-major
/// `[d_out, d_in (+1)]` matrix: `result[s][n]`.
pub fn per_example_gradients(c: &LayerCapture<f64>) -> Vec<Vec<Vec<f64>>> {
    let (rows, d_in) = (c.a.dims()[0], c.a.dims()[1]);
    let t = c.rows_per_example;
    c.g.iter()
        .map(|g| {
            let d_out = g.dims()[1];
            (0..rows / t)
                .map(|n| {
                    let mut dw = vec![0.0; d_out * d_in];
                    for r in n * t..(n + 1) * t {
                        for o in 0..d_out {
                            for i in 0..d_in {
                                dw[o * d_in + i] +=
                                    g.data()[r * d_out + o] * c.a.data()[r * d_in + i];
                            }
                        }
                    }
                    dw
                })
                .collect()
        })
        .collect()
}

/// `F = (1/N) Σ_n Σ_s vec(DW_{n,s}) vec(DW_{n,s})ᵀ` (row-major vec), a `P × P` matrix, computed
/// as `VᵀV/N` with the vectors stacked as the rows of `V` (the gemm is checked elsewhere).
pub fn fisher_from_capture(c: &LayerCapture<f64>) -> Vec<f64> {
    let per = per_example_gradients(c);
    let n = per[0].len();
    let p = per[0][0].len();
    let rows: Vec<f64> = per.into_iter().flatten().flatten().collect();
    let v = Tensor::from_vec(rows, &[n * c.g.len(), p]).unwrap();
    v.matmul(&v, true, false)
        .unwrap()
        .scale(1.0 / n as f64)
        .into_vec()
}

/// `f += w·v vᵀ`.
pub fn add_outer(f: &mut [f64], v: &[f64], w: f64) {
    let p = v.len();
    for i in 0..p {
        for j in 0..p {
            f[i * p + j] += w * v[i] * v[j];
        }
    }
}

/// The tape's gradient of one layer as the row-major block `[∂L/∂W | ∂L/∂b]`, `[d_out, d_in (+1)]`.
pub fn layer_block(grads: &Gradients<f64>, info: &LayerInfo, ps: &ParamStore<f64>) -> Vec<f64> {
    let w = grads.require(info.weight, ps).unwrap();
    let b = info.bias.map(|b| grads.require(b, ps).unwrap());
    let mut out = Vec::with_capacity(info.d_out * info.d_in_bar());
    for o in 0..info.d_out {
        out.extend_from_slice(&w.data()[o * info.d_in..(o + 1) * info.d_in]);
        if let Some(b) = b {
            out.push(b.data()[o]);
        }
    }
    out
}

/// `‖a − b‖_F / ‖b‖_F`.
pub fn rel_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared matrices differ in size");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// The im2col patches of `x: [N, C, H, W]` for a conv layer, by the obvious loop: row
/// `(n·H_out + i)·W_out + j`, column `(c·kh + u)·kw + v` (the weight's `[C_out, C, kh, kw]` order),
/// zero outside the image, a trailing 1 with a bias.
pub fn patches_by_hand(x: &Tensor<f64>, info: &LayerInfo) -> DMatrix<f64> {
    let LayerKind::Conv2d {
        kernel: (kh, kw),
        stride: (sh, sw),
        padding: (ph, pw),
    } = info.kind
    else {
        panic!("{} is not a conv layer", info.name);
    };
    let (n, c_in, h, w) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    assert_eq!(c_in * kh * kw, info.d_in, "patch length");
    let (oh, ow) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
    let mut m = DMatrix::zeros(n * oh * ow, info.d_in_bar());
    for e in 0..n {
        for i in 0..oh {
            for j in 0..ow {
                let r = (e * oh + i) * ow + j;
                for c in 0..c_in {
                    for u in 0..kh {
                        for v in 0..kw {
                            let (y, z) = (
                                (i * sh + u) as isize - ph as isize,
                                (j * sw + v) as isize - pw as isize,
                            );
                            if y >= 0 && z >= 0 && (y as usize) < h && (z as usize) < w {
                                m[(r, (c * kh + u) * kw + v)] =
                                    x.data()[((e * c_in + c) * h + y as usize) * w + z as usize];
                            }
                        }
                    }
                }
                if info.bias.is_some() {
                    m[(r, info.d_in)] = 1.0;
                }
            }
        }
    }
    m
}
