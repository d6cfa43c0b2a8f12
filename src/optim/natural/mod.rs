//! `NaturalGradient`: K-FAC, EKFAC, TKFAC and TEKFAC over one shared curvature block per layer.
//!
//! Each step (spec §1.3, §6.7): **statistics** (every `stats_interval`) → **eigenbasis** (every
//! `eigen_interval`, parallel across layers) → **re-scaling** of s*/Θ (every `scale_interval`,
//! EKFAC/TEKFAC) → **update**: for each layer `U = precondition(∇W̄ + wd·W̄, λ)` (parallel across
//! layers), optional KL-clipping `ν = min(1, √(κ / Σ η²⟨U, ∇⟩))`, heavy-ball momentum
//! `m ← μm + νU`, `W̄ ← W̄ − η·m`. Parameters that belong to no layer get plain SGD-momentum
//! (`m ← μm + ∇ + wd·θ`, `θ ← θ − η·m`).

mod config;
mod layout;

pub use crate::curvature::{DenseInCnn, Variant};
pub use config::NgConfig;

use super::{Optimizer, StepStats};
use crate::autograd::{BackwardOutput, FisherType, LayerCapture};
use crate::checkpoint::TensorDict;
use crate::curvature::{CurvatureBlock, Damping, StateArray, network_damping};
use crate::error::{Error, Result};
use crate::params::{LayerInfo, ParamId, ParamStore};
use crate::tensor::Float;
use rayon::prelude::*;
use std::time::Instant;

/// A natural-gradient optimizer of one of the four variants.
#[derive(Clone, Debug)]
pub struct NaturalGradient {
    variant: Variant,
    /// Hyperparameters (a schedule may change `lr` between steps).
    pub config: NgConfig,
    layers: Vec<LayerInfo>,
    blocks: Vec<CurvatureBlock>,
    momentum: Vec<Option<Vec<f32>>>,
    /// Parameters outside every layer (e.g. a learnable scale): plain SGD-momentum.
    loose: Vec<(ParamId, String)>,
    /// Their momentum buffers, parallel to `loose`.
    loose_momentum: Vec<Option<Vec<f32>>>,
    step: u64,
}

impl NaturalGradient {
    /// One curvature block per dense/conv layer of `params`.
    pub fn new<F: Float>(
        variant: Variant,
        config: NgConfig,
        params: &ParamStore<F>,
    ) -> Result<Self> {
        if config.stats_interval == 0 || config.eigen_interval == 0 || config.scale_interval == 0 {
            return Err(Error::invalid(
                "NaturalGradient",
                "intervals must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&config.decay) {
            let msg = format!("decay must lie in [0, 1], got {}", config.decay);
            return Err(Error::invalid("NaturalGradient", msg));
        }
        let layers = params.layers().to_vec();
        let in_layer = |id: ParamId| layers.iter().any(|l| l.weight == id || l.bias == Some(id));
        let loose: Vec<(ParamId, String)> = params
            .ids()
            .filter(|&id| !in_layer(id))
            .map(|id| (id, params.name(id).to_string()))
            .collect();
        let blocks = layers
            .iter()
            .map(|l| CurvatureBlock::new(variant, l, config.decay))
            .collect();
        Ok(NaturalGradient {
            variant,
            config,
            momentum: vec![None; layers.len()],
            loose_momentum: vec![None; loose.len()],
            loose,
            layers,
            blocks,
            step: 0,
        })
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The curvature block of each layer (for inspection and tests).
    pub fn blocks(&self) -> &[CurvatureBlock] {
        &self.blocks
    }

    /// The gradient rows of layer `l` when the low-rank way in is enabled and cheaper.
    /// (The hot path is f32; an f64 pass always takes the gathered gradient.)
    fn low_rank_rows<'p, F: Float>(
        &self,
        layer: usize,
        pass: &'p BackwardOutput<F>,
    ) -> Option<&'p LayerCapture<f32>> {
        if !self.low_rank_enabled() {
            return None;
        }
        let rows = pass.rows.iter().find(|c| c.layer.0 == layer)?;
        let rows = (rows as &dyn std::any::Any).downcast_ref::<LayerCapture<f32>>()?;
        let ok = rows.g.len() == 1 && self.blocks[layer].low_rank_pays(rows.a.dims()[0]);
        ok.then_some(rows)
    }

    /// What the next backward pass should capture (the [`Optimizer::fisher`] of both float
    /// types, callable without naming one): the configured Fisher type on statistics or
    /// re-scaling steps, with a fresh reproducible sampling seed each step; else `Off`.
    pub fn fisher(&self) -> FisherType {
        if !self.needs_capture() {
            return FisherType::Off;
        }
        match self.config.fisher {
            // NOTE: a fresh, reproducible sampling seed each step.
            FisherType::Sampled { k, seed } => FisherType::Sampled {
                k,
                seed: seed ^ self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            },
            other => other,
        }
    }

    /// Whether the next backward pass should hand out dense gradient rows
    /// ([`Optimizer::gradient_rows`]): with `low_rank` on, no weight decay and a dense layer.
    pub fn gradient_rows(&self) -> bool {
        self.low_rank_enabled() && self.blocks.iter().any(|b| !b.is_conv())
    }

    fn low_rank_enabled(&self) -> bool {
        self.config.low_rank && self.config.weight_decay == 0.0
    }

    fn due(&self, interval: u64) -> bool {
        self.step.is_multiple_of(interval)
    }

    fn needs_capture(&self) -> bool {
        self.due(self.config.stats_interval)
            || (self.variant.corrects_eigenvalues() && self.due(self.config.scale_interval))
    }

    /// Statistics → eigenbasis → re-scaling, each on its own interval, parallel across layers.
    fn observe(&mut self, pass: &BackwardOutput<impl Float>, stats: &mut StepStats) -> Result<()> {
        let c = &self.config;
        let do_stats = self.due(c.stats_interval);
        let do_eigen = self.due(c.eigen_interval);
        let do_scale = self.variant.corrects_eigenvalues() && self.due(c.scale_interval);
        let captures = &pass.captures;
        let find = |i: usize| captures.iter().find(|c| c.layer.0 == i);
        let t = Instant::now();
        if do_stats {
            let results: Vec<Result<()>> = self
                .blocks
                .par_iter_mut()
                .enumerate()
                .map(|(i, b)| find(i).map_or(Ok(()), |c| b.observe(c)))
                .collect();
            results.into_iter().collect::<Result<()>>()?;
        }
        stats.time_stats += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if do_eigen {
            let results: Vec<Result<()>> = self
                .blocks
                .par_iter_mut()
                .map(CurvatureBlock::refresh)
                .collect();
            for (r, l) in results.into_iter().zip(&self.layers) {
                if let Err(e) = r {
                    // NOTE: spec §1.9: skip this refresh, keep the previous basis, keep training.
                    eprintln!(
                        "warning: step {}: eigenbasis refresh of {} skipped, previous basis kept ({e})",
                        self.step, l.name
                    );
                }
            }
        }
        stats.time_eigen += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if do_scale {
            let results: Vec<Result<()>> = self
                .blocks
                .par_iter_mut()
                .enumerate()
                .map(|(i, b)| find(i).map_or(Ok(()), |c| b.rescale(c)))
                .collect();
            for (r, l) in results.into_iter().zip(&self.layers) {
                if let Err(e) = r {
                    eprintln!(
                        "warning: step {}: re-scaling of {} skipped ({e})",
                        self.step, l.name
                    );
                }
            }
        }
        stats.time_stats += t.elapsed().as_secs_f64();
        Ok(())
    }
}

impl<F: Float> Optimizer<F> for NaturalGradient {
    fn gradient_rows(&self) -> bool {
        NaturalGradient::gradient_rows(self)
    }

    fn fisher(&self) -> FisherType {
        NaturalGradient::fisher(self)
    }

    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<StepStats> {
        let mut stats = StepStats {
            loss: pass.loss,
            grad_norm: pass.grads.global_norm(),
            ..Default::default()
        };
        if self.needs_capture()
            && self.config.fisher != FisherType::Off
            && pass.captures.is_empty()
            && !self.layers.is_empty()
        {
            return Err(Error::invalid(
                "NaturalGradient",
                "the backward pass carried no captures; call backward_with(loss, opt.fisher())",
            ));
        }
        self.observe(pass, &mut stats)?;
        let t = Instant::now();
        let dampings = network_damping(self.variant, &self.config.damping_settings(), &self.blocks);
        self.blocks
            .par_iter_mut()
            .zip(&dampings)
            .map(|(b, d)| b.prepare(d))
            .collect::<Result<()>>()?;
        // Each layer's way in: the low-rank rows of its gradient when they are cheaper (dense,
        // no weight decay), else the gathered `[d_out, d_in']` gradient.
        let inputs = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| match self.low_rank_rows(i, pass) {
                Some(rows) => Ok(LayerGrad::Rows(rows)),
                None => layout::gather(l, params, &pass.grads, self.config.weight_decay)
                    .map(LayerGrad::Full),
            })
            .collect::<Result<Vec<_>>>()?;
        let one = |((b, g), d): ((&CurvatureBlock, &LayerGrad), &Damping)| match g {
            LayerGrad::Full(g) => b.precondition_f32(g, d),
            LayerGrad::Rows(c) => {
                let rows = c.a.dims()[0];
                b.precondition_low_rank_f32(c.a.data(), c.g[0].data(), rows, d)
            }
        };
        let updates: Vec<Vec<f32>> = self
            .blocks
            .par_iter()
            .zip(&inputs)
            .zip(&dampings)
            .map(one)
            .collect::<Result<_>>()?;
        stats.time_precondition = t.elapsed().as_secs_f64();
        let (lr, mu) = (self.config.lr as f32, self.config.momentum as f32);
        let nu = match self.config.kl_clip {
            Some(kappa) => {
                let mut vg = 0.0;
                for ((u, l), g) in updates.iter().zip(&self.layers).zip(&inputs) {
                    vg += match g {
                        LayerGrad::Full(g) => dot(u, g),
                        LayerGrad::Rows(_) => dot(u, &layout::gather(l, params, &pass.grads, 0.0)?),
                    };
                }
                let vg = vg * self.config.lr * self.config.lr;
                if vg > 0.0 {
                    (kappa / vg).sqrt().min(1.0) as f32
                } else {
                    1.0
                }
            }
            None => 1.0,
        };
        let mut update_sq = 0.0;
        for ((u, l), m) in updates
            .into_iter()
            .zip(&self.layers)
            .zip(self.momentum.iter_mut())
        {
            let m = m.get_or_insert_with(|| vec![0.0; u.len()]);
            m.iter_mut()
                .zip(&u)
                .for_each(|(m, u)| *m = mu * *m + nu * u);
            let step: Vec<f32> = m.iter().map(|m| lr * m).collect();
            update_sq += dot(&step, &step);
            layout::apply(l, params, &step);
        }
        for ((id, _), m) in self.loose.iter().zip(self.loose_momentum.iter_mut()) {
            let Some(g) = pass.grads.get(*id) else {
                continue;
            };
            let wd = F::from_f64(self.config.weight_decay);
            let w = params.get_mut(*id).data_mut();
            let m = m.get_or_insert_with(|| vec![0.0; w.len()]);
            for ((w, m), &g) in w.iter_mut().zip(m.iter_mut()).zip(g.data()) {
                *m = mu * *m + (g + wd * *w).to_f64() as f32;
                *w -= F::from_f64((lr * *m) as f64);
                update_sq += ((lr * *m) as f64).powi(2);
            }
        }
        stats.update_norm = update_sq.sqrt();
        stats.damping = self
            .layers
            .iter()
            .zip(&dampings)
            .map(|(l, d)| (l.name.clone(), d.lambda()))
            .collect();
        self.step += 1;
        Ok(stats)
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn save_state(&self, _params: &ParamStore<F>, dict: &mut TensorDict) {
        dict.meta.insert("ng.step".into(), self.step.to_string());
        dict.meta
            .insert("ng.variant".into(), format!("{:?}", self.variant));
        for ((l, b), m) in self.layers.iter().zip(&self.blocks).zip(&self.momentum) {
            for a in b.state() {
                dict.put_f64(&format!("ng.{}.{}", l.name, a.name), &a.shape, &a.data);
            }
            if let Some(m) = m {
                let m = crate::tensor::Tensor::from_vec(m.clone(), &[m.len()]).expect("a vector");
                dict.put_tensor(&format!("ng.{}.momentum", l.name), &m);
            }
        }
        for ((_, name), m) in self.loose.iter().zip(&self.loose_momentum) {
            if let Some(m) = m {
                let m = crate::tensor::Tensor::from_vec(m.clone(), &[m.len()]).expect("a vector");
                dict.put_tensor(&format!("ng.loose.{name}.momentum"), &m);
            }
        }
    }

    fn load_state(&mut self, _params: &ParamStore<F>, dict: &TensorDict) -> Result<()> {
        let variant = dict
            .meta
            .get("ng.variant")
            .ok_or_else(|| Error::Checkpoint("missing ng.variant".into()))?;
        if *variant != format!("{:?}", self.variant) {
            return Err(Error::Checkpoint(format!(
                "checkpoint was written by {variant}, not {:?}",
                self.variant
            )));
        }
        let step = dict
            .meta
            .get("ng.step")
            .ok_or_else(|| Error::Checkpoint("missing ng.step".into()))?;
        self.step = step
            .parse()
            .map_err(|_| Error::Checkpoint(format!("bad ng.step `{step}`")))?;
        for ((l, b), m) in self
            .layers
            .iter()
            .zip(self.blocks.iter_mut())
            .zip(self.momentum.iter_mut())
        {
            let arrays = CurvatureBlock::STATE_NAMES
                .iter()
                .filter_map(|&name| {
                    let key = format!("ng.{}.{name}", l.name);
                    dict.contains(&key).then(|| {
                        dict.f64s(&key)
                            .map(|(shape, data)| StateArray { name, shape, data })
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            b.restore(&arrays)?;
            let name = format!("ng.{}.momentum", l.name);
            *m = if dict.contains(&name) {
                Some(dict.tensor::<f32>(&name)?.into_vec())
            } else {
                None
            };
        }
        for ((_, name), m) in self.loose.iter().zip(self.loose_momentum.iter_mut()) {
            let key = format!("ng.loose.{name}.momentum");
            *m = if dict.contains(&key) {
                Some(dict.tensor::<f32>(&key)?.into_vec())
            } else {
                None
            };
        }
        Ok(())
    }
}

/// How one layer's gradient enters preconditioning.
enum LayerGrad<'p> {
    /// `[∇W | ∇b] + wd·[W | b]`, row-major `[d_out, d_in']`.
    Full(Vec<f32>),
    /// The dense layer's gradient rows: `∇W̄ = gᵀā`.
    Rows(&'p LayerCapture<f32>),
}

/// `Σ aᵢbᵢ` accumulated in f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}
