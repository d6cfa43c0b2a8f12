//! Smaller data sets cut from a `Dataset`: a range, the first `n`, chosen indices, and the
//! train/validation split. Each copies the examples it keeps, so the result owns its data.

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

    /// The validation split of a training set: `(train, validation)`, all but the last `n`
    /// examples and those `n`, each in its original order. The split depends on nothing but
    /// `n` (as Keras's `validation_split`, which also takes the last examples), so every seed
    /// and every optimizer is scored on the same examples. Errors unless `0 < n < len()`.
    ///
    /// ```
    /// # fn main() -> tekfac::Result<()> {
    /// use tekfac::dataset::{FashionMnist, DataSource, Split};
    /// let data = FashionMnist::load_mini(Split::Train, &DataSource::default())?;
    /// let (train, validation) = data.split_validation(1000)?;
    /// assert_eq!((train.len(), validation.len()), (data.len() - 1000, 1000));
    /// assert_eq!(validation.image(0), data.image(data.len() - 1000));
    /// # Ok(()) }
    /// ```
    pub fn split_validation(&self, n: usize) -> Result<(Dataset, Dataset)> {
        let len = self.len();
        if n == 0 || n >= len {
            let why = match n {
                0 => "holds no examples".to_string(),
                _ => format!(
                    "leaves nothing to train on: {} has {len} training examples",
                    self.name()
                ),
            };
            return Err(Error::invalid(
                "split_validation",
                format!("a validation split of {n} {why}"),
            ));
        }
        Ok((self.subset(0..len - n)?, self.subset(len - n..len)?))
    }
}
