//! Keeping rayon's idle workers awake through a training loop ([`spin_workers`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Keeps the global pool's other workers polling for work, instead of going to sleep, until
/// the returned guard is dropped. Call it from the thread that runs the loop, after
/// [`crate::set_threads`]; with one thread it does nothing.
///
/// A training step alternates parallel kernels (matrix products in one panel per thread, the
/// update's chunks) with short serial stretches (bias, loss, batch assembly). An idle rayon
/// worker sleeps after a few microseconds without work, and on a virtual machine waking it
/// (and the idle CPU it sleeps on) can take longer than the panel it was woken for, so the
/// calling thread ends up computing most panels itself. A polling worker steals its panel at
/// once. The price is one core kept busy while the loop runs serial code, as XLA's and
/// OpenMP's pools do by default. Results do not change: which thread computes a panel or a
/// chunk never changes its value.
///
/// ```
/// tekfac::set_threads(2);
/// let x = tekfac::Tensor::<f32>::ones(&[256, 256]);
/// let before = x.matmul(&x, false, false)?;
/// let awake = tekfac::spin_workers();
/// assert_eq!(x.matmul(&x, false, false)?, before);
/// drop(awake); // the workers may sleep again
/// # Ok::<(), tekfac::Error>(())
/// ```
#[must_use = "the workers stop polling when the guard is dropped"]
pub fn spin_workers() -> SpinGuard {
    let stop = Arc::new(AtomicBool::new(false));
    let caller = rayon::current_thread_index();
    if rayon::current_num_threads() > 1 {
        let flag = Arc::clone(&stop);
        // NOTE: a broadcast puts one copy on each worker's own queue, so the calling thread
        // (a worker after `set_threads`) never picks up another worker's copy: it returns at
        // once from its own, and no copy can keep the caller from dropping the guard.
        rayon::spawn_broadcast(move |ctx| {
            if Some(ctx.index()) == caller {
                return;
            }
            while !flag.load(Ordering::Relaxed) {
                // NOTE: a yield to the OS, not a spin: on a busy machine the polling worker
                // gives its core to whatever else is runnable instead of taking time from the
                // threads that compute (a pure spin made steps twice as slow beside a compile).
                if let Some(rayon::Yield::Idle) = rayon::yield_now() {
                    std::thread::yield_now();
                }
            }
        });
    }
    SpinGuard { stop }
}

/// Returned by [`spin_workers`]: the workers poll for work until it is dropped.
#[derive(Debug)]
pub struct SpinGuard {
    stop: Arc<AtomicBool>,
}

impl Drop for SpinGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
