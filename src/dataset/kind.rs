//! What each data set is called, what its files are called, and what its classes mean.
//!
//! All three known data sets share the MNIST layout: four IDX files per data set, named
//! `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, optionally with `.gz`. Images are
//! `[n, 28, 28]` unsigned bytes and labels `[n]` class indices below 10.

use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which half of a data set: the training or the test examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training examples (`train-*` files).
    Train,
    /// The test examples (`t10k-*` files).
    Test,
}

impl Split {
    /// The file-name prefix of this split: `train` or `t10k`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// Base name (without `.gz`) of the images file, e.g. `train-images-idx3-ubyte`.
    pub fn images_file(self) -> String {
        format!("{}-images-idx3-ubyte", self.prefix())
    }

    /// Base name (without `.gz`) of the labels file, e.g. `t10k-labels-idx1-ubyte`.
    pub fn labels_file(self) -> String {
        format!("{}-labels-idx1-ubyte", self.prefix())
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// The data sets tekfac knows by name (and holds checksums for).
///
/// ```
/// use tekfac::dataset::DatasetKind;
/// let kind: DatasetKind = "fashion-mnist".parse().unwrap();
/// assert_eq!(kind, DatasetKind::FashionMnist);
/// assert_eq!(kind.class_names()[9], "Ankle boot");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// MNIST handwritten digits, 60,000 train + 10,000 test (CC BY-SA 3.0; never committed).
    Mnist,
    /// Fashion-MNIST clothing images, 60,000 train + 10,000 test (MIT, © Zalando SE).
    FashionMnist,
    /// The first 10,000 train and 2,000 test images of Fashion-MNIST, shipped in `data/`.
    FashionMnistMini,
}

/// Class names of MNIST: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Class names of Fashion-MNIST, in label order (from the Fashion-MNIST README).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

impl DatasetKind {
    /// Every known data set.
    pub const ALL: [DatasetKind; 3] = [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::FashionMnistMini,
    ];

    /// The name used on the command line, in folder names and in the checksum table.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::FashionMnistMini => "fashion-mnist-mini",
        }
    }

    /// The class names, indexed by label.
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &MNIST_CLASSES,
            DatasetKind::FashionMnist | DatasetKind::FashionMnistMini => &FASHION_MNIST_CLASSES,
        }
    }

    /// The usual per-pixel mean and standard deviation of the full training set (pixels in
    /// [0, 1]), for [`crate::dataset::Dataset::normalize`].
    pub fn mean_std(self) -> (f32, f32) {
        match self {
            DatasetKind::Mnist => (0.1307, 0.3081),
            DatasetKind::FashionMnist | DatasetKind::FashionMnistMini => (0.2860, 0.3530),
        }
    }

    /// Folders searched after the standard ones (see [`crate::dataset::locate`](mod@crate::dataset::locate)): the Debian
    /// package path for Fashion-MNIST, the crate's own `data/` folder for the embedded subset.
    pub fn extra_dirs(self) -> Vec<(PathBuf, &'static str)> {
        match self {
            DatasetKind::Mnist => vec![],
            DatasetKind::FashionMnist => vec![(
                PathBuf::from("/usr/share/datasets/fashion-mnist"),
                "Debian/Ubuntu package dataset-fashion-mnist",
            )],
            DatasetKind::FashionMnistMini => vec![(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-mini"),
                "the tekfac source tree",
            )],
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                Error::Data(format!(
                    "unknown data set {name:?}; known: mnist, fashion-mnist, fashion-mnist-mini \
                     (or idx:DIR for any MNIST-format folder)"
                ))
            })
    }
}
