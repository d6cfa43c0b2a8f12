//! `Tensor<F>`: a dense, contiguous, row-major array of up to four dimensions that owns its data.
//!
//! There are no strides, views or interior mutability: a transpose inside a matrix product is a
//! stride argument to the gemm kernel ([`crate::kernels::gemm`]). `F` is `f32` for training and
//! `f64` for verification (see [`Float`]). Elementwise work over large tensors runs in parallel
//! with rayon in fixed-size chunks, so results do not depend on the thread count.

mod alloc;
mod float;
mod init;
mod shape;

pub use alloc::retain_freed_memory;
pub use float::Float;
pub use init::{Rng, seeded_rng};
pub use shape::{MAX_RANK, Shape};

use crate::error::{Error, Result};
use rayon::prelude::*;

/// Element count above which elementwise maps run in parallel chunks of this size.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// A dense row-major tensor.
///
/// Element `(i, j)` of a `[rows, cols]` tensor is `data()[i·cols + j]`. Operations return new
/// tensors (or an `Err` naming the shapes); there are no views.
///
/// ```
/// use tekfac::Tensor;
///
/// let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!(x.data()[3], 4.0); // (1, 0)
/// let xt = x.transpose()?;
/// assert_eq!(xt.dims(), &[3, 2]);
/// let gram = x.matmul(&x, false, true)?; // x·xᵀ, the transpose is a flag
/// assert_eq!(gram.data(), &[14.0, 32.0, 32.0, 77.0]);
/// let shifted = x.add_row(&Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3])?)?;
/// assert_eq!(shifted.sum(), 21.0 + 2.0 * 60.0);
/// assert_eq!(x.clone().reshape(&[3, 2])?.argmax_rows(), vec![1, 1, 1]);
/// assert!(x.add(&xt).is_err());
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Tensor<F: Float = f32> {
    shape: Shape,
    data: Vec<F>,
}

impl<F: Float> std::fmt::Debug for Tensor<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 8;
        let head: Vec<F> = self.data.iter().take(SHOW).copied().collect();
        let more = if self.data.len() > SHOW { ", .." } else { "" };
        write!(f, "Tensor<{}>{} {head:?}{more}", F::DTYPE, self.shape)
    }
}

impl<F: Float> Tensor<F> {
    /// Wraps `data` with `shape`; errors if the element count differs.
    ///
    /// ```
    /// let t = tekfac::Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    /// assert_eq!(t.dims(), &[2, 3]);
    /// ```
    pub fn from_vec(data: Vec<F>, dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims)?;
        if shape.numel() != data.len() {
            return Err(Error::invalid(
                "from_vec",
                format!(
                    "shape {shape} needs {} elements, got {}",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of `dims` filled with `value`.
    ///
    /// # Panics
    /// When `dims` has more than [`MAX_RANK`] entries (a programming error, not data).
    pub fn full(dims: &[usize], value: F) -> Self {
        let shape = Shape::new(dims).expect("tensor rank is at most 4");
        Tensor {
            shape,
            data: vec![value; shape.numel()],
        }
    }

    /// All zeros.
    pub fn zeros(dims: &[usize]) -> Self {
        Self::full(dims, F::ZERO)
    }

    /// All ones.
    pub fn ones(dims: &[usize]) -> Self {
        Self::full(dims, F::ONE)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: F) -> Self {
        Tensor {
            shape: Shape::default(),
            data: vec![value],
        }
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[F] {
        &self.data
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [F] {
        &mut self.data
    }

    /// Gives up the tensor and returns its elements.
    pub fn into_vec(self) -> Vec<F> {
        self.data
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<F> {
        match self.data.as_slice() {
            [x] => Ok(*x),
            _ => Err(Error::invalid(
                "item",
                format!("tensor of shape {} is not a scalar", self.shape),
            )),
        }
    }

    /// Same data, new shape with the same element count.
    pub fn reshape(mut self, dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims)?;
        if shape.numel() != self.data.len() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                why: "element counts differ",
                left: self.shape,
                right: shape,
            });
        }
        self.shape = shape;
        Ok(self)
    }

    /// Converts every element to another float type.
    pub fn cast<G: Float>(&self) -> Tensor<G> {
        Tensor {
            shape: self.shape,
            data: self.data.iter().map(|x| G::from_f64(x.to_f64())).collect(),
        }
    }

    /// Applies `f` to every element (in parallel chunks for large tensors), in one pass.
    pub fn map(&self, f: impl Fn(F) -> F + Sync) -> Self {
        let data = if self.data.len() >= 2 * PAR_CHUNK {
            self.data
                .par_iter()
                .with_min_len(PAR_CHUNK)
                .map(|&x| f(x))
                .collect()
        } else {
            self.data.iter().map(|&x| f(x)).collect()
        };
        Tensor {
            shape: self.shape,
            data,
        }
    }

    /// Applies `f` to every element in place.
    pub fn map_inplace(&mut self, f: impl Fn(F) -> F + Sync) {
        if self.data.len() >= 2 * PAR_CHUNK {
            self.data
                .par_chunks_mut(PAR_CHUNK)
                .for_each(|c| c.iter_mut().for_each(|x| *x = f(*x)));
        } else {
            self.data.iter_mut().for_each(|x| *x = f(*x));
        }
    }

    /// Combines two same-shaped tensors elementwise.
    pub fn zip_map(
        &self,
        other: &Self,
        op: &'static str,
        f: impl Fn(F, F) -> F + Sync,
    ) -> Result<Self> {
        self.check_same(other, op)?;
        let mut out = self.clone();
        zip_inplace(&mut out.data, &other.data, f);
        Ok(out)
    }

    /// Errors unless `other` has exactly this shape.
    pub fn check_same(&self, other: &Self, op: &'static str) -> Result<()> {
        if self.shape != other.shape {
            return Err(Error::ShapeMismatch {
                op,
                why: "shapes differ",
                left: self.shape,
                right: other.shape,
            });
        }
        Ok(())
    }

    /// Elementwise sum.
    pub fn add(&self, other: &Self) -> Result<Self> {
        self.zip_map(other, "add", |a, b| a + b)
    }

    /// Elementwise difference.
    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.zip_map(other, "sub", |a, b| a - b)
    }

    /// Elementwise product.
    pub fn mul(&self, other: &Self) -> Result<Self> {
        self.zip_map(other, "mul", |a, b| a * b)
    }

    /// Multiplies every element by `c`.
    pub fn scale(&self, c: F) -> Self {
        self.map(|x| x * c)
    }

    /// `self += c·other` (same shapes), the gradient-accumulation primitive.
    pub fn axpy(&mut self, c: F, other: &Self) -> Result<()> {
        self.check_same(other, "axpy")?;
        zip_inplace(&mut self.data, &other.data, |a, b| a + c * b);
        Ok(())
    }

    /// Adds the row vector `row` (length = last dimension) to every row: bias broadcast.
    pub fn add_row(&self, row: &Self) -> Result<Self> {
        let (_, cols) = self.shape.as_matrix();
        if row.len() != cols || row.shape.rank() > 1 {
            return Err(Error::ShapeMismatch {
                op: "add_row",
                why: "row length differs",
                left: self.shape,
                right: row.shape,
            });
        }
        let mut out = self.clone();
        out.data
            .chunks_mut(cols.max(1))
            .for_each(|r| r.iter_mut().zip(&row.data).for_each(|(x, b)| *x += *b));
        Ok(out)
    }

    /// Sum of all elements, accumulated in f64.
    pub fn sum(&self) -> f64 {
        self.data.iter().map(|x| x.to_f64()).sum()
    }

    /// Sums a rank-2 tensor over `axis` (0: down the columns → `[cols]`; 1: along rows → `[rows]`).
    pub fn sum_axis(&self, axis: usize) -> Result<Self> {
        let (r, c) = self.shape.dims2("sum_axis")?;
        match axis {
            0 => Ok(Tensor {
                shape: Shape::new(&[c])?,
                data: column_sums(&self.data, r, c),
            }),
            1 => Ok(Tensor {
                shape: Shape::new(&[r])?,
                data: self
                    .data
                    .chunks(c.max(1))
                    .map(|row| F::from_f64(row.iter().map(|x| x.to_f64()).sum()))
                    .collect(),
            }),
            _ => Err(Error::invalid(
                "sum_axis",
                format!("axis {axis} out of range for shape {}", self.shape),
            )),
        }
    }

    /// The transpose of a rank-2 tensor (a copy).
    pub fn transpose(&self) -> Result<Self> {
        let (r, c) = self.shape.dims2("transpose")?;
        let mut data = vec![F::ZERO; r * c];
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = self.data[i * c + j];
            }
        }
        Ok(Tensor {
            shape: Shape::new(&[c, r])?,
            data,
        })
    }

    /// Index of the largest element of each row (first one on ties).
    pub fn argmax_rows(&self) -> Vec<usize> {
        let (_, c) = self.shape.as_matrix();
        self.data
            .chunks(c.max(1))
            .map(|row| {
                let mut best = 0;
                for (j, x) in row.iter().enumerate() {
                    if *x > row[best] {
                        best = j;
                    }
                }
                best
            })
            .collect()
    }

    /// The matrix product `op(self)·op(other)` of two rank-2 tensors, where `op` transposes when
    /// the flag is set. See [`crate::kernels::gemm::matmul`].
    pub fn matmul(
        &self,
        other: &Self,
        transpose_self: bool,
        transpose_other: bool,
    ) -> Result<Self> {
        crate::kernels::gemm::matmul(self, transpose_self, other, transpose_other)
    }

    /// True when every element is finite.
    pub fn all_finite(&self) -> bool {
        all_finite(&self.data)
    }

    /// `Σ xᵢ²`, accumulated in f64 over eight independent lanes (so that it vectorises).
    pub fn sum_squares(&self) -> f64 {
        sum_squares(&self.data)
    }
}

/// True when every element of `data` is finite: [`chunk_all_finite`] of each chunk of
/// [`PAR_CHUNK`] values, in parallel for large slices. NOTE: the training loop checks every
/// gradient and weight after each step (half a million values for the MLP preset), and the
/// f32 re-scaling batch before it is blended (`curvature/fast_correction.rs`).
pub(crate) fn all_finite<F: Float>(data: &[F]) -> bool {
    if data.len() >= 2 * PAR_CHUNK {
        data.par_chunks(PAR_CHUNK).all(chunk_all_finite)
    } else {
        chunk_all_finite(data)
    }
}

/// True when every element of `data` is finite.
pub(crate) fn chunk_all_finite<F: Float>(data: &[F]) -> bool {
    // NOTE: `x·0` is 0 for finite x and NaN otherwise; eight independent lanes and no early exit
    // let the loop vectorise (a short-circuiting `all` does not).
    let mut lanes = [F::ZERO; 8];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x * F::ZERO;
        }
    }
    chunks.remainder().iter().all(|x| x.is_finite()) && lanes.iter().all(|l| *l == F::ZERO)
}

/// `Σ xᵢ²` of a slice, accumulated in f64: [`chunk_sum_squares`] of each chunk of [`PAR_CHUNK`]
/// values (in parallel for large slices), the chunk sums added in order. The first-order
/// optimizers fuse the same chunk sums into their update pass, so their `grad_norm` equals
/// [`crate::Gradients::global_norm`] exactly, and neither depends on the thread count.
pub(crate) fn sum_squares<F: Float>(data: &[F]) -> f64 {
    if data.len() >= 2 * PAR_CHUNK {
        let parts: Vec<f64> = data.par_chunks(PAR_CHUNK).map(chunk_sum_squares).collect();
        parts.iter().sum()
    } else {
        data.chunks(PAR_CHUNK).map(chunk_sum_squares).sum()
    }
}

/// `Σ xᵢ²` accumulated in f64 over eight independent lanes (so that it vectorises).
pub(crate) fn chunk_sum_squares<F: Float>(data: &[F]) -> f64 {
    let mut lanes = [0f64; 8];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            let x = x.to_f64();
            *l += x * x;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|x| x.to_f64().powi(2)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// `a[i] = f(a[i], b[i])` in parallel chunks for large slices.
pub(crate) fn zip_inplace<F: Float>(a: &mut [F], b: &[F], f: impl Fn(F, F) -> F + Sync) {
    if a.len() >= 2 * PAR_CHUNK {
        a.par_chunks_mut(PAR_CHUNK)
            .zip(b.par_chunks(PAR_CHUNK))
            .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, y)| *x = f(*x, *y)));
    } else {
        a.iter_mut().zip(b).for_each(|(x, y)| *x = f(*x, *y));
    }
}

/// Column sums of a row-major `rows × cols` matrix (the bias gradient), accumulated in f64.
pub(crate) fn column_sums<F: Float>(data: &[F], rows: usize, cols: usize) -> Vec<F> {
    let mut acc = vec![0f64; cols];
    for row in data.chunks(cols.max(1)).take(rows) {
        acc.iter_mut().zip(row).for_each(|(a, x)| *a += x.to_f64());
    }
    acc.into_iter().map(F::from_f64).collect()
}
