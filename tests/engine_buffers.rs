//! The engine's write-once buffers (filled by their kernel, not zero-filled first) against
//! zero-filled ones. im2col, the batched transpose and the convolution's forward product share
//! their code with their `_new` variants, so running them on a buffer full of NaN shows that
//! every element is written. Max pooling allocates inside the op: it runs on a heap whose freshly
//! freed blocks of the sizes it asks for are full of NaN (and of out-of-range indices), and must
//! still equal a direct window scan, forward and backward.

mod support;

use support::tensors::{randn, store};
use tekfac::kernels::conv::{conv_forward, conv_forward_new};
use tekfac::kernels::im2col::{ConvGeometry, im2col, im2col_new};
use tekfac::kernels::transpose::{transpose_batched, transpose_new};
use tekfac::{ParamId, Tape, Tensor};

/// `(c_in, (h, w), (kh, kw), stride, padding)`: windows inside and across the padding, stride
/// 1 and 2, a kernel row shorter than 8 (the 8-wide copy) and one longer.
type Geometry = (
    usize,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    (usize, usize),
);
const GEOMETRIES: [Geometry; 4] = [
    (1, (28, 28), (5, 5), (1, 1), (0, 0)),
    (3, (7, 9), (3, 3), (2, 1), (1, 1)),
    (2, (6, 12), (2, 9), (1, 1), (0, 1)),
    (32, (12, 12), (5, 5), (1, 1), (0, 0)),
];

fn geometry(&(c, size, kernel, stride, padding): &Geometry) -> ConvGeometry {
    ConvGeometry::new("test", c, size, kernel, stride, padding).unwrap()
}

fn rand32(len: usize, seed: u64) -> Vec<f32> {
    let t = randn(&[len], seed);
    t.data().iter().map(|&x| x as f32).collect()
}

/// Bit-for-bit equality that a leftover NaN fails (NaN ≠ NaN).
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[test]
fn im2col_writes_every_element() {
    for g in GEOMETRIES.iter().map(geometry) {
        for homogeneous in [false, true] {
            let x = rand32(2 * g.in_len(), 1);
            let ld = g.patch_len() + usize::from(homogeneous);
            let len = 2 * g.locations() * ld;
            let (mut zeros, mut nans) = (vec![0f32; len], vec![f32::NAN; len]);
            im2col(&x, &g, homogeneous, &mut zeros);
            im2col(&x, &g, homogeneous, &mut nans);
            assert!(same(&nans, &zeros), "{g:?} homogeneous={homogeneous}");
            assert!(same(&im2col_new(&x, &g, homogeneous), &zeros), "{g:?}");
        }
    }
}

#[test]
fn transpose_writes_every_element() {
    for (rows, cols) in [(19, 37), (16, 32), (1, 1), (33, 16), (64, 801)] {
        let src = rand32(3 * rows * cols, 2);
        let (mut zeros, mut nans) = (vec![0f32; src.len()], vec![f32::NAN; src.len()]);
        transpose_batched(&src, rows, cols, 0.5, &mut zeros);
        transpose_batched(&src, rows, cols, 0.5, &mut nans);
        assert!(same(&nans, &zeros), "{rows}x{cols}");
        assert!(
            same(&transpose_new(&src, rows, cols, 0.5), &zeros),
            "{rows}x{cols}"
        );
    }
}

#[test]
fn conv_forward_writes_every_element_on_both_paths() {
    // The first geometry takes one product per example, the last one product for the batch.
    for (g, c_out) in [
        (geometry(&GEOMETRIES[0]), 32),
        (geometry(&GEOMETRIES[3]), 64),
    ] {
        let n = 3;
        let cols = im2col_new(&rand32(n * g.in_len(), 3), &g, true);
        let w_bar = rand32(c_out * (g.patch_len() + 1), 4);
        let len = n * c_out * g.locations();
        let (mut zeros, mut nans) = (vec![0f32; len], vec![f32::NAN; len]);
        conv_forward(&cols, &w_bar, &g, c_out, &mut zeros);
        conv_forward(&cols, &w_bar, &g, c_out, &mut nans);
        assert!(same(&nans, &zeros), "{g:?}");
        let fresh = conv_forward_new(&cols, &w_bar, &g, (n, c_out));
        assert!(same(&fresh, &zeros), "{g:?}");
    }
}

/// Allocates and frees blocks of `f64` NaN and of `u32::MAX` of each length, so that the next
/// allocations of those sizes are likely to get that memory back.
fn dirty_heap(lens: &[usize]) {
    for &len in lens {
        drop(std::hint::black_box(vec![f64::NAN; len]));
        drop(std::hint::black_box(vec![u32::MAX; len]));
    }
}

#[test]
fn max_pooling_on_a_dirty_heap_equals_a_direct_window_scan() {
    for (kernel, stride) in [((2, 2), (2, 2)), ((3, 2), (1, 2))] {
        let (n, c, h, w) = (3, 4, 9, 8);
        let (oh, ow) = ((h - kernel.0) / stride.0 + 1, (w - kernel.1) / stride.1 + 1);
        let ps = store(vec![randn(&[n, c, h, w], 5)]);
        let x = ps.get(ParamId(0)).clone();
        let seed = randn(&[n, c, oh, ow], 6);
        let (mut want_y, mut want_dx) = (Vec::new(), vec![0.0; x.len()]);
        for p in 0..n * c {
            for (i, j) in (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))) {
                let window = (0..kernel.0)
                    .flat_map(|u| (0..kernel.1).map(move |v| (i * stride.0 + u, j * stride.1 + v)));
                let at = |(r, s): (usize, usize)| p * h * w + r * w + s;
                // The first maximum in scan order, as the op documents.
                let best = window
                    .map(at)
                    .reduce(|a, b| if x.data()[b] > x.data()[a] { b } else { a })
                    .unwrap();
                want_y.push(x.data()[best]);
                want_dx[best] += seed.data()[(p * oh + i) * ow + j];
            }
        }
        dirty_heap(&[n * c * oh * ow, x.len()]);
        let mut t = Tape::new(&ps);
        let xv = t.param(ParamId(0));
        let y = t.max_pool2d(xv, kernel, stride).unwrap();
        assert_eq!(t.value(y).data(), want_y.as_slice(), "forward {kernel:?}");
        dirty_heap(&[x.len()]);
        let grads = t.backward_from(y, seed.clone()).unwrap();
        let dx: &Tensor<f64> = grads.get(ParamId(0)).unwrap();
        assert_eq!(dx.data(), want_dx.as_slice(), "backward {kernel:?}");
    }
}
