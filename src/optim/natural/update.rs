//! The update half of a step, in the training precision `F`:
//!
//! ```text
//! U_l = (F̂_l + damping_l)⁻¹ (∇W̄_l + wd·W̄_l)               precondition_all
//! ν   = min(1, √(κ / Σ_l η²⟨U_l, ∇W̄_l + wd·W̄_l⟩))          kl_clip_factor (K-FAC §6.4)
//! m_l ← μ·m_l + ν·U_l,   W̄_l ← W̄_l − η·m_l                  apply_momentum
//! m ← μ·m + ∇ + wd·θ,    θ ← θ − η·m                         step_loose (no curvature block)
//! ```
//!
//! Each layer's gradient enters preconditioning either gathered as `[d_out, d_in']`, or (dense
//! layers without weight decay, when cheaper) as its low-rank rows `∇W̄ = gᵀā`. A dense layer
//! stored in its eigenbasis (`eigenbasis.rs`) hands in `M = Q_Gᵀ ∇W̄ Q_A` and is preconditioned
//! elementwise; momentum and the step then act on `W̃` in the same way.

use super::{NaturalGradient, layout};
use crate::autograd::{BackwardOutput, GradientRows};
use crate::curvature::Damping;
use crate::error::Result;
use crate::optim::sgd::sgd_update;
use crate::params::{LayerId, ParamStore};
use crate::tensor::Float;
use rayon::prelude::*;

/// How one layer's gradient enters preconditioning.
pub(super) enum LayerGrad<'p, F: Float> {
    /// `[∇W | ∇b] + wd·[W | b]`, row-major `[d_out, d_in']`, in the coordinates the layer is
    /// stored in (for a layer in its eigenbasis, `M + wd·W̃`).
    Full(Vec<F>),
    /// The dense layer's gradient rows: `∇W̄ = gᵀā`.
    Rows(&'p GradientRows<F>),
}

impl<F: Float> NaturalGradient<F> {
    /// Brings every layer's hot path up to date with its block under its damping.
    pub(super) fn sync_fast(&mut self, dampings: &[Damping]) -> Result<()> {
        self.fast
            .par_iter_mut()
            .zip(&self.blocks)
            .zip(dampings)
            .map(|((f, b), d)| f.sync(b, d))
            .collect()
    }

    /// `U_l = (F̂_l + damping_l)⁻¹ (∇W̄_l + wd·W̄_l)` for every layer, on the synced hot path,
    /// parallel across layers: elementwise for a layer stored in its eigenbasis
    /// (`eigenbasis.rs`), else rotated in (from the gradient or its rows) and out.
    pub(super) fn precondition_all(
        &self,
        params: &ParamStore<F>,
        grads: &[LayerGrad<'_, F>],
    ) -> Result<Vec<Vec<F>>> {
        let in_basis: Vec<bool> = (0..self.layers.len())
            .map(|i| params.eigenbasis(LayerId(i)).is_some())
            .collect();
        self.fast
            .par_iter()
            .zip(grads)
            .zip(&in_basis)
            .map(|((f, g), &in_basis)| match g {
                LayerGrad::Full(g) if in_basis => f.precondition_in_basis(g),
                LayerGrad::Full(g) => f.precondition(g),
                LayerGrad::Rows(r) => f.precondition_low_rank(r.a.data(), r.g.data(), r.rows()),
            })
            .collect()
    }

    /// Each layer's way in: the low-rank rows of its gradient when they are cheaper (a dense
    /// layer that stays in the standard coordinates, no weight decay), else the gathered
    /// `[d_out, d_in']` gradient plus weight decay, in the coordinates of the pass.
    pub(super) fn layer_grads<'p>(
        &self,
        params: &ParamStore<F>,
        pass: &'p BackwardOutput<F>,
        wanted: &[bool],
    ) -> Result<Vec<LayerGrad<'p, F>>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let plain = !wanted[i] && params.eigenbasis(LayerId(i)).is_none();
                match self.low_rank_rows(i, pass).filter(|_| plain) {
                    Some(rows) => Ok(LayerGrad::Rows(rows)),
                    None => layout::gather(l, params, &pass.grads, self.config.weight_decay)
                        .map(LayerGrad::Full),
                }
            })
            .collect()
    }

    /// The gradient rows of layer `i` when the low-rank way in is enabled and cheaper.
    fn low_rank_rows<'p>(
        &self,
        i: usize,
        pass: &'p BackwardOutput<F>,
    ) -> Option<&'p GradientRows<F>> {
        if !self.low_rank_enabled() {
            return None;
        }
        let rows = pass.rows.iter().find(|r| r.layer.0 == i)?;
        self.fast[i].low_rank_pays(rows.rows()).then_some(rows)
    }

    /// KL-clipping (K-FAC §6.4): `ν = min(1, √(κ / Σ_l η²⟨U_l, ∇W̄_l + wd·W̄_l⟩))`, 1 when off
    /// or when the quadratic is not positive. Each inner product is taken in the coordinates
    /// the layer's update is in (it is invariant under the eigenbasis rotation).
    pub(super) fn kl_clip_factor(
        &self,
        params: &ParamStore<F>,
        pass: &BackwardOutput<F>,
        grads: &[LayerGrad<'_, F>],
        updates: &[Vec<F>],
    ) -> Result<F> {
        let Some(kappa) = self.config.kl_clip else {
            return Ok(F::ONE);
        };
        let mut vg = 0.0;
        for ((u, l), g) in updates.iter().zip(&self.layers).zip(grads) {
            vg += match g {
                LayerGrad::Full(g) => dot(u, g),
                LayerGrad::Rows(_) => dot(u, &layout::gather(l, params, &pass.grads, 0.0)?),
            };
        }
        let vg = vg * self.config.lr * self.config.lr;
        Ok(if vg > 0.0 {
            F::from_f64((kappa / vg).sqrt().min(1.0))
        } else {
            F::ONE
        })
    }

    /// Heavy-ball momentum on the preconditioned step, `m_l ← μ·m_l + ν·U_l`, then
    /// `W̄_l ← W̄_l − η·m_l`. Returns `Σ_l ‖η·m_l‖²`.
    pub(super) fn apply_momentum(
        &mut self,
        params: &mut ParamStore<F>,
        updates: Vec<Vec<F>>,
        nu: F,
    ) -> f64 {
        let (lr, mu) = (
            F::from_f64(self.config.lr),
            F::from_f64(self.config.momentum),
        );
        let mut update_sq = 0.0;
        for ((u, l), m) in updates
            .into_iter()
            .zip(&self.layers)
            .zip(self.momentum.iter_mut())
        {
            let m = m.get_or_insert_with(|| vec![F::ZERO; u.len()]);
            m.iter_mut()
                .zip(&u)
                .for_each(|(m, &u)| *m = mu * *m + nu * u);
            let step: Vec<F> = m.iter().map(|&m| lr * m).collect();
            update_sq += dot(&step, &step);
            layout::apply(l, params, &step);
        }
        update_sq
    }

    /// Plain SGD-momentum (`m ← μ·m + ∇ + wd·θ`, `θ ← θ − η·m`) for the parameters outside
    /// every layer. Returns `Σ ‖η·m‖²`.
    pub(super) fn step_loose(
        &mut self,
        params: &mut ParamStore<F>,
        pass: &BackwardOutput<F>,
    ) -> f64 {
        let c = &self.config;
        let hyper = [c.lr, c.momentum, c.weight_decay].map(F::from_f64);
        let mut update_sq = 0.0;
        for ((id, _), m) in self.loose.iter().zip(self.loose_momentum.iter_mut()) {
            let Some(g) = pass.grads.get(*id) else {
                continue;
            };
            let w = params.get_mut(*id).data_mut();
            let m = m.get_or_insert_with(|| vec![F::ZERO; w.len()]);
            update_sq += sgd_update(w, m, g.data(), hyper, false);
        }
        update_sq
    }
}

/// `Σ aᵢbᵢ` accumulated in f64.
fn dot<F: Float>(a: &[F], b: &[F]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.to_f64() * y.to_f64())
        .sum()
}
