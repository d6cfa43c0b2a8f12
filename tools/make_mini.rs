//! Rebuilds the embedded subset `data/fashion-mnist-mini/` from full Fashion-MNIST: the first
//! 10,000 training and the first 2,000 test images and labels, as IDX, gzip level 9.
//!
//! Run: cargo run --release --example make_mini -- /usr/share/datasets/fashion-mnist data/fashion-mnist-mini
//!
//! The output is deterministic (gzip header without name or time), so a rebuild reproduces the
//! committed files byte for byte; their content checksums are in `data/README.md` and in
//! `tekfac::dataset::checksum`.

use flate2::{Compression, GzBuilder};
use std::io::Write;
use std::path::{Path, PathBuf};
use tekfac::dataset::idx::{encode_idx, read_idx};
use tekfac::dataset::{Split, checksum};
use tekfac::{Error, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, dest] = args.as_slice() else {
        return Err(Error::Data(
            "usage: make_mini <fashion-mnist dir> <output dir>".into(),
        ));
    };
    let (source, dest) = (Path::new(source), PathBuf::from(dest));
    std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
    for (split, n) in [(Split::Train, 10_000), (Split::Test, 2_000)] {
        for file in [split.images_file(), split.labels_file()] {
            let content = first_examples(&source.join(format!("{file}.gz")), n)?;
            let out = dest.join(format!("{file}.gz"));
            write_gz(&out, &content)?;
            println!(
                "{}  {}  {}",
                checksum::sha256_hex(&content),
                content.len(),
                out.display()
            );
        }
    }
    Ok(())
}

/// The IDX content of the first `n` examples of the file at `path`.
fn first_examples(path: &Path, n: usize) -> Result<Vec<u8>> {
    let idx = read_idx(path)?;
    let mut dims = idx.dims().to_vec();
    let per_example: usize = dims[1..].iter().product();
    dims[0] = n;
    let data = idx
        .data()
        .get(..n * per_example)
        .ok_or_else(|| Error::Data("too few examples".into()))?;
    encode_idx(&dims, data)
}

/// Writes `content` gzip-compressed at the best level, with a header free of names and times.
fn write_gz(path: &Path, content: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut gz = GzBuilder::new().mtime(0).write(file, Compression::best());
    gz.write_all(content).map_err(|e| Error::io(path, e))?;
    gz.finish()
        .map_err(|e| Error::io(path, e))?
        .sync_all()
        .map_err(|e| Error::io(path, e))
}
