//! Tracking, while a net trains, how far each approximation's step is from the exact natural
//! gradient (`tekfac inspect --steps N --every K`).
//!
//! At each probe — a fixed batch and the current weights — and for every dense or conv layer:
//!
//! ```text
//! F        the exact Fisher block of the probe batch (type-2, or empirical)   curvature::exact
//! ∇        the probe batch's gradient [∂L/∂W | ∂L/∂b], [d_out, d_in']
//! u*       (F + λI)⁻¹ ∇, λ the run's damping              probe::exact_natural_gradient
//! fitted   K-FAC, EKFAC, TKFAC, TEKFAC fitted to the probe batch alone (decay 0, fresh basis),
//!          each stepping with its own damping rule:  policy.per_block(variant, fitted)
//! running  the optimizer's own blocks (EMA statistics, the basis of its last refresh) and its
//!          own damping, applied to the same ∇
//! ```
//!
//! Each (layer, method) gives the measures of [`probe::Agreement`]: `fisher_error =
//! ‖F − F̂‖/‖F‖`, `update_cosine = cos(û, u*)`, `update_error = ‖û − u*‖/‖u*‖` and
//! `length_ratio = ‖û‖/‖u*‖`, where `û` is the method's damped step for `∇` (before momentum,
//! clipping and the learning rate).
//!
//! What to expect: Lemma 1 makes EKFAC's and TEKFAC's `fisher_error` no larger than K-FAC's and
//! TKFAC's at every probe (the corrected diagonal is the best one in the same basis). Nothing
//! makes the update measures follow that order: `û` also depends on the damping, which differs
//! between the methods' own rules (`DampingRule::Own`: factored for K-FAC/TKFAC, a constant `λ`
//! for EKFAC/TEKFAC). With `DampingRule::Additive` every method inverts `F̂ + λI`, and when
//! `F̂ = F` (one example, or a deep linear net with MSE) `û = u*`.

use super::{Task, record_loss};
use crate::autograd::{BackwardOutput, FisherType, Gradients, Tape};
use crate::curvature::exact::exact_fisher;
use crate::curvature::probe::{self, Agreement};
use crate::curvature::{CurvatureBlock, Variant};
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::optim::{DampingPolicy, NaturalGradient};
use crate::params::{LayerInfo, ParamStore};
use crate::tensor::Tensor;
use nalgebra::DMatrix;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A curvature whose step is measured: one of the four fitted to the probe batch, or the
/// optimizer's running one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The variant's block fitted to the probe batch alone (decay 0, fresh basis).
    Fitted(Variant),
    /// The training optimizer's own blocks, as they stand at the probe.
    Running,
}

impl Method {
    /// `kfac`, `ekfac`, `tkfac`, `tekfac` or `running` (the `method` column of track.csv).
    pub fn name(self) -> &'static str {
        match self {
            Method::Fitted(v) => v.name(),
            Method::Running => "running",
        }
    }
}

/// One row of track.csv: one probe, one layer, one method.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackRow {
    /// Training steps taken before the probe.
    pub step: u64,
    /// The layer's name.
    pub layer: String,
    /// Whose step was measured.
    pub method: Method,
    /// The measures.
    pub agreement: Agreement,
}

/// The fixed batch a run is probed on.
#[derive(Clone, Debug)]
pub struct ProbeBatch {
    /// Model input, `[P, …]`.
    pub images: Tensor<f64>,
    /// Labels (classification; ignored by autoencoders).
    pub labels: Vec<usize>,
    /// What the model is trained to do (decides the loss).
    pub task: Task,
    /// The Fisher `F` is exact for: `Exact` (type-2, the expectation over the model's labels)
    /// or `Empirical` (the batch's labels).
    pub fisher: FisherType,
}

impl ProbeBatch {
    /// One forward and backward pass of `model` on the batch: the loss, the gradient and the
    /// captures of `F`.
    pub fn backward(
        &self,
        model: &dyn Module<f64>,
        params: &ParamStore<f64>,
    ) -> Result<BackwardOutput<f64>> {
        if !matches!(self.fisher, FisherType::Exact | FisherType::Empirical) {
            let msg = format!(
                "the probe Fisher must be Exact or Empirical, not {:?}",
                self.fisher
            );
            return Err(Error::invalid("track::ProbeBatch", msg));
        }
        let mut tape = Tape::new(params);
        let x = self.images.clone();
        let (_, loss) = record_loss(&mut tape, model, self.task, x, &self.labels)?;
        tape.backward_with(loss, self.fisher)
    }
}

/// Probes `model` at its current weights: [`ProbeBatch::backward`], then [`probe_pass`].
/// Returns the probe batch's loss and the rows.
pub fn probe(
    model: &dyn Module<f64>,
    params: &ParamStore<f64>,
    batch: &ProbeBatch,
    policy: &DampingPolicy,
    running: Option<&NaturalGradient<f64>>,
    step: u64,
) -> Result<(f64, Vec<TrackRow>)> {
    let pass = batch.backward(model, params)?;
    let rows = probe_pass(params, &pass, policy, running, step)?;
    Ok((pass.loss, rows))
}

/// The rows of one probe from a backward pass that carries the captures of `F` and the
/// gradient: per layer (in layer order), the four fitted methods, then `running` when the
/// optimizer has a basis for that layer. `policy` damps the fitted methods, and its λ, which
/// must be fixed (`Some`), is the λ of `u*`; `running` keeps its own policy.
pub fn probe_pass(
    params: &ParamStore<f64>,
    pass: &BackwardOutput<f64>,
    policy: &DampingPolicy,
    running: Option<&NaturalGradient<f64>>,
    step: u64,
) -> Result<Vec<TrackRow>> {
    let lambda = policy.lambda.ok_or_else(|| {
        let msg = "the probe needs a fixed λ (DampingPolicy::lambda = Some), the λ of u*";
        Error::invalid("track::probe_pass", msg)
    })?;
    let mut captures: Vec<_> = pass.captures.iter().collect();
    captures.sort_by_key(|c| c.layer.0);
    let infos: Vec<&LayerInfo> = captures.iter().map(|c| params.layer(c.layer)).collect();
    let exact: Vec<DMatrix<f64>> = captures
        .iter()
        .map(|c| exact_fisher(c))
        .collect::<Result<_>>()?;
    let grads: Vec<DMatrix<f64>> = infos
        .iter()
        .map(|info| layer_gradient(info, params, &pass.grads))
        .collect::<Result<_>>()?;
    let targets: Vec<DMatrix<f64>> = exact
        .iter()
        .zip(&grads)
        .map(|(f, g)| probe::exact_natural_gradient(f, g, lambda))
        .collect::<Result<_>>()?;
    let mut per_layer: Vec<Vec<TrackRow>> = vec![Vec::new(); captures.len()];
    for variant in Variant::ALL {
        let fitted: Vec<CurvatureBlock> = captures
            .iter()
            .zip(&infos)
            .map(|(c, info)| probe::fit(variant, info, c))
            .collect::<Result<_>>()?;
        let dampings = policy.per_block(variant, &fitted);
        for (l, (block, d)) in fitted.iter().zip(&dampings).enumerate() {
            let agreement = Agreement::of(block, d, &exact[l], &targets[l], &grads[l])?;
            per_layer[l].push(row(step, infos[l], Method::Fitted(variant), agreement));
        }
    }
    if let Some(opt) = running {
        let blocks = opt.blocks();
        let dampings = opt.dampings();
        for (l, c) in captures.iter().enumerate() {
            let (block, d) = (&blocks[c.layer.0], &dampings[c.layer.0]);
            if block.basis().is_some() {
                let agreement = Agreement::of(block, d, &exact[l], &targets[l], &grads[l])?;
                per_layer[l].push(row(step, infos[l], Method::Running, agreement));
            }
        }
    }
    Ok(per_layer.into_iter().flatten().collect())
}

fn row(step: u64, info: &LayerInfo, method: Method, agreement: Agreement) -> TrackRow {
    TrackRow {
        step,
        layer: info.name.clone(),
        method,
        agreement,
    }
}

/// A layer's gradient as its `[d_out, d_in']` block matrix `[∂L/∂W | ∂L/∂b]` (a conv weight
/// `[C_out, C_in, kh, kw]` read as `[C_out, C_in·kh·kw]`).
pub fn layer_gradient(
    info: &LayerInfo,
    params: &ParamStore<f64>,
    grads: &Gradients<f64>,
) -> Result<DMatrix<f64>> {
    let w = grads.require(info.weight, params)?;
    let b = info.bias.map(|b| grads.require(b, params)).transpose()?;
    Ok(DMatrix::from_fn(info.d_out, info.d_in_bar(), |o, i| {
        match (i < info.d_in, b) {
            (true, _) => w.data()[o * info.d_in + i],
            (false, Some(b)) => b.data()[o],
            // NOTE: d_in_bar() = d_in without a bias, so column d_in exists only with one.
            (false, None) => unreachable!("a bias column without a bias"),
        }
    }))
}

/// The header of track.csv.
pub const TRACK_COLUMNS: &str =
    "step,layer,method,fisher_error,update_cosine,update_error,length_ratio";

/// track.csv: [`TRACK_COLUMNS`], one line per [`TrackRow`], written as the run goes.
pub struct TrackCsv {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl TrackCsv {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut csv = TrackCsv {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(file),
        };
        csv.line(TRACK_COLUMNS)?;
        Ok(csv)
    }

    /// Appends the rows and flushes, so the file is whole after every probe.
    pub fn append(&mut self, rows: &[TrackRow]) -> Result<()> {
        for r in rows {
            let a = &r.agreement;
            let line = format!(
                "{},{},{},{:.9e},{:.12},{:.9e},{:.9e}",
                r.step,
                r.layer,
                r.method.name(),
                a.fisher_error,
                a.update_cosine,
                a.update_error,
                a.length_ratio
            );
            self.line(&line)?;
        }
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn line(&mut self, line: &str) -> Result<()> {
        writeln!(self.file, "{line}").map_err(|e| Error::io(&self.path, e))
    }
}
