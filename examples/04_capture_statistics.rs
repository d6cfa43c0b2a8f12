//! 04: the curvature statistics a layer hands out in its own backward pass, for one batch.
//!
//! Run: cargo run --release --example 04_capture_statistics
//!
//! With a Fisher type other than `Off`, every dense/conv layer returns a `LayerCapture`: its
//! input rows `ā = [a, 1]` and its per-example output gradients `g` (docs/math.md). From those
//! rows come K-FAC's factors `A = E[āāᵀ]`, `G = E[ggᵀ]` and TKFAC's `δ = E[‖ā‖²‖g‖²]`,
//! `δΦ = E[‖g‖²āāᵀ]`, `δΨ = E[‖ā‖²ggᵀ]` (spec §3.1, §5.1). We print them and their traces and
//! check two facts: `tr Φ = tr Ψ = 1` with `δ = tr F`, while K-FAC's `tr A·tr G` is not `tr F`
//! (spec §7 identities 1 and 2); and the mean of the per-example gradients `DW_n = g_n ā_nᵀ`
//! is the tape's gradient (identity 16, the check that pins the batch scaling).

use nalgebra::DMatrix;
use tekfac::curvature::KroneckerFactors;
use tekfac::curvature::exact::per_example_gradients;
use tekfac::dataset::{self, DataSource, Split};
use tekfac::nn::{Activation, Linear, Module, Sequential};
use tekfac::{FisherType, ParamStore, Result, Tape};

/// A `3 × 3` block of a matrix starting at `(at, at)`.
fn block(name: &str, m: &DMatrix<f64>, at: usize) {
    println!(
        "  {name} [{}×{}], entries {at}..{}:",
        m.nrows(),
        m.ncols(),
        at + 3
    );
    for r in at..at + 3 {
        let row: Vec<String> = (at..at + 3)
            .map(|c| format!("{:>10.3e}", m[(r, c)]))
            .collect();
        println!("    {}", row.join(" "));
    }
}

fn main() -> Result<()> {
    let train = dataset::load("fashion-mnist-mini", Split::Train, &DataSource::default())?;
    let batch = train.batch(&(0..64).collect::<Vec<_>>())?;

    // f64 end to end, so every identity below holds to rounding.
    let mut params = ParamStore::<f64>::seeded(0);
    let net = Sequential::new()
        .push(Activation::Flatten)
        .push(Linear::new(&mut params, "fc1", 784, 32, true)?)
        .push(Activation::Relu)
        .push(Linear::new(&mut params, "fc2", 32, 10, true)?);

    for fisher in [FisherType::Empirical, FisherType::Sampled { k: 1, seed: 7 }] {
        let mut tape = Tape::new(&params);
        let x = tape.input(batch.images.cast::<f64>());
        let logits = net.forward(&mut tape, x)?;
        let loss = tape.cross_entropy(logits, &batch.labels)?;
        let pass = tape.backward_with(loss, fisher)?;
        println!("\n===== {fisher:?} Fisher, batch of {}", batch.labels.len());
        let mut captures: Vec<_> = pass.captures.iter().collect();
        captures.sort_by_key(|c| c.layer); // the sweep met fc2 first
        let detail = fisher == FisherType::Empirical; // print the matrices once
        for capture in captures {
            let info = params.layer(capture.layer);
            println!(
                "\nlayer {}: ā {:?}, g {:?} ({} sweep)",
                info.name,
                capture.a.dims(),
                capture.g[0].dims(),
                capture.g.len()
            );
            let kfac = KroneckerFactors::from_capture(false, capture)?;
            let tkfac = KroneckerFactors::from_capture(true, capture)?;
            let delta = tkfac.trace_scale;
            let phi = &tkfac.a_factor / delta; // Φ, input side, trace 1
            let psi = &tkfac.g_factor / delta; // Ψ, output side, trace 1
            // tr F = E‖DW_n‖²_F, straight from the per-example gradients.
            let dws = per_example_gradients(capture)?;
            let tr_f = dws.iter().map(|d| d.norm_squared()).sum::<f64>() / dws.len() as f64;
            if detail {
                // Input side: fc1 at three pixels of the image centre (its border pixels are
                // always 0); fc2 at its last rows, ending with the bias coordinate, where
                // A holds E[ā·1] (the mean input) and E[1·1] = 1.
                let at = if info.d_in == 784 {
                    14 * 28 + 13
                } else {
                    info.d_in_bar() - 3
                };
                block("A", &kfac.a_factor, at);
                block("G", &kfac.g_factor, 0);
                block("Φ", &phi, at);
                block("Ψ", &psi, 0);
            }
            println!(
                "  tr A = {:.4e}   tr G = {:.4e}",
                kfac.a_factor.trace(),
                kfac.g_factor.trace()
            );
            println!("  tr Φ = {:.6}     tr Ψ = {:.6}", phi.trace(), psi.trace());
            let kfac_trace = kfac.a_factor.trace() * kfac.g_factor.trace();
            println!("  tr F = {tr_f:.6e}   δ = {delta:.6e}   K-FAC tr A·tr G = {kfac_trace:.6e}");
            assert!((phi.trace() - 1.0).abs() < 1e-9 && (psi.trace() - 1.0).abs() < 1e-9);
            assert!(
                (delta - tr_f).abs() <= 1e-9 * tr_f,
                "δ = tr F on a dense layer"
            );

            // Identity 16: mean_n DW_n is the tape's [∂L/∂W | ∂L/∂b] (empirical sweep only:
            // the gradient comes from the true labels).
            if fisher == FisherType::Empirical {
                let mean = dws
                    .iter()
                    .fold(DMatrix::zeros(info.d_out, info.d_in_bar()), |s, d| s + d)
                    / dws.len() as f64;
                let w = pass.grads.require(info.weight, &params)?.data();
                let max_err = (0..info.d_out)
                    .flat_map(|o| (0..info.d_in).map(move |i| (o, i)))
                    .map(|(o, i)| (mean[(o, i)] - w[o * info.d_in + i]).abs())
                    .fold(0.0, f64::max);
                println!("  max |mean_n DW_n − ∂L/∂W| = {max_err:.1e}");
            }
        }
    }
    Ok(())
}
