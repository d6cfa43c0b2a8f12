//! The real MNIST and Fashion-MNIST files from `$TEKFAC_DATA_DIR` (CI sets it to
//! `../shared/data`): sizes, class counts and checksums. Skipped, with a printed reason, only
//! when the variable is unset.

use std::path::PathBuf;
use tekfac::dataset::checksum::{self, KNOWN_FILES};
use tekfac::dataset::idx::read_idx;
use tekfac::dataset::{DataSource, Dataset, FashionMnist, Mnist, Split};

const MNIST_TRAIN_COUNTS: [usize; 10] =
    [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

/// `$TEKFAC_DATA_DIR`, or `None` after printing why the test is skipped.
fn data_root() -> Option<PathBuf> {
    match std::env::var_os("TEKFAC_DATA_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            eprintln!("skipped: TEKFAC_DATA_DIR is not set (CI sets it to ../shared/data)");
            None
        }
    }
}

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

#[test]
fn mnist_train_has_60000_images_and_known_class_counts() {
    let Some(_) = data_root() else { return };
    let train = Mnist::load(Split::Train, &DataSource::default()).unwrap();
    check(&train, 60_000, &MNIST_TRAIN_COUNTS);
    assert_eq!(train.class_names()[7], "7");
    // The first training digit is the well-known 5, the second a 0.
    assert_eq!(&train.labels()[..2], &[5, 0]);
}

#[test]
fn mnist_test_has_10000_images_and_known_class_counts() {
    let Some(_) = data_root() else { return };
    let test = Mnist::load(Split::Test, &DataSource::default()).unwrap();
    check(&test, 10_000, &MNIST_TEST_COUNTS);
    assert_eq!(&test.labels()[..3], &[7, 2, 1]);
}

#[test]
fn fashion_mnist_has_6000_per_class_in_train_and_1000_in_test() {
    let Some(_) = data_root() else { return };
    let train = FashionMnist::load(Split::Train, &DataSource::default()).unwrap();
    check(&train, 60_000, &[6000; 10]);
    assert_eq!(train.class_names()[0], "T-shirt/top");
    let test = FashionMnist::load(Split::Test, &DataSource::default()).unwrap();
    check(&test, 10_000, &[1000; 10]);
}

#[test]
fn every_real_file_matches_its_content_checksum() {
    let Some(root) = data_root() else { return };
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

#[test]
fn explicit_dir_finds_the_same_data_and_mini_is_its_prefix() {
    let Some(root) = data_root() else { return };
    let source = DataSource::from_dir(root.join("fashion-mnist"));
    let full = FashionMnist::load(Split::Test, &source).unwrap();
    let mini = FashionMnist::load_mini(Split::Test, &DataSource::default()).unwrap();
    assert_eq!(full.take(2000).images(), mini.images());
    assert_eq!(full.take(2000).labels(), mini.labels());
}
