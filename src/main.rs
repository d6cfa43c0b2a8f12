//! The `tekfac` command. For now it trains a small MLP on a synthetic two-ring problem with
//! SGD-momentum and prints the loss and accuracy; the data and CLI issues replace this with
//! training on the embedded Fashion-MNIST subset.

use tekfac::nn::{Activation, Linear, Module, Sequential};
use tekfac::optim::{Optimizer, Sgd, SgdConfig};
use tekfac::tensor::seeded_rng;
use tekfac::{ParamStore, Result, Tape, Tensor};

/// Four classes: inner or outer ring × upper or lower half-plane, with Gaussian noise.
fn rings(n: usize, seed: u64) -> (Tensor<f32>, Vec<usize>) {
    let mut rng = seeded_rng(seed);
    let noise = Tensor::<f32>::randn(&[n, 2], 0.0, 0.15, &mut rng);
    let angles = Tensor::<f32>::rand_uniform(&[n], 0.0, std::f64::consts::TAU, &mut rng);
    let (mut x, mut y) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    for (i, &a) in angles.data().iter().enumerate() {
        let outer = i % 2;
        let r = if outer == 1 { 2.5 } else { 1.0 };
        x.extend([
            r * a.cos() + noise.data()[2 * i],
            r * a.sin() + noise.data()[2 * i + 1],
        ]);
        y.push(2 * outer + usize::from(a < std::f32::consts::PI));
    }
    (Tensor::from_vec(x, &[n, 2]).expect("2n values"), y)
}

fn main() -> Result<()> {
    let (x, y) = rings(1024, 0);
    let mut params = ParamStore::<f32>::seeded(0);
    let model = Sequential::new()
        .push(Linear::new(&mut params, "fc1", 2, 64, true)?)
        .push(Activation::Relu)
        .push(Linear::new(&mut params, "fc2", 64, 4, true)?);
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    });
    for step in 0..=300 {
        let mut tape = Tape::new(&params);
        let xv = tape.input(x.clone());
        let logits = model.forward(&mut tape, xv)?;
        let acc = accuracy(tape.value(logits), &y);
        let loss = tape.cross_entropy(logits, &y)?;
        let pass = tape.backward(loss)?;
        opt.step(&mut params, &pass)?;
        if step % 50 == 0 {
            println!(
                "step {step:4}  loss {:.4}  train accuracy {:.1}%",
                pass.loss,
                100.0 * acc
            );
        }
    }
    Ok(())
}

fn accuracy(logits: &Tensor<f32>, labels: &[usize]) -> f64 {
    let hits = logits
        .argmax_rows()
        .iter()
        .zip(labels)
        .filter(|(p, y)| p == y)
        .count();
    hits as f64 / labels.len().max(1) as f64
}
