//! The curvature half of a step: statistics → eigenbasis → re-scaling, each on its own interval
//! (spec §1.3: within one step always in this order, so s*/Θ is measured in the basis the update
//! uses), each parallel across layers.

use super::{NaturalGradient, skipped};
use crate::autograd::{BackwardOutput, LayerCapture, RotatedRows};
use crate::curvature::{FastBasis, FastCorrection, FastFactors, FastRows, RefreshReport};
use crate::error::Result;
use crate::optim::StepStats;
use crate::tensor::Float;
use rayon::prelude::*;
use std::any::Any;
use std::time::Instant;

impl<F: Float> NaturalGradient<F> {
    /// Statistics (every `stats_interval`) → eigenbasis (every `eigen_interval`) → re-scaling
    /// (every `scale_interval`, EKFAC/TEKFAC). A refresh or re-scaling that fails on non-finite
    /// statistics is skipped (the previous basis or diagonal stays) and reported in
    /// `stats.events`; a malformed capture is an error.
    pub(super) fn update_curvature(
        &mut self,
        pass: &BackwardOutput<F>,
        stats: &mut StepStats,
    ) -> Result<()> {
        let t = Instant::now();
        if self.stats_due() {
            self.observe_all(pass)?;
        }
        stats.time_stats += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if self.due(self.config.eigen_interval) {
            self.refresh_all(stats);
        }
        stats.time_eigen += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if self.rescale_due() {
            self.rescale_all(pass, stats);
        }
        stats.time_stats += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Blends each layer's batch factors into its running average: formed by f32 GEMMs from f32
    /// captures (`config.f32_statistics`), else by the block's own f64 path. With
    /// `config.stacked_statistics` the f32 rows are held instead while they fit
    /// (`curvature/pending.rs`), and blended as one stacked gram when they no longer do or
    /// before the next refresh. Held rows of a layer stored in the block's current basis come
    /// with their rotated twins (`pass.rotated`), which track the block's Rayleigh quotients.
    fn observe_all(&mut self, pass: &BackwardOutput<F>) -> Result<()> {
        let find = |i: usize| pass.captures.iter().find(|c| c.layer.0 == i);
        let (f32_path, stacked) = (self.config.f32_statistics, self.config.stacked_statistics);
        let stored_at = &self.basis_revision;
        let results: Vec<Result<()>> = self
            .blocks
            .par_iter_mut()
            .zip(&mut self.pending)
            .enumerate()
            .map(|(i, (b, pending))| match with_f32(find(i), f32_path) {
                (_, Some(c)) => {
                    let trace_restricted = b.variant().trace_restricted();
                    let rows = FastRows::from_capture(c)?;
                    if stacked && !pending.fits(&rows) {
                        b.observe_pending(pending.take())?;
                    }
                    if stacked && pending.fits(&rows) {
                        let same_basis = stored_at[i] == Some(b.basis_revision());
                        let rotated = rows_in_basis(pass, c, same_basis)?;
                        let rho = b.factor_decay();
                        let seeds = b.factors().is_none();
                        let c = (rho, 1.0 - rho);
                        pending.push(&rows, rotated.as_ref(), trace_restricted, c, seeds);
                        return Ok(());
                    }
                    b.observe_pending(pending.take())?;
                    b.observe_factors(FastFactors::of_rows(trace_restricted, rows))
                }
                (Some(c), None) => {
                    b.observe_pending(pending.take())?;
                    b.observe(c)
                }
                (None, _) => Ok(()),
            })
            .collect();
        results.into_iter().collect()
    }

    /// Recomputes each layer's eigenbasis (and re-seeds s*/Θ) under its refresh policy, warm
    /// or exact (`config.warm_start`), from its factors with every held statistics step blended
    /// in; a failed layer keeps its basis.
    fn refresh_all(&mut self, stats: &mut StepStats) {
        let results: Vec<Result<RefreshReport>> = self
            .blocks
            .par_iter_mut()
            .zip(&mut self.pending)
            .zip(&mut self.refresh)
            .map(|((b, pending), policy)| {
                b.observe_pending(pending.take())?;
                b.refresh_warm(policy)
            })
            .collect();
        for (r, l) in results.into_iter().zip(&self.layers) {
            match r {
                Ok(report) => stats.refreshes.push((l.name.clone(), report)),
                Err(e) => stats.events.push(skipped("eigenbasis refresh", l, e)),
            }
        }
    }

    /// Re-estimates each layer's s*/Θ in its current basis, by f32 GEMMs from f32 captures
    /// (`config.f32_statistics`) or the block's f64 path; a failed layer keeps its values. A
    /// dense layer that was stored in this very basis during the pass hands its rows in already
    /// rotated (`pass.rotated`, the forward's `â` and the sweep's `ĝ`), so they are not rotated
    /// again; after a refresh in this step they are in the old basis and are not used.
    fn rescale_all(&mut self, pass: &BackwardOutput<F>, stats: &mut StepStats) {
        let find = |i: usize| pass.captures.iter().find(|c| c.layer.0 == i);
        let f32_path = self.config.f32_statistics;
        let stored_at = &self.basis_revision;
        let results: Vec<Result<()>> = self
            .blocks
            .par_iter_mut()
            .zip(&mut self.fast)
            .enumerate()
            .map(|(i, (b, fast))| match with_f32(find(i), f32_path) {
                (_, Some(c)) => {
                    let same_basis = stored_at[i] == Some(b.basis_revision());
                    if let Some(rows) = rows_in_basis(pass, c, same_basis)? {
                        return b.rescale_batch(FastCorrection::new(&rows, None));
                    }
                    fast.sync_basis(b);
                    let batch = match fast.basis().map(f32_basis) {
                        Some(Some((q_a, q_g))) => FastCorrection::of_capture(c, q_a, q_g)?,
                        _ => return b.rescale(c), // no basis yet: the block's own error
                    };
                    b.rescale_batch(batch)
                }
                (Some(c), None) => b.rescale(c),
                (None, _) => Ok(()),
            })
            .collect();
        for (r, l) in results.into_iter().zip(&self.layers) {
            if let Err(e) = r {
                stats.events.push(skipped("re-scaling", l, e));
            }
        }
    }
}

/// The rows of capture `c` as its layer, stored in its eigenbasis, rotated them during `pass`
/// (`â`, `ĝ_s`), when they are f32 and `same_basis` (the layer's stored basis is the block's
/// current one); else `None`.
fn rows_in_basis<'p, F: Float>(
    pass: &'p BackwardOutput<F>,
    c: &'p LayerCapture<f32>,
    same_basis: bool,
) -> Result<Option<FastRows<'p>>> {
    let rotated = pass.rotated.iter().find(|r| r.layer == c.layer);
    let rotated = rotated.and_then(|r| rotated_f32(r, same_basis));
    Ok(rotated
        .map(|r| FastRows::in_basis(c, r))
        .transpose()?
        .flatten())
}

/// The capture, and the same capture as f32 when the f32 statistics path applies.
fn with_f32<F: Float>(
    capture: Option<&LayerCapture<F>>,
    on: bool,
) -> (Option<&LayerCapture<F>>, Option<&LayerCapture<f32>>) {
    (capture, capture.and_then(|c| as_f32(c, on)))
}

/// The capture as f32, when the f32 statistics path applies (`F` is f32 and it is switched on).
fn as_f32<F: Float>(capture: &LayerCapture<F>, on: bool) -> Option<&LayerCapture<f32>> {
    (capture as &dyn Any).downcast_ref().filter(|_| on)
}

/// The basis as f32 row-major slices `(Q_A, Q_G)`, when `F` is f32.
fn f32_basis<F: Float>(basis: &FastBasis<F>) -> Option<(&[f32], &[f32])> {
    let basis = (basis as &dyn Any).downcast_ref::<FastBasis<f32>>()?;
    Some((basis.q_a(), basis.q_g()))
}

/// The rotated rows as f32, when `on` and `F` is f32 (the f32 statistics path).
fn rotated_f32<F: Float>(rows: &RotatedRows<F>, on: bool) -> Option<&RotatedRows<f32>> {
    (rows as &dyn Any).downcast_ref().filter(|_| on)
}
