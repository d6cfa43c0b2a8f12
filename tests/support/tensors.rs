//! Shared tolerances and helpers for the integration tests.

use tekfac::tensor::seeded_rng;
use tekfac::{LayerCapture, LayerId, ParamStore, Tensor};

/// Finite-difference checks in f64 must agree to this relative error.
pub const GRAD_TOL: f64 = 1e-6;
/// Matrix products in f64 against a naive loop.
pub const MATMUL_TOL: f64 = 1e-12;
/// f32 batch statistics (f32 GEMMs over blocks of ≤ 1024 rows, summed in f64) against the f64
/// path, relative Frobenius error: f32 rounding of blocked sums (measured 1e-7 to 1e-6).
pub const F32_STATS_TOL: f64 = 1e-5;

/// A seeded N(0, 1) tensor in f64.
pub fn randn(dims: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(dims, 0.0, 1.0, &mut seeded_rng(seed))
}

/// A store holding the given tensors as parameters `p0`, `p1`, ...
pub fn store(tensors: Vec<Tensor<f64>>) -> ParamStore<f64> {
    let mut ps = ParamStore::seeded(0);
    for (i, t) in tensors.into_iter().enumerate() {
        ps.add(format!("p{i}"), t).unwrap();
    }
    ps
}

/// Keeps every element at least `margin` away from 0 (for relu kinks).
pub fn away_from_zero(mut t: Tensor<f64>, margin: f64) -> Tensor<f64> {
    t.map_inplace(|x| {
        if x.abs() < margin {
            if x >= 0.0 { x + margin } else { x - margin }
        } else {
            x
        }
    });
    t
}

/// Runs `f` on a rayon pool of `threads` threads of its own (every kernel inside uses that
/// pool; `tekfac::set_threads` sizes the global pool only once, so it cannot switch between
/// thread counts within one test binary).
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

/// `[rows, d_in]` values as a dense layer's input rows `ā`: every 7th column zero (an
/// always-zero pixel), the rest clipped at zero (after a ReLU), and a trailing 1 per row when
/// `biased`; row-major `[rows, d_in (+1)]`.
pub fn layer_inputs(raw: &Tensor<f32>, biased: bool) -> Vec<f32> {
    let d_in = raw.dims()[1];
    let mut out = Vec::with_capacity(raw.dims()[0] * (d_in + usize::from(biased)));
    for row in raw.data().chunks_exact(d_in) {
        out.extend(
            row.iter()
                .enumerate()
                .map(|(i, &x)| if i % 7 == 0 { 0.0 } else { x.max(0.0) }),
        );
        if biased {
            out.push(1.0);
        }
    }
    out
}

/// An f32 capture of `n` examples at `t` locations: `[n·t, d_in + 1]` input rows
/// ([`layer_inputs`], biased) and `sweeps` N(0, 0.3²) output gradients `[n·t, d_out]`.
pub fn f32_capture(
    n: usize,
    t: usize,
    d_in: usize,
    d_out: usize,
    sweeps: usize,
    seed: u64,
) -> LayerCapture<f32> {
    let raw = Tensor::<f32>::randn(&[n * t, d_in], 0.0, 1.0, &mut seeded_rng(seed));
    let g = (0..sweeps)
        .map(|s| {
            let mut rng = seeded_rng(seed + 1 + s as u64);
            Tensor::<f32>::randn(&[n * t, d_out], 0.0, 0.3, &mut rng)
        })
        .collect();
    LayerCapture {
        layer: LayerId(0),
        a: Tensor::from_vec(layer_inputs(&raw, true), &[n * t, d_in + 1]).unwrap(),
        g,
        rows_per_example: t,
    }
}
