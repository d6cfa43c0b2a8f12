//! The train and evaluation splits named by `--dataset`, `--holdout` and `--train-limit`.

use super::args::TrainArgs;
use tekfac::dataset::{self, DataSource, Dataset, Split};
use tekfac::{Error, Result};

/// Train and evaluation splits of `--dataset` (searched as documented in
/// `tekfac::dataset::locate`): the test split, or under `--holdout N` the library's validation
/// split (`tekfac::dataset::load_train_eval`). The train split is then cut to `--train-limit`
/// when set.
pub fn load(args: &TrainArgs) -> Result<(Dataset, Dataset)> {
    let (train, eval) = dataset::load_train_eval(&args.dataset, args.holdout, &args.data_source())
        .map_err(holdout_error)?;
    let train = match args.train_limit {
        0 => train,
        n if n <= train.len() => train.take(n),
        n => {
            let allowed = format!("0 for all, or 1 to the {} training examples", train.len());
            return Err(super::checks::out_of_range("--train-limit", n, &allowed));
        }
    };
    Ok((train, eval))
}

/// The examples a `--holdout N` run held out, for `tekfac eval --split validation`.
pub fn held_out(args: &TrainArgs, source: &DataSource) -> Result<Dataset> {
    let train = dataset::load(&args.dataset, Split::Train, source)?;
    Ok(train
        .split_validation(args.holdout)
        .map_err(holdout_error)?
        .1)
}

/// The library's refusal of a validation split, as a refusal of `--holdout`.
fn holdout_error(e: Error) -> Error {
    match e {
        Error::InvalidArgument {
            op: "split_validation",
            msg,
        } => Error::invalid("--holdout", msg),
        other => other,
    }
}
