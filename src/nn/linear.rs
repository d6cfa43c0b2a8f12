//! `Linear`: `y = x·Wᵀ + b` with `W: [out, in]` (`<name>.weight`) and optional `b: [out]`
//! (`<name>.bias`), registered as one curvature block.

use super::Module;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::params::{LayerId, LayerInfo, LayerKind, ParamId, ParamStore};
use crate::tensor::{Float, Tensor};

/// How a layer's weights are initialised (biases start at zero, except `FanInUniform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's default: weight and bias `U(±1/√fan_in)`.
    #[default]
    FanInUniform,
    /// Kaiming/He normal `N(0, 2/fan_in)`, for ReLU nets; zero bias.
    Kaiming,
    /// Xavier/Glorot uniform, for tanh/sigmoid nets; zero bias.
    Xavier,
    /// Martens' sparse initialisation: this many `N(0, 1)` incoming weights per output unit, the
    /// rest 0 (Martens 2010 uses 15, see [`Tensor::sparse`]); zero bias.
    Sparse(usize),
}

impl Init {
    /// Draws a weight of shape `dims` and a bias of length `out`.
    pub(crate) fn draw<F: Float>(
        self,
        ps: &mut ParamStore<F>,
        dims: &[usize],
        fan_in: usize,
        fan_out: usize,
    ) -> (Tensor<F>, Tensor<F>) {
        let rng = ps.rng_mut();
        match self {
            Init::FanInUniform => (
                Tensor::fan_in_uniform(dims, fan_in, rng),
                Tensor::fan_in_uniform(&[dims[0]], fan_in, rng),
            ),
            Init::Kaiming => (
                Tensor::kaiming_normal(dims, fan_in, rng),
                Tensor::zeros(&[dims[0]]),
            ),
            Init::Xavier => (
                Tensor::xavier_uniform(dims, fan_in, fan_out, rng),
                Tensor::zeros(&[dims[0]]),
            ),
            Init::Sparse(nonzero) => (
                Tensor::sparse(dims, nonzero, rng),
                Tensor::zeros(&[dims[0]]),
            ),
        }
    }
}

/// A fully connected layer.
///
/// ```
/// use tekfac::nn::{Linear, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut ps = ParamStore::<f32>::seeded(0);
/// let fc = Linear::new(&mut ps, "fc", 4, 3, true)?;
/// assert_eq!(ps.get(fc.weight()).dims(), &[3, 4]); // [out, in]
/// let mut tape = Tape::new(&ps);
/// let x = tape.input(Tensor::ones(&[5, 4]));
/// let y = fc.forward(&mut tape, x)?; // x·Wᵀ + b
/// assert_eq!(tape.value(y).dims(), &[5, 3]);
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    weight: ParamId,
    bias: Option<ParamId>,
    layer: LayerId,
}

impl Linear {
    /// Registers `<name>.weight` `[out, in]` (and `<name>.bias` `[out]`) with the default init.
    pub fn new<F: Float>(
        ps: &mut ParamStore<F>,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Self> {
        Self::with_init(ps, name, d_in, d_out, bias, Init::default())
    }

    /// Like [`Linear::new`] with a chosen initialiser.
    pub fn with_init<F: Float>(
        ps: &mut ParamStore<F>,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        init: Init,
    ) -> Result<Self> {
        let (w, b) = init.draw(ps, &[d_out, d_in], d_in, d_out);
        let weight = ps.add(format!("{name}.weight"), w)?;
        let bias = if bias {
            Some(ps.add(format!("{name}.bias"), b)?)
        } else {
            None
        };
        let layer = ps.add_layer(LayerInfo {
            name: name.to_string(),
            kind: LayerKind::Dense,
            weight,
            bias,
            d_out,
            d_in,
        });
        Ok(Linear {
            weight,
            bias,
            layer,
        })
    }

    /// The weight parameter.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// The bias parameter, if any.
    pub fn bias(&self) -> Option<ParamId> {
        self.bias
    }

    /// The curvature block this layer's captures belong to.
    pub fn layer(&self) -> LayerId {
        self.layer
    }

    /// `relu(x·Wᵀ + b)` as one fused op ([`Tape::dense_relu`]): the same values and gradients as
    /// [`Module::forward`] followed by `tape.relu`, with one tensor and one pass fewer.
    pub fn forward_relu<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let w = tape.param(self.weight);
        let b = self.bias.map(|b| tape.param(b));
        tape.dense_relu(x, w, b, Some(self.layer))
    }
}

impl<F: Float> Module<F> for Linear {
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let w = tape.param(self.weight);
        let b = self.bias.map(|b| tape.param(b));
        tape.dense(x, w, b, Some(self.layer))
    }
}
