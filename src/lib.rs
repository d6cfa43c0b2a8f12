//! # tekfac
//!
//! A from-scratch deep-learning framework whose reason to exist is second-order optimisation
//! done right and done readably: its own tensors and reverse-mode autograd, layers that record
//! Kronecker-factored curvature statistics inside their own backward pass, and the K-FAC, EKFAC,
//! TKFAC and TEKFAC optimizers beside SGD and Adam.
//!
//! ```text
//! dataset ─▶ Tape (forward records nodes) ─▶ backward ─▶ BackwardOutput { loss, grads, captures }
//!                                                               │
//! ParamStore ◀── Optimizer::step (Sgd │ Adam │ natural gradient)◀┘
//! ```
//!
//! A training step, end to end:
//!
//! ```
//! use tekfac::{ParamStore, Tape, Tensor};
//! use tekfac::nn::{Linear, Module};
//!
//! let mut params = ParamStore::<f32>::seeded(0);
//! let fc = Linear::new(&mut params, "fc", 3, 2, true).unwrap();
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0], &[2, 3]).unwrap();
//! let mut tape = Tape::new(&params);
//! let xv = tape.input(x);
//! let logits = fc.forward(&mut tape, xv).unwrap();
//! let loss = tape.cross_entropy(logits, &[0, 1]).unwrap();
//! let out = tape.backward(loss).unwrap();
//! let w = fc.weight();
//! assert_eq!(out.grads.get(w).unwrap().dims(), &[2, 3]);
//! ```

#![warn(missing_docs)]

// NOTE: the `tekfac` command's code (`cli`) names the library `tekfac::`, as a user would.
extern crate self as tekfac;

pub mod autograd;
pub mod checkpoint;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod curvature;
pub mod dataset;
pub mod error;
pub mod gradcheck;
pub mod kernels;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod params;
pub mod tensor;
pub mod train;

pub use autograd::{
    BackwardOutput, FisherType, GradientRows, Gradients, LayerCapture, RotatedRows, SweepMode,
    Tape, Var,
};
pub use error::{Error, Result};
pub use kernels::spin::{SpinGuard, spin_workers};
pub use params::{LayerId, LayerInfo, LayerKind, ParamId, ParamStore};
pub use tensor::{Float, Shape, Tensor};

/// Sets the number of worker threads of rayon's global pool, which runs every parallel kernel:
/// matrix products (cut into per-thread panels, see [`kernels::gemm`]), im2col, elementwise maps
/// and the optimizers' updates.
///
/// Call it once, from the thread that will run the training loop, before the first
/// computation; later calls cannot change a pool that already started. `0` means all cores.
/// Results do not depend on the thread count.
///
/// NOTE: the calling thread becomes one of the pool's workers. A kernel it starts then puts
/// the other half of its work on its own queue, where an idle worker steals it, instead of
/// posting the whole job to the pool and sleeping until it is done: that saves a sleep and a
/// wake-up of the calling thread, tens of microseconds, for each of the dozen parallel kernels
/// of a training step.
///
/// Returns whether this call built the pool: `false` when something parallel (a `rayon::join`
/// while reading a dataset, say) already started rayon's default pool, whose size and threads
/// then stay as they are.
pub fn set_threads(threads: usize) -> bool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .build_global()
        .is_ok()
}
