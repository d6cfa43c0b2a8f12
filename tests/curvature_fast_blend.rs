//! The f32 statistics blended straight into the running averages (`blend_gram`, `FastFactors`,
//! `FastCorrection`) give bit for bit what forming the batch and blending it gives: every
//! factor, `δ`, `s*`/`Θ`, on dense rows that are one f32 product (blended in place) and on rows
//! that are not (several sweeps, more than `ROW_BLOCK` rows, conv rows: formed, then blended), on
//! 1 and 2 threads, and through a block's `observe_factors` / `rescale_batch` over several steps
//! (the first observation forms the batch, the later ones blend it).

mod support;

use nalgebra::DMatrix;
use support::tensors::{f32_capture as capture, layer_inputs, on_threads};
use tekfac::Tensor;
use tekfac::curvature::{
    AllFinite, BatchStatistic, Blend, CurvatureBlock, FastCorrection, FastFactors, FastRows,
    KroneckerFactors, ROW_BLOCK, Variant, blend_gram, gram,
};
use tekfac::tensor::seeded_rng;
use tekfac::{LayerInfo, LayerKind, ParamId};

/// The running-average coefficients of a decay of 0.95.
const C: (f64, f64) = (0.95, 1.0 - 0.95);

/// Bit for bit equal matrices.
fn same_bits(label: &str, got: &DMatrix<f64>, want: &DMatrix<f64>) {
    assert_eq!(got.shape(), want.shape(), "{label}: shapes");
    let differing = (got.iter().zip(want.iter()))
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(differing, 0, "{label}: {differing} entries differ");
}

/// Row-major `[rows, cols]` f32 values: ReLU-like with every 7th column zero (MNIST's border
/// pixels), and a trailing ones column when `biased`.
fn rows_f32(rows: usize, cols: usize, biased: bool, seed: u64) -> Vec<f32> {
    let raw = Tensor::<f32>::randn(&[rows, cols], 0.0, 1.0, &mut seeded_rng(seed));
    layer_inputs(&raw, biased)
}

/// A symmetric average to blend into (a gram of other rows, so exactly symmetric).
fn start(cols: usize, seed: u64) -> DMatrix<f64> {
    gram(&[&rows_f32(64, cols, false, seed)], cols, None, 1.0 / 64.0)
}

#[test]
fn a_gram_blended_in_place_is_the_formed_gram_blended() {
    // One panel, 2 and 3 panels (the MLP's fc2 and fc1 inputs), more rows than one f32 product
    // takes, and two buffers (two sweeps): the last two are formed, then blended.
    let cases = [
        (128, 100, 1),
        (128, 513, 1),
        (128, 785, 1),
        (ROW_BLOCK + 40, 300, 1),
        (96, 300, 2),
    ];
    for (rows, cols, buffers) in cases {
        let xs: Vec<Vec<f32>> = (0..buffers)
            .map(|b| rows_f32(rows, cols, false, 10 + b as u64))
            .collect();
        let xs: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let weights: Vec<f64> = (0..rows).map(|r| 0.5 + (r % 5) as f64).collect();
        for w in [None, Some(weights.as_slice())] {
            let scale = 1.0 / rows as f64;
            let mut want = start(cols, 3);
            want.blend(C.0, C.1, &gram(&xs, cols, w, scale));
            for threads in [1, 2] {
                let mut got = start(cols, 3);
                on_threads(threads, || blend_gram(&mut got, C, &xs, cols, w, scale));
                let label = format!(
                    "{rows}×{cols}, {buffers} buffers, weighted {}, {threads} threads",
                    w.is_some()
                );
                same_bits(&label, &got, &want);
                same_bits(&format!("{label}, symmetric"), &got, &got.transpose());
            }
        }
    }
}

#[test]
fn factors_and_corrections_blended_in_place_are_the_formed_batches_blended() {
    // Dense, one sweep (in place; 100 examples: `1/N` inexact, so `s*`/`Θ` divide by N); dense,
    // two sweeps, and conv rows (formed, then blended).
    for (n, t, sweeps) in [(128, 1, 1), (100, 1, 1), (64, 1, 2), (8, 9, 1)] {
        let c = capture(n, t, 300, 40, sweeps, 7);
        let rows = FastRows::from_capture(&c).unwrap();
        let label = format!("N={n} T={t} sweeps {sweeps}");
        for trace_restricted in [false, true] {
            let fresh = || FastFactors::new(trace_restricted, &c).unwrap();
            let start_factors = KroneckerFactors {
                a_factor: start(301, 1),
                g_factor: start(40, 2),
                trace_scale: 3.0,
            };
            let mut want = start_factors.clone();
            want.blend(C.0, C.1, &fresh().form());
            let mut got = start_factors;
            fresh().blend_into(&mut got, C.0, C.1);
            same_bits(
                &format!("{label} A, TKFAC {trace_restricted}"),
                &got.a_factor,
                &want.a_factor,
            );
            same_bits(
                &format!("{label} G, TKFAC {trace_restricted}"),
                &got.g_factor,
                &want.g_factor,
            );
            assert_eq!(
                got.trace_scale.to_bits(),
                want.trace_scale.to_bits(),
                "{label} δ"
            );
        }
        let q_a = rows_f32(301, 301, false, 4);
        let q_g = rows_f32(40, 40, false, 5);
        for basis in [Some((q_a.as_slice(), q_g.as_slice())), None] {
            let start_theta = DMatrix::from_fn(40, 301, |i, j| (i * 301 + j) as f64 * 1e-3);
            let mut want = start_theta.clone();
            want.blend(C.0, C.1, &FastCorrection::new(&rows, basis).form());
            for threads in [1, 2] {
                let mut got = start_theta.clone();
                on_threads(threads, || {
                    FastCorrection::new(&rows, basis).blend_into(&mut got, C.0, C.1)
                });
                same_bits(
                    &format!(
                        "{label} s*/Θ, rotated {}, {threads} threads",
                        basis.is_some()
                    ),
                    &got,
                    &want,
                );
            }
        }
    }
}

/// A dense layer of `d_in → d_out` with a bias.
fn dense_info(d_in: usize, d_out: usize) -> LayerInfo {
    LayerInfo {
        name: "fc".into(),
        kind: LayerKind::Dense,
        weight: ParamId(0),
        bias: Some(ParamId(1)),
        d_in,
        d_out,
    }
}

#[test]
fn a_block_fed_in_place_keeps_the_averages_of_a_block_fed_formed_batches() {
    for variant in [Variant::Ekfac, Variant::Tekfac] {
        let info = dense_info(300, 40);
        let (mut fed, mut formed) = (
            CurvatureBlock::new(variant, &info, 0.95),
            CurvatureBlock::new(variant, &info, 0.95),
        );
        let tr = variant.trace_restricted();
        for step in 0..4 {
            let c = capture(128, 1, 300, 40, 1, 20 + step);
            fed.observe_factors(FastFactors::new(tr, &c).unwrap())
                .unwrap();
            formed
                .observe_factors(FastFactors::new(tr, &c).unwrap().form())
                .unwrap();
            if step == 0 {
                fed.refresh().unwrap();
                formed.refresh().unwrap();
            }
            let basis = fed.basis().unwrap();
            let (q_a, q_g) = (row_major(&basis.q_a), row_major(&basis.q_g));
            let batch = || FastCorrection::of_capture(&c, &q_a, &q_g).unwrap();
            fed.rescale_batch(batch()).unwrap();
            formed.rescale_batch(batch().form()).unwrap();
        }
        let (a, b) = (fed.factors().unwrap(), formed.factors().unwrap());
        same_bits("A or δΦ", &a.a_factor, &b.a_factor);
        same_bits("G or δΨ", &a.g_factor, &b.g_factor);
        assert_eq!(a.trace_scale.to_bits(), b.trace_scale.to_bits());
        same_bits(
            "s*/Θ",
            &fed.eigenvalues().unwrap(),
            &formed.eigenvalues().unwrap(),
        );
        assert_eq!(fed.revision(), formed.revision());
    }
}

/// Row-major f32 copy of an f64 matrix.
fn row_major(m: &DMatrix<f64>) -> Vec<f32> {
    m.transpose().iter().map(|&x| x as f32).collect()
}

#[test]
fn a_non_finite_correction_is_refused_before_it_reaches_the_average() {
    let info = dense_info(300, 40);
    let mut block = CurvatureBlock::new(Variant::Tekfac, &info, 0.95);
    let c = capture(128, 1, 300, 40, 1, 30);
    block
        .observe_factors(FastFactors::new(true, &c).unwrap())
        .unwrap();
    block.refresh().unwrap();
    let before = block.eigenvalues().unwrap();
    let mut bad = c.clone();
    bad.g[0].data_mut()[5] = f32::INFINITY;
    let basis = block.basis().unwrap();
    let (q_a, q_g) = (row_major(&basis.q_a), row_major(&basis.q_g));
    let batch = FastCorrection::of_capture(&bad, &q_a, &q_g).unwrap();
    assert!(!batch.all_finite());
    assert!(block.rescale_batch(batch).is_err());
    same_bits("s*/Θ kept", &block.eigenvalues().unwrap(), &before);
}
