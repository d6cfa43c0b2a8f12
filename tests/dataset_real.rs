//! The real MNIST and Fashion-MNIST files from `$TEKFAC_DATA_DIR` (CI sets it to
//! `../shared/data`): sizes, class counts and checksums. Ignored, with the reason, when the
//! tests were built without the variable (see `tests/support/data.rs`); a CI build without it
//! fails.

use tekfac::dataset::checksum::{self, KNOWN_FILES};
use tekfac::dataset::idx::read_idx;
use tekfac::dataset::{DataSource, Dataset, FashionMnist, Mnist, Split};

const MNIST_TRAIN_COUNTS: [usize; 10] =
    [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

mod support;

/// Shape, pixel range and class counts of a loaded split.
fn check(data: &Dataset, n: usize, counts: &[usize]) {
    assert_eq!(
        (data.len(), data.rows(), data.cols(), data.classes()),
        (n, 28, 28, 10)
    );
    assert_eq!(data.images().len(), n * 28 * 28);
    assert!(data.images().iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert_eq!(data.class_counts(), counts);
}

#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn mnist_train_has_60000_images_and_known_class_counts() {
    support::data::dir();
    let train = Mnist::load(Split::Train, &DataSource::default()).unwrap();
    check(&train, 60_000, &MNIST_TRAIN_COUNTS);
    assert_eq!(train.class_names()[7], "7");
    // The first training digit is the well-known 5, the second a 0.
    assert_eq!(&train.labels()[..2], &[5, 0]);
}

#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn mnist_test_has_10000_images_and_known_class_counts() {
    support::data::dir();
    let test = Mnist::load(Split::Test, &DataSource::default()).unwrap();
    check(&test, 10_000, &MNIST_TEST_COUNTS);
    assert_eq!(&test.labels()[..3], &[7, 2, 1]);
}

#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn fashion_mnist_has_6000_per_class_in_train_and_1000_in_test() {
    support::data::dir();
    let train = FashionMnist::load(Split::Train, &DataSource::default()).unwrap();
    check(&train, 60_000, &[6000; 10]);
    assert_eq!(train.class_names()[0], "T-shirt/top");
    let test = FashionMnist::load(Split::Test, &DataSource::default()).unwrap();
    check(&test, 10_000, &[1000; 10]);
}

#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn every_real_file_matches_its_content_checksum() {
    let root = support::data::dir();
    let mut checked = 0;
    for known in KNOWN_FILES
        .iter()
        .filter(|k| k.dataset != "fashion-mnist-mini")
    {
        let path = root.join(known.dataset).join(format!("{}.gz", known.file));
        let idx = read_idx(&path).unwrap();
        assert_eq!(
            checksum::sha256_hex(idx.content()),
            known.sha256,
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn explicit_dir_finds_the_same_data_and_mini_is_its_prefix() {
    let root = support::data::dir();
    let source = DataSource::from_dir(root.join("fashion-mnist"));
    let full = FashionMnist::load(Split::Test, &source).unwrap();
    let mini = FashionMnist::load_mini(Split::Test, &DataSource::default()).unwrap();
    assert_eq!(full.take(2000).images(), mini.images());
    assert_eq!(full.take(2000).labels(), mini.labels());
}

/// CI runs every real-data test: a CI build made without `TEKFAC_DATA_DIR`, whose real-data
/// tests would all be ignored, fails here.
#[test]
fn a_ci_build_has_the_real_data() {
    let in_ci = std::env::var_os("CI").is_some();
    assert!(
        cfg!(tekfac_real_data) || !in_ci,
        "CI is set but the tests were built without TEKFAC_DATA_DIR, so every real-data test \
         is ignored; set it (.ci/run sets it to ../shared/data)"
    );
}
