//! Compute kernels that know nothing of gradients: matrix products, im2col / col2im and the
//! convolution products built on them, batched transposes, and a blocked Cholesky.

pub mod cholesky;
pub mod conv;
pub mod gemm;
pub mod im2col;
pub mod spin;
pub mod transpose;

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements of work below which a kernel stays on the calling thread: waking rayon's workers
/// costs tens of microseconds, more than a small layer's whole kernel.
pub(crate) const PAR_MIN_WORK: usize = 1 << 15;

/// `f(i, out_i)` for the `i`-th chunk (length `len`) of `out`, across rayon's threads when
/// `work` (elements touched) is at least [`PAR_MIN_WORK`]. Each chunk is one example or one
/// image plane, so results never depend on the thread count.
pub(crate) fn for_chunks<A: Send>(
    out: &mut [A],
    len: usize,
    work: usize,
    f: impl Fn(usize, &mut [A]) + Sync + Send,
) {
    if work >= PAR_MIN_WORK {
        out.par_chunks_mut(len.max(1))
            .enumerate()
            .for_each(|(i, o)| f(i, o));
    } else {
        out.chunks_mut(len.max(1))
            .enumerate()
            .for_each(|(i, o)| f(i, o));
    }
}

/// [`for_chunks`] with a matching input chunk: `f(i, out_i, in_i)`, `in_i` of length `in_len`.
pub(crate) fn zip_chunks<A: Send, B: Sync>(
    out: &mut [A],
    out_len: usize,
    inp: &[B],
    in_len: usize,
    work: usize,
    f: impl Fn(usize, &mut [A], &[B]) + Sync + Send,
) {
    let in_len = in_len.max(1);
    for_chunks(out, out_len, work, |i, o| {
        f(i, o, &inp[i * in_len..((i + 1) * in_len).min(inp.len())])
    });
}

/// `Σ f(c)` over `chunks` (`N` sums at once), on rayon's threads when there are two chunks or
/// more; the partial sums are added in chunk order, so the result does not depend on the thread
/// count.
pub(crate) fn sum_over_chunks<T: Send, const N: usize>(
    chunks: Vec<T>,
    f: impl Fn(T) -> [f64; N] + Sync + Send,
) -> [f64; N] {
    let parts: Vec<[f64; N]> = if chunks.len() >= 2 {
        chunks.into_par_iter().map(f).collect()
    } else {
        chunks.into_iter().map(f).collect()
    };
    parts.iter().fold([0.0; N], |mut acc, p| {
        acc.iter_mut().zip(p).for_each(|(a, x)| *a += x);
        acc
    })
}

/// A vector of `len` values written by `fill`, which gets the vector's uninitialised storage:
/// no zero fill beforehand (for a 26 MB patch matrix, a `memset` of as many bytes, and the page
/// faults of touching them first).
///
/// # Safety
/// `fill` must write every element of the slice it is given.
pub(crate) unsafe fn written_by<F: Copy>(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<F>]),
) -> Vec<F> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the first `len` elements were written (caller's contract).
    unsafe { v.set_len(len) };
    v
}

/// `s` as a slice of possibly uninitialised values, for a kernel that writes into either kind of
/// buffer.
///
/// # Safety
/// Whoever writes through the result must write initialised values only.
pub(crate) unsafe fn as_uninit<F>(s: &mut [F]) -> &mut [MaybeUninit<F>] {
    // SAFETY: `MaybeUninit<F>` has the layout of `F`; the caller writes initialised values only,
    // so `s` stays initialised.
    unsafe { &mut *(s as *mut [F] as *mut [MaybeUninit<F>]) }
}
