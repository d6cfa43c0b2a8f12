//! The training loop's fast paths against their plain twins: the finiteness checks folded into
//! the update pass of SGD, Adam and the natural-gradient optimizers (dense layers stored in
//! their eigenbasis and the plain path; `StepStats::weights_finite`) and the one-pass gradient check
//! (`Gradients::all_finite`) give the same errors, naming the same step and parameter, as a
//! full search; a model that flattens its input (`Module::flattens_input`) trains and evaluates
//! bit for bit as when the tape flattens a copy of the batch; all of it on one and two threads,
//! with and without `spin_workers`.

mod support;

use support::tensors::on_threads;
use tekfac::curvature::Variant;
use tekfac::nn::{Mlp, Module};
use tekfac::optim::{Adam, AdamConfig, NaturalGradient, NgConfig, Optimizer, Sgd, SgdConfig};
use tekfac::tensor::seeded_rng;
use tekfac::train::{Task, evaluate, train_step};
use tekfac::{Error, LayerId, ParamStore, Result, Tape, Tensor, Var};

/// The MLP preset on 8×8 images: 64-512-256-10, so fc2's weight (131,072 values) is
/// updated and checked in several chunks, on several threads.
fn mlp(seed: u64) -> (Mlp, ParamStore<f32>) {
    let mut ps = ParamStore::<f32>::seeded(seed);
    let net = Mlp::new(&mut ps, 64, 10).unwrap();
    (net, ps)
}

/// A batch of `n` images `[n, 1, 8, 8]` and labels.
fn batch(n: usize, seed: u64) -> (Tensor<f32>, Vec<usize>) {
    let x = Tensor::rand_uniform(&[n, 1, 8, 8], 0.0, 1.0, &mut seeded_rng(seed));
    (x, (0..n).map(|i| (i * 7 + seed as usize) % 10).collect())
}

/// The same model, but without `flattens_input`: it gets the 4-D batch and flattens a copy
/// on the tape, as every model did before the fast path.
struct Unflat<'a>(&'a Mlp);

impl Module<f32> for Unflat<'_> {
    fn forward(&self, tape: &mut Tape<'_, f32>, x: Var) -> Result<Var> {
        self.0.forward(tape, x)
    }
}

fn optimizers() -> Vec<(&'static str, Box<dyn Optimizer + Send>)> {
    vec![
        ("sgd", Box::new(Sgd::new(SgdConfig::default()))),
        ("adam", Box::new(Adam::new(AdamConfig::default()))),
    ]
}

/// TEKFAC and EKFAC with statistics every step and a basis from the first: at batch 8 every
/// layer enters its eigenbasis at step 0 (through the plain path) and steps in it from step 1
/// (`step_in_basis`); K-FAC on the plain path (`layout::apply`).
fn natural_gradients(ps: &ParamStore<f32>) -> Vec<(&'static str, Box<dyn Optimizer + Send>)> {
    let config = NgConfig {
        stats_interval: 1,
        eigen_interval: 10,
        scale_interval: 1,
        ..NgConfig::default()
    };
    let ng = |v| Box::new(NaturalGradient::new(v, config.clone(), ps).unwrap());
    vec![
        ("tekfac", ng(Variant::Tekfac)),
        ("ekfac", ng(Variant::Ekfac)),
        ("kfac", ng(Variant::Kfac)),
    ]
}

/// Weights after `steps` training steps and the evaluation of the result, with the model
/// taking flat batches or not.
fn trained(flat: bool, opt: &mut dyn Optimizer, steps: u64) -> (Vec<Vec<f32>>, (f64, f64)) {
    let (net, mut ps) = mlp(3);
    let unflat = Unflat(&net);
    let model: &dyn Module<f32> = if flat { &net } else { &unflat };
    for step in 0..steps {
        let (x, labels) = batch(16, step);
        let stats = train_step(model, Task::Classify, &mut ps, opt, x, &labels, step).unwrap();
        assert!(stats.loss.is_finite());
    }
    let eval = (0..2).map(|i| Ok(batch(24, 100 + i)));
    let scores = evaluate(model, Task::Classify, &ps, eval).unwrap();
    (
        ps.ids().map(|id| ps.get(id).data().to_vec()).collect(),
        scores,
    )
}

#[test]
fn flat_batches_train_and_evaluate_bit_for_bit_as_flattened_copies() {
    let (net, _) = mlp(0);
    assert!(Module::<f32>::flattens_input(&net));
    for (name, _) in optimizers() {
        let runs: Vec<_> = [(true, 1), (false, 1), (true, 2), (false, 2)]
            .into_iter()
            .map(|(flat, threads)| {
                let mut opt = optimizers().into_iter().find(|o| o.0 == name).unwrap().1;
                on_threads(threads, move || trained(flat, opt.as_mut(), 4))
            })
            .collect();
        for r in &runs[1..] {
            assert_eq!(r.0, runs[0].0, "{name}: weights");
            assert_eq!(r.1, runs[0].1, "{name}: loss and accuracy");
        }
    }
}

#[test]
fn first_order_steps_report_the_weights_they_checked() {
    for (name, mut opt) in optimizers() {
        let (net, mut ps) = mlp(4);
        let (x, labels) = batch(8, 0);
        let stats = train_step(&net, Task::Classify, &mut ps, opt.as_mut(), x, &labels, 0);
        assert_eq!(stats.unwrap().weights_finite, Some(true), "{name}");
    }
}

#[test]
fn natural_gradient_steps_report_the_weights_they_checked() {
    for k in 0..natural_gradients(&mlp(0).1).len() {
        let (net, mut ps) = mlp(4);
        let (name, mut opt) = natural_gradients(&ps).swap_remove(k);
        for step in 0..2 {
            let (x, labels) = batch(8, step);
            let stats = train_step(
                &net,
                Task::Classify,
                &mut ps,
                opt.as_mut(),
                x,
                &labels,
                step,
            );
            assert_eq!(stats.unwrap().weights_finite, Some(true), "{name}");
        }
        let in_basis = (0..ps.layers().len()).filter(|&i| ps.eigenbasis(LayerId(i)).is_some());
        let expected = if name == "kfac" { 0 } else { 3 };
        assert_eq!(
            in_basis.count(),
            expected,
            "{name}: layers in their eigenbasis"
        );
    }
}

/// The error of a step whose update is not finite: a learning rate beyond f32's range (∞ in
/// f32) sends every weight to ±∞ or NaN, fc1's weight first. `before` ordinary steps come
/// first (a natural-gradient optimizer's first step enters the eigenbasis on the plain path;
/// its second is `step_in_basis`'s).
fn overflow_error(opt: &mut dyn Optimizer, before: u64) -> Error {
    let (net, mut ps) = mlp(5);
    for step in 0..before {
        let (x, labels) = batch(8, 10 + step);
        train_step(&net, Task::Classify, &mut ps, opt, x, &labels, step).unwrap();
    }
    opt.set_lr(1e39);
    let (x, labels) = batch(8, 1);
    train_step(&net, Task::Classify, &mut ps, opt, x, &labels, 7).unwrap_err()
}

#[test]
fn an_overflowing_update_is_named_as_by_the_full_search() {
    for threads in [1, 2] {
        for before in [0, 1] {
            let ps = mlp(5).1;
            for (name, mut opt) in optimizers().into_iter().chain(natural_gradients(&ps)) {
                let err = on_threads(threads, || overflow_error(opt.as_mut(), before));
                match err {
                    Error::NonFinite { what, step } => {
                        assert_eq!(what, "the updated weights of fc1.weight", "{name}");
                        assert_eq!(step, Some(7), "{name}");
                    }
                    other => panic!("{name}: expected NonFinite, got {other:?}"),
                }
            }
        }
    }
}

#[test]
fn a_non_finite_parameter_without_a_gradient_is_still_found() {
    // The update pass checks only what it wrote; a parameter the loss does not reach must
    // still stop training, as the full search after each step did.
    for (name, mut opt) in optimizers() {
        let (net, mut ps) = mlp(6);
        let stray = Tensor::from_vec(vec![1.0, f32::INFINITY], &[2]).unwrap();
        ps.add("stray", stray).unwrap();
        let (x, labels) = batch(8, 2);
        let err = train_step(&net, Task::Classify, &mut ps, opt.as_mut(), x, &labels, 3);
        match err {
            Err(Error::NonFinite { what, step }) => {
                assert_eq!(what, "the updated weights of stray", "{name}");
                assert_eq!(step, Some(3), "{name}");
            }
            other => panic!("{name}: expected NonFinite, got {other:?}"),
        }
    }
}

#[test]
fn the_one_pass_gradient_check_finds_what_each_tensor_check_finds() {
    let (net, ps) = mlp(7);
    let (x, labels) = batch(8, 3);
    let mut tape = Tape::new(&ps);
    let xv = tape.input(x);
    let logits = net.forward(&mut tape, xv).unwrap();
    let loss = tape.cross_entropy(logits, &labels).unwrap();
    let grads = tape.backward(loss).unwrap().grads;
    assert!(grads.all_finite());
    assert_eq!(grads.first_non_finite(), None);
    // Poison one value at a time (first, middle and last chunk of fc2's weight, and a bias)
    // in a copy of the gradients, through a parameter store that holds them as weights.
    let names = [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "fc3.weight",
    ];
    for (target, at) in [(2, 0), (2, 70_000), (2, 131_071), (1, 511), (4, 2559)] {
        let mut poisoned = ParamStore::<f32>::seeded(0);
        for (id, g) in grads.iter() {
            let mut g = g.clone();
            if id.0 == target {
                g.data_mut()[at] = if at % 2 == 0 {
                    f32::NAN
                } else {
                    f32::NEG_INFINITY
                };
            }
            poisoned.add(ps.name(id), g).unwrap();
        }
        // Gradients 2θ, non-finite exactly where θ is: a backward pass of Σθ² over that store.
        let mut tape = Tape::new(&poisoned);
        let mut total = None;
        for id in poisoned.ids() {
            let p = tape.param(id);
            let sq = tape.mul(p, p).unwrap();
            let s = tape.sum(sq);
            total = Some(match total {
                None => s,
                Some(t) => tape.add(t, s).unwrap(),
            });
        }
        let g = tape.backward(total.unwrap()).unwrap().grads;
        assert!(!g.all_finite(), "{}[{at}]", names[target]);
        let first = g.first_non_finite().map(|id| poisoned.name(id).to_string());
        let slow = g.iter().find(|(_, t)| !t.all_finite()).map(|(id, _)| id);
        assert_eq!(first.as_deref(), Some(names[target]));
        assert_eq!(slow.map(|id| poisoned.name(id).to_string()), first);
    }
}

#[test]
fn polling_workers_change_no_result() {
    for (name, _) in optimizers() {
        let fresh = || optimizers().into_iter().find(|o| o.0 == name).unwrap().1;
        let (mut a, mut b, mut c) = (fresh(), fresh(), fresh());
        let plain = on_threads(2, move || trained(true, a.as_mut(), 4));
        let polled = on_threads(2, move || {
            let _awake = tekfac::spin_workers();
            trained(true, b.as_mut(), 4)
        });
        let single = on_threads(1, move || {
            let _awake = tekfac::spin_workers();
            trained(true, c.as_mut(), 4)
        });
        assert_eq!(polled, plain, "{name}");
        assert_eq!(single, plain, "{name}");
    }
}
