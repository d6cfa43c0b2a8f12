//! Reverse-mode automatic differentiation on an explicit tape (Wengert list).

mod capture;

pub use capture::{FisherType, LayerCapture};
