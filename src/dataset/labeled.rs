//! `Dataset`: labeled grayscale images in memory, and `Batch`: a minibatch as a tensor.
//!
//! Images are stored flat, `[n, rows, cols]` row-major f32 (pixels in [0, 1] as loaded, or
//! `(x − mean) / std` after [`Dataset::normalize`]); labels are class indices below `classes`.
//! A batch gathers rows into a tensor of shape `[batch, 1, rows, cols]` (NCHW, one channel).

use crate::error::{Error, Result};
use crate::kernels::written_by;
use crate::tensor::{PAR_CHUNK, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows per task of a batch gathered in parallel ([`Dataset::batch`]).
const GATHER_ROWS: usize = 16;

/// A labeled image data set held in memory. Built by the loaders (or [`Dataset::new`]); its
/// invariants (lengths agree, labels in range) hold for its whole life.
#[derive(Clone, PartialEq)]
pub struct Dataset {
    name: String,
    images: Vec<f32>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    class_names: Vec<String>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: a summary, not the data: the images of MNIST are 47 million numbers.
        let (n, rows, cols, classes) = (self.len(), self.rows, self.cols, self.classes());
        write!(
            f,
            "Dataset({:?}: {n} images of {rows}×{cols}, {classes} classes)",
            self.name
        )
    }
}

/// A minibatch: images `[batch, 1, rows, cols]` and their class labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Images, NCHW with one channel.
    pub images: Tensor<f32>,
    /// Class index of each image.
    pub labels: Vec<usize>,
}

impl Dataset {
    /// Checks and wraps images (`n · rows · cols` values) and labels (`n` values, each below
    /// `class_names.len()`); `name` says where the data came from.
    ///
    /// ```
    /// use tekfac::dataset::Dataset;
    /// let names = vec!["dark".to_string(), "light".to_string()];
    /// let data = Dataset::new("tiny", vec![0.0, 0.1, 0.9, 1.0], vec![0, 1], 1, 2, names).unwrap();
    /// let batch = data.batch(&[1]).unwrap();
    /// assert_eq!(batch.images.dims(), &[1, 1, 1, 2]);
    /// assert_eq!(batch.labels, vec![1]);
    /// ```
    pub fn new(
        name: impl Into<String>,
        images: Vec<f32>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let name = name.into();
        let pixels = rows
            .checked_mul(cols)
            .and_then(|p| p.checked_mul(labels.len()));
        if rows == 0 || cols == 0 || pixels != Some(images.len()) {
            return Err(Error::Data(format!(
                "{name}: {} pixel values do not make {} images of {rows}×{cols}",
                images.len(),
                labels.len()
            )));
        }
        if class_names.is_empty() || class_names.len() > 256 {
            return Err(Error::Data(format!(
                "{name}: {} classes; expected 1 to 256",
                class_names.len()
            )));
        }
        let data = Dataset {
            name,
            images,
            labels,
            rows,
            cols,
            class_names,
        };
        data.check_labels()?;
        Ok(data)
    }

    /// Errors on the first label that is not below the number of classes.
    fn check_labels(&self) -> Result<()> {
        let classes = self.classes();
        match self.labels.iter().position(|&l| l as usize >= classes) {
            None => Ok(()),
            Some(i) => Err(Error::Data(format!(
                "{}: label {} at index {i} is out of range for {classes} classes",
                self.name, self.labels[i]
            ))),
        }
    }

    /// Where the data came from (a data set name or a file path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image height in pixels.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Image width in pixels.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Pixels per image, `rows · cols`.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// All images, flat `[n, rows, cols]`.
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Image `i`, flat `[rows, cols]`, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        if i >= self.len() {
            return None;
        }
        let p = self.pixels();
        self.images.get(i * p..(i + 1) * p)
    }

    /// How many examples each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes()];
        // NOTE: indexing is safe: every label is below `classes` (checked in `new`).
        self.labels.iter().for_each(|&l| counts[l as usize] += 1);
        counts
    }

    /// Gathers the examples at `indices` into a batch; errors on the first index past the end.
    ///
    /// A batch of at least `2 · PAR_CHUNK` values is gathered on rayon's threads, blocks of
    /// [`GATHER_ROWS`] rows per task: the rows are scattered 3 KB reads from the whole set
    /// (188 MB for Fashion-MNIST), bound by memory latency, which two cores overlap. Each row
    /// is a plain copy, so the batch does not depend on the number of threads
    /// (`tests/cli_loop.rs` pins it to a row-by-row copy on 1, 2 and 3 threads).
    pub fn batch(&self, indices: &[usize]) -> Result<Batch> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(self.out_of_range("batch", i));
        }
        let p = self.pixels();
        let labels = indices.iter().map(|&i| self.labels[i] as usize).collect();
        let copy = |(out, rows): (&mut [MaybeUninit<f32>], &[usize])| {
            for (out, &i) in out.chunks_exact_mut(p).zip(rows) {
                let row = &self.images[i * p..(i + 1) * p];
                out.iter_mut().zip(row).for_each(|(o, &v)| {
                    o.write(v);
                });
            }
        };
        let len = indices.len() * p;
        // SAFETY: the blocks of `GATHER_ROWS · p` values cover the buffer, and each block's
        // rows are written whole, one per index of the block (`p > 0` for every data set:
        // `Dataset::new` refuses empty images; with `p = 0` the buffer is empty).
        let images = unsafe {
            written_by(len, |out| {
                let block = (GATHER_ROWS * p).max(1);
                if len >= 2 * PAR_CHUNK {
                    let rows = indices.par_chunks(GATHER_ROWS);
                    out.par_chunks_mut(block).zip(rows).for_each(copy);
                } else {
                    out.chunks_mut(block)
                        .zip(indices.chunks(GATHER_ROWS))
                        .for_each(copy);
                }
            })
        };
        let images = Tensor::from_vec(images, &[indices.len(), 1, self.rows, self.cols])?;
        Ok(Batch { images, labels })
    }

    /// Standardises every pixel in place: `x ← (x − mean) / std`. Errors unless `std > 0` and
    /// both are finite. Use the training set's statistics for both splits (see
    /// [`crate::dataset::DatasetKind::mean_std`] and [`Dataset::pixel_mean_std`]).
    pub fn normalize(&mut self, mean: f32, std: f32) -> Result<()> {
        if !(mean.is_finite() && std.is_finite() && std > 0.0) {
            return Err(Error::Data(format!(
                "{}: cannot normalize with mean {mean} and std {std}",
                self.name
            )));
        }
        let inv = 1.0 / std;
        self.images.iter_mut().for_each(|x| *x = (*x - mean) * inv);
        Ok(())
    }

    /// Mean and standard deviation over all pixels (accumulated in f64).
    pub fn pixel_mean_std(&self) -> (f64, f64) {
        let n = self.images.len().max(1) as f64;
        let mean = self.images.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = self
            .images
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    /// The error for index `i` past the end, from `op`.
    pub(crate) fn out_of_range(&self, op: &str, i: usize) -> Error {
        Error::Data(format!(
            "{}: {op}: index {i} is out of range for {} examples",
            self.name,
            self.len()
        ))
    }

    /// A new data set of the same kind from already-checked parts (used by the subset methods).
    pub(crate) fn with_parts(&self, images: Vec<f32>, labels: Vec<u8>) -> Dataset {
        Dataset {
            images,
            labels,
            class_names: self.class_names.clone(),
            name: self.name.clone(),
            ..*self
        }
    }
}
