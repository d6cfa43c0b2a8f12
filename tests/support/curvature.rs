//! Shared helpers for the curvature tests: tolerances, synthetic captures, dense checks, and the
//! statistics of one capture computed the plain way (partial traces, δ by rows, `Stats`).
//!
//! Captures are built directly as `LayerCapture<f64>` from random rows (a trailing ones column
//! for the bias), with per-example scales so that `‖ā‖²` and `‖g‖²` are correlated, which is
//! what separates K-FAC from TKFAC. Blocks are fitted with decay 0 and a refresh after every
//! observation, so each identity is exact for the batch at hand.

use nalgebra::{DMatrix, DVector};
use tekfac::curvature::exact::{exact_fisher, per_example_gradients};
use tekfac::curvature::{
    CaptureRows, CurvatureBlock, KroneckerBasis, KroneckerFactors, Variant, corrected_batch, exact,
};
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

/// `(1/N) Σ_n Σ_s DW_{n,s}ᵀ DW_{n,s}` and `(1/N) Σ_n Σ_s DW_{n,s} DW_{n,s}ᵀ`.
pub fn exact_partial_traces(c: &LayerCapture<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
    let dw = per_example_gradients(c).unwrap();
    let n = c.examples() as f64;
    let dtd = dw.iter().map(|m| m.transpose() * m).sum::<DMatrix<f64>>() / n;
    let ddt = dw.iter().map(|m| m * m.transpose()).sum::<DMatrix<f64>>() / n;
    (dtd, ddt)
}

/// The same rows with every location as its own example: `T·F(pooled)` is the spatially
/// uncorrelated Fisher `F_SU = E_n Σ_t Σ_s vec(g āᵀ) vec(g āᵀ)ᵀ` (spec §5.2).
pub fn spatially_uncorrelated_fisher(c: &LayerCapture<f64>) -> DMatrix<f64> {
    let pooled = LayerCapture {
        rows_per_example: 1,
        ..c.clone()
    };
    exact_fisher(&pooled).unwrap() * c.rows_per_example as f64
}

/// `E[Σ_t Σ_s ‖ā_t‖²‖g_{s,t}‖²]` straight from the capture's rows.
pub fn delta_by_rows(c: &LayerCapture<f64>) -> f64 {
    let (rows, d_in_bar) = (c.a.dims()[0], c.a.dims()[1]);
    let sq = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
    let total: f64 = (0..rows)
        .map(|r| {
            let a2 = sq(&c.a.data()[r * d_in_bar..(r + 1) * d_in_bar]);
            let g2: f64 =
                c.g.iter()
                    .map(|g| {
                        let d = g.dims()[1];
                        sq(&g.data()[r * d..(r + 1) * d])
                    })
                    .sum();
            a2 * g2
        })
        .sum();
    total / c.examples() as f64
}

/// A capture's rows as f64 matrices.
pub fn rows_of(c: &LayerCapture<f64>) -> CaptureRows {
    CaptureRows::from_capture(c).unwrap()
}

/// Every curvature statistic of one capture: K-FAC's A, G; TKFAC's δΦ, δΨ, δ; the exact F; s*
/// and Θ (in fixed bases).
pub struct Stats {
    pub kfac: KroneckerFactors,
    pub tkfac: KroneckerFactors,
    pub fisher: DMatrix<f64>,
    pub s_star: DMatrix<f64>,
    pub theta: DMatrix<f64>,
}

impl Stats {
    pub fn of(c: &LayerCapture<f64>, ekfac: &KroneckerBasis, tekfac: &KroneckerBasis) -> Self {
        let rows = rows_of(c);
        Stats {
            kfac: KroneckerFactors::kfac(&rows),
            tkfac: KroneckerFactors::tkfac(&rows),
            fisher: exact_fisher(c).unwrap(),
            s_star: corrected_batch(ekfac, &rows),
            theta: corrected_batch(tekfac, &rows),
        }
    }

    /// Relative errors against `other`, statistic by statistic.
    pub fn errors(&self, other: &Stats) -> Vec<(&'static str, f64)> {
        vec![
            ("A", rel_err(&self.kfac.a_factor, &other.kfac.a_factor)),
            ("G", rel_err(&self.kfac.g_factor, &other.kfac.g_factor)),
            ("δΦ", rel_err(&self.tkfac.a_factor, &other.tkfac.a_factor)),
            ("δΨ", rel_err(&self.tkfac.g_factor, &other.tkfac.g_factor)),
            (
                "δ",
                rel_err_scalar(self.tkfac.trace_scale, other.tkfac.trace_scale),
            ),
            ("F", rel_err(&self.fisher, &other.fisher)),
            ("s*", rel_err(&self.s_star, &other.s_star)),
            ("Θ", rel_err(&self.theta, &other.theta)),
        ]
    }
}

/// The factors of one capture by explicit loops over its rows `r` (examples × locations) and
/// sweeps `s`, straight from spec §3.1 and §5.1–5.2 (no library code): K-FAC
/// `(A, G, 1) = ((1/N) Σ_r ā āᵀ, (1/NT) Σ_{r,s} g gᵀ, 1)`, TKFAC
/// `(δΦ, δΨ, δ) = ((1/N) Σ_{r,s} ‖g‖² ā āᵀ, (1/N) Σ_{r,s} ‖ā‖² g gᵀ, (1/N) Σ_{r,s} ‖ā‖²‖g‖²)`.
pub fn factors_by_loops(
    c: &LayerCapture<f64>,
    trace_restricted: bool,
) -> (DMatrix<f64>, DMatrix<f64>, f64) {
    let (rows, d_in_bar, d_out) = (c.a.dims()[0], c.a.dims()[1], c.g[0].dims()[1]);
    let (n, t) = (c.examples() as f64, c.rows_per_example as f64);
    let mut left = DMatrix::zeros(d_in_bar, d_in_bar);
    let mut right = DMatrix::zeros(d_out, d_out);
    let mut delta = 0.0;
    for r in 0..rows {
        let a = DVector::from_column_slice(&c.a.data()[r * d_in_bar..(r + 1) * d_in_bar]);
        if !trace_restricted {
            left += &a * a.transpose() / n;
        }
        for sweep in &c.g {
            let g = DVector::from_column_slice(&sweep.data()[r * d_out..(r + 1) * d_out]);
            if trace_restricted {
                left += &a * a.transpose() * g.norm_squared() / n;
                right += &g * g.transpose() * a.norm_squared() / n;
                delta += a.norm_squared() * g.norm_squared() / n;
            } else {
                right += &g * g.transpose() / (n * t);
            }
        }
    }
    (left, right, if trace_restricted { delta } else { 1.0 })
}
