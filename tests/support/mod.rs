//! What the integration tests share, in one tree: every test file says `mod support;` and
//! imports the parts it needs (`use support::curvature::{EXACT, check, rel_err};`).
//!
//! | file | job |
//! |---|---|
//! | `tensors.rs` | tolerances of the engine tests (gradient checks, GEMMs, f32 statistics); seeded tensors and stores; a dense layer's input rows (`layer_inputs`); `on_threads` (a pool of its own) |
//! | `layers.rs` | brute-force layer references: a naive convolution, im2col patches by hand, per-example gradients and Fisher blocks as plain loops |
//! | `curvature.rs` | tolerances of the curvature tests (`EXACT`, `SOLVE`, `DEGENERATE`, `GAP`); synthetic captures; relative errors, `check`, dense solves; statistics bundles |
//! | `nets.rs` | tiny f64 nets of real `Linear`/`Conv2d` layers, their captures (`real_cases`) and blocks fitted to them; the f32 image MLP of the optimizer tests and its black-bordered batches |
//! | `warm.rs` | the warm-started refresh tests: random orthogonal bases, known spectra, projectors |
//! | `data.rs` | the real MNIST / Fashion-MNIST files (`TEKFAC_DATA_DIR`) |
//! | `cli.rs` | running the `tekfac` binary (feature `cli`) |
//!
//! Test files are named by area: `autograd_`, `layers_`, `dataset_`, `curvature_` (one
//! `CurvatureBlock` and its statistics; the identities of spec §7 live in
//! `curvature_identities_<group>.rs`, one file per group), `ng_` (the `NaturalGradient`
//! optimizer built on the blocks), `cli_` (the binary).
// NOTE: each test file is its own crate and uses only part of this tree.
#![allow(dead_code)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod curvature;
pub mod data;
pub mod layers;
pub mod nets;
pub mod tensors;
pub mod warm;
