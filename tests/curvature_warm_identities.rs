//! Identities 5–8 of spec §7 in a warm-started basis (`curvature/refine.rs`): EKFAC's and
//! TEKFAC's re-scaled diagonal is still the best diagonal in *any* orthogonal basis (Lemma 1),
//! so the guarantee survives an approximate eigenbasis. The basis is made deliberately
//! approximate (one refinement from another capture's exact basis), and a negative control shows
//! that a diagonal measured in another basis is not optimal in this one.

mod support;

use support::curvature::*;
use support::warm::*;
use tekfac::LayerCapture;
use tekfac::curvature::exact::{exact_fisher, vec_rows};
use tekfac::curvature::{
    CaptureRows, KroneckerBasis, KroneckerFactors, corrected_batch, off_diagonal_mass,
    refine_eigenbasis,
};

/// A K-FAC (`trace_restricted = false`) or TKFAC basis of `c`'s factors that is deliberately
/// approximate: one refinement step from the exact basis of another capture's factors.
fn approximate_basis(c: &LayerCapture<f64>, trace_restricted: bool) -> (KroneckerBasis, f64) {
    let mut other = c.clone();
    other
        .a
        .data_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x *= 1.0 + 0.3 * ((i % 5) as f64 - 2.0));
    let stale = KroneckerFactors::from_capture(trace_restricted, &other).unwrap();
    let start = KroneckerBasis::from_factors(&stale).unwrap();
    let now = KroneckerFactors::from_capture(trace_restricted, c).unwrap();
    let a = refine_eigenbasis(&now.a_factor, &start.q_a, 0.0, 1).unwrap();
    let g = refine_eigenbasis(&now.g_factor, &start.q_g, 0.0, 1).unwrap();
    let off = off_diagonal_mass(&now.a_factor, &a.q).max(off_diagonal_mass(&now.g_factor, &g.q));
    let basis = KroneckerBasis {
        q_a: a.q,
        d_a: a.d,
        q_g: g.q,
        d_g: g.d,
    };
    (basis, off)
}

#[test]
fn identities_5_to_8_hold_in_a_warm_basis() {
    for (name, c) in captures() {
        let f = exact_fisher(&c).unwrap();
        let rows = CaptureRows::from_capture(&c).unwrap();
        for trace_restricted in [false, true] {
            let v = if trace_restricted { "TEKFAC" } else { "EKFAC" };
            let (basis, off) = approximate_basis(&c, trace_restricted);
            eprintln!("{name} {v}: the warm basis leaves off(Q) = {off:.2e}");
            assert!(
                off > 1e-6,
                "{name}: the basis must be approximate for the test to mean anything"
            );
            check(
                &format!("{name} {v}: Q orthonormal"),
                orthonormality_error(&basis.kron_q()),
                ORTHONORMAL,
            );
            let theta = corrected_batch(&basis, &rows);
            // [5] Σ Θ = tr F, because Q is orthogonal.
            check(
                &format!("[5] {name} {v}: ΣΘ = tr F"),
                rel_err_scalar(theta.sum(), f.trace()),
                EXACT,
            );
            // [6] Θ = diag(QᵀFQ).
            let q = basis.kron_q();
            let qfq = q.transpose() * &f * &q;
            check(
                &format!("[6] {name} {v}: Θ = diag(QᵀFQ)"),
                (vec_rows(&theta) - qfq.diagonal()).norm() / qfq.norm(),
                EXACT,
            );
            // [7] no perturbation of Θ in this basis fits F better.
            let best = (&f - basis.dense(&theta)).norm();
            let mut r = rng(7);
            for _ in 0..20 {
                let noise = randn(&mut r, theta.nrows(), theta.ncols());
                let perturbed = theta.zip_map(&noise, |x, z| x + 0.1 * z * (x.abs() + 1e-3));
                let err = (&f - basis.dense(&perturbed)).norm();
                assert!(
                    err >= best - 1e-12 * best,
                    "[7] {name} {v}: a perturbation fit better"
                );
            }
            // [8] dominance over the uncorrected variant in the same basis (its products of
            // Rayleigh quotients: K-FAC/TKFAC of the pinched factors).
            let ts = KroneckerFactors::from_capture(trace_restricted, &c)
                .unwrap()
                .trace_scale;
            let products = basis.eigenvalue_products(ts);
            let uncorrected = (&f - basis.dense(&products)).norm();
            assert!(
                best <= uncorrected * (1.0 + 1e-12),
                "[8] {name} {v}: corrected worse"
            );
            eprintln!(
                "[8] {name} {v}: ‖F − corrected‖ {best:.4} ≤ ‖F − uncorrected‖ {uncorrected:.4}"
            );
            // Negative control: the exact basis's diagonal is not optimal in the warm basis.
            let exact = KroneckerBasis::from_factors(
                &KroneckerFactors::from_capture(trace_restricted, &c).unwrap(),
            )
            .unwrap();
            let foreign = corrected_batch(&exact, &rows);
            let err_foreign = (&f - basis.dense(&foreign)).norm();
            assert!(
                err_foreign > best * (1.0 + 1e-9),
                "{name} {v}: foreign Θ fits as well"
            );
        }
    }
}
