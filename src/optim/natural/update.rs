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
//! elementwise; momentum and the step then act on `W̃` in the same way. Between two refreshes
//! such a layer is never gathered: its three lines run as one pass over the parameter tensors
//! ([`step_in_basis`], the same arithmetic entry by entry)
//!
//! ```text
//! ũ = (m + wd·w̃) / d,   ṽ ← μ·ṽ + ν·ũ,   w̃ ← w̃ − η·ṽ         per entry of [W̃ | b̃]
//! ```

use super::{NaturalGradient, layout};
use crate::autograd::{BackwardOutput, GradientRows};
use crate::curvature::Damping;
use crate::error::{Error, Result};
use crate::optim::sgd::sgd_update;
use crate::params::{LayerId, LayerInfo, ParamStore};
use crate::tensor::Float;
use rayon::prelude::*;

/// How one layer's gradient enters preconditioning.
pub(super) enum LayerGrad<'p, F: Float> {
    /// `[∇W | ∇b] + wd·[W | b]`, row-major `[d_out, d_in']`, in the coordinates the layer is
    /// stored in (for a layer in its eigenbasis, `M + wd·W̃`).
    Full(Vec<F>),
    /// The dense layer's gradient rows: `∇W̄ = gᵀā`.
    Rows(&'p GradientRows<F>),
    /// A layer that stays in its eigenbasis this step: `M` is read in place from the pass, and
    /// the update is formed entry by entry inside [`NaturalGradient::apply_momentum`].
    InBasis,
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
    /// (`eigenbasis.rs`), else rotated in (from the gradient or its rows) and out. Empty for a
    /// [`LayerGrad::InBasis`] layer, whose update is formed inside `apply_momentum`.
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
                LayerGrad::InBasis => Ok(Vec::new()),
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
                if self.stays_in_basis(i, params, wanted) {
                    return Ok(LayerGrad::InBasis);
                }
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
        let wd = F::from_f64(self.config.weight_decay);
        for (i, ((u, l), g)) in updates.iter().zip(&self.layers).zip(grads).enumerate() {
            vg += match g {
                LayerGrad::Full(g) => dot(u, g),
                LayerGrad::Rows(_) => dot(u, &layout::gather(l, params, &pass.grads, 0.0)?),
                LayerGrad::InBasis => {
                    let damped = self.fast[i].damped_in_basis()?;
                    quadratic_in_basis(l, params, pass, damped, wd)?
                }
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
    /// `W̄_l ← W̄_l − η·m_l`; fused with preconditioning for a [`LayerGrad::InBasis`] layer
    /// ([`step_in_basis`]). Returns `Σ_l ‖η·m_l‖²` and whether every weight written is finite
    /// (checked in the same pass, [`StepStats::weights_finite`](crate::optim::StepStats)).
    pub(super) fn apply_momentum(
        &mut self,
        params: &mut ParamStore<F>,
        pass: &BackwardOutput<F>,
        grads: &[LayerGrad<'_, F>],
        updates: Vec<Vec<F>>,
        nu: F,
    ) -> Result<(f64, bool)> {
        let c = &self.config;
        let (lr, mu, wd) = (
            F::from_f64(c.lr),
            F::from_f64(c.momentum),
            F::from_f64(c.weight_decay),
        );
        let (mut update_sq, mut finite) = (0.0, true);
        for (i, ((u, l), g)) in updates.into_iter().zip(&self.layers).zip(grads).enumerate() {
            let m = self.momentum[i].get_or_insert_with(|| vec![F::ZERO; l.d_out * l.d_in_bar()]);
            if let LayerGrad::InBasis = g {
                let damped = self.fast[i].damped_in_basis()?;
                let (sq, ok) = step_in_basis(l, params, pass, damped, m, [lr, mu, nu, wd])?;
                (update_sq, finite) = (update_sq + sq, finite && ok);
                continue;
            }
            m.iter_mut()
                .zip(&u)
                .for_each(|(m, &u)| *m = mu * *m + nu * u);
            let step: Vec<F> = m.iter().map(|&m| lr * m).collect();
            update_sq += dot(&step, &step);
            finite &= layout::apply(l, params, &step);
        }
        Ok((update_sq, finite))
    }

    /// Plain SGD-momentum (`m ← μ·m + ∇ + wd·θ`, `θ ← θ − η·m`) for the parameters outside
    /// every layer. Returns `Σ ‖η·m‖²` and whether every weight written is finite.
    pub(super) fn step_loose(
        &mut self,
        params: &mut ParamStore<F>,
        pass: &BackwardOutput<F>,
    ) -> (f64, bool) {
        let c = &self.config;
        let hyper = [c.lr, c.momentum, c.weight_decay].map(F::from_f64);
        let (mut update_sq, mut finite) = (0.0, true);
        for ((id, _), m) in self.loose.iter().zip(self.loose_momentum.iter_mut()) {
            let Some(g) = pass.grads.get(*id) else {
                continue;
            };
            let w = params.get_mut(*id).data_mut();
            let m = m.get_or_insert_with(|| vec![F::ZERO; w.len()]);
            update_sq += sgd_update(w, m, g.data(), hyper, false);
            finite &= w.iter().all(|x| x.is_finite());
        }
        (update_sq, finite)
    }
}

/// `Σ aᵢbᵢ` accumulated in f64.
fn dot<F: Float>(a: &[F], b: &[F]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.to_f64() * y.to_f64())
        .sum()
}

/// `⟨Ũ, M + wd·W̃⟩ = Σ ũ·(m + wd·w̃)` with `ũ = (m + wd·w̃)/d` over the entries of a
/// [`LayerGrad::InBasis`] layer's block (KL-clipping), each term rounded as the gathered path
/// rounds it.
fn quadratic_in_basis<F: Float>(
    l: &LayerInfo,
    params: &ParamStore<F>,
    pass: &BackwardOutput<F>,
    damped: &[F],
    wd: F,
) -> Result<f64> {
    let (gw, gb) = layer_gradient(l, params, pass)?;
    let cols = l.d_in_bar();
    let w = params.get(l.weight).data();
    let b = l.bias.map(|b| params.get(b).data());
    let term = |w: F, g: F, d: F| {
        let m = g + wd * w;
        (m / d).to_f64() * m.to_f64()
    };
    let rows = w.par_chunks(l.d_in).zip(gw.par_chunks(l.d_in));
    let weights: f64 = rows
        .zip(damped.par_chunks(cols))
        .map(|((w, g), d)| {
            w.iter()
                .zip(g)
                .zip(d)
                .map(|((&w, &g), &d)| term(w, g, d))
                .sum::<f64>()
        })
        .sum();
    let bias: f64 = match (b, gb) {
        (Some(b), Some(gb)) => (0..l.d_out)
            .map(|o| term(b[o], gb[o], damped[o * cols + l.d_in]))
            .sum(),
        _ => 0.0,
    };
    Ok(weights + bias)
}

/// The update of a [`LayerGrad::InBasis`] layer in one pass over its weights, gradient and
/// momentum (module docs), parallel over rows: per entry of `[W̃ | b̃]`, `ũ = (m + wd·w̃)/d`,
/// `ṽ ← μ·ṽ + ν·ũ`, `w̃ ← w̃ − η·ṽ`, the same arithmetic as gathering, preconditioning and
/// `apply_momentum`. `hyper` is `[η, μ, ν, wd]`. Returns `‖η·ṽ‖²`, summed row by row in the
/// same pass, and whether every weight written is finite (checked there too).
fn step_in_basis<F: Float>(
    l: &LayerInfo,
    params: &mut ParamStore<F>,
    pass: &BackwardOutput<F>,
    damped: &[F],
    momentum: &mut [F],
    [lr, mu, nu, wd]: [F; 4],
) -> Result<(f64, bool)> {
    let (gw, gb) = layer_gradient(l, params, pass)?;
    let (d_in, cols) = (l.d_in, l.d_in_bar());
    let entry = |w: &mut F, g: F, d: F, v: &mut F| {
        let u = (g + wd * *w) / d;
        *v = mu * *v + nu * u;
        *w -= lr * *v;
        w.is_finite()
    };
    let w = params.get_mut(l.weight).data_mut();
    let rows = w.par_chunks_mut(d_in).zip(gw.par_chunks(d_in));
    // NOTE: the rows' sums are collected in order and added on one thread, so the total does
    // not depend on how rayon split the rows (the step is bit-identical on 1 and 2 threads).
    let row_sums: Vec<(f64, bool)> = rows
        .zip(damped.par_chunks(cols))
        .zip(momentum.par_chunks_mut(cols))
        .with_min_len(16)
        .map(|(((w, g), d), v)| {
            let mut finite = true;
            for (((w, &g), &d), v) in w.iter_mut().zip(g).zip(d).zip(v.iter_mut()) {
                finite &= entry(w, g, d, v);
            }
            (scaled_sum_of_squares(&v[..w.len()], lr), finite)
        })
        .collect();
    let weights: f64 = row_sums.iter().map(|r| r.0).sum();
    let mut finite = row_sums.iter().all(|r| r.1);
    let mut bias = 0.0;
    if let (Some(b), Some(gb)) = (l.bias, gb) {
        let b = params.get_mut(b).data_mut();
        for o in 0..l.d_out {
            let k = o * cols + d_in;
            finite &= entry(&mut b[o], gb[o], damped[k], &mut momentum[k]);
            bias += (lr * momentum[k]).to_f64().powi(2);
        }
    }
    Ok((weights + bias, finite))
}

/// `Σ (η·x)²` in f64, over eight independent partial sums (so the loop vectorises).
fn scaled_sum_of_squares<F: Float>(x: &[F], lr: F) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| (lr * x).to_f64().powi(2))
        .sum();
    for c in chunks {
        for (s, &x) in lanes.iter_mut().zip(c) {
            let step = (lr * x).to_f64();
            *s += step * step;
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// A layer's weight and bias gradients in `pass`, checked against its shape.
fn layer_gradient<'p, F: Float>(
    l: &LayerInfo,
    params: &ParamStore<F>,
    pass: &'p BackwardOutput<F>,
) -> Result<(&'p [F], Option<&'p [F]>)> {
    let gw = pass.grads.require(l.weight, params)?.data();
    let gb = match l.bias {
        Some(b) => Some(pass.grads.require(b, params)?.data()),
        None => None,
    };
    if gw.len() != l.d_out * l.d_in || gb.is_some_and(|b| b.len() != l.d_out) {
        let msg = format!("layer {}: gradient shape differs from the layer's", l.name);
        return Err(Error::invalid("natural gradient", msg));
    }
    Ok((gw, gb))
}
