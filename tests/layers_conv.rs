//! Convolution and pooling kernels against naive loops: conv2d forward equals the 6-loop
//! definition, im2col and col2im are adjoint, pooling equals a direct window scan, and bad
//! geometries are errors.

mod support;

use support::layers::naive_conv2d;
use support::tensors::{MATMUL_TOL, randn, store};
use tekfac::kernels::im2col::{ConvGeometry, col2im, col2im_columns, im2col};
use tekfac::{Error, ParamId, Tape, Tensor};

/// `(batch, c_in, c_out, (h, w), (kh, kw), stride, padding)`: square and non-square, stride 1
/// and 2, padding 0 and 1, a batch of one, a 1×1 kernel and one wider than 8.
type Case = (
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    (usize, usize),
);
const CASES: [Case; 8] = [
    (1, 1, 1, (5, 5), (3, 3), (1, 1), (0, 0)),
    (3, 2, 4, (6, 7), (3, 2), (1, 1), (1, 1)),
    (2, 3, 2, (7, 5), (2, 3), (2, 2), (0, 0)),
    (3, 2, 3, (8, 6), (3, 3), (2, 1), (1, 0)),
    (1, 4, 5, (5, 9), (5, 4), (2, 2), (1, 1)),
    (2, 3, 4, (4, 4), (1, 1), (1, 1), (0, 0)),
    (2, 1, 2, (3, 3), (3, 3), (1, 1), (2, 2)),
    (2, 2, 3, (5, 12), (2, 9), (1, 1), (0, 1)),
];

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= MATMUL_TOL * scale,
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn conv2d_forward_equals_naive_six_loop_convolution() {
    for (s, &(n, ci, co, (h, w), k, stride, pad)) in CASES.iter().enumerate() {
        for bias in [false, true] {
            let s = s as u64;
            let x = randn(&[n, ci, h, w], 10 + s);
            let wt = randn(&[co, ci, k.0, k.1], 20 + s);
            let b = randn(&[co], 30 + s);
            let ps = store(vec![wt.clone(), b.clone()]);
            let mut t = Tape::new(&ps);
            let xv = t.input(x.clone());
            let (wv, bv) = (t.param(ParamId(0)), t.param(ParamId(1)));
            let y = t
                .conv2d(xv, wv, bias.then_some(bv), None, stride, pad)
                .unwrap();
            let want = naive_conv2d(&x, &wt, bias.then_some(&b), stride, pad);
            assert_eq!(t.value(y).dims(), want.dims(), "case {s}");
            assert_close(
                t.value(y).data(),
                want.data(),
                &format!("case {s} bias {bias}"),
            );
        }
    }
}

#[test]
fn im2col_and_col2im_are_adjoint() {
    for (s, &(n, ci, _, (h, w), k, stride, pad)) in CASES.iter().enumerate() {
        let g = ConvGeometry::new("test", ci, (h, w), k, stride, pad).unwrap();
        let x = randn(&[n, ci, h, w], 40 + s as u64);
        let rows = n * g.locations();
        let y = randn(&[rows, g.patch_len()], 50 + s as u64);
        let mut cols = vec![0.0; rows * g.patch_len()];
        im2col(x.data(), &g, false, &mut cols);
        let mut back = vec![0.0; x.len()];
        col2im(y.data(), &g, g.patch_len(), &mut back);
        let lhs: f64 = cols.iter().zip(y.data()).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.data().iter().zip(&back).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "case {s}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn col2im_columns_is_the_adjoint_of_im2col_in_the_transposed_layout() {
    for (s, &(n, ci, _, (h, w), k, stride, pad)) in CASES.iter().enumerate() {
        let g = ConvGeometry::new("test", ci, (h, w), k, stride, pad).unwrap();
        let x = randn(&[n, ci, h, w], 70 + s as u64);
        let rows = n * g.locations();
        let y_t = randn(&[g.patch_len(), rows], 80 + s as u64);
        let mut cols = vec![0.0; rows * g.patch_len()];
        im2col(x.data(), &g, false, &mut cols);
        let mut back = vec![0.0; x.len()];
        col2im_columns(y_t.data(), &g, &mut back);
        let lhs: f64 = (0..rows)
            .flat_map(|r| (0..g.patch_len()).map(move |c| (r, c)))
            .map(|(r, c)| cols[r * g.patch_len() + c] * y_t.data()[c * rows + r])
            .sum();
        let rhs: f64 = x.data().iter().zip(&back).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "case {s}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn im2col_homogeneous_rows_end_in_one_and_follow_the_weight_layout() {
    // One 1×1 image per channel value: patch columns must run (c, ki, kj) like a flattened
    // weight [C_out, C_in, kh, kw], rows (n, oh, ow).
    let g = ConvGeometry::new("test", 2, (3, 3), (2, 2), (1, 1), (0, 0)).unwrap();
    let x: Vec<f64> = (0..2 * 2 * 9).map(|i| i as f64).collect();
    let mut cols = vec![0.0; 2 * g.locations() * 9];
    im2col(&x, &g, true, &mut cols);
    // Example 1, location (oh, ow) = (1, 0), channel 1, offset (ki, kj) = (0, 1):
    // x[1, 1, 1, 1] = 18 + 9 + 3 + 1 = 31.
    let row = g.locations() + 2;
    assert_eq!(cols[row * 9 + 4 + 1], 31.0);
    assert!(cols.chunks(9).all(|r| r[8] == 1.0));
}

#[test]
fn pooling_equals_a_direct_window_scan() {
    for (kernel, stride) in [((2, 2), (2, 2)), ((3, 2), (1, 2)), ((2, 3), (2, 1))] {
        let x = randn(&[2, 3, 7, 6], 60);
        let ps = store(vec![]);
        let mut t = Tape::new(&ps);
        let xv = t.input(x.clone());
        let mx = t.max_pool2d(xv, kernel, stride).unwrap();
        let av = t.avg_pool2d(xv, kernel, stride).unwrap();
        let (oh, ow) = ((7 - kernel.0) / stride.0 + 1, (6 - kernel.1) / stride.1 + 1);
        assert_eq!(t.value(mx).dims(), &[2, 3, oh, ow]);
        let (mut want_max, mut want_avg) = (Vec::new(), Vec::new());
        for plane in x.data().chunks(42) {
            for i in 0..oh {
                for j in 0..ow {
                    let win: Vec<f64> = (0..kernel.0)
                        .flat_map(|u| {
                            (0..kernel.1).map(move |v| (i * stride.0 + u, j * stride.1 + v))
                        })
                        .map(|(r, c)| plane[r * 6 + c])
                        .collect();
                    want_max.push(win.iter().cloned().fold(f64::MIN, f64::max));
                    want_avg.push(win.iter().sum::<f64>() / win.len() as f64);
                }
            }
        }
        assert_close(t.value(mx).data(), &want_max, "max_pool2d");
        assert_close(t.value(av).data(), &want_avg, "avg_pool2d");
    }
}

#[test]
fn bad_geometry_and_shapes_are_errors() {
    assert_eq!(
        ConvGeometry::new("conv2d", 1, (4, 4), (5, 5), (1, 1), (0, 0))
            .unwrap_err()
            .to_string(),
        "conv2d: kernel 5 is larger than the padded input 4"
    );
    assert!(ConvGeometry::new("conv2d", 1, (4, 4), (2, 2), (0, 1), (0, 0)).is_err());
    let g = ConvGeometry::new("conv2d", 3, (28, 28), (5, 5), (1, 1), (0, 0)).unwrap();
    assert_eq!(
        (g.out_size, g.patch_len(), g.locations()),
        ((24, 24), 75, 576)
    );
    let g = ConvGeometry::new("conv2d", 1, (7, 8), (3, 2), (2, 3), (1, 1)).unwrap();
    assert_eq!(g.out_size, (4, 3));
    let ps = store(vec![randn(&[4, 2, 3, 3], 1), randn(&[5], 2)]);
    let mut t = Tape::new(&ps);
    let (w, b) = (t.param(ParamId(0)), t.param(ParamId(1)));
    let x3 = t.input(Tensor::zeros(&[1, 3, 5, 5]));
    let err = t.conv2d(x3, w, None, None, (1, 1), (0, 0)).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let x2 = t.input(Tensor::zeros(&[1, 2, 5, 5]));
    assert!(t.conv2d(x2, w, Some(b), None, (1, 1), (0, 0)).is_err());
    let flat = t.input(Tensor::zeros(&[2, 50]));
    assert!(matches!(
        t.conv2d(flat, w, None, None, (1, 1), (0, 0)),
        Err(Error::BadRank { .. })
    ));
    assert!(t.max_pool2d(flat, (2, 2), (2, 2)).is_err());
    assert!(t.avg_pool2d(x2, (6, 6), (1, 1)).is_err());
}
