//! Identities 1–5 of spec §7 (traces, partial traces, orthogonality), one named test each.
//! f64, synthetic captures, decay 0, refresh every step; numbering follows the spec.
//! Identities 16 and 17 (per-example gradients vs. the tape, Monte Carlo convergence) need real
//! layers and live elsewhere.

mod curvature_common;

use curvature_common::*;
use nalgebra::DMatrix;
use tekfac::LayerCapture;
use tekfac::curvature::Variant;
use tekfac::curvature::exact::{exact_fisher, kron_rows, partial_traces, per_example_gradients};

#[test]
fn identity_01_tkfac_traces() {
    for (name, c) in dense_captures() {
        let block = fitted(Variant::Tkfac, &c);
        let f = block.factors().unwrap();
        let delta = f.trace_scale;
        check(
            &format!("[1] {name}: tr Φ = 1"),
            (trace(&f.a_factor) / delta - 1.0).abs(),
            EXACT,
        );
        check(
            &format!("[1] {name}: tr Ψ = 1"),
            (trace(&f.g_factor) / delta - 1.0).abs(),
            EXACT,
        );
        let tr_f = trace(&exact_fisher(&c).unwrap());
        check(
            &format!("[1] {name}: δ = tr F"),
            rel_err_scalar(delta, tr_f),
            EXACT,
        );
        check(
            &format!("[1] {name}: tr(δΦ⊗Ψ) = tr F"),
            rel_err_scalar(trace(&block.to_dense().unwrap()), tr_f),
            EXACT,
        );
        // δ = E[‖ā‖²‖g‖²] straight from the rows (dense: one row per example).
        let mut by_rows = 0.0;
        for r in 0..c.examples() {
            let a2: f64 = c.a.data()[r * c.a.dims()[1]..(r + 1) * c.a.dims()[1]]
                .iter()
                .map(|x| x * x)
                .sum();
            let g2: f64 =
                c.g.iter()
                    .map(|g| {
                        g.data()[r * g.dims()[1]..(r + 1) * g.dims()[1]]
                            .iter()
                            .map(|x| x * x)
                            .sum::<f64>()
                    })
                    .sum();
            by_rows += a2 * g2 / c.examples() as f64;
        }
        check(
            &format!("[1] {name}: δ = E[‖ā‖²‖g‖²]"),
            rel_err_scalar(delta, by_rows),
            EXACT,
        );
    }
}

#[test]
fn identity_02_kfac_does_not_preserve_the_trace() {
    for (name, c) in dense_captures() {
        let block = fitted(Variant::Kfac, &c);
        let f = block.factors().unwrap();
        let tr_kfac = trace(&f.a_factor) * trace(&f.g_factor);
        check(
            &format!("[2] {name}: tr(K-FAC block) = tr A·tr G"),
            rel_err_scalar(trace(&block.to_dense().unwrap()), tr_kfac),
            EXACT,
        );
        let gap = rel_err_scalar(tr_kfac, trace_of_exact(&c));
        eprintln!("[2] {name}: |tr A tr G − tr F| / tr F = {gap:.3}");
        assert!(
            gap > GAP,
            "negative control: K-FAC happened to preserve the trace ({gap:e})"
        );
    }
}

#[test]
fn identity_03_partial_trace_form_dense() {
    for (name, c) in dense_captures() {
        let block = fitted(Variant::Tkfac, &c);
        let f = exact_fisher(&c).unwrap();
        let (d_out, d_in_bar) = block.dims();
        let (over_out, over_in) = partial_traces(&f, d_out, d_in_bar);
        let expected = kron_rows(&over_in, &over_out) / trace(&f);
        check(
            &format!("[3] {name}: δΦ⊗Ψ = Tr_in(F)⊗Tr_out(F)/tr F"),
            rel_err(&block.to_dense().unwrap(), &expected),
            EXACT,
        );
        let dw = per_example_gradients(&c).unwrap();
        let n = c.examples() as f64;
        let dtd = dw.iter().map(|m| m.transpose() * m).sum::<DMatrix<f64>>() / n;
        let ddt = dw.iter().map(|m| m * m.transpose()).sum::<DMatrix<f64>>() / n;
        let fac = block.factors().unwrap();
        check(
            &format!("[3] {name}: δΦ = E[DWᵀDW]"),
            rel_err(&fac.a_factor, &dtd),
            EXACT,
        );
        check(
            &format!("[3] {name}: δΨ = E[DW DWᵀ]"),
            rel_err(&fac.g_factor, &ddt),
            EXACT,
        );
    }
}

/// The same capture with every location as its own example (rows_per_example = 1).
fn pooled(c: &LayerCapture<f64>) -> LayerCapture<f64> {
    LayerCapture {
        rows_per_example: 1,
        ..c.clone()
    }
}

#[test]
fn identity_03_partial_trace_form_conv() {
    for (name, c) in captures()
        .into_iter()
        .filter(|(_, c)| c.rows_per_example > 1)
    {
        let t = c.rows_per_example as f64;
        let f = exact_fisher(&c).unwrap();
        let block = fitted(Variant::Tkfac, &c);
        let (d_out, d_in_bar) = block.dims();
        // (a) Exact F, cross-location terms included: Tr_out(F) = E[DWᵀDW], Tr_in(F) = E[DW DWᵀ].
        let (over_out, over_in) = partial_traces(&f, d_out, d_in_bar);
        let dw = per_example_gradients(&c).unwrap();
        let n = c.examples() as f64;
        let dtd = dw.iter().map(|m| m.transpose() * m).sum::<DMatrix<f64>>() / n;
        let ddt = dw.iter().map(|m| m * m.transpose()).sum::<DMatrix<f64>>() / n;
        check(
            &format!("[3] {name}: Tr_out(F) = E[DWᵀDW]"),
            rel_err(&over_out, &dtd),
            EXACT,
        );
        check(
            &format!("[3] {name}: Tr_in(F) = E[DW DWᵀ]"),
            rel_err(&over_in, &ddt),
            EXACT,
        );
        // (b) The block's conv factors are the partial-trace form of the spatially uncorrelated
        // Fisher F_SU = E_n Σ_t (location terms) = T·F(pooled rows), spec §5.2.
        let f_su = exact_fisher(&pooled(&c)).unwrap() * t;
        let (su_out, su_in) = partial_traces(&f_su, d_out, d_in_bar);
        let expected = kron_rows(&su_in, &su_out) / trace(&f_su);
        check(
            &format!("[3] {name}: conv TKFAC = partial-trace form of F_SU"),
            rel_err(&block.to_dense().unwrap(), &expected),
            EXACT,
        );
        let fac = block.factors().unwrap();
        check(
            &format!("[3] {name}: conv δ = tr F_SU"),
            rel_err_scalar(fac.trace_scale, trace(&f_su)),
            EXACT,
        );
        // Negative control: with cross-location terms, the exact partial traces differ.
        let gap = rel_err(&fac.a_factor, &dtd);
        eprintln!(
            "[3] {name}: ‖δΦ − E[DWᵀDW]‖ / ‖δΦ‖ = {gap:.3} (spatially uncorrelated assumption)"
        );
        assert!(
            gap > GAP,
            "conv factors should not see cross-location terms"
        );
    }
    // (c) When one location per example carries g, the assumption holds and δΦ = E[DWᵀDW] exactly.
    let c = random_capture(5, 4, 3, 3, 2, 1);
    let mut g = c.g[0].clone();
    for (r, row) in g.data_mut().chunks_mut(2).enumerate() {
        if r % 3 != 1 {
            row.iter_mut().for_each(|x| *x = 0.0);
        }
    }
    let c = LayerCapture { g: vec![g], ..c };
    let block = fitted(Variant::Tkfac, &c);
    let f = exact_fisher(&c).unwrap();
    let (over_out, over_in) = partial_traces(&f, 2, 4);
    let expected = kron_rows(&over_in, &over_out) / trace(&f);
    check(
        "[3] conv, one active location: TKFAC = partial-trace form of F",
        rel_err(&block.to_dense().unwrap(), &expected),
        EXACT,
    );
}

#[test]
fn identity_04_orthogonality() {
    for (name, c) in captures() {
        for v in Variant::ALL {
            let block = fitted(v, &c);
            let b = block.basis().unwrap();
            let (d_out, d_in_bar) = block.dims();
            check(
                &format!("[4] {name} {v}: Q_AᵀQ_A = I"),
                (b.q_a.transpose() * &b.q_a - eye(d_in_bar)).norm(),
                EXACT,
            );
            check(
                &format!("[4] {name} {v}: Q_GᵀQ_G = I"),
                (b.q_g.transpose() * &b.q_g - eye(d_out)).norm(),
                EXACT,
            );
            let q = b.kron_q();
            check(
                &format!("[4] {name} {v}: (Q_G⊗Q_A)ᵀ(Q_G⊗Q_A) = I"),
                (q.transpose() * &q - eye(d_out * d_in_bar)).norm(),
                EXACT,
            );
            assert!(
                b.d_a.iter().chain(b.d_g.iter()).all(|x| *x >= 0.0),
                "eigenvalues are clamped at 0"
            );
            let f = block.factors().unwrap();
            let rebuilt = &b.q_a * DMatrix::from_diagonal(&b.d_a) * b.q_a.transpose();
            check(
                &format!("[4] {name} {v}: Q_A diag(d_a) Q_Aᵀ = a_factor"),
                rel_err(&rebuilt, &f.a_factor),
                EXACT,
            );
        }
    }
}

#[test]
fn identity_05_corrected_diagonal_preserves_the_trace() {
    for (name, c) in captures() {
        let tr_f = trace(&exact_fisher(&c).unwrap());
        for v in [Variant::Ekfac, Variant::Tekfac] {
            let sum = fitted(v, &c).eigenvalues().unwrap().sum();
            check(
                &format!("[5] {name} {v}: Σ diag = tr F"),
                rel_err_scalar(sum, tr_f),
                EXACT,
            );
        }
    }
}
