//! The training hot path of preconditioning: the same rotation as
//! [`CurvatureBlock::precondition`](super::CurvatureBlock::precondition), in f32 through
//! matrixmultiply, on row-major slices straight from the parameter tensors.
//!
//! ```text
//! U = Q_G [ (Q_Gᵀ ∇W̄ Q_A) ⊘ damped(D) ] Q_Aᵀ        four GEMMs, f32; state stays f64
//! Q_Gᵀ ∇W̄ Q_A = (g Q_G)ᵀ (ā Q_A)                      when ∇W̄ = gᵀ ā has few rows (dense)
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
        let mut tmp = vec![0f32; o * i];
        let mut x = vec![0f32; o * i];
        gemm_into(
            1.0,
            self.q_g(true),
            MatRef::new(grad, o, i, false),
            0.0,
            &mut tmp,
        );
        gemm_into(
            1.0,
            MatRef::new(&tmp, o, i, false),
            self.q_a(false),
            0.0,
            &mut x,
        );
        self.scale_and_rotate_out(x, tmp, damped)
    }

    /// The same update for a gradient given in its low-rank form `∇W̄ = gᵀ ā` (`g` is
    /// `[rows, d_out]`, `ā` is `[rows, d_in']`, row-major), rotated in as
    /// `Q_Gᵀ ∇W̄ Q_A = (g Q_G)ᵀ (ā Q_A)` — cheaper than two full rotations when
    /// `rows·(d_out² + d_in'² + d_out·d_in') < d_out·d_in'·(d_out + d_in')`
    /// ([`low_rank_pays`](Self::low_rank_pays); a dense layer at batch 128).
    ///
    /// # Panics
    /// When the slices do not match `rows` and the basis (the caller checks shapes).
    pub fn precondition_low_rank(
        &self,
        a: &[f32],
        g: &[f32],
        rows: usize,
        damped: &[f32],
    ) -> Vec<f32> {
        let (o, i) = (self.d_out, self.d_in);
        assert!(
            a.len() == rows * i && g.len() == rows * o && damped.len() == o * i,
            "FastBasis::precondition_low_rank: shapes are checked by the caller"
        );
        let mut gq = vec![0f32; rows * o];
        let mut aq = vec![0f32; rows * i];
        gemm_into(
            1.0,
            MatRef::new(g, rows, o, false),
            self.q_g(false),
            0.0,
            &mut gq,
        );
        gemm_into(
            1.0,
            MatRef::new(a, rows, i, false),
            self.q_a(false),
            0.0,
            &mut aq,
        );
        let mut x = vec![0f32; o * i];
        gemm_into(
            1.0,
            MatRef::new(&gq, rows, o, true),
            MatRef::new(&aq, rows, i, false),
            0.0,
            &mut x,
        );
        self.scale_and_rotate_out(x, vec![0f32; o * i], damped)
    }

    /// `(Q_G diag(1/du) Q_Gᵀ, Q_A diag(1/dv) Q_Aᵀ)`, row-major f32: the inverses of the damped
    /// factors of a factored damping (`du`, `dv` from `Damping::factored`).
    pub fn inverse_factors(&self, du: &[f32], dv: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let inverse = |q: &[f32], n: usize, d: &[f32]| -> Vec<f32> {
            let mut scaled = q.to_vec();
            for row in scaled.chunks_exact_mut(n) {
                row.iter_mut().zip(d).for_each(|(x, d)| *x /= d);
            }
            let mut out = vec![0f32; n * n];
            let (qs, qt) = (
                MatRef::new(&scaled, n, n, false),
                MatRef::new(q, n, n, true),
            );
            gemm_into(1.0, qs, qt, 0.0, &mut out);
            out
        };
        (
            inverse(&self.q_g, self.d_out, du),
            inverse(&self.q_a, self.d_in, dv),
        )
    }

    /// `U = Ĝ⁻¹ ∇W̄ Â⁻¹ = (g Ĝ⁻¹)ᵀ (ā Â⁻¹)` for `∇W̄ = gᵀā` and a factored damping: three GEMMs
    /// of `rows`-row operands, no rotation (K-FAC's and TKFAC's update in low rank).
    ///
    /// # Panics
    /// When the slices do not match `rows` and the basis (the caller checks shapes).
    pub fn precondition_kronecker_low_rank(
        &self,
        a: &[f32],
        g: &[f32],
        rows: usize,
        inv_g: &[f32],
        inv_a: &[f32],
    ) -> Vec<f32> {
        let (o, i) = (self.d_out, self.d_in);
        assert!(
            a.len() == rows * i && g.len() == rows * o && inv_g.len() == o * o,
            "FastBasis::precondition_kronecker_low_rank: shapes are checked by the caller"
        );
        let mut gi = vec![0f32; rows * o];
        let mut ai = vec![0f32; rows * i];
        let inv_g = MatRef::new(inv_g, o, o, false);
        gemm_into(1.0, MatRef::new(g, rows, o, false), inv_g, 0.0, &mut gi);
        let inv_a = MatRef::new(inv_a, i, i, false);
        gemm_into(1.0, MatRef::new(a, rows, i, false), inv_a, 0.0, &mut ai);
        let mut u = vec![0f32; o * i];
        gemm_into(
            1.0,
            MatRef::new(&gi, rows, o, true),
            MatRef::new(&ai, rows, i, false),
            0.0,
            &mut u,
        );
        u
    }

    /// True when [`precondition_low_rank`](Self::precondition_low_rank) with `rows` rows costs
    /// fewer FLOPs than [`precondition`](Self::precondition)'s two full rotations in.
    pub fn low_rank_pays(&self, rows: usize) -> bool {
        let (o, i) = (self.d_out as f64, self.d_in as f64);
        rows as f64 * (o * o + i * i + o * i) < o * i * (o + i)
    }

    /// `Q_G (x ⊘ damped) Q_Aᵀ`, with `tmp` as scratch of the same size.
    fn scale_and_rotate_out(&self, mut x: Vec<f32>, mut tmp: Vec<f32>, damped: &[f32]) -> Vec<f32> {
        let (o, i) = (self.d_out, self.d_in);
        x.iter_mut().zip(damped).for_each(|(x, d)| *x /= d);
        gemm_into(
            1.0,
            self.q_g(false),
            MatRef::new(&x, o, i, false),
            0.0,
            &mut tmp,
        );
        gemm_into(
            1.0,
            MatRef::new(&tmp, o, i, false),
            self.q_a(true),
            0.0,
            &mut x,
        );
        x
    }

    fn q_g(&self, transposed: bool) -> MatRef<'_, f32> {
        MatRef::new(&self.q_g, self.d_out, self.d_out, transposed)
    }

    fn q_a(&self, transposed: bool) -> MatRef<'_, f32> {
        MatRef::new(&self.q_a, self.d_in, self.d_in, transposed)
    }
}
