//! Loaders: `Mnist`, `FashionMnist` (and its embedded subset) and the generic `IdxDataset`.
//!
//! Each reads a split's two IDX files, checks that they describe the same images (`[n, rows,
//! cols]` and `[n]`), that every label names a class, and, for the known data sets, that the
//! SHA-256 of each file's decompressed content matches the table in [`super::checksum`].
//! Pixels are scaled from `0..=255` to `[0, 1]`.

use super::checksum;
use super::idx::{IdxFile, read_idx};
use super::kind::{DatasetKind, Split};
use super::labeled::Dataset;
use super::locate::{DataSource, SplitFiles, locate, locate_in};
use crate::error::{Error, Result};
use std::path::Path;

/// MNIST handwritten digits (load with [`Mnist::load`]).
#[derive(Clone, Copy, Debug)]
pub struct Mnist;

/// Fashion-MNIST clothing images (load with [`FashionMnist::load`] or the embedded subset with
/// [`FashionMnist::load_mini`]).
#[derive(Clone, Copy, Debug)]
pub struct FashionMnist;

/// Any data in the MNIST file layout (KMNIST, EMNIST, ...), read from one folder.
#[derive(Clone, Copy, Debug)]
pub struct IdxDataset;

impl Mnist {
    /// Loads a split of MNIST, searching as [`super::locate`](mod@super::locate) describes.
    pub fn load(split: Split, source: &DataSource) -> Result<Dataset> {
        load_kind(DatasetKind::Mnist, split, source)
    }
}

impl FashionMnist {
    /// Loads a split of Fashion-MNIST, searching as [`super::locate`](mod@super::locate) describes (the Debian
    /// package path `/usr/share/datasets/fashion-mnist/` comes last).
    pub fn load(split: Split, source: &DataSource) -> Result<Dataset> {
        load_kind(DatasetKind::FashionMnist, split, source)
    }

    /// Loads the embedded subset from `data/fashion-mnist-mini/` (found relative to the current
    /// folder or to the tekfac source tree): 10,000 train or 2,000 test images.
    ///
    /// ```
    /// # fn main() -> tekfac::Result<()> {
    /// use tekfac::dataset::{FashionMnist, DataSource, Split};
    /// let test = FashionMnist::load_mini(Split::Test, &DataSource::default())?;
    /// assert_eq!((test.len(), test.rows(), test.cols(), test.classes()), (2000, 28, 28, 10));
    /// # Ok(()) }
    /// ```
    pub fn load_mini(split: Split, source: &DataSource) -> Result<Dataset> {
        load_kind(DatasetKind::FashionMnistMini, split, source)
    }
}

impl IdxDataset {
    /// Loads a split from the IDX files in `dir` (no search, no checksum), with labels below
    /// `classes`; the class names are `"0"`, `"1"`, ….
    pub fn load(dir: &Path, split: Split, classes: usize) -> Result<Dataset> {
        let files = locate_in(dir, split)?;
        let names = (0..classes).map(|c| c.to_string()).collect();
        load_files(&files, &format!("{} ({split})", dir.display()), names, None)
    }

    /// The number of classes of the data in `dir`, from its training labels: `K`, the largest
    /// label plus one, when the labels are exactly `0..K−1` with every class present. Anything
    /// else is an error naming the file: one stray label of 255 among digits would otherwise
    /// build a 256-way classifier. When some classes really have no training example, state
    /// the number instead ([`DataSource::classes`], `--classes`).
    pub fn infer_classes(dir: &Path) -> Result<usize> {
        let files = locate_in(dir, Split::Train)?;
        let labels = read_idx(&files.labels)?;
        classes_of(labels.data(), &files.labels)
    }
}

/// `K` for labels that are exactly `0..K−1` with every class present; an error naming `path`
/// and the classes without an example otherwise.
fn classes_of(labels: &[u8], path: &Path) -> Result<usize> {
    let Some(&max) = labels.iter().max() else {
        return Err(Error::Data(format!(
            "{}: no labels, so the number of classes cannot be inferred",
            path.display()
        )));
    };
    let mut seen = [false; 256];
    labels.iter().for_each(|&l| seen[l as usize] = true);
    let k = max as usize + 1;
    let missing: Vec<usize> = (0..k).filter(|&c| !seen[c]).collect();
    if missing.is_empty() {
        return Ok(k);
    }
    Err(Error::Data(format!(
        "{}: the labels are not 0..K−1 with every class present: the largest is {max}, but \
         {} of the {k} classes up to it have no example ({}); if the data really has {k} \
         classes, state it with --classes {k}",
        path.display(),
        missing.len(),
        ranges(&missing)
    )))
}

/// Sorted class numbers as ranges, e.g. `3, 10–254`.
fn ranges(classes: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < classes.len() {
        let mut j = i;
        while j + 1 < classes.len() && classes[j + 1] == classes[j] + 1 {
            j += 1;
        }
        parts.push(match j - i {
            0 => classes[i].to_string(),
            1 => format!("{}, {}", classes[i], classes[j]),
            _ => format!("{}–{}", classes[i], classes[j]),
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// Loads a split of a named data set: `mnist`, `fashion-mnist`, `fashion-mnist-mini`, or
/// `idx:DIR` for MNIST-format files in `DIR`, with [`DataSource::classes`] classes when stated,
/// else as many as [`IdxDataset::infer_classes`] finds.
pub fn load(name: &str, split: Split, source: &DataSource) -> Result<Dataset> {
    match name.strip_prefix("idx:") {
        Some(dir) => {
            let dir = Path::new(dir);
            let classes = match source.classes {
                Some(k) => k,
                None => IdxDataset::infer_classes(dir)?,
            };
            IdxDataset::load(dir, split, classes)
        }
        None => {
            let kind: DatasetKind = name.parse()?;
            match source.classes {
                Some(k) if k != kind.class_names().len() => Err(Error::Data(format!(
                    "{kind} has {} classes, not the {k} stated",
                    kind.class_names().len()
                ))),
                _ => load_kind(kind, split, source),
            }
        }
    }
}

/// The examples to train on and to evaluate on, for a run of `name`: the training and test
/// splits, or with `validation = n > 0` the training split cut by
/// [`Dataset::split_validation`] into all but its last `n` examples and those `n` (then the
/// test split is not read at all, so nothing chosen on the validation split has seen it).
///
/// ```
/// # fn main() -> tekfac::Result<()> {
/// use tekfac::dataset::{self, DataSource};
/// let source = DataSource::default();
/// let (train, validation) = dataset::load_train_eval("fashion-mnist-mini", 1000, &source)?;
/// let (all, test) = dataset::load_train_eval("fashion-mnist-mini", 0, &source)?;
/// assert_eq!(train.len() + validation.len(), all.len());
/// assert_eq!(test.name(), "fashion-mnist-mini (test)");
/// # Ok(()) }
/// ```
pub fn load_train_eval(
    name: &str,
    validation: usize,
    source: &DataSource,
) -> Result<(Dataset, Dataset)> {
    let train = load(name, Split::Train, source)?;
    match validation {
        0 => Ok((train, load(name, Split::Test, source)?)),
        n => train.split_validation(n),
    }
}

/// Locates, reads, checks and converts a split of a known data set.
fn load_kind(kind: DatasetKind, split: Split, source: &DataSource) -> Result<Dataset> {
    let files = locate(kind, split, source)?;
    let names = kind.class_names().iter().map(|s| s.to_string()).collect();
    let verify = source.verify.then_some(kind.name());
    load_files(&files, &format!("{kind} ({split})"), names, verify)
}

/// Reads both files of a split, checks that they agree, verifies them against data set
/// `verify` if given, and builds the dataset.
fn load_files(
    files: &SplitFiles,
    name: &str,
    class_names: Vec<String>,
    verify: Option<&str>,
) -> Result<Dataset> {
    let (images, labels) = rayon::join(|| read_idx(&files.images), || read_idx(&files.labels));
    let (images, labels) = (images?, labels?);
    let (rows, cols) = check_pair(files, &images, &labels, class_names.len())?;
    // NOTE: hashing and converting are independent passes over 47 MB; run them side by side.
    let (checked, pixels) = rayon::join(
        || verify_files(files, &images, &labels, verify),
        || to_unit_floats(images.data(), &files.images),
    );
    checked?;
    let pixels = pixels?;
    Dataset::new(
        name,
        pixels,
        labels.data().to_vec(),
        rows,
        cols,
        class_names,
    )
}

/// Pixels `0..=255` as f32 in `[0, 1]`; a clear error when their memory is not available.
fn to_unit_floats(bytes: &[u8], path: &Path) -> Result<Vec<f32>> {
    let mut pixels = Vec::new();
    pixels.try_reserve_exact(bytes.len()).map_err(|_| {
        Error::Data(format!(
            "{}: not enough memory for its {} pixels as f32 ({} bytes)",
            path.display(),
            bytes.len(),
            4 * bytes.len()
        ))
    })?;
    pixels.extend(bytes.iter().map(|&b| b as f32 / 255.0));
    Ok(pixels)
}

/// Checks ranks, counts and label range; returns `(rows, cols)`.
fn check_pair(
    files: &SplitFiles,
    images: &IdxFile,
    labels: &IdxFile,
    classes: usize,
) -> Result<(usize, usize)> {
    let (n, rows, cols) = match *images.dims() {
        [n, rows, cols] if rows > 0 && cols > 0 => (n, rows, cols),
        ref dims => {
            return Err(shape_error(
                &files.images,
                dims,
                "[n, rows, cols] with rows, cols > 0",
            ));
        }
    };
    let &[n_labels] = labels.dims() else {
        return Err(shape_error(&files.labels, labels.dims(), "[n]"));
    };
    if n_labels != n {
        return Err(Error::Data(format!(
            "count mismatch: {} has {n} images but {} has {n_labels} labels",
            files.images.display(),
            files.labels.display(),
        )));
    }
    if let Some(i) = labels.data().iter().position(|&l| l as usize >= classes) {
        return Err(Error::Data(format!(
            "{}: label {} at index {i} is out of range for {classes} classes",
            files.labels.display(),
            labels.data()[i]
        )));
    }
    Ok((rows, cols))
}

/// When `verify` names a data set, checks both files' content against the checksum table.
fn verify_files(
    files: &SplitFiles,
    images: &IdxFile,
    labels: &IdxFile,
    verify: Option<&str>,
) -> Result<()> {
    let Some(dataset) = verify else { return Ok(()) };
    for (path, idx) in [(&files.images, images), (&files.labels, labels)] {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let base = file.strip_suffix(".gz").unwrap_or(file);
        checksum::verify(dataset, base, &path.display().to_string(), idx.content())?;
    }
    Ok(())
}

/// The error for a file whose dimensions are not the `expected` kind.
fn shape_error(path: &Path, dims: &[usize], expected: &str) -> Error {
    Error::Data(format!(
        "{}: wrong dimensions {dims:?}; expected {expected}",
        path.display()
    ))
}
