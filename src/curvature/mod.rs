//! Curvature blocks for K-FAC, EKFAC, TKFAC and TEKFAC: the mathematics, in f64.
//!
//! The spec is `shared/spec/tekfac-math.md` (cited as "spec §…"); `docs/math.md` repeats the
//! notation. One [`CurvatureBlock`] approximates the Fisher block of one dense or conv layer.
//!
//! # Notation and shapes
//!
//! * A layer's block matrix is `W̄ = [W | b]`, `[d_out, d_in']`, with `d_in' = d_in + 1` when the
//!   layer has a bias (homogeneous coordinate `ā = [a; 1]`, spec §1.2).
//! * A [`LayerCapture`](crate::LayerCapture) holds `a: [rows, d_in']` and one `g: [rows, d_out]`
//!   per backpropagated sweep `s`. Rows are example-major: rows `n·T .. (n+1)·T` belong to
//!   example `n`, `T = rows_per_example` (1 for dense, `out_h·out_w` for conv).
//! * Per-example gradient of sweep `s`: `DW_{n,s} = Σ_t g_{s,(n,t)} ā_{(n,t)}ᵀ`, `[d_out, d_in']`.
//! * Exact Fisher block: `F = (1/N) Σ_n Σ_s vec(DW_{n,s}) vec(DW_{n,s})ᵀ` ([`exact`]).
//!
//! # Vec order (the "central pitfall" of spec §2)
//!
//! Weights are row-major, so `vec(W̄)` stacks **rows**: entry `(o, i)` sits at `o·d_in' + i`.
//! Then `vec(g āᵀ) = g ⊗ ā` and the dense Fisher of a dense layer is
//! `E[(ggᵀ) ⊗ (āāᵀ)]`, so K-FAC reads **`G ⊗ A`** here (the papers' column stacking gives
//! `A ⊗ G`). `(P ⊗ R) vec(X) = vec(P X Rᵀ)`, so matrix-form updates such as `G⁻¹ ∇W̄ A⁻¹` are the
//! same in both conventions; only dense reconstructions ([`CurvatureBlock::to_dense`]) swap
//! the factors, and a test pins ours.
//!
//! # Fisher types (spec §1.1)
//!
//! Empirical (training labels, one sweep), sampled (k sweeps, `1/√k` folded into `g`) or exact
//! type-2 (one sweep per output unit, `√p_c` folded in). Every (example, sweep) pair is one
//! sample of `g`: the factors `A, G, δ, δΦ, δΨ` sum over sweeps; `s*` and `Θ` square each
//! rotated `DW_{n,s}` before summing over sweeps.
//!
//! # The four variants share one block and differ in exactly two places ([`Variant`])
//!
//! 1. **Factors** ([`KroneckerFactors`]): K-FAC/EKFAC use `A = E[āāᵀ]`, `G = E[ggᵀ]`;
//!    TKFAC/TEKFAC (`trace_restricted`) the raw numerators `δΦ = E[‖g‖²āāᵀ]`,
//!    `δΨ = E[‖ā‖²ggᵀ]`, `δ = E[‖ā‖²‖g‖²]`. Either way `F̂ = (g_factor ⊗ a_factor) / trace_scale`
//!    with `trace_scale = 1` for K-FAC and `δ` for TKFAC.
//! 2. **Diagonal in the Kronecker eigenbasis** `Q = Q_G ⊗ Q_A` ([`CurvatureBlock::eigenvalues`]):
//!    the eigenvalue products `d_g d_aᵀ / trace_scale` (K-FAC; TKFAC's `e_Ψ e_Φᵀ/δ = δ·ψφᵀ`), or
//!    (`corrects_eigenvalues`) the running average of squared rotated per-example gradients
//!    `E_n Σ_s (Q_Gᵀ DW_{n,s} Q_A)^∘2` (EKFAC's `s*`, TEKFAC's `Θ`), re-seeded from the products
//!    whenever the basis is rebuilt (spec §1.5), so EKFAC starts as K-FAC and TEKFAC as TKFAC.
//!
//! Preconditioning is the same for all four: rotate in, divide elementwise by the damped
//! diagonal ([`Damping`]), rotate out.
//!
//! # A block's life
//!
//! `observe` (statistics EMA) → `refresh` (eigenbasis, re-seed) → `rescale` (EKFAC/TEKFAC) →
//! `precondition`. Each runs on its own schedule, decided by the optimizer (spec §1.3), which
//! also decides the damping of each block (`optim::DampingPolicy`, spec §1.7). `state`/`restore` export
//! the block as named f64 arrays for checkpoints ([`StateArray`]).
//!
//! | file | job |
//! |---|---|
//! | `variant.rs` | the two switches |
//! | `rows.rs` | capture → f64 matrices, shape checks |
//! | `factors.rs` | `A, G` or `δΦ, δΨ, δ` from a capture (switch 1) |
//! | `average.rs` | convex EMA, first observation initialises |
//! | `basis.rs` | eigendecompositions, rotations, `Q diag Qᵀ` |
//! | `deflate.rs` | exactly-zero rows and columns split off as eigenvalue-0 eigenvectors |
//! | `refine.rs` | warm-started eigenbasis of one factor by GEMMs (Jacobi step + Cholesky-QR) |
//! | `warm.rs` | refresh policy: warm or exact per factor, and why |
//! | `correction.rs` | `s*`/`Θ` batch estimate (switch 2) |
//! | `damping.rs` | damping modes and their damped diagonals, Eq. 3.5 of one block |
//! | `block.rs` | `CurvatureBlock`: the readable f64 spec path |
//! | `fast.rs` | `FastBlock`: the same preconditioning in the training precision (hot path) |
//! | `state.rs` | checkpoint arrays |
//! | `exact.rs` | brute-force Fisher, vec/Kronecker helpers (the test oracle) |
//! | `fast_stats.rs` | f32 statistics path: f32 rows, blocked f32 grams summed in f64 or blended in place |
//! | `pending.rs` | f32 statistics of several steps held as rows, blended as one stacked gram |
//! | `fast_factors.rs` | `factors.rs` in f32 GEMMs (f64 results) |
//! | `fast_correction.rs` | `correction.rs` in f32 GEMMs (f64 results) |
//! | `probe.rs` | a block fitted to one capture; its step against the exact natural gradient |
//!
//! ```
//! use tekfac::curvature::{CurvatureBlock, Damping, Variant};
//! use tekfac::{LayerCapture, LayerId, LayerInfo, LayerKind, ParamId, Tensor};
//! use nalgebra::DMatrix;
//!
//! let info = LayerInfo { name: "fc".into(), kind: LayerKind::Dense, weight: ParamId(0),
//!                        bias: Some(ParamId(1)), d_out: 2, d_in: 1 };
//! // Two examples: ā = [a, 1], g per example.
//! let a = Tensor::<f64>::from_vec(vec![0.5, 1.0, -2.0, 1.0], &[2, 2]).unwrap();
//! let g = Tensor::<f64>::from_vec(vec![1.0, 0.0, 0.3, -1.0], &[2, 2]).unwrap();
//! let capture = LayerCapture { layer: LayerId(0), a, g: vec![g], rows_per_example: 1 };
//! let mut block = CurvatureBlock::new(Variant::Tekfac, &info, 0.95);
//! block.observe(&capture).unwrap();
//! block.refresh().unwrap();
//! block.rescale(&capture).unwrap();
//! let grad = DMatrix::from_row_slice(2, 2, &[0.1, -0.2, 0.3, 0.4]);
//! let step = block.precondition(&grad, &Damping::Additive(1e-3)).unwrap();
//! assert!(step.iter().all(|x| x.is_finite()));
//! ```

mod average;
mod basis;
mod block;
mod change;
mod correction;
mod damping;
mod deflate;
pub mod exact;
mod factors;
mod fast;
mod fast_correction;
mod fast_factors;
mod fast_stats;
mod pending;
pub mod probe;
mod refine;
mod rowmat;
mod rows;
mod state;
mod variant;
mod warm;

pub use average::{AllFinite, BatchStatistic, Blend, MovingAverage, Shaped};
pub use basis::{BasisFailure, KroneckerBasis};
pub use block::CurvatureBlock;
pub use change::BasisChange;
pub use correction::corrected_batch;
pub use damping::{Damping, trace_adaptive};
pub use factors::KroneckerFactors;
pub use fast::{FastBasis, FastBlock};
pub use fast_correction::{
    FastCorrection, fast_corrected, fast_corrected_batch, fast_corrected_in_basis,
};
pub use fast_factors::{FastFactors, fast_factors, fast_kfac, fast_tkfac};
pub use fast_stats::{FastRows, GramSplit, PANEL, ROW_BLOCK, blend_gram, gram, gram_with};
pub use pending::{PendingFactors, PendingParts};
pub use refine::{
    F32_STEERING_FROM, RefineFailure, Refined, Steering, off_diagonal_mass, refine_eigenbasis,
    refine_eigenbasis_with, refine_head_columns,
};
pub use rows::{CaptureRows, RowLayout, matrix_from_tensor};
pub use state::StateArray;
pub use variant::Variant;
pub use warm::{EigenRefresh, ExactReason, FactorRefresh, RefreshReport, WarmStart};
