//! `tekfac eval`: the loss and accuracy of a run's checkpoint on a split.

use super::args::{EvalArgs, SplitName};
use super::{data, models, run_dir};
use tekfac::checkpoint::load_params;
use tekfac::dataset::{self, DataSource, Split};
use tekfac::train::{Task, evaluate};
use tekfac::{ParamStore, Result};

/// Loads the run's config and weights, evaluates, prints one line.
pub fn run(a: EvalArgs) -> Result<()> {
    let args = run_dir::load_config(&a.run)?;
    tekfac::set_threads(args.threads);
    let source = DataSource {
        dir: a.data_dir.clone().or(args.data_dir.clone()),
        verify: !args.no_verify,
    };
    let split = match a.split {
        SplitName::Train => Split::Train,
        SplitName::Test => Split::Test,
    };
    let data = dataset::load(&args.dataset, split, &source)?;
    let mut params = ParamStore::<f32>::seeded(args.seed);
    let (model, task) = models::build(args.model, &mut params, data.pixels(), data.classes())?;
    load_params(&a.run.join("weights.safetensors"), &mut params)?;
    let (loss, acc) = evaluate(
        model.as_ref(),
        task,
        &params,
        data::eval_batches(&data, 1000),
    )?;
    match task {
        Task::Classify => println!(
            "{} {split}: loss {loss:.4}, accuracy {:.2}% ({} examples)",
            args.dataset,
            100.0 * acc,
            data.len()
        ),
        Task::Autoencode => println!(
            "{} {split}: reconstruction loss {loss:.4} ({} examples)",
            args.dataset,
            data.len()
        ),
    }
    Ok(())
}
