//! `NaturalGradient`: K-FAC, EKFAC, TKFAC and TEKFAC over one shared curvature block per layer.
//!
//! Each step (spec §1.3, §6.7): **statistics** (every `stats_interval`) → **eigenbasis** (every
//! `eigen_interval`, parallel across layers) → **re-scaling** of s*/Θ (every `scale_interval`,
//! EKFAC/TEKFAC) → **update**: for each layer `U = precondition(∇W̄ + wd·W̄, λ)` (parallel across
//! layers), optional KL-clipping `ν = min(1, √(κ / Σ η²⟨U, ∇⟩))`, heavy-ball momentum
//! `m ← μm + νU`, `W̄ ← W̄ − η·m`. Parameters that belong to no layer get plain SGD-momentum.

mod config;
mod layout;

pub use config::{DenseInCnn, NgConfig};

use super::{Optimizer, StepStats};
use crate::autograd::{BackwardOutput, FisherType};
use crate::checkpoint::TensorDict;
use crate::curvature::{CurvatureBlock, Damping, Variant};
use crate::error::{Error, Result};
use crate::params::{LayerInfo, LayerKind, ParamStore};
use crate::tensor::Float;
use nalgebra::DMatrix;
use rayon::prelude::*;
use std::time::Instant;

/// A natural-gradient optimizer of one of the four variants.
pub struct NaturalGradient {
    variant: Variant,
    /// Hyperparameters (a schedule may change `lr` between steps).
    pub config: NgConfig,
    layers: Vec<LayerInfo>,
    blocks: Vec<CurvatureBlock>,
    momentum: Vec<Option<DMatrix<f64>>>,
    step: u64,
    has_conv: bool,
}

impl NaturalGradient {
    /// One curvature block per dense/conv layer of `params`.
    pub fn new<F: Float>(variant: Variant, config: NgConfig, params: &ParamStore<F>) -> Result<Self> {
        if config.stats_interval == 0 || config.eigen_interval == 0 || config.scale_interval == 0 {
            return Err(Error::invalid("NaturalGradient", "intervals must be at least 1"));
        }
        let layers = params.layers().to_vec();
        let blocks = layers.iter().map(|l| CurvatureBlock::new(variant, l, config.decay)).collect();
        let has_conv = layers.iter().any(|l| matches!(l.kind, LayerKind::Conv2d { .. }));
        Ok(NaturalGradient { variant, config, momentum: vec![None; layers.len()], layers, blocks, step: 0, has_conv })
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The curvature block of each layer (for inspection and tests).
    pub fn blocks(&self) -> &[CurvatureBlock] {
        &self.blocks
    }

    fn due(&self, interval: u64) -> bool {
        self.step % interval == 0
    }

    fn needs_capture(&self) -> bool {
        self.due(self.config.stats_interval) || (self.variant.corrects_eigenvalues() && self.due(self.config.scale_interval))
    }

    /// The damping of each block this step (spec §1.7).
    fn dampings(&self) -> Vec<Damping> {
        let fixed = self.config.damping;
        let adaptive = |b: &CurvatureBlock| b.trace_adaptive_damping(self.config.conv_damping_floor);
        let beta = || self.blocks.iter().zip(&self.layers).filter(|(_, l)| matches!(l.kind, LayerKind::Conv2d { .. })).map(|(b, _)| adaptive(b)).fold(0.0, f64::max);
        self.blocks
            .iter()
            .zip(&self.layers)
            .map(|(b, l)| {
                let conv = matches!(l.kind, LayerKind::Conv2d { .. });
                let lambda = match (self.variant, conv, self.has_conv, self.config.dense_in_cnn) {
                    (Variant::Tekfac, true, _, _) => adaptive(b),
                    (Variant::Tekfac, false, true, DenseInCnn::Beta) => beta(),
                    (Variant::Tekfac, false, true, DenseInCnn::BetaTimesLambda) => beta() * fixed,
                    _ => fixed,
                };
                Damping::for_variant(self.variant, lambda)
            })
            .collect()
    }

    fn observe(&mut self, pass: &BackwardOutput<impl Float>, stats: &mut StepStats) {
        let t = Instant::now();
        let (do_stats, do_scale) = (self.due(self.config.stats_interval), self.variant.corrects_eigenvalues() && self.due(self.config.scale_interval));
        let do_eigen = self.due(self.config.eigen_interval);
        let captures = &pass.captures;
        let find = |i: usize| captures.iter().find(|c| c.layer.0 == i);
        if do_stats {
            self.blocks.par_iter_mut().enumerate().for_each(|(i, b)| {
                if let Some(c) = find(i) {
                    b.observe(c);
                }
            });
        }
        stats.time_stats += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if do_eigen {
            let failed: Vec<String> = self.blocks.par_iter_mut().zip(&self.layers).filter_map(|(b, l)| b.refresh().err().map(|e| format!("{}: {e}", l.name))).collect();
            for f in failed {
                eprintln!("warning: eigenbasis refresh skipped, previous basis kept ({f})");
            }
        }
        stats.time_eigen += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if do_scale {
            self.blocks.par_iter_mut().enumerate().for_each(|(i, b)| {
                if let Some(c) = find(i) {
                    b.rescale(c);
                }
            });
        }
        stats.time_stats += t.elapsed().as_secs_f64();
    }
}

impl<F: Float> Optimizer<F> for NaturalGradient {
    fn fisher(&self) -> FisherType {
        if !self.needs_capture() {
            return FisherType::Off;
        }
        match self.config.fisher {
            // NOTE: a fresh, reproducible sampling seed each step.
            FisherType::Sampled { k, seed } => FisherType::Sampled { k, seed: seed ^ self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15) },
            other => other,
        }
    }

    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<StepStats> {
        let mut stats = StepStats { loss: pass.loss, grad_norm: pass.grads.global_norm(), ..Default::default() };
        if self.needs_capture() && !self.config_fisher_off() && pass.captures.is_empty() && !self.layers.is_empty() {
            return Err(Error::invalid("NaturalGradient", "the backward pass carried no captures; call backward_with(loss, opt.fisher())"));
        }
        self.observe(pass, &mut stats);
        let t = Instant::now();
        let grads = self.layers.iter().map(|l| layout::gather(l, params, &pass.grads, self.config.weight_decay)).collect::<Result<Vec<_>>>()?;
        let dampings = self.dampings();
        let mut updates: Vec<DMatrix<f64>> = self.blocks.par_iter().zip(&grads).zip(&dampings).map(|((b, g), d)| b.precondition(g, d)).collect::<Result<Vec<_>>>()?;
        stats.time_precondition = t.elapsed().as_secs_f64();
        let lr = self.config.lr;
        let nu = match self.config.kl_clip {
            Some(kappa) => {
                let vg: f64 = updates.iter().zip(&grads).map(|(u, g)| lr * lr * u.dot(g)).sum();
                if vg > 0.0 { (kappa / vg).sqrt().min(1.0) } else { 1.0 }
            }
            None => 1.0,
        };
        let mut update_sq = 0.0;
        for (i, (u, l)) in updates.iter_mut().zip(&self.layers).enumerate() {
            let m = self.momentum[i].get_or_insert_with(|| DMatrix::zeros(u.nrows(), u.ncols()));
            *m *= self.config.momentum;
            *m += &*u * nu;
            *u = &*m * lr;
            update_sq += u.norm_squared();
            layout::apply(l, params, u);
        }
        stats.update_norm = update_sq.sqrt();
        stats.damping = self.layers.iter().zip(&dampings).map(|(l, d)| (l.name.clone(), d.lambda())).collect();
        self.step += 1;
        Ok(stats)
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn save_state(&self, _params: &ParamStore<F>, dict: &mut TensorDict) {
        dict.meta.insert("ng.step".into(), self.step.to_string());
        dict.meta.insert("ng.variant".into(), format!("{:?}", self.variant));
        for ((l, b), m) in self.layers.iter().zip(&self.blocks).zip(&self.momentum) {
            b.save_state(&format!("ng.{}", l.name), dict);
            if let Some(m) = m {
                dict.put_f64(&format!("ng.{}.momentum", l.name), &[m.nrows(), m.ncols()], m.as_slice());
            }
        }
    }

    fn load_state(&mut self, _params: &ParamStore<F>, dict: &TensorDict) -> Result<()> {
        let variant = dict.meta.get("ng.variant").ok_or_else(|| Error::Checkpoint("missing ng.variant".into()))?;
        if *variant != format!("{:?}", self.variant) {
            return Err(Error::Checkpoint(format!("checkpoint was written by {variant}, not {:?}", self.variant)));
        }
        let step = dict.meta.get("ng.step").ok_or_else(|| Error::Checkpoint("missing ng.step".into()))?;
        self.step = step.parse().map_err(|_| Error::Checkpoint(format!("bad ng.step `{step}`")))?;
        for ((l, b), m) in self.layers.iter().zip(self.blocks.iter_mut()).zip(self.momentum.iter_mut()) {
            b.load_state(&format!("ng.{}", l.name), dict)?;
            let name = format!("ng.{}.momentum", l.name);
            *m = if dict.contains(&name) {
                let (shape, data) = dict.f64s(&name)?;
                Some(DMatrix::from_column_slice(shape[0], shape[1], &data))
            } else {
                None
            };
        }
        Ok(())
    }
}

impl NaturalGradient {
    fn config_fisher_off(&self) -> bool {
        self.config.fisher == FisherType::Off
    }
}
