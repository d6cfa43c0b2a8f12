//! Finite-difference gradient checking in f64, shared by the tests of every op and layer.
//!
//! For each parameter coordinate θ_i (all of them, or a seeded random subset for big tensors),
//! the central difference `(L(θ + ε e_i) − L(θ − ε e_i)) / 2ε` is compared with the tape's
//! gradient. The error of one tensor is `‖analytic − numeric‖₂ / max(‖analytic‖₂, ‖numeric‖₂)`
//! over the checked coordinates; the report keeps the worst tensor.

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::params::ParamStore;
use crate::tensor::{Tensor, seeded_rng};
use rand::RngExt;

/// Settings of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradCheckOptions {
    /// Step of the central difference.
    pub eps: f64,
    /// Check at most this many coordinates per tensor (a seeded random subset beyond it).
    pub max_coords: usize,
    /// Seed of the coordinate subset.
    pub seed: u64,
}

impl Default for GradCheckOptions {
    fn default() -> Self {
        GradCheckOptions {
            eps: 1e-6,
            max_coords: 64,
            seed: 0,
        }
    }
}

/// The outcome of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheckReport {
    /// Largest relative error over the checked tensors.
    pub max_rel_error: f64,
    /// Name of the tensor with that error.
    pub worst: String,
    /// Number of coordinates compared.
    pub coords: usize,
}

/// Compares the tape's gradients of the scalar built by `loss` with central differences for
/// every parameter in `params`.
///
/// ```
/// use tekfac::gradcheck::{GradCheckOptions, check_gradients, weighted_sum};
/// use tekfac::nn::{Linear, Module};
/// use tekfac::tensor::seeded_rng;
/// use tekfac::{ParamStore, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(0);
/// let fc = Linear::new(&mut params, "fc", 3, 2, true)?;
/// let x = Tensor::randn(&[4, 3], 0.0, 1.0, &mut seeded_rng(1));
/// let report = check_gradients(
///     &params,
///     |tape| {
///         let xv = tape.input(x.clone());
///         let y = fc.forward(tape, xv)?;
///         let y = tape.tanh(y);
///         weighted_sum(tape, y, 2) // Σ rᵢ yᵢ with fixed random rᵢ
///     },
///     GradCheckOptions::default(),
/// )?;
/// assert_eq!(report.coords, 8); // 6 weights + 2 biases
/// assert!(report.max_rel_error < 1e-7, "{report:?}");
/// # Ok::<(), tekfac::Error>(())
/// ```
pub fn check_gradients(
    params: &ParamStore<f64>,
    loss: impl Fn(&mut Tape<'_, f64>) -> Result<Var>,
    opts: GradCheckOptions,
) -> Result<GradCheckReport> {
    let mut tape = Tape::new(params);
    let out = loss(&mut tape)?;
    let analytic = tape.backward(out)?.grads;
    let mut probe = params.clone();
    let mut rng = seeded_rng(opts.seed);
    let mut report = GradCheckReport {
        max_rel_error: 0.0,
        worst: String::new(),
        coords: 0,
    };
    for id in params.ids() {
        let n = params.get(id).len();
        let coords: Vec<usize> = if n <= opts.max_coords {
            (0..n).collect()
        } else {
            (0..opts.max_coords)
                .map(|_| rng.random_range(0..n))
                .collect()
        };
        let zero = Tensor::zeros(params.get(id).dims());
        let grad = analytic.get(id).unwrap_or(&zero);
        let (mut diff, mut na, mut nn) = (0.0f64, 0.0f64, 0.0f64);
        for &i in &coords {
            let numeric = central_difference(&mut probe, id, i, opts.eps, &loss)?;
            let a = grad.data()[i];
            diff += (a - numeric).powi(2);
            na += a * a;
            nn += numeric * numeric;
        }
        let rel = if na.max(nn) == 0.0 {
            0.0
        } else {
            diff.sqrt() / na.max(nn).sqrt()
        };
        report.coords += coords.len();
        if rel > report.max_rel_error || report.worst.is_empty() {
            report.max_rel_error = rel.max(report.max_rel_error);
            report.worst = params.name(id).to_string();
        }
    }
    Ok(report)
}

fn central_difference(
    probe: &mut ParamStore<f64>,
    id: crate::ParamId,
    i: usize,
    eps: f64,
    loss: &impl Fn(&mut Tape<'_, f64>) -> Result<Var>,
) -> Result<f64> {
    let original = probe.get(id).data()[i];
    let eval = |x: f64, probe: &mut ParamStore<f64>| -> Result<f64> {
        probe.get_mut(id).data_mut()[i] = x;
        let mut tape = Tape::no_grad(probe);
        let v = loss(&mut tape)?;
        tape.value(v).item()
    };
    let plus = eval(original + eps, probe)?;
    let minus = eval(original - eps, probe)?;
    probe.get_mut(id).data_mut()[i] = original;
    let d = (plus - minus) / (2.0 * eps);
    if !d.is_finite() {
        return Err(Error::NonFinite {
            what: format!("finite difference of {}", probe.name(id)),
            step: None,
        });
    }
    Ok(d)
}

/// `Σ_i r_i y_i` with fixed random weights `r ~ N(0, 1)` (seeded), so that upstream gradients in
/// a check are not all ones.
pub fn weighted_sum(tape: &mut Tape<'_, f64>, y: Var, seed: u64) -> Result<Var> {
    let r = Tensor::randn(tape.value(y).dims(), 0.0, 1.0, &mut seeded_rng(seed));
    let r = tape.input(r);
    let prod = tape.mul(y, r)?;
    Ok(tape.sum(prod))
}
