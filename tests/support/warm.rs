//! Shared pieces of the warm-started refresh tests (`tests/curvature_warm_*.rs`): the
//! orthonormality tolerance, random orthogonal matrices, factors with a known spectrum and the
//! spectral projectors they are compared through (eigenvector signs and the order inside a
//! repeated eigenvalue are arbitrary, projectors are not).

use super::curvature::{eye, randn};
use nalgebra::{DMatrix, DVector};
use tekfac::tensor::Rng;

/// `‖QᵀQ − I‖_F` must stay below this in f64 (issue 16).
pub const ORTHONORMAL: f64 = 1e-10;

pub fn orthonormality_error(q: &DMatrix<f64>) -> f64 {
    (q.transpose() * q - eye(q.ncols())).norm()
}

/// A random orthogonal `[n, n]` (QR of a Gaussian matrix).
pub fn random_orthogonal(r: &mut Rng, n: usize) -> DMatrix<f64> {
    randn(r, n, n).qr().q()
}

/// `V diag(λ) Vᵀ`.
pub fn with_spectrum(v: &DMatrix<f64>, lambda: &[f64]) -> DMatrix<f64> {
    let d = DMatrix::from_diagonal(&DVector::from_column_slice(lambda));
    v * d * v.transpose()
}

/// `v` turned by a small random rotation: `Q_R` of `I + ε·S`, `S` skew.
pub fn perturbed(r: &mut Rng, v: &DMatrix<f64>, eps: f64) -> DMatrix<f64> {
    let n = v.ncols();
    let g = randn(r, n, n);
    let skew = (&g - g.transpose()) * (0.5 * eps);
    v * (eye(n) + skew).qr().q()
}

/// `Σ_{i: |d_i − λ| ≤ window} q_i q_iᵀ`: the warm basis's projector onto an eigenvalue group.
pub fn projector(
    q: &DMatrix<f64>,
    d: &DVector<f64>,
    lambda: f64,
    window: f64,
) -> (DMatrix<f64>, usize) {
    let cols: Vec<usize> = (0..d.len())
        .filter(|&i| (d[i] - lambda).abs() <= window)
        .collect();
    let sel = q.select_columns(&cols);
    (&sel * sel.transpose(), cols.len())
}
