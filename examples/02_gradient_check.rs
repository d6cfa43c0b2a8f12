//! 02: how tekfac knows its derivatives are right: central finite differences in f64.
//!
//! Run: cargo run --release --example 02_gradient_check
//!
//! `tekfac::gradcheck::check_gradients` perturbs each parameter coordinate by ±ε, re-runs the
//! forward pass, and compares `(L(θ+εeᵢ) − L(θ−εeᵢ)) / 2ε` with the tape's gradient. Every op and
//! layer test does this (`tests/autograd_gradcheck.rs`, `tests/layers_gradcheck.rs`). The same
//! model code runs in f64 here and in f32 for training: only the type parameter changes.
//!
//! The loss is reduced with fixed random weights (`Σ rᵢ yᵢ`, `gradcheck::weighted_sum`), so the
//! upstream gradient is not all ones and a wrong transpose cannot hide behind symmetry.

use tekfac::gradcheck::{GradCheckOptions, check_gradients, weighted_sum};
use tekfac::nn::{Activation, Conv2d, Linear, MaxPool2d, Module, Sequential};
use tekfac::tensor::seeded_rng;
use tekfac::{ParamStore, Result, Tape, Tensor, Var};

/// conv 3×3 (2→3 channels, padding 1) + tanh + 2×2 max-pool + flatten + dense 12→4.
fn small_cnn(ps: &mut ParamStore<f64>) -> Result<Sequential<f64>> {
    Ok(Sequential::new()
        .push(Conv2d::new(ps, "conv", 2, 3, (3, 3), (1, 1), (1, 1), true)?)
        .push(Activation::Tanh)
        .push(MaxPool2d::new(2))
        .push(Activation::Flatten)
        .push(Linear::new(ps, "fc", 12, 4, true)?))
}

fn main() -> Result<()> {
    let mut params = ParamStore::<f64>::seeded(1);
    let net = small_cnn(&mut params)?;
    let x = Tensor::<f64>::randn(&[3, 2, 4, 4], 0.0, 1.0, &mut seeded_rng(2));
    let labels = [0usize, 3, 1];

    // Two losses through the same net: cross-entropy, and a random weighted sum of the logits.
    let cross_entropy = |tape: &mut Tape<'_, f64>| -> Result<Var> {
        let xv = tape.input(x.clone());
        let logits = net.forward(tape, xv)?;
        tape.cross_entropy(logits, &labels)
    };
    let weighted = |tape: &mut Tape<'_, f64>| -> Result<Var> {
        let xv = tape.input(x.clone());
        let logits = net.forward(tape, xv)?;
        weighted_sum(tape, logits, 7)
    };
    let opts = GradCheckOptions::default(); // ε = 1e-6, ≤ 64 coordinates per tensor
    for (name, report) in [
        (
            "cross-entropy",
            check_gradients(&params, cross_entropy, opts)?,
        ),
        ("Σ rᵢ·logitᵢ", check_gradients(&params, weighted, opts)?),
    ] {
        println!(
            "{name:<14} {} coordinates, worst tensor {:<12} relative error {:.1e}",
            report.coords, report.worst, report.max_rel_error
        );
        assert!(
            report.max_rel_error < 1e-6,
            "the tape and the differences agree"
        );
    }

    // Why f64 and ε ≈ 1e-6: the error of a central difference is truncation O(ε²) plus rounding
    // O(u/ε). One coordinate of the conv weight, by hand, over a range of ε:
    let id = params.find("conv.weight").expect("registered above");
    let loss_at = |ps: &ParamStore<f64>| -> Result<f64> {
        let mut tape = Tape::no_grad(ps);
        let v = cross_entropy(&mut tape)?;
        tape.value(v).item()
    };
    let mut tape = Tape::new(&params);
    let loss = cross_entropy(&mut tape)?;
    let analytic = tape.backward(loss)?.grads.require(id, &params)?.data()[5];
    println!("\n∂L/∂conv.weight[5] = {analytic:.12} (tape)");
    println!("        ε   central difference      |error|");
    for eps in [1e-1, 1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12] {
        let mut probe = params.clone();
        probe.get_mut(id).data_mut()[5] += eps;
        let plus = loss_at(&probe)?;
        probe.get_mut(id).data_mut()[5] -= 2.0 * eps;
        let minus = loss_at(&probe)?;
        let numeric = (plus - minus) / (2.0 * eps);
        println!(
            "{eps:>9.0e}   {numeric:>18.12}   {:.1e}",
            (numeric - analytic).abs()
        );
    }
    // Rule of thumb: the best ε is near u^(1/3) and the best error near u^(2/3), u the unit
    // roundoff: about 1e-11 in f64 (u = 1.1e-16), but only about 1e-5 in f32 (u = 6e-8).
    println!("(large ε: truncation error; tiny ε: rounding error)");
    Ok(())
}
