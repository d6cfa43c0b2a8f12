//! `tekfac eval`: the loss and accuracy of a run's checkpoint on a split.

use super::args::{EvalArgs, SplitName, TrainArgs};
use super::{data, models, run_dir, say};
use tekfac::dataset::{self, DataSource, Dataset, Split};
use tekfac::train::{Checkpoints, Task, evaluate};
use tekfac::{Error, ParamStore, Result};

/// Loads the run's config and the weights of its newest checkpoint, evaluates, prints one line.
pub fn run(a: EvalArgs) -> Result<()> {
    let args = run_dir::load_config(&a.run)?;
    tekfac::set_threads(0);
    let source = DataSource {
        dir: a.data_dir.clone().or(args.data_dir.clone()),
        ..args.data_source()
    };
    let (split, data) = match a.split {
        SplitName::Train => (
            "train",
            dataset::load(&args.dataset, Split::Train, &source)?,
        ),
        SplitName::Test => ("test", dataset::load(&args.dataset, Split::Test, &source)?),
        SplitName::Validation => ("validation", held_out(&args, &source)?),
    };
    if data.is_empty() {
        return Err(Error::Data(format!(
            "the {split} split of {} holds no examples",
            args.dataset
        )));
    }
    let mut params = ParamStore::<f32>::seeded(args.seed);
    let (model, task) = models::build(&args, &mut params, data.pixels(), data.classes())?;
    let Some(checkpoint) = Checkpoints::new(&a.run).latest()? else {
        return Err(Error::Checkpoint(format!(
            "{} holds no checkpoint yet (its run stopped before the first one)",
            a.run.display()
        )));
    };
    checkpoint.load_weights(&mut params)?;
    let (loss, acc) = evaluate(model.as_ref(), task, &params, data.eval_batches(1000))?;
    if !loss.is_finite() {
        return Err(Error::NonFinite {
            what: format!("the {split} loss of the weights in {}", a.run.display()),
            step: None,
        });
    }
    let line = match task {
        Task::Classify => format!(
            "{} {split}: loss {loss:.4}, accuracy {:.2}% ({} examples)",
            args.dataset,
            100.0 * acc,
            data.len()
        ),
        Task::Autoencode => format!(
            "{} {split}: reconstruction loss {loss:.4} ({} examples)",
            args.dataset,
            data.len()
        ),
    };
    say(&line)
}

/// The examples a `--holdout` run held out (the library's validation split).
fn held_out(args: &TrainArgs, source: &DataSource) -> Result<Dataset> {
    if args.holdout == 0 {
        return Err(Error::Data(
            "--split validation: this run was trained without --holdout, so it has no \
             validation examples (use --split test)"
                .into(),
        ));
    }
    data::held_out(args, source)
}
