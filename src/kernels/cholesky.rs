//! Blocked Cholesky factorisation and triangular solve in f64 at GEMM speed: the two halves of
//! a Cholesky-QR orthonormalisation (used by `curvature/refine.rs`).
//!
//! ```text
//! M = L Lᵀ             cholesky_lower(M)            M symmetric positive definite, [n, n]
//! X = Z L⁻ᵀ            solve_right_lower_t(Z, L)    i.e. X Lᵀ = Z, Z: [rows, n]
//! ```
//!
//! Both recurse on halves of the columns, so nearly all of their flops are a few large products
//! through [`gemm_strided_into`]; blocks of at most `NB` columns are factored (and inverted)
//! with plain loops, `O(n·NB²)` flops in all:
//!
//! ```text
//! Cholesky:  L₁₁ = chol(A₁₁),   L₂₁ = A₂₁ L₁₁⁻ᵀ,   L₂₂ = chol(A₂₂ − L₂₁ L₂₁ᵀ)
//! solve:     X₁ = Z₁ L₁₁⁻ᵀ,     X₂ = (Z₂ − X₁ L₂₁ᵀ) L₂₂⁻ᵀ
//! ```
//!
//! Matrices are row-major `Vec<f64>`; only the lower triangle of `M` is read.

use super::gemm::{Strided, gemm_strided_into};
use std::fmt;

/// Columns factored with plain loops: large enough that the recursion makes few GEMM calls,
/// small enough that the loops stay a few per cent of the flops.
const NB: usize = 64;

/// Cholesky stopped at a pivot that was not positive and finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotPositiveDefinite {
    /// Row of the failing pivot.
    pub pivot: usize,
}

impl fmt::Display for NotPositiveDefinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "matrix not positive definite (pivot {} ≤ 0 or not finite)",
            self.pivot
        )
    }
}

/// `L` with `M = L Lᵀ`, row-major `[n, n]`, zeros above the diagonal. Reads the lower triangle
/// of the row-major `m`.
///
/// ```
/// use tekfac::kernels::cholesky::cholesky_lower;
/// let l = cholesky_lower(&[4.0, 2.0, 2.0, 5.0], 2).unwrap();
/// assert_eq!(l, vec![2.0, 0.0, 1.0, 2.0]);
/// ```
pub fn cholesky_lower(m: &[f64], n: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    assert_eq!(m.len(), n * n, "cholesky_lower: m must be n × n");
    let mut a = m.to_vec();
    factor(&mut a, n, 0, n)?;
    for r in 0..n {
        a[r * n + r + 1..(r + 1) * n].fill(0.0);
    }
    Ok(a)
}

/// `X = Z L⁻ᵀ` in place for a row-major `z: [rows, n]` and lower-triangular `l: [n, n]` with a
/// non-zero diagonal (from [`cholesky_lower`]).
pub fn solve_right_lower_t(z: &mut [f64], rows: usize, l: &[f64], n: usize) {
    assert!(
        z.len() == rows * n && l.len() == n * n,
        "solve_right_lower_t: z must be rows × n and l n × n"
    );
    let block = Block {
        col: 0,
        rows,
        cols: n,
        ld: n,
    };
    solve(z, block, l, Diagonal { k0: 0, ld: n });
}

/// Columns `col .. col + cols` of a row-major buffer with `rows` rows, `ld` apart.
#[derive(Clone, Copy)]
struct Block {
    col: usize,
    rows: usize,
    cols: usize,
    ld: usize,
}

/// The diagonal block of `L` that starts at `(k0, k0)`, in a buffer with rows `ld` apart.
#[derive(Clone, Copy)]
struct Diagonal {
    k0: usize,
    ld: usize,
}

/// Cholesky of the `n × n` diagonal block of `a` at `(k0, k0)` (rows `ld` apart), in place.
fn factor(a: &mut [f64], ld: usize, k0: usize, n: usize) -> Result<(), NotPositiveDefinite> {
    if n <= NB {
        return factor_diagonal_block(a, ld, k0, n);
    }
    let (n1, n2) = split(n);
    factor(a, ld, k0, n1)?;
    // L₂₁ = A₂₁ L₁₁⁻ᵀ, solved in a contiguous copy: A₂₁ and L₁₁ share the buffer.
    let mut l21 = vec![0.0; n2 * n1];
    copy_block(a, ld, k0 + n1, k0, n2, n1, &mut l21);
    let whole = Block {
        col: 0,
        rows: n2,
        cols: n1,
        ld: n1,
    };
    solve(&mut l21, whole, a, Diagonal { k0, ld });
    for r in 0..n2 {
        let dst = (k0 + n1 + r) * ld + k0;
        a[dst..dst + n1].copy_from_slice(&l21[r * n1..(r + 1) * n1]);
    }
    // NOTE: the whole square of A₂₂ is updated, upper half included: one large product is
    // faster than the half-size triangle in many small ones, and the upper half is never read.
    let left = Strided::whole(&l21, n2, n1, false);
    let right = Strided::whole(&l21, n2, n1, true);
    let a22 = (k0 + n1) * ld + k0 + n1;
    gemm_strided_into(-1.0, left, right, 1.0, a, a22, ld);
    factor(a, ld, k0 + n1, n2)
}

/// `X = Z L⁻ᵀ` in place on the columns `z` of `buf`, with `L` the `z.cols`-square diagonal
/// block `diag` of `l`.
fn solve(buf: &mut [f64], z: Block, l: &[f64], diag: Diagonal) {
    if z.cols <= NB {
        let inv = invert_lower_block(l, diag.ld, diag.k0, z.cols);
        let zc = copy_columns(buf, z);
        let zc = Strided::whole(&zc, z.rows, z.cols, false);
        let inv_t = Strided::whole(&inv, z.cols, z.cols, true);
        gemm_strided_into(1.0, zc, inv_t, 0.0, buf, z.col, z.ld);
        return;
    }
    let (n1, n2) = split(z.cols);
    let z1 = Block { cols: n1, ..z };
    let z2 = Block {
        col: z.col + n1,
        cols: n2,
        ..z
    };
    solve(buf, z1, l, diag);
    // Z₂ ← Z₂ − X₁ L₂₁ᵀ, with X₁ copied out: it shares the buffer with Z₂.
    let x1 = copy_columns(buf, z1);
    let x1 = Strided::whole(&x1, z.rows, n1, false);
    let l21_at = (diag.k0 + n1) * diag.ld + diag.k0;
    let l21 = Strided::new(l, l21_at, n2, n1, diag.ld, true);
    gemm_strided_into(-1.0, x1, l21, 1.0, buf, z2.col, z.ld);
    let lower = Diagonal {
        k0: diag.k0 + n1,
        ..diag
    };
    solve(buf, z2, l, lower);
}

/// `(n₁, n − n₁)` with `n₁` half of `n > NB` rounded up to a multiple of `NB`.
fn split(n: usize) -> (usize, usize) {
    let n1 = (n / 2).div_ceil(NB) * NB;
    (n1, n - n1)
}

/// Plain Cholesky of the diagonal block at `(k0, k0)`, size `kb`, in place (lower triangle).
fn factor_diagonal_block(
    a: &mut [f64],
    ld: usize,
    k0: usize,
    kb: usize,
) -> Result<(), NotPositiveDefinite> {
    let at = |r: usize, c: usize| (k0 + r) * ld + k0 + c;
    for j in 0..kb {
        let s = a[at(j, j)] - (0..j).map(|p| a[at(j, p)] * a[at(j, p)]).sum::<f64>();
        if !(s > 0.0 && s.is_finite()) {
            return Err(NotPositiveDefinite { pivot: k0 + j });
        }
        let ljj = s.sqrt();
        a[at(j, j)] = ljj;
        for i in j + 1..kb {
            let dot: f64 = (0..j).map(|p| a[at(i, p)] * a[at(j, p)]).sum();
            a[at(i, j)] = (a[at(i, j)] - dot) / ljj;
        }
    }
    Ok(())
}

/// The inverse of the lower-triangular diagonal block of `l` at `(k0, k0)`, size `kb`,
/// row-major `[kb, kb]`.
fn invert_lower_block(l: &[f64], ld: usize, k0: usize, kb: usize) -> Vec<f64> {
    let at = |r: usize, c: usize| l[(k0 + r) * ld + k0 + c];
    let mut inv = vec![0.0; kb * kb];
    for j in 0..kb {
        inv[j * kb + j] = 1.0 / at(j, j);
        for i in j + 1..kb {
            let s: f64 = (j..i).map(|p| at(i, p) * inv[p * kb + j]).sum();
            inv[i * kb + j] = -s / at(i, i);
        }
    }
    inv
}

/// A contiguous copy of the columns `z` of `buf`.
fn copy_columns(buf: &[f64], z: Block) -> Vec<f64> {
    let mut out = vec![0.0; z.rows * z.cols];
    copy_block(buf, z.ld, 0, z.col, z.rows, z.cols, &mut out);
    out
}

/// Copies the `rows × cols` block of `src` (row-major, rows `ld` apart) at `(r0, c0)` into the
/// contiguous `dst`.
fn copy_block(
    src: &[f64],
    ld: usize,
    r0: usize,
    c0: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f64],
) {
    for r in 0..rows {
        let s = (r0 + r) * ld + c0;
        dst[r * cols..(r + 1) * cols].copy_from_slice(&src[s..s + cols]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric positive definite `[n, n]`: `R Rᵀ / n + I` for a fixed pseudo-random `R`.
    fn spd(n: usize) -> Vec<f64> {
        let r: Vec<f64> = (0..n * n)
            .map(|i| ((i * 7919 + 13) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..n).map(|p| r[i * n + p] * r[j * n + p]).sum();
                m[i * n + j] = dot / n as f64 + if i == j { 1.0 } else { 0.0 };
            }
        }
        m
    }

    /// Sizes around the block size: one block, a partial block, several blocks.
    #[test]
    fn factor_reproduces_the_matrix_and_the_solve_inverts_it() {
        for n in [1, 5, NB, NB + 3, 2 * NB + 17, 5 * NB + 9] {
            let m = spd(n);
            let l = cholesky_lower(&m, n).unwrap();
            let mut worst = 0.0f64;
            for i in 0..n {
                for j in 0..n {
                    let llt: f64 = (0..n).map(|p| l[i * n + p] * l[j * n + p]).sum();
                    worst = worst.max((llt - m[i * n + j]).abs());
                    if j > i {
                        assert_eq!(l[i * n + j], 0.0, "n = {n}: upper triangle is zero");
                    }
                }
            }
            assert!(worst < 1e-12, "n = {n}: ‖LLᵀ − M‖_max = {worst:e}");
            // X Lᵀ = Z for a rectangular Z.
            let rows = n + 2;
            let z: Vec<f64> = (0..rows * n).map(|i| ((i % 13) as f64) - 6.0).collect();
            let mut x = z.clone();
            solve_right_lower_t(&mut x, rows, &l, n);
            for r in 0..rows {
                for c in 0..n {
                    let back: f64 = (0..n).map(|p| x[r * n + p] * l[c * n + p]).sum();
                    assert!((back - z[r * n + c]).abs() < 1e-10, "n = {n}: X Lᵀ = Z");
                }
            }
        }
    }

    #[test]
    fn indefinite_matrix_is_refused_at_its_pivot() {
        let mut m = spd(NB + 5);
        let n = NB + 5;
        m[(NB + 2) * n + NB + 2] = -50.0;
        assert_eq!(
            cholesky_lower(&m, n),
            Err(NotPositiveDefinite { pivot: NB + 2 })
        );
        let mut nan = spd(3);
        nan[0] = f64::NAN;
        assert_eq!(
            cholesky_lower(&nan, 3),
            Err(NotPositiveDefinite { pivot: 0 })
        );
    }
}
