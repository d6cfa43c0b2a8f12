//! The exact Fisher block by brute force: the oracle every approximation is tested against.
//!
//! For a capture with `N` examples, `S` sweeps and `T` locations per example:
//!
//! * per-example gradients `DW_{n,s} = Σ_t g_{s,(n,t)} ā_{(n,t)}ᵀ`, `[d_out, d_in']`
//!   (cross-location terms included: spec §2, §4.1);
//! * `F = (1/N) Σ_n Σ_s vec(DW_{n,s}) vec(DW_{n,s})ᵀ`, `[d_out·d_in', d_out·d_in']`, where `vec`
//!   stacks **rows** (entry `(o, i)` at `o·d_in' + i`), so a dense layer's `F = E[(ggᵀ)⊗(āāᵀ)]`.
//!
//! `O((d_out·d_in')²)` memory: for tiny layers in tests and docs only.

use super::rows::CaptureRows;
use crate::autograd::LayerCapture;
use crate::error::Result;
use crate::tensor::Float;
use nalgebra::{DMatrix, DVector};

/// `DW_{n,s}` for every (example, sweep) pair, example-major (`n·S + s`), each `[d_out, d_in']`.
pub fn per_example_gradients<F: Float>(capture: &LayerCapture<F>) -> Result<Vec<DMatrix<f64>>> {
    let rows = CaptureRows::from_capture(capture)?;
    Ok(per_example_gradients_of(&rows))
}

/// [`per_example_gradients`] of already converted rows.
pub fn per_example_gradients_of(rows: &CaptureRows) -> Vec<DMatrix<f64>> {
    let t = rows.locations;
    let mut out = Vec::with_capacity(rows.examples * rows.g.len());
    for n in 0..rows.examples {
        let a_n = rows.a.rows(n * t, t);
        for g in &rows.g {
            // DW_{n,s} = g_nᵀ ā_n, summing over the example's T locations.
            out.push(g.rows(n * t, t).transpose() * a_n);
        }
    }
    out
}

/// The exact Fisher block `F = (1/N) Σ_{n,s} vec(DW_{n,s}) vec(DW_{n,s})ᵀ` (row-major vec).
pub fn exact_fisher<F: Float>(capture: &LayerCapture<F>) -> Result<DMatrix<f64>> {
    let rows = CaptureRows::from_capture(capture)?;
    let grads = per_example_gradients_of(&rows);
    let columns: Vec<DVector<f64>> = grads.iter().map(vec_rows).collect();
    let v = DMatrix::from_columns(&columns);
    Ok(&v * v.transpose() / rows.examples as f64)
}

/// Row-major vec: entry `(o, i)` of an `[r, c]` matrix goes to index `o·c + i`.
pub fn vec_rows(m: &DMatrix<f64>) -> DVector<f64> {
    // NOTE: nalgebra stores columns; the transpose's column-major data is m's row-major data.
    DVector::from_column_slice(m.transpose().as_slice())
}

/// Inverse of [`vec_rows`]: an `[rows, cols]` matrix from its row-major vec.
///
/// # Panics
/// When `v.len() != rows·cols`.
pub fn unvec_rows(v: &DVector<f64>, rows: usize, cols: usize) -> DMatrix<f64> {
    assert_eq!(v.len(), rows * cols, "unvec_rows: length must be rows·cols");
    DMatrix::from_row_slice(rows, cols, v.as_slice())
}

/// The Kronecker product `g_side ⊗ a_side` acting on row-major vecs:
/// `(P ⊗ R) vec(X) = vec(P X Rᵀ)`, so a dense layer's K-FAC is `kron_rows(G, A)`.
pub fn kron_rows(g_side: &DMatrix<f64>, a_side: &DMatrix<f64>) -> DMatrix<f64> {
    g_side.kronecker(a_side)
}

/// The two partial traces of a `[d_out·d_in', d_out·d_in']` matrix in row-major vec order.
///
/// Returns `(Tr_out(F), Tr_in(F))`: the trace over the output factor, `[d_in', d_in']`
/// (`= E[DWᵀDW]` for the exact Fisher), and over the input factor, `[d_out, d_out]`
/// (`= E[DW DWᵀ]`). TKFAC is `Tr_in(F) ⊗ Tr_out(F) / tr F` (spec §5.1, identity 3).
///
/// # Panics
/// When `f` is not `[d_out·d_in_bar]²`.
pub fn partial_traces(
    f: &DMatrix<f64>,
    d_out: usize,
    d_in_bar: usize,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let d = d_out * d_in_bar;
    assert!(
        f.nrows() == d && f.ncols() == d,
        "partial_traces: F must be square of side d_out·d_in'"
    );
    let over_out = DMatrix::from_fn(d_in_bar, d_in_bar, |i, j| {
        (0..d_out)
            .map(|o| f[(o * d_in_bar + i, o * d_in_bar + j)])
            .sum()
    });
    let over_in = DMatrix::from_fn(d_out, d_out, |k, l| {
        (0..d_in_bar)
            .map(|i| f[(k * d_in_bar + i, l * d_in_bar + i)])
            .sum()
    });
    (over_out, over_in)
}
