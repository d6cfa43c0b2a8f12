//! Compute kernels that know nothing of gradients: matrix products (and, later, im2col).

pub mod gemm;
