//! Download of a data set's four files, verified before they are kept.
//!
//! For each file `F` in the checksum table, in turn from each mirror until one works:
//! `GET <mirror>/F.gz` → `<dest>/F.gz.part` → decode and check the SHA-256 of its decompressed
//! content → rename to `<dest>/F.gz`. A failed or corrupt download is deleted, so only verified
//! files ever carry the final name. A file already present and verified is not fetched again.
//! The library never prints: each transfer reports [`Progress`] to the caller, and the `tekfac
//! download` command draws it as a progress bar.

use super::checksum;
use super::idx::read_idx;
use super::kind::DatasetKind;
use crate::error::{Error, Result};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The usual public mirrors of MNIST (PyTorch's S3 bucket, then TensorFlow's GCS bucket).
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// The public mirror of Fashion-MNIST (Zalando's S3 website).
pub const FASHION_MNIST_MIRRORS: [&str; 1] =
    ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];

/// Largest response accepted for one file (the biggest real one is about 26 MB).
pub const MAX_DOWNLOAD_BYTES: u64 = 64 << 20;

/// The default mirrors of a data set (none for the embedded subset).
pub fn default_mirrors(kind: DatasetKind) -> &'static [&'static str] {
    match kind {
        DatasetKind::Mnist => &MNIST_MIRRORS,
        DatasetKind::FashionMnist => &FASHION_MNIST_MIRRORS,
        DatasetKind::FashionMnistMini => &[],
    }
}

/// What a download reports while it runs, for the caller to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A transfer starts: the file's URL and its length, when the server sends one.
    Started {
        /// The URL being fetched.
        url: String,
        /// The length announced by the server, if any.
        total: Option<u64>,
    },
    /// The bytes of the current transfer received so far.
    Received(u64),
    /// The current transfer ended, whether it succeeded or not.
    Finished,
}

/// Downloads the four files of data set `name` into `<dest_root>/<name>/` and returns that
/// folder. `mirrors` are base URLs tried in order (empty: [`default_mirrors`]); `progress` is
/// called with each transfer's [`Progress`] (`|_| {}` ignores it). Errors name every mirror tried
/// and why it failed.
pub fn download(
    name: &str,
    dest_root: &Path,
    mirrors: &[&str],
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf> {
    let kind: DatasetKind = name.parse()?;
    let mirrors = if mirrors.is_empty() {
        default_mirrors(kind)
    } else {
        mirrors
    };
    if mirrors.is_empty() {
        return Err(Error::Data(format!(
            "download: no mirror is known for {kind}; give one"
        )));
    }
    let dest = dest_root.join(kind.name());
    fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
    let agent = agent();
    for known in checksum::files_of(kind.name()) {
        fetch_file(
            &agent,
            kind.name(),
            known.file,
            &dest,
            mirrors,
            &mut progress,
        )?;
    }
    Ok(dest)
}

/// An HTTP agent with timeouts, so an unreachable mirror fails instead of hanging.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(900)))
        .build()
        .into()
}

/// Gets one verified file `<dest>/<file>.gz`, trying each mirror in turn.
fn fetch_file(
    agent: &ureq::Agent,
    dataset: &str,
    file: &str,
    dest: &Path,
    mirrors: &[&str],
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let target = dest.join(format!("{file}.gz"));
    if target.is_file() && verify(&target, dataset, file).is_ok() {
        return Ok(());
    }
    let part = dest.join(format!("{file}.gz.part"));
    let mut failures = Vec::new();
    let mut unreachable = 0;
    for mirror in mirrors {
        let url = format!("{}/{file}.gz", mirror.trim_end_matches('/'));
        let fetched = fetch_to(agent, &url, &part, progress);
        unreachable += matches!(fetched, Err(Fetch::Unreachable(_))) as usize;
        match fetched
            .map_err(Fetch::into_error)
            .and_then(|()| verify(&part, dataset, file))
        {
            Ok(()) => return fs::rename(&part, &target).map_err(|e| Error::io(&target, e)),
            Err(e) => {
                // NOTE: a partial or corrupt download must not stay behind.
                let _ = fs::remove_file(&part);
                failures.push(format!("  - {url}: {}", reason(&e)));
            }
        }
    }
    let hint = if unreachable == mirrors.len() {
        "no mirror could be reached: are you offline?\n"
    } else {
        ""
    };
    Err(Error::Data(format!(
        "download of {dataset}/{file}.gz failed from every mirror:\n{}\n{hint}\
         Alternatively, copy the files into {} by hand.",
        failures.join("\n"),
        dest.display()
    )))
}

/// The message of `e` without the `data: ` prefix its `Display` adds.
fn reason(e: &Error) -> String {
    match e {
        Error::Data(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// Why a fetch failed: the mirror could not be reached, or something else went wrong.
enum Fetch {
    Unreachable(String),
    Failed(Error),
}

impl Fetch {
    fn into_error(self) -> Error {
        match self {
            Fetch::Unreachable(msg) => Error::Data(msg),
            Fetch::Failed(e) => e,
        }
    }
}

/// Streams `url` into `part` (created or truncated), reporting its progress.
fn fetch_to(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    progress: &mut dyn FnMut(Progress),
) -> std::result::Result<(), Fetch> {
    let response = agent
        .get(url)
        .header("Accept-Encoding", "identity")
        .call()
        .map_err(|e| match e {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => {
                Fetch::Unreachable(format!("cannot reach the mirror: {e}"))
            }
            e => Fetch::Failed(Error::Data(format!("request failed: {e}"))),
        })?;
    let length = response.body().content_length();
    if length.is_some_and(|n| n > MAX_DOWNLOAD_BYTES) {
        return Err(Fetch::Failed(Error::Data(format!(
            "response of {length:?} bytes exceeds the limit"
        ))));
    }
    let reader = response
        .into_body()
        .into_with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .reader();
    let mut out = fs::File::create(part).map_err(|e| Fetch::Failed(Error::io(part, e)))?;
    progress(Progress::Started {
        url: url.to_string(),
        total: length,
    });
    let mut counted = Counted {
        inner: reader,
        received: 0,
        progress: &mut *progress,
    };
    let copied = std::io::copy(&mut counted, &mut out);
    progress(Progress::Finished);
    copied.map_err(|e| Fetch::Failed(Error::Data(format!("transfer failed: {e}"))))?;
    out.sync_all()
        .map_err(|e| Fetch::Failed(Error::io(part, e)))
}

/// Decodes a downloaded file and checks its content against the table.
fn verify(path: &Path, dataset: &str, file: &str) -> Result<()> {
    let idx = read_idx(path)?;
    checksum::verify(dataset, file, &path.display().to_string(), idx.content())
}

/// A reader that reports the bytes read through it so far as [`Progress::Received`].
struct Counted<'a, R> {
    inner: R,
    received: u64,
    progress: &'a mut dyn FnMut(Progress),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.received += n as u64;
        (self.progress)(Progress::Received(self.received));
        Ok(n)
    }
}
