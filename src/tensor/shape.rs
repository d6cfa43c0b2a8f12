//! Shapes of up to four dimensions (NCHW for images), stored inline so they are `Copy`.

use crate::error::{Error, Result};
use std::fmt;

/// Maximum rank of a tensor.
pub const MAX_RANK: usize = 4;

/// A tensor shape: `rank` dimensions, row-major.
///
/// ```
/// use tekfac::Shape;
///
/// let s = Shape::new(&[2, 1, 28, 28])?;
/// assert_eq!((s.rank(), s.numel()), (4, 1568));
/// assert_eq!(s.as_matrix(), (2, 784)); // first dimension × the rest
/// assert!(s.dims2("dense").is_err()); // not a matrix
/// assert!(Shape::new(&[1, 2, 3, 4, 5]).is_err()); // rank ≤ 4
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    dims: [usize; MAX_RANK],
    rank: usize,
}

impl Shape {
    /// Builds a shape; errors when there are more than [`MAX_RANK`] dimensions.
    pub fn new(dims: &[usize]) -> Result<Self> {
        if dims.len() > MAX_RANK {
            return Err(Error::invalid(
                "shape",
                format!("at most {MAX_RANK} dimensions are supported, got {dims:?}"),
            ));
        }
        let mut d = [0; MAX_RANK];
        d[..dims.len()].copy_from_slice(dims);
        Ok(Shape {
            dims: d,
            rank: dims.len(),
        })
    }

    /// The dimensions as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// `(rows, cols)` of a rank-2 shape, or an error naming `op`.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.dims() {
            &[r, c] => Ok((r, c)),
            _ => Err(Error::BadRank {
                op,
                expected: 2,
                got: *self,
            }),
        }
    }

    /// `(n, c, h, w)` of a rank-4 shape, or an error naming `op`.
    pub fn dims4(&self, op: &'static str) -> Result<(usize, usize, usize, usize)> {
        match self.dims() {
            &[n, c, h, w] => Ok((n, c, h, w)),
            _ => Err(Error::BadRank {
                op,
                expected: 4,
                got: *self,
            }),
        }
    }

    /// Views the shape as a matrix: first dimension × product of the rest (a scalar is 1×1).
    pub fn as_matrix(&self) -> (usize, usize) {
        match self.dims() {
            [] => (1, 1),
            [n] => (1, *n),
            [n, rest @ ..] => (*n, rest.iter().product()),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}
