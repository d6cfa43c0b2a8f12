//! `ParamStore`: every trainable tensor of a model, with dotted names (`fc1.weight`), plus the
//! per-layer record ([`LayerInfo`]) of which weight and bias form one curvature block.
//!
//! Layers keep only [`ParamId`]s and a [`LayerId`]; the optimizer updates the store in place.

use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, gemm_into};
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
    /// Per layer: the eigenbasis its block is stored in, `None` for `W̄` itself.
    eigenbases: Vec<Option<LayerEigenbasis<F>>>,
    rng: Rng,
}

impl<F: Float> ParamStore<F> {
    /// An empty store whose initialisers draw from a generator seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        ParamStore {
            values: Vec::new(),
            names: Vec::new(),
            layers: Vec::new(),
            eigenbases: Vec::new(),
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
        self.eigenbases.push(None);
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

    /// The eigenbasis layer `id` is stored in ([`LayerEigenbasis`]), `None` when its weight and
    /// bias hold the standard `W̄ = [W | b]`.
    pub fn eigenbasis(&self, id: LayerId) -> Option<&LayerEigenbasis<F>> {
        self.eigenbases[id.0].as_ref()
    }

    /// True when some layer is stored in an eigenbasis.
    pub fn has_eigenbases(&self) -> bool {
        self.eigenbases.iter().any(Option::is_some)
    }

    /// Declares (or, with `None`, clears) the eigenbasis layer `id` is stored in. The stored
    /// values are not touched: the caller converts them ([`LayerEigenbasis::rotate_in`],
    /// [`set_block`](Self::set_block)). Errors for a conv layer or a basis of the wrong size.
    pub fn set_eigenbasis(&mut self, id: LayerId, basis: Option<LayerEigenbasis<F>>) -> Result<()> {
        let info = &self.layers[id.0];
        if let Some(b) = &basis {
            let (o, i) = (info.d_out, info.d_in_bar());
            if !matches!(info.kind, LayerKind::Dense)
                || b.q_g.len() != o * o
                || b.q_a.len() != i * i
            {
                let msg = format!(
                    "layer {}: an eigenbasis needs a dense layer and Q_G [{o}²], Q_A [{i}²]; got {} and {} values",
                    info.name,
                    b.q_g.len(),
                    b.q_a.len()
                );
                return Err(Error::invalid("ParamStore::set_eigenbasis", msg));
            }
        }
        self.eigenbases[id.0] = basis;
        Ok(())
    }

    /// Layer `id`'s block as stored (`W̄`, or `W̃` in an eigenbasis), row-major `[d_out, d_in']`,
    /// bias last.
    pub fn block(&self, id: LayerId) -> Vec<F> {
        let info = &self.layers[id.0];
        let w = self.values[info.weight.0].data();
        let Some(b) = info.bias else {
            return w.to_vec();
        };
        let b = self.values[b.0].data();
        let mut out = Vec::with_capacity(info.d_out * info.d_in_bar());
        for (row, &bias) in w.chunks(info.d_in.max(1)).zip(b) {
            out.extend_from_slice(row);
            out.push(bias);
        }
        out
    }

    /// Writes a row-major `[d_out, d_in']` block into layer `id`'s weight and bias.
    ///
    /// # Panics
    /// When `block` is not `d_out·d_in'` long.
    pub fn set_block(&mut self, id: LayerId, block: &[F]) {
        let info = self.layers[id.0].clone();
        let cols = info.d_in_bar();
        assert_eq!(
            block.len(),
            info.d_out * cols,
            "set_block: [d_out, d_in'] values"
        );
        let w = self.values[info.weight.0].data_mut();
        for (wrow, brow) in w.chunks_mut(info.d_in.max(1)).zip(block.chunks(cols)) {
            wrow.copy_from_slice(&brow[..info.d_in]);
        }
        if let Some(b) = info.bias {
            let b = self.values[b.0].data_mut();
            for (b, brow) in b.iter_mut().zip(block.chunks(cols)) {
                *b = brow[info.d_in];
            }
        }
    }

    /// A copy with every layer back in the standard parametrisation, `W̄ = Q_G W̃ Q_Aᵀ`: what
    /// checkpoints and exports hold.
    pub fn to_standard(&self) -> ParamStore<F> {
        let mut out = self.clone();
        for (i, basis) in self.eigenbases.iter().enumerate() {
            if let Some(basis) = basis {
                let info = &self.layers[i];
                let w_bar = basis.rotate_out(&self.block(LayerId(i)), info.d_out, info.d_in_bar());
                out.set_block(LayerId(i), &w_bar);
                out.eigenbases[i] = None;
            }
        }
        out
    }

    /// Forgets every eigenbasis without converting the values (they were just overwritten with
    /// standard ones, e.g. by loading a checkpoint).
    pub fn clear_eigenbases(&mut self) {
        self.eigenbases.iter_mut().for_each(|b| *b = None);
    }
}

/// The Kronecker eigenbasis a dense layer is trained in (see `ops/eigen_dense.rs`): while it is
/// set, the layer's weight and bias tensors hold `W̃ = Q_Gᵀ W̄ Q_A` (`[w̃ | b̃]`, bias column
/// last) instead of `W̄ = [W | b]`, and the forward pass computes `s = ((ā Q_A) W̃ᵀ) Q_Gᵀ = ā W̄ᵀ`.
///
/// The natural-gradient optimizers set it (EKFAC, TEKFAC: the update is then elementwise in
/// `W̃`); everything that saves or exports weights converts back to `W̄`
/// ([`ParamStore::to_standard`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerEigenbasis<F: Float = f32> {
    /// `Q_A`, `[d_in', d_in']`, row-major, orthogonal.
    pub q_a: Vec<F>,
    /// `Q_G`, `[d_out, d_out]`, row-major, orthogonal.
    pub q_g: Vec<F>,
}

impl<F: Float> LayerEigenbasis<F> {
    /// `Q_Gᵀ X Q_A`: a `[d_out, d_in']` matrix into the basis.
    pub fn rotate_in(&self, x: &[F], d_out: usize, d_in_bar: usize) -> Vec<F> {
        self.sandwich(x, d_out, d_in_bar, true)
    }

    /// `Q_G X Q_Aᵀ`: a `[d_out, d_in']` matrix out of the basis.
    pub fn rotate_out(&self, x: &[F], d_out: usize, d_in_bar: usize) -> Vec<F> {
        self.sandwich(x, d_out, d_in_bar, false)
    }

    /// `op(Q_G) X op(Q_A)ᵀ` with `op = ᵀ` into the basis.
    fn sandwich(&self, x: &[F], o: usize, i: usize, into: bool) -> Vec<F> {
        assert!(
            x.len() == o * i && self.q_g.len() == o * o && self.q_a.len() == i * i,
            "LayerEigenbasis: shapes are checked by the caller"
        );
        let mut tmp = vec![F::ZERO; o * i];
        let q_g = MatRef::new(&self.q_g, o, o, into);
        gemm_into(F::ONE, q_g, MatRef::new(x, o, i, false), F::ZERO, &mut tmp);
        let mut out = vec![F::ZERO; o * i];
        let q_a = MatRef::new(&self.q_a, i, i, !into);
        gemm_into(
            F::ONE,
            MatRef::new(&tmp, o, i, false),
            q_a,
            F::ZERO,
            &mut out,
        );
        out
    }
}
