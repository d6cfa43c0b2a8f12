//! The change of coordinates of a warm refresh as the refinement's own iterations
//! (`curvature/change.rs`, `BasisChange`): `X R` equals the product `X (Q_oldᵀ Q_new)` for any
//! `X`, with head and tail (`n = 300`) and with every column rotated (`n = 48`), over 1–3
//! iterations, on factors with exactly-zero rows (including rows that were dead at the previous
//! refresh and are live now), in both steering precisions and with `X` in f32; and where the
//! previous basis' dead coordinates are not signed unit vectors, no change is claimed.

mod support;

use nalgebra::{DMatrix, DVector};
use support::curvature::{randn, rng};
use support::warm::{perturbed, random_orthogonal, with_spectrum};
use tekfac::curvature::{
    BasisChange, F32_STEERING_FROM, KroneckerBasis, Steering, refine_eigenbasis_with,
};

/// f32's unit roundoff.
const EPS32: f64 = f32::EPSILON as f64;

/// A PSD factor with the decaying spectrum `(1 + i)⁻²` and exactly-zero rows and columns
/// `dead`, and a stale deflated basis of it: the exact basis of the same construction turned by
/// a small rotation, with the rows `dead_before` (a superset of `dead`) zero.
fn factor_and_start(
    n: usize,
    seed: u64,
    dead: &[usize],
    dead_before: &[usize],
) -> (DMatrix<f64>, DMatrix<f64>) {
    let mut r = rng(seed);
    let v = random_orthogonal(&mut r, n);
    let spectrum: Vec<f64> = (0..n).map(|i| (1.0 + i as f64).powf(-2.0)).collect();
    let zeroed = |mut f: DMatrix<f64>, rows: &[usize]| {
        for &p in rows {
            f.row_mut(p).fill(0.0);
            f.column_mut(p).fill(0.0);
        }
        f
    };
    let f = zeroed(with_spectrum(&v, &spectrum), dead);
    let stale = zeroed(
        with_spectrum(&perturbed(&mut r, &v, 0.05), &spectrum),
        dead_before,
    );
    let start = KroneckerBasis::new(&stale, &DMatrix::identity(1, 1))
        .unwrap()
        .q_a;
    (f, start)
}

/// A row-major `[rows, n]` copy of `x`.
fn row_major(x: &DMatrix<f64>) -> Vec<f64> {
    x.transpose().iter().copied().collect()
}

/// `‖X R_change − X (Q_oldᵀ Q_new)‖ / ‖X (Q_oldᵀ Q_new)‖` for `X = x`.
fn mismatch(change: &BasisChange, x: &DMatrix<f64>, old: &DMatrix<f64>, new: &DMatrix<f64>) -> f64 {
    let want = x * (old.transpose() * new);
    let got = change.apply(row_major(x), x.nrows());
    (DMatrix::from_row_slice(x.nrows(), x.ncols(), &got) - &want).norm() / want.norm()
}

#[test]
fn the_iterations_are_the_product_with_q_old_transpose_q_new() {
    let dead: Vec<usize> = (0..300).filter(|p| p % 7 == 3).collect();
    let dead_before: Vec<usize> = (0..300).filter(|p| p % 7 == 3 || p % 11 == 5).collect();
    let cases: [(usize, &[usize], &[usize]); 4] = [
        (300, &[], &[]),
        (48, &[], &[]),
        (300, &dead, &dead),
        (300, &dead, &dead_before),
    ];
    for (case, (n, dead, dead_before)) in cases.into_iter().enumerate() {
        let (f, start) = factor_and_start(n, 10 + case as u64, dead, dead_before);
        let x = randn(&mut rng(20 + case as u64), 37, n);
        for iterations in 1..=3 {
            for steering in [Steering::F64, Steering::F32] {
                let refined =
                    refine_eigenbasis_with(&f, &start, F32_STEERING_FROM, iterations, steering)
                        .unwrap();
                let change = refined
                    .change
                    .as_ref()
                    .expect("a deflated start has a change");
                assert_eq!((change.dim(), change.iterations()), (n, refined.iterations));
                let err = mismatch(change, &x, &start, &refined.q);
                // X = Q_old: the iterations rebuild the new basis itself.
                let rebuilt = change.apply(row_major(&start), n);
                let rebuilt = DMatrix::from_row_slice(n, n, &rebuilt);
                let basis_err = (rebuilt - &refined.q).norm() / (n as f64).sqrt();
                eprintln!(
                    "n {n}, {} dead ({} before), {iterations} it, {steering:?}: ‖XR − X QᵀQ'‖ \
                     {err:.1e}, basis {basis_err:.1e}",
                    dead.len(),
                    dead_before.len()
                );
                // f64 steering: the same algebra, rounding apart. f32 steering: the basis took
                // `Q K_H` rounded to f32 (about ε₃₂‖K_H‖ per column), the change the exact `K_H`.
                let tol = match steering {
                    Steering::F64 => 1e-12,
                    Steering::F32 => 10.0 * EPS32,
                };
                assert!(
                    err <= tol,
                    "case {case}, {iterations} it, {steering:?}: {err:.1e}"
                );
                assert!(basis_err <= tol, "case {case}: basis {basis_err:.1e}");
            }
        }
    }
}

#[test]
fn an_f32_matrix_moves_like_the_f64_one_to_f32_rounding() {
    let (f, start) = factor_and_start(300, 3, &[5, 17, 200], &[5, 17, 200]);
    let refined = refine_eigenbasis_with(&f, &start, 0.05, 2, Steering::F32).unwrap();
    let change = refined.change.unwrap();
    let x = randn(&mut rng(4), 64, 300);
    let wide = change.apply(row_major(&x), 64);
    let narrow: Vec<f32> = row_major(&x).iter().map(|&v| v as f32).collect();
    let narrow = change.apply(narrow, 64);
    let num: f64 = wide
        .iter()
        .zip(&narrow)
        .map(|(a, &b)| (a - b as f64).powi(2))
        .sum();
    let den: f64 = wide.iter().map(|a| a * a).sum();
    let err = (num / den).sqrt();
    eprintln!("f32 X against f64 X: {err:.1e}");
    assert!(err <= 10.0 * EPS32, "{err:.1e}");
}

#[test]
fn dead_coordinates_that_are_not_unit_vectors_claim_no_change() {
    let dead = [5, 17];
    let (f, mut start) = factor_and_start(120, 7, &dead, &dead);
    // The deflated basis ends with e_5, e_17; turning them into each other keeps the start a
    // valid warm start for the live block but makes them no longer signed unit vectors.
    let (c, s) = (0.6f64.cos(), 0.6f64.sin());
    let (j, k) = (118, 119);
    let (a, b) = (start.column(j).clone_owned(), start.column(k).clone_owned());
    start.set_column(j, &(&a * c - &b * s));
    start.set_column(k, &(&a * s + &b * c));
    let refined = refine_eigenbasis_with(&f, &start, 0.05, 2, Steering::F64).unwrap();
    assert!(refined.iterations >= 1);
    assert!(refined.change.is_none());
    // Nothing else differs: the refined basis is still deflated and orthonormal.
    let d = DVector::from_iterator(120, (0..120).map(|i| refined.q[(5, i)].abs()));
    assert_eq!(d.iter().filter(|&&v| v != 0.0).count(), 1);
}
