//! The training hot path of preconditioning: the same rotation as
//! [`CurvatureBlock::precondition`](super::CurvatureBlock::precondition), in f32 through
//! matrixmultiply, on row-major slices straight from the parameter tensors.
//!
//! ```text
//! U = Q_G [ (Q_Gᵀ ∇W̄ Q_A) ⊘ damped(D) ] Q_Aᵀ        four GEMMs, f32; state stays f64
//! ```
//!
//! The eigenvectors are copied to f32 once per eigenbasis refresh. Tests pin this path to the
//! f64 one (relative error ≈ 1e-6).

use super::basis::KroneckerBasis;
use crate::kernels::gemm::{MatRef, gemm_into};

/// Row-major f32 copies of a basis's eigenvectors.
#[derive(Clone, Debug, PartialEq)]
pub struct FastBasis {
    q_a: Vec<f32>,
    q_g: Vec<f32>,
    d_out: usize,
    d_in: usize,
}

impl FastBasis {
    /// Copies `basis`'s `Q_A` and `Q_G` to row-major f32.
    pub fn new(basis: &KroneckerBasis) -> Self {
        let (d_out, d_in) = basis.dims();
        let rows = |m: &nalgebra::DMatrix<f64>| -> Vec<f32> {
            m.transpose().iter().map(|&x| x as f32).collect()
        };
        FastBasis {
            q_a: rows(&basis.q_a),
            q_g: rows(&basis.q_g),
            d_out,
            d_in,
        }
    }

    /// `(d_out, d_in')`.
    pub fn dims(&self) -> (usize, usize) {
        (self.d_out, self.d_in)
    }

    /// `Q_G [(Q_Gᵀ grad Q_A) ⊘ damped] Q_Aᵀ` for row-major `[d_out, d_in']` slices.
    ///
    /// # Panics
    /// When `grad` or `damped` is not `d_out·d_in'` long (the caller checks shapes).
    pub fn precondition(&self, grad: &[f32], damped: &[f32]) -> Vec<f32> {
        let (o, i) = (self.d_out, self.d_in);
        assert!(
            grad.len() == o * i && damped.len() == o * i,
            "FastBasis::precondition: shapes are checked by the caller"
        );
        let q_g = |t| MatRef::new(&self.q_g, o, o, t);
        let q_a = |t| MatRef::new(&self.q_a, i, i, t);
        let mut tmp = vec![0f32; o * i];
        let mut x = vec![0f32; o * i];
        gemm_into(
            1.0,
            q_g(true),
            MatRef::new(grad, o, i, false),
            0.0,
            &mut tmp,
        );
        gemm_into(1.0, MatRef::new(&tmp, o, i, false), q_a(false), 0.0, &mut x);
        x.iter_mut().zip(damped).for_each(|(x, d)| *x /= d);
        gemm_into(1.0, q_g(false), MatRef::new(&x, o, i, false), 0.0, &mut tmp);
        gemm_into(1.0, MatRef::new(&tmp, o, i, false), q_a(true), 0.0, &mut x);
        x
    }
}
