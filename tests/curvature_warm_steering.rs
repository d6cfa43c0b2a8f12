//! The warm refresh with its steering products in f32 (`curvature/refine.rs`, `Steering::F32`,
//! the default of training in f32): `F Q`, `B_H`, `Q K_H`, `F Q'_H` and the update of `Y` are
//! f32 GEMMs, the orthonormalisations stay f64. Pinned to the f64-steered path on the same
//! factor and start: the same orthonormality (`‖QᵀQ − I‖ ≤ 1e-10`), the same iterations, the
//! same basis and Rayleigh quotients up to f32 rounding of the products, and reports that match
//! a direct f64 `QᵀFQ`; tolerances below `F32_STEERING_FROM` steer in f64 bit for bit.

mod support;

use nalgebra::DMatrix;
use support::curvature::rng;
use support::warm::{
    ORTHONORMAL, orthonormality_error, perturbed, random_orthogonal, with_spectrum,
};
use tekfac::curvature::{
    F32_STEERING_FROM, Refined, Steering, off_diagonal_mass, refine_eigenbasis_with,
};

/// f32's unit roundoff: the products' relative rounding.
const EPS32: f64 = f32::EPSILON as f64;

/// A PSD factor with a decaying spectrum and a stale start basis: `n = 300` takes the head and
/// tail path, `n = 48` rotates every column.
fn factor_and_start(n: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>) {
    let mut r = rng(seed);
    let v = random_orthogonal(&mut r, n);
    let spectrum: Vec<f64> = (0..n).map(|i| (1.0 + i as f64).powf(-2.0)).collect();
    let f = with_spectrum(&v, &spectrum);
    (f, perturbed(&mut r, &v, 0.05))
}

fn refine(f: &DMatrix<f64>, start: &DMatrix<f64>, iterations: usize, s: Steering) -> Refined {
    refine_eigenbasis_with(f, start, F32_STEERING_FROM, iterations, s).unwrap()
}

#[test]
fn f32_steering_follows_the_f64_path_to_f32_rounding() {
    for (n, seed) in [(300, 1), (48, 2)] {
        let (f, start) = factor_and_start(n, seed);
        let norm = f.norm();
        for iterations in 1..=4 {
            let (f32s, f64s) = (
                refine(&f, &start, iterations, Steering::F32),
                refine(&f, &start, iterations, Steering::F64),
            );
            assert_eq!(f32s.iterations, f64s.iterations, "n {n}: iterations differ");
            let ortho = orthonormality_error(&f32s.q);
            assert!(ortho <= ORTHONORMAL, "n {n}: ‖QᵀQ − I‖ = {ortho:.1e}");
            // The same rotation, to f32 rounding amplified by each vector's conditioning
            // (Davis–Kahan): a column moves by at most ~ε‖F‖ / gap_i, gap_i the distance of
            // d_i to the nearest other Rayleigh quotient.
            let worst = (0..n)
                .map(|i| {
                    let gap = (0..n)
                        .filter(|&j| j != i)
                        .map(|j| (f64s.d[i] - f64s.d[j]).abs())
                        .fold(f64::INFINITY, f64::min);
                    let moved = (f32s.q.column(i) - f64s.q.column(i)).norm();
                    moved * gap / (EPS32 * norm)
                })
                .fold(0.0, f64::max);
            let d_gap = (&f32s.d - &f64s.d).amax();
            let off_gap = (f32s.off_diagonal - f64s.off_diagonal).abs();
            eprintln!(
                "n {n}, {iterations} it: max_i ‖q₃₂ − q₆₄‖·gap_i / (ε₃₂‖F‖) {worst:.1e}, \
                 max|d₃₂ − d₆₄| {:.1e}‖F‖, off {:.3e} vs {:.3e}",
                d_gap / norm,
                f32s.off_diagonal,
                f64s.off_diagonal
            );
            // One iteration from the same start: the same rotation and Rayleigh quotients. Later
            // iterations start from slightly different bases and near-degenerate pairs then
            // part further (tail vectors are not eigenvectors, so their d moves to first
            // order), so only the quality reached is compared.
            if iterations == 1 {
                assert!(worst <= 10.0, "n {n}: a column moved {worst:.1e} ε‖F‖/gap");
                assert!(d_gap <= 4.0 * EPS32 * norm, "n {n}: d apart by {d_gap:.1e}");
            }
            // Down to half the smallest tolerance f32 steering serves, the same off(Q).
            assert!(
                off_gap <= 0.5 * F32_STEERING_FROM + 1e-2 * f64s.off_diagonal,
                "n {n}, {iterations} it: off apart by {off_gap:.1e}"
            );
        }
    }
}

#[test]
fn f32_steered_reports_match_a_direct_f64_product() {
    let (f, start) = factor_and_start(300, 3);
    let norm = f.norm();
    for iterations in 1..=3 {
        let refined = refine(&f, &start, iterations, Steering::F32);
        let b = refined.q.transpose() * &f * &refined.q;
        let worst = (0..f.nrows())
            .map(|i| (refined.d[i] - b[(i, i)].max(0.0)).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e2 * EPS32 * norm,
            "{iterations} it: Rayleigh quotients off by {:.1e}‖F‖",
            worst / norm
        );
        let direct = off_diagonal_mass(&f, &refined.q);
        assert!(
            (refined.off_diagonal - direct).abs() <= 1e-5 + 1e-3 * direct,
            "{iterations} it: off(Q) {} against {direct} formed directly",
            refined.off_diagonal
        );
    }
}

#[test]
fn tolerances_below_the_f32_floor_steer_in_f64() {
    let (f, start) = factor_and_start(300, 4);
    for tolerance in [0.0, 1e-9, 0.5 * F32_STEERING_FROM] {
        let asked = refine_eigenbasis_with(&f, &start, tolerance, 2, Steering::F32).unwrap();
        let f64s = refine_eigenbasis_with(&f, &start, tolerance, 2, Steering::F64).unwrap();
        assert_eq!(
            asked, f64s,
            "tolerance {tolerance:e}: not the f64-steered result"
        );
    }
    let f32s = refine(&f, &start, 2, Steering::F32);
    let f64s = refine(&f, &start, 2, Steering::F64);
    assert_ne!(
        f32s.q, f64s.q,
        "at the floor itself f32 steering must apply"
    );
}
