//! Shared pieces of the natural-gradient tests on real layers: tiny f64 nets built from
//! `Linear` and `Conv2d`, one forward/backward with a chosen Fisher type, the captures it hands
//! out, and curvature blocks fitted to one capture (decay 0, observe → refresh → rescale, so
//! every identity of spec §7 is exact for that batch).

use nalgebra::DMatrix;
use tekfac::curvature::CurvatureBlock;
use tekfac::curvature::Variant;
use tekfac::nn::{Activation, Conv2d, Linear, Module, Sequential};
use tekfac::tensor::seeded_rng;
use tekfac::{
    BackwardOutput, FisherType, Gradients, LayerCapture, LayerInfo, LayerKind, ParamStore, Tape,
    Tensor,
};

/// The loss a net is trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy against `labels`.
    CrossEntropy,
    /// Mean squared error against fixed random targets.
    Mse,
}

/// A tiny model with its parameters and the shape of one example.
pub struct Net {
    pub ps: ParamStore<f64>,
    pub model: Sequential<f64>,
    /// Dimensions of one input example (without the batch axis).
    pub example: Vec<usize>,
    /// Width of the output.
    pub outputs: usize,
    pub loss: Loss,
}

/// Dense 3→4 + tanh + dense 4→3, cross-entropy.
pub fn dense_net(seed: u64) -> Net {
    let mut ps = ParamStore::seeded(seed);
    let model = Sequential::new()
        .push(Linear::new(&mut ps, "fc1", 3, 4, true).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(&mut ps, "fc2", 4, 3, true).unwrap());
    Net {
        ps,
        model,
        example: vec![3],
        outputs: 3,
        loss: Loss::CrossEntropy,
    }
}

/// Conv 2→3 (kernel 3×2, stride (2, 1), padding (1, 0)) + ReLU + flatten + dense 36→3 without
/// bias, on `[N, 2, 6, 5]` input (3×4 = 12 output locations), cross-entropy.
pub fn conv_net(seed: u64) -> Net {
    let mut ps = ParamStore::seeded(seed);
    let model = Sequential::new()
        .push(Conv2d::new(&mut ps, "conv", 2, 3, (3, 2), (2, 1), (1, 0), true).unwrap())
        .push(Activation::Relu)
        .push(Activation::Flatten)
        .push(Linear::new(&mut ps, "fc", 36, 3, false).unwrap());
    Net {
        ps,
        model,
        example: vec![2, 6, 5],
        outputs: 3,
        loss: Loss::CrossEntropy,
    }
}

/// Conv 2→3 (kernel 3×3, stride 3, padding 1) on `[N, 2, 3, 3]`: the padded 5×5 input leaves
/// exactly one output location, so each example contributes a single `(ā, g)` pair.
pub fn conv_one_location_net(seed: u64) -> Net {
    let mut ps = ParamStore::seeded(seed);
    let model = Sequential::new()
        .push(Conv2d::new(&mut ps, "conv", 2, 3, (3, 3), (3, 3), (1, 1), true).unwrap())
        .push(Activation::Tanh)
        .push(Activation::Flatten)
        .push(Linear::new(&mut ps, "fc", 3, 2, true).unwrap());
    Net {
        ps,
        model,
        example: vec![2, 3, 3],
        outputs: 2,
        loss: Loss::CrossEntropy,
    }
}

/// The deep linear network 3→4→2→3 (no activations), mean squared error.
pub fn deep_linear_net(seed: u64) -> Net {
    let mut ps = ParamStore::seeded(seed);
    let model = Sequential::new()
        .push(Linear::new(&mut ps, "fc1", 3, 4, true).unwrap())
        .push(Linear::new(&mut ps, "fc2", 4, 2, true).unwrap())
        .push(Linear::new(&mut ps, "fc3", 2, 3, true).unwrap());
    Net {
        ps,
        model,
        example: vec![3],
        outputs: 3,
        loss: Loss::Mse,
    }
}

impl Net {
    /// A seeded N(0, 1) batch of `n` examples.
    pub fn input(&self, n: usize, seed: u64) -> Tensor<f64> {
        let mut dims = vec![n];
        dims.extend(&self.example);
        Tensor::randn(&dims, 0.0, 1.0, &mut seeded_rng(seed))
    }

    /// Labels `(2i + 1) mod outputs`.
    pub fn labels(&self, n: usize) -> Vec<usize> {
        (0..n).map(|i| (2 * i + 1) % self.outputs).collect()
    }

    /// One forward and backward on `x` with `fisher` captures.
    pub fn pass(&self, x: &Tensor<f64>, fisher: FisherType) -> BackwardOutput<f64> {
        let n = x.dims()[0];
        let mut t = Tape::new(&self.ps);
        let xv = t.input(x.clone());
        let y = self.model.forward(&mut t, xv).unwrap();
        let l = match self.loss {
            Loss::CrossEntropy => t.cross_entropy(y, &self.labels(n)).unwrap(),
            Loss::Mse => {
                let target = Tensor::randn(&[n, self.outputs], 0.0, 1.0, &mut seeded_rng(99));
                t.mse(y, &target).unwrap()
            }
        };
        t.backward_with(l, fisher).unwrap()
    }

    /// The layer record named `name`.
    pub fn info(&self, name: &str) -> LayerInfo {
        self.ps
            .layers()
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no layer {name}"))
            .clone()
    }
}

/// The capture of layer `name` in `out`.
pub fn capture_of<'a>(
    out: &'a BackwardOutput<f64>,
    net: &Net,
    name: &str,
) -> &'a LayerCapture<f64> {
    let id = net.ps.layers().iter().position(|l| l.name == name).unwrap();
    out.captures
        .iter()
        .find(|c| c.layer.0 == id)
        .unwrap_or_else(|| panic!("no capture for {name}"))
}

/// One layer's capture from a real net, with its layer record.
pub struct Case {
    pub name: String,
    pub info: LayerInfo,
    pub capture: LayerCapture<f64>,
}

impl Case {
    pub fn is_conv(&self) -> bool {
        matches!(self.info.kind, LayerKind::Conv2d { .. })
    }
}

/// Every layer of `net` on a batch of `n`, captured with `fisher`.
pub fn cases_of(net: &Net, label: &str, n: usize, fisher: FisherType) -> Vec<Case> {
    let out = net.pass(&net.input(n, 7), fisher);
    net.ps
        .layers()
        .iter()
        .map(|info| Case {
            name: format!("{label} {} {fisher:?} N={n}", info.name),
            info: info.clone(),
            capture: capture_of(&out, net, &info.name).clone(),
        })
        .collect()
}

/// The layers of the dense net (batch 5) and of the conv net (batch 3), each with empirical and
/// exact (type-2) captures: dense layers, a strided padded conv layer, a bias-free dense layer.
pub fn real_cases() -> Vec<Case> {
    let (dense, conv) = (dense_net(1), conv_net(2));
    let mut cases = Vec::new();
    for fisher in [FisherType::Empirical, FisherType::Exact] {
        cases.extend(cases_of(&dense, "dense net", 5, fisher));
        cases.extend(cases_of(&conv, "conv net", 3, fisher));
    }
    cases
}

/// A block of `variant` fitted to one capture: decay 0, observe → refresh → rescale
/// (`tekfac::curvature::probe::fit`).
pub fn fit(variant: Variant, info: &LayerInfo, c: &LayerCapture<f64>) -> CurvatureBlock {
    tekfac::curvature::probe::fit(variant, info, c).unwrap()
}

/// A block right after its first refresh: s*/Θ re-seeded, no re-scaling yet.
pub fn seeded_only(variant: Variant, info: &LayerInfo, c: &LayerCapture<f64>) -> CurvatureBlock {
    let mut block = CurvatureBlock::new(variant, info, 0.0);
    block.observe(c).unwrap();
    block.refresh().unwrap();
    block
}

/// The tape's gradient of one layer as the `[d_out, d_in']` matrix `[∂L/∂W | ∂L/∂b]`.
pub fn grad_block(grads: &Gradients<f64>, info: &LayerInfo, ps: &ParamStore<f64>) -> DMatrix<f64> {
    let w = grads.require(info.weight, ps).unwrap();
    let b = info.bias.map(|b| grads.require(b, ps).unwrap());
    DMatrix::from_fn(info.d_out, info.d_in_bar(), |o, i| {
        if i < info.d_in {
            w.data()[o * info.d_in + i]
        } else {
            b.expect("the bias column exists only with a bias").data()[o]
        }
    })
}

/// A layer's current parameters as the `[d_out, d_in']` matrix `[W | b]`.
pub fn param_block(info: &LayerInfo, ps: &ParamStore<f64>) -> DMatrix<f64> {
    let w = ps.get(info.weight);
    DMatrix::from_fn(info.d_out, info.d_in_bar(), |o, i| {
        if i < info.d_in {
            w.data()[o * info.d_in + i]
        } else {
            ps.get(info.bias.unwrap()).data()[o]
        }
    })
}

/// Conv 3→2 (kernel 2×2, stride (1, 2), padding (0, 1)) WITHOUT bias + tanh + flatten + dense
/// 18→3 with bias, on `[N, 3, 4, 5]` input (3×3 = 9 output locations), cross-entropy.
pub fn conv_net_no_bias(seed: u64) -> Net {
    let mut ps = ParamStore::seeded(seed);
    let model = Sequential::new()
        .push(Conv2d::new(&mut ps, "conv", 3, 2, (2, 2), (1, 2), (0, 1), false).unwrap())
        .push(Activation::Tanh)
        .push(Activation::Flatten)
        .push(Linear::new(&mut ps, "fc", 18, 3, true).unwrap());
    Net {
        ps,
        model,
        example: vec![3, 4, 5],
        outputs: 3,
        loss: Loss::CrossEntropy,
    }
}

/// Flatten + dense 784→`hidden` + ReLU + dense `hidden`→10, in f32: the image MLP of the
/// optimizer tests.
pub fn image_mlp(ps: &mut ParamStore<f32>, hidden: usize) -> Sequential<f32> {
    Sequential::new()
        .push(Activation::Flatten)
        .push(Linear::new(ps, "fc1", 784, hidden, true).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(ps, "fc2", hidden, 10, true).unwrap())
}

/// A batch of 64 images whose first 100 pixels are always black (like MNIST's border: exactly
/// zero rows in `A`), with fixed labels.
pub fn black_border_batch(seed: u64) -> (Tensor<f32>, Vec<usize>) {
    let mut x = Tensor::<f32>::rand_uniform(&[64, 784], 0.0, 1.0, &mut seeded_rng(seed));
    for row in x.data_mut().chunks_mut(784) {
        row[..100].fill(0.0);
    }
    let labels = (0..64).map(|i| (i * 7 + seed as usize) % 10).collect();
    (x, labels)
}
