//! `tekfac inspect`: each layer's exact Fisher block next to its four Kronecker-factored
//! approximations, on a small MLP and one batch of real images.
//!
//! ```text
//! images [N, 1, 28, 28] ─ 4×4 average pool ─▶ [N, 1, 7, 7] ─▶ small net ─▶ cross-entropy
//!     --model mlp:  flatten 49, fc1 49→H, ReLU, fc2 H→10
//!     --model conv: conv1 3×3 1→4 (5×5 out), ReLU, flatten 100, fc1 100→10
//! backward_with(Exact | Empirical) ─▶ one LayerCapture per layer
//! per layer:  F = exact_fisher(capture)                          [d, d], d = d_out·d_in'
//!             F̂ = CurvatureBlock(variant, decay 0): observe → refresh → rescale → to_dense
//! ```
//!
//! With decay 0 every block is estimated from exactly this batch, so the comparison is
//! exact: EKFAC's `s*` is `diag(Qᵀ F Q)` in K-FAC's basis `Q`, the best diagonal there, hence
//! `‖F − EKFAC‖ ≤ ‖F − K-FAC‖`; the same holds for TEKFAC against TKFAC in TKFAC's basis.
//! Trace-restricted variants match `tr F` exactly on dense layers (the property that defines
//! δ). On a conv layer δ sums per-location terms and so ignores the cross-location part of
//! `tr F` (KFC's spatially uncorrelated derivatives), so TKFAC's trace is off there, while the
//! corrected diagonals `s*`, `Θ` always sum to `tr F` (they are `diag(Qᵀ F Q)`).

use super::args::{FisherName, InspectArgs, InspectModel};
use super::charts;
use nalgebra::DMatrix;
use tekfac::curvature::exact::exact_fisher;
use tekfac::curvature::{CurvatureBlock, Variant};
use tekfac::dataset::{self, DataSource, Split};
use tekfac::nn::{Activation, Conv2d, Linear, Module};
use tekfac::{Error, FisherType, LayerCapture, ParamStore, Result, Tape, Tensor, Var};

/// Side of the pooled images (28 / 4).
const SIDE: usize = 7;

/// The small nets of `inspect`, in f64 so the comparison is free of rounding.
enum SmallNet {
    /// `49 → hidden → classes` with ReLU.
    Mlp { fc1: Linear, fc2: Linear },
    /// conv 3×3 1→4 (7×7 → 5×5), ReLU, flatten 100, dense 100 → classes.
    Conv { conv1: Conv2d, fc1: Linear },
}

impl SmallNet {
    fn new(ps: &mut ParamStore<f64>, a: &InspectArgs, classes: usize) -> Result<Self> {
        Ok(match a.model {
            InspectModel::Mlp => SmallNet::Mlp {
                fc1: Linear::new(ps, "fc1", SIDE * SIDE, a.hidden, true)?,
                fc2: Linear::new(ps, "fc2", a.hidden, classes, true)?,
            },
            InspectModel::Conv => SmallNet::Conv {
                conv1: Conv2d::new(ps, "conv1", 1, 4, (3, 3), (1, 1), (0, 0), true)?,
                fc1: Linear::new(ps, "fc1", 4 * 5 * 5, classes, true)?,
            },
        })
    }

    fn describe(&self, a: &InspectArgs, classes: usize) -> String {
        match self {
            SmallNet::Mlp { .. } => format!("MLP {}-{}-{classes}", SIDE * SIDE, a.hidden),
            SmallNet::Conv { .. } => format!("conv 3×3 1→4, ReLU, dense 100→{classes}"),
        }
    }
}

impl Module<f64> for SmallNet {
    fn forward(&self, tape: &mut Tape<'_, f64>, x: Var) -> Result<Var> {
        match self {
            SmallNet::Mlp { fc1, fc2 } => {
                let h = Activation::Flatten.forward(tape, x)?;
                let h = fc1.forward(tape, h)?;
                let h = tape.relu(h);
                fc2.forward(tape, h)
            }
            SmallNet::Conv { conv1, fc1 } => {
                let h = conv1.forward(tape, x)?;
                let h = tape.relu(h);
                let h = Activation::Flatten.forward(tape, h)?;
                fc1.forward(tape, h)
            }
        }
    }
}

/// Measures, prints the tables and writes one heatmap per layer.
pub fn run(a: InspectArgs) -> Result<()> {
    if a.batch_size == 0 || a.hidden == 0 {
        return Err(Error::invalid(
            "inspect",
            "--batch-size and --hidden must be positive",
        ));
    }
    let (x, labels, classes) = load_batch(&a)?;
    let mut params = ParamStore::<f64>::seeded(a.seed);
    let model = SmallNet::new(&mut params, &a, classes)?;
    let fisher = match a.fisher {
        FisherName::Empirical => FisherType::Empirical,
        FisherName::Exact => FisherType::Exact,
        FisherName::Sampled => {
            return Err(Error::invalid(
                "inspect",
                "--fisher must be exact or empirical",
            ));
        }
    };
    let mut tape = Tape::new(&params);
    let xv = tape.input(x);
    let logits = model.forward(&mut tape, xv)?;
    let loss = tape.cross_entropy(logits, &labels)?;
    let pass = tape.backward_with(loss, fisher)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    println!(
        "{} (seed {}), {} images of {} pooled to {SIDE}×{SIDE}, {:?} Fisher",
        model.describe(&a, classes),
        a.seed,
        labels.len(),
        a.dataset,
        a.fisher
    );
    let mut captures: Vec<&LayerCapture<f64>> = pass.captures.iter().collect();
    captures.sort_by_key(|c| c.layer.0);
    for capture in captures {
        inspect_layer(&params, capture, &a)?;
    }
    println!("heatmaps in {}/", a.out.display());
    Ok(())
}

/// The first `batch_size` training images, 4×4 average-pooled and flattened, with labels.
fn load_batch(a: &InspectArgs) -> Result<(Tensor<f64>, Vec<usize>, usize)> {
    let source = DataSource {
        dir: a.data_dir.clone(),
        classes: a.classes,
        ..DataSource::default()
    };
    let data = dataset::load(&a.dataset, Split::Train, &source)?;
    if (data.rows(), data.cols()) != (28, 28) {
        return Err(Error::Data(format!(
            "inspect expects 28×28 images, {} has {}×{}",
            a.dataset,
            data.rows(),
            data.cols()
        )));
    }
    let n = a.batch_size.min(data.len());
    let indices: Vec<usize> = (0..n).collect();
    let batch = data.batch(&indices)?;
    let pooled = pool(batch.images.data(), n);
    Ok((
        Tensor::from_vec(pooled, &[n, 1, SIDE, SIDE])?,
        batch.labels,
        data.classes(),
    ))
}

/// `[n, 1, 28, 28]` → `[n, 1, 7, 7]` (as a flat vec) by averaging each 4×4 square.
fn pool(images: &[f32], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * SIDE * SIDE];
    for (i, o) in out.iter_mut().enumerate() {
        let (img, r, c) = (i / (SIDE * SIDE), (i / SIDE) % SIDE, i % SIDE);
        let px = |y: usize, x: usize| images[img * 784 + (4 * r + y) * 28 + 4 * c + x] as f64;
        *o = (0..4)
            .flat_map(|y| (0..4).map(move |x| (y, x)))
            .map(|(y, x)| px(y, x))
            .sum::<f64>()
            / 16.0;
    }
    out
}

/// One approximation of one block: its dense matrix and its distance to the exact block.
struct Approximation {
    variant: Variant,
    dense: DMatrix<f64>,
    error: f64,
}

/// Builds a variant's block from this capture alone (decay 0) and densifies it.
fn approximate(
    variant: Variant,
    info: &tekfac::LayerInfo,
    capture: &LayerCapture<f64>,
    exact: &DMatrix<f64>,
) -> Result<Approximation> {
    let mut block = CurvatureBlock::new(variant, info, 0.0);
    block.observe(capture)?;
    block.refresh()?;
    block.rescale(capture)?;
    let dense = block.to_dense()?;
    let error = (exact - &dense).norm() / exact.norm();
    Ok(Approximation {
        variant,
        dense,
        error,
    })
}

/// Prints the table of one layer and writes its heatmap.
fn inspect_layer(
    params: &ParamStore<f64>,
    capture: &LayerCapture<f64>,
    a: &InspectArgs,
) -> Result<()> {
    let info = params.layer(capture.layer);
    let exact = exact_fisher(capture)?;
    let approx: Vec<Approximation> = Variant::ALL
        .iter()
        .map(|&v| approximate(v, info, capture, &exact))
        .collect::<Result<_>>()?;
    println!(
        "\nlayer {}: W̄ [{} × {}], block {} × {}, tr F = {:.6e}",
        info.name,
        info.d_out,
        info.d_in_bar(),
        exact.nrows(),
        exact.ncols(),
        exact.trace()
    );
    // NOTE: a literal header, because F̂ has a zero-width combining accent that `{:>n}` counts.
    println!("  approx         ‖F−F̂‖/‖F‖           tr F̂  tr F̂/tr F");
    for p in &approx {
        let trace = p.dense.trace();
        println!(
            "  {:<8} {:>16.6} {:>14.6e} {:>10.4}",
            p.variant.name(),
            p.error,
            trace,
            trace / exact.trace()
        );
    }
    let path = a.out.join(format!("fisher_{}.png", info.name));
    let mut panels = vec![("exact F", &exact)];
    panels.extend(approx.iter().map(|p| (p.variant.name(), &p.dense)));
    let title = format!(
        "layer {}: exact Fisher block vs. approximations (signed log scale)",
        info.name
    );
    charts::write_heatmaps(&path, &title, &panels)
}
