//! The curvature half of a step: statistics → eigenbasis → re-scaling, each on its own interval
//! (spec §1.3: within one step always in this order, so s*/Θ is measured in the basis the update
//! uses), each parallel across layers.

use super::{NaturalGradient, skipped};
use crate::autograd::{BackwardOutput, LayerCapture};
use crate::curvature::CurvatureBlock;
use crate::error::Result;
use crate::optim::StepStats;
use crate::tensor::Float;
use rayon::prelude::*;
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
            self.observe_all(&pass.captures)?;
        }
        stats.time_stats += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if self.due(self.config.eigen_interval) {
            self.refresh_all(stats);
        }
        stats.time_eigen += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if self.rescale_due() {
            self.rescale_all(&pass.captures, stats);
        }
        stats.time_stats += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Blends each layer's batch factors into its running average.
    fn observe_all(&mut self, captures: &[LayerCapture<F>]) -> Result<()> {
        let find = |i: usize| captures.iter().find(|c| c.layer.0 == i);
        let results: Vec<Result<()>> = self
            .blocks
            .par_iter_mut()
            .enumerate()
            .map(|(i, b)| find(i).map_or(Ok(()), |c| b.observe(c)))
            .collect();
        results.into_iter().collect()
    }

    /// Recomputes each layer's eigenbasis (and re-seeds s*/Θ); a failed layer keeps its basis.
    fn refresh_all(&mut self, stats: &mut StepStats) {
        let results: Vec<Result<()>> = self
            .blocks
            .par_iter_mut()
            .map(CurvatureBlock::refresh)
            .collect();
        for (r, l) in results.into_iter().zip(&self.layers) {
            if let Err(e) = r {
                stats.events.push(skipped("eigenbasis refresh", l, e));
            }
        }
    }

    /// Re-estimates each layer's s*/Θ in its current basis; a failed layer keeps its values.
    fn rescale_all(&mut self, captures: &[LayerCapture<F>], stats: &mut StepStats) {
        let find = |i: usize| captures.iter().find(|c| c.layer.0 == i);
        let results: Vec<Result<()>> = self
            .blocks
            .par_iter_mut()
            .enumerate()
            .map(|(i, b)| find(i).map_or(Ok(()), |c| b.rescale(c)))
            .collect();
        for (r, l) in results.into_iter().zip(&self.layers) {
            if let Err(e) = r {
                stats.events.push(skipped("re-scaling", l, e));
            }
        }
    }
}
