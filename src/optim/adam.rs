//! Adam (Kingma & Ba 2015) with bias correction, and AdamW's decoupled weight decay as an option:
//! `m ← β₁m + (1−β₁)d; v ← β₂v + (1−β₂)d²; θ ← θ − η·m̂/(√v̂ + ε)` with `m̂ = m/(1−β₁ᵗ)`,
//! `v̂ = v/(1−β₂ᵗ)`; `d = ∇ + wd·θ` (L2), or `θ ← θ − η·wd·θ` before the step (decoupled).

use super::sgd::{PassSums, chunk_sums, fused_stats};
use super::{Optimizer, StepStats, load_buffers, save_buffers};
use crate::autograd::BackwardOutput;
use crate::checkpoint::TensorDict;
use crate::error::Error;
use crate::error::Result;
use crate::kernels::sum_over_chunks;
use crate::params::ParamStore;
use crate::tensor::{Float, PAR_CHUNK, Tensor};

/// Hyperparameters of [`Adam`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate η (usual: 1e-3).
    pub lr: f64,
    /// First-moment decay β₁ (0.9).
    pub beta1: f64,
    /// Second-moment decay β₂ (0.999).
    pub beta2: f64,
    /// ε in the denominator (1e-8).
    pub eps: f64,
    /// Weight decay (0).
    pub weight_decay: f64,
    /// AdamW: decay the weights directly instead of adding `wd·θ` to the gradient.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

/// The Adam optimizer.
///
/// The first bias-corrected step moves every coordinate by about `η`, whatever the gradient's
/// scale:
///
/// ```
/// use tekfac::optim::{Adam, AdamConfig, Optimizer};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(0);
/// let theta = params.add("theta", Tensor::from_vec(vec![1.0, -300.0], &[2])?)?;
/// let mut opt = Adam::new(AdamConfig { lr: 0.01, ..Default::default() });
/// let mut tape = Tape::new(&params);
/// let t = tape.param(theta);
/// let sq = tape.mul(t, t)?;
/// let loss = tape.sum(sq);
/// let pass = tape.backward(loss)?;
/// opt.step(&mut params, &pass)?;
/// let moved: Vec<f64> = params.get(theta).data().iter().zip([1.0, -300.0]).map(|(a, b)| a - b).collect();
/// assert!((moved[0] + 0.01).abs() < 1e-6 && (moved[1] - 0.01).abs() < 1e-6);
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Adam<F: Float = f32> {
    /// Hyperparameters (a schedule may change `lr` between steps).
    pub config: AdamConfig,
    step: u64,
    moments: Vec<Option<(Tensor<F>, Tensor<F>)>>,
}

impl<F: Float> Adam<F> {
    /// A fresh optimizer.
    pub fn new(config: AdamConfig) -> Self {
        Adam {
            config,
            step: 0,
            moments: Vec::new(),
        }
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<StepStats> {
        self.step += 1;
        let k = AdamStep::new(&self.config, self.step);
        self.moments.resize_with(params.len(), || None);
        let mut sums = PassSums::default();
        for (id, g) in pass.grads.iter() {
            let theta = params.get_mut(id);
            theta.check_same(g, "adam")?;
            let (m, v) = self.moments[id.0]
                .get_or_insert_with(|| (Tensor::zeros(g.dims()), Tensor::zeros(g.dims())));
            sums.add(adam_update_chunked(
                theta.data_mut(),
                m.data_mut(),
                v.data_mut(),
                g.data(),
                k,
            ));
        }
        Ok(fused_stats(pass, sums))
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn save_state(&self, params: &ParamStore<F>, dict: &mut TensorDict) {
        let (m, v): (Vec<_>, Vec<_>) = self.moments.iter().map(|mv| mv.clone().unzip()).unzip();
        save_buffers(params, &m, "adam.m", dict);
        save_buffers(params, &v, "adam.v", dict);
        dict.meta.insert("adam.step".into(), self.step.to_string());
    }

    fn load_state(&mut self, params: &mut ParamStore<F>, dict: &TensorDict) -> Result<()> {
        let m = load_buffers(params, "adam.m", dict)?;
        let v = load_buffers(params, "adam.v", dict)?;
        self.moments = m.into_iter().zip(v).map(|(m, v)| m.zip(v)).collect();
        let step = dict
            .meta
            .get("adam.step")
            .ok_or_else(|| Error::Checkpoint("missing adam.step".into()))?;
        self.step = step
            .parse()
            .map_err(|_| Error::Checkpoint(format!("bad adam.step `{step}`")))?;
        Ok(())
    }
}

/// The constants of one Adam step `t`: `η̂ = η/(1−β₁ᵗ)`, `√(1−β₂ᵗ)`, and the weight decay either
/// added to the gradient (`l2`) or applied to the weights (`decay = η·wd`, AdamW).
#[derive(Clone, Copy)]
struct AdamStep<F> {
    b1: F,
    b2: F,
    eps: F,
    lr_hat: F,
    sqrt_bc2: F,
    l2: F,
    decay: F,
}

impl<F: Float> AdamStep<F> {
    fn new(c: &AdamConfig, t: u64) -> Self {
        let t = t as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        let (l2, decay) = if c.decoupled {
            (F::ZERO, F::from_f64(c.lr * c.weight_decay))
        } else {
            (F::from_f64(c.weight_decay), F::ZERO)
        };
        AdamStep {
            b1: F::from_f64(c.beta1),
            b2: F::from_f64(c.beta2),
            eps: F::from_f64(c.eps),
            lr_hat: F::from_f64(c.lr / bc1),
            sqrt_bc2: F::from_f64(bc2.sqrt()),
            l2,
            decay,
        }
    }

    /// One coordinate: `d = g + l2·θ; m ← β₁m + (1−β₁)d; v ← β₂v + (1−β₂)d²;
    /// θ ← θ − (η̂·m/(√v/√(1−β₂ᵗ) + ε) + decay·θ)`; returns the step taken.
    #[inline(always)]
    fn apply(&self, th: &mut F, m: &mut F, v: &mut F, g: F) -> F {
        let d = g + self.l2 * *th;
        *m = self.b1 * *m + (F::ONE - self.b1) * d;
        *v = self.b2 * *v + (F::ONE - self.b2) * d * d;
        let u = self.lr_hat * *m / (v.sqrt() / self.sqrt_bc2 + self.eps) + self.decay * *th;
        *th -= u;
        u
    }
}

/// [`adam_update`] over chunks of [`PAR_CHUNK`] values, on rayon's threads for a large tensor;
/// returns the `chunk_sums` (`‖Δθ‖²`, `‖g‖²`, chunks of non-finite weights) as
/// `sgd_update_chunked` does (the same reasons: a memory-bound pass that two cores speed up,
/// and no second pass for the norm or the finiteness check).
fn adam_update_chunked<F: Float>(
    theta: &mut [F],
    m: &mut [F],
    v: &mut [F],
    g: &[F],
    k: AdamStep<F>,
) -> [f64; 3] {
    let tm = theta.chunks_mut(PAR_CHUNK).zip(m.chunks_mut(PAR_CHUNK));
    let tmv = tm.zip(v.chunks_mut(PAR_CHUNK));
    let chunks: Vec<_> = tmv.zip(g.chunks(PAR_CHUNK)).collect();
    sum_over_chunks(chunks, |(((t, m), v), g)| {
        chunk_sums(adam_update(t, m, v, g, &k), t, g)
    })
}

/// [`AdamStep::apply`] over slices; returns `‖Δθ‖²`.
/// NOTE: lanes of 8 with independent partial sums keep the loop vectorised (one running sum
/// would force the square root and the division to go one element at a time).
fn adam_update<F: Float>(
    theta: &mut [F],
    m: &mut [F],
    v: &mut [F],
    g: &[F],
    k: &AdamStep<F>,
) -> f64 {
    let mut sq = [F::ZERO; 8];
    let mut tc = theta.chunks_exact_mut(8);
    let mut mc = m.chunks_exact_mut(8);
    let mut vc = v.chunks_exact_mut(8);
    let mut gc = g.chunks_exact(8);
    for (((t, m), v), g) in (&mut tc).zip(&mut mc).zip(&mut vc).zip(&mut gc) {
        for j in 0..8 {
            let u = k.apply(&mut t[j], &mut m[j], &mut v[j], g[j]);
            sq[j] += u * u;
        }
    }
    let rest = tc.into_remainder().iter_mut().zip(mc.into_remainder());
    for ((t, m), (v, g)) in rest.zip(vc.into_remainder().iter_mut().zip(gc.remainder())) {
        let u = k.apply(t, m, v, *g);
        sq[0] += u * u;
    }
    sq.iter().map(|x| x.to_f64()).sum()
}
