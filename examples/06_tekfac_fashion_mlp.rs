//! 06: TEKFAC on the MLP of `cargo run --release`, with the training loop in plain sight.
//!
//! Run: cargo run --release --example 06_tekfac_fashion_mlp
//!
//! Three things change from SGD (example 03):
//! 1. the optimizer is `NaturalGradient::new(Variant::Tekfac, config, &params)`, which makes one
//!    `CurvatureBlock` per dense/conv layer registered in the `ParamStore`;
//! 2. the backward pass is asked for what the optimizer needs: `opt.fisher()` says which labels
//!    the curvature rows come from this step (sampled from the model by default, `Off` on steps
//!    that update no statistics), `opt.gradient_rows()` lets dense layers hand over their
//!    gradient in low-rank form `∇W̄ = gᵀā` (a faster way into the eigenbasis);
//! 3. each step runs statistics (every 10 steps) → eigenbasis (every 100) → re-scaling of Θ
//!    (every 10) → `U = Q_Ψ[(Q_Ψᵀ ∇W̄ Q_Φ) ⊘ (Θ + λ)]Q_Φᵀ` → momentum (docs/math.md, TEKFAC).

use std::time::Instant;
use tekfac::dataset::{self, DataSource, LastBatch, Split};
use tekfac::nn::{Mlp, Module};
use tekfac::optim::{NaturalGradient, NgConfig, Optimizer, Variant};
use tekfac::train::{Task, evaluate};
use tekfac::{ParamStore, Result, Tape};

fn main() -> Result<()> {
    let source = DataSource::default();
    let train = dataset::load("fashion-mnist-mini", Split::Train, &source)?;
    let test = dataset::load("fashion-mnist-mini", Split::Test, &source)?;

    let mut params = ParamStore::<f32>::seeded(0);
    let model = Mlp::new(&mut params, train.pixels(), train.classes())?; // 784-512-256-10
    // The defaults of `tekfac train`: lr 0.01, λ tuned per variant (0.1 for TEKFAC, added to Θ),
    // momentum 0.9, EMA decay 0.95, intervals 10/100/10, sampled Fisher.
    let config = NgConfig::default();
    let tekfac = NaturalGradient::new(Variant::Tekfac, config.clone(), &params)?;
    println!(
        "TEKFAC: lr {}, λ {}, momentum {}, EMA decay {}, intervals {}/{}/{}, {:?} Fisher",
        config.lr,
        tekfac.lambda(),
        config.momentum,
        config.decay,
        config.stats_interval,
        config.eigen_interval,
        config.scale_interval,
        config.fisher
    );
    let mut tekfac = tekfac;
    for block in tekfac.blocks() {
        let (d_out, d_in_bar) = block.dims();
        println!("block {}: W̄ [{d_out} × {d_in_bar}]", block.name());
    }

    let opt: &mut dyn Optimizer = &mut tekfac;
    let clock = Instant::now();
    let mut step = 0u64;
    for epoch in 0..2 {
        let (mut sum, mut count) = (0.0, 0);
        let (mut t_stats, mut t_eigen, mut t_precondition) = (0.0, 0.0, 0.0);
        for batch in train.batches(128, 0, epoch, LastBatch::Drop)? {
            let mut tape = Tape::new(&params);
            let x = tape.input(batch.images);
            let logits = model.forward(&mut tape, x)?;
            let loss = tape.cross_entropy(logits, &batch.labels)?;
            let pass = tape.backward_full(loss, opt.fisher(), opt.gradient_rows())?;
            let stats = opt.step(&mut params, &pass)?;
            if step.is_multiple_of(25) {
                let fisher = if pass.captures.is_empty() {
                    "no capture"
                } else {
                    "captured"
                };
                println!(
                    "step {step:4}  loss {:.4}  ‖∇‖ {:.3}  ‖Δθ‖ {:.4}  {fisher}",
                    stats.loss, stats.grad_norm, stats.update_norm
                );
            }
            (t_stats, t_eigen) = (t_stats + stats.time_stats, t_eigen + stats.time_eigen);
            t_precondition += stats.time_precondition;
            sum += stats.loss;
            count += 1;
            step += 1;
        }
        let test_batches = test.batches(1000, 0, 0, LastBatch::Keep)?;
        let test_batches = test_batches.map(|b| Ok((b.images, b.labels)));
        let (_, accuracy) = evaluate(&model, Task::Classify, &params, test_batches)?;
        println!(
            "epoch {}: train loss {:.4}, test accuracy {:.2}% ({:.1} s; statistics {t_stats:.1} s, \
             eigenbases {t_eigen:.1} s, preconditioning {t_precondition:.1} s)",
            epoch + 1,
            sum / count as f64,
            100.0 * accuracy,
            clock.elapsed().as_secs_f64(),
        );
    }
    Ok(())
}
