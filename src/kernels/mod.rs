//! Compute kernels that know nothing of gradients: matrix products, im2col / col2im and the
//! convolution products built on them, and batched transposes.

pub mod conv;
pub mod gemm;
pub mod im2col;
pub mod transpose;

use rayon::prelude::*;

/// Elements of work below which a kernel stays on the calling thread: waking rayon's workers
/// costs tens of microseconds, more than a small layer's whole kernel.
pub(crate) const PAR_MIN_WORK: usize = 1 << 15;

/// `f(i, out_i, in_i)` for the `i`-th chunks of `out` (length `out_len`) and `inp` (length
/// `in_len`), across rayon's threads when `work` (elements touched) is at least
/// [`PAR_MIN_WORK`]. Each chunk is one example or one image plane, so results never depend on the
/// thread count.
pub(crate) fn zip_chunks<A: Send, B: Sync>(
    out: &mut [A],
    out_len: usize,
    inp: &[B],
    in_len: usize,
    work: usize,
    f: impl Fn(usize, &mut [A], &[B]) + Sync + Send,
) {
    let (out_len, in_len) = (out_len.max(1), in_len.max(1));
    if work >= PAR_MIN_WORK {
        out.par_chunks_mut(out_len)
            .zip(inp.par_chunks(in_len))
            .enumerate()
            .for_each(|(i, (o, x))| f(i, o, x));
    } else {
        out.chunks_mut(out_len)
            .zip(inp.chunks(in_len))
            .enumerate()
            .for_each(|(i, (o, x))| f(i, o, x));
    }
}
