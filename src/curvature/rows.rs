//! `CaptureRows`: a [`LayerCapture`] checked and converted to f64 matrices, the boundary between
//! the training tensors (f32 or f64) and the curvature state (always f64).
//!
//! Shapes: `a: [R, d_in']`, `g[s]: [R, d_out]` for every sweep `s`, `R = N·T` rows,
//! example-major (rows `n·T .. (n+1)·T` belong to example `n`; `T = 1` for dense layers).

use crate::autograd::LayerCapture;
use crate::error::{Error, Result};
use crate::tensor::{Float, Shape, Tensor};
use nalgebra::DMatrix;
use std::ops::Range;

/// A capture's rows as f64 matrices, with its example/location structure.
#[derive(Clone, Debug)]
pub struct CaptureRows {
    /// `[N·T, d_in']`: inputs `ā` (conv: im2col patches), trailing 1 when biased.
    pub a: DMatrix<f64>,
    /// One `[N·T, d_out]` matrix per backpropagated sweep.
    pub g: Vec<DMatrix<f64>>,
    /// `N`, the number of examples.
    pub examples: usize,
    /// `T`, rows per example (output locations; 1 for dense layers).
    pub locations: usize,
}

impl CaptureRows {
    /// Checks the capture's shapes and converts it to f64.
    ///
    /// Errors when `a` or a `g` is not rank 2, when the row counts differ, when there is no
    /// sweep or no row, or when the rows do not split into whole examples.
    pub fn from_capture<F: Float>(capture: &LayerCapture<F>) -> Result<Self> {
        let layout = RowLayout::of(capture)?;
        const OP: &str = "curvature capture";
        let a = matrix_from_tensor(&capture.a, OP)?;
        let g = capture
            .g
            .iter()
            .map(|g| matrix_from_tensor(g, OP))
            .collect::<Result<Vec<_>>>()?;
        Ok(CaptureRows {
            a,
            g,
            examples: layout.examples,
            locations: layout.locations,
        })
    }

    /// `d_in'`, the block's column count.
    pub fn d_in_bar(&self) -> usize {
        self.a.ncols()
    }

    /// `d_out`, the block's row count.
    pub fn d_out(&self) -> usize {
        self.g[0].ncols()
    }

    /// The rows of example `n`.
    pub fn example(&self, n: usize) -> Range<usize> {
        n * self.locations..(n + 1) * self.locations
    }

    /// Errors unless the capture fits a `[d_out, d_in']` block.
    pub fn check_block(&self, d_out: usize, d_in_bar: usize, op: &'static str) -> Result<()> {
        if self.d_out() != d_out || self.d_in_bar() != d_in_bar {
            let why = "capture [d_out, d_in'] differs from the block's";
            let got = Shape::new(&[self.d_out(), self.d_in_bar()])?;
            return Err(shape_error(op, why, Shape::new(&[d_out, d_in_bar])?, got));
        }
        Ok(())
    }
}

/// The row structure of a capture, checked: `R = N·T` rows of `ā: [R, d_in']` and of every
/// sweep's `g: [R, d_out]`. Shared by the f64 rows above and the f32 statistics path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLayout {
    /// `R = N·T`.
    pub rows: usize,
    /// `d_in'`.
    pub d_in_bar: usize,
    /// `d_out`.
    pub d_out: usize,
    /// `N`, the number of examples.
    pub examples: usize,
    /// `T`, rows per example.
    pub locations: usize,
}

impl RowLayout {
    /// Checks a capture's shapes.
    ///
    /// Errors when `a` or a `g` is not rank 2, when the row counts differ, when there is no
    /// sweep or no row, when the sweeps differ in width, or when the rows do not split into
    /// whole examples.
    pub fn of<F: Float>(capture: &LayerCapture<F>) -> Result<Self> {
        const OP: &str = "curvature capture";
        let (rows, d_in_bar) = capture.a.shape().dims2(OP)?;
        let locations = capture.rows_per_example;
        let Some(first) = capture.g.first() else {
            return Err(Error::invalid(
                OP,
                "the capture holds no backpropagated sweep",
            ));
        };
        if rows == 0 || locations == 0 || rows % locations != 0 {
            let msg = format!("{rows} rows do not split into examples of {locations}");
            return Err(Error::invalid(OP, msg));
        }
        let (_, d_out) = first.shape().dims2(OP)?;
        for g in &capture.g {
            let (g_rows, g_cols) = g.shape().dims2(OP)?;
            if g_rows != rows {
                let why = "a and g row counts differ";
                return Err(shape_error(OP, why, capture.a.shape(), g.shape()));
            }
            if g_cols != d_out {
                return Err(Error::invalid(OP, "sweeps have different output widths"));
            }
        }
        Ok(RowLayout {
            rows,
            d_in_bar,
            d_out,
            examples: rows / locations,
            locations,
        })
    }
}

/// A rank-2 tensor as an f64 matrix with the same `[rows, cols]`.
pub fn matrix_from_tensor<F: Float>(t: &Tensor<F>, op: &'static str) -> Result<DMatrix<f64>> {
    let (rows, cols) = t.shape().dims2(op)?;
    Ok(DMatrix::from_fn(rows, cols, |r, c| {
        t.data()[r * cols + c].to_f64()
    }))
}

fn shape_error(op: &'static str, why: &'static str, left: Shape, right: Shape) -> Error {
    Error::ShapeMismatch {
        op,
        why,
        left,
        right,
    }
}
