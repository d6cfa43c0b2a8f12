//! Parameter-free pooling layers over NCHW input (see [`crate::ops::pool`]).

use super::Module;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Float;

/// Max pooling with a `kernel` window moved by `stride`, no padding.
///
/// ```
/// use tekfac::nn::{MaxPool2d, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let ps = ParamStore::<f32>::seeded(0);
/// let mut tape = Tape::new(&ps);
/// let x = tape.input(Tensor::zeros(&[1, 3, 24, 24]));
/// let y = MaxPool2d::new(2).forward(&mut tape, x).unwrap();
/// assert_eq!(tape.value(y).dims(), &[1, 3, 12, 12]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window height and width.
    pub kernel: (usize, usize),
    /// Step between windows, rows and columns.
    pub stride: (usize, usize),
}

impl MaxPool2d {
    /// A square `size × size` window with stride `size` (non-overlapping, as in most CNNs).
    pub fn new(size: usize) -> Self {
        MaxPool2d {
            kernel: (size, size),
            stride: (size, size),
        }
    }
}

impl MaxPool2d {
    /// `relu(pool(x))` as one fused op ([`Tape::max_pool2d_relu`]): the same values and
    /// gradients as [`Module::forward`] followed by `tape.relu`, with one tensor and one pass
    /// fewer.
    pub fn forward_relu<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        tape.max_pool2d_relu(x, self.kernel, self.stride)
    }
}

impl<F: Float> Module<F> for MaxPool2d {
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        tape.max_pool2d(x, self.kernel, self.stride)
    }
}

/// Average pooling with a `kernel` window moved by `stride`, no padding.
///
/// ```
/// use tekfac::nn::{AvgPool2d, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let ps = ParamStore::<f32>::seeded(0);
/// let mut tape = Tape::new(&ps);
/// let x = tape.input(Tensor::ones(&[1, 1, 4, 6]));
/// let y = AvgPool2d::new(2).forward(&mut tape, x).unwrap();
/// assert_eq!(tape.value(y).data(), &[1.0; 6]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window height and width.
    pub kernel: (usize, usize),
    /// Step between windows, rows and columns.
    pub stride: (usize, usize),
}

impl AvgPool2d {
    /// A square `size × size` window with stride `size`.
    pub fn new(size: usize) -> Self {
        AvgPool2d {
            kernel: (size, size),
            stride: (size, size),
        }
    }
}

impl<F: Float> Module<F> for AvgPool2d {
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        tape.avg_pool2d(x, self.kernel, self.stride)
    }
}
