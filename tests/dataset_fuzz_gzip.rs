//! Fuzz-style tests of the gzip and label cases (issue 14 §4), seeded:
//! - a file split into 1–6 gzip members at random points, at random compression levels, reads
//!   back byte for byte, as `zcat` and Python's `gzip` read it;
//! - random bytes after the last member are refused as junk, naming the file;
//! - random flips and truncations of a multi-member file never panic, and whatever loads is
//!   exactly the original;
//! - random label sets load exactly when they are 0..K−1 with every class present, or when the
//!   number of classes is stated and every label is below it; every refusal names the file.

use flate2::{Compression, write::GzEncoder};
use rand::RngExt;
use std::io::Write;
use std::path::Path;
use tekfac::dataset::idx::{encode_idx, parse_idx};
use tekfac::dataset::{self, DataSource, Split};
use tekfac::tensor::{Rng, seeded_rng};

const IMAGES: &str = "train-images-idx3-ubyte";
const LABELS: &str = "train-labels-idx1-ubyte";

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// IDX content of `n` 28×28 images of seeded noise (compressible enough to need deflate
/// blocks of every kind).
fn images(n: usize, rng: &mut Rng) -> Vec<u8> {
    let pixels: Vec<u8> = (0..n * 784)
        .map(|i| {
            if i % 7 < 3 {
                0
            } else {
                rng.random_range(0..=255u8)
            }
        })
        .collect();
    encode_idx(&[n, 28, 28], &pixels).unwrap()
}

/// `content` cut at random points into members, each gzip-compressed, concatenated.
fn members(content: &[u8], rng: &mut Rng) -> (Vec<u8>, usize) {
    let count = rng.random_range(1..=6);
    let mut cuts: Vec<usize> = (1..count)
        .map(|_| rng.random_range(0..=content.len()))
        .collect();
    cuts.extend([0, content.len()]);
    cuts.sort_unstable();
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        out.extend(gzip(&content[w[0]..w[1]], rng.random_range(0..=9)));
    }
    (out, count)
}

#[test]
fn members_split_at_random_points_read_back_exactly() {
    let mut rng = seeded_rng(14);
    for case in 0..60 {
        let content = images(rng.random_range(0..40), &mut rng);
        let (gz, count) = members(&content, &mut rng);
        let idx = parse_idx(&gz, "cat.gz")
            .unwrap_or_else(|e| panic!("case {case}: {count} members: {e}"));
        assert_eq!(idx.content(), &content[..], "case {case}: {count} members");
    }
}

#[test]
fn junk_after_the_last_member_is_refused_and_named() {
    let mut rng = seeded_rng(15);
    for case in 0..60 {
        let content = images(rng.random_range(1..20), &mut rng);
        let (mut gz, _) = members(&content, &mut rng);
        let junk_len = rng.random_range(1..64);
        // NOTE: a first byte of 0x1f would start another (corrupt) member; that is case
        // `flips_and_truncations_…` below.
        gz.push(rng.random_range(0..0x1fu8));
        gz.extend((1..junk_len).map(|_| rng.random_range(0..=255u8)));
        let err = parse_idx(&gz, "junk.gz").unwrap_err().to_string();
        assert!(
            err.contains("junk.gz: ") && err.contains("junk after the gzip stream"),
            "case {case}: {err}"
        );
    }
}

#[test]
fn flips_and_truncations_of_members_never_panic_and_never_load_garbage() {
    let mut rng = seeded_rng(16);
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..200 {
        let content = images(rng.random_range(1..20), &mut rng);
        let (mut gz, _) = members(&content, &mut rng);
        match rng.random_range(0..3) {
            0 => gz.truncate(rng.random_range(0..gz.len())),
            1 => {
                for _ in 0..rng.random_range(1..=3) {
                    let at = rng.random_range(0..gz.len());
                    gz[at] ^= rng.random_range(1..=255u8);
                }
            }
            _ => {
                let next = gzip(&[1, 2, 3], 6);
                gz.extend_from_slice(&next[..rng.random_range(1..next.len())]);
            }
        }
        match parse_idx(&gz, "mutated.gz") {
            // NOTE: a flip in a member header's time or OS byte changes nothing decoded.
            Ok(idx) => {
                assert_eq!(idx.content(), &content[..], "case {case}");
                loaded += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("mutated.gz: "), "case {case}: {e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 150, "only {refused} of 200 mutations refused");
    println!("{loaded} loaded (unchanged content), {refused} refused");
}

/// Writes a training split of `labels.len()` images with these labels into a new folder.
fn labelled_folder(labels: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let n = labels.len();
    let images = encode_idx(&[n, 2, 2], &vec![9u8; n * 4]).unwrap();
    std::fs::write(dir.path().join(IMAGES), images).unwrap();
    std::fs::write(dir.path().join(LABELS), encode_idx(&[n], labels).unwrap()).unwrap();
    dir
}

fn load(dir: &Path, classes: Option<usize>) -> tekfac::Result<tekfac::dataset::Dataset> {
    let source = DataSource {
        classes,
        ..DataSource::default()
    };
    dataset::load(&format!("idx:{}", dir.display()), Split::Train, &source)
}

#[test]
fn random_label_sets_load_exactly_when_they_name_every_class() {
    let mut rng = seeded_rng(17);
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..300 {
        let k = rng.random_range(1..=12usize);
        let n = rng.random_range(1..60);
        let mut labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..k) as u8).collect();
        if rng.random_bool(0.3) {
            let at = rng.random_range(0..n);
            labels[at] = rng.random_range(0..=255u8);
        }
        let stated = rng.random_bool(0.3).then(|| rng.random_range(1..=256usize));
        let max = *labels.iter().max().unwrap() as usize;
        let all_present = (0..=max).all(|c| labels.contains(&(c as u8)));
        let expect = match stated {
            Some(s) => (max < s).then_some(s),
            None => all_present.then_some(max + 1),
        };
        let dir = labelled_folder(&labels);
        match (load(dir.path(), stated), expect) {
            (Ok(data), Some(classes)) => {
                assert_eq!(data.classes(), classes, "case {case}");
                loaded += 1;
            }
            (Err(e), None) => {
                let file = dir.path().join(LABELS).display().to_string();
                assert!(e.to_string().contains(&file), "case {case}: {e}");
                refused += 1;
            }
            (got, _) => panic!("case {case}: labels {labels:?}, stated {stated:?}: {got:?}"),
        }
    }
    assert!(
        loaded > 50 && refused > 50,
        "{loaded} loaded, {refused} refused"
    );
}

#[test]
fn one_stray_label_names_the_file_the_gap_and_the_way_out() {
    let mut labels: Vec<u8> = (0..50).map(|i| (i % 10) as u8).collect();
    labels[17] = 255;
    let dir = labelled_folder(&labels);
    let err = load(dir.path(), None).unwrap_err().to_string();
    let file = dir.path().join(LABELS).display().to_string();
    assert!(err.contains(&file), "{err}");
    assert!(
        err.contains("largest is 255") && err.contains("10–254"),
        "{err}"
    );
    assert!(err.contains("--classes 256"), "{err}");
    assert_eq!(load(dir.path(), Some(256)).unwrap().classes(), 256);
}
