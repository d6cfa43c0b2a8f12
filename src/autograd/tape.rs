//! `Tape`: the forward pass records one node per op; `Var` is an index into it.
//!
//! The tape borrows the parameters for one forward pass. Values of parameters are looked up in
//! the `ParamStore` (never copied onto the tape); every other node owns its value.

use super::op::Op;
use crate::error::{Error, Result};
use crate::params::{ParamId, ParamStore};
use crate::tensor::{Float, Tensor};

/// A value recorded on a [`Tape`]: an index into its node list.
///
/// A `Var` is `Copy` and only meaningful on the tape that returned it; read its value with
/// [`Tape::value`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

/// One recorded op and its output value.
pub(crate) struct Node<F: Float> {
    pub(crate) op: Op<F>,
    /// The output (empty for `Param` nodes, whose value lives in the store).
    pub(crate) value: Tensor<F>,
    /// True when a parameter is upstream, i.e. a gradient must flow through this node.
    pub(crate) needs_grad: bool,
}

/// A Wengert list of the ops of one forward pass.
///
/// Each op method pushes one node and returns its [`Var`]; `backward` consumes the tape and
/// sweeps the nodes in reverse. Here `L = Σ relu(x·Wᵀ)`, so `∂L/∂W = 1[x·Wᵀ > 0]ᵀ·x`:
///
/// ```
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut params = ParamStore::<f64>::seeded(0);
/// let w = params.add("w", Tensor::from_vec(vec![1.0, -1.0, 0.5, 2.0], &[2, 2])?)?;
/// let mut tape = Tape::new(&params);
/// let x = tape.input(Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
/// let wv = tape.param(w);
/// let s = tape.matmul_t(x, false, wv, true)?; // x·Wᵀ = [-1, 4.5]
/// let h = tape.relu(s);
/// let loss = tape.sum(h);
/// assert_eq!(tape.value(loss).item()?, 4.5);
/// assert_eq!(tape.len(), 5); // input, param, matmul, relu, sum
/// let grads = tape.backward(loss)?.grads;
/// assert_eq!(grads.get(w).unwrap().data(), &[0.0, 0.0, 1.0, 2.0]);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub struct Tape<'p, F: Float = f32> {
    pub(crate) params: &'p ParamStore<F>,
    pub(crate) nodes: Vec<Node<F>>,
    recording: bool,
}

impl<'p, F: Float> Tape<'p, F> {
    /// A recording tape over `params`.
    pub fn new(params: &'p ParamStore<F>) -> Self {
        Tape {
            params,
            nodes: Vec::with_capacity(32),
            recording: true,
        }
    }

    /// An inference tape: ops compute values but record no graph (every result is a constant),
    /// so nothing is kept for a backward sweep and `backward` returns an error.
    pub fn no_grad(params: &'p ParamStore<F>) -> Self {
        Tape {
            params,
            nodes: Vec::with_capacity(32),
            recording: false,
        }
    }

    /// True unless this is a [`Tape::no_grad`] tape.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// The parameters this tape reads.
    pub fn params(&self) -> &'p ParamStore<F> {
        self.params
    }

    /// Records a constant input (data); takes ownership, no copy.
    pub fn input(&mut self, value: Tensor<F>) -> Var {
        self.push_node(Op::Input, value, false)
    }

    /// Records a parameter leaf.
    pub fn param(&mut self, id: ParamId) -> Var {
        self.push_node(Op::Param(id), Tensor::zeros(&[0]), self.recording)
    }

    /// The value of a recorded variable.
    pub fn value(&self, v: Var) -> &Tensor<F> {
        match &self.nodes[v.0].op {
            Op::Param(id) => self.params.get(*id),
            _ => &self.nodes[v.0].value,
        }
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Pushes the result of an op. In no-grad mode the op is dropped and the value becomes a
    /// constant; otherwise the node needs a gradient when any of `inputs` does.
    pub(crate) fn push(&mut self, op: Op<F>, value: Tensor<F>, inputs: &[Var]) -> Var {
        if !self.recording {
            return self.push_node(Op::Input, value, false);
        }
        let needs = inputs.iter().any(|v| self.nodes[v.0].needs_grad);
        self.push_node(op, value, needs)
    }

    fn push_node(&mut self, op: Op<F>, value: Tensor<F>, needs_grad: bool) -> Var {
        self.nodes.push(Node {
            op,
            value,
            needs_grad,
        });
        Var(self.nodes.len() - 1)
    }

    /// The first dense or conv layer (in forward order) whose output holds a NaN or infinity:
    /// where a divergence started.
    pub fn first_non_finite_layer(&self) -> Option<crate::params::LayerId> {
        self.nodes.iter().find_map(|n| {
            let layer = match &n.op {
                Op::Dense(node) => node.layer,
                Op::Conv2d(node) => node.layer,
                _ => None,
            };
            layer.filter(|_| !n.value.all_finite())
        })
    }

    /// Errors unless `v` was recorded on this tape.
    pub(crate) fn check_var(&self, v: Var, op: &'static str) -> Result<()> {
        if v.0 >= self.nodes.len() {
            return Err(Error::invalid(
                op,
                format!("variable {} is not on this tape", v.0),
            ));
        }
        Ok(())
    }
}
