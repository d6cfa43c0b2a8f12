//! Loading the train and test splits named by `--dataset`, and batching them for evaluation.

use super::args::TrainArgs;
use tekfac::dataset::{self, Dataset, Split};
use tekfac::{Error, Result, Tensor};

/// Train and evaluation splits of `--dataset` (searched as documented in
/// `tekfac::dataset::locate`): the test split, or under `--holdout N` the last `N` training
/// examples (the same for every seed). The train split is then cut to `--train-limit` when set.
pub fn load(args: &TrainArgs) -> Result<(Dataset, Dataset)> {
    let source = args.data_source();
    let train = dataset::load(&args.dataset, Split::Train, &source)?;
    let (train, test) = if args.holdout > 0 {
        hold_out(&train, args.holdout)?
    } else {
        let test = dataset::load(&args.dataset, Split::Test, &source)?;
        (train, test)
    };
    let train = match args.train_limit {
        0 => train,
        n if n <= train.len() => train.take(n),
        n => {
            let allowed = format!("0 for all, or 1 to the {} training examples", train.len());
            return Err(super::checks::out_of_range("--train-limit", n, &allowed));
        }
    };
    Ok((train, test))
}

/// `(train, validation)` for `--holdout N`: the training split without its last `N` examples,
/// and those `N`. Errors when nothing would be left to train on.
pub fn hold_out(train: &Dataset, holdout: usize) -> Result<(Dataset, Dataset)> {
    let n = train.len();
    if holdout >= n {
        return Err(Error::Data(format!(
            "--holdout {holdout} leaves nothing to train on: {} has {n} training examples",
            train.name()
        )));
    }
    Ok((train.subset(0..n - holdout)?, train.subset(n - holdout..n)?))
}

/// The whole split in order, `size` examples at a time.
pub fn eval_batches(
    data: &Dataset,
    size: usize,
) -> impl Iterator<Item = Result<(Tensor<f32>, Vec<usize>)>> + '_ {
    let indices: Vec<usize> = (0..data.len()).collect();
    let chunks: Vec<Vec<usize>> = indices.chunks(size.max(1)).map(<[usize]>::to_vec).collect();
    chunks
        .into_iter()
        .map(move |idx| data.batch(&idx).map(|b| (b.images, b.labels)))
}
