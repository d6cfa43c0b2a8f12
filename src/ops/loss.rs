//! Mean-reduced losses and the label sampling behind the Fisher sweeps.
//!
//! | loss | value | per-example loss ℓ_n | ∂ℓ_n/∂input | true-Fisher labels |
//! |---|---|---|---|---|
//! | `cross_entropy` | `−(1/N) Σ_n log p_{n,y_n}` | `−log p_{y}` | `p − e_y` | `y ~ Cat(p)` |
//! | `bce_with_logits` | mean over all N·D elements | `(1/D) Σ_d bce` | `(σ − t)/D` | `t_d ~ Bern(σ_d)` |
//! | `mse` | mean over all N·D of `(x − t)²` | `(1/D)‖x − t‖²` | `2(x − t)/D` | `t ~ N(x, D/2·I)` |
//!
//! Sampled sweeps backpropagate `∂ℓ_n/∂input` at the sampled labels, except for BCE, whose
//! vector is scaled by `1/√D` instead of `1/D` so that its expected outer product is the GGN
//! of ℓ_n (see `sampled_seed`).
//!
//! Exact (type-2 / GGN) sweeps backpropagate vectors `v_c` with `Σ_c v_c v_cᵀ = ∂²ℓ_n/∂input²`:
//! `√p_c (p − e_c)` for softmax (`Σ_c p_c(p − e_c)(p − e_c)ᵀ = diag p − ppᵀ`), `√(σ_d(1−σ_d)/D) e_d`
//! for BCE and `√(2/D) e_d` for MSE. Seeds are per-example gradients divided by `N`, exactly
//! like the gradient of the mean loss, so every sweep is scaled the same way.

use crate::autograd::op::Op;
use crate::autograd::{FisherType, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::activation::{log_softmax_rows, sigmoid};
use crate::tensor::{Float, Tensor, seeded_rng};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

/// Which loss a `Loss` node computed, with its targets.
pub(crate) enum LossKind<F: Float> {
    /// Softmax cross-entropy with integer labels; `saved` = softmax probabilities.
    CrossEntropy { labels: Vec<usize> },
    /// Sigmoid binary cross-entropy on logits; `saved` = σ(logits).
    BceWithLogits { targets: Tensor<F> },
    /// Mean squared error; `saved` = residual `x − t`.
    Mse,
}

fn check_targets<F: Float>(x: &Tensor<F>, t: &Tensor<F>, op: &'static str) -> Result<()> {
    if x.shape() != t.shape() {
        return Err(Error::ShapeMismatch {
            op,
            why: "predictions and targets differ",
            left: x.shape(),
            right: t.shape(),
        });
    }
    Ok(())
}

impl<F: Float> Tape<'_, F> {
    /// Softmax cross-entropy of `[batch, classes]` logits against integer labels, mean over the
    /// batch. Fused and max-shifted: finite for logits of any magnitude.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[usize]) -> Result<Var> {
        let x = self.value(logits);
        let (n, c) = x.shape().dims2("cross_entropy")?;
        if labels.len() != n {
            return Err(Error::invalid(
                "cross_entropy",
                format!("{} labels for a batch of {n}", labels.len()),
            ));
        }
        if let Some(&bad) = labels.iter().find(|&&y| y >= c) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label {bad} out of range for {c} classes"),
            ));
        }
        let logp = log_softmax_rows(x);
        let total: f64 = labels
            .iter()
            .enumerate()
            .map(|(i, &y)| -logp.data()[i * c + y].to_f64())
            .sum();
        let probs = logp.map(F::exp);
        let value = Tensor::scalar(F::from_f64(total / n.max(1) as f64));
        let kind = LossKind::CrossEntropy {
            labels: labels.to_vec(),
        };
        Ok(self.push(
            Op::Loss {
                input: logits,
                kind,
                saved: probs,
            },
            value,
            &[logits],
        ))
    }

    /// Sigmoid binary cross-entropy with logits, mean over all elements:
    /// `max(x,0) − x·t + ln(1 + e^{−|x|})`, stable for any `x`.
    pub fn bce_with_logits(&mut self, logits: Var, targets: &Tensor<F>) -> Result<Var> {
        let x = self.value(logits);
        check_targets(x, targets, "bce_with_logits")?;
        let total: f64 = x
            .data()
            .iter()
            .zip(targets.data())
            .map(|(&x, &t)| (x.max(F::ZERO) - x * t + (-x.abs()).exp().ln_1p()).to_f64())
            .sum();
        let value = Tensor::scalar(F::from_f64(total / x.len().max(1) as f64));
        let kind = LossKind::BceWithLogits {
            targets: targets.clone(),
        };
        Ok(self.push(
            Op::Loss {
                input: logits,
                kind,
                saved: x.map(sigmoid),
            },
            value,
            &[logits],
        ))
    }

    /// Mean squared error over all elements, `mean((x − t)²)` (PyTorch's `MSELoss`).
    pub fn mse(&mut self, pred: Var, target: &Tensor<F>) -> Result<Var> {
        let x = self.value(pred);
        check_targets(x, target, "mse")?;
        let residual = x.sub(target)?;
        let total: f64 = residual
            .data()
            .iter()
            .map(|r| r.to_f64() * r.to_f64())
            .sum();
        let value = Tensor::scalar(F::from_f64(total / x.len().max(1) as f64));
        Ok(self.push(
            Op::Loss {
                input: pred,
                kind: LossKind::Mse,
                saved: residual,
            },
            value,
            &[pred],
        ))
    }
}

/// Gradient of the mean loss with respect to its input, times the upstream scalar `g`.
pub(crate) fn loss_backward<F: Float>(
    kind: &LossKind<F>,
    saved: &Tensor<F>,
    g: &Tensor<F>,
) -> Result<Tensor<F>> {
    let (n, d) = saved.shape().as_matrix();
    let g = g.item()?;
    Ok(match kind {
        LossKind::CrossEntropy { labels } => {
            let mut dx = saved.clone();
            labels
                .iter()
                .enumerate()
                .for_each(|(i, &y)| dx.data_mut()[i * d + y] -= F::ONE);
            dx.map_inplace(|v| v * g / F::from_f64(n as f64));
            dx
        }
        LossKind::BceWithLogits { targets } => {
            saved.zip_map(targets, "bce_with_logits", |s, t| {
                (s - t) * g / F::from_f64((n * d) as f64)
            })?
        }
        LossKind::Mse => saved.scale(g * F::from_f64(2.0 / (n * d) as f64)),
    })
}

/// Seeds at the loss input for the extra capture sweeps of a sampled or exact Fisher.
pub(crate) fn fisher_seeds<F: Float>(
    kind: &LossKind<F>,
    saved: &Tensor<F>,
    fisher: FisherType,
) -> Result<Vec<Tensor<F>>> {
    let (n, d) = saved.shape().as_matrix();
    let inv_n = 1.0 / n.max(1) as f64;
    let base = prediction(saved);
    match fisher {
        FisherType::Off | FisherType::Empirical => Ok(Vec::new()),
        FisherType::Sampled { k, seed } => {
            if k == 0 {
                return Err(Error::invalid(
                    "fisher",
                    "Sampled Fisher needs k ≥ 1 samples",
                ));
            }
            let mut rng = seeded_rng(seed);
            let w = inv_n / (k as f64).sqrt();
            Ok((0..k)
                .map(|_| sampled_seed(kind, &base, n, d, w, &mut rng))
                .collect())
        }
        FisherType::Exact => Ok((0..d)
            .map(|c| exact_seed(kind, &base, n, d, c, inv_n))
            .collect()),
    }
}

/// The model's predictive parameters the labels are drawn from: softmax p, sigmoid σ, or (for
/// MSE, where only the residual's distribution matters) the saved residual, unused.
fn prediction<F: Float>(saved: &Tensor<F>) -> Vec<f64> {
    saved.data().iter().map(|v| v.to_f64()).collect()
}

fn sampled_seed<F: Float>(
    kind: &LossKind<F>,
    p: &[f64],
    n: usize,
    d: usize,
    w: f64,
    rng: &mut crate::tensor::Rng,
) -> Tensor<F> {
    let mut seed = vec![F::ZERO; n * d];
    for (out, pr) in seed.chunks_mut(d.max(1)).zip(p.chunks(d.max(1))) {
        match kind {
            LossKind::CrossEntropy { .. } => {
                let u: f64 = rng.random_range(0.0..1.0);
                let y = sample_categorical(pr, u);
                for (j, o) in out.iter_mut().enumerate() {
                    *o = F::from_f64(w * (pr[j] - if j == y { 1.0 } else { 0.0 }));
                }
            }
            LossKind::BceWithLogits { .. } => {
                for (o, &s) in out.iter_mut().zip(pr) {
                    let t = if rng.random_range(0.0..1.0) < s {
                        1.0
                    } else {
                        0.0
                    };
                    // NOTE: `(σ − t)/√D`, not the gradient's `(σ − t)/D`: ℓ_n is the likelihood's
                    // NLL divided by D, whose curvature is `diag(σ(1 − σ))/D`, and
                    // `E[(σ − t)²] = σ(1 − σ)`, so this makes `Sampled` converge to `Exact`.
                    *o = F::from_f64(w * (s - t) / (d as f64).sqrt());
                }
            }
            LossKind::Mse => {
                // x − t with t ~ N(x, D/2): the residual is −√(D/2)·ε.
                for o in out.iter_mut() {
                    let eps: f64 = StandardNormal.sample(rng);
                    *o = F::from_f64(w * (2.0 / d as f64) * (-(d as f64 / 2.0).sqrt() * eps));
                }
            }
        }
    }
    Tensor::from_vec(seed, &[n, d]).expect("n * d elements")
}

/// Inverse-CDF draw from a categorical distribution with probabilities `p` (`u ∈ [0, 1)`).
fn sample_categorical(p: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (j, &pj) in p.iter().enumerate() {
        acc += pj;
        if u < acc {
            return j;
        }
    }
    p.len() - 1
}

fn exact_seed<F: Float>(
    kind: &LossKind<F>,
    p: &[f64],
    n: usize,
    d: usize,
    c: usize,
    inv_n: f64,
) -> Tensor<F> {
    let mut seed = vec![F::ZERO; n * d];
    for (out, pr) in seed.chunks_mut(d.max(1)).zip(p.chunks(d.max(1))) {
        match kind {
            LossKind::CrossEntropy { .. } => {
                let s = pr[c].sqrt();
                for (j, o) in out.iter_mut().enumerate() {
                    *o = F::from_f64(inv_n * s * (pr[j] - if j == c { 1.0 } else { 0.0 }));
                }
            }
            LossKind::BceWithLogits { .. } => {
                out[c] = F::from_f64(inv_n * (pr[c] * (1.0 - pr[c]) / d as f64).sqrt())
            }
            LossKind::Mse => out[c] = F::from_f64(inv_n * (2.0 / d as f64).sqrt()),
        }
    }
    Tensor::from_vec(seed, &[n, d]).expect("n * d elements")
}
