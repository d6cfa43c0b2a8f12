//! SHA-256 checksums of the known data files, taken over the *decompressed* content.
//!
//! The content, not the `.gz` file, is what is hashed: the Debian package re-compresses
//! Fashion-MNIST, and a mirror may too, so the same data arrives in different gzip wrappers.
//! The values for MNIST and Fashion-MNIST agree with the published ones (see
//! `../shared/data/README.md`); those for the embedded subset are listed in `data/README.md`.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

/// One row of the checksum table.
#[derive(Clone, Copy, Debug)]
pub struct KnownFile {
    /// Data set name, as in [`crate::dataset::DatasetKind::name`].
    pub dataset: &'static str,
    /// File base name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub file: &'static str,
    /// Lower-case hex SHA-256 of the decompressed content.
    pub sha256: &'static str,
}

const fn row(dataset: &'static str, file: &'static str, sha256: &'static str) -> KnownFile {
    KnownFile {
        dataset,
        file,
        sha256,
    }
}

/// The checksum table: four files for each known data set.
pub const KNOWN_FILES: [KnownFile; 12] = [
    row(
        "mnist",
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    row(
        "mnist",
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    row(
        "mnist",
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    row(
        "mnist",
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    row(
        "fashion-mnist",
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    row(
        "fashion-mnist",
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    row(
        "fashion-mnist",
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    row(
        "fashion-mnist",
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    row(
        "fashion-mnist-mini",
        "train-images-idx3-ubyte",
        "ed2e37ed5a3a57d212141a69fe0a0de5a7126ffba14ac3f7e76f5f52cc04b1f0",
    ),
    row(
        "fashion-mnist-mini",
        "train-labels-idx1-ubyte",
        "a69f2dad024ca220a8c4d85f621fdf929042d40c444abde2868903e9220ad517",
    ),
    row(
        "fashion-mnist-mini",
        "t10k-images-idx3-ubyte",
        "862035b0a96959b614c9574f4c2b0ae9584ca234813e8d6d7adb7838b12ca46b",
    ),
    row(
        "fashion-mnist-mini",
        "t10k-labels-idx1-ubyte",
        "aa3f574d30afaf0d4d9da084a6f8541771e20693d6a97fae6e9a4953fca8f078",
    ),
];

/// Lower-case hex SHA-256 of `bytes`.
///
/// ```
/// let h = tekfac::dataset::checksum::sha256_hex(b"abc");
/// assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// ```
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The expected checksum of `file` (base name, no `.gz`) of data set `dataset`, if known.
pub fn expected_sha256(dataset: &str, file: &str) -> Option<&'static str> {
    KNOWN_FILES
        .iter()
        .find(|k| k.dataset == dataset && k.file == file)
        .map(|k| k.sha256)
}

/// The table rows of one data set (empty for an unknown name).
pub fn files_of(dataset: &str) -> Vec<KnownFile> {
    KNOWN_FILES
        .iter()
        .filter(|k| k.dataset == dataset)
        .copied()
        .collect()
}

/// Checks `content` (decompressed) of `file` of `dataset` against the table; `path` names the
/// file in the error. Errors when the data set has no entry for `file`, or the hash differs.
pub fn verify(dataset: &str, file: &str, path: &str, content: &[u8]) -> Result<()> {
    let Some(expected) = expected_sha256(dataset, file) else {
        return Err(Error::Data(format!(
            "{path}: no checksum known for {dataset}/{file}"
        )));
    };
    let actual = sha256_hex(content);
    if actual != expected {
        return Err(Error::Data(format!(
            "{path}: checksum mismatch: SHA-256 of the decompressed content is {actual}, \
             expected {expected} for {dataset}/{file} (a damaged or different file: \
             download it again, or turn verification off)"
        )));
    }
    Ok(())
}
