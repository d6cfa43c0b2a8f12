//! Process-level allocator setting for training loops: keep freed tensor memory mapped.
//!
//! Every training step allocates and frees the same large buffers (activations, im2col patches,
//! their gradients). glibc serves a request above its *mmap threshold* with a fresh `mmap` and
//! returns it to the kernel on `free`, and it trims the heap top once more than twice that
//! threshold is free; the next step then touches brand-new pages, one page fault per 4 KiB. For
//! the CNN preset at batch 128 that is ≈ 30,000 faults per step, a third of the step on a
//! 2-core VM. JAX/XLA and PyTorch avoid this with caching allocators; tekfac's tensors own plain
//! `Vec`s, so the equivalent is one allocator setting, made explicitly by the program.

/// Asks the C allocator to keep freed memory for reuse instead of returning it to the kernel
/// (glibc: `M_MMAP_THRESHOLD` = 32 MiB, its maximum, so buffers up to 32 MiB come from the heap;
/// `M_TRIM_THRESHOLD` = 2 GiB). The process's resident size then stays at its peak. Returns
/// `false` where this is not supported (non-glibc targets).
///
/// Call it once at start-up, before the first large allocation; the benchmarks and the training
/// binary do.
///
/// ```
/// let _ = tekfac::tensor::retain_freed_memory();
/// ```
pub fn retain_freed_memory() -> bool {
    imp::retain()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::ffi::c_int;

    // glibc's <malloc.h>: int mallopt(int param, int value).
    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;

    pub(super) fn retain() -> bool {
        // SAFETY: mallopt only changes allocator tuning parameters; any value is valid, and glibc
        // serialises it with its own lock.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn retain() -> bool {
        false
    }
}
