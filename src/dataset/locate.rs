//! Where data files are found, and the error that lists every place tried.
//!
//! Search order for data set `<name>`, first folder holding both files of the split wins:
//!
//! 1. the explicit folder of [`DataSource::dir`] (`--data-dir`), then `<dir>/<name>/`;
//! 2. `$TEKFAC_DATA_DIR/<name>/`;
//! 3. `./data/<name>/`;
//! 4. the data set's extra folders ([`DatasetKind::extra_dirs`]): for Fashion-MNIST the Debian
//!    package path `/usr/share/datasets/fashion-mnist/`, for the embedded subset the crate's own
//!    `data/fashion-mnist-mini/`.
//!
//! In each folder a file is accepted plain or with `.gz` (the plain one is preferred).

use super::kind::{DatasetKind, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Environment variable naming a folder that holds one sub-folder per data set.
pub const DATA_DIR_ENV: &str = "TEKFAC_DATA_DIR";

/// Where to look for a data set and whether to verify checksums.
///
/// ```
/// use tekfac::dataset::DataSource;
/// let source = DataSource { verify: false, ..DataSource::from_dir("data/mnist") };
/// assert_eq!(source.dir.as_deref(), Some(std::path::Path::new("data/mnist")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    /// A folder searched before all others (`--data-dir`); `None` to use the search order only.
    pub dir: Option<PathBuf>,
    /// Check each file's SHA-256 against the table (on by default; `--no-verify` turns it off).
    pub verify: bool,
    /// The number of classes of `idx:` data when the user states it (`--classes`); `None`
    /// infers it from the training labels, which must then be `0..K−1` with every class
    /// present (see [`IdxDataset::infer_classes`](super::IdxDataset::infer_classes)).
    pub classes: Option<usize>,
}

impl Default for DataSource {
    fn default() -> Self {
        DataSource {
            dir: None,
            verify: true,
            classes: None,
        }
    }
}

impl DataSource {
    /// Searches `dir` first, with verification on.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        DataSource {
            dir: Some(dir.into()),
            ..DataSource::default()
        }
    }
}

/// The two files of one split, once found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitFiles {
    /// The images file (`*-images-idx3-ubyte[.gz]`).
    pub images: PathBuf,
    /// The labels file (`*-labels-idx1-ubyte[.gz]`).
    pub labels: PathBuf,
}

/// The folders searched for `kind`, in order, each with a note saying where it comes from.
pub fn search_dirs(kind: DatasetKind, explicit: Option<&Path>) -> Vec<(PathBuf, String)> {
    let name = kind.name();
    let mut dirs = Vec::new();
    if let Some(dir) = explicit {
        dirs.push((dir.to_path_buf(), "explicit data dir".to_string()));
        dirs.push((dir.join(name), "explicit data dir".to_string()));
    }
    if let Some(root) = std::env::var_os(DATA_DIR_ENV) {
        dirs.push((
            Path::new(&root).join(name),
            format!("${DATA_DIR_ENV}/{name}"),
        ));
    }
    dirs.push((
        Path::new("data").join(name),
        "under the current folder".to_string(),
    ));
    for (dir, why) in kind.extra_dirs() {
        dirs.push((dir, why.to_string()));
    }
    dirs
}

/// Finds the files of `split` of `kind`, searching as the module docs say.
pub fn locate(kind: DatasetKind, split: Split, source: &DataSource) -> Result<SplitFiles> {
    let dirs = search_dirs(kind, source.dir.as_deref());
    let mut tried = Vec::new();
    for (dir, why) in &dirs {
        match files_in(dir, split) {
            Ok(files) => return Ok(files),
            Err(problem) => tried.push(format!("  - {} ({why}): {problem}", dir.display())),
        }
    }
    if std::env::var_os(DATA_DIR_ENV).is_none() {
        // NOTE: listed where it would have been searched, after the explicit folders.
        let at = if source.dir.is_some() { 2 } else { 0 };
        tried.insert(
            at,
            format!(
                "  - ${DATA_DIR_ENV}/{}: not searched, {DATA_DIR_ENV} is unset",
                kind.name()
            ),
        );
    }
    let hint = match kind {
        DatasetKind::FashionMnistMini => {
            "the subset ships in the tekfac repository's data/ folder".to_string()
        }
        DatasetKind::FashionMnist => format!(
            "get the files with `tekfac download {kind}` or `apt install dataset-fashion-mnist`, \
             or point --data-dir or {DATA_DIR_ENV} at them"
        ),
        DatasetKind::Mnist => format!(
            "get the files with `tekfac download {kind}`, or point --data-dir or {DATA_DIR_ENV} at them"
        ),
    };
    Err(Error::Data(format!(
        "{kind} {split} files not found: looked for {}[.gz] and {}[.gz] in\n{}\n{hint}",
        split.images_file(),
        split.labels_file(),
        tried.join("\n")
    )))
}

/// Finds the files of `split` in exactly one folder (for data sets without a name).
pub fn locate_in(dir: &Path, split: Split) -> Result<SplitFiles> {
    files_in(dir, split).map_err(|problem| {
        Error::Data(format!(
            "{split} files not found in {}: {problem} (expected {}[.gz] and {}[.gz])",
            dir.display(),
            split.images_file(),
            split.labels_file()
        ))
    })
}

/// Both files of `split` in `dir`, or a short description of what is missing.
fn files_in(dir: &Path, split: Split) -> std::result::Result<SplitFiles, String> {
    if !dir.is_dir() {
        return Err("no such folder".to_string());
    }
    let images = find_file(dir, &split.images_file());
    let labels = find_file(dir, &split.labels_file());
    match (images, labels) {
        (Some(images), Some(labels)) => Ok(SplitFiles { images, labels }),
        (None, None) => Err("neither file is there".to_string()),
        (None, Some(_)) => Err(format!("{}[.gz] is missing", split.images_file())),
        (Some(_), None) => Err(format!("{}[.gz] is missing", split.labels_file())),
    }
}

/// `dir/base` if it is a file, else `dir/base.gz` if that is one.
fn find_file(dir: &Path, base: &str) -> Option<PathBuf> {
    [dir.join(base), dir.join(format!("{base}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}
