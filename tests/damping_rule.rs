//! The damping rule option (`DampingRule`, `Damping::FactoredShift`; issue 18): K-FAC's factored
//! damping written as a shift of the diagonal in the eigenbasis, applicable to every variant.
//! f64, synthetic captures, decay 0.

mod support;

use nalgebra::{DMatrix, DVector};
use support::curvature::*;
use tekfac::curvature::exact::{self, kron_rows};
use tekfac::curvature::{CurvatureBlock, Damping, FastBlock, Variant};
use tekfac::optim::{DampingPolicy, DampingRule};

/// `F̂ + √λ(π·U⊗I + I⊗V/π) + λI` with `U = Q_G diag(u) Q_Gᵀ`, `V = Q_A diag(v) Q_Aᵀ`,
/// `(u, v) = (d_g, d_a)/√trace_scale` and `π = √(mean v / mean u)`: the matrix the factored
/// shift inverts, built densely from the block's basis.
fn shifted_dense(block: &CurvatureBlock, lambda: f64) -> DMatrix<f64> {
    let basis = block.basis().expect("fitted blocks have a basis");
    let root_ts = block.factors().unwrap().trace_scale.sqrt();
    let side = |q: &DMatrix<f64>, d: &DVector<f64>| {
        q * DMatrix::from_diagonal(&(d / root_ts)) * q.transpose()
    };
    let (u_mat, v_mat) = (side(&basis.q_g, &basis.d_g), side(&basis.q_a, &basis.d_a));
    let pi = (basis.d_a.mean() / basis.d_g.mean()).sqrt();
    let (d_out, d_in_bar) = block.dims();
    let root = lambda.sqrt();
    block.to_dense().unwrap()
        + kron_rows(&u_mat, &eye(d_in_bar)) * (root * pi)
        + kron_rows(&eye(d_out), &v_mat) * (root / pi)
        + eye(d_out * d_in_bar) * lambda
}

#[test]
fn factored_shift_is_a_dense_solve_every_variant() {
    for (name, c) in captures() {
        for v in Variant::ALL {
            let block = fitted(v, &c);
            let (d_out, d_in_bar) = block.dims();
            let m = randn(&mut rng(18), d_out, d_in_bar);
            let lambda = 0.05;
            let lhs = block
                .precondition(&m, &Damping::FactoredShift(lambda))
                .unwrap();
            let chol = shifted_dense(&block, lambda)
                .cholesky()
                .expect("the shifted block is positive definite");
            let rhs = exact::unvec_rows(&chol.solve(&exact::vec_rows(&m)), d_out, d_in_bar);
            check(
                &format!("{name} {v}: D + √λ(πu + v/π) + λ is a dense solve"),
                rel_err(&lhs, &rhs),
                SOLVE,
            );
        }
    }
}

#[test]
fn factored_shift_on_kfac_is_factored_tikhonov() {
    for (name, c) in captures() {
        let block = fitted(Variant::Kfac, &c);
        let m = randn(&mut rng(7), block.dims().0, block.dims().1);
        for lambda in [1e-3, 0.3] {
            let shift = block.precondition(&m, &Damping::FactoredShift(lambda));
            let pi = block.precondition(&m, &Damping::FactoredTikhonov(lambda));
            check(
                &format!("{name} λ={lambda}: K-FAC's shift = its factored damping"),
                rel_err(&shift.unwrap(), &pi.unwrap()),
                EXACT,
            );
        }
    }
}

#[test]
fn factored_shift_damps_more_than_additive_where_the_factors_are_curved() {
    for (name, c) in captures() {
        let block = fitted(Variant::Ekfac, &c);
        let lambda = 0.01;
        let additive = block
            .damped_eigenvalues(&Damping::Additive(lambda))
            .unwrap();
        let shifted = block
            .damped_eigenvalues(&Damping::FactoredShift(lambda))
            .unwrap();
        let extra = &shifted - &additive;
        assert!(extra.iter().all(|&x| x >= 0.0), "{name}: the shift is ≥ 0");
        let basis = block.basis().unwrap();
        let (k, i) = (basis.d_g.imax(), basis.d_a.imax());
        let (k0, i0) = (basis.d_g.imin(), basis.d_a.imin());
        assert!(
            extra[(k, i)] > extra[(k0, i0)],
            "{name}: the shift grows with the factors' eigenvalues"
        );
    }
}

#[test]
fn factored_modes_stay_refused_on_corrected_variants() {
    let (_, c) = &captures()[0];
    for v in [Variant::Ekfac, Variant::Tekfac] {
        let block = fitted(v, c);
        let m = randn(&mut rng(1), block.dims().0, block.dims().1);
        for d in [Damping::FactoredTikhonov(0.1), Damping::TkfacNormal(0.1)] {
            assert!(block.precondition(&m, &d).is_err(), "{v} {d:?}");
        }
        assert!(block.precondition(&m, &Damping::FactoredShift(0.1)).is_ok());
    }
}

#[test]
fn the_rule_sets_the_mode_of_every_block() {
    let dense = &captures()
        .into_iter()
        .find(|(_, c)| c.rows_per_example == 1)
        .unwrap()
        .1;
    let conv = &captures()
        .into_iter()
        .find(|(_, c)| c.rows_per_example > 1)
        .unwrap()
        .1;
    for v in Variant::ALL {
        let blocks = vec![fitted(v, conv), fitted(v, dense)];
        let of = |rule| {
            let policy = DampingPolicy {
                rule,
                ..DampingPolicy::with_lambda(1e-3)
            };
            policy.per_block(v, &blocks)
        };
        let own = of(DampingRule::Own);
        for (rule, make) in [
            (
                DampingRule::Additive,
                Damping::Additive as fn(f64) -> Damping,
            ),
            (DampingRule::FactoredShift, Damping::FactoredShift),
        ] {
            let got = of(rule);
            // Same λ per block (TEKFAC's conv λ of Eq. 3.5 included), only the mode changes.
            let want: Vec<Damping> = own.iter().map(|d| make(d.lambda())).collect();
            assert_eq!(got, want, "{v} {rule:?}");
        }
        assert_eq!(own[1], Damping::for_variant(v, 1e-3), "{v}: own rule");
    }
}

#[test]
fn f32_path_agrees_with_f64_under_the_factored_shift() {
    for (name, c) in captures() {
        for v in Variant::ALL {
            let block = fitted(v, &c);
            let d = Damping::FactoredShift(0.05);
            let m = randn(&mut rng(3), block.dims().0, block.dims().1);
            let want = block.precondition(&m, &d).unwrap();
            let mut fast = FastBlock::<f32>::new(&block);
            fast.sync(&block, &d).unwrap();
            let flat: Vec<f32> = m.transpose().iter().map(|&x| x as f32).collect();
            let got = fast.precondition(&flat).unwrap();
            let got = DMatrix::from_row_slice(m.nrows(), m.ncols(), &got).map(|x| x as f64);
            check(
                &format!("{name} {v}: f32 = f64"),
                rel_err(&got, &want),
                1e-4,
            );
        }
    }
}
