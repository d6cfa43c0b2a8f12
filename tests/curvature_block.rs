//! `CurvatureBlock` beyond the spec's identities: the pinned Kronecker order, every damping mode
//! against a dense solve, the large-damping limit, and singular factors.

mod support;

use nalgebra::DMatrix;
use support::curvature::*;
use tekfac::curvature::exact::{exact_fisher, kron_rows, vec_rows};
use tekfac::curvature::{Damping, KroneckerFactors, Variant};

/// The damping modes each variant accepts.
fn modes(v: Variant, lambda: f64) -> Vec<Damping> {
    let mut m = vec![Damping::Additive(lambda), Damping::FactoredShift(lambda)];
    if !v.corrects_eigenvalues() {
        m.extend([
            Damping::FactoredTikhonov(lambda),
            Damping::TkfacNormal(lambda),
        ]);
    }
    m
}

#[test]
fn row_major_kronecker_order_pinned() {
    // One example: F = vec(∇W̄) vec(∇W̄)ᵀ with ∇W̄ = g āᵀ and vec stacking rows.
    let c = random_capture(20, 1, 1, 2, 3, 1);
    let a: Vec<f64> = c.a.data().to_vec();
    let g: Vec<f64> = c.g[0].data().to_vec();
    let grad = DMatrix::from_fn(3, 3, |o, i| g[o] * a[i]);
    let v = vec_rows(&grad);
    let outer = &v * v.transpose();
    check(
        "order: exact F = vec(∇W̄)vec(∇W̄)ᵀ",
        rel_err(&exact_fisher(&c).unwrap(), &outer),
        EXACT,
    );
    // Entry ((o, i), (p, j)) sits at (o·d_in' + i, p·d_in' + j) and equals g_o g_p ā_i ā_j.
    let kfac = fitted(Variant::Kfac, &c).to_dense().unwrap();
    for (o, i, p, j) in [(0, 1, 2, 0), (2, 2, 1, 0), (1, 0, 1, 2)] {
        let want = g[o] * g[p] * a[i] * a[j];
        check(
            "order: F̂[(o,i),(p,j)] = g_o g_p ā_i ā_j",
            (kfac[(o * 3 + i, p * 3 + j)] - want).abs(),
            EXACT,
        );
    }
    let f = KroneckerFactors::from_capture(false, &c).unwrap();
    check(
        "order: to_dense = G ⊗ A",
        rel_err(&kfac, &kron_rows(&f.g_factor, &f.a_factor)),
        EXACT,
    );
    // The papers' column-stacking order A ⊗ G is a different matrix here.
    let gap = rel_err(&kfac, &kron_rows(&f.a_factor, &f.g_factor));
    assert!(gap > GAP, "A ⊗ G must not match the row-major block");
}

#[test]
fn precondition_equals_dense_solve_every_variant() {
    for (name, c) in [
        ("dense", random_capture(21, 5, 1, 3, 2, 1)),
        ("conv", random_capture(22, 3, 4, 2, 3, 2)),
    ] {
        for v in Variant::ALL {
            let block = fitted(v, &c);
            let (d_out, d_in_bar) = block.dims();
            let grad = randn(&mut rng(23), d_out, d_in_bar);
            for lambda in [1e-3, 0.3] {
                for d in modes(v, lambda) {
                    let solved = dense_solve(&block.to_dense_damped(&d).unwrap(), &grad);
                    let err = rel_err(&block.precondition(&grad, &d).unwrap(), &solved);
                    check(
                        &format!("{name} {v} {d:?}: precondition = dense solve"),
                        err,
                        SOLVE,
                    );
                }
                let plus = block.to_dense().unwrap() + eye(d_out * d_in_bar) * lambda;
                let additive = block.to_dense_damped(&Damping::Additive(lambda)).unwrap();
                check(
                    &format!("{name} {v}: to_dense_damped(additive) = F̂ + λI"),
                    rel_err(&additive, &plus),
                    EXACT,
                );
            }
        }
    }
}

#[test]
fn kfac_factored_tikhonov_is_the_pi_formula() {
    let c = random_capture(24, 6, 1, 4, 3, 1);
    let block = fitted(Variant::Kfac, &c);
    let f = block.factors().unwrap();
    let (d_out, d_in_bar) = block.dims();
    let lambda: f64 = 0.02;
    // π = √((tr A/d_in') / (tr G/d_out)); Ã = A + π√λ I, G̃ = G + (√λ/π) I (K-FAC §6.3).
    let pi = ((f.a_factor.trace() / d_in_bar as f64) / (f.g_factor.trace() / d_out as f64)).sqrt();
    let a_t = &f.a_factor + eye(d_in_bar) * (pi * lambda.sqrt());
    let g_t = &f.g_factor + eye(d_out) * (lambda.sqrt() / pi);
    let grad = randn(&mut rng(25), d_out, d_in_bar);
    let direct = g_t.clone().lu().solve(&grad).unwrap();
    let direct = a_t
        .clone()
        .lu()
        .solve(&direct.transpose())
        .unwrap()
        .transpose();
    let d = Damping::FactoredTikhonov(lambda);
    check(
        "K-FAC π damping: precondition = G̃⁻¹∇Ã⁻¹",
        rel_err(&block.precondition(&grad, &d).unwrap(), &direct),
        SOLVE,
    );
    check(
        "K-FAC π damping: to_dense_damped = G̃ ⊗ Ã",
        rel_err(&block.to_dense_damped(&d).unwrap(), &kron_rows(&g_t, &a_t)),
        EXACT,
    );
}

#[test]
fn large_damping_turns_precondition_into_gradient_over_lambda() {
    let c = random_capture(26, 4, 2, 3, 2, 1);
    for v in Variant::ALL {
        let block = fitted(v, &c);
        let grad = randn(&mut rng(27), 2, 4);
        for mode in modes(v, 1.0) {
            let errs: Vec<f64> = [1e2, 1e4, 1e6, 1e8, 1e10, 1e12]
                .iter()
                .map(|&lambda| {
                    let d = match mode {
                        Damping::Additive(_) => Damping::Additive(lambda),
                        Damping::FactoredTikhonov(_) => Damping::FactoredTikhonov(lambda),
                        Damping::TkfacNormal(_) => Damping::TkfacNormal(lambda),
                        Damping::FactoredShift(_) => Damping::FactoredShift(lambda),
                    };
                    rel_err(&(block.precondition(&grad, &d).unwrap() * lambda), &grad)
                })
                .collect();
            let shown: Vec<String> = errs.iter().map(|e| format!("{e:.1e}")).collect();
            eprintln!(
                "{v} {mode:?}: ‖λv − ∇‖/‖∇‖ for λ = 1e2..1e12: {}",
                shown.join(" ")
            );
            assert!(
                errs.windows(2).all(|w| w[1] < w[0]),
                "{v}: λ·v must approach ∇ monotonically"
            );
            // Additive: error ~ ‖D‖/λ; factored: ~ (u/π + πv)/√λ.
            assert!(errs[5] < 1e-4, "{v}: λ·v far from ∇ at λ = 1e12");
        }
    }
}

#[test]
fn singular_factor_gives_a_finite_update() {
    // Input column 1 is zero for every example (MNIST's border pixels): A and δΦ are singular.
    let mut c = random_capture(28, 5, 1, 3, 2, 1);
    c.a.data_mut().chunks_mut(4).for_each(|row| row[1] = 0.0);
    for v in Variant::ALL {
        let block = fitted(v, &c);
        assert!(
            block.basis().unwrap().d_a.iter().any(|x| *x < 1e-12),
            "{v}: A should be singular"
        );
        let grad = randn(&mut rng(29), 2, 4);
        for d in modes(v, 1e-3) {
            let u = block.precondition(&grad, &d).unwrap();
            assert!(
                u.iter().all(|x| x.is_finite()),
                "{v} {d:?}: non-finite update"
            );
            check(
                &format!("singular {v} {d:?}: = dense solve"),
                rel_err(&u, &dense_solve(&block.to_dense_damped(&d).unwrap(), &grad)),
                SOLVE,
            );
        }
    }
}
