//! Shared helpers for the curvature tests: tolerances, synthetic captures, dense checks.
//!
//! Captures are built directly as `LayerCapture<f64>` from random rows (a trailing ones column
//! for the bias), with per-example scales so that `‖ā‖²` and `‖g‖²` are correlated, which is
//! what separates K-FAC from TKFAC. Blocks are fitted with decay 0 and a refresh after every
//! observation, so each identity is exact for the batch at hand.
#![allow(dead_code)]

use nalgebra::{DMatrix, DVector};
use tekfac::curvature::exact::per_example_gradients;
use tekfac::curvature::{CurvatureBlock, Variant, exact};
use tekfac::tensor::{Rng, seeded_rng};
use tekfac::{LayerCapture, LayerId, LayerInfo, LayerKind, ParamId, Tensor};

/// Identities that hold exactly up to f64 rounding (incl. one eigendecomposition).
pub const EXACT: f64 = 1e-10;
/// Results of a dense solve (conditioning of the damped block enters).
pub const SOLVE: f64 = 1e-8;
/// The degenerate EKFAC ↔ TEKFAC comparison of identity 10 (spec: "to about 1e-6").
pub const DEGENERATE: f64 = 1e-6;
/// A gap that must be clearly non-zero in negative controls.
pub const GAP: f64 = 1e-3;

/// A seeded generator.
pub fn rng(seed: u64) -> Rng {
    seeded_rng(seed)
}

/// A `[rows, cols]` matrix of standard normal entries.
pub fn randn(rng: &mut Rng, rows: usize, cols: usize) -> DMatrix<f64> {
    let t = Tensor::<f64>::randn(&[rows, cols], 0.0, 1.0, rng);
    DMatrix::from_row_slice(rows, cols, t.data())
}

/// A row-major tensor from an f64 matrix.
pub fn tensor(m: &DMatrix<f64>) -> Tensor<f64> {
    Tensor::from_vec(m.transpose().as_slice().to_vec(), &[m.nrows(), m.ncols()]).unwrap()
}

/// A capture from f64 rows.
pub fn capture(a: &DMatrix<f64>, g: &[DMatrix<f64>], rows_per_example: usize) -> LayerCapture<f64> {
    LayerCapture {
        layer: LayerId(0),
        a: tensor(a),
        g: g.iter().map(tensor).collect(),
        rows_per_example,
    }
}

/// Random rows `ā = [a; 1]`, `[n·t, d_in + 1]`, scaled per example by `1 + 0.5·n`.
pub fn random_inputs(rng: &mut Rng, n: usize, t: usize, d_in: usize) -> DMatrix<f64> {
    let mut a = randn(rng, n * t, d_in).insert_column(d_in, 1.0);
    for r in 0..n * t {
        let scale = 1.0 + 0.5 * (r / t) as f64;
        a.view_mut((r, 0), (1, d_in)).scale_mut(scale);
    }
    a
}

/// Random output gradients, `[n·t, d_out]` per sweep, scaled per example by `1 + 2n`.
pub fn random_outputs(
    rng: &mut Rng,
    n: usize,
    t: usize,
    d_out: usize,
    sweeps: usize,
) -> Vec<DMatrix<f64>> {
    (0..sweeps)
        .map(|_| {
            let mut g = randn(rng, n * t, d_out);
            for r in 0..n * t {
                g.row_mut(r).scale_mut(1.0 + 2.0 * (r / t) as f64);
            }
            g
        })
        .collect()
}

/// A random capture of `n` examples, `t` locations (1: dense), with a bias column.
pub fn random_capture(
    seed: u64,
    n: usize,
    t: usize,
    d_in: usize,
    d_out: usize,
    sweeps: usize,
) -> LayerCapture<f64> {
    let mut r = rng(seed);
    let a = random_inputs(&mut r, n, t, d_in);
    let g = random_outputs(&mut r, n, t, d_out, sweeps);
    capture(&a, &g, t)
}

/// The layer record of a biased dense (`conv = false`) or conv layer.
pub fn info(d_out: usize, d_in: usize, conv: bool) -> LayerInfo {
    let kind = if conv {
        LayerKind::Conv2d {
            kernel: (1, 1),
            stride: (1, 1),
            padding: (0, 0),
        }
    } else {
        LayerKind::Dense
    };
    LayerInfo {
        name: "layer".into(),
        kind,
        weight: ParamId(0),
        bias: Some(ParamId(1)),
        d_out,
        d_in,
    }
}

/// A block of `variant` fitted to one capture: decay 0, observe → refresh → rescale
/// (`tekfac::curvature::probe::fit`).
pub fn fitted(variant: Variant, c: &LayerCapture<f64>) -> CurvatureBlock {
    let (d_out, d_in_bar) = (c.g[0].dims()[1], c.a.dims()[1]);
    let layer = info(d_out, d_in_bar - 1, c.rows_per_example > 1);
    tekfac::curvature::probe::fit(variant, &layer, c).unwrap()
}

/// `‖x − y‖_F / max(‖x‖_F, ‖y‖_F, 1e-300)`.
pub fn rel_err(x: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
    assert_eq!(x.shape(), y.shape(), "rel_err: shapes differ");
    (x - y).norm() / x.norm().max(y.norm()).max(1e-300)
}

/// `|x − y| / max(|x|, |y|, 1e-300)`.
pub fn rel_err_scalar(x: f64, y: f64) -> f64 {
    (x - y).abs() / x.abs().max(y.abs()).max(1e-300)
}

/// Asserts `err ≤ tol` and prints the error reached (run with `--nocapture` to collect them).
pub fn check(what: &str, err: f64, tol: f64) {
    eprintln!("{what}: {err:.2e} (tol {tol:.0e})");
    assert!(err <= tol, "{what}: error {err:e} exceeds {tol:e}");
}

/// `unvec(M⁻¹ vec(rhs))` by LU, row-major vec.
pub fn dense_solve(m: &DMatrix<f64>, rhs: &DMatrix<f64>) -> DMatrix<f64> {
    let v: DVector<f64> = exact::vec_rows(rhs);
    let x = m
        .clone()
        .lu()
        .solve(&v)
        .expect("the damped block is invertible");
    exact::unvec_rows(&x, rhs.nrows(), rhs.ncols())
}

/// Identity matrix of side `n`.
pub fn eye(n: usize) -> DMatrix<f64> {
    DMatrix::identity(n, n)
}

/// Dense (T = 1) and conv-shaped (T = 4) captures with 1 or 3 sweeps, widths 2–5, batch 1–6.
pub fn captures() -> Vec<(&'static str, LayerCapture<f64>)> {
    vec![
        ("dense", random_capture(1, 6, 1, 3, 2, 1)),
        ("dense 3 sweeps", random_capture(2, 5, 1, 2, 3, 3)),
        ("conv", random_capture(3, 4, 4, 3, 2, 1)),
        ("conv 2 sweeps", random_capture(4, 3, 3, 2, 3, 2)),
    ]
}

pub fn dense_captures() -> Vec<(&'static str, LayerCapture<f64>)> {
    captures()
        .into_iter()
        .filter(|(_, c)| c.rows_per_example == 1)
        .collect()
}

pub fn trace(m: &DMatrix<f64>) -> f64 {
    m.trace()
}

/// E_n Σ_s ‖DW_{n,s}‖² = tr F, by per-example gradients.
pub fn trace_of_exact(c: &LayerCapture<f64>) -> f64 {
    let dw = per_example_gradients(c).unwrap();
    dw.iter().map(|m| m.norm_squared()).sum::<f64>() / c.examples() as f64
}
