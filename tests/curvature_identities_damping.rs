//! Identities 13–15 and 18 of spec §7 (updates as dense solves, TKFAC damping, averages,
//! scale bookkeeping), one named test each. f64, synthetic captures, decay 0.

mod curvature_common;

use curvature_common::*;
use nalgebra::DMatrix;
use tekfac::curvature::exact::{self, kron_rows};
use tekfac::curvature::{CurvatureBlock, Damping, KroneckerFactors, MovingAverage, Variant};

#[test]
fn identity_13_tekfac_update_is_a_dense_solve() {
    for (name, c) in captures() {
        let block = fitted(Variant::Tekfac, &c);
        let (d_out, d_in_bar) = block.dims();
        let m = randn(&mut rng(13), d_out, d_in_bar);
        let lambda = if c.rows_per_example > 1 {
            block.trace_adaptive_damping(1e-3)
        } else {
            0.1
        };
        let dense = block.to_dense().unwrap() + eye(d_out * d_in_bar) * lambda;
        let lhs = block.precondition(&m, &Damping::Additive(lambda)).unwrap();
        let chol = dense.cholesky().expect("F̂ + λI is positive definite");
        let rhs = exact::unvec_rows(&chol.solve(&exact::vec_rows(&m)), d_out, d_in_bar);
        check(
            &format!("[13] {name} λ={lambda:.3e}: Q_Ψ[(Q_ΨᵀMQ_Φ)⊘(Θ+λ)]Q_Φᵀ = (F̂+λI)⁻¹M"),
            rel_err(&lhs, &rhs),
            SOLVE,
        );
    }
}

#[test]
fn identity_14_tkfac_factored_damping() {
    for (name, c) in captures() {
        let block = fitted(Variant::Tkfac, &c);
        let (d_out, d_in_bar) = block.dims();
        let f = block.factors().unwrap();
        let delta = f.trace_scale;
        let lambda: f64 = 0.05;
        // Φ̂ = √δΦ + √λI = δΦ/√δ + √λI, Ψ̂ likewise (Eq. 5.14).
        let phi_hat = &f.a_factor / delta.sqrt() + eye(d_in_bar) * lambda.sqrt();
        let psi_hat = &f.g_factor / delta.sqrt() + eye(d_out) * lambda.sqrt();
        let m = randn(&mut rng(14), d_out, d_in_bar);
        let direct = psi_hat.clone().lu().solve(&m).unwrap();
        let direct = phi_hat
            .clone()
            .lu()
            .solve(&direct.transpose())
            .unwrap()
            .transpose(); // Ψ̂⁻¹ M Φ̂⁻¹
        let damping = Damping::TkfacNormal(lambda);
        let lhs = block.precondition(&m, &damping).unwrap();
        check(
            &format!("[14] {name}: precondition = Ψ̂⁻¹MΦ̂⁻¹"),
            rel_err(&lhs, &direct),
            SOLVE,
        );
        let kron = kron_rows(&psi_hat, &phi_hat);
        check(
            &format!("[14] {name}: Ψ̂⁻¹MΦ̂⁻¹ = unvec((Ψ̂⊗Φ̂)⁻¹vec M)"),
            rel_err(&direct, &dense_solve(&kron, &m)),
            SOLVE,
        );
        let (phi, psi) = (&f.a_factor / delta, &f.g_factor / delta);
        let expected = kron_rows(&psi, &phi) * delta
            + (kron_rows(&psi, &eye(d_in_bar)) + kron_rows(&eye(d_out), &phi))
                * (lambda * delta).sqrt()
            + eye(d_out * d_in_bar) * lambda;
        check(
            &format!("[14] {name}: Ψ̂⊗Φ̂ = δΨ⊗Φ + √(λδ)(Ψ⊗I + I⊗Φ) + λI"),
            rel_err(&kron, &expected),
            EXACT,
        );
        check(
            &format!("[14] {name}: to_dense_damped = Ψ̂⊗Φ̂"),
            rel_err(&block.to_dense_damped(&damping).unwrap(), &kron),
            EXACT,
        );
    }
}

#[test]
fn identity_15_ema_keeps_tkfac_traces() {
    // Arbitrary coefficients, not summing to 1 (AdaFisher-like), on raw numerators.
    let mut avg = MovingAverage::new(0.95);
    for k in 0..6 {
        let c = random_capture(150 + k, 4, 1 + (k as usize % 3), 3, 2, 1 + (k as usize % 2));
        avg.blend(0.92, 0.3, KroneckerFactors::from_capture(true, &c).unwrap());
        let f = avg.value().unwrap();
        check(
            &format!("[15] blend step {k}: tr δΦ = δ"),
            rel_err_scalar(trace(&f.a_factor), f.trace_scale),
            EXACT,
        );
        check(
            &format!("[15] blend step {k}: tr δΨ = δ"),
            rel_err_scalar(trace(&f.g_factor), f.trace_scale),
            EXACT,
        );
    }
    // And through a block's convex EMA.
    let mut block = CurvatureBlock::new(Variant::Tekfac, &info(2, 3, true), 0.7);
    for k in 0..4 {
        block
            .observe(&random_capture(160 + k, 3, 2, 3, 2, 1))
            .unwrap();
    }
    let f = block.factors().unwrap();
    check(
        "[15] block EMA: tr δΦ = tr δΨ = δ",
        rel_err_scalar(trace(&f.a_factor), f.trace_scale)
            .max(rel_err_scalar(trace(&f.g_factor), f.trace_scale)),
        EXACT,
    );
}

#[test]
fn identity_18_scale_bookkeeping() {
    let (n, t, d_in, d_out) = (3, 4, 3, 2);
    let c = random_capture(18, n, t, d_in, d_out, 2);
    let a = tekfac::curvature::matrix_from_tensor(&c.a, "test").unwrap();
    let g: Vec<DMatrix<f64>> =
        c.g.iter()
            .map(|g| tekfac::curvature::matrix_from_tensor(g, "test").unwrap())
            .collect();
    let k = KroneckerFactors::from_capture(false, &c).unwrap();
    // Full path (GEMM) vs. an explicit per-example loop: A = (1/N) Σ_n Σ_t ā āᵀ, no 1/T, no 1/P.
    let mut a_loop = DMatrix::zeros(d_in + 1, d_in + 1);
    let mut g_loop = DMatrix::zeros(d_out, d_out);
    for r in 0..n * t {
        a_loop += a.row(r).transpose() * a.row(r) / n as f64;
        for gs in &g {
            g_loop += gs.row(r).transpose() * gs.row(r) / (n * t) as f64;
        }
    }
    check(
        "[18] A (GEMM) = (1/N) Σ_{n,t} ā āᵀ (loop)",
        rel_err(&k.a_factor, &a_loop),
        EXACT,
    );
    check(
        "[18] G (GEMM) = (1/NT) Σ_{n,t,s} g gᵀ (loop)",
        rel_err(&k.g_factor, &g_loop),
        EXACT,
    );
    // Diagonal path: diag(A) = (1/N) Σ_r ā_r^∘2, the path TKFAC's row norms use.
    let diag_path = a.component_mul(&a).row_sum().transpose() / n as f64;
    check(
        "[18] diag(A) full path = diagonal path",
        (k.a_factor.diagonal() - diag_path).norm() / k.a_factor.norm(),
        EXACT,
    );
    // TKFAC: δ = (1/N) Σ_r ‖ā_r‖² Σ_s ‖g_{s,r}‖² = tr δΦ = tr δΨ.
    let tk = KroneckerFactors::from_capture(true, &c).unwrap();
    let delta: f64 = (0..n * t)
        .map(|r| a.row(r).norm_squared() * g.iter().map(|gs| gs.row(r).norm_squared()).sum::<f64>())
        .sum::<f64>()
        / n as f64;
    check(
        "[18] δ = (1/N) Σ_r ‖ā‖²‖g‖²",
        rel_err_scalar(tk.trace_scale, delta),
        EXACT,
    );
    // Scale pins: doubling every location doubles A, δ, δΦ, δΨ and leaves G; doubling the
    // examples changes nothing.
    let twice_t = capture(
        &stack_per_example(&a, n, t),
        &g.iter()
            .map(|x| stack_per_example(x, n, t))
            .collect::<Vec<_>>(),
        2 * t,
    );
    let twice_n = capture(&stack(&a), &g.iter().map(stack).collect::<Vec<_>>(), t);
    let (k2t, tk2t) = (
        KroneckerFactors::from_capture(false, &twice_t).unwrap(),
        KroneckerFactors::from_capture(true, &twice_t).unwrap(),
    );
    check(
        "[18] T → 2T doubles A",
        rel_err(&k2t.a_factor, &(&k.a_factor * 2.0)),
        EXACT,
    );
    check(
        "[18] T → 2T keeps G",
        rel_err(&k2t.g_factor, &k.g_factor),
        EXACT,
    );
    check(
        "[18] T → 2T doubles δ",
        rel_err_scalar(tk2t.trace_scale, 2.0 * tk.trace_scale),
        EXACT,
    );
    check(
        "[18] T → 2T doubles δΦ",
        rel_err(&tk2t.a_factor, &(&tk.a_factor * 2.0)),
        EXACT,
    );
    check(
        "[18] T → 2T doubles δΨ",
        rel_err(&tk2t.g_factor, &(&tk.g_factor * 2.0)),
        EXACT,
    );
    let (k2n, tk2n) = (
        KroneckerFactors::from_capture(false, &twice_n).unwrap(),
        KroneckerFactors::from_capture(true, &twice_n).unwrap(),
    );
    check(
        "[18] N → 2N keeps A, G",
        rel_err(&k2n.a_factor, &k.a_factor).max(rel_err(&k2n.g_factor, &k.g_factor)),
        EXACT,
    );
    check(
        "[18] N → 2N keeps δ, δΦ, δΨ",
        rel_err_scalar(tk2n.trace_scale, tk.trace_scale).max(rel_err(&tk2n.a_factor, &tk.a_factor)),
        EXACT,
    );
}

/// Each example's rows repeated twice in a row (T → 2T).
fn stack_per_example(m: &DMatrix<f64>, n: usize, t: usize) -> DMatrix<f64> {
    DMatrix::from_fn(2 * n * t, m.ncols(), |r, c| {
        m[((r / (2 * t)) * t + (r % (2 * t)) % t, c)]
    })
}

/// All rows repeated as a second batch (N → 2N).
fn stack(m: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(2 * m.nrows(), m.ncols(), |r, c| m[(r % m.nrows(), c)])
}
