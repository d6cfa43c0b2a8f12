//! `KroneckerBasis`: eigenvectors and eigenvalues of the two factors, and rotations into and out
//! of the Kronecker eigenbasis `Q = Q_G ⊗ Q_A` (row-major vec order).
//!
//! With `a_factor = Q_A diag(d_a) Q_Aᵀ` and `g_factor = Q_G diag(d_g) Q_Gᵀ` (nalgebra
//! `SymmetricEigen`, f64, spec §1.9), `(Q_G ⊗ Q_A) vec(X) = vec(Q_G X Q_Aᵀ)`, so
//!
//! ```text
//! rotate_in(M)  = Q_Gᵀ M Q_A      = unvec(Qᵀ vec M)       [d_out, d_in']
//! rotate_out(X) = Q_G X Q_Aᵀ      = unvec(Q  vec X)
//! dense(D)      = Q diag(vec D) Qᵀ                          [d_out·d_in']²
//! ```
//!
//! and `dense(d_g d_aᵀ) = G ⊗ A`, K-FAC itself (spec §4.1, identity 9). For TKFAC the factors are
//! the raw numerators `δΦ, δΨ`: dividing by `δ` does not move eigenvectors (spec §6.1).
//!
//! Eigenvalues are clamped at 0 (rounding makes PSD factors slightly indefinite). A factor with
//! a NaN or ±Inf is refused ([`BasisFailure::NonFinite`]) before the eigensolver sees it, so the
//! caller can keep its previous basis.

use super::deflate::Deflation;
use super::factors::KroneckerFactors;
use nalgebra::{DMatrix, DVector, SymmetricEigen};
use std::fmt;

/// Upper bound on eigensolver iterations (it converges in far fewer for finite input).
const MAX_EIGEN_ITERATIONS: usize = 100_000;

/// Why no basis could be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasisFailure {
    /// A factor contains NaN or ±Inf.
    NonFinite,
    /// The symmetric eigensolver did not converge.
    NoConvergence,
}

impl fmt::Display for BasisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BasisFailure::NonFinite => f.write_str("non-finite curvature factor"),
            BasisFailure::NoConvergence => {
                f.write_str("symmetric eigensolver did not converge to finite values")
            }
        }
    }
}

/// Eigendecompositions of both Kronecker factors of a block.
#[derive(Clone, Debug, PartialEq)]
pub struct KroneckerBasis {
    /// Eigenvectors of the input factor (`A` or `δΦ`), `[d_in', d_in']`, orthogonal.
    pub q_a: DMatrix<f64>,
    /// Eigenvalues of the input factor, clamped `≥ 0`, length `d_in'`.
    pub d_a: DVector<f64>,
    /// Eigenvectors of the output factor (`G` or `δΨ`), `[d_out, d_out]`, orthogonal.
    pub q_g: DMatrix<f64>,
    /// Eigenvalues of the output factor, clamped `≥ 0`, length `d_out`.
    pub d_g: DVector<f64>,
}

impl KroneckerBasis {
    /// Decomposes both factors (concurrently, on the rayon pool); `Err` for non-finite input or
    /// a failed eigensolver.
    pub fn new(a_factor: &DMatrix<f64>, g_factor: &DMatrix<f64>) -> Result<Self, BasisFailure> {
        let (a, g) = rayon::join(|| eigh(a_factor), || eigh(g_factor));
        let ((q_a, d_a), (q_g, d_g)) = (a?, g?);
        Ok(KroneckerBasis { q_a, d_a, q_g, d_g })
    }

    /// The basis of a block's factors.
    pub fn from_factors(factors: &KroneckerFactors) -> Result<Self, BasisFailure> {
        if !factors.is_finite() {
            return Err(BasisFailure::NonFinite);
        }
        Self::new(&factors.a_factor, &factors.g_factor)
    }

    /// `(d_out, d_in')`.
    pub fn dims(&self) -> (usize, usize) {
        (self.q_g.nrows(), self.q_a.nrows())
    }

    /// `Q_Gᵀ M Q_A`: a `[d_out, d_in']` matrix in eigenbasis coordinates.
    pub fn rotate_in(&self, m: &DMatrix<f64>) -> DMatrix<f64> {
        self.q_g.transpose() * m * &self.q_a
    }

    /// `Q_G X Q_Aᵀ`: back from eigenbasis coordinates.
    pub fn rotate_out(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        &self.q_g * x * self.q_a.transpose()
    }

    /// `d_g d_aᵀ / trace_scale`, `[d_out, d_in']`: the diagonal of `F̂` in this basis (K-FAC with
    /// `trace_scale = 1`; TKFAC's `e_Ψ e_Φᵀ/δ = δ·ψφᵀ`). Zero when `trace_scale ≤ 0`.
    pub fn eigenvalue_products(&self, trace_scale: f64) -> DMatrix<f64> {
        let outer = &self.d_g * self.d_a.transpose();
        if trace_scale > 0.0 {
            outer / trace_scale
        } else {
            outer * 0.0
        }
    }

    /// `Q = Q_G ⊗ Q_A`, `[d_out·d_in']²`, orthogonal (tests only).
    pub fn kron_q(&self) -> DMatrix<f64> {
        self.q_g.kronecker(&self.q_a)
    }

    /// `Q diag(vec D) Qᵀ` for a `[d_out, d_in']` diagonal `D` (tests and `to_dense` only).
    pub fn dense(&self, diagonal: &DMatrix<f64>) -> DMatrix<f64> {
        let q = self.kron_q();
        let d = super::exact::vec_rows(diagonal);
        let mut qd = q.clone();
        for (mut column, x) in qd.column_iter_mut().zip(d.iter()) {
            column *= *x;
        }
        qd * q.transpose()
    }
}

/// Eigenvectors (columns) and clamped eigenvalues of a symmetric matrix: the exact path of every
/// refresh (and of the warm-started one, `warm.rs`, when it falls back).
///
/// Rows and columns that are exactly zero (pixels that are black in every image of the batch:
/// MNIST's border in `A` and `δΦ`) are eigenvectors `e_i` with eigenvalue 0; they are split
/// off (`deflate.rs`) and the solver sees only the rest. NOTE: nalgebra's `SymmetricEigen` can
/// return NaN eigenvectors for a matrix with many zero rows (nalgebra issue #379; seen on the
/// TKFAC `δΦ` of the MLP preset's fc1 on an MNIST batch, 268 zero rows of 785), and the smaller
/// problem is also faster. A non-finite result is refused rather than handed on.
pub(super) fn eigh(m: &DMatrix<f64>) -> Result<(DMatrix<f64>, DVector<f64>), BasisFailure> {
    if m.iter().any(|x| !x.is_finite()) {
        return Err(BasisFailure::NonFinite);
    }
    // NOTE: symmetrise so the solver's choice of triangle cannot matter.
    let sym = (m + m.transpose()) * 0.5;
    let deflation = Deflation::of(&sym);
    if deflation.is_trivial() {
        return eigh_dense(sym);
    }
    if deflation.live.is_empty() {
        return Ok(deflation.embed(&DMatrix::zeros(0, 0), &DVector::zeros(0)));
    }
    let (v, lambda) = eigh_dense(deflation.restrict(&sym))?;
    Ok(deflation.embed(&v, &lambda))
}

/// nalgebra's `SymmetricEigen` of a symmetric matrix without zero rows; eigenvalues clamped `≥ 0`.
fn eigh_dense(sym: DMatrix<f64>) -> Result<(DMatrix<f64>, DVector<f64>), BasisFailure> {
    let eig = SymmetricEigen::try_new(sym, f64::EPSILON, MAX_EIGEN_ITERATIONS)
        .ok_or(BasisFailure::NoConvergence)?;
    let finite = |x: &f64| x.is_finite();
    if !(eig.eigenvectors.iter().all(finite) && eig.eigenvalues.iter().all(finite)) {
        return Err(BasisFailure::NoConvergence);
    }
    Ok((eig.eigenvectors, eig.eigenvalues.map(|x| x.max(0.0))))
}
