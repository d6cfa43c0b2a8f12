//! Identities 16 and 18 of spec §7, what one capture holds and at what scale: the mean
//! per-example gradient is the tape's gradient (16, which pins the patch layout and the batch
//! scaling), and every factor is normalised by 1/N only, whether computed by a GEMM, a loop over
//! rows or a diagonal path (18: no 1/T, no 1/P; doubling the locations doubles A, doubling the
//! examples changes nothing).
//!
//! Every identity runs on three kinds of capture where it applies: synthetic rows
//! (`support::curvature::captures`: dense and conv-shaped, 1–3 sweeps, correlated ‖ā‖² and ‖g‖²),
//! and the rows REAL layers hand out in their backward pass (`support::nets::real_cases`: a dense
//! net and a strided, padded conv net, empirical and exact Fisher), so the ones column, the
//! per-example scaling by B and the im2col patch layout are part of what is tested. Blocks are
//! fitted with decay 0 and a refresh after the observation, so each identity is exact for the
//! batch at hand, and compared with `exact_fisher` of the same capture. Tests without a suffix
//! run on synthetic rows, `…_real_layers` on real ones.
//!
//! Conv layers follow spec §1.6: the factors (and δ) assume spatially uncorrelated derivatives,
//! s*/Θ use per-example gradients with cross-location terms. Where an identity only holds under
//! that assumption, the conv test checks the assumption's version and shows the gap to the exact
//! one (an explicit negative control).

mod support;

use nalgebra::DMatrix;
use support::curvature::*;
use support::layers::patches_by_hand;
use support::nets::{
    capture_of, conv_net, conv_net_no_bias, conv_one_location_net, dense_net, fit, grad_block,
};
use tekfac::curvature::exact::per_example_gradients;
use tekfac::curvature::{Damping, KroneckerFactors, Variant};
use tekfac::optim::DampingPolicy;
use tekfac::{FisherType, LayerKind, Tensor};

// ---------------------------------------------------------------------------------------------
// Identity 16
// ---------------------------------------------------------------------------------------------

#[test]
fn identity_16_mean_per_example_gradient_is_the_tape_gradient_real_layers() {
    let nets = [
        ("dense net", dense_net(16), 5),
        ("conv net", conv_net(17), 3),
        ("conv net", conv_net(18), 1),
        ("conv net, 1 location", conv_one_location_net(19), 4),
    ];
    for (label, net, n) in &nets {
        let out = net.pass(&net.input(*n, 20), FisherType::Empirical);
        for info in net.ps.layers() {
            let c = capture_of(&out, net, &info.name);
            let dw = per_example_gradients(c).unwrap();
            assert_eq!(dw.len(), *n, "one DW per example (one sweep)");
            let mean = dw.iter().sum::<DMatrix<f64>>() / *n as f64;
            check(
                &format!("[16] {label} {} N={n}: mean DW_n = ∂L/∂W̄", info.name),
                rel_err(&mean, &grad_block(&out.grads, info, &net.ps)),
                EXACT,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identity 18
// ---------------------------------------------------------------------------------------------

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

/// The batch `x` twice over (N → 2N).
fn doubled(x: &Tensor<f64>) -> Tensor<f64> {
    let mut dims = x.dims().to_vec();
    dims[0] *= 2;
    Tensor::from_vec([x.data(), x.data()].concat(), &dims).unwrap()
}

/// Identity 18 (KFC §3.3 normalisation, spec §7.18 / baolgr plan_lot4 §0.2): the conv input
/// factor from a by-hand loop and diagonal path matches the full path, scaled by 1/N only.
#[test]
fn identity_18_scale_bookkeeping_real_conv() {
    let nets = [
        ("conv net", conv_net(181), 3),
        ("bias-free conv net", conv_net_no_bias(182), 3),
        ("conv net, 1 location", conv_one_location_net(183), 4),
    ];
    for (label, net, n) in &nets {
        let x = net.input(*n, 184);
        for fisher in [FisherType::Empirical, FisherType::Exact] {
            let out = net.pass(&x, fisher);
            for info in net.ps.layers() {
                let name = format!("{label} {} {fisher:?} N={n}", info.name);
                let c = capture_of(&out, net, &info.name);
                let rows = rows_of(c);
                let (nf, t) = (*n as f64, rows.locations);
                let conv = matches!(info.kind, LayerKind::Conv2d { .. });
                let k = fit(Variant::Kfac, info, c).factors().unwrap().clone();
                let tk = fit(Variant::Tkfac, info, c).factors().unwrap().clone();
                // The ones column: A's bias entry is (1/N) Σ_{n,t} 1 = T (1 for dense); a
                // normalisation by N·T (Thrandis) would give 1, by N·T·P (AdaFisher's diagonal
                // conv path) 1/P.
                if info.bias.is_some() {
                    check(
                        &format!("[18] {name}: A[bias, bias] = T = {t}"),
                        (k.a_factor[(info.d_in, info.d_in)] - t as f64).abs(),
                        EXACT,
                    );
                }
                if conv {
                    // The rows are the im2col patches of the input, computed independently.
                    let patches = patches_by_hand(&x, info);
                    assert_eq!(t, c.rows_per_example);
                    assert_eq!(patches.nrows(), n * t, "N·T rows");
                    check(
                        &format!("[18] {name}: capture rows = by-hand im2col patches"),
                        (&rows.a - &patches).abs().max(),
                        EXACT,
                    );
                    // tr A = (1/N) Σ_n ‖unfold(x_n)‖²: no 1/T, no 1/P.
                    check(
                        &format!("[18] {name}: tr A = (1/N) Σ_n ‖unfold(x_n)‖²"),
                        rel_err_scalar(k.a_factor.trace(), patches.norm_squared() / nf),
                        EXACT,
                    );
                }
                // Full path (the block, one GEMM) vs explicit loops over rows (n, t) and sweeps.
                let (d_in_bar, d_out) = (rows.d_in_bar(), rows.d_out());
                let mut a_loop = DMatrix::zeros(d_in_bar, d_in_bar);
                let mut g_loop = DMatrix::zeros(d_out, d_out);
                let mut phi_loop = DMatrix::zeros(d_in_bar, d_in_bar);
                let mut psi_loop = DMatrix::zeros(d_out, d_out);
                let mut delta_loop = 0.0;
                for r in 0..n * t {
                    let a = rows.a.row(r).transpose();
                    a_loop += &a * a.transpose() / nf;
                    for g in &rows.g {
                        let g = g.row(r).transpose();
                        g_loop += &g * g.transpose() / (nf * t as f64);
                        phi_loop += &a * a.transpose() * g.norm_squared() / nf;
                        psi_loop += &g * g.transpose() * a.norm_squared() / nf;
                        delta_loop += a.norm_squared() * g.norm_squared() / nf;
                    }
                }
                for (what, got, want) in [
                    ("A = (1/N) Σ_{n,t} ā āᵀ", &k.a_factor, &a_loop),
                    ("G = (1/NT) Σ_{n,t,s} g gᵀ", &k.g_factor, &g_loop),
                    ("δΦ = (1/N) Σ ‖g‖² ā āᵀ", &tk.a_factor, &phi_loop),
                    ("δΨ = (1/N) Σ ‖ā‖² g gᵀ", &tk.g_factor, &psi_loop),
                ] {
                    assert!(want.norm() > 0.0, "[18] {name}: {what} is zero");
                    check(
                        &format!("[18] {name}: {what} (loop)"),
                        rel_err(got, want),
                        EXACT,
                    );
                }
                check(
                    &format!("[18] {name}: δ = (1/N) Σ ‖ā‖²‖g‖² (loop)"),
                    rel_err_scalar(tk.trace_scale, delta_loop),
                    EXACT,
                );
                // Diagonal path: diag(A) = (1/N) Σ_r ā_r^∘2, diag(δΦ) = (1/N) Σ_r ‖g_r‖² ā_r^∘2.
                let g_norms = rows
                    .g
                    .iter()
                    .map(|g| g.component_mul(g).column_sum())
                    .reduce(|x, y| x + y)
                    .unwrap();
                let a_sq = rows.a.component_mul(&rows.a);
                let diag_a = a_sq.row_sum().transpose() / nf;
                let diag_phi = (a_sq.transpose() * &g_norms) / nf;
                check(
                    &format!("[18] {name}: diag(A) full path = diagonal path"),
                    (k.a_factor.diagonal() - diag_a).norm() / k.a_factor.diagonal().norm(),
                    EXACT,
                );
                check(
                    &format!("[18] {name}: diag(δΦ) full path = diagonal path"),
                    (tk.a_factor.diagonal() - diag_phi).norm() / tk.a_factor.diagonal().norm(),
                    EXACT,
                );
                // s*/Θ are per-example (1/N, cross-location terms, no 1/T): ΣΘ = tr F = E‖DW‖²,
                // so TEKFAC's conv damping (Eq. 3.5) is tr F / (d_out·d_in').
                let tekfac = fit(Variant::Tekfac, info, c);
                let dw = per_example_gradients(c).unwrap();
                let e_dw2 = dw.iter().map(|m| m.norm_squared()).sum::<f64>() / nf;
                check(
                    &format!("[18] {name}: ΣΘ = (1/N) Σ_{{n,s}} ‖DW‖²"),
                    rel_err_scalar(tekfac.eigenvalues().unwrap().sum(), e_dw2),
                    EXACT,
                );
                let floor = DampingPolicy::DEFAULT.conv_floor;
                let numel = (d_out * d_in_bar) as f64;
                assert!(e_dw2 > floor, "[18] {name}: the floor would hide the scale");
                check(
                    &format!("[18] {name}: λ(Eq. 3.5) = E‖DW‖² / (d_out·d_in')"),
                    rel_err_scalar(tekfac.trace_adaptive_damping(floor), e_dw2 / numel),
                    EXACT,
                );
                if conv {
                    let blocks = std::slice::from_ref(&tekfac);
                    let d = DampingPolicy::with_lambda(1e-3).per_block(Variant::Tekfac, blocks);
                    match d[..] {
                        [Damping::Additive(l)] => check(
                            &format!("[18] {name}: per_block(conv) = E‖DW‖²/numel"),
                            rel_err_scalar(l, e_dw2 / numel),
                            EXACT,
                        ),
                        _ => panic!("[18] {name}: unexpected damping {d:?}"),
                    }
                }
            }
        }
        // N → 2N (the same examples twice): g is the per-example gradient (× batch size under
        // the mean loss), so every statistic is unchanged.
        let labels = net.labels(2 * n);
        assert_eq!(labels[*n..], net.labels(*n), "the copies keep their labels");
        for fisher in [FisherType::Empirical, FisherType::Exact] {
            let (once, twice) = (net.pass(&x, fisher), net.pass(&doubled(&x), fisher));
            for info in net.ps.layers() {
                let name = format!("{label} {} {fisher:?}", info.name);
                let (c1, c2) = (
                    capture_of(&once, net, &info.name),
                    capture_of(&twice, net, &info.name),
                );
                assert_eq!(c2.examples(), 2 * n);
                let (e, t) = (
                    fit(Variant::Ekfac, info, c1).basis().unwrap().clone(),
                    fit(Variant::Tekfac, info, c1).basis().unwrap().clone(),
                );
                let (s1, s2) = (Stats::of(c1, &e, &t), Stats::of(c2, &e, &t));
                for (what, err) in s2.errors(&s1) {
                    check(&format!("[18] {name}: N → 2N keeps {what}"), err, EXACT);
                }
                assert!(s1.tkfac.trace_scale > 0.0 && s1.theta.sum() > 0.0);
            }
        }
    }
}
