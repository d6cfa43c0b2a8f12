//! One test per malformed-input failure mode: each error names the file and the problem.

use flate2::{Compression, write::GzEncoder};
use std::io::Write;
use std::path::{Path, PathBuf};
use tekfac::dataset::idx::{encode_idx, parse_idx};
use tekfac::dataset::{DataSource, IdxDataset, Mnist, Split};

const IMAGES: &str = "t10k-images-idx3-ubyte";
const LABELS: &str = "t10k-labels-idx1-ubyte";

/// A valid test split of `n` 3×2 images with labels `i % 10`, as IDX content.
fn valid_pair(n: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * 6).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (
        encode_idx(&[n, 3, 2], &pixels).unwrap(),
        encode_idx(&[n], &labels).unwrap(),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes `images` and `labels` (file names with `suffix`) into a new temp folder.
fn write_pair(images: &[u8], labels: &[u8], suffix: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (img, lab) = (
        dir.path().join(format!("{IMAGES}{suffix}")),
        dir.path().join(format!("{LABELS}{suffix}")),
    );
    std::fs::write(&img, images).unwrap();
    std::fs::write(&lab, labels).unwrap();
    (dir, img, lab)
}

/// Loads the pair and returns the error message, asserting it names `file` and `problem`.
fn load_error(images: &[u8], labels: &[u8], suffix: &str, bad: usize, problem: &str) -> String {
    let (dir, img, lab) = write_pair(images, labels, suffix);
    let err = IdxDataset::load(dir.path(), Split::Test, 10)
        .unwrap_err()
        .to_string();
    let file = [&img, &lab][bad];
    assert!(
        err.contains(&file.display().to_string()),
        "no file name in: {err}"
    );
    assert!(err.contains(problem), "no {problem:?} in: {err}");
    err
}

#[test]
fn valid_pair_loads_plain_and_gzipped() {
    let (images, labels) = valid_pair(12);
    for (suffix, img, lab) in [
        ("", images.clone(), labels.clone()),
        (".gz", gzip(&images), gzip(&labels)),
    ] {
        let (dir, _, _) = write_pair(&img, &lab, suffix);
        let data = IdxDataset::load(dir.path(), Split::Test, 10).unwrap();
        assert_eq!((data.len(), data.rows(), data.cols()), (12, 3, 2));
        assert_eq!(data.image(1).unwrap()[0], 222.0 / 255.0);
    }
}

#[test]
fn wrong_magic_number() {
    let (mut images, labels) = valid_pair(4);
    images[..4].copy_from_slice(b"\x89PNG");
    load_error(&images, &labels, "", 0, "wrong magic number 0x89504e47");
}

#[test]
fn unsupported_element_type() {
    let (images, mut labels) = valid_pair(4);
    labels[2] = 0x0d; // float
    load_error(
        &images,
        &labels,
        "",
        1,
        "element type 0x0d is not supported",
    );
}

#[test]
fn bad_number_of_dimensions() {
    let (mut images, labels) = valid_pair(4);
    images[3] = 9;
    load_error(&images, &labels, "", 0, "header has 9 dimensions");
    let flat = encode_idx(&[24], &[0; 24]).unwrap();
    load_error(
        &flat,
        &labels,
        "",
        0,
        "wrong dimensions [24]; expected [n, rows, cols]",
    );
    load_error(
        &valid_pair(4).0,
        &valid_pair(4).0,
        "",
        1,
        "wrong dimensions [4, 3, 2]; expected [n]",
    );
}

#[test]
fn zero_sized_images() {
    let (_, labels) = valid_pair(4);
    let empty = encode_idx(&[4, 0, 2], &[]).unwrap();
    load_error(&empty, &labels, "", 0, "wrong dimensions [4, 0, 2]");
}

#[test]
fn truncated_plain_file() {
    let (images, labels) = valid_pair(4);
    load_error(
        &images[..images.len() - 1],
        &labels,
        "",
        0,
        "truncated: dimensions [4, 3, 2] need 40 bytes, but the file holds only 39",
    );
    load_error(
        &images[..6],
        &labels,
        "",
        0,
        "truncated: the file ends inside the header (dimensions)",
    );
    load_error(
        &images,
        &[],
        "",
        1,
        "truncated: the file ends inside the header (magic number)",
    );
}

#[test]
fn truncated_gzip_file() {
    let (images, labels) = valid_pair(50);
    let gz = gzip(&images);
    let err = load_error(&gz[..gz.len() - 12], &gzip(&labels), ".gz", 0, "");
    assert!(
        err.contains("corrupt gzip stream") || err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn trailing_data_after_the_elements() {
    let (mut images, labels) = valid_pair(4);
    images.push(0);
    load_error(
        &images,
        &labels,
        "",
        0,
        "trailing data: longer than the 24 data bytes",
    );
    load_error(&gzip(&images), &gzip(&labels), ".gz", 0, "trailing data");
}

#[test]
fn count_mismatch_between_images_and_labels() {
    let (images, _) = valid_pair(5);
    let (_, labels) = valid_pair(4);
    let err = load_error(&images, &labels, "", 0, "count mismatch");
    assert!(
        err.contains("has 5 images") && err.contains("has 4 labels") && err.contains(LABELS),
        "{err}"
    );
}

#[test]
fn label_out_of_range() {
    let (images, mut labels) = valid_pair(12);
    labels[8 + 3] = 10;
    load_error(
        &images,
        &labels,
        "",
        1,
        "label 10 at index 3 is out of range for 10 classes",
    );
}

#[test]
fn corrupt_gzip_stream() {
    let (images, labels) = valid_pair(200);
    let mut gz = gzip(&images);
    let mid = gz.len() / 2;
    gz[mid..mid + 8].iter_mut().for_each(|b| *b ^= 0x5a);
    let mut bad_crc = gzip(&labels);
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 1;
    load_error(&gz, &gzip(&labels), ".gz", 0, "corrupt gzip stream");
    load_error(&gzip(&images), &bad_crc, ".gz", 1, "corrupt gzip stream");
}

#[test]
fn header_claiming_more_than_the_file_holds_is_refused_before_allocating() {
    let (_, labels) = valid_pair(4);
    // 60000 × 28 × 28 claimed in a 40-byte file, and a 4-billion-image claim that exceeds the cap.
    let mut lying = valid_pair(4).0;
    lying[4..16].copy_from_slice(&[0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28]);
    load_error(
        &lying,
        &labels,
        "",
        0,
        "truncated: dimensions [60000, 28, 28] need 47040016 bytes",
    );
    load_error(
        &gzip(&lying),
        &gzip(&labels),
        ".gz",
        0,
        "a gzip stream of that size can hold at most",
    );
    lying[4..8].copy_from_slice(&[0xff; 4]);
    load_error(&lying, &labels, "", 0, "exceed the 1073741824-byte limit");
    // 2,700,000 images (2.1 GB), which a 2 MB gzip of zeros could truthfully hold: refused by
    // the documented cap (idx::MAX_CONTENT_BYTES), not by an aborted allocation.
    lying[4..8].copy_from_slice(&2_700_000u32.to_be_bytes());
    load_error(
        &gzip(&lying),
        &gzip(&labels),
        ".gz",
        0,
        "exceed the 1073741824-byte limit",
    );
}

#[test]
fn gzip_bomb_is_cut_at_the_header_size() {
    // 64 MB of zeros behind a header that claims 24 bytes: reading stops after 25.
    let mut bomb = encode_idx(&[4, 3, 2], &[0; 24]).unwrap();
    bomb.resize(64 << 20, 0);
    let err = parse_idx(&gzip(&bomb), "bomb.gz").unwrap_err().to_string();
    assert!(err.contains("bomb.gz: trailing data"), "{err}");
}

#[test]
fn checksum_mismatch_names_the_file_and_can_be_turned_off() {
    let (images, labels) = valid_pair(10);
    let (dir, img, _) = write_pair(&gzip(&images), &gzip(&labels), ".gz");
    let source = DataSource::from_dir(dir.path());
    let err = Mnist::load(Split::Test, &source).unwrap_err().to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains(&img.display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "{err}"
    );
    let unverified = DataSource {
        verify: false,
        ..source
    };
    assert_eq!(Mnist::load(Split::Test, &unverified).unwrap().len(), 10);
}

#[test]
fn missing_files_list_the_folder_and_what_is_missing() {
    let (images, _) = valid_pair(4);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(IMAGES), images).unwrap();
    let err = IdxDataset::load(dir.path(), Split::Test, 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&dir.path().display().to_string())
            && err.contains("t10k-labels-idx1-ubyte[.gz] is missing"),
        "{err}"
    );
    let nowhere = Path::new("/nonexistent/tekfac");
    let err = IdxDataset::load(nowhere, Split::Train, 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/tekfac: no such folder"), "{err}");
}
