//! SGD with heavy-ball (or Nesterov) momentum and L2 weight decay, as in PyTorch:
//! `d = ∇ + wd·θ; m ← μ·m + d; θ ← θ − η·(Nesterov ? d + μ·m : m)`.

use super::{Optimizer, StepStats, load_buffers, save_buffers};
use crate::autograd::BackwardOutput;
use crate::checkpoint::TensorDict;
use crate::error::Result;
use crate::kernels::sum_over_chunks;
use crate::params::ParamStore;
use crate::tensor::{Float, PAR_CHUNK, Tensor, chunk_all_finite, chunk_sum_squares};

/// Hyperparameters of [`Sgd`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate η (0.05, the default of `tekfac train`; usual: 0.01–0.1).
    pub lr: f64,
    /// Momentum μ (usual: 0.9; 0 = plain gradient descent).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay added to the gradient (usual: 0 or 5e-4).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// Stochastic gradient descent with momentum.
///
/// One step on `L = Σ θ²` (gradient `2θ`) from `θ = [1, −2]` with `η = 0.1`, no momentum:
///
/// ```
/// use tekfac::optim::{Optimizer, Sgd, SgdConfig};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(0);
/// let theta = params.add("theta", Tensor::from_vec(vec![1.0, -2.0], &[2])?)?;
/// let mut opt = Sgd::new(SgdConfig { lr: 0.1, momentum: 0.0, ..Default::default() });
/// let mut tape = Tape::new(&params);
/// let t = tape.param(theta);
/// let sq = tape.mul(t, t)?;
/// let loss = tape.sum(sq);
/// let pass = tape.backward_with(loss, opt.fisher())?; // FisherType::Off
/// let stats = opt.step(&mut params, &pass)?;
/// assert_eq!(params.get(theta).data(), &[0.8, -1.6]); // θ − 0.1·2θ
/// assert_eq!(stats.loss, 5.0);
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sgd<F: Float = f32> {
    /// Hyperparameters (the learning rate may be changed between steps by a schedule).
    pub config: SgdConfig,
    momentum: Vec<Option<Tensor<F>>>,
}

impl<F: Float> Sgd<F> {
    /// A fresh optimizer with zero momentum buffers.
    pub fn new(config: SgdConfig) -> Self {
        Sgd {
            config,
            momentum: Vec::new(),
        }
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<StepStats> {
        let c = self.config;
        let (lr, mu, wd) = (
            F::from_f64(c.lr),
            F::from_f64(c.momentum),
            F::from_f64(c.weight_decay),
        );
        self.momentum.resize_with(params.len(), || None);
        let mut sums = PassSums::default();
        for (id, g) in pass.grads.iter() {
            let theta = params.get_mut(id);
            theta.check_same(g, "sgd")?;
            let buf = self.momentum[id.0].get_or_insert_with(|| Tensor::zeros(g.dims()));
            sums.add(sgd_update_chunked(
                theta.data_mut(),
                buf.data_mut(),
                g.data(),
                [lr, mu, wd],
                c.nesterov,
            ));
        }
        Ok(fused_stats(pass, sums))
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn save_state(&self, params: &ParamStore<F>, dict: &mut TensorDict) {
        save_buffers(params, &self.momentum, "sgd.momentum", dict);
    }

    fn load_state(&mut self, params: &mut ParamStore<F>, dict: &TensorDict) -> Result<()> {
        self.momentum = load_buffers(params, "sgd.momentum", dict)?;
        Ok(())
    }
}

/// What the fused update pass of a first-order step found, over all its chunks: `‖Δθ‖²`,
/// `‖g‖²` and the number of chunks whose updated weights are not all finite.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PassSums([f64; 3]);

impl PassSums {
    /// Adds the sums of one parameter's pass.
    pub(super) fn add(&mut self, part: [f64; 3]) {
        self.0.iter_mut().zip(part).for_each(|(a, x)| *a += x);
    }
}

/// The sums of one chunk of the fused pass, right after it updated `theta` from `g` (both
/// still in cache): `[‖Δθ‖² (given), ‖g‖², 1 if a written weight is not finite else 0]`.
pub(super) fn chunk_sums<F: Float>(update_sq: f64, theta: &[F], g: &[F]) -> [f64; 3] {
    let bad = !chunk_all_finite(theta);
    [update_sq, chunk_sum_squares(g), f64::from(u8::from(bad))]
}

/// The statistics of a first-order step whose update pass also summed `‖Δθ‖²` and `‖g‖²` and
/// checked every weight it wrote ([`StepStats::weights_finite`]).
pub(super) fn fused_stats<F: Float>(pass: &BackwardOutput<F>, sums: PassSums) -> StepStats {
    let [update_sq, grad_sq, bad_chunks] = sums.0;
    StepStats {
        loss: pass.loss,
        grad_norm: grad_sq.sqrt(),
        update_norm: update_sq.sqrt(),
        weights_finite: Some(bad_chunks == 0.0),
        ..Default::default()
    }
}

/// [`sgd_update`] over chunks of [`PAR_CHUNK`] values, on rayon's threads for a large tensor;
/// returns the [`chunk_sums`] added up: `‖Δθ‖²`, `‖g‖²`, and how many chunks of the updated
/// weights hold a NaN or infinity (each chunk checked right after its update, in cache, so the
/// training loop needs no pass of its own over the weights).
///
/// NOTE: the update reads θ, m and g and writes θ and m, 10.7 MB per MLP step: it is bound by
/// memory bandwidth, which two cores double. `‖g‖²` (for `StepStats::grad_norm`) is summed
/// chunk by chunk while the chunk is still in cache, instead of in a second pass over the
/// gradients; the chunks are those of `Tensor::sum_squares`, so it equals
/// `Gradients::global_norm` exactly. Chunk sums are added in order: no result depends on the
/// number of threads.
pub(crate) fn sgd_update_chunked<F: Float>(
    theta: &mut [F],
    m: &mut [F],
    g: &[F],
    hyper: [F; 3],
    nesterov: bool,
) -> [f64; 3] {
    let chunks = theta.chunks_mut(PAR_CHUNK).zip(m.chunks_mut(PAR_CHUNK));
    let chunks: Vec<_> = chunks.zip(g.chunks(PAR_CHUNK)).collect();
    sum_over_chunks(chunks, |((t, m), g)| {
        chunk_sums(sgd_update(t, m, g, hyper, nesterov), t, g)
    })
}

/// `d = g + wd·θ; m ← μm + d; θ ← θ − η·(m or d + μm)` over slices; returns `‖Δθ‖²`.
/// NOTE: lanes of 8 with independent partial sums keep the loop vectorised.
pub(crate) fn sgd_update<F: Float>(
    theta: &mut [F],
    m: &mut [F],
    g: &[F],
    [lr, mu, wd]: [F; 3],
    nesterov: bool,
) -> f64 {
    let step = |t: &mut F, m: &mut F, g: F| -> F {
        let d = g + wd * *t;
        *m = mu * *m + d;
        let u = if nesterov {
            lr * (d + mu * *m)
        } else {
            lr * *m
        };
        *t -= u;
        u
    };
    let mut sq = [F::ZERO; 8];
    let mut tc = theta.chunks_exact_mut(8);
    let mut mc = m.chunks_exact_mut(8);
    let mut gc = g.chunks_exact(8);
    for ((t, m), g) in (&mut tc).zip(&mut mc).zip(&mut gc) {
        for j in 0..8 {
            let u = step(&mut t[j], &mut m[j], g[j]);
            sq[j] += u * u;
        }
    }
    for ((t, m), g) in tc
        .into_remainder()
        .iter_mut()
        .zip(mc.into_remainder())
        .zip(gc.remainder())
    {
        let u = step(t, m, *g);
        sq[0] += u * u;
    }
    sq.iter().map(|x| x.to_f64()).sum()
}
