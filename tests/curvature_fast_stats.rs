//! The f32 statistics path (`fast_factors`, `fast_corrected_batch`) gives the f64 path's batch
//! statistics to f32 rounding: K-FAC's `A, G`, TKFAC's `δ, δΦ, δΨ` and EKFAC/TEKFAC's `s*`/`Θ`,
//! on synthetic rows and on captures of real layers (the MLP and CNN presets and a bias-free
//! net, on the embedded Fashion-MNIST subset and on MNIST from `$TEKFAC_DATA_DIR`), with the
//! empirical, sampled (k = 2) and exact Fisher. The f64 path (`KroneckerFactors::from_capture`,
//! `corrected_batch`) is the oracle.
//!
//! Tolerance `F32_STATS_TOL` (`tests/support/tensors.rs`): relative Frobenius error 1e-5. Both paths read the
//! same f32 rows; the f32 path rounds each product and each partial sum of at most 256 terms
//! (matrixmultiply's register block) and 1024 rows (`ROW_BLOCK`) to f32 (`u = 6e-8`), then sums
//! in f64. Measured: 1e-7 to 1e-6 (printed with `--nocapture`). The negative controls show that
//! a relative error of 1e-4 and a wrong normalisation, layout or cross-location term fail.

mod support;

use nalgebra::DMatrix;
use support::tensors::{F32_STATS_TOL, layer_inputs, on_threads};
use tekfac::curvature::{
    CaptureRows, GramSplit, KroneckerBasis, KroneckerFactors, corrected_batch,
    fast_corrected_batch, fast_factors, gram_with,
};
use tekfac::dataset::{self, DataSource, Split};
use tekfac::kernels::gemm::{MatRef, gemm_columns_into};
use tekfac::nn::{Activation, Cnn, Conv2d, Linear, Mlp, Module, Sequential};
use tekfac::tensor::seeded_rng;
use tekfac::{FisherType, LayerCapture, LayerId, ParamStore, Tape, Tensor};

/// `‖fast − slow‖_F / ‖slow‖_F`.
fn rel(fast: &DMatrix<f64>, slow: &DMatrix<f64>) -> f64 {
    (fast - slow).norm() / slow.norm().max(f64::MIN_POSITIVE)
}

/// `Ok(error)` when `fast` is within `tol` of `slow` (relative Frobenius), else `Err`.
fn check(label: &str, fast: &DMatrix<f64>, slow: &DMatrix<f64>, tol: f64) -> Result<f64, String> {
    let err = rel(fast, slow);
    if fast.shape() == slow.shape() && err <= tol {
        Ok(err)
    } else {
        Err(format!("{label}: relative error {err:.3e} > {tol:.0e}"))
    }
}

/// Row-major f32 copy of an f64 matrix.
fn row_major_f32(m: &DMatrix<f64>) -> Vec<f32> {
    m.transpose().iter().map(|&x| x as f32).collect()
}

/// The largest error of each statistic over the captures checked so far.
#[derive(Default)]
struct Worst {
    factors: f64,
    delta: f64,
    corrected: f64,
}

impl Worst {
    fn report(&self, what: &str) {
        eprintln!(
            "{what}: worst relative error A/G/δΦ/δΨ {:.2e}, δ {:.2e}, s*/Θ {:.2e}",
            self.factors, self.delta, self.corrected
        );
    }
}

/// The f64 eigenbases of `c`'s K-FAC factors and of its TKFAC factors (the EKFAC and the
/// TEKFAC basis).
fn bases_of(c: &LayerCapture<f32>) -> [KroneckerBasis; 2] {
    [false, true].map(|trace_restricted| {
        let factors = KroneckerFactors::from_capture(trace_restricted, c).unwrap();
        KroneckerBasis::from_factors(&factors).unwrap()
    })
}

/// Every statistic of `c` by both paths: the factors of both kinds, and `s*`/`Θ` in each of
/// `bases`. Returns the first failure.
fn compare(
    label: &str,
    c: &LayerCapture<f32>,
    bases: &[KroneckerBasis; 2],
    worst: &mut Worst,
) -> Result<(), String> {
    let rows = CaptureRows::from_capture(c).map_err(|e| e.to_string())?;
    for (trace_restricted, basis) in [false, true].into_iter().zip(bases) {
        let kind = if trace_restricted { "tkfac" } else { "kfac" };
        let slow = KroneckerFactors::from_capture(trace_restricted, c).unwrap();
        let fast = fast_factors(trace_restricted, c).map_err(|e| e.to_string())?;
        let a = check(
            &format!("{label} {kind} a_factor"),
            &fast.a_factor,
            &slow.a_factor,
            F32_STATS_TOL,
        )?;
        let g = check(
            &format!("{label} {kind} g_factor"),
            &fast.g_factor,
            &slow.g_factor,
            F32_STATS_TOL,
        )?;
        worst.factors = worst.factors.max(a).max(g);
        if fast.a_factor != fast.a_factor.transpose() || fast.g_factor != fast.g_factor.transpose()
        {
            return Err(format!("{label} {kind}: factors not exactly symmetric"));
        }
        let delta = (fast.trace_scale - slow.trace_scale).abs() / slow.trace_scale;
        if delta > 1e-12 {
            return Err(format!("{label} {kind}: δ relative error {delta:.2e}"));
        }
        worst.delta = worst.delta.max(delta);
        let slow_c = corrected_batch(basis, &rows);
        let (q_a, q_g) = (row_major_f32(&basis.q_a), row_major_f32(&basis.q_g));
        let fast_c = fast_corrected_batch(c, &q_a, &q_g).map_err(|e| e.to_string())?;
        let err = check(
            &format!("{label} {kind} s*/Θ"),
            &fast_c,
            &slow_c,
            F32_STATS_TOL,
        )?;
        worst.corrected = worst.corrected.max(err);
    }
    Ok(())
}

/// A synthetic f32 capture: `rows = n·t` rows, ReLU-like inputs with some all-zero columns
/// (like MNIST's border pixels), a trailing ones column when `biased`, and `sweeps` g's.
fn synthetic(
    n: usize,
    t: usize,
    d_in: usize,
    d_out: usize,
    biased: bool,
    sweeps: usize,
    seed: u64,
) -> LayerCapture<f32> {
    let mut rng = seeded_rng(seed);
    let rows = n * t;
    let d_in_bar = d_in + usize::from(biased);
    let raw = Tensor::<f32>::randn(&[rows, d_in], 0.0, 1.0, &mut rng);
    let a = layer_inputs(&raw, biased);
    let g = (0..sweeps)
        .map(|s| Tensor::<f32>::randn(&[rows, d_out], 0.0, 0.3 + s as f64, &mut rng))
        .collect();
    LayerCapture {
        layer: LayerId(0),
        a: Tensor::from_vec(a, &[rows, d_in_bar]).unwrap(),
        g,
        rows_per_example: t,
    }
}

#[test]
fn gemm_columns_into_matches_naive_loops() {
    let (rows, cols) = (7, 9);
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37) % 11) as f32 - 5.0)
        .collect();
    let at = |r: usize, c: usize| x[r * cols + c];
    for (ta, tb) in [(true, false), (false, true), (true, true), (false, false)] {
        // op(x[:, 2..6]) · op(x[:, 5..9]) where the inner dims agree.
        let (ra, rb) = (2..6, 5..9);
        let (xa, xb) = (
            MatRef::new(&x, rows, cols, ta),
            MatRef::new(&x, rows, cols, tb),
        );
        let (m, k) = if ta { (4, rows) } else { (rows, 4) };
        let n = if tb { rows } else { 4 };
        let k2 = if tb { 4 } else { rows };
        if k != k2 {
            continue;
        }
        let mut c = vec![1.0f32; m * n];
        gemm_columns_into(2.0, xa, ra.clone(), xb, rb.clone(), 0.5, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k)
                    .map(|p| {
                        let a = if ta {
                            at(p, ra.start + i)
                        } else {
                            at(i, ra.start + p)
                        };
                        let b = if tb {
                            at(j, rb.start + p)
                        } else {
                            at(p, rb.start + j)
                        };
                        a * b
                    })
                    .sum::<f32>()
                    * 2.0
                    + 0.5;
                assert_eq!(c[i * n + j], want, "ta {ta} tb {tb} ({i}, {j})");
            }
        }
    }
}

/// The blocked gram with every split (row blocks, column panels) equals the f64 gram, exactly
/// symmetric; the weighted one sums several buffers and scales.
#[test]
fn blocked_gram_matches_the_f64_gram() {
    for (rows, cols) in [(1, 1), (5, 3), (300, 257), (1030, 513), (700, 801)] {
        let x = Tensor::<f32>::randn(&[rows, cols], 0.0, 1.0, &mut seeded_rng(rows as u64));
        let w: Vec<f64> = (0..rows).map(|r| 0.5 + (r % 5) as f64).collect();
        let m = DMatrix::from_row_slice(
            rows,
            cols,
            &x.data().iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        );
        let plain = m.transpose() * &m;
        let weighted =
            m.transpose() * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(w.clone())) * &m;
        let splits = [
            GramSplit {
                row_block: 1,
                panel: 256,
            },
            GramSplit {
                row_block: 64,
                panel: 100,
            },
            GramSplit::DEFAULT,
            GramSplit::WHOLE,
        ];
        for split in splits {
            let fast = gram_with(&[x.data()], cols, None, 1.0, split);
            check(
                &format!("gram {rows}x{cols} {split:?}"),
                &fast,
                &plain,
                F32_STATS_TOL,
            )
            .unwrap();
            assert_eq!(fast, fast.transpose());
            let fast = gram_with(&[x.data(), x.data()], cols, Some(&w), 0.5, split);
            // Panel bands run as parallel tasks: the same bits on 1, 2 and 3 threads.
            for threads in [1, 2, 3] {
                let again = on_threads(threads, || {
                    gram_with(&[x.data(), x.data()], cols, Some(&w), 0.5, split)
                });
                assert!(
                    again == fast,
                    "gram {rows}x{cols} {split:?}: {threads} threads"
                );
            }
            check(
                &format!("weighted gram {rows}x{cols} {split:?}"),
                &fast,
                &weighted,
                F32_STATS_TOL,
            )
            .unwrap();
        }
    }
}

#[test]
fn synthetic_dense_and_conv_captures_match_the_f64_path() {
    let mut worst = Worst::default();
    let mut seed = 0;
    for (n, t, d_in, d_out) in [
        (1, 1, 3, 2),
        (128, 1, 300, 40),
        (9, 25, 30, 12),
        (16, 64, 200, 24),
        (3, 1100, 20, 5),
    ] {
        for biased in [true, false] {
            for sweeps in [1, 2, 10] {
                seed += 1;
                let c = synthetic(n, t, d_in, d_out, biased, sweeps, seed);
                let label =
                    format!("synthetic N={n} T={t} {d_out}x{d_in} biased={biased} sweeps={sweeps}");
                compare(&label, &c, &bases_of(&c), &mut worst).unwrap();
            }
        }
    }
    worst.report("synthetic");
}

/// One f32 forward/backward of `model` on `images` with `fisher` captures.
fn captures(
    ps: &ParamStore<f32>,
    model: &dyn Module<f32>,
    b: &dataset::Batch,
    fisher: FisherType,
) -> Vec<LayerCapture<f32>> {
    let mut tape = Tape::new(ps);
    let x = tape.input(b.images.clone());
    let logits = model.forward(&mut tape, x).unwrap();
    let loss = tape.cross_entropy(logits, &b.labels).unwrap();
    tape.backward_with(loss, fisher).unwrap().captures
}

/// The first `n` images of a data set as one batch.
fn first_batch(data: &dataset::Dataset, n: usize) -> dataset::Batch {
    data.batch(&(0..n).collect::<Vec<_>>()).unwrap()
}

/// Every layer of the MLP preset, the CNN preset and a bias-free conv net on `data`, captured
/// with each of `fishers`; each layer's bases come from its first capture.
fn check_presets(name: &str, data: &dataset::Dataset, fishers: &[FisherType]) {
    let mut worst = Worst::default();
    let bias_free = |ps: &mut ParamStore<f32>| {
        Sequential::new()
            .push(Conv2d::new(ps, "conv", 1, 6, (5, 5), (2, 2), (0, 0), false).unwrap())
            .push(Activation::Relu)
            .push(Activation::Flatten)
            .push(Linear::new(ps, "fc", 6 * 12 * 12, 10, false).unwrap())
    };
    for model_name in ["mlp", "cnn", "bias-free"] {
        let mut ps = ParamStore::<f32>::seeded(0);
        let model: Box<dyn Module<f32>> = match model_name {
            "mlp" => Box::new(Mlp::new(&mut ps, 784, 10).unwrap()),
            "cnn" => Box::new(Cnn::new(&mut ps, 10).unwrap()),
            _ => Box::new(bias_free(&mut ps)),
        };
        let mut bases: Vec<Option<[KroneckerBasis; 2]>> = vec![None; ps.layers().len()];
        for &fisher in fishers {
            // NOTE: the exact Fisher of the CNN is 10 sweeps; a smaller batch keeps the f64
            // oracle's conv2 re-scaling (10 × 0.4 GMAC per-example products) within seconds.
            let n = if model_name == "cnn" && fisher == FisherType::Exact {
                32
            } else {
                128
            };
            let b = first_batch(data, n);
            for c in captures(&ps, model.as_ref(), &b, fisher) {
                let layer = &ps.layers()[c.layer.0].name;
                let label = format!("{name} {model_name} {layer} {fisher:?} N={n}");
                let bases = bases[c.layer.0].get_or_insert_with(|| bases_of(&c));
                compare(&label, &c, bases, &mut worst).unwrap();
            }
        }
    }
    worst.report(name);
}

#[test]
fn real_fashion_mnist_captures_match_the_f64_path() {
    let data = dataset::load("fashion-mnist-mini", Split::Train, &DataSource::default()).unwrap();
    let fishers = [
        FisherType::Empirical,
        FisherType::Sampled { k: 2, seed: 5 },
        FisherType::Exact,
    ];
    check_presets("fashion-mnist-mini", &data, &fishers);
}

/// MNIST's all-zero border pixels make `A` singular: the same agreement.
#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn real_mnist_captures_match_the_f64_path() {
    support::data::dir();
    let data = dataset::load("mnist", Split::Test, &DataSource::default()).unwrap();
    check_presets("mnist", &data, &[FisherType::Sampled { k: 2, seed: 6 }]);
}

/// The check above is able to fail: a relative error of 1e-4, a conv `G` normalised by `N`
/// instead of `N·T`, an `s*`/`Θ` without the cross-location terms, and a basis handed over
/// column-major are each caught, while the correct statistics pass on the same capture.
#[test]
fn negative_controls_are_caught() {
    let c = synthetic(8, 16, 40, 6, true, 2, 99);
    let t = c.rows_per_example as f64;
    let slow = KroneckerFactors::from_capture(false, &c).unwrap();
    let fast = fast_factors(false, &c).unwrap();
    check("A", &fast.a_factor, &slow.a_factor, F32_STATS_TOL).unwrap();
    check("G", &fast.g_factor, &slow.g_factor, F32_STATS_TOL).unwrap();
    let off_by_1e4 = &fast.a_factor * (1.0 + 1e-4);
    assert!(check("A (1 + 1e-4)", &off_by_1e4, &slow.a_factor, F32_STATS_TOL).is_err());
    let per_example_g = &fast.g_factor * t;
    assert!(check("G / N", &per_example_g, &slow.g_factor, F32_STATS_TOL).is_err());

    let [basis, _] = bases_of(&c);
    let slow_c = corrected_batch(&basis, &CaptureRows::from_capture(&c).unwrap());
    let (q_a, q_g) = (row_major_f32(&basis.q_a), row_major_f32(&basis.q_g));
    let fast_c = fast_corrected_batch(&c, &q_a, &q_g).unwrap();
    check("Θ", &fast_c, &slow_c, F32_STATS_TOL).unwrap();
    let pooled = LayerCapture {
        rows_per_example: 1,
        ..c.clone()
    };
    let no_cross_terms = fast_corrected_batch(&pooled, &q_a, &q_g).unwrap() * t;
    assert!(check("Θ pooled", &no_cross_terms, &slow_c, F32_STATS_TOL).is_err());
    let column_major = |m: &DMatrix<f64>| m.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let swapped = fast_corrected_batch(&c, &column_major(&basis.q_a), &column_major(&basis.q_g));
    assert!(check("Θ in Qᵀ", &swapped.unwrap(), &slow_c, F32_STATS_TOL).is_err());
}

/// Bad input gets the f64 path's errors, and a basis of the wrong size is refused.
#[test]
fn malformed_input_is_refused() {
    let c = synthetic(3, 2, 4, 3, true, 1, 1);
    let odd = LayerCapture {
        rows_per_example: 4,
        ..c.clone()
    };
    let slow = KroneckerFactors::from_capture(false, &odd)
        .unwrap_err()
        .to_string();
    let fast = fast_factors(false, &odd).unwrap_err().to_string();
    assert_eq!(fast, slow);
    assert!(
        fast.contains("6 rows do not split into examples of 4"),
        "{fast}"
    );
    let no_sweep = LayerCapture {
        g: vec![],
        ..c.clone()
    };
    assert!(fast_factors(true, &no_sweep).is_err());
    let (q_a, q_g) = (vec![0f32; 25], vec![0f32; 9]);
    fast_corrected_batch(&c, &q_a, &q_g).unwrap();
    let err = fast_corrected_batch(&c, &q_a[..16], &q_g)
        .unwrap_err()
        .to_string();
    assert!(err.contains("need d_in'² = 25"), "{err}");
    assert!(fast_corrected_batch(&c, &q_a, &q_g[..4]).is_err());
}
