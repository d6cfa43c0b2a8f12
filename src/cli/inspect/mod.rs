//! `tekfac inspect`: each layer's exact Fisher block and exact damped natural gradient against
//! K-FAC, EKFAC, TKFAC and TEKFAC (and the optimizer's own running curvature), tracked while a
//! small net trains.
//!
//! ```text
//! validate flags (exit 2 before anything is written) ─▶ pool the training images (nets.rs)
//! for step in 0..=steps:
//!     every --every steps and after the last:  tekfac::train::track::probe on the probe batch
//!         ─▶ track.csv, loss.csv, one printed line
//!     train_step on the next mini-batch
//! the last probe's table and heatmaps, the charts of each measure against step (report.rs)
//! ```
//!
//! The measures, the fitted blocks and `u*` are computed by the library
//! (`tekfac::train::track`, `tekfac::curvature::probe`); this file holds the flags and the loop.

mod nets;
mod report;

use super::args::InspectArgs;
use super::say;
use nets::{Pooled, Trainer};
use std::io::Write;
use tekfac::FisherType;
use tekfac::dataset::batches::{Batches, LastBatch};
use tekfac::optim::DampingPolicy;
use tekfac::train::track::{self, ProbeBatch, TrackCsv, TrackRow};
use tekfac::train::train_step;
use tekfac::{Error, ParamStore, Result};

/// Runs `tekfac inspect`.
pub fn run(a: InspectArgs) -> Result<()> {
    let data = nets::load(&a)?;
    super::checks::inspect_against_data(&a, data.len())?;
    let mut params = ParamStore::<f64>::seeded(a.seed);
    let (model, task, what) = nets::build(&a, &mut params, &data)?;
    let mut trainer = Trainer::new(&a, &params)?;
    let (images, labels) = data.batch(&(0..a.probe_size).collect::<Vec<_>>())?;
    let fisher = match a.probe_fisher {
        super::args::ProbeFisherName::Exact => FisherType::Exact,
        super::args::ProbeFisherName::Empirical => FisherType::Empirical,
    };
    let probe = ProbeBatch {
        images,
        labels,
        task,
        fisher,
    };
    let policy = nets::policy(&a);
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    say(&format!(
        "{what} (seed {}), {} {}, lr {}, λ {}, probe: {} images of {}, {:?} F",
        a.seed,
        format!("{:?}", a.optimizer).to_lowercase(),
        a.steps,
        nets::lr(&a),
        nets::damping(&a),
        a.probe_size,
        a.dataset,
        a.probe_fisher
    ))?;
    let rows = train_and_probe(
        &a,
        &data,
        &model,
        task,
        &mut params,
        &mut trainer,
        &probe,
        &policy,
    )?;
    report::charts(&a.out, &rows)?;
    report::final_probe(&a.out, &model, &params, &probe, &rows)?;
    say(&format!(
        "track.csv, loss.csv, charts and heatmaps in {}/",
        a.out.display()
    ))?;
    Ok(())
}

/// The loop: probe at step 0, every `--every` steps and after the last; train in between.
#[allow(clippy::too_many_arguments)]
fn train_and_probe(
    a: &InspectArgs,
    data: &Pooled,
    model: &tekfac::nn::Sequential<f64>,
    task: tekfac::train::Task,
    params: &mut ParamStore<f64>,
    trainer: &mut Trainer,
    probe: &ProbeBatch,
    policy: &DampingPolicy,
) -> Result<Vec<TrackRow>> {
    let mut csv = TrackCsv::create(&a.out.join("track.csv"))?;
    let mut losses = LossCsv::create(&a.out.join("loss.csv"))?;
    let mut all = Vec::new();
    let (mut epoch, mut order, mut next) = (0, Vec::new(), 0);
    let mut window = (0.0, 0usize);
    for step in 0..=a.steps {
        if step % a.every == 0 || step == a.steps {
            let (probe_loss, rows) =
                track::probe(model, params, probe, policy, trainer.running(), step)?;
            csv.append(&rows)?;
            let train_loss = (window.1 > 0).then(|| window.0 / window.1 as f64);
            losses.append(step, train_loss, probe_loss)?;
            report::progress(step, train_loss, probe_loss, &rows)?;
            all.extend(rows);
            window = (0.0, 0);
        }
        if step == a.steps {
            break;
        }
        if next == order.len() {
            let batches = Batches::new(data.len(), a.batch_size, a.seed, epoch, LastBatch::Drop)?;
            order = batches.iter().map(<[usize]>::to_vec).collect();
            (epoch, next) = (epoch + 1, 0);
        }
        let (x, labels) = data.batch(&order[next])?;
        next += 1;
        let stats = train_step(model, task, params, trainer.optimizer(), x, &labels, step)?;
        window = (window.0 + stats.loss, window.1 + 1);
    }
    Ok(all)
}

/// loss.csv: `step,train_loss,probe_loss` at every probe (`train_loss` is the mean training
/// loss of the steps since the previous probe, empty at step 0).
struct LossCsv {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl LossCsv {
    fn create(path: &std::path::Path) -> Result<Self> {
        let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        writeln!(file, "step,train_loss,probe_loss").map_err(|e| Error::io(path, e))?;
        Ok(LossCsv {
            path: path.to_path_buf(),
            file,
        })
    }

    fn append(&mut self, step: u64, train: Option<f64>, probe: f64) -> Result<()> {
        let train = train.map_or(String::new(), |l| format!("{l:.6}"));
        writeln!(self.file, "{step},{train},{probe:.6}").map_err(|e| Error::io(&self.path, e))
    }
}
