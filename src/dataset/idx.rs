//! IDX reader and writer: the file format of MNIST and its relatives (Fashion-MNIST, KMNIST,
//! EMNIST).
//!
//! An IDX file is a big-endian header followed by the elements, row-major:
//!
//! ```text
//! 0x00 0x00 <type> <ndim>    type 0x08 = unsigned byte, the only type these data sets use
//! dim_0 … dim_{ndim-1}       u32 each
//! data                       dim_0 · … · dim_{ndim-1} bytes
//! ```
//!
//! A file may be gzip-compressed; that is detected from its first two bytes (`1f 8b`), not from
//! its name, and read member after member as `zcat` reads it (see [`super::gzip`]); bytes after
//! the last member are refused. The header is untrusted: before any body byte is read, the size it claims is checked
//! against what the file can hold (its length, or for gzip the largest possible expansion of its
//! length), and the body is read through a cap of that size plus one byte into a buffer that
//! grows only with bytes actually read. A lying header or a gzip bomb therefore cannot make the
//! reader allocate more than the file really holds.

use super::gzip::{GZIP_MAGIC, JunkAfterStream, Members};
use crate::error::{Error, Result};
use byteorder::{BigEndian, ByteOrder};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Element-type byte of unsigned bytes, the only one supported.
pub const TYPE_U8: u8 = 0x08;
/// The largest rank accepted in a header.
pub const MAX_DIMS: usize = 4;
/// Hard cap on the decompressed size of one file: 1 GiB, which the loaders turn into 4 GiB of
/// f32 pixels (EMNIST by-class, the largest MNIST-format set, is about 0.55 GiB). A header that
/// claims more is refused before anything is read.
pub const MAX_CONTENT_BYTES: u64 = 1 << 30;
/// Deflate expands at most about 1032:1, so a gzip file of `m` bytes holds at most this × `m`.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// A decoded IDX file: its dimensions and its whole decompressed content (header + data), which
/// is what the checksum table covers.
#[derive(Clone, Debug)]
pub struct IdxFile {
    dims: Vec<usize>,
    header_len: usize,
    content: Vec<u8>,
}

impl IdxFile {
    /// The dimensions from the header, e.g. `[60000, 28, 28]`.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The elements (the content after the header), row-major.
    pub fn data(&self) -> &[u8] {
        &self.content[self.header_len..]
    }

    /// The whole decompressed content, header included.
    pub fn content(&self) -> &[u8] {
        &self.content
    }
}

/// Reads and validates an IDX file, plain or gzip-compressed.
pub fn read_idx(path: &Path) -> Result<IdxFile> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let stored = file.metadata().map_err(|e| Error::io(path, e))?.len();
    decode(BufReader::new(file), stored, &path.display().to_string())
}

/// Validates IDX content held in memory (plain or gzip); `name` is used in error messages.
///
/// ```
/// use tekfac::dataset::idx::{encode_idx, parse_idx};
/// let bytes = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
/// let idx = parse_idx(&bytes, "example").unwrap();
/// assert_eq!(idx.dims(), &[2, 3]);
/// assert!(parse_idx(&bytes[..10], "example").unwrap_err().to_string().contains("truncated"));
/// ```
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxFile> {
    decode(bytes, bytes.len() as u64, name)
}

/// Encodes unsigned bytes with dimensions `dims` as an (uncompressed) IDX file.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let fits = dims.iter().all(|&d| u32::try_from(d).is_ok());
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if dims.is_empty() || dims.len() > MAX_DIMS || !fits || count != Some(data.len()) {
        return Err(Error::Data(format!(
            "encode_idx: dims {dims:?} do not describe {} bytes with 1 to {MAX_DIMS} u32 dimensions",
            data.len()
        )));
    }
    let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        // NOTE: every d fits a u32 (checked above).
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Sniffs gzip, then reads the content with the size checks described in the module docs.
fn decode(mut reader: impl BufRead, stored: u64, name: &str) -> Result<IdxFile> {
    let head = reader.fill_buf().map_err(|e| Error::io(name, e))?;
    if head.starts_with(&GZIP_MAGIC) {
        let bound = stored.saturating_mul(MAX_DEFLATE_RATIO);
        read_content(Members::new(reader), bound, name, true)
    } else {
        read_content(reader, stored, name, false)
    }
}

/// Reads header and body; `bound` is the most content the file can really hold.
fn read_content(mut reader: impl Read, bound: u64, name: &str, gzip: bool) -> Result<IdxFile> {
    let bad = |msg: String| Error::Data(format!("{name}: {msg}"));
    let mut content = vec![0u8; 4];
    read_header_part(&mut reader, &mut content, name, gzip, "magic number")?;
    let magic = BigEndian::read_u32(&content);
    let (elem_type, ndim) = (content[2], content[3] as usize);
    if content[..2] != [0, 0] {
        return Err(bad(format!(
            "wrong magic number 0x{magic:08x}: not an IDX file (expected 0x0000TTNN)"
        )));
    }
    if elem_type != TYPE_U8 {
        return Err(bad(format!(
            "element type 0x{elem_type:02x} is not supported; only unsigned bytes (0x08)"
        )));
    }
    if ndim == 0 || ndim > MAX_DIMS {
        return Err(bad(format!(
            "header has {ndim} dimensions; expected 1 to {MAX_DIMS}"
        )));
    }
    content.resize(4 + 4 * ndim, 0);
    read_header_part(&mut reader, &mut content[4..], name, gzip, "dimensions")?;
    let dims: Vec<usize> = content[4..]
        .chunks(4)
        .map(|c| BigEndian::read_u32(c) as usize)
        .collect();
    let header_len = content.len();
    let body = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let total = body.and_then(|b| b.checked_add(header_len as u64));
    let (body, total) = match (body, total) {
        (Some(b), Some(t)) if t <= MAX_CONTENT_BYTES => (b, t),
        _ => {
            return Err(bad(format!(
                "dimensions {dims:?} exceed the {MAX_CONTENT_BYTES}-byte limit"
            )));
        }
    };
    if total > bound {
        let what = if gzip {
            "a gzip stream of that size can hold at most"
        } else {
            "the file holds only"
        };
        return Err(bad(format!(
            "truncated: dimensions {dims:?} need {total} bytes, but {what} {bound}"
        )));
    }
    // NOTE: capacity is bounded by the real file size, never by the header alone: for gzip,
    // about 8× the compressed size (the buffer grows further only as bytes really arrive).
    let capacity = if gzip { body.min(bound / 128) } else { body };
    reserve(&mut content, capacity as usize, name)?;
    let got = read_capped(&mut reader, &mut content, body + 1, name, gzip)?;
    if got < body {
        return Err(bad(format!(
            "truncated: dimensions {dims:?} need {body} data bytes, found {got}"
        )));
    }
    if got > body {
        return Err(bad(format!(
            "trailing data: longer than the {body} data bytes of dimensions {dims:?}"
        )));
    }
    Ok(IdxFile {
        dims,
        header_len,
        content,
    })
}

/// Grows `buf` by `extra` bytes of capacity, or says that the memory is not there (instead of
/// the abort of a failed allocation).
fn reserve(buf: &mut Vec<u8>, extra: usize, name: &str) -> Result<()> {
    buf.try_reserve(extra).map_err(|_| {
        Error::Data(format!(
            "{name}: not enough memory to read {} more bytes",
            buf.len() + extra
        ))
    })
}

/// Appends at most `cap` bytes of `reader` to `buf`, growing it with [`reserve`]; returns the
/// number of bytes read.
fn read_capped(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    cap: u64,
    name: &str,
    gzip: bool,
) -> Result<u64> {
    const CHUNK: usize = 1 << 20;
    let mut got = 0u64;
    let mut chunk = vec![0u8; CHUNK];
    while got < cap {
        let want = (cap - got).min(CHUNK as u64) as usize;
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e, name, gzip)),
        };
        if buf.capacity() - buf.len() < n {
            reserve(buf, buf.len().max(n), name)?;
        }
        buf.extend_from_slice(&chunk[..n]);
        got += n as u64;
    }
    Ok(got)
}

/// Fills `buf` from the header, naming `part` when the file ends first.
fn read_header_part(
    reader: &mut impl Read,
    buf: &mut [u8],
    name: &str,
    gzip: bool,
    part: &str,
) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Data(format!(
            "{name}: truncated: the file ends inside the header ({part})"
        )),
        _ => read_error(e, name, gzip),
    })
}

/// A read error: from a gzip stream it means corrupt data (or junk after it); otherwise it is
/// plain I/O.
fn read_error(e: std::io::Error, name: &str, gzip: bool) -> Error {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<JunkAfterStream>())
    {
        Error::Data(format!("{name}: {e}"))
    } else if gzip {
        Error::Data(format!("{name}: corrupt gzip stream: {e}"))
    } else {
        Error::io(name, e)
    }
}
