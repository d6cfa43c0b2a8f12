//! 08: the deep autoencoder of the K-FAC and EKFAC papers, trained briefly by several optimizers.
//!
//! Run: cargo run --release --example 08_autoencoder_compare
//!
//! 784-1000-500-250-30-250-500-1000-784 with a linear code layer (`tekfac::nn::Autoencoder`,
//! spec §8; tanh hidden units here, the papers' sigmoid units are `Autoencoder::new`): 8 dense
//! blocks, 2.8 million parameters. The loss is binary cross-entropy between the 784 output
//! logits and the input pixels, so the sampled Fisher draws each pixel from its Bernoulli
//! (`src/ops/loss.rs`). Each optimizer starts from the same weights and sees the same batches;
//! the table shows where each got in a fixed number of steps, and how long that took. A short
//! horizon favours cheap steps: `tekfac compare --model autoencoder` is the long version.

use std::time::Instant;
use tekfac::dataset::{self, DataSource, Dataset, LastBatch, Split};
use tekfac::nn::{Activation, Autoencoder, Init, Module};
use tekfac::optim::{
    Adam, AdamConfig, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig, Variant,
};
use tekfac::{ParamStore, Result, Tape, Tensor};

const STEPS: usize = 40;
const BATCH: usize = 128;

/// The images of a batch as reconstruction targets: `[B, 1, 28, 28]` → `[B, 784]`.
fn targets(images: &Tensor<f32>) -> Result<Tensor<f32>> {
    let (n, d) = images.shape().as_matrix();
    images.clone().reshape(&[n, d])
}

/// Mean reconstruction BCE over a data set, on no-grad tapes.
fn test_loss(model: &Autoencoder, params: &ParamStore<f32>, data: &Dataset) -> Result<f64> {
    let mut sum = 0.0;
    for batch in data.batches(500, 0, 0, LastBatch::Keep)? {
        let mut tape = Tape::no_grad(params);
        let t = targets(&batch.images)?;
        let x = tape.input(batch.images);
        let logits = model.forward(&mut tape, x)?;
        let loss = tape.bce_with_logits(logits, &t)?;
        sum += tape.value(loss).item()? as f64 * batch.labels.len() as f64;
    }
    Ok(sum / data.len() as f64)
}

/// The optimizers to compare, each built for the given parameters.
fn optimizers(params: &ParamStore<f32>) -> Result<Vec<(&'static str, Box<dyn Optimizer>)>> {
    let ng = |variant| -> Result<Box<dyn Optimizer>> {
        // NOTE: lr 0.03 rather than the default 0.01: on this short horizon it does better for
        // both; λ is the default (K-FAC's factored damping adds cross terms, hence smaller).
        let config = NgConfig {
            lr: 0.03,
            ..NgConfig::default()
        };
        Ok(Box::new(NaturalGradient::new(variant, config, params)?))
    };
    Ok(vec![
        (
            "sgd",
            Box::new(Sgd::new(SgdConfig {
                lr: 0.05,
                ..Default::default()
            })),
        ),
        ("adam", Box::new(Adam::new(AdamConfig::default()))),
        ("kfac", ng(Variant::Kfac)?),
        ("tekfac", ng(Variant::Tekfac)?),
    ])
}

fn main() -> Result<()> {
    let source = DataSource::default();
    let train = dataset::load("fashion-mnist-mini", Split::Train, &source)?;
    let test = dataset::load("fashion-mnist-mini", Split::Test, &source)?;

    let mut initial = ParamStore::<f32>::seeded(0);
    // NOTE: tanh hidden units: with sigmoid units every optimizer spends these few steps on the
    // plateau of the mean image (BCE ≈ 0.50); tanh leaves it sooner.
    let model = Autoencoder::with(&mut initial, train.pixels(), Activation::Tanh, Init::Xavier)?; // sigmoid, Xavier init
    println!(
        "autoencoder: {} parameters, {STEPS} steps of batch {BATCH}",
        initial.num_elements()
    );

    let mut rows = Vec::new();
    for (name, mut opt) in optimizers(&initial)? {
        let mut params = initial.clone(); // the same starting point for everyone
        let clock = Instant::now();
        let mut last = Vec::new();
        for batch in train.batches(BATCH, 0, 0, LastBatch::Drop)?.take(STEPS) {
            let mut tape = Tape::new(&params);
            let t = targets(&batch.images)?;
            let x = tape.input(batch.images);
            let logits = model.forward(&mut tape, x)?;
            let loss = tape.bce_with_logits(logits, &t)?;
            let pass = tape.backward_full(loss, opt.fisher(), opt.gradient_rows())?;
            if !pass.loss.is_finite() {
                break; // diverged: the row below says so
            }
            opt.step(&mut params, &pass)?;
            last.push(pass.loss);
        }
        let seconds = clock.elapsed().as_secs_f64();
        let tail = &last[last.len().saturating_sub(10)..];
        let train_loss = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
        let test = test_loss(&model, &params, &test)?;
        println!("{name:<7} done in {seconds:.1} s");
        rows.push((name, last.len(), train_loss, test, seconds));
    }

    println!("\n| optimizer | steps | train BCE (last 10) | test BCE | seconds |");
    println!("|---|---:|---:|---:|---:|");
    for (name, steps, train_loss, test, seconds) in rows {
        println!("| {name} | {steps} | {train_loss:.4} | {test:.4} | {seconds:.1} |");
    }
    Ok(())
}
