//! Identities 6–12 of spec §7 (Lemma 1, dominance, reductions, exact cases), one named test
//! each. f64, synthetic captures, decay 0, refresh every step; numbering follows the spec.

mod curvature_common;

use curvature_common::*;
use nalgebra::DMatrix;
use tekfac::LayerCapture;
use tekfac::curvature::exact::{self, exact_fisher, kron_rows};
use tekfac::curvature::{CurvatureBlock, Damping, KroneckerFactors, Variant};

#[test]
fn identity_06_lemma1_closed_form() {
    for (name, c) in captures() {
        let f = exact_fisher(&c).unwrap();
        for v in [Variant::Ekfac, Variant::Tekfac] {
            let block = fitted(v, &c);
            let q = block.basis().unwrap().kron_q();
            let qfq = q.transpose() * &f * &q;
            let diag = exact::vec_rows(&block.eigenvalues().unwrap());
            check(
                &format!("[6] {name} {v}: diag = diag(QᵀFQ)"),
                (&diag - qfq.diagonal()).norm() / qfq.norm(),
                EXACT,
            );
        }
    }
}

#[test]
fn identity_07_lemma1_optimality() {
    let mut r = rng(70);
    for (name, c) in captures() {
        let f = exact_fisher(&c).unwrap();
        for v in [Variant::Ekfac, Variant::Tekfac] {
            let block = fitted(v, &c);
            let basis = block.basis().unwrap();
            let d = block.eigenvalues().unwrap();
            let best = (&f - basis.dense(&d)).norm();
            for _ in 0..20 {
                let noise = randn(&mut r, d.nrows(), d.ncols());
                let perturbed = d.zip_map(&noise, |x, z| x + 0.1 * z * (x.abs() + 1e-3));
                let err = (&f - basis.dense(&perturbed)).norm();
                assert!(
                    err >= best - 1e-12 * best,
                    "[7] {name} {v}: a perturbation improved the fit"
                );
            }
        }
    }
}

#[test]
fn identity_08_dominance() {
    for (name, c) in captures() {
        let f = exact_fisher(&c).unwrap();
        let err = |v| (&f - fitted(v, &c).to_dense().unwrap()).norm();
        let (kfac, ekfac, tkfac, tekfac) = (
            err(Variant::Kfac),
            err(Variant::Ekfac),
            err(Variant::Tkfac),
            err(Variant::Tekfac),
        );
        eprintln!(
            "[8] {name}: ‖F−·‖ K-FAC {kfac:.4} EKFAC {ekfac:.4} TKFAC {tkfac:.4} TEKFAC {tekfac:.4}"
        );
        assert!(
            ekfac <= kfac * (1.0 + 1e-12),
            "[8] {name}: EKFAC worse than K-FAC"
        );
        assert!(
            tekfac <= tkfac * (1.0 + 1e-12),
            "[8] {name}: TEKFAC worse than TKFAC"
        );
    }
}

#[test]
fn identity_09_reductions() {
    for (name, c) in captures() {
        let fresh = |v| {
            let mut b =
                CurvatureBlock::new(v, &info(c.g[0].dims()[1], c.a.dims()[1] - 1, false), 0.0);
            b.observe(&c).unwrap();
            b.refresh().unwrap(); // re-seeded, no rescale yet
            b
        };
        let kfac = fresh(Variant::Kfac).to_dense().unwrap();
        let tkfac = fresh(Variant::Tkfac).to_dense().unwrap();
        check(
            &format!("[9] {name}: s* := eig(A)⊗eig(G) gives K-FAC"),
            rel_err(&fresh(Variant::Ekfac).to_dense().unwrap(), &kfac),
            EXACT,
        );
        check(
            &format!("[9] {name}: Θ := δ eig(Φ)⊗eig(Ψ) gives TKFAC"),
            rel_err(&fresh(Variant::Tekfac).to_dense().unwrap(), &tkfac),
            EXACT,
        );
        let fk = KroneckerFactors::from_capture(false, &c).unwrap();
        check(
            &format!("[9] {name}: K-FAC block = G⊗A"),
            rel_err(&kfac, &kron_rows(&fk.g_factor, &fk.a_factor)),
            EXACT,
        );
        let ft = KroneckerFactors::from_capture(true, &c).unwrap();
        let tk = kron_rows(&ft.g_factor, &ft.a_factor) / ft.trace_scale;
        check(
            &format!("[9] {name}: TKFAC block = δΨ⊗Φ"),
            rel_err(&tkfac, &tk),
            EXACT,
        );
    }
}

#[test]
fn identity_10_degenerate_ekfac_equals_tekfac() {
    for (name, c) in captures() {
        let ekfac = fitted(Variant::Ekfac, &c);
        let (d_out, d_in_bar) = ekfac.dims();
        let mut tekfac = CurvatureBlock::new(
            Variant::Tekfac,
            &info(d_out, d_in_bar - 1, c.rows_per_example > 1),
            0.0,
        );
        let kf = KroneckerFactors::from_capture(false, &c).unwrap();
        let grad = randn(&mut rng(10), d_out, d_in_bar);
        // Φ := A, Ψ := G, δ := 1 literally; then rescaled raw numerators 2A, 3G, δ = 6 (same F̂,
        // but a different eigensolver input: the bases may differ in sign, order and rounding).
        let feeds = [
            (1.0, 1.0, "Φ:=A, Ψ:=G, δ:=1"),
            (2.0, 3.0, "δΦ:=2A, δΨ:=3G, δ:=6"),
        ];
        for (ca, cg, feed) in feeds {
            let scaled = KroneckerFactors {
                a_factor: &kf.a_factor * ca,
                g_factor: &kf.g_factor * cg,
                trace_scale: ca * cg,
            };
            tekfac.set_factors(scaled).unwrap();
            tekfac.refresh().unwrap();
            for lambda in [1e-3, 1e-1] {
                let d = Damping::Additive(lambda);
                let seeded = (
                    ekfac_fresh(&c).precondition(&grad, &d).unwrap(),
                    tekfac.precondition(&grad, &d).unwrap(),
                );
                check(
                    &format!("[10] {name} {feed} λ={lambda}: seeded TEKFAC = K-FAC-seeded EKFAC"),
                    rel_err(&seeded.0, &seeded.1),
                    DEGENERATE,
                );
            }
            tekfac.rescale(&c).unwrap();
            for lambda in [1e-3, 1e-1] {
                let d = Damping::Additive(lambda);
                let (u_e, u_t) = (
                    ekfac.precondition(&grad, &d).unwrap(),
                    tekfac.precondition(&grad, &d).unwrap(),
                );
                check(
                    &format!("[10] {name} {feed} λ={lambda}: TEKFAC update = EKFAC update"),
                    rel_err(&u_e, &u_t),
                    DEGENERATE,
                );
            }
        }
    }
}

/// An EKFAC block right after its first refresh (s* seeded with K-FAC's eigenvalues).
fn ekfac_fresh(c: &LayerCapture<f64>) -> CurvatureBlock {
    let mut b = CurvatureBlock::new(
        Variant::Ekfac,
        &info(c.g[0].dims()[1], c.a.dims()[1] - 1, false),
        0.0,
    );
    b.observe(c).unwrap();
    b.refresh().unwrap();
    b
}

#[test]
fn identity_11_batch_of_one() {
    let cases = [
        ("empirical", random_capture(11, 1, 1, 3, 4, 1)),
        ("type-2, 3 sweeps", random_capture(12, 1, 1, 4, 3, 3)),
    ];
    for (name, c) in cases {
        let f = exact_fisher(&c).unwrap();
        for v in Variant::ALL {
            check(
                &format!("[11] N=1 {name}: {v} = F"),
                rel_err(&fitted(v, &c).to_dense().unwrap(), &f),
                EXACT,
            );
        }
    }
}

#[test]
fn identity_12_example_independent_g() {
    let mut r = rng(12);
    let (n, d_in, d_out) = (5, 3, 2);
    let a = random_inputs(&mut r, n, 1, d_in);
    let g_row = randn(&mut r, 1, d_out);
    let g = DMatrix::from_fn(n, d_out, |_, k| g_row[k]);
    let c = capture(&a, &[g], 1);
    let f = exact_fisher(&c).unwrap();
    for v in Variant::ALL {
        check(
            &format!("[12] g independent of n: {v} = F"),
            rel_err(&fitted(v, &c).to_dense().unwrap(), &f),
            EXACT,
        );
    }
}

/// Cross-check against `shared/spec/identities_check.py`: its six (ā, g) samples (seed 0) and
/// its Frobenius errors ‖F − ·‖ for the four variants (invariant under its cvec ordering).
#[test]
fn reference_numbers_of_identities_check_py() {
    #[rustfmt::skip]
    let a = DMatrix::from_row_slice(6, 3, &[
        0.9417154046806644, -1.3965781047011498, 1.0,
        -1.016348894188071, -0.07212002278507135, 1.0,
        -1.3090373644593587, 0.1938877412491041, 1.0,
        -0.33366798379566953, 1.6456717605826776, 1.0,
        2.4041193322985697, -1.53108259287363, 1.0,
        -0.596962748085702, 1.503680882481937, 1.0,
    ]);
    #[rustfmt::skip]
    let g = DMatrix::from_row_slice(6, 2, &[
        -0.6797144480784211, 0.3705035674606598,
        0.5375894618245707, -2.4932976458129645,
        4.966248517675986, -3.234908152737524,
        -3.9122283609378936, -3.599096641369089,
        7.168192562641959, -18.03283665436264,
        13.435800543843392, -9.912321654349219,
    ]);
    let c = capture(&a, &[g], 1);
    let f = exact_fisher(&c).unwrap();
    check(
        "[ref] tr F",
        rel_err_scalar(f.trace(), 777.3962205220223),
        EXACT,
    );
    let reference = [
        (Variant::Kfac, 372.48013808007727),
        (Variant::Ekfac, 259.22415300929674),
        (Variant::Tkfac, 128.99726889009096),
        (Variant::Tekfac, 121.32595112480548),
    ];
    for (v, want) in reference {
        let err = (&f - fitted(v, &c).to_dense().unwrap()).norm();
        check(
            &format!("[ref] {v}: ‖F − F̂‖ = identities_check.py"),
            rel_err_scalar(err, want),
            EXACT,
        );
    }
}
