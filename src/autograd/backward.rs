//! The reverse sweep: nodes in reverse order, one `match` arm per op, each a single call into the
//! op's own file. Also the public entry points `backward`, `backward_with`, `backward_from` and
//! the re-entrant `sweep` that lets one forward feed several backward sweeps.

use super::capture::{FisherType, GradientRows, LayerCapture, RotatedRows};
use super::gradients::Gradients;
use super::op::Op;
use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::{activation, conv2d, dense, eigen_dense, elementwise, loss, matmul, pool, reduce};
use crate::params::{LayerId, ParamId};
use crate::tensor::{Float, Tensor};

/// What one reverse sweep computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepMode {
    /// Compute parameter gradients (off for the extra Fisher sweeps, which only capture).
    pub param_grads: bool,
    /// Dense and conv layers emit their `(ā, g)` rows as [`LayerCapture`]s.
    pub capture: bool,
}

/// Everything a training step needs from the backward pass.
///
/// With a Fisher type other than `Off`, every dense and conv layer adds a [`LayerCapture`]:
///
/// ```
/// use tekfac::nn::{Linear, Module};
/// use tekfac::{FisherType, ParamStore, Tape, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(0);
/// let fc = Linear::new(&mut params, "fc", 3, 2, true)?;
/// let mut tape = Tape::new(&params);
/// let x = tape.input(Tensor::from_vec(vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0], &[2, 3])?);
/// let logits = fc.forward(&mut tape, x)?;
/// let loss = tape.cross_entropy(logits, &[0, 1])?;
/// let pass = tape.backward_with(loss, FisherType::Empirical)?;
/// assert!(pass.loss > 0.0);
/// assert_eq!(pass.grads.get(fc.weight()).unwrap().dims(), &[2, 3]);
/// assert_eq!(pass.captures.len(), 1); // one layer, one capture
/// assert_eq!(pass.captures[0].a.dims(), &[2, 4]); // ā = [x | 1]
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BackwardOutput<F: Float = f32> {
    /// The loss value of the forward pass.
    pub loss: f64,
    /// Parameter gradients of the loss (from the true labels).
    pub grads: Gradients<F>,
    /// Per-layer curvature rows, empty unless a Fisher type was requested.
    pub captures: Vec<LayerCapture<F>>,
    /// Dense layers' gradient rows from the true-label sweep, empty unless requested
    /// ([`Tape::backward_full`]): `∂L/∂W̄ = gᵀ·ā` exactly, the low-rank form the
    /// natural-gradient optimizers rotate.
    pub rows: Vec<GradientRows<F>>,
    /// The captured rows of each dense layer trained in its eigenbasis, rotated into that
    /// basis ([`RotatedRows`]); empty without captures.
    pub rotated: Vec<RotatedRows<F>>,
}

/// State of one reverse sweep: pending node gradients, results, and the capture sink.
pub(crate) struct Sweep<'s, 'p, F: Float> {
    tape: &'s Tape<'p, F>,
    pending: Vec<Option<Tensor<F>>>,
    pub(crate) mode: SweepMode,
    /// Multiplies captured `g` rows so each is a per-example loss gradient (the batch size).
    pub(crate) batch_scale: F,
    grads: Gradients<F>,
    pub(crate) captures: &'s mut Vec<LayerCapture<F>>,
    /// Where eigenbasis dense layers put their captured rows in their basis.
    pub(crate) rotated: &'s mut Vec<RotatedRows<F>>,
    /// True when the tape is consumed right after its sweeps (`backward_with`): convolutions
    /// then leave their patch rows on the tape and `backward_with` moves them into the captures
    /// afterwards instead of copying them (see `conv2d::hand_over_patches`).
    pub(crate) tape_consumed: bool,
    /// Dense layers also record their gradient rows `(ā, dY)` (see [`BackwardOutput::rows`]).
    pub(crate) gradient_rows: bool,
    /// Where those rows go.
    pub(crate) rows: Vec<GradientRows<F>>,
}

impl<'s, 'p, F: Float> Sweep<'s, 'p, F> {
    /// The parameters the tape read.
    pub(crate) fn params(&self) -> &'p crate::params::ParamStore<F> {
        self.tape.params
    }

    /// The forward value of `v`.
    pub(crate) fn value(&self, v: Var) -> &'s Tensor<F> {
        self.tape.value(v)
    }

    /// True when a gradient must flow into `v`.
    pub(crate) fn wants(&self, v: Var) -> bool {
        self.tape.nodes[v.0].needs_grad
    }

    /// Accumulates `g` into the pending gradient of `v` (ignored if `v` needs none).
    pub(crate) fn add(&mut self, v: Var, g: Tensor<F>) -> Result<()> {
        if !self.wants(v) {
            return Ok(());
        }
        match &mut self.pending[v.0] {
            Some(acc) => acc.axpy(F::ONE, &g),
            slot @ None => {
                *slot = Some(g);
                Ok(())
            }
        }
    }

    /// Records one layer's rows; `a` is built only the first time the layer is seen, because it
    /// is the same in every sweep of one forward pass.
    pub(crate) fn capture(
        &mut self,
        layer: LayerId,
        rows_per_example: usize,
        a: impl FnOnce() -> Tensor<F>,
        g: Tensor<F>,
    ) {
        match self.captures.iter_mut().find(|c| c.layer == layer) {
            Some(c) => c.g.push(g),
            None => self.captures.push(LayerCapture {
                layer,
                a: a(),
                g: vec![g],
                rows_per_example,
            }),
        }
    }

    fn param_grad(&mut self, id: ParamId, g: Tensor<F>) -> Result<()> {
        if self.mode.param_grads {
            self.grads.accumulate(id, g)
        } else {
            Ok(())
        }
    }
}

impl<'p, F: Float> Tape<'p, F> {
    /// Backpropagates from a scalar loss; returns the loss value and parameter gradients.
    pub fn backward(self, loss: Var) -> Result<BackwardOutput<F>> {
        self.backward_with(loss, FisherType::Off)
    }

    /// Backpropagates from a scalar loss and captures curvature rows of the chosen Fisher type.
    ///
    /// Gradients always come from the true labels. `Empirical` captures from that same sweep;
    /// `Sampled` and `Exact` run extra capture-only sweeps seeded at the loss input.
    pub fn backward_with(self, loss: Var, fisher: FisherType) -> Result<BackwardOutput<F>> {
        self.backward_full(loss, fisher, false)
    }

    /// [`backward_with`](Self::backward_with), and when `gradient_rows` is set the dense layers
    /// also hand out the rows of their true-label gradient ([`BackwardOutput::rows`]).
    pub fn backward_full(
        self,
        loss: Var,
        fisher: FisherType,
        gradient_rows: bool,
    ) -> Result<BackwardOutput<F>> {
        self.check_var(loss, "backward")?;
        let loss_value = self.value(loss).item()?.to_f64();
        let (input, seeds, batch) = self.fisher_plan(loss, fisher)?;
        let scale = F::from_f64(batch as f64);
        let (mut captures, mut rotated) = (Vec::new(), Vec::new());
        let mode = SweepMode {
            param_grads: true,
            capture: fisher == FisherType::Empirical,
        };
        let (grads, rows) = self.run(
            &[(loss, Tensor::scalar(F::ONE))],
            (mode, true, gradient_rows),
            scale,
            (&mut captures, &mut rotated),
        )?;
        let extra = SweepMode {
            param_grads: false,
            capture: true,
        };
        for seed in seeds {
            let sinks = (&mut captures, &mut rotated);
            self.run(&[(input, seed)], (extra, true, false), scale, sinks)?;
        }
        conv2d::hand_over_patches(self.nodes, &mut captures);
        Ok(BackwardOutput {
            loss: loss_value,
            grads,
            captures,
            rows,
            rotated,
        })
    }

    /// Backpropagates an arbitrary seed gradient `seed` (shape of `v`) into the parameters.
    pub fn backward_from(self, v: Var, seed: Tensor<F>) -> Result<Gradients<F>> {
        self.sweep(
            &[(v, seed)],
            SweepMode {
                param_grads: true,
                capture: false,
            },
            1,
        )
        .map(|(g, _)| g)
    }

    /// One reverse sweep from several seeds, without consuming the tape, so it can run again
    /// with other seeds. Captured `g` rows are multiplied by `batch` (per-example scaling).
    pub fn sweep(
        &self,
        seeds: &[(Var, Tensor<F>)],
        mode: SweepMode,
        batch: usize,
    ) -> Result<(Gradients<F>, Vec<LayerCapture<F>>)> {
        let mut captures = Vec::new();
        let scale = F::from_f64(batch as f64);
        let sinks = (&mut captures, &mut Vec::new());
        let (grads, _) = self.run(seeds, (mode, false, false), scale, sinks)?;
        Ok((grads, captures))
    }

    /// For a loss node: its input, the extra capture seeds for `fisher`, and the batch size.
    fn fisher_plan(&self, loss: Var, fisher: FisherType) -> Result<(Var, Vec<Tensor<F>>, usize)> {
        match &self.nodes[loss.0].op {
            Op::Loss { input, kind, saved } => {
                let batch = self.value(*input).shape().as_matrix().0;
                Ok((*input, loss::fisher_seeds(kind, saved, fisher)?, batch))
            }
            _ if matches!(fisher, FisherType::Off | FisherType::Empirical) => Ok((loss, Vec::new(), 1)),
            _ => Err(Error::Autograd(
                "a sampled or exact Fisher needs a loss node (cross_entropy, bce_with_logits or mse)".into(),
            )),
        }
    }

    /// One sweep; `mode.1` says whether the tape is consumed afterwards (see `Sweep`), `mode.2`
    /// whether dense layers record their gradient rows (returned next to the gradients).
    fn run(
        &self,
        seeds: &[(Var, Tensor<F>)],
        mode: (SweepMode, bool, bool),
        batch_scale: F,
        (captures, rotated): (&mut Vec<LayerCapture<F>>, &mut Vec<RotatedRows<F>>),
    ) -> Result<(Gradients<F>, Vec<GradientRows<F>>)> {
        if !self.is_recording() {
            return Err(Error::Autograd(
                "this tape was built with Tape::no_grad and recorded no graph".into(),
            ));
        }
        let mut sw = Sweep {
            tape: self,
            pending: Vec::new(),
            mode: mode.0,
            batch_scale,
            grads: Gradients::new(self.params.len()),
            captures,
            rotated,
            tape_consumed: mode.1,
            gradient_rows: mode.2,
            rows: Vec::new(),
        };
        sw.pending.resize_with(self.nodes.len(), || None);
        let mut last = 0;
        for (v, seed) in seeds {
            self.check_var(*v, "backward")?;
            self.value(*v).check_same(seed, "backward seed")?;
            sw.add(*v, seed.clone())?;
            last = last.max(v.0);
        }
        for i in (0..=last).rev() {
            if let Some(g) = sw.pending[i].take() {
                backprop_node(&mut sw, i, g)?;
            }
        }
        Ok((sw.grads, sw.rows))
    }
}

/// Pushes the gradient `g` of node `i` to its inputs.
fn backprop_node<F: Float>(sw: &mut Sweep<'_, '_, F>, i: usize, g: Tensor<F>) -> Result<()> {
    let node = &sw.tape.nodes[i];
    let y = &node.value;
    match &node.op {
        Op::Input => Ok(()),
        Op::Param(id) => sw.param_grad(*id, g),
        Op::Add(a, b) => elementwise::add_backward(sw, *a, *b, g),
        Op::Sub(a, b) => elementwise::sub_backward(sw, *a, *b, g),
        Op::Mul(a, b) => elementwise::mul_backward(sw, *a, *b, g),
        Op::Scale(x, c) => sw.add(*x, elementwise::scale_backward(*c, g)),
        Op::AddScalar(x) => sw.add(*x, g),
        Op::Relu(x) => sw.add(*x, activation::relu_backward(y, g)),
        Op::Tanh(x) => sw.add(*x, activation::tanh_backward(y, g)),
        Op::Sigmoid(x) => sw.add(*x, activation::sigmoid_backward(y, g)),
        Op::LogSoftmax(x) => sw.add(*x, activation::log_softmax_backward(y, g)),
        Op::MatMul { a, b, ta, tb } => matmul::matmul_backward(sw, *a, *b, *ta, *tb, &g),
        Op::Dense(node) => dense::dense_backward(sw, node, y, g),
        Op::EigenDense(node) => eigen_dense::eigen_dense_backward(sw, node, y, g),
        Op::Conv2d(node) => conv2d::conv2d_backward(sw, node, g),
        Op::MaxPool2d { x, argmax, relu } => {
            let relu_out = relu.then_some(y);
            sw.add(
                *x,
                pool::max_pool2d_backward(sw.value(*x), argmax, relu_out, &g),
            )
        }
        Op::AvgPool2d { x, geom } => sw.add(*x, pool::avg_pool2d_backward(sw.value(*x), geom, &g)),
        Op::Loss { input, kind, saved } => sw.add(*input, loss::loss_backward(kind, saved, &g)?),
        Op::Sum(x) => sw.add(*x, reduce::sum_backward(sw.value(*x), &g, 1.0)?),
        Op::Mean(x) => sw.add(
            *x,
            reduce::sum_backward(sw.value(*x), &g, 1.0 / sw.value(*x).len() as f64)?,
        ),
        Op::Reshape(x) => sw.add(*x, g.reshape(sw.value(*x).dims())?),
    }
}
