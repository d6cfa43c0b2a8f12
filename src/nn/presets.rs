//! The reference networks of the benchmarks and experiments (spec §8), ready to train.
//!
//! Each preset registers its parameters in a `ParamStore` (so `ParamStore::seeded(seed)` fixes
//! the initial weights), takes MNIST-shaped input `[B, 1, 28, 28]` (or already flat `[B, 784]`)
//! and returns logits. All three match `../shared/bench/peer` when built with the default
//! `Init::FanInUniform`.

use super::{Activation, Conv2d, Init, Linear, MaxPool2d, Module};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::params::ParamStore;
use crate::tensor::Float;

/// `[B, …] → [B, rest]`, the first step of the dense presets.
fn flatten<F: Float>(tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
    Activation::Flatten.forward(tape, x)
}

/// Dense layers `sizes[0] → sizes[1] → …`, named `fc1`, `fc2`, …
fn dense_stack<F: Float>(
    ps: &mut ParamStore<F>,
    sizes: &[usize],
    init: Init,
) -> Result<Vec<Linear>> {
    sizes
        .windows(2)
        .enumerate()
        .map(|(i, w)| Linear::with_init(ps, &format!("fc{}", i + 1), w[0], w[1], true, init))
        .collect()
}

/// The small CNN for 28×28 single-channel images: conv 5×5 1→32 + ReLU + maxpool 2, conv 5×5
/// 32→64 + ReLU + maxpool 2 ("valid", 28→24→12→8→4), flatten 1024, dense 1024→128 + ReLU,
/// dense 128→classes. 184,586 parameters for 10 classes.
///
/// ```
/// use tekfac::nn::{Cnn, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut ps = ParamStore::<f32>::seeded(0);
/// let cnn = Cnn::new(&mut ps, 10)?;
/// assert_eq!(ps.num_elements(), 184_586);
/// let mut tape = Tape::no_grad(&ps);
/// let x = tape.input(Tensor::zeros(&[2, 1, 28, 28]));
/// let logits = cnn.forward(&mut tape, x)?;
/// assert_eq!(tape.value(logits).dims(), &[2, 10]);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

impl Cnn {
    /// Registers `conv1`, `conv2`, `fc1`, `fc2` with PyTorch's default init.
    pub fn new<F: Float>(ps: &mut ParamStore<F>, classes: usize) -> Result<Self> {
        Self::with_init(ps, classes, Init::FanInUniform)
    }

    /// Like [`Cnn::new`] with a chosen initialiser (e.g. `Init::Kaiming`).
    pub fn with_init<F: Float>(ps: &mut ParamStore<F>, classes: usize, init: Init) -> Result<Self> {
        let (k, s, p) = ((5, 5), (1, 1), (0, 0));
        Ok(Cnn {
            conv1: Conv2d::with_init(ps, "conv1", 1, 32, k, s, p, true, init)?,
            conv2: Conv2d::with_init(ps, "conv2", 32, 64, k, s, p, true, init)?,
            fc1: Linear::with_init(ps, "fc1", 64 * 4 * 4, 128, true, init)?,
            fc2: Linear::with_init(ps, "fc2", 128, classes, true, init)?,
        })
    }
}

impl<F: Float> Module<F> for Cnn {
    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        // NOTE: each conv block pools before its ReLU, and the ReLU is fused into the pool.
        // Max and ReLU commute, and a window whose maximum is ≤ 0 passes no gradient either
        // way, so this is exactly conv → ReLU → pool (values and gradients, bit for bit;
        // `tests/engine_fused.rs`) without the ReLU's tensor and passes.
        let pool = MaxPool2d::new(2);
        let h = self.conv1.forward(tape, x)?;
        let h = pool.forward_relu(tape, h)?;
        let h = self.conv2.forward(tape, h)?;
        let h = pool.forward_relu(tape, h)?;
        let h = flatten(tape, h)?;
        let h = self.fc1.forward_relu(tape, h)?;
        self.fc2.forward(tape, h)
    }
}

/// The MLP classifier `pixels`-512-256-`classes` with ReLU; 784-512-256-10 (535,818
/// parameters) for MNIST.
///
/// ```
/// use tekfac::nn::{Mlp, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut ps = ParamStore::<f32>::seeded(0);
/// let mlp = Mlp::new(&mut ps, 784, 10)?;
/// assert_eq!(ps.num_elements(), 535_818);
/// let names: Vec<&str> = ps.layers().iter().map(|l| l.name.as_str()).collect();
/// assert_eq!(names, ["fc1", "fc2", "fc3"]);
/// let mut tape = Tape::no_grad(&ps);
/// let x = tape.input(Tensor::zeros(&[3, 1, 28, 28])); // flattened inside
/// let logits = mlp.forward(&mut tape, x)?;
/// assert_eq!(tape.value(logits).dims(), &[3, 10]);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Registers `fc1`, `fc2`, `fc3` with PyTorch's default init.
    pub fn new<F: Float>(ps: &mut ParamStore<F>, pixels: usize, classes: usize) -> Result<Self> {
        Self::with_init(ps, pixels, classes, Init::FanInUniform)
    }

    /// Like [`Mlp::new`] with a chosen initialiser (e.g. `Init::Kaiming`).
    pub fn with_init<F: Float>(
        ps: &mut ParamStore<F>,
        pixels: usize,
        classes: usize,
        init: Init,
    ) -> Result<Self> {
        let layers = dense_stack(ps, &[pixels, 512, 256, classes], init)?;
        Ok(Mlp { layers })
    }
}

impl<F: Float> Module<F> for Mlp {
    fn flattens_input(&self) -> bool {
        true
    }

    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let mut h = flatten(tape, x)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = if i < last {
                layer.forward_relu(tape, h)? // dense + ReLU, fused
            } else {
                layer.forward(tape, h)?
            };
        }
        Ok(h)
    }
}

/// The MNIST deep autoencoder 784-1000-500-250-30-250-500-1000-784 (8 dense layers, spec §8;
/// `pixels` replaces 784 for other image sizes).
///
/// Hidden units are sigmoid by default (tanh on request) and the 30-unit code layer is linear,
/// as in Hinton & Salakhutdinov (2006) and the K-FAC and EKFAC experiments. The output is 784
/// logits: train with `bce_with_logits` against the flattened input pixels in [0, 1].
/// 2,837,314 parameters for 784 pixels.
///
/// ```
/// use tekfac::nn::{Autoencoder, Module};
/// use tekfac::{ParamStore, Tape, Tensor};
///
/// let mut ps = ParamStore::<f32>::seeded(0);
/// let ae = Autoencoder::new(&mut ps, 784)?;
/// assert_eq!(ps.num_elements(), 2_837_314);
/// assert_eq!(ps.layers().len(), 8);
/// let images = Tensor::full(&[2, 784], 0.5);
/// let mut tape = Tape::no_grad(&ps);
/// let x = tape.input(images.clone());
/// let logits = ae.forward(&mut tape, x)?;
/// let loss = tape.bce_with_logits(logits, &images)?; // reconstruct the input
/// assert!(tape.value(loss).item()? > 0.0);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub struct Autoencoder {
    layers: Vec<Linear>,
    hidden: Activation,
}

impl Autoencoder {
    /// Hidden widths between the input and the output.
    pub const HIDDEN: [usize; 7] = [1000, 500, 250, 30, 250, 500, 1000];
    /// Index (into the layers) of the linear code layer 250 → 30.
    const CODE: usize = 3;

    /// Sigmoid hidden units, Xavier init.
    pub fn new<F: Float>(ps: &mut ParamStore<F>, pixels: usize) -> Result<Self> {
        Self::with(ps, pixels, Activation::Sigmoid, Init::Xavier)
    }

    /// A chosen hidden non-linearity (`Sigmoid` or `Tanh`) and initialiser.
    pub fn with<F: Float>(
        ps: &mut ParamStore<F>,
        pixels: usize,
        hidden: Activation,
        init: Init,
    ) -> Result<Self> {
        let sizes: Vec<usize> = [pixels]
            .into_iter()
            .chain(Self::HIDDEN)
            .chain([pixels])
            .collect();
        let layers = dense_stack(ps, &sizes, init)?;
        Ok(Autoencoder { layers, hidden })
    }
}

impl<F: Float> Module<F> for Autoencoder {
    fn flattens_input(&self) -> bool {
        true
    }

    fn forward(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let mut h = flatten(tape, x)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(tape, h)?;
            if i != Self::CODE && i != last {
                h = self.hidden.forward(tape, h)?;
            }
        }
        Ok(h)
    }
}
