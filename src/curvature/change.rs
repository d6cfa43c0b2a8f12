//! The change of coordinates of a warm eigenbasis refresh, `R = Q_oldᵀ Q_new`, kept as the
//! refinement's own iterations (`refine.rs`). A dense layer trained in its eigenbasis stores
//! its weight, momentum and gradient in the old basis' coordinates; after a refresh they move as
//! `X ↦ R_Gᵀ X R_A` (`optim/natural/eigenbasis.rs`). As a product, `R` costs an `n³` GEMM and
//! `X R` another `rows·n²`; through the iterations `X R` costs about `3·rows·n·h` per
//! iteration (`h` head columns, `n/8` on the MLP's factors), the same algebra the refinement
//! applied to `Q` itself:
//!
//! ```text
//! X_L ← X[:, kept]                           the old columns that span the live block (deflate.rs)
//! per iteration:                             X_H, X_T: head and tail columns of X_L
//!   X'_H = (X_H + X_L K_H) L⁻ᵀ
//!   X'_T = X_T + ((X_T Cᵀ − X'_H CCᵀ) S − X'_H) C
//!   X_L ← [X'_H | X'_T]
//! X R = [X_L | ±X[:, j_p] for each dead row p]   the dead rows' coordinate vectors, as they were
//! ```
//!
//! With `X = Q_old` the steps give `Q_new` (up to the rounding of the steering products, f32 by
//! default: `ε₃₂·‖K_H‖`, below the rounding of an f32 weight). `tests/curvature_basis_change.rs`
//! pins `X R` to the product `X (Q_oldᵀ Q_new)` with and without deflated rows, with head and
//! tail, and in both steering precisions.

use super::refine::Step;
use super::rowmat::RowMatrix;
use crate::tensor::Float;

/// `R = Q_oldᵀ Q_new` of one factor's warm refresh, as the refinement's iterations (module
/// docs); [`apply`](Self::apply) forms `X R`.
#[derive(Clone, Debug, PartialEq)]
pub struct BasisChange {
    /// The factor's size.
    n: usize,
    /// The old columns that span the live block, ascending (all of them when nothing is dead).
    kept: Vec<usize>,
    /// Per dead row of the new basis, in its order: the old column that is `±e_p`, and the sign.
    dead: Vec<(usize, f64)>,
    /// The iterations, first to last, on the live block.
    steps: Vec<Step>,
}

impl BasisChange {
    /// The change made by `steps` on a factor of size `n` without dead rows.
    pub(super) fn of_steps(n: usize, steps: Vec<Step>) -> Self {
        BasisChange {
            n,
            kept: (0..n).collect(),
            dead: Vec::new(),
            steps,
        }
    }

    /// No change (`R = I`) of a factor of size `n`: a basis kept as it was.
    pub(super) fn identity(n: usize) -> Self {
        Self::of_steps(n, Vec::new())
    }

    /// True when [`apply`](Self::apply) returns its argument unchanged (`R = I`).
    pub fn is_identity(&self) -> bool {
        self.steps.is_empty() && self.dead.is_empty() && self.kept.iter().copied().eq(0..self.n)
    }

    /// This change of a live block, embedded into the whole factor of size `n`: the live block
    /// starts from the old columns `kept`, and the dead rows' coordinate vectors are the old
    /// columns `dead` (with their signs).
    ///
    /// # Panics
    /// When the sizes do not add up (the caller builds them from one deflation).
    pub(super) fn embedded(self, n: usize, kept: Vec<usize>, dead: Vec<(usize, f64)>) -> Self {
        assert!(
            kept.len() == self.n && kept.len() + dead.len() == n,
            "BasisChange::embedded: the live and dead columns must make up the factor"
        );
        BasisChange {
            n,
            kept,
            dead,
            steps: self.steps,
        }
    }

    /// The factor's size `n` (`R` is `n × n`).
    pub fn dim(&self) -> usize {
        self.n
    }

    /// The refinement iterations it holds.
    pub fn iterations(&self) -> usize {
        self.steps.len()
    }

    /// `X R` for a row-major `[rows, n]` matrix `X`, in `F` (module docs).
    ///
    /// # Panics
    /// When `x` is not `rows · n` long.
    pub fn apply<F: Float>(&self, x: Vec<F>, rows: usize) -> Vec<F> {
        assert_eq!(
            x.len(),
            rows * self.n,
            "BasisChange::apply: X must be rows × n"
        );
        let x = RowMatrix {
            rows,
            cols: self.n,
            data: x,
        };
        let dead = (!self.dead.is_empty()).then(|| {
            let columns: Vec<usize> = self.dead.iter().map(|&(j, _)| j).collect();
            let mut dead = x.columns(&columns);
            for row in dead.data.chunks_exact_mut(columns.len()) {
                for (v, &(_, sign)) in row.iter_mut().zip(&self.dead) {
                    *v = F::from_f64(sign * v.to_f64());
                }
            }
            dead
        });
        let mut live = match dead {
            Some(_) => x.columns(&self.kept),
            None => x,
        };
        for step in &self.steps {
            live = step.apply(&live);
        }
        match dead {
            Some(dead) => RowMatrix::beside(&live, &dead).data,
            None => live.data,
        }
    }

    /// Multiply-adds of [`apply`](Self::apply) on `rows` rows (the copies count nothing).
    pub fn multiply_adds(&self, rows: usize) -> f64 {
        self.steps.iter().map(|s| s.multiply_adds(rows)).sum()
    }
}
