//! The eigenvalue correction: squared per-example gradients in the Kronecker eigenbasis
//! (EKFAC's `s*`, spec §4.1; TEKFAC's `Θ`, spec §6.2 Eq. 3.2). The second place where the
//! variants differ, together with [`CurvatureBlock::eigenvalues`](super::CurvatureBlock::eigenvalues).
//!
//! ```text
//! batch = (1/N) Σ_n Σ_s (Q_Gᵀ DW_{n,s} Q_A)^∘2          [d_out, d_in']
//! ```
//!
//! By Lemma 1 of EKFAC (Appendix A.1) this is `diag(Qᵀ F Q)` for `Q = Q_G ⊗ Q_A`, the diagonal
//! that minimises `‖F − Q D Qᵀ‖_F` in that basis (identities 6, 7), and `Σ batch = tr F`
//! because `Q` is orthogonal (identity 5). Sweeps are squared one by one, then summed (spec §2).
//!
//! Both paths rotate the rows once, `â = ā Q_A` and `ĝ_s = g_s Q_G`, since
//! `Q_Gᵀ DW_{n,s} Q_A = ĝ_{s,n}ᵀ â_n`:
//!
//! * dense (`T = 1`), rank one per example: `batch = (1/N) Σ_s (ĝ_s^∘2)ᵀ (â^∘2)`, one GEMM per
//!   sweep (Thrandis/baolgr `(s_kfe.T**2) @ (h_kfe**2) / N`);
//! * conv (`T > 1`): the per-example `ĝ_{s,n}ᵀ â_n` (a `[d_out, T]·[T, d_in']` GEMM) must be
//!   formed before squaring, because `Θ` keeps the cross-location terms (spec §1.6).

use super::basis::KroneckerBasis;
use super::rows::CaptureRows;
use nalgebra::DMatrix;

/// `(1/N) Σ_n Σ_s (Q_Gᵀ DW_{n,s} Q_A)^∘2` for one capture in `basis`, `[d_out, d_in']`.
///
/// # Panics
/// When the capture's `[d_out, d_in']` differs from the basis (callers check first).
pub fn corrected_batch(basis: &KroneckerBasis, rows: &CaptureRows) -> DMatrix<f64> {
    assert_eq!(
        basis.dims(),
        (rows.d_out(), rows.d_in_bar()),
        "corrected_batch: capture and basis dims differ"
    );
    let a_hat = &rows.a * &basis.q_a;
    let g_hat: Vec<DMatrix<f64>> = rows.g.iter().map(|g| g * &basis.q_g).collect();
    let sum = if rows.locations == 1 {
        rank_one_sum(&a_hat, &g_hat)
    } else {
        per_example_sum(&a_hat, &g_hat, rows)
    };
    sum / rows.examples as f64
}

/// `Σ_s (ĝ_s^∘2)ᵀ (â^∘2)`: the dense-layer path, `DW_{n,s} = g ā ᵀ` being rank one.
fn rank_one_sum(a_hat: &DMatrix<f64>, g_hat: &[DMatrix<f64>]) -> DMatrix<f64> {
    let a_sq = a_hat.component_mul(a_hat);
    let mut sum = DMatrix::zeros(g_hat[0].ncols(), a_hat.ncols());
    for g in g_hat {
        let g_sq_t = g.component_mul(g).transpose();
        sum.gemm(1.0, &g_sq_t, &a_sq, 1.0);
    }
    sum
}

/// `Σ_n Σ_s (ĝ_{s,n}ᵀ â_n)^∘2`: the conv path, per-example gradients with cross-location terms.
fn per_example_sum(
    a_hat: &DMatrix<f64>,
    g_hat: &[DMatrix<f64>],
    rows: &CaptureRows,
) -> DMatrix<f64> {
    let t = rows.locations;
    let mut sum = DMatrix::zeros(g_hat[0].ncols(), a_hat.ncols());
    let mut dw = sum.clone();
    for n in 0..rows.examples {
        let a_n = a_hat.rows(n * t, t);
        for g in g_hat {
            let g_n_t = g.rows(n * t, t).transpose();
            dw.gemm(1.0, &g_n_t, &a_n, 0.0);
            sum.zip_apply(&dw, |s, x| *s += x * x);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rank-one shortcut and the per-example path agree on a dense capture.
    #[test]
    fn dense_shortcut_equals_per_example_path() {
        let a = DMatrix::from_fn(5, 3, |r, c| ((r * 7 + c * 3) % 5) as f64 - 1.7);
        let g = vec![
            DMatrix::from_fn(5, 2, |r, c| ((r * 2 + c * 5) % 7) as f64 * 0.3 - 0.8),
            DMatrix::from_fn(5, 2, |r, c| (r as f64 - c as f64) * 0.25),
        ];
        let rows = CaptureRows {
            a,
            g,
            examples: 5,
            locations: 1,
        };
        let a_hat = rows.a.clone();
        let fast = rank_one_sum(&a_hat, &rows.g);
        let slow = per_example_sum(&a_hat, &rows.g, &rows);
        assert!((fast - slow).norm() < 1e-12);
    }
}
