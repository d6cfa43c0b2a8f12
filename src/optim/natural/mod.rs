//! `NaturalGradient`: K-FAC, EKFAC, TKFAC and TEKFAC over one shared curvature block per layer.
//!
//! One step is the algorithm box of the papers (spec §1.3, §6.7), each line a named function:
//!
//! ```text
//! update_curvature   statistics (every T_stats) → eigenbasis (every T_eig) → re-scaling of
//!                    s*/Θ (every T_scale, EKFAC/TEKFAC), parallel across layers   (curvature.rs)
//! dampings           the damping of every block: λ, Eq. 3.5 on TEKFAC conv layers (damping.rs)
//! rebase_layers      EKFAC/TEKFAC dense layers stored in their eigenbasis W̃ = Q_Gᵀ W̄ Q_A
//!                    follow a refreshed basis (eigenbasis.rs)
//! precondition_all   U_l = (F̂_l + damping)⁻¹ (∇W̄_l + wd·W̄_l), parallel across layers;
//!                    elementwise, Ũ_l = (M_l + wd·W̃_l) ⊘ (D_l + λ), for a layer in its basis
//! kl_clip_factor     ν = min(1, √(κ / Σ_l η²⟨U_l, ∇W̄_l⟩))  (1 without KL-clipping)
//! apply_momentum     m_l ← μ·m_l + ν·U_l,  W̄_l ← W̄_l − η·m_l                      (update.rs)
//! step_loose         parameters outside every layer: plain SGD-momentum
//! ```
//!
//! The curvature state is f64 ([`CurvatureBlock`], the readable spec path); the update runs in
//! the training precision `F` ([`FastBlock`], the hot path): f32 when training, f64 when a test
//! compares the step with a dense f64 solve.

mod config;
mod curvature;
mod damping;
mod eigenbasis;
pub(crate) mod layout;
mod state;
mod update;

pub use crate::curvature::Variant;
pub use config::NgConfig;
pub use damping::{DampingPolicy, DampingRule, DenseInCnn, beta, default_lambda};
pub use eigenbasis::pays as eigenbasis_pays;

use super::{Optimizer, StepEvent, StepStats};
use crate::autograd::{BackwardOutput, FisherType};
use crate::checkpoint::TensorDict;
use crate::curvature::{
    CurvatureBlock, Damping, EigenRefresh, FastBlock, PendingFactors, Steering,
};
use crate::error::{Error, Result};
use crate::params::{LayerInfo, ParamId, ParamStore};
use crate::tensor::Float;
use rayon::prelude::*;
use std::time::Instant;

/// A natural-gradient optimizer of one of the four variants, updating parameters of type `F`.
#[derive(Clone, Debug)]
pub struct NaturalGradient<F: Float = f32> {
    variant: Variant,
    /// Hyperparameters (a schedule may change `lr` between steps).
    pub config: NgConfig,
    layers: Vec<LayerInfo>,
    /// The f64 curvature state of each layer (the spec path).
    blocks: Vec<CurvatureBlock>,
    /// The hot path of each layer, kept in step with its block.
    fast: Vec<FastBlock<F>>,
    /// Each layer's f32 factor statistics not yet blended into its block (`pending.rs`).
    pending: Vec<PendingFactors>,
    /// Each layer's eigenbasis refresh policy (warm or exact, `curvature/warm.rs`).
    refresh: Vec<EigenRefresh>,
    /// Heavy-ball momentum of each layer, row-major `[d_out, d_in']`.
    momentum: Vec<Option<Vec<F>>>,
    /// Parameters outside every layer (e.g. a learnable scale): plain SGD-momentum.
    loose: Vec<(ParamId, String)>,
    /// Their momentum buffers, parallel to `loose`.
    loose_momentum: Vec<Option<Vec<F>>>,
    /// Per layer: the basis revision its storage was last decided at (`eigenbasis.rs`).
    basis_revision: Vec<Option<u64>>,
    /// Rows of the latest pass that carried captures or gradient rows (the batch size).
    batch: Option<usize>,
    step: u64,
}

impl<F: Float> NaturalGradient<F> {
    /// One curvature block per dense/conv layer of `params`.
    pub fn new(variant: Variant, config: NgConfig, params: &ParamStore<F>) -> Result<Self> {
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
        // NOTE: checked for K-FAC and TKFAC too, which refresh exactly whatever it says: a bad
        // setting is refused where it is written, not when it first matters.
        config.warm_start.check()?;
        let layers = params.layers().to_vec();
        let in_layer = |id: ParamId| layers.iter().any(|l| l.weight == id || l.bias == Some(id));
        let loose: Vec<(ParamId, String)> = params
            .ids()
            .filter(|&id| !in_layer(id))
            .map(|id| (id, params.name(id).to_string()))
            .collect();
        let blocks: Vec<CurvatureBlock> = layers
            .iter()
            .map(|l| CurvatureBlock::new(variant, l, config.decay))
            .collect();
        let mut settings = config.refresh_settings(variant);
        if F::DTYPE != f32::DTYPE {
            // NOTE: f64 runs (the oracle tests) refine with f64 products throughout.
            settings.steering = Steering::F64;
        }
        let policy = EigenRefresh::new(settings)?;
        Ok(NaturalGradient {
            variant,
            config,
            fast: blocks.iter().map(FastBlock::new).collect(),
            pending: blocks
                .iter()
                .map(|b| PendingFactors::new(b.dims()))
                .collect(),
            refresh: vec![policy; layers.len()],
            momentum: vec![None; layers.len()],
            loose_momentum: vec![None; loose.len()],
            basis_revision: vec![None; layers.len()],
            batch: None,
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

    /// The curvature block of each layer (for inspection and tests). Its factors are those of
    /// the last refresh plus any statistics blended since; with `config.stacked_statistics` a
    /// dense layer's latest statistics steps may still be held as rows
    /// ([`flush_statistics`](Self::flush_statistics) blends them in).
    pub fn blocks(&self) -> &[CurvatureBlock] {
        &self.blocks
    }

    /// Blends every layer's held f32 statistics (`curvature/pending.rs`) into its block's
    /// running averages now, as the next refresh would. The same averages up to f32 rounding
    /// as having blended each step's batch at once, so a run that flushes at other points than
    /// another differs from it by rounding only.
    pub fn flush_statistics(&mut self) -> Result<()> {
        let results: Vec<Result<()>> = self
            .blocks
            .par_iter_mut()
            .zip(&mut self.pending)
            .map(|(b, p)| b.observe_pending(p.take()))
            .collect();
        results.into_iter().collect()
    }

    /// `λ` of this run: the configured one, or the tuned default of the variant and network.
    pub fn lambda(&self) -> f64 {
        let has_conv = self.blocks.iter().any(CurvatureBlock::is_conv);
        self.config.damping.lambda(self.variant, has_conv)
    }

    /// The damping of every block under the current curvature (spec §1.7, `damping.rs`).
    pub fn dampings(&self) -> Vec<Damping> {
        self.config.damping.per_block(self.variant, &self.blocks)
    }

    /// The hot path of each layer (for tests).
    pub fn fast_blocks(&self) -> &[FastBlock<F>] {
        &self.fast
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    fn due(&self, interval: u64) -> bool {
        self.step.is_multiple_of(interval)
    }

    /// True when this step blends new statistics into the factors.
    fn stats_due(&self) -> bool {
        self.due(self.config.stats_interval)
    }

    /// True when this step re-estimates s*/Θ (EKFAC/TEKFAC only).
    fn rescale_due(&self) -> bool {
        self.variant.corrects_eigenvalues() && self.due(self.config.scale_interval)
    }

    fn needs_capture(&self) -> bool {
        self.stats_due() || self.rescale_due()
    }

    /// Whether dense layers hand out their gradient rows: the low-rank way in is on and free of
    /// weight decay, and there is a dense layer.
    fn low_rank_enabled(&self) -> bool {
        self.config.low_rank && self.config.weight_decay == 0.0
    }

    /// Remembers the batch size of a pass that shows it (captures or gradient rows).
    fn note_batch(&mut self, pass: &BackwardOutput<F>) {
        let rows = pass.rows.first().map(|r| r.rows());
        let examples = pass.captures.first().map(|c| c.examples());
        if let Some(n) = rows.or(examples) {
            self.batch = Some(n);
        }
    }

    /// Errors when this step needs captures and the backward pass carried none.
    fn check_captures(&self, pass: &BackwardOutput<F>) -> Result<()> {
        if self.needs_capture()
            && self.config.fisher != FisherType::Off
            && pass.captures.is_empty()
            && !self.layers.is_empty()
        {
            return Err(Error::invalid(
                "NaturalGradient",
                "the backward pass carried no captures; call backward_full(loss, opt.fisher(), opt.gradient_rows())",
            ));
        }
        Ok(())
    }
}

impl<F: Float> Optimizer<F> for NaturalGradient<F> {
    /// The configured Fisher type on statistics or re-scaling steps, with a fresh reproducible
    /// sampling seed each step; else `Off`.
    fn fisher(&self) -> FisherType {
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

    /// With `low_rank` on, no weight decay and a dense layer.
    fn gradient_rows(&self) -> bool {
        self.low_rank_enabled() && self.blocks.iter().any(|b| !b.is_conv())
    }

    fn step(&mut self, params: &mut ParamStore<F>, pass: &BackwardOutput<F>) -> Result<StepStats> {
        let mut stats = StepStats::first_order(pass, 0.0);
        self.check_captures(pass)?;
        self.note_batch(pass);
        self.update_curvature(pass, &mut stats)?;
        let t = Instant::now();
        let dampings = self.dampings();
        self.sync_fast(&dampings)?;
        let wanted = self.wanted_in_basis(params);
        let mut grads = self.layer_grads(params, pass, &wanted)?;
        self.rebase_layers(params, &mut grads, &wanted);
        let updates = self.precondition_all(params, &grads)?;
        stats.time_precondition = t.elapsed().as_secs_f64();
        let nu = self.kl_clip_factor(params, pass, &grads, &updates)?;
        let (layers_sq, layers_finite) = self.apply_momentum(params, pass, &grads, updates, nu)?;
        let (loose_sq, loose_finite) = self.step_loose(params, pass);
        stats.update_norm = (layers_sq + loose_sq).sqrt();
        // Every parameter with a gradient was written and checked by one of the two passes.
        stats.weights_finite = Some(layers_finite && loose_finite);
        stats.lambda = self
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

    fn save_state(&self, params: &ParamStore<F>, dict: &mut TensorDict) {
        self.save(params, dict);
    }

    fn load_state(&mut self, params: &mut ParamStore<F>, dict: &TensorDict) -> Result<()> {
        self.load(params, dict)
    }
}

/// A skipped refresh or re-scaling as a step event (spec §1.9: keep the previous basis or
/// diagonal and keep training).
fn skipped(what: &'static str, layer: &LayerInfo, error: Error) -> StepEvent {
    StepEvent::CurvatureSkipped {
        what,
        layer: layer.name.clone(),
        reason: error.to_string(),
    }
}
