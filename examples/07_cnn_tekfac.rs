//! 07: TEKFAC on a CNN: convolution statistics and the trace-adaptive damping.
//!
//! Run: cargo run --release --example 07_cnn_tekfac
//!
//! A conv layer is one curvature block too: its weight `[C_out, C_in, kh, kw]` is viewed as
//! `W̄ [C_out, C_in·kh·kw + 1]`, and its capture holds one im2col patch `ā_{n,t}` and one output
//! gradient `g_{n,t}` per example `n` and output location `t`. The factors treat locations as
//! uncorrelated (KFC, spec §3.3/§5.2); `Θ` squares whole per-example gradients
//! `DW_n = Σ_t g_{n,t} ā_{n,t}ᵀ` (spec §1.6).
//!
//! TEKFAC damps a conv block by Eq. 3.5, `λ_conv = max(ΣΘ, ϑ)/dim Θ`: the block's mean
//! eigenvalue. On this network that is ~1e-4, so directions that one batch sees as flat would
//! be amplified ~10⁴ times; with the literal rule (`conv_damping_at_least_lambda: false`) these
//! settings diverge within six steps unless KL-clipping bounds the step (`kl_clip: Some(1e-4)`).
//! tekfac's default floors the conv λ at the dense λ. The log prints both: the λ each block
//! used, and what the literal Eq. 3.5 gives for each conv block.
//!
//! A CNN step costs ~0.2 s on 2 cores, so this trains 100 steps (1.3 epochs of the subset).

use std::time::Instant;
use tekfac::dataset::{self, DataSource, LastBatch, Split};
use tekfac::nn::{Cnn, Module};
use tekfac::optim::{DampingPolicy, NaturalGradient, NgConfig, Optimizer, Variant};
use tekfac::train::{Task, evaluate};
use tekfac::{ParamStore, Result, Tape};

const STEPS: u64 = 100;

fn main() -> Result<()> {
    let source = DataSource::default();
    let train = dataset::load("fashion-mnist-mini", Split::Train, &source)?;
    let test = dataset::load("fashion-mnist-mini", Split::Test, &source)?;

    let mut params = ParamStore::<f32>::seeded(0);
    // conv 5×5 1→32, pool, conv 5×5 32→64, pool, dense 1024→128, dense 128→10.
    let model = Cnn::new(&mut params, train.classes())?;
    let config = NgConfig {
        lr: 0.01,
        damping: DampingPolicy {
            lambda: Some(0.1),          // λ of the dense layers, and the conv floor
            conv_floor: 1e-3,           // ϑ of Eq. 3.5 (the paper's value is unknown)
            conv_at_least_lambda: true, // the default: λ_conv = max(Eq. 3.5, λ)
            ..DampingPolicy::default()
        },
        ..NgConfig::default()
    };
    let mut tekfac = NaturalGradient::new(Variant::Tekfac, config.clone(), &params)?;
    for block in tekfac.blocks() {
        let (d_out, d_in_bar) = block.dims();
        let kind = if block.is_conv() { "conv " } else { "dense" };
        println!("{kind} block {}: W̄ [{d_out} × {d_in_bar}]", block.name());
    }

    let clock = Instant::now();
    let mut step = 0;
    'training: for epoch in 0.. {
        for batch in train.batches(128, 0, epoch, LastBatch::Drop)? {
            if step == STEPS {
                break 'training;
            }
            let mut tape = Tape::new(&params);
            let x = tape.input(batch.images);
            let logits = model.forward(&mut tape, x)?;
            let loss = tape.cross_entropy(logits, &batch.labels)?;
            let opt: &mut dyn Optimizer = &mut tekfac;
            let pass = tape.backward_full(loss, opt.fisher(), opt.gradient_rows())?;
            let stats = opt.step(&mut params, &pass)?;
            if step % 20 == 0 || step + 1 == STEPS {
                // The damping each block used this step, and the literal Eq. 3.5 of the conv
                // blocks: max(ΣΘ, ϑ)/dim Θ.
                let used: Vec<String> = stats
                    .lambda
                    .iter()
                    .map(|(name, l)| format!("{name} {l:.0e}"))
                    .collect();
                let literal: Vec<String> = (tekfac.blocks().iter().filter(|b| b.is_conv()))
                    .map(|b| {
                        format!(
                            "{} {:.0e}",
                            b.name(),
                            b.trace_adaptive_damping(config.damping.conv_floor)
                        )
                    })
                    .collect();
                println!(
                    "step {step:3}  loss {:.4}  ({:4.1} s)  λ used: {}  Eq. 3.5: {}",
                    stats.loss,
                    clock.elapsed().as_secs_f64(),
                    used.join(", "),
                    literal.join(", ")
                );
            }
            step += 1;
        }
    }
    let seconds = clock.elapsed().as_secs_f64();
    let test_batches = test.batches(500, 0, 0, LastBatch::Keep)?;
    let test_batches = test_batches.map(|b| Ok((b.images, b.labels)));
    let (_, accuracy) = evaluate(&model, Task::Classify, &params, test_batches)?;
    println!(
        "after {STEPS} steps ({seconds:.1} s): test accuracy {:.2}%",
        100.0 * accuracy
    );
    Ok(())
}
