//! Loading the train and test splits named by `--dataset`, and batching them for evaluation.

use super::args::TrainArgs;
use tekfac::dataset::{self, DataSource, Dataset, Split};
use tekfac::{Result, Tensor};

/// Train and test splits of `--dataset` (searched as documented in `tekfac::dataset::locate`),
/// the train split cut to `--train-limit` when set.
pub fn load(args: &TrainArgs) -> Result<(Dataset, Dataset)> {
    let source = DataSource {
        dir: args.data_dir.clone(),
        verify: !args.no_verify,
    };
    let train = dataset::load(&args.dataset, Split::Train, &source)?;
    let test = dataset::load(&args.dataset, Split::Test, &source)?;
    let train = if args.train_limit > 0 {
        train.take(args.train_limit)
    } else {
        train
    };
    Ok((train, test))
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
