//! The embedded subset in `data/fashion-mnist-mini/`: it loads with checksums on, has the
//! expected shape and class counts, and the `Dataset` methods behave on real images.

use tekfac::dataset::checksum::{self, KNOWN_FILES};
use tekfac::dataset::idx::read_idx;
use tekfac::dataset::{self, DataSource, DatasetKind, FashionMnist, LastBatch, Split};

const MINI_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-mini");

#[test]
fn mini_files_match_their_content_checksums() {
    for known in KNOWN_FILES
        .iter()
        .filter(|k| k.dataset == "fashion-mnist-mini")
    {
        let idx = read_idx(format!("{MINI_DIR}/{}.gz", known.file).as_ref()).unwrap();
        assert_eq!(
            checksum::sha256_hex(idx.content()),
            known.sha256,
            "{}",
            known.file
        );
    }
}

#[test]
fn mini_is_small_enough_to_commit() {
    let bytes: u64 = std::fs::read_dir(MINI_DIR)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(bytes < 6_000_000, "{bytes} bytes");
}

#[test]
fn mini_train_and_test_load_with_verification() {
    let source = DataSource::default();
    assert!(source.verify);
    let train = FashionMnist::load_mini(Split::Train, &source).unwrap();
    assert_eq!(
        (train.len(), train.rows(), train.cols(), train.classes()),
        (10_000, 28, 28, 10)
    );
    assert_eq!(
        train.class_counts(),
        [942, 1027, 1016, 1019, 974, 989, 1021, 1022, 990, 1000]
    );
    let test = dataset::load("fashion-mnist-mini", Split::Test, &source).unwrap();
    assert_eq!(
        test.class_counts(),
        [200, 203, 214, 190, 219, 195, 197, 200, 194, 188]
    );
    assert_eq!(test.class_names()[9], "Ankle boot");
    // Fashion-MNIST's first training image is an ankle boot, its first test image too.
    assert_eq!((train.labels()[0], test.labels()[0]), (9, 9));
    assert!(train.images().iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert_eq!(train.images().iter().fold(0f32, |m, &x| m.max(x)), 1.0);
}

#[test]
fn batch_gathers_the_right_rows_into_nchw() {
    let test = FashionMnist::load_mini(Split::Test, &DataSource::default()).unwrap();
    let batch = test.batch(&[5, 0, 5]).unwrap();
    assert_eq!(batch.images.dims(), &[3, 1, 28, 28]);
    assert_eq!(
        batch.labels,
        vec![
            test.labels()[5] as usize,
            test.labels()[0] as usize,
            test.labels()[5] as usize
        ]
    );
    assert_eq!(&batch.images.data()[..784], test.image(5).unwrap());
    assert_eq!(&batch.images.data()[784..1568], test.image(0).unwrap());
    let err = test.batch(&[1, 2000]).unwrap_err().to_string();
    assert!(err.contains("index 2000 is out of range"), "{err}");
    assert!(test.batch(&[usize::MAX]).is_err());
    assert!(test.image(usize::MAX).is_none());
    assert_eq!(test.batch(&[]).unwrap().images.dims(), &[0, 1, 28, 28]);
}

#[test]
fn normalize_gives_zero_mean_unit_std_with_the_sets_own_statistics() {
    let mut test = FashionMnist::load_mini(Split::Test, &DataSource::default()).unwrap();
    let (mean, std) = test.pixel_mean_std();
    // Close to the published full-training-set values.
    let (usual_mean, usual_std) = DatasetKind::FashionMnistMini.mean_std();
    assert!((mean - usual_mean as f64).abs() < 0.01 && (std - usual_std as f64).abs() < 0.01);
    test.normalize(mean as f32, std as f32).unwrap();
    let (m, s) = test.pixel_mean_std();
    assert!(m.abs() < 1e-5 && (s - 1.0).abs() < 1e-5, "{m} {s}");
    assert!(test.normalize(0.0, 0.0).is_err());
    assert!(test.normalize(f32::NAN, 1.0).is_err());
}

#[test]
fn subset_take_select_and_validation_split_keep_examples_intact() {
    let test = FashionMnist::load_mini(Split::Test, &DataSource::default()).unwrap();
    let sub = test.subset(10..20).unwrap();
    assert_eq!(sub.len(), 10);
    assert_eq!(sub.image(0).unwrap(), test.image(10).unwrap());
    assert!(test.subset(1990..2001).is_err());
    assert_eq!(test.take(5000).len(), 2000);
    assert_eq!(test.take(3).labels(), &test.labels()[..3]);
    assert_eq!(
        test.select(&[7, 7]).unwrap().labels(),
        &[test.labels()[7]; 2]
    );
    let (train, val) = test.split_validation(500).unwrap();
    assert_eq!((train.len(), val.len()), (1500, 500));
    assert_eq!(
        train,
        test.take(1500),
        "the examples before the split, in order"
    );
    assert_eq!(
        val,
        test.subset(1500..2000).unwrap(),
        "the last 500, in order"
    );
    let total: Vec<usize> = train
        .class_counts()
        .iter()
        .zip(val.class_counts())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(total, test.class_counts());
    for refused in [0, 2000, 2001] {
        let e = test.split_validation(refused).unwrap_err().to_string();
        assert!(e.contains(&format!("split of {refused}")), "{e}");
    }
}

#[test]
fn an_epoch_of_batches_covers_the_mini_test_set_once() {
    let test = FashionMnist::load_mini(Split::Test, &DataSource::default()).unwrap();
    let batches: Vec<_> = test.batches(128, 3, 0, LastBatch::Keep).unwrap().collect();
    assert_eq!(batches.len(), 16);
    assert_eq!(batches[15].labels.len(), 2000 - 15 * 128);
    let mut counts = [0usize; 10];
    batches
        .iter()
        .flat_map(|b| &b.labels)
        .for_each(|&l| counts[l] += 1);
    assert_eq!(counts.to_vec(), test.class_counts());
    assert_eq!(test.batches(128, 3, 0, LastBatch::Drop).unwrap().len(), 15);
    assert!(test.batches(0, 3, 0, LastBatch::Keep).is_err());
}
