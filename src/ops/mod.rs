//! Differentiable ops. Each file holds, for its ops, the `Tape` method that records the op, the
//! forward kernel call, and `<op>_backward`.

pub mod activation;
pub mod conv2d;
pub mod dense;
pub mod eigen_dense;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod pool;
pub mod reduce;
