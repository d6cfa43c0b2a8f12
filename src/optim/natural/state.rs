//! Checkpoint state of [`NaturalGradient`]: the step counter and variant as metadata, each
//! block's f64 state (`ng.<layer>.<array>`, see `curvature/state.rs`), and the momentum buffers
//! (`ng.<layer>.momentum`, `ng.loose.<param>.momentum`) in the training precision, and each
//! layer's refresh policy state (`ng.<layer>.warm_streak`, `curvature/warm.rs`), and the f32
//! statistics a layer holds for its next refresh, when it holds any (`ng.<layer>.pending_*`,
//! `curvature/pending.rs`).
//!
//! A layer stored in its eigenbasis (`eigenbasis.rs`) also saves its stored block
//! `ng.<layer>.eigenbasis_weight` = `W̃` (its momentum is in the same coordinates); the weights
//! file itself always holds the standard `W̄` (`checkpoint::save_params`). Loading puts `W̃` and
//! the basis (the block's restored one, in `F`) back, so a resumed run continues bit-identically.

use super::NaturalGradient;
use crate::checkpoint::TensorDict;
use crate::curvature::{
    CurvatureBlock, EigenRefresh, FastBasis, PendingFactors, PendingParts, StateArray,
};
use crate::error::{Error, Result};
use crate::params::{LayerEigenbasis, LayerId, LayerInfo, ParamStore};
use crate::tensor::{Float, Tensor};

impl<F: Float> NaturalGradient<F> {
    /// Writes everything needed to continue bit-identically.
    pub(super) fn save(&self, params: &ParamStore<F>, dict: &mut TensorDict) {
        dict.meta.insert("ng.step".into(), self.step.to_string());
        dict.meta
            .insert("ng.variant".into(), format!("{:?}", self.variant));
        let per_layer = self.blocks.iter().zip(&self.momentum).zip(&self.refresh);
        for ((l, ((b, m), policy)), pending) in self.layers.iter().zip(per_layer).zip(&self.pending)
        {
            for a in b.state() {
                dict.put_f64(&format!("ng.{}.{}", l.name, a.name), &a.shape, &a.data);
            }
            if !pending.is_empty() {
                save_pending(dict, l, pending);
            }
            let [a, g] = policy.warm_streak();
            dict.put_f64(
                &format!("ng.{}.warm_streak", l.name),
                &[2],
                &[a as f64, g as f64],
            );
            if let Some(m) = m {
                dict.put_tensor(&format!("ng.{}.momentum", l.name), &vector(m));
            }
        }
        for (i, l) in self.layers.iter().enumerate() {
            if params.eigenbasis(LayerId(i)).is_some() {
                let key = format!("ng.{}.eigenbasis_weight", l.name);
                dict.put_tensor(&key, &vector(&params.block(LayerId(i))));
            }
        }
        for ((_, name), m) in self.loose.iter().zip(&self.loose_momentum) {
            if let Some(m) = m {
                dict.put_tensor(&format!("ng.loose.{name}.momentum"), &vector(m));
            }
        }
    }

    /// Restores what [`save`](Self::save) wrote; errors on a different variant, a missing step
    /// counter, or an array or momentum buffer that does not fit its layer (named in the error).
    pub(super) fn load(&mut self, params: &mut ParamStore<F>, dict: &TensorDict) -> Result<()> {
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
            let len = l.d_out * l.d_in_bar();
            *m = optional_vector(dict, &format!("ng.{}.momentum", l.name), len)?;
        }
        for (l, pending) in self.layers.iter().zip(self.pending.iter_mut()) {
            *pending = load_pending(dict, l)?;
        }
        self.load_refresh_policies(dict)?;
        for ((id, name), m) in self.loose.iter().zip(self.loose_momentum.iter_mut()) {
            let len = params.get(*id).len();
            *m = optional_vector(dict, &format!("ng.loose.{name}.momentum"), len)?;
        }
        self.load_eigenbases(params, dict)
    }

    /// Restores each layer's count of warm refreshes since its last exact one (so a resumed
    /// run schedules its exact refreshes as the uninterrupted one would); none saved: zero.
    fn load_refresh_policies(&mut self, dict: &TensorDict) -> Result<()> {
        for (l, policy) in self.layers.iter().zip(self.refresh.iter_mut()) {
            let key = format!("ng.{}.warm_streak", l.name);
            let streak = match dict.contains(&key) {
                true => match dict.f64s(&key)?.1.as_slice() {
                    &[a, g] if [a, g].iter().all(|x| x.fract() == 0.0 && *x >= 0.0) => {
                        [a as u64, g as u64]
                    }
                    _ => return Err(Error::Checkpoint(format!("`{key}` must hold two counts"))),
                },
                false => [0, 0],
            };
            *policy = EigenRefresh::resume(*policy.settings(), streak)?;
        }
        Ok(())
    }

    /// Puts the layers saved in their eigenbasis back into it: `W̃` from the dict, the basis
    /// from the restored block.
    fn load_eigenbases(&mut self, params: &mut ParamStore<F>, dict: &TensorDict) -> Result<()> {
        params.clear_eigenbases();
        for i in 0..self.layers.len() {
            let (l, block) = (&self.layers[i], &self.blocks[i]);
            let key = format!("ng.{}.eigenbasis_weight", l.name);
            let len = l.d_out * l.d_in_bar();
            let Some(w_tilde) = optional_vector::<F>(dict, &key, len)? else {
                self.basis_revision[i] = None;
                continue;
            };
            let basis = block.basis().ok_or_else(|| {
                Error::Checkpoint(format!(
                    "`{key}` is saved, but layer {} has no basis",
                    l.name
                ))
            })?;
            let fast = FastBasis::<F>::new(basis);
            let basis = LayerEigenbasis {
                q_a: fast.q_a().to_vec(),
                q_g: fast.q_g().to_vec(),
            };
            params.set_block(LayerId(i), &w_tilde);
            params.set_eigenbasis(LayerId(i), Some(basis))?;
            self.basis_revision[i] = Some(block.basis_revision());
        }
        Ok(())
    }
}

/// The keys of a layer's held f32 statistics (`curvature/pending.rs`), saved only when some are
/// held: `ā` and `g` rows (f32), their weights and `[trace_scale, decay, count]` (f64); and,
/// when they are tracked, their shares of the Rayleigh quotients (f64, the last two keys).
const PENDING_KEYS: [&str; 7] = [
    "pending_a_rows",
    "pending_a_weights",
    "pending_g_rows",
    "pending_g_weights",
    "pending_scalars",
    "pending_rayleigh_a",
    "pending_rayleigh_g",
];

fn save_pending(dict: &mut TensorDict, l: &LayerInfo, pending: &PendingFactors) {
    let PendingParts {
        a_rows,
        a_weights,
        g_rows,
        g_weights,
        scalars,
        rayleigh,
    } = pending.parts();
    let key = |k: usize| format!("ng.{}.{}", l.name, PENDING_KEYS[k]);
    dict.put_tensor(&key(0), &vector(&a_rows));
    dict.put_f64(&key(1), &[a_weights.len()], &a_weights);
    dict.put_tensor(&key(2), &vector(&g_rows));
    dict.put_f64(&key(3), &[g_weights.len()], &g_weights);
    dict.put_f64(&key(4), &[3], &scalars);
    if let Some([a, g]) = rayleigh {
        dict.put_f64(&key(5), &[a.len()], &a);
        dict.put_f64(&key(6), &[g.len()], &g);
    }
}

/// A layer's held statistics from the dict (none saved: nothing held); an error names a part
/// that is missing or does not fit the layer.
fn load_pending(dict: &TensorDict, l: &LayerInfo) -> Result<PendingFactors> {
    let dims = (l.d_out, l.d_in_bar());
    let key = |k: usize| format!("ng.{}.{}", l.name, PENDING_KEYS[k]);
    if !(0..PENDING_KEYS.len()).any(|k| dict.contains(&key(k))) {
        return Ok(PendingFactors::new(dims));
    }
    let rows = |k: usize| -> Result<Vec<f32>> { Ok(dict.tensor::<f32>(&key(k))?.into_vec()) };
    let f64s = |k: usize| -> Result<Vec<f64>> { Ok(dict.f64s(&key(k))?.1) };
    let scalars: [f64; 3] = f64s(4)?
        .try_into()
        .map_err(|_| Error::Checkpoint(format!("`{}` must hold three values", key(4))))?;
    let rayleigh = match (dict.contains(&key(5)), dict.contains(&key(6))) {
        (false, false) => None,
        _ => Some([f64s(5)?, f64s(6)?]),
    };
    let parts = PendingParts {
        a_rows: rows(0)?,
        a_weights: f64s(1)?,
        g_rows: rows(2)?,
        g_weights: f64s(3)?,
        scalars,
        rayleigh,
    };
    PendingFactors::from_parts(dims, parts).map_err(|e| match e {
        Error::Checkpoint(m) => Error::Checkpoint(format!("layer {}: {m}", l.name)),
        e => e,
    })
}

fn vector<F: Float>(v: &[F]) -> Tensor<F> {
    Tensor::from_vec(v.to_vec(), &[v.len()]).expect("a vector")
}

/// The vector `key` of length `len`, if the checkpoint holds one; any other shape is an error
/// naming the tensor.
fn optional_vector<F: Float>(dict: &TensorDict, key: &str, len: usize) -> Result<Option<Vec<F>>> {
    if !dict.contains(key) {
        return Ok(None);
    }
    Ok(Some(dict.tensor_shaped::<F>(key, &[len])?.into_vec()))
}
