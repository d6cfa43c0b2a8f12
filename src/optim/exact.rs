//! `ExactNaturalGradient`: block-diagonal natural gradient with each layer's exact Fisher block,
//! the reference that K-FAC, EKFAC, TKFAC and TEKFAC approximate. For small nets only
//! (`tekfac inspect --optimizer exact`).
//!
//! Per layer, with `F_b` the exact Fisher block of a statistics step's captures
//! ([`exact_fisher`], the same Fisher type and cadence as the approximations use):
//!
//! ```text
//! F ← ρ·F + (1 − ρ)·F_b                       every stats_interval steps (first: F = F_b)
//! u = unvec((F + λI)⁻¹ vec ∇W̄)                one Cholesky factor per new F
//! m ← μ·m + u,   W̄ ← W̄ − η·m
//! ```
//!
//! This is the damped step `u*` of `tekfac::curvature::probe` with a running average in place
//! of one batch's `F`, and additive damping. `O((d_out·d_in')²)` memory and `O((d_out·d_in')³)`
//! per factorisation: blocks larger than [`MAX_BLOCK`] are refused.

use super::natural::layout;
use super::{Optimizer, StepStats};
use crate::autograd::{BackwardOutput, FisherType};
use crate::checkpoint::TensorDict;
use crate::curvature::MovingAverage;
use crate::curvature::exact::{exact_fisher, unvec_rows, vec_rows};
use crate::error::{Error, Result};
use crate::params::{LayerInfo, ParamStore};
use crate::tensor::Float;
use nalgebra::{Cholesky, DMatrix, Dyn};

/// Largest block side `d_out·d_in'` (a 4096² f64 block is 128 MiB).
pub const MAX_BLOCK: usize = 4096;

/// Settings of [`ExactNaturalGradient`] (the same meaning as in `NgConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExactConfig {
    /// Learning rate η.
    pub lr: f64,
    /// Additive damping λ > 0.
    pub damping: f64,
    /// Heavy-ball momentum μ on the preconditioned step.
    pub momentum: f64,
    /// EMA decay ρ of each Fisher block.
    pub decay: f64,
    /// Update the Fisher blocks every this many steps.
    pub stats_interval: u64,
    /// Labels behind the Fisher blocks.
    pub fisher: FisherType,
}

/// Block-diagonal natural gradient with exact Fisher blocks (module docs).
pub struct ExactNaturalGradient {
    config: ExactConfig,
    layers: Vec<LayerInfo>,
    fisher: Vec<MovingAverage<DMatrix<f64>>>,
    factor: Vec<Option<Cholesky<f64, Dyn>>>,
    momentum: Vec<Option<Vec<f64>>>,
    step: u64,
}

impl ExactNaturalGradient {
    /// One exact block per layer of `params`; errors when a parameter belongs to no layer, a
    /// block is larger than [`MAX_BLOCK`], or a setting is out of range.
    pub fn new<F: Float>(config: ExactConfig, params: &ParamStore<F>) -> Result<Self> {
        const OP: &str = "ExactNaturalGradient";
        let ok = config.damping.is_finite() && config.damping > 0.0 && config.stats_interval > 0;
        if !ok || !(0.0..1.0).contains(&config.decay) {
            let msg = "needs λ > 0, stats_interval ≥ 1 and decay in [0, 1)";
            return Err(Error::invalid(OP, msg));
        }
        let layers = params.layers().to_vec();
        if let Some(l) = layers.iter().find(|l| l.d_out * l.d_in_bar() > MAX_BLOCK) {
            let side = l.d_out * l.d_in_bar();
            let msg = format!(
                "layer {}'s block is {side} square, above {MAX_BLOCK}",
                l.name
            );
            return Err(Error::invalid(OP, msg));
        }
        let in_layer = |id| layers.iter().any(|l| l.weight == id || l.bias == Some(id));
        if let Some(id) = params.ids().find(|&id| !in_layer(id)) {
            let msg = format!("parameter {} belongs to no layer", params.name(id));
            return Err(Error::invalid(OP, msg));
        }
        let n = layers.len();
        Ok(ExactNaturalGradient {
            fisher: (0..n).map(|_| MovingAverage::new(config.decay)).collect(),
            factor: vec![None; n],
            momentum: vec![None; n],
            config,
            layers,
            step: 0,
        })
    }

    fn stats_due(&self) -> bool {
        self.step.is_multiple_of(self.config.stats_interval)
    }

    /// Blends each capture's exact Fisher block into its average and refactors `F + λI`.
    fn observe<F: Float>(&mut self, pass: &BackwardOutput<F>) -> Result<()> {
        for c in &pass.captures {
            let l = c.layer.0;
            self.fisher[l].update(exact_fisher(c)?);
            let f = self.fisher[l].value().expect("just updated");
            let damped = f + DMatrix::identity(f.nrows(), f.ncols()) * self.config.damping;
            let name = &self.layers[l].name;
            let factor = damped.cholesky().ok_or_else(|| Error::NonFinite {
                what: format!("the exact Fisher block of layer {name}"),
                step: Some(self.step),
            })?;
            self.factor[l] = Some(factor);
        }
        Ok(())
    }

    /// `u = unvec((F + λI)⁻¹ vec ∇W̄)` of layer `l`, row-major `[d_out, d_in']`, in f64.
    fn precondition<F: Float>(&self, l: usize, grad: &[F]) -> Result<Vec<f64>> {
        let info = &self.layers[l];
        let factor = self.factor[l].as_ref().ok_or_else(|| {
            let msg = format!("layer {} has no Fisher block yet", info.name);
            Error::invalid("ExactNaturalGradient", msg)
        })?;
        let g = DMatrix::from_row_slice(info.d_out, info.d_in_bar(), grad).map(F::to_f64);
        let u = unvec_rows(&factor.solve(&vec_rows(&g)), info.d_out, info.d_in_bar());
        Ok(u.transpose().iter().copied().collect())
    }
}

impl<F: Float> Optimizer<F> for ExactNaturalGradient {
    fn fisher(&self) -> FisherType {
        if !self.stats_due() {
            return FisherType::Off;
        }
        match self.config.fisher {
            // NOTE: a fresh, reproducible sampling seed each step, as in NaturalGradient.
            FisherType::Sampled { k, seed } => FisherType::Sampled {
                k,
                seed: seed ^ self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            },
            other => other,
        }
    }

    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<StepStats> {
        if self.stats_due() {
            self.observe(pass)?;
        }
        let (lr, mu) = (self.config.lr, self.config.momentum);
        let mut update_sq = 0.0;
        for l in 0..self.layers.len() {
            let grad = layout::gather(&self.layers[l], params, &pass.grads, 0.0)?;
            let u = self.precondition(l, &grad)?;
            let m = self.momentum[l].get_or_insert_with(|| vec![0.0; u.len()]);
            m.iter_mut().zip(&u).for_each(|(m, u)| *m = mu * *m + u);
            let step: Vec<F> = m.iter().map(|m| F::from_f64(lr * m)).collect();
            update_sq += step.iter().map(|&s| s.to_f64().powi(2)).sum::<f64>();
            layout::apply(&self.layers[l], params, &step);
        }
        self.step += 1;
        Ok(StepStats::first_order(pass, update_sq.sqrt()))
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn save_state(&self, _params: &ParamStore<F>, dict: &mut TensorDict) {
        dict.meta.insert("exact.step".into(), self.step.to_string());
        for ((l, f), m) in self.layers.iter().zip(&self.fisher).zip(&self.momentum) {
            if let Some(f) = f.value() {
                let data: Vec<f64> = f.iter().copied().collect();
                dict.put_f64(
                    &format!("exact.{}.fisher", l.name),
                    &[f.nrows(), f.ncols()],
                    &data,
                );
            }
            if let Some(m) = m {
                dict.put_f64(&format!("exact.{}.momentum", l.name), &[m.len()], m);
            }
        }
    }

    fn load_state(&mut self, _params: &mut ParamStore<F>, dict: &TensorDict) -> Result<()> {
        let step = dict.meta.get("exact.step").ok_or_else(|| {
            Error::Checkpoint("missing exact.step (not an exact natural-gradient run)".into())
        })?;
        self.step = step
            .parse()
            .map_err(|_| Error::Checkpoint(format!("bad exact.step `{step}`")))?;
        for l in 0..self.layers.len() {
            let name = self.layers[l].name.clone();
            let side = self.layers[l].d_out * self.layers[l].d_in_bar();
            let key = format!("exact.{name}.fisher");
            if dict.contains(&key) {
                let (shape, data) = dict.f64s(&key)?;
                if shape != [side, side] {
                    return Err(Error::Checkpoint(format!("`{key}` has shape {shape:?}")));
                }
                self.fisher[l] = MovingAverage::new(self.config.decay);
                self.fisher[l].update(DMatrix::from_column_slice(side, side, &data));
                let f = self.fisher[l].value().expect("just set");
                let damped = f + DMatrix::identity(side, side) * self.config.damping;
                self.factor[l] = damped.cholesky();
            }
            let key = format!("exact.{name}.momentum");
            self.momentum[l] = if dict.contains(&key) {
                let (_, data) = dict.f64s(&key)?;
                if data.len() != side {
                    return Err(Error::Checkpoint(format!(
                        "`{key}` has {} values",
                        data.len()
                    )));
                }
                Some(data)
            } else {
                None
            };
        }
        Ok(())
    }
}
