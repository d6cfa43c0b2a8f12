//! `Conv2d`: a 2-D convolution layer over NCHW input with weight `[C_out, C_in, kh, kw]`
//! (`<name>.weight`) and optional bias `[C_out]` (`<name>.bias`), registered as one curvature
//! block `[C_out, C_in·kh·kw (+1)]`.

use super::{Init, Module};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::params::{LayerId, LayerInfo, LayerKind, ParamId, ParamStore};
use crate::tensor::Float;

/// A 2-D convolution layer (im2col + one matrix product; see [`crate::ops::conv2d`]).
///
/// ```
/// use tekfac::nn::{Conv2d, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut ps = ParamStore::<f32>::seeded(0);
/// let conv = Conv2d::new(&mut ps, "conv1", 1, 4, (3, 3), (1, 1), (1, 1), true).unwrap();
/// let mut tape = Tape::new(&ps);
/// let x = tape.input(Tensor::zeros(&[2, 1, 8, 8]));
/// let y = conv.forward(&mut tape, x).unwrap();
/// assert_eq!(tape.value(y).dims(), &[2, 4, 8, 8]);
/// assert_eq!(ps.layer(conv.layer()).d_in, 9);
/// ```
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: ParamId,
    bias: Option<ParamId>,
    layer: LayerId,
    stride: (usize, usize),
    padding: (usize, usize),
}

impl Conv2d {
    /// Registers `<name>.weight` `[c_out, c_in, kh, kw]` (and `<name>.bias` `[c_out]`) with the
    /// default init (PyTorch's `U(±1/√fan_in)`, `fan_in = c_in·kh·kw`).
    // NOTE: the argument list mirrors PyTorch's `Conv2d(in, out, kernel, stride, padding, bias)`.
    #[allow(clippy::too_many_arguments)]
    pub fn new<F: Float>(
        ps: &mut ParamStore<F>,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        bias: bool,
    ) -> Result<Self> {
        let init = Init::default();
        Self::with_init(ps, name, c_in, c_out, kernel, stride, padding, bias, init)
    }

    /// Like [`Conv2d::new`] with a chosen initialiser (`fan_in = c_in·kh·kw`,
    /// `fan_out = c_out·kh·kw`).
    #[allow(clippy::too_many_arguments)]
    pub fn with_init<F: Float>(
        ps: &mut ParamStore<F>,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        bias: bool,
        init: Init,
    ) -> Result<Self> {
        let area = kernel.0 * kernel.1;
        let dims = [c_out, c_in, kernel.0, kernel.1];
        let (w, b) = init.draw(ps, &dims, c_in * area, c_out * area);
        let weight = ps.add(format!("{name}.weight"), w)?;
        let bias = if bias {
            Some(ps.add(format!("{name}.bias"), b)?)
        } else {
            None
        };
        let layer = ps.add_layer(LayerInfo {
            name: name.to_string(),
            kind: LayerKind::Conv2d {
                kernel,
                stride,
                padding,
            },
            weight,
            bias,
            d_out: c_out,
            d_in: c_in * area,
        });
        Ok(Conv2d {
            weight,
            bias,
            layer,
            stride,
            padding,
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
}

impl<F: Float> Module<F> for Conv2d {
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let w = tape.param(self.weight);
        let b = self.bias.map(|b| tape.param(b));
        tape.conv2d(x, w, b, Some(self.layer), self.stride, self.padding)
    }
}
