//! The reference networks: parameter counts, layer records, output shapes, and a short
//! training run of the CNN in f32.

use tekfac::nn::{Activation, Autoencoder, Cnn, Init, Mlp, Module};
use tekfac::optim::{Optimizer, Sgd, SgdConfig};
use tekfac::tensor::seeded_rng;
use tekfac::{LayerKind, ParamStore, Tape, Tensor};

#[test]
fn parameter_counts_match_the_peer_networks() {
    let mut ps = ParamStore::<f32>::seeded(0);
    Cnn::new(&mut ps, 10).unwrap();
    assert_eq!(ps.num_elements(), 184_586);
    let kinds: Vec<LayerKind> = ps.layers().iter().map(|l| l.kind).collect();
    let conv = LayerKind::Conv2d {
        kernel: (5, 5),
        stride: (1, 1),
        padding: (0, 0),
    };
    assert_eq!(kinds, [conv, conv, LayerKind::Dense, LayerKind::Dense]);
    assert_eq!((ps.layers()[1].d_out, ps.layers()[1].d_in), (64, 800));
    assert_eq!(
        ps.get(ps.find("conv2.weight").unwrap()).dims(),
        &[64, 32, 5, 5]
    );

    let mut ps = ParamStore::<f32>::seeded(0);
    Mlp::new(&mut ps, 784, 10).unwrap();
    assert_eq!(ps.num_elements(), 535_818);

    let mut ps = ParamStore::<f32>::seeded(0);
    Autoencoder::new(&mut ps, 784).unwrap();
    assert_eq!(ps.num_elements(), 2_837_314);
    assert_eq!(ps.layers().len(), 8);
}

#[test]
fn presets_take_images_and_return_logits() {
    let x = Tensor::<f32>::rand_uniform(&[3, 1, 28, 28], 0.0, 1.0, &mut seeded_rng(1));
    let (mut p1, mut p2, mut p3) = (
        ParamStore::seeded(0),
        ParamStore::seeded(0),
        ParamStore::seeded(0),
    );
    let cnn = Cnn::new(&mut p1, 10).unwrap();
    let mlp = Mlp::new(&mut p2, 784, 10).unwrap();
    let ae = Autoencoder::new(&mut p3, 784).unwrap();
    type Case<'a> = (&'a dyn Module<f32>, &'a ParamStore<f32>, &'a [usize]);
    let models: [Case; 3] = [
        (&cnn, &p1, &[3, 10]),
        (&mlp, &p2, &[3, 10]),
        (&ae, &p3, &[3, 784]),
    ];
    for (model, ps, dims) in models {
        let mut t = Tape::no_grad(ps);
        let xv = t.input(x.clone());
        let y = model.forward(&mut t, xv).unwrap();
        assert_eq!(t.value(y).dims(), dims);
        assert!(t.value(y).all_finite());
    }
}

#[test]
fn same_seed_same_weights() {
    let build = |seed| {
        let mut ps = ParamStore::<f32>::seeded(seed);
        Cnn::new(&mut ps, 10).unwrap();
        ps
    };
    let (a, b, c) = (build(4), build(4), build(5));
    let id = a.find("conv1.weight").unwrap();
    assert_eq!(a.get(id), b.get(id));
    assert_ne!(a.get(id), c.get(id));
}

#[test]
fn sparse_init_gives_every_unit_of_the_autoencoder_15_incoming_weights() {
    let mut ps = ParamStore::<f32>::seeded(0);
    Autoencoder::with(&mut ps, 784, Activation::Sigmoid, Init::Sparse(15)).unwrap();
    for layer in ps.layers() {
        let w = ps.get(layer.weight);
        let fan_in = w.dims()[1];
        for row in w.data().chunks(fan_in) {
            assert_eq!(
                row.iter().filter(|&&x| x != 0.0).count(),
                15,
                "{}",
                layer.name
            );
        }
        let bias = ps.get(layer.bias.unwrap());
        assert!(bias.data().iter().all(|&b| b == 0.0), "{}", layer.name);
    }
}

/// Noise images with a bright 8×8 square in the quadrant given by the label (4 classes).
fn quadrant_images(n: usize) -> (Tensor<f32>, Vec<usize>) {
    let mut x = Tensor::<f32>::rand_uniform(&[n, 1, 28, 28], 0.0, 0.3, &mut seeded_rng(2));
    let y: Vec<usize> = (0..n).map(|i| i % 4).collect();
    for (img, &label) in x.data_mut().chunks_mut(784).zip(&y) {
        let (top, left) = (3 + 14 * (label / 2), 3 + 14 * (label % 2));
        for r in top..top + 8 {
            img[r * 28 + left..r * 28 + left + 8].fill(1.0);
        }
    }
    (x, y)
}

#[test]
fn cnn_learns_where_the_square_is() {
    let (x, y) = quadrant_images(16);
    let mut ps = ParamStore::<f32>::seeded(3);
    let cnn = Cnn::new(&mut ps, 10).unwrap();
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.05,
        ..Default::default()
    });
    let mut losses = Vec::new();
    for _ in 0..30 {
        let mut t = Tape::new(&ps);
        let xv = t.input(x.clone());
        let logits = cnn.forward(&mut t, xv).unwrap();
        let loss = t.cross_entropy(logits, &y).unwrap();
        let out = t.backward(loss).unwrap();
        losses.push(out.loss);
        opt.step(&mut ps, &out).unwrap();
    }
    assert!(
        losses[29] < 0.2 * losses[0],
        "loss {} → {}",
        losses[0],
        losses[29]
    );
}
