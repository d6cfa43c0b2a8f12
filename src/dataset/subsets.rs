//! Smaller data sets cut from a `Dataset`: a range, the first `n`, chosen indices, and a seeded
//! train/validation split. Each copies the examples it keeps, so the result owns its data.

use super::batches::permutation;
use super::labeled::Dataset;
use crate::error::{Error, Result};
use std::ops::Range;

impl Dataset {
    /// The examples at `indices`, in that order (repeats allowed); errors on an index past the end.
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        let p = self.pixels();
        let mut images = Vec::with_capacity(indices.len() * p);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let Some(image) = self.image(i) else {
                return Err(self.out_of_range("select", i));
            };
            images.extend_from_slice(image);
            labels.push(self.labels()[i]);
        }
        Ok(self.with_parts(images, labels))
    }

    /// The examples in `range`; errors when it does not lie within `0..len()`.
    ///
    /// ```
    /// # fn main() -> tekfac::Result<()> {
    /// use tekfac::dataset::{FashionMnist, DataSource, Split};
    /// let test = FashionMnist::load_mini(Split::Test, &DataSource::default())?;
    /// let small = test.subset(100..164)?;
    /// assert_eq!(small.len(), 64);
    /// assert_eq!(small.labels()[0], test.labels()[100]);
    /// # Ok(()) }
    /// ```
    pub fn subset(&self, range: Range<usize>) -> Result<Dataset> {
        if range.start > range.end || range.end > self.len() {
            return Err(Error::Data(format!(
                "{}: subset {range:?} is not within 0..{}",
                self.name(),
                self.len()
            )));
        }
        let p = self.pixels();
        let images = self.images()[range.start * p..range.end * p].to_vec();
        Ok(self.with_parts(images, self.labels()[range].to_vec()))
    }

    /// The first `n` examples (all of them when `n >= len()`).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let p = self.pixels();
        self.with_parts(self.images()[..n * p].to_vec(), self.labels()[..n].to_vec())
    }

    /// Splits off `validation` examples drawn at random with `seed`: returns
    /// `(train, validation)`, each keeping the original order of its examples. Errors when
    /// `validation > len()`.
    pub fn split_validation(&self, validation: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        if validation > self.len() {
            return Err(Error::Data(format!(
                "{}: cannot hold out {validation} of {} examples for validation",
                self.name(),
                self.len()
            )));
        }
        let order = permutation(self.len(), seed, 0);
        let (mut held, mut kept) = (order[..validation].to_vec(), order[validation..].to_vec());
        held.sort_unstable();
        kept.sort_unstable();
        Ok((self.select(&kept)?, self.select(&held)?))
    }
}
