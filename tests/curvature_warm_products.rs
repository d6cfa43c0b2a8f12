//! The warm refresh forms `Y = F Q` of each new basis without a second `n³` product
//! (`curvature/refine.rs`: `F Q'_T = F P + (F P Cᵀ) S C`, `F P = Y_T − (F Q'_H) C`). What it
//! reports from that `Y` — the Rayleigh quotients `d = diag(QᵀFQ)` and `off(Q)` — must equal
//! the same quantities formed directly from `F` and the returned `Q`, over several chained
//! iterations, on factors large enough to take the head-and-tail path (and one that rotates
//! every column).

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use tekfac::curvature::{off_diagonal_mass, refine_eigenbasis};

/// A symmetric PSD factor `[n, n]` with a fast-decaying spectrum, and an orthonormal start basis: the eigenbasis of a perturbed copy.
fn factor_and_stale_basis(n: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let x = DMatrix::from_fn(n, n, |_, _| next());
    let q = x.qr().q();
    // Fast decay: the small eigenvalues beyond the head carry little off-diagonal mass, so
    // the iteration rotates the head and completes the tail (refine.rs, `tail_share`).
    let spectrum = DVector::from_fn(n, |i, _| (1.0 + i as f64).powi(-3));
    let f = &q * DMatrix::from_diagonal(&spectrum) * q.transpose();
    let noise = DMatrix::from_fn(n, n, |_, _| 1e-3 * next());
    let stale = &f + (&noise + noise.transpose());
    let start = SymmetricEigen::new(stale).eigenvectors;
    (f, start)
}

#[test]
fn reported_rayleigh_quotients_and_off_diagonal_mass_match_a_direct_product() {
    // 300: head of 64 columns plus tail; 48: every column rotates (no tail).
    for (n, seed) in [(300, 1), (48, 2)] {
        let (f, start) = factor_and_stale_basis(n, seed);
        let norm = f.norm();
        for iterations in 1..=3 {
            let refined = refine_eigenbasis(&f, &start, 0.0, iterations).unwrap();
            assert_eq!(refined.iterations, iterations);
            let b = refined.q.transpose() * &f * &refined.q;
            let worst = (0..n)
                .map(|i| (refined.d[i] - b[(i, i)].max(0.0)).abs())
                .fold(0.0, f64::max);
            eprintln!(
                "n {n}, {iterations} iterations: max |d − diag(QᵀFQ)| = {worst:.2e} ‖F‖·{:.2e}",
                worst / norm
            );
            assert!(
                worst <= 1e-12 * norm,
                "n {n}, {iterations} iterations: Rayleigh quotients off by {worst:.2e}"
            );
            let direct = off_diagonal_mass(&f, &refined.q);
            assert!(
                (refined.off_diagonal - direct).abs() <= 1e-8 + 1e-6 * direct,
                "n {n}, {iterations} iterations: off(Q) {} against {direct} formed directly",
                refined.off_diagonal
            );
        }
    }
}
