//! Checkpoints: weights and optimizer state as `.safetensors` files, written atomically.
//!
//! Weights are stored under their parameter names (`fc1.weight`), so the Python `safetensors`
//! package loads them directly. Optimizer state (momentum, factors, bases, s*/Θ, counters) goes
//! through the same [`TensorDict`], with integer counters in the file's metadata.

mod atomic;
mod dict;

pub use atomic::write_atomic;
pub use dict::{TensorDict, read_dict, write_dict};

use crate::error::{Error, Result};
use crate::params::ParamStore;
use crate::tensor::Float;
use std::path::Path;

/// Saves every parameter of `params` under its name, always in the standard parametrisation
/// `W̄ = [W | b]` (a layer stored in its eigenbasis is converted, [`ParamStore::to_standard`]).
///
/// ```
/// use tekfac::checkpoint::{load_params, save_params};
/// use tekfac::nn::Linear;
/// use tekfac::ParamStore;
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("weights.safetensors");
/// let mut trained = ParamStore::<f32>::seeded(1);
/// let fc = Linear::new(&mut trained, "fc", 3, 2, true)?;
/// save_params(&path, &trained, &[("epoch", "3".to_string())])?;
///
/// let mut fresh = ParamStore::<f32>::seeded(2); // other initial weights, same names
/// Linear::new(&mut fresh, "fc", 3, 2, true)?;
/// let dict = load_params(&path, &mut fresh)?;
/// assert_eq!(fresh.get(fc.weight()), trained.get(fc.weight()));
/// assert_eq!(dict.meta["epoch"], "3");
/// # Ok::<(), tekfac::Error>(())
/// ```
pub fn save_params<F: Float>(
    path: &Path,
    params: &ParamStore<F>,
    metadata: &[(&str, String)],
) -> Result<()> {
    let standard;
    let params = if params.has_eigenbases() {
        standard = params.to_standard();
        &standard
    } else {
        params
    };
    let mut dict = TensorDict::default();
    for id in params.ids() {
        dict.put_tensor(params.name(id), params.get(id));
    }
    for (k, v) in metadata {
        dict.meta.insert((*k).to_string(), v.clone());
    }
    write_dict(path, &dict)
}

/// Loads weights saved by [`save_params`] into `params`, refusing a file whose names, shapes or
/// element type do not match the model exactly, or that holds a NaN or infinity. The loaded
/// weights are standard, so every layer's eigenbasis is cleared (an optimizer's `load_state`
/// may put its layers back).
pub fn load_params<F: Float>(path: &Path, params: &mut ParamStore<F>) -> Result<TensorDict> {
    let dict = read_dict(path)?;
    load_params_from(&dict, params, &path.display().to_string())?;
    Ok(dict)
}

/// [`load_params`] from a dict already read; `source` names it in errors. Nothing is changed
/// unless every parameter is there, with its shape and finite values.
pub fn load_params_from<F: Float>(
    dict: &TensorDict,
    params: &mut ParamStore<F>,
    source: &str,
) -> Result<()> {
    let bad = |msg: String| Error::Checkpoint(format!("{source}: {msg}"));
    if dict.len() != params.len() {
        return Err(bad(format!(
            "holds {} tensors, the model has {} parameters",
            dict.len(),
            params.len()
        )));
    }
    let mut loaded = Vec::with_capacity(params.len());
    for id in params.ids() {
        let name = params.name(id);
        let t = dict
            .tensor_shaped::<F>(name, params.get(id).dims())
            .map_err(|e| bad(e.to_string().trim_start_matches("checkpoint: ").to_string()))?;
        loaded.push((id, t));
    }
    for (id, t) in loaded {
        *params.get_mut(id) = t;
    }
    params.clear_eigenbases();
    Ok(())
}
