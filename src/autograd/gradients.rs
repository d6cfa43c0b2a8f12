//! `Gradients`: one optional tensor per parameter, keyed by [`ParamId`].

use crate::error::{Error, Result};
use crate::params::{ParamId, ParamStore};
use crate::tensor::{Float, PAR_CHUNK, Tensor, chunk_all_finite};
use rayon::prelude::*;

/// Parameter gradients from one backward sweep (`None` for parameters the loss did not reach).
///
/// ```
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(0);
/// let used = params.add("used", Tensor::from_vec(vec![3.0, 4.0], &[2])?)?;
/// let unused = params.add("unused", Tensor::zeros(&[2]))?;
/// let mut tape = Tape::new(&params);
/// let u = tape.param(used);
/// let sq = tape.mul(u, u)?;
/// let loss = tape.sum(sq); // Σ u², gradient 2u
/// let grads = tape.backward(loss)?.grads;
/// assert_eq!(grads.get(used).unwrap().data(), &[6.0, 8.0]);
/// assert!(grads.get(unused).is_none());
/// assert_eq!(grads.global_norm(), 10.0);
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Gradients<F: Float = f32> {
    by_param: Vec<Option<Tensor<F>>>,
}

impl<F: Float> Gradients<F> {
    /// No gradients yet, room for `n` parameters.
    pub(crate) fn new(n: usize) -> Self {
        Gradients {
            by_param: vec![None; n],
        }
    }

    /// Adds `g` into the gradient of `id` (sum when a parameter is used more than once).
    pub(crate) fn accumulate(&mut self, id: ParamId, g: Tensor<F>) -> Result<()> {
        match &mut self.by_param[id.0] {
            Some(acc) => acc.axpy(F::ONE, &g),
            slot @ None => {
                *slot = Some(g);
                Ok(())
            }
        }
    }

    /// The gradient of one parameter.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<F>> {
        self.by_param.get(id.0).and_then(Option::as_ref)
    }

    /// The gradient of one parameter, or an error naming it.
    pub fn require(&self, id: ParamId, params: &ParamStore<F>) -> Result<&Tensor<F>> {
        self.get(id).ok_or_else(|| {
            Error::Autograd(format!(
                "no gradient reached parameter `{}`",
                params.name(id)
            ))
        })
    }

    /// `(id, gradient)` for every parameter that has one.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Tensor<F>)> {
        self.by_param
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (ParamId(i), g)))
    }

    /// Euclidean norm of all gradients together, accumulated in f64.
    pub fn global_norm(&self) -> f64 {
        self.iter()
            .map(|(_, g)| g.sum_squares())
            .sum::<f64>()
            .sqrt()
    }

    /// The first parameter whose gradient holds a NaN or infinity.
    pub fn first_non_finite(&self) -> Option<ParamId> {
        if self.all_finite() {
            return None;
        }
        self.iter().find(|(_, g)| !g.all_finite()).map(|(id, _)| id)
    }

    /// True when every gradient is finite: one parallel pass over chunks of all the gradients
    /// together (one fork-join per step, not one per tensor).
    pub fn all_finite(&self) -> bool {
        let chunks: Vec<&[F]> = self
            .iter()
            .flat_map(|(_, g)| g.data().chunks(PAR_CHUNK))
            .collect();
        if chunks.len() >= 2 {
            chunks.into_par_iter().all(chunk_all_finite)
        } else {
            chunks.into_iter().all(chunk_all_finite)
        }
    }
}
