//! Convergence of the warm-started refresh (`curvature/refine.rs`): orthonormality to 1e-10
//! over chained refreshes, convergence to nalgebra's eigenbasis on known spectra (compared
//! through spectral projectors), head and tail of a large factor, and repeated eigenvalues and
//! zero blocks that must never break it.

mod support;

use nalgebra::DMatrix;
use support::curvature::*;
use support::warm::*;
use tekfac::curvature::{
    EigenRefresh, KroneckerBasis, KroneckerFactors, MovingAverage, RefineFailure, WarmStart,
    off_diagonal_mass, refine_eigenbasis,
};

#[test]
fn refined_bases_are_orthonormal_to_1e_10_over_chained_refreshes() {
    // Full rotation (n ≤ 64) and head + tail (n = 200), ten refreshes of an evolving average.
    for (n_in, n_out, seed) in [(30, 20, 1), (199, 150, 2)] {
        let mut average = MovingAverage::<KroneckerFactors>::new(0.9);
        let mut policy = EigenRefresh::new(WarmStart {
            tolerance: 0.0, // never good enough: always refine, never accept
            max_iterations: 1,
            ..WarmStart::default()
        })
        .unwrap();
        let mut basis: Option<KroneckerBasis> = None;
        for step in 0..10 {
            let c = random_capture(seed * 100 + step, 300, 1, n_in, n_out, 1);
            average.update(KroneckerFactors::from_capture(true, &c).unwrap());
            let factors = average.value().unwrap();
            let previous = basis.as_ref().map(|b| (&b.q_a, &b.q_g));
            let (q_a, q_g) = match previous {
                // Bypass the policy's acceptance test: chain the raw refinements.
                Some((qa, qg)) => (
                    refine_eigenbasis(&factors.a_factor, qa, 0.0, 1).unwrap(),
                    refine_eigenbasis(&factors.g_factor, qg, 0.0, 1).unwrap(),
                ),
                None => {
                    let (b, _) = policy.refresh(factors, None).unwrap();
                    basis = Some(b);
                    continue;
                }
            };
            for (name, q) in [("Q_A", &q_a.q), ("Q_G", &q_g.q)] {
                check(
                    &format!("n={n_in} step {step} {name}: ‖QᵀQ − I‖_F"),
                    orthonormality_error(q),
                    ORTHONORMAL,
                );
            }
            basis = Some(KroneckerBasis {
                q_a: q_a.q,
                d_a: q_a.d,
                q_g: q_g.q,
                d_g: q_g.d,
            });
        }
    }
}

#[test]
fn converges_to_the_exact_eigenbasis_on_a_known_spectrum() {
    let mut r = rng(61);
    let n = 40;
    // Distinct eigenvalues, a triple one (3.0) and a double zero: 40 in all.
    let mut lambda: Vec<f64> = (0..33).map(|i| 20.0 / (1.0 + i as f64)).collect();
    lambda.extend([3.0, 3.0, 3.0, 0.05, 0.02, 0.0, 0.0]);
    let v = random_orthogonal(&mut r, n);
    let f = with_spectrum(&v, &lambda);
    let start = perturbed(&mut r, &v, 0.05);
    let before = off_diagonal_mass(&f, &start);
    let refined = refine_eigenbasis(&f, &start, 0.0, 6).unwrap();
    eprintln!(
        "off(Q): start {before:.2e}, after 6 iterations {:.2e}",
        off_diagonal_mass(&f, &refined.q)
    );
    assert!(before > 1e-2, "the start is genuinely perturbed");
    check(
        "known spectrum: ‖QᵀQ − I‖_F",
        orthonormality_error(&refined.q),
        ORTHONORMAL,
    );
    let exact = nalgebra::SymmetricEigen::new(f.clone());
    let mut groups = lambda.clone();
    groups.dedup();
    for &l in &groups {
        let window = 1e-3;
        let (p_warm, count) = projector(&refined.q, &refined.d, l, window);
        let (p_exact, count_exact) = projector(&exact.eigenvectors, &exact.eigenvalues, l, window);
        assert_eq!(count, count_exact, "λ = {l}: multiplicity");
        check(
            &format!("λ = {l} (×{count}): spectral projectors"),
            (p_warm - p_exact).norm(),
            1e-9,
        );
    }
}

#[test]
fn head_and_tail_converge_on_a_large_factor() {
    // n = 150 > 64: the 64 largest eigenvalues are rotated one by one, the 86 tiny ones only
    // as a subspace (their projector), which is all the tail promises.
    let mut r = rng(62);
    let n = 150;
    let lambda: Vec<f64> = (0..n)
        .map(|i| {
            if i < 64 {
                10.0 * 0.93f64.powi(i as i32)
            } else {
                1e-9 * (1 + i % 7) as f64
            }
        })
        .collect();
    let v = random_orthogonal(&mut r, n);
    let f = with_spectrum(&v, &lambda);
    let start = perturbed(&mut r, &v, 0.02);
    let history: Vec<String> = (1..=8)
        .map(|its| {
            format!(
                "{:.1e}",
                refine_eigenbasis(&f, &start, 0.0, its)
                    .unwrap()
                    .off_diagonal
            )
        })
        .collect();
    eprintln!("off(Q) after 1..8 iterations: {}", history.join(" "));
    let refined = refine_eigenbasis(&f, &start, 0.0, 8).unwrap();
    check(
        "head + tail: ‖QᵀQ − I‖_F",
        orthonormality_error(&refined.q),
        ORTHONORMAL,
    );
    let exact = nalgebra::SymmetricEigen::new(f.clone());
    for &l in &lambda[..64] {
        let (p_warm, c) = projector(&refined.q, &refined.d, l, 1e-6 * l);
        let (p_exact, ce) = projector(&exact.eigenvectors, &exact.eigenvalues, l, 1e-6 * l);
        assert_eq!((c, ce), (1, 1), "λ = {l} is simple");
        check(
            &format!("head λ = {l:.4}: projector"),
            (p_warm - p_exact).norm(),
            1e-8,
        );
    }
    let (p_tail, c) = projector(&refined.q, &refined.d, 0.0, 1e-7);
    let (p_tail_exact, ce) = projector(&exact.eigenvectors, &exact.eigenvalues, 0.0, 1e-7);
    assert_eq!((c, ce), (n - 64, n - 64));
    check(
        "tail subspace: projector",
        (p_tail - p_tail_exact).norm(),
        1e-8,
    );
}

#[test]
fn repeated_eigenvalues_and_a_zero_block_never_break_it() {
    // Half of the spectrum is one repeated eigenvalue, a quarter is exactly zero (zero rows and
    // columns in the original coordinates), the rest distinct; start from nalgebra's basis of a
    // perturbed matrix, whose vectors inside the repeated eigenvalue are arbitrary.
    let mut r = rng(63);
    let n = 96;
    let mut f = DMatrix::zeros(n, n);
    let v = random_orthogonal(&mut r, 72);
    let lambda: Vec<f64> = (0..72)
        .map(|i| if i < 48 { 2.0 } else { 1.0 + 0.1 * i as f64 })
        .collect();
    f.view_mut((0, 0), (72, 72))
        .copy_from(&with_spectrum(&v, &lambda));
    let mut g = DMatrix::zeros(n, n);
    let noise = randn(&mut r, 72, 72);
    g.view_mut((0, 0), (72, 72))
        .copy_from(&((&noise + noise.transpose()) * 1e-3));
    // The exact (deflated) basis of the perturbed matrix, which has the same zero rows.
    let mut policy = EigenRefresh::new(WarmStart::default()).unwrap();
    let perturbed = KroneckerFactors {
        a_factor: &f + &g,
        g_factor: eye(2),
        trace_scale: 1.0,
    };
    let start = policy.refresh(&perturbed, None).unwrap().0.q_a;
    // A basis that mixes the zero rows with live ones does not restrict to the live block.
    let mixed = random_orthogonal(&mut r, n);
    let refused = refine_eigenbasis(&f, &mixed, 0.0, 1);
    assert!(
        matches!(refused, Err(RefineFailure::NotOrthonormal)),
        "a mixed basis is refused"
    );
    for zero in [false, true] {
        let f = if zero {
            DMatrix::zeros(n, n)
        } else {
            f.clone()
        };
        let refined = refine_eigenbasis(&f, &start, 0.0, 3).unwrap();
        assert!(refined.q.iter().all(|x| x.is_finite()), "finite");
        check(
            &format!("repeated (zero factor: {zero}): ‖QᵀQ − I‖_F"),
            orthonormality_error(&refined.q),
            ORTHONORMAL,
        );
        if !zero {
            let (p_warm, c) = projector(&refined.q, &refined.d, 2.0, 1e-6);
            let exact = nalgebra::SymmetricEigen::new(f.clone());
            let (p_exact, ce) = projector(&exact.eigenvectors, &exact.eigenvalues, 2.0, 1e-6);
            assert_eq!((c, ce), (48, 48));
            check(
                "repeated eigenvalue: projector",
                (p_warm - p_exact).norm(),
                1e-8,
            );
        }
    }
}
