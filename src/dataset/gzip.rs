//! Gzip files read as `zcat` and Python's `gzip` read them: a file is a series of members
//! (RFC 1952 §2.2), each decoded in turn, so `cat a.gz b.gz` holds the content of `a` followed
//! by that of `b`. Anything after the last member that is not another member is junk and an
//! error, not silently ignored.

use flate2::bufread::GzDecoder;
use std::io::{self, BufRead, Read};

/// The two bytes every gzip member starts with.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The error for bytes after the last member that cannot start another one.
#[derive(Debug)]
pub(crate) struct JunkAfterStream {
    members: usize,
    first: u8,
}

impl std::fmt::Display for JunkAfterStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "junk after the gzip stream: the bytes after its {} member(s) are not another gzip \
             member (they start with 0x{:02x}, not 0x1f 0x8b)",
            self.members, self.first
        )
    }
}

impl std::error::Error for JunkAfterStream {}

/// A [`Read`] over the decompressed content of every member of a gzip file.
pub(crate) struct Members<R: BufRead> {
    /// The member being decoded; `None` only while moving to the next one.
    current: Option<GzDecoder<R>>,
    /// Members started so far (1 after [`Members::new`]).
    count: usize,
}

impl<R: BufRead> Members<R> {
    /// Starts decoding the first member of `reader`.
    pub(crate) fn new(reader: R) -> Self {
        Members {
            current: Some(GzDecoder::new(reader)),
            count: 1,
        }
    }

    /// After a member ends: starts the next one, or reports the end of the file (`false`), or
    /// errors on bytes that cannot start a member.
    fn next_member(&mut self) -> io::Result<bool> {
        let Some(mut done) = self.current.take() else {
            return Ok(false);
        };
        let rest = done.get_mut().fill_buf()?;
        if rest.is_empty() {
            return Ok(false);
        }
        // NOTE: only the first byte is checked here; a buffer may end between the two magic
        // bytes, and the next member's header parser checks the second one.
        if rest[0] != GZIP_MAGIC[0] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                JunkAfterStream {
                    members: self.count,
                    first: rest[0],
                },
            ));
        }
        self.current = Some(GzDecoder::new(done.into_inner()));
        self.count += 1;
        Ok(true)
    }
}

impl<R: BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(member) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if !self.next_member()? {
                return Ok(0);
            }
        }
    }
}
