//! Times loading and decoding the full MNIST training set (gunzip, validate, SHA-256, u8 → f32),
//! and assembling one epoch of batches from it.
//!
//! Run: TEKFAC_DATA_DIR=../shared/data cargo bench --bench data
//! (or with the files in ./data/mnist/; `tekfac download mnist` puts them there).

use std::time::{Duration, Instant};
use tekfac::Result;
use tekfac::dataset::{DataSource, LastBatch, Mnist, Split};

const REPEATS: usize = 5;

/// Runs `f` `REPEATS` times and returns the fastest time and the last result.
fn best_of<T>(mut f: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..REPEATS {
        let start = Instant::now();
        let out = f()?;
        best = best.min(start.elapsed());
        last = Some(out);
    }
    // NOTE: REPEATS > 0, so the loop ran and `last` is set.
    Ok((best, last.expect("at least one repeat")))
}

fn main() -> Result<()> {
    let verified = DataSource::default();
    let unverified = DataSource {
        verify: false,
        ..DataSource::default()
    };

    let (with_check, train) = best_of(|| Mnist::load(Split::Train, &verified))?;
    let (without_check, _) = best_of(|| Mnist::load(Split::Train, &unverified))?;
    println!(
        "MNIST train: {} images of {}x{}",
        train.len(),
        train.rows(),
        train.cols()
    );
    println!(
        "load + decode, SHA-256 verified : {:7.1} ms (best of {REPEATS})",
        ms(with_check)
    );
    println!(
        "load + decode, no verification  : {:7.1} ms (best of {REPEATS})",
        ms(without_check)
    );

    let (epoch, batches) = best_of(|| {
        let mut count = 0;
        for batch in train.batches(128, 0, 0, LastBatch::Keep)? {
            count += batch.labels.len();
        }
        Ok(count)
    })?;
    let per_batch = epoch.as_secs_f64() * 1e6 / train.len().div_ceil(128) as f64;
    println!(
        "one epoch of batch-128 assembly  : {:7.1} ms ({per_batch:.1} µs per batch, {batches} examples)",
        ms(epoch)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
