//! Deflation of exactly-zero rows and columns. A factor row `p` that is exactly zero (an MNIST
//! pixel that is 0 in every image seen, a ReLU unit that never fired) makes the coordinate
//! vector `e_p` an exact eigenvector with eigenvalue 0:
//!
//! ```text
//! F = P [F_LL 0; 0 0] Pᵀ,   F_LL = V diag(λ) Vᵀ   ⇒   F = [P_L V | P_D] diag(λ, 0) [P_L V | P_D]ᵀ
//! ```
//!
//! with `L` the live and `D` the dead indices. The refresh (exact or warm) decomposes only the
//! live block and appends `e_p` for the dead rows, so no eigenvector that carries curvature
//! ever has a component on a dead coordinate, whatever rounding would do, and the work shrinks
//! by `(|L|/n)³` (785 → 638 live rows on MNIST's fc1 input factor: 0.54).
//!
//! Statistics are moving averages, so a row, once live, stays live (`ρᵏ·x` never returns to an
//! exact zero), and a basis built this way restricts to the next live block exactly
//! ([`Deflation::restrict_basis`]).

use nalgebra::{DMatrix, DVector};

/// The live and dead indices of a symmetric factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Deflation {
    pub live: Vec<usize>,
    pub dead: Vec<usize>,
}

impl Deflation {
    /// Splits the rows of `f` into live (some non-zero entry) and dead (all exactly zero).
    pub fn of(f: &DMatrix<f64>) -> Self {
        let (live, dead) = (0..f.nrows()).partition(|&p| f.row(p).iter().any(|&x| x != 0.0));
        Deflation { live, dead }
    }

    /// True when there is nothing to deflate.
    pub fn is_trivial(&self) -> bool {
        self.dead.is_empty()
    }

    /// `F_LL`.
    pub fn restrict(&self, f: &DMatrix<f64>) -> DMatrix<f64> {
        f.select_rows(&self.live).select_columns(&self.live)
    }

    /// The warm start for `F_LL` from a basis `q` of the whole factor: the `|L|` columns with
    /// the most weight on the live rows, restricted to those rows, and which columns those are
    /// (ascending). For a basis deflated at an earlier refresh (whose dead set contains this
    /// one) it is exactly orthogonal; otherwise the refinement's orthonormality check refuses it.
    pub fn restrict_basis(&self, q: &DMatrix<f64>) -> (DMatrix<f64>, Vec<usize>) {
        let rows = q.select_rows(&self.live);
        let weight: Vec<f64> = rows.column_iter().map(|c| c.norm_squared()).collect();
        let mut by_weight: Vec<usize> = (0..q.ncols()).collect();
        by_weight.sort_by(|&i, &j| weight[j].total_cmp(&weight[i]));
        let mut keep = by_weight[..self.live.len()].to_vec();
        keep.sort_unstable();
        (rows.select_columns(&keep), keep)
    }

    /// For each dead row `p`, in order, the column `j` of `q` outside `kept` that is `±e_p`,
    /// with its sign: how the coordinate vectors [`embed`](Self::embed) appends for the dead rows
    /// are expressed in `q`. `None` unless every such column is exactly a signed unit vector
    /// (as a basis deflated at an earlier refresh has them).
    pub fn dead_columns(&self, q: &DMatrix<f64>, kept: &[usize]) -> Option<Vec<(usize, f64)>> {
        let mut out = vec![None; self.dead.len()];
        let slot: std::collections::HashMap<usize, usize> =
            self.dead.iter().enumerate().map(|(k, &p)| (p, k)).collect();
        let mut kept = kept.iter().peekable();
        for j in 0..q.ncols() {
            if kept.next_if_eq(&&j).is_some() {
                continue;
            }
            let column = q.column(j);
            let mut nonzero = column.iter().enumerate().filter(|(_, x)| **x != 0.0);
            let (p, &x) = nonzero.next()?;
            if nonzero.next().is_some() || x.abs() != 1.0 {
                return None;
            }
            let k = *slot.get(&p)?;
            out[k] = Some((j, x));
        }
        out.into_iter().collect()
    }

    /// `([P_L V | P_D], [λ; 0])`: the live eigenpairs `(v, λ)` of `F_LL` embedded into the whole
    /// factor, followed by `e_p` with eigenvalue 0 for every dead row `p`.
    pub fn embed(&self, v: &DMatrix<f64>, lambda: &DVector<f64>) -> (DMatrix<f64>, DVector<f64>) {
        let n = self.live.len() + self.dead.len();
        let mut q = DMatrix::zeros(n, n);
        let mut d = DVector::zeros(n);
        for (c, column) in v.column_iter().enumerate() {
            for (&p, x) in self.live.iter().zip(column.iter()) {
                q[(p, c)] = *x;
            }
            d[c] = lambda[c];
        }
        for (k, &p) in self.dead.iter().enumerate() {
            q[(p, self.live.len() + k)] = 1.0;
        }
        (q, d)
    }
}

#[cfg(test)]
mod tests {
    use super::super::basis::eigh;
    use super::*;

    #[test]
    fn dead_rows_become_coordinate_eigenvectors() {
        // Rows 1 and 3 are zero.
        let f = DMatrix::from_row_slice(
            4,
            4,
            &[
                2.0, 0.0, 1.0, 0.0, //
                0.0, 0.0, 0.0, 0.0, //
                1.0, 0.0, 3.0, 0.0, //
                0.0, 0.0, 0.0, 0.0,
            ],
        );
        let deflation = Deflation::of(&f);
        assert_eq!(
            (deflation.live.clone(), deflation.dead.clone()),
            (vec![0, 2], vec![1, 3])
        );
        let (q, d) = eigh(&f).unwrap();
        let rebuilt = &q * DMatrix::from_diagonal(&d) * q.transpose();
        assert!((rebuilt - &f).norm() < 1e-14);
        assert!((q.transpose() * &q - DMatrix::identity(4, 4)).norm() < 1e-14);
        for p in [1, 3] {
            for c in 0..2 {
                assert_eq!(q[(p, c)], 0.0, "live eigenvectors avoid dead row {p}");
            }
        }
        // The deflated basis restricts to the live block exactly.
        let (restricted, kept) = deflation.restrict_basis(&q);
        assert_eq!(kept, vec![0, 1]);
        assert_eq!(
            deflation.dead_columns(&q, &kept),
            Some(vec![(2, 1.0), (3, 1.0)])
        );
        assert!((restricted.transpose() * &restricted - DMatrix::identity(2, 2)).norm() < 1e-14);
    }
}
