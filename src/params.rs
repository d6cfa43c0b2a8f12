//! `ParamStore`: every trainable tensor of a model, with dotted names (`fc1.weight`), plus the
//! per-layer record ([`LayerInfo`]) of which weight and bias form one curvature block.
//!
//! Layers keep only [`ParamId`]s and a [`LayerId`]; the optimizer updates the store in place.

use crate::error::{Error, Result};
use crate::tensor::{Float, Rng, Tensor, seeded_rng};

/// Index of a parameter in its [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

/// Index of a dense or convolution layer (one curvature block) in its [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(pub usize);

/// What kind of layer a curvature block belongs to, with the geometry the optimizer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// `y = x·Wᵀ + b`, weight `[out, in]`.
    Dense,
    /// 2-D convolution, weight `[out, in, kh, kw]`, viewed as `[out, in·kh·kw]`.
    Conv2d {
        /// Kernel height and width.
        kernel: (usize, usize),
        /// Stride (rows, cols).
        stride: (usize, usize),
        /// Zero padding (rows, cols).
        padding: (usize, usize),
    },
}

/// One layer's parameters as a curvature block: `W̄ = [W | b]` of shape `[out, in (+1)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Layer name, e.g. `fc1`.
    pub name: String,
    /// Dense or convolution.
    pub kind: LayerKind,
    /// The weight parameter.
    pub weight: ParamId,
    /// The bias parameter, if any (it becomes the last column of the block).
    pub bias: Option<ParamId>,
    /// Output features (`out` or `C_out`).
    pub d_out: usize,
    /// Input features without the bias column (`in` or `C_in·kh·kw`).
    pub d_in: usize,
}

impl LayerInfo {
    /// Columns of the block: `d_in + 1` with a bias (homogeneous coordinate), else `d_in`.
    pub fn d_in_bar(&self) -> usize {
        self.d_in + usize::from(self.bias.is_some())
    }
}

/// All parameters of a model, in registration order, with names and layer records.
///
/// ```
/// use tekfac::nn::Linear;
/// use tekfac::{LayerKind, ParamStore, Tensor};
///
/// let mut ps = ParamStore::<f32>::seeded(0); // the seed fixes every initialiser
/// let fc = Linear::new(&mut ps, "fc1", 784, 128, true)?;
/// let scale = ps.add("scale", Tensor::ones(&[1]))?; // a parameter outside any layer
/// assert_eq!(ps.find("fc1.weight"), Some(fc.weight()));
/// assert_eq!(ps.name(scale), "scale");
/// assert_eq!(ps.num_elements(), 784 * 128 + 128 + 1);
/// let info = ps.layer(fc.layer()); // one curvature block W̄ = [W | b]
/// assert_eq!((info.kind, info.d_out, info.d_in_bar()), (LayerKind::Dense, 128, 785));
/// assert!(ps.add("scale", Tensor::ones(&[1])).is_err()); // names are unique
/// # Ok::<(), tekfac::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ParamStore<F: Float = f32> {
    values: Vec<Tensor<F>>,
    names: Vec<String>,
    layers: Vec<LayerInfo>,
    rng: Rng,
}

impl<F: Float> ParamStore<F> {
    /// An empty store whose initialisers draw from a generator seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        ParamStore {
            values: Vec::new(),
            names: Vec::new(),
            layers: Vec::new(),
            rng: seeded_rng(seed),
        }
    }

    /// Registers a parameter; names must be unique.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor<F>) -> Result<ParamId> {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(Error::invalid(
                "ParamStore::add",
                format!("parameter name `{name}` is already taken"),
            ));
        }
        self.values.push(value);
        self.names.push(name);
        Ok(ParamId(self.values.len() - 1))
    }

    /// Registers a layer record (its parameters must already be registered).
    pub fn add_layer(&mut self, info: LayerInfo) -> LayerId {
        self.layers.push(info);
        LayerId(self.layers.len() - 1)
    }

    /// The generator initialisers draw from.
    pub fn rng_mut(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A parameter's value.
    pub fn get(&self, id: ParamId) -> &Tensor<F> {
        &self.values[id.0]
    }

    /// A parameter's value, mutable (optimizers and checkpoint loading use this).
    pub fn get_mut(&mut self, id: ParamId) -> &mut Tensor<F> {
        &mut self.values[id.0]
    }

    /// A parameter's dotted name.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    /// Looks a parameter up by name.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no parameter is registered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(Tensor::len).sum()
    }

    /// All parameter ids in registration order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.values.len()).map(ParamId)
    }

    /// The layer records (one curvature block each).
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// One layer record.
    pub fn layer(&self, id: LayerId) -> &LayerInfo {
        &self.layers[id.0]
    }
}
