//! Fuzz-style property test: random byte flips and truncations of real files (the first 200
//! images of the embedded test split, plain and gzip, and its labels) either load as a valid
//! dataset or return an error. Never a panic. 300 seeded cases, a few seconds in release mode.

use flate2::{Compression, write::GzEncoder};
use rand::RngExt;
use std::io::Write;
use tekfac::dataset::idx::{encode_idx, parse_idx, read_idx};
use tekfac::dataset::{Dataset, IdxDataset, Split};
use tekfac::tensor::{Rng, seeded_rng};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-mini");
const IMAGES: &str = "t10k-images-idx3-ubyte";
const LABELS: &str = "t10k-labels-idx1-ubyte";
const CASES: u64 = 300;
const EXAMPLES: usize = 200;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The plain IDX content of the first `EXAMPLES` images and labels of the embedded test split.
fn originals() -> (Vec<u8>, Vec<u8>) {
    let images = read_idx(format!("{MINI}/{IMAGES}.gz").as_ref()).unwrap();
    let labels = read_idx(format!("{MINI}/{LABELS}.gz").as_ref()).unwrap();
    (
        encode_idx(&[EXAMPLES, 28, 28], &images.data()[..EXAMPLES * 784]).unwrap(),
        encode_idx(&[EXAMPLES], &labels.data()[..EXAMPLES]).unwrap(),
    )
}

/// Flips 1–4 random bytes (half the time inside the first 24 bytes, where the header is) and/or
/// truncates at a random length.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let kind = rng.random_range(0..3);
    if kind != 1 {
        for _ in 0..rng.random_range(1..=4) {
            let span = if rng.random_bool(0.5) {
                out.len().min(24)
            } else {
                out.len()
            };
            let at = rng.random_range(0..span);
            out[at] ^= rng.random_range(1..=255u8);
        }
    }
    if kind != 0 {
        out.truncate(rng.random_range(0..=out.len()));
    }
    out
}

/// Everything a loaded dataset promises.
fn assert_valid(data: &Dataset) {
    assert_eq!(data.images().len(), data.len() * data.rows() * data.cols());
    assert!(data.labels().iter().all(|&l| (l as usize) < data.classes()));
    assert!(data.images().iter().all(|&x| (0.0..=1.0).contains(&x)));
    if !data.is_empty() {
        let b = data.batch(&[0, data.len() - 1]).unwrap();
        assert_eq!(b.images.dims(), &[2, 1, data.rows(), data.cols()]);
    }
}

#[test]
fn random_flips_and_truncations_never_panic() {
    let (images, labels) = originals();
    let mut rng = seeded_rng(2024);
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..CASES {
        let dir = tempfile::tempdir().unwrap();
        let gz = case % 2 == 1;
        let suffix = if gz { ".gz" } else { "" };
        let (mut img, mut lab) = if gz {
            (gzip(&images), gzip(&labels))
        } else {
            (images.clone(), labels.clone())
        };
        if case % 3 == 0 {
            lab = mutate(&lab, &mut rng);
        } else {
            img = mutate(&img, &mut rng);
        }
        std::fs::write(dir.path().join(format!("{IMAGES}{suffix}")), &img).unwrap();
        std::fs::write(dir.path().join(format!("{LABELS}{suffix}")), &lab).unwrap();
        match IdxDataset::load(dir.path(), Split::Test, 10) {
            Ok(data) => {
                assert_valid(&data);
                loaded += 1;
            }
            Err(e) => {
                assert!(
                    e.to_string().contains(&dir.path().display().to_string()),
                    "case {case}: {e}"
                );
                refused += 1;
            }
        }
    }
    println!("{loaded} mutated pairs loaded, {refused} refused");
    assert!(
        refused > CASES / 2,
        "most mutations must be caught, only {refused} were"
    );
    assert!(loaded > 0, "pixel flips in a plain file still load");
}

#[test]
fn parse_idx_survives_arbitrary_short_inputs() {
    let mut rng = seeded_rng(7);
    for _ in 0..2000 {
        let len = rng.random_range(0..40);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random_range(0..=255u8)).collect();
        if len >= 4 && rng.random_bool(0.7) {
            bytes[..3].copy_from_slice(&[0, 0, 8]);
            bytes[3] = rng.random_range(0..6);
        }
        if let Ok(idx) = parse_idx(&bytes, "random") {
            assert_eq!(idx.data().len(), idx.dims().iter().product::<usize>());
        }
    }
}
