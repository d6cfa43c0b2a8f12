//! Seeded shuffling into minibatches (and the in-order batches of an evaluation).
//!
//! Epoch `e` visits the examples in the order of a Fisher–Yates permutation drawn from
//! `seeded_rng(seed ⊕ e·φ)` (φ = 0x9E37_79B9_7F4A_7C15), cut into batches of `batch_size`.
//! The draw is sequential and touches no thread pool, so a seed gives the same order on any
//! machine and any thread count; different epochs give independent orders.

use super::labeled::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::tensor::{Tensor, seeded_rng};
use rand::RngExt;

/// What to do with the last, short batch of an epoch when `batch_size` does not divide `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LastBatch {
    /// Yield it, smaller than the others.
    #[default]
    Keep,
    /// Skip it, so every batch has exactly `batch_size` examples.
    Drop,
}

/// A random permutation of `0..n` for `epoch` of a run seeded with `seed`.
pub fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = seeded_rng(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order
}

/// The batches of one epoch as slices of example indices.
///
/// ```
/// use tekfac::dataset::{Batches, LastBatch};
/// let batches = Batches::new(10, 4, 7, 0, LastBatch::Keep).unwrap();
/// let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
/// assert_eq!(sizes, vec![4, 4, 2]);
/// let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
/// seen.sort();
/// assert_eq!(seen, (0..10).collect::<Vec<_>>());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batches {
    order: Vec<usize>,
    batch_size: usize,
    last: LastBatch,
}

impl Batches {
    /// Shuffles `0..n` for `epoch` with `seed`; errors when `batch_size` is 0.
    pub fn new(
        n: usize,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        last: LastBatch,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::Data(
                "batches: batch size must be at least 1".to_string(),
            ));
        }
        Ok(Batches {
            order: permutation(n, seed, epoch),
            batch_size,
            last,
        })
    }

    /// The whole epoch's order (a permutation of `0..n`).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The examples this epoch actually visits: all of them, or all but the short tail.
    fn visited(&self) -> &[usize] {
        match self.last {
            LastBatch::Keep => &self.order,
            LastBatch::Drop => &self.order[..self.order.len() / self.batch_size * self.batch_size],
        }
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.visited().len().div_ceil(self.batch_size)
    }

    /// True when the epoch has no batch (no examples, or fewer than one batch with `Drop`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batches, in order.
    pub fn iter(&self) -> std::slice::Chunks<'_, usize> {
        self.visited().chunks(self.batch_size)
    }
}

impl<'a> IntoIterator for &'a Batches {
    type Item = &'a [usize];
    type IntoIter = std::slice::Chunks<'a, usize>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One epoch of [`Batch`]es of a [`Dataset`] (see [`Dataset::batches`]).
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    data: &'a Dataset,
    batches: Batches,
    next: usize,
}

impl Iterator for BatchIter<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let indices = self.batches.iter().nth(self.next)?;
        self.next += 1;
        // NOTE: cannot fail: the indices are a permutation of 0..data.len().
        Some(
            self.data
                .batch(indices)
                .expect("batch indices come from a permutation of 0..len"),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BatchIter<'_> {}

impl Dataset {
    /// The batches of `epoch`, shuffled with `seed`; errors when `batch_size` is 0.
    ///
    /// ```
    /// # fn main() -> tekfac::Result<()> {
    /// use tekfac::dataset::{FashionMnist, DataSource, LastBatch, Split};
    /// let data = FashionMnist::load_mini(Split::Test, &DataSource::default())?.take(300);
    /// let batches: Vec<_> = data.batches(128, 0, 0, LastBatch::Drop)?.collect();
    /// assert_eq!(batches.len(), 2);
    /// assert_eq!(batches[0].images.dims(), &[128, 1, 28, 28]);
    /// # Ok(()) }
    /// ```
    pub fn batches(
        &self,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        last: LastBatch,
    ) -> Result<BatchIter<'_>> {
        let batches = Batches::new(self.len(), batch_size, seed, epoch, last)?;
        Ok(BatchIter {
            data: self,
            batches,
            next: 0,
        })
    }

    /// The whole set in order, `size` examples at a time (the last batch may be smaller), as
    /// `(images, labels)`: what [`crate::train::evaluate`] reads.
    ///
    /// ```
    /// # fn main() -> tekfac::Result<()> {
    /// use tekfac::dataset::{FashionMnist, DataSource, Split};
    /// let data = FashionMnist::load_mini(Split::Test, &DataSource::default())?.take(1500);
    /// let sizes: Vec<usize> = data.eval_batches(1000).map(|b| Ok(b?.1.len())).collect::<tekfac::Result<_>>()?;
    /// assert_eq!(sizes, [1000, 500]);
    /// # Ok(()) }
    /// ```
    pub fn eval_batches(
        &self,
        size: usize,
    ) -> impl Iterator<Item = Result<(Tensor<f32>, Vec<usize>)>> + '_ {
        let n = self.len();
        let size = size.max(1);
        (0..n.div_ceil(size)).map(move |i| {
            let indices: Vec<usize> = (i * size..n.min((i + 1) * size)).collect();
            self.batch(&indices).map(|b| (b.images, b.labels))
        })
    }
}
