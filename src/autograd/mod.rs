//! Reverse-mode automatic differentiation on an explicit tape (Wengert list).
//!
//! The forward pass pushes one node per op, in execution order, so the backward sweep is simply
//! the nodes in reverse. A [`Var`] is an index into the tape. One forward can feed
//! several backward sweeps ([`Tape::sweep`]), which is what the natural-gradient optimizers need
//! for the sampled Fisher: the gradient sweep from the true labels, then extra sweeps from
//! labels drawn from the model that only produce [`LayerCapture`]s.

mod backward;
mod capture;
mod gradients;
pub(crate) mod op;
mod tape;

pub(crate) use backward::Sweep;
pub use backward::{BackwardOutput, SweepMode};
pub use capture::{FisherType, GradientRows, LayerCapture, RotatedRows};
pub use gradients::Gradients;
pub(crate) use tape::Node;
pub use tape::{Tape, Var};
