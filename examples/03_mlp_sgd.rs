//! 03: a model of your own, trained with SGD on the embedded Fashion-MNIST subset.
//!
//! Run: cargo run --release --example 03_mlp_sgd
//!
//! The whole training loop is visible: load → batches → tape → forward → loss → backward →
//! optimizer step. A model is any struct implementing `Module` (one method, `forward`), and
//! its layers register their parameters in a `ParamStore` under dotted names.

use std::time::Instant;
use tekfac::dataset::{self, DataSource, LastBatch, Split};
use tekfac::nn::{Activation, Linear, Module};
use tekfac::optim::{Optimizer, Sgd, SgdConfig};
use tekfac::train::{Task, evaluate};
use tekfac::{ParamStore, Result, Tape, Var};

/// `784 → 128 → 10` with ReLU. Layers keep only parameter ids, so the struct is tiny.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(ps: &mut ParamStore<f32>, pixels: usize, classes: usize) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::new(ps, "fc1", pixels, 128, true)?,
            fc2: Linear::new(ps, "fc2", 128, classes, true)?,
        })
    }
}

impl Module<f32> for Mlp {
    fn forward(&self, tape: &mut Tape<'_, f32>, x: Var) -> Result<Var> {
        let h = Activation::Flatten.forward(tape, x)?; // [B, 1, 28, 28] → [B, 784]
        let h = self.fc1.forward(tape, h)?;
        let h = tape.relu(h);
        self.fc2.forward(tape, h) // logits
    }
}

fn main() -> Result<()> {
    // `fashion-mnist-mini` ships in data/: 10,000 training and 2,000 test images, pixels in [0, 1].
    let source = DataSource::default();
    let train = dataset::load("fashion-mnist-mini", Split::Train, &source)?;
    let test = dataset::load("fashion-mnist-mini", Split::Test, &source)?;
    println!("{train:?}\n{test:?}");

    let mut params = ParamStore::<f32>::seeded(0); // the seed fixes the initial weights
    let model = Mlp::new(&mut params, train.pixels(), train.classes())?;
    println!(
        "{} parameters in {} tensors",
        params.num_elements(),
        params.len()
    );
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        ..Default::default()
    });

    let clock = Instant::now();
    for epoch in 0..5 {
        let (mut sum, mut steps) = (0.0, 0);
        for batch in train.batches(128, 42, epoch, LastBatch::Drop)? {
            let mut tape = Tape::new(&params);
            let x = tape.input(batch.images);
            let logits = model.forward(&mut tape, x)?;
            let loss = tape.cross_entropy(logits, &batch.labels)?;
            // SGD asks for no curvature (FisherType::Off); the tape is consumed here.
            let pass = tape.backward_with(loss, opt.fisher())?;
            opt.step(&mut params, &pass)?;
            sum += pass.loss;
            steps += 1;
        }
        // Test loss and accuracy on no-grad tapes (values only, no graph kept).
        let test_batches = test.batches(1000, 0, 0, LastBatch::Keep)?;
        let test_batches = test_batches.map(|b| Ok((b.images, b.labels)));
        let (_, accuracy) = evaluate(&model, Task::Classify, &params, test_batches)?;
        println!(
            "epoch {}  train loss {:.4}  test accuracy {:.2}%  ({:.1} s)",
            epoch + 1,
            sum / steps as f64,
            100.0 * accuracy,
            clock.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
