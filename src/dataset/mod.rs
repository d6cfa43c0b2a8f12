//! Real data: IDX files (MNIST, Fashion-MNIST, any MNIST-format set), checksums, search paths,
//! download, and seeded minibatches.
//!
//! ```text
//! locate (search order) ─▶ idx (decode, validate) ─▶ checksum (SHA-256 of content)
//!        ─▶ Dataset { images [n, rows, cols] in [0, 1], labels } ─▶ Batches ─▶ Batch [b, 1, rows, cols]
//! ```
//!
//! - **Where data comes from**: [`locate`](mod@locate) searches an explicit folder, `$TEKFAC_DATA_DIR/<name>/`,
//!   `./data/<name>/`, then the data set's own extra folder (the Debian package path for
//!   Fashion-MNIST, the source tree for the embedded subset), and lists them all when it fails.
//!   `download::download` (feature `download`, on by default) fetches the four files of MNIST
//!   or Fashion-MNIST from public mirrors.
//! - **What is trusted**: nothing in a file. The IDX reader checks the header against the real
//!   length before reading, caps decompression, and returns an error naming the file and the
//!   problem; the loaders check that images and labels agree; the SHA-256 of each known file's
//!   decompressed content must match [`checksum::KNOWN_FILES`] unless verification is off.
//! - **Order**: one epoch is a seeded permutation ([`permutation`]), the same on any thread count.
//!
//! Loading a split and iterating over one shuffled epoch:
//!
//! ```
//! # fn main() -> tekfac::Result<()> {
//! use tekfac::dataset::{self, DataSource, LastBatch, Split};
//! let source = DataSource::default(); // search order of `locate`, checksums verified
//! let mut test = dataset::load("fashion-mnist-mini", Split::Test, &source)?;
//! let (mean, std) = dataset::DatasetKind::FashionMnistMini.mean_std();
//! test.normalize(mean, std)?;
//! for batch in test.batches(500, 42, 0, LastBatch::Keep)? {
//!     assert_eq!(batch.images.dims()[1..], [1, 28, 28]);
//! }
//! # Ok(()) }
//! ```
//!
//! Files: `kind` (names, splits, classes), `idx` (reader), `gzip` (members), `checksum`
//! (table), `locate` (search order), `mnist` (loaders), `labeled` (`Dataset`, `Batch`),
//! `subsets` (slices, the validation split), `batches` (shuffling), `augment` (random flips and
//! shifts of training images), `download` (mirrors).

pub mod augment;
pub mod batches;
pub mod checksum;
#[cfg(feature = "download")]
pub mod download;
mod gzip;
pub mod idx;
pub mod kind;
mod labeled;
pub mod locate;
mod mnist;
mod subsets;

pub use augment::Augment;
pub use batches::{BatchIter, Batches, LastBatch, permutation};
pub use kind::{DatasetKind, Split};
pub use labeled::{Batch, Dataset};
pub use locate::{DataSource, locate};
pub use mnist::{FashionMnist, IdxDataset, Mnist, load, load_train_eval};
