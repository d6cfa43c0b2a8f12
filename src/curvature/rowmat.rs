//! `RowMatrix`: a plain row-major matrix (f64, or f32 for the products that only steer the
//! refresh) whose products go through matrixmultiply (`kernels::gemm`, threaded), for the
//! GEMM-speed eigenbasis refresh (`refine.rs`). nalgebra's `DMatrix` stays the type of the
//! curvature state; conversions copy (`O(n²)`).

use crate::kernels::gemm::{MatRef, gemm_into, gemm_new};
use crate::kernels::transpose::transpose_new;
use crate::tensor::Float;
use nalgebra::DMatrix;
use rayon::prelude::*;
use std::any::Any;
use std::borrow::Cow;

/// Rows per rayon task of the row-parallel copies (a few KB each for the refresh's factors).
const ROWS_PER_TASK: usize = 16;

/// A row-major `rows × cols` matrix of `T`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct RowMatrix<T = f64> {
    pub rows: usize,
    pub cols: usize,
    /// Row-major elements, `rows · cols` of them.
    pub data: Vec<T>,
}

impl RowMatrix {
    /// A row-major copy of `m`.
    pub fn from_dmatrix(m: &DMatrix<f64>) -> Self {
        // NOTE: column-major storage is the row-major storage of the transpose; the tiled
        // transpose turns it over.
        RowMatrix {
            rows: m.nrows(),
            cols: m.ncols(),
            data: transpose_new(m.as_slice(), m.ncols(), m.nrows(), 1.0),
        }
    }

    /// The row-major copy of `(m + mᵀ)/2` for a square `m`.
    pub fn symmetric_part(m: &DMatrix<f64>) -> Self {
        let n = m.nrows();
        assert_eq!(n, m.ncols(), "RowMatrix::symmetric_part: a square matrix");
        // Row-major `m`, plus `m`'s column-major storage, which is row-major `mᵀ`.
        let mut s = Self::from_dmatrix(m);
        s.data
            .iter_mut()
            .zip(m.as_slice())
            .for_each(|(x, &t)| *x = 0.5 * (*x + t));
        s
    }

    /// The nalgebra copy.
    pub fn to_dmatrix(&self) -> DMatrix<f64> {
        let columns = transpose_new(&self.data, self.rows, self.cols, 1.0);
        DMatrix::from_vec(self.rows, self.cols, columns)
    }
}

impl<T: Float> RowMatrix<T> {
    /// All zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        RowMatrix {
            rows,
            cols,
            data: vec![T::ZERO; rows * cols],
        }
    }

    /// The same matrix in `U`: rounded (or widened) into a new matrix, or this one itself,
    /// borrowed, when `U` is `T` (the f64-steered refresh converts nothing).
    pub fn cast<U: Float>(&self) -> Cow<'_, RowMatrix<U>> {
        if let Some(same) = (self as &dyn Any).downcast_ref::<RowMatrix<U>>() {
            return Cow::Borrowed(same);
        }
        Cow::Owned(RowMatrix {
            rows: self.rows,
            cols: self.cols,
            data: self
                .data
                .par_iter()
                .with_min_len(1 << 14)
                .map(|&x| U::from_f64(x.to_f64()))
                .collect(),
        })
    }

    /// `self ← self + α · m` for `m` in another precision (widened or rounded elementwise).
    pub fn add_cast<U: Float>(&mut self, alpha: f64, m: &RowMatrix<U>) {
        assert_eq!(
            (self.rows, self.cols),
            (m.rows, m.cols),
            "RowMatrix::add_cast: shapes differ"
        );
        self.data
            .par_iter_mut()
            .with_min_len(1 << 14)
            .zip(&m.data)
            .for_each(|(x, &y)| *x += T::from_f64(alpha * y.to_f64()));
    }

    /// Element `(r, c)`, as f64.
    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c].to_f64()
    }

    /// The `n × n` identity.
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        m.data.iter_mut().step_by(n + 1).for_each(|x| *x = T::ONE);
        m
    }

    /// The columns `idx`, in that order (rows copied on rayon's threads).
    pub fn columns(&self, idx: &[usize]) -> Self {
        let mut out = Self::zeros(self.rows, idx.len());
        if idx.is_empty() {
            return out;
        }
        out.data
            .par_chunks_exact_mut(idx.len())
            .zip(self.data.par_chunks_exact(self.cols))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(dst, src)| {
                for (o, &c) in dst.iter_mut().zip(idx) {
                    *o = src[c];
                }
            });
        out
    }

    /// `[a | b]`, side by side (rows copied on rayon's threads).
    pub fn beside(a: &Self, b: &Self) -> Self {
        assert_eq!(a.rows, b.rows, "RowMatrix::beside: row counts differ");
        if a.cols == 0 || b.cols == 0 {
            return if a.cols == 0 { b.clone() } else { a.clone() };
        }
        let mut out = Self::zeros(a.rows, a.cols + b.cols);
        out.data
            .par_chunks_exact_mut(a.cols + b.cols)
            .zip(a.data.par_chunks_exact(a.cols))
            .zip(b.data.par_chunks_exact(b.cols))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|((dst, ra), rb)| {
                dst[..a.cols].copy_from_slice(ra);
                dst[a.cols..].copy_from_slice(rb);
            });
        out
    }

    /// `op(a) · op(b)`, where `op` transposes when its flag is set.
    pub fn product(a: &Self, ta: bool, b: &Self, tb: bool) -> Self {
        let (rows, cols) = (op_dims(a, ta).0, op_dims(b, tb).1);
        let ma = MatRef::new(&a.data, a.rows, a.cols, ta);
        let mb = MatRef::new(&b.data, b.rows, b.cols, tb);
        // NOTE: written once by the GEMM, no zero fill first.
        let data = gemm_new(T::ONE, ma, mb);
        RowMatrix { rows, cols, data }
    }

    /// `self ← self + α · op(a) · op(b)`.
    ///
    /// # Panics
    /// When the shapes do not chain (internal callers build them to match).
    pub fn add_product(&mut self, alpha: f64, a: &Self, ta: bool, b: &Self, tb: bool) {
        assert_eq!(
            (op_dims(a, ta).0, op_dims(b, tb).1),
            (self.rows, self.cols),
            "RowMatrix::add_product: output shape"
        );
        let ma = MatRef::new(&a.data, a.rows, a.cols, ta);
        let mb = MatRef::new(&b.data, b.rows, b.cols, tb);
        gemm_into(T::from_f64(alpha), ma, mb, T::ONE, &mut self.data);
    }

    /// `diag(selfᵀ other)`: the dot product of each column with the same column of `other`,
    /// accumulated in f64.
    pub fn column_dots<U: Float>(&self, other: &RowMatrix<U>) -> Vec<f64> {
        assert_eq!(
            (self.rows, self.cols),
            (other.rows, other.cols),
            "RowMatrix::column_dots: shapes differ"
        );
        let mut d = vec![0.0; self.cols];
        let width = self.cols.max(1);
        for (a, b) in self
            .data
            .chunks_exact(width)
            .zip(other.data.chunks_exact(width))
        {
            for ((di, x), y) in d.iter_mut().zip(a).zip(b) {
                *di += x.to_f64() * y.to_f64();
            }
        }
        d
    }

    /// `‖self‖_F`, accumulated in f64.
    pub fn frobenius(&self) -> f64 {
        self.data
            .iter()
            .map(|x| x.to_f64() * x.to_f64())
            .sum::<f64>()
            .sqrt()
    }
}

/// Rows and columns of `op(a)`.
fn op_dims<T>(a: &RowMatrix<T>, t: bool) -> (usize, usize) {
    if t {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    }
}
