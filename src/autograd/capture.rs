//! What a dense or convolution layer saw in a backward sweep: the rows it used for `∂L/∂W`.
//!
//! This is the curvature "hook" of tekfac, and it is not a hook: the fused dense and conv
//! backward already hold their input rows `ā` and output gradients `g`; when capture is on they
//! hand the same rows out, next to the gradients, as plain data.
//!
//! Notation (docs/math.md): for example `n` and location `t` (one location for dense layers),
//! `DW_n = Σ_t g_{n,t} ā_{n,t}ᵀ` is the per-example gradient of the per-example loss. With
//! several backpropagated vectors per example (sampled or exact Fisher), sweep `s` gives
//! `DW_{n,s}` and the Fisher block is `F = (1/N) Σ_n Σ_s vec(DW_{n,s}) vec(DW_{n,s})ᵀ`.

use crate::params::LayerId;
use crate::tensor::{Float, Tensor};

/// Which targets the captured `g` rows are backpropagated from.
///
/// `Sampled { k, .. }` adds `k` capture-only sweeps, `Exact` one per output unit:
///
/// ```
/// use tekfac::nn::{Linear, Module};
/// use tekfac::{FisherType, ParamStore, Tape, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(0);
/// let fc = Linear::new(&mut params, "fc", 2, 3, true)?;
/// for (fisher, sweeps) in [
///     (FisherType::Empirical, 1),
///     (FisherType::Sampled { k: 2, seed: 7 }, 2),
///     (FisherType::Exact, 3), // one per class
/// ] {
///     let mut tape = Tape::new(&params);
///     let x = tape.input(Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0], &[2, 2])?);
///     let logits = fc.forward(&mut tape, x)?;
///     let loss = tape.cross_entropy(logits, &[2, 0])?;
///     let pass = tape.backward_with(loss, fisher)?;
///     assert_eq!(pass.captures[0].g.len(), sweeps);
/// }
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FisherType {
    /// No capture: the backward sweep computes gradients only.
    #[default]
    Off,
    /// Training labels: `g` comes from the same sweep as the gradients (no extra cost).
    Empirical,
    /// `k` labels drawn from the model's predictive distribution (true Fisher, Monte Carlo);
    /// one extra backward sweep per sample, each scaled by `1/√k`.
    Sampled {
        /// Samples per example.
        k: usize,
        /// Seed of the label sampler.
        seed: u64,
    },
    /// Type-2 / GGN: one backpropagated vector per output column, weighted so the sum of outer
    /// products is the exact expectation over labels. For small nets and tests.
    Exact,
}

/// The rows one dense or conv layer used for its weight gradient, for every sweep.
///
/// For a dense layer each row is one example, and the per-example gradient is
/// `DW_n = g_n ā_nᵀ`; its mean over the batch is the tape's gradient (identity 16):
///
/// ```
/// use tekfac::nn::{Linear, Module};
/// use tekfac::{FisherType, ParamStore, Tape, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(1);
/// let fc = Linear::new(&mut params, "fc", 2, 2, false)?;
/// let mut tape = Tape::new(&params);
/// let x = tape.input(Tensor::from_vec(vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0], &[3, 2])?);
/// let logits = fc.forward(&mut tape, x)?;
/// let loss = tape.cross_entropy(logits, &[0, 1, 1])?;
/// let pass = tape.backward_with(loss, FisherType::Empirical)?;
/// let c = &pass.captures[0];
/// assert_eq!((c.examples(), c.rows_per_example), (3, 1));
/// // (1/N) gᵀā, with g already multiplied by the batch size:
/// let mean = c.g[0].matmul(&c.a, true, false)?.scale(1.0 / 3.0);
/// let grad = pass.grads.get(fc.weight()).unwrap();
/// assert!(mean.sub(grad)?.sum_squares() < 1e-24);
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LayerCapture<F: Float = f32> {
    /// The layer (curvature block).
    pub layer: LayerId,
    /// `[rows, d_in (+1)]`: inputs ā (conv: im2col patches), trailing 1 when the layer has a bias.
    pub a: Tensor<F>,
    /// One `[rows, d_out]` tensor per backpropagated sweep: `∂ℓ_n/∂s`, the per-example loss
    /// gradient (× batch size under a mean loss), with the sweep's weight folded in
    /// (`1/√k` for `Sampled`, `√p_c` for `Exact`, 1 for `Empirical`).
    pub g: Vec<Tensor<F>>,
    /// Rows per example: 1 for dense, `out_h·out_w` for conv.
    pub rows_per_example: usize,
}

impl<F: Float> LayerCapture<F> {
    /// Number of examples in the batch.
    pub fn examples(&self) -> usize {
        self.a.dims()[0] / self.rows_per_example.max(1)
    }
}

/// A dense layer's true-label gradient in its low-rank form: `∂L/∂W̄ = gᵀ·ā` exactly, with
/// `ā = [x | 1]` and `g = dY`, the gradient of the mean loss (not batch-scaled).
///
/// The natural-gradient optimizers rotate a dense layer's gradient into the Kronecker eigenbasis
/// from these rows when that is cheaper than from the gathered `[d_out, d_in']` gradient
/// (`Q_Gᵀ gᵀā Q_A = (g Q_G)ᵀ(ā Q_A)`). Handed out next to the gradients when the optimizer asks
/// for them ([`crate::Tape::backward_full`]).
#[derive(Clone, Debug)]
pub struct GradientRows<F: Float = f32> {
    /// The layer (curvature block).
    pub layer: LayerId,
    /// `[rows, d_in (+1)]`: the inputs ā, trailing 1 when the layer has a bias.
    pub a: Tensor<F>,
    /// `[rows, d_out]`: `dY`, the upstream gradient of the mean loss.
    pub g: Tensor<F>,
}

impl<F: Float> GradientRows<F> {
    /// Number of rows (examples).
    pub fn rows(&self) -> usize {
        self.a.dims()[0]
    }
}

/// A capture's rows as a dense layer trained in its Kronecker eigenbasis saw them
/// (`ops/eigen_dense.rs`): `â = ā Q_A` from the forward and `ĝ_s = g_s Q_G` for each sweep `s`
/// of the capture (same order, same batch scaling), in the basis the layer was stored in during
/// the pass. EKFAC's and TEKFAC's re-scaling needs exactly these products
/// (`curvature::fast_corrected_in_basis`), so while the basis has not changed since the pass
/// they are not formed a second time.
#[derive(Clone, Debug)]
pub struct RotatedRows<F: Float = f32> {
    /// The layer (curvature block).
    pub layer: LayerId,
    /// `[rows, d_in']`: `â = ā Q_A`.
    pub a_hat: Tensor<F>,
    /// One `[rows, d_out]` tensor per captured sweep: `ĝ_s = g_s Q_G`, `g_s` as in
    /// [`LayerCapture::g`].
    pub g_hat: Vec<Tensor<F>>,
}
