//! 01: tensors, and the tape that records a forward pass and sweeps it backwards.
//!
//! Run: cargo run --release --example 01_tensors_and_tape
//!
//! A `Tensor` is a dense, row-major array that owns its data. A `Tape` is a Wengert list: every
//! op pushes one node, and `backward` walks the nodes in reverse. Here we record
//! `L = Σ tanh(x·Wᵀ)` and check the tape's `∂L/∂W` against the derivative written by hand,
//! `∂L/∂W = ((1 − tanh²(x·Wᵀ)))ᵀ·x`.

use tekfac::{ParamStore, Result, Tape, Tensor};

fn main() -> Result<()> {
    // --- Tensors: shape + row-major data, no views, no strides.
    let x = Tensor::<f32>::from_vec(
        vec![1.0, 2.0, 3.0, 0.5, -1.0, 0.0, -2.0, 0.0, 1.0, 0.1, 0.2, 0.3],
        &[4, 3],
    )?;
    println!(
        "x      {:?}  (element (1, 0) is data[1·3 + 0] = {})",
        x,
        x.data()[3]
    );
    let xt = x.transpose()?;
    println!("xᵀ     {xt:?}");
    let gram = x.matmul(&x, true, false)?; // xᵀ·x: the transpose is a flag, not a copy
    println!("xᵀx    {gram:?}");
    // Shape errors are values, and they name the op and both shapes.
    match x.matmul(&x, false, false) {
        Err(e) => println!("x·x    error: {e}"),
        Ok(_) => unreachable!("[4, 3]·[4, 3] has mismatched inner dimensions"),
    }

    // --- Parameters live in a ParamStore under dotted names; layers keep only ids.
    let mut params = ParamStore::<f32>::seeded(0);
    let w0 = Tensor::from_vec(vec![0.2, -0.1, 0.4, -0.3, 0.5, 0.1], &[2, 3])?;
    let w = params.add("toy.weight", w0)?;

    // --- Forward: each call pushes one node holding its output value.
    let mut tape = Tape::new(&params);
    let xv = tape.input(x.clone());
    let wv = tape.param(w);
    let s = tape.matmul_t(xv, false, wv, true)?; // s = x·Wᵀ, [4, 2]
    let h = tape.tanh(s);
    let loss = tape.sum(h);
    println!(
        "\ntape: {} nodes, L = {:.6}",
        tape.len(),
        tape.value(loss).item()?
    );
    let h_value = tape.value(h).clone();

    // --- Backward consumes the tape (one pass, one sweep) and returns the gradients.
    let out = tape.backward(loss)?;
    let grad = out.grads.require(w, &params)?;
    println!("tape   ∂L/∂W {grad:?}");

    // --- The same derivative by hand: dL/ds = 1 − tanh², then ∂L/∂W = (dL/ds)ᵀ·x.
    let ds = h_value.map(|t| 1.0 - t * t);
    let by_hand = ds.matmul(&x, true, false)?;
    println!("hand   ∂L/∂W {by_hand:?}");
    let diff = grad.sub(&by_hand)?.sum_squares().sqrt();
    println!("‖tape − hand‖ = {diff:.2e}");
    assert!(
        diff < 1e-5,
        "the tape's gradient must match the hand derivative"
    );

    // --- An inference tape computes values but records no graph.
    let mut eval = Tape::no_grad(&params);
    let xv = eval.input(x);
    let wv = eval.param(w);
    let s = eval.matmul_t(xv, false, wv, true)?;
    let h = eval.tanh(s);
    let l = eval.sum(h);
    println!("\nno_grad: L = {:.6}", eval.value(l).item()?);
    if let Err(e) = eval.backward(l) {
        println!("no_grad: backward refused: {e}");
    }
    Ok(())
}
