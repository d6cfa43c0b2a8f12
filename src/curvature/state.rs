//! A block's state as named f64 arrays, for checkpoints: what `save`/`load` glue writes with
//! one `put_f64(prefix.name, shape, data)` per array, without knowing the block's internals.
//!
//! | name | shape | content |
//! |---|---|---|
//! | `a_factor`, `g_factor` | `[d_in', d_in']`, `[d_out, d_out]` | averaged factors (`A, G` or `δΦ, δΨ`) |
//! | `trace_scale` | `[1]` | averaged `δ` (1 for K-FAC/EKFAC) |
//! | `q_a`, `d_a`, `q_g`, `d_g` | `[d, d]`, `[d]` | the eigenbasis |
//! | `basis_trace_scale` | `[1]` | the `δ` the basis was built with |
//! | `corrected` | `[d_out, d_in']` | `s*`/`Θ` |
//! | `rayleigh_a`, `rayleigh_g` | `[d_in']`, `[d_out]` | tracked Rayleigh quotients (`block.rs`) |
//!
//! Arrays are absent when that part of the state does not exist yet (no observation, no
//! refresh, quotients not tracked). Matrices are row-major. A restored running average counts
//! as one observation. Tracked quotients are restored only beside factors and a basis that is
//! orthonormal (probed, `O(n²)`): a warm refresh keeps a basis on them without checking it again.

use super::basis::KroneckerBasis;
use super::block::CurvatureBlock;
use super::factors::KroneckerFactors;
use super::refine::probe_orthonormal;
use crate::error::{Error, Result};
use nalgebra::{DMatrix, DVector};

/// One named array of a block's state: shape and row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct StateArray {
    /// Name within the block (see the module table), e.g. `a_factor`.
    pub name: &'static str,
    /// `[rows, cols]`, `[len]` or `[1]`.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f64>,
}

impl StateArray {
    fn matrix(name: &'static str, m: &DMatrix<f64>) -> Self {
        let data = m.transpose().as_slice().to_vec();
        StateArray {
            name,
            shape: vec![m.nrows(), m.ncols()],
            data,
        }
    }

    fn vector(name: &'static str, v: &DVector<f64>) -> Self {
        StateArray {
            name,
            shape: vec![v.len()],
            data: v.as_slice().to_vec(),
        }
    }

    fn scalar(name: &'static str, x: f64) -> Self {
        StateArray {
            name,
            shape: vec![1],
            data: vec![x],
        }
    }
}

impl CurvatureBlock {
    /// Every array name [`state`](Self::state) may produce.
    pub const STATE_NAMES: [&'static str; 11] = [
        "a_factor",
        "g_factor",
        "trace_scale",
        "q_a",
        "d_a",
        "q_g",
        "d_g",
        "basis_trace_scale",
        "corrected",
        "rayleigh_a",
        "rayleigh_g",
    ];

    /// The block's state as named arrays (module docs).
    pub fn state(&self) -> Vec<StateArray> {
        let mut out = Vec::new();
        if let Some(f) = self.factors.value() {
            out.push(StateArray::matrix("a_factor", &f.a_factor));
            out.push(StateArray::matrix("g_factor", &f.g_factor));
            out.push(StateArray::scalar("trace_scale", f.trace_scale));
        }
        if let Some(b) = &self.basis {
            out.push(StateArray::matrix("q_a", &b.q_a));
            out.push(StateArray::vector("d_a", &b.d_a));
            out.push(StateArray::matrix("q_g", &b.q_g));
            out.push(StateArray::vector("d_g", &b.d_g));
            out.push(StateArray::scalar(
                "basis_trace_scale",
                self.basis_trace_scale,
            ));
        }
        if let Some(c) = self.corrected.value() {
            out.push(StateArray::matrix("corrected", c));
        }
        if let Some([a, g]) = &self.rayleigh {
            out.push(StateArray::vector("rayleigh_a", a));
            out.push(StateArray::vector("rayleigh_g", g));
        }
        out
    }

    /// Restores a state written by [`state`](Self::state); errors on a shape that does not fit
    /// this block. Parts whose arrays are absent are left empty.
    pub fn restore(&mut self, arrays: &[StateArray]) -> Result<()> {
        let (d_out, d_in_bar) = self.dims();
        let get = |name: &'static str, shape: &[usize]| -> Result<Option<Vec<f64>>> {
            let Some(a) = arrays.iter().find(|a| a.name == name) else {
                return Ok(None);
            };
            if a.shape != shape || a.data.len() != shape.iter().product::<usize>() {
                let msg = format!(
                    "`{name}` has shape {:?}, block {} needs {shape:?}",
                    a.shape,
                    self.name()
                );
                return Err(Error::Checkpoint(msg));
            }
            Ok(Some(a.data.clone()))
        };
        let mat = |name: &'static str, r: usize, c: usize| -> Result<Option<DMatrix<f64>>> {
            Ok(get(name, &[r, c])?.map(|d| DMatrix::from_row_slice(r, c, &d)))
        };
        let vector = |name: &'static str, n: usize| -> Result<Option<DVector<f64>>> {
            Ok(get(name, &[n])?.map(DVector::from_vec))
        };
        let scalar =
            |name: &'static str| -> Result<Option<f64>> { Ok(get(name, &[1])?.map(|d| d[0])) };
        let factors = match (
            mat("a_factor", d_in_bar, d_in_bar)?,
            mat("g_factor", d_out, d_out)?,
            scalar("trace_scale")?,
        ) {
            (Some(a_factor), Some(g_factor), Some(trace_scale)) => Some(KroneckerFactors {
                a_factor,
                g_factor,
                trace_scale,
            }),
            _ => None,
        };
        let basis = match (
            mat("q_a", d_in_bar, d_in_bar)?,
            vector("d_a", d_in_bar)?,
            mat("q_g", d_out, d_out)?,
            vector("d_g", d_out)?,
        ) {
            (Some(q_a), Some(d_a), Some(q_g), Some(d_g)) => {
                Some(KroneckerBasis { q_a, d_a, q_g, d_g })
            }
            _ => None,
        };
        let basis_trace_scale = scalar("basis_trace_scale")?.unwrap_or(1.0);
        let corrected = mat("corrected", d_out, d_in_bar)?;
        let rayleigh = match (
            vector("rayleigh_a", d_in_bar)?,
            vector("rayleigh_g", d_out)?,
        ) {
            (Some(a), Some(g)) if a.iter().chain(g.iter()).all(|x| x.is_finite()) => Some([a, g]),
            (None, None) => None,
            _ => {
                let msg = format!(
                    "block {}: tracked Rayleigh quotients incomplete or not finite",
                    self.name()
                );
                return Err(Error::Checkpoint(msg));
            }
        };
        let tracked = rayleigh.filter(|_| factors.is_some()).filter(|_| {
            basis
                .as_ref()
                .is_some_and(|b| probe_orthonormal(&b.q_a) && probe_orthonormal(&b.q_g))
        });
        self.factors.reset();
        factors.into_iter().for_each(|f| self.factors.reseed(f));
        self.corrected.reset();
        corrected.into_iter().for_each(|c| self.corrected.reseed(c));
        (self.basis, self.basis_trace_scale) = (basis, basis_trace_scale);
        self.basis_changed();
        self.rayleigh = tracked;
        Ok(())
    }
}
