//! Download against a small HTTP/1.1 server that the test starts on 127.0.0.1, serving files
//! from a temp folder. Nothing here contacts any other address.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tekfac::dataset::download::{Progress, download};
use tekfac::dataset::idx::{encode_idx, read_idx};
use tekfac::dataset::{DataSource, FashionMnist, Mnist, Split};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-mini");
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A loopback HTTP server over `root` that stops when dropped (or after 120 s on its own).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    paths: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, paths) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (stop2, paths2, root) = (stop.clone(), paths.clone(), root.to_path_buf());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &root, &paths2),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            stop,
            paths,
            thread: Some(thread),
        }
    }

    fn url(&self, dir: &str) -> String {
        format!("http://127.0.0.1:{}/{dir}/", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request: the file under `root` (200) or 404, then closes the connection.
fn serve(stream: TcpStream, root: &Path, paths: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    let _ = reader.read_line(&mut request);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    paths.lock().unwrap().push(path.clone());
    let safe = Path::new(&path)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let body = if safe {
        std::fs::read(root.join(&path)).ok()
    } else {
        None
    };
    let mut out = &stream;
    let _ = match body {
        Some(body) => write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n", body.len())
            .and_then(|()| out.write_all(&body)),
        None => write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
    let _ = out.flush();
}

/// A temp folder with mirror `good/` (the embedded files) and mirror `bad/` (the same, but
/// `t10k-labels` with one label changed: valid IDX and gzip, wrong checksum).
fn mirrors() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for dir in ["good", "bad"] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
        for f in FILES {
            std::fs::copy(
                format!("{MINI}/{f}.gz"),
                root.path().join(dir).join(format!("{f}.gz")),
            )
            .unwrap();
        }
    }
    let labels = read_idx(format!("{MINI}/t10k-labels-idx1-ubyte.gz").as_ref()).unwrap();
    let mut changed = labels.data().to_vec();
    changed[0] = (changed[0] + 1) % 10;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&encode_idx(&[changed.len()], &changed).unwrap())
        .unwrap();
    std::fs::write(
        root.path().join("bad/t10k-labels-idx1-ubyte.gz"),
        enc.finish().unwrap(),
    )
    .unwrap();
    root
}

/// Names of the entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn downloads_verifies_and_skips_files_already_present() {
    let (root, dest) = (mirrors(), tempfile::tempdir().unwrap());
    let server = Server::start(root.path());
    let got = download(
        "fashion-mnist-mini",
        dest.path(),
        &[&server.url("good")],
        |_| {},
    )
    .unwrap();
    assert_eq!(got, dest.path().join("fashion-mnist-mini"));
    assert_eq!(listing(&got).len(), 4, "{:?}", listing(&got));
    let loaded = FashionMnist::load_mini(Split::Test, &DataSource::from_dir(&got)).unwrap();
    assert_eq!(
        loaded,
        FashionMnist::load_mini(Split::Test, &DataSource::default()).unwrap()
    );
    assert_eq!(server.requests().len(), 4);
    download(
        "fashion-mnist-mini",
        dest.path(),
        &[&server.url("good")],
        |_| {},
    )
    .unwrap();
    assert_eq!(
        server.requests().len(),
        4,
        "verified files are not fetched again"
    );
}

#[test]
fn each_transfer_reports_its_start_bytes_and_end() {
    let (root, dest) = (mirrors(), tempfile::tempdir().unwrap());
    let server = Server::start(root.path());
    let mut events = Vec::new();
    download(
        "fashion-mnist-mini",
        dest.path(),
        &[&server.url("good")],
        |e| events.push(e),
    )
    .unwrap();
    let transfers: Vec<&[Progress]> = events
        .split_inclusive(|e| *e == Progress::Finished)
        .collect();
    assert_eq!(transfers.len(), 4, "{events:?}");
    for transfer in transfers {
        let Progress::Started { url, total } = &transfer[0] else {
            panic!("a transfer opens with Started: {transfer:?}");
        };
        let file = url.rsplit('/').next().unwrap();
        let size = std::fs::metadata(root.path().join("good").join(file))
            .unwrap()
            .len();
        assert_eq!(*total, Some(size), "{url}");
        let received: Vec<u64> = transfer[1..transfer.len() - 1]
            .iter()
            .map(|e| match e {
                Progress::Received(n) => *n,
                other => panic!("unexpected {other:?} inside a transfer of {url}"),
            })
            .collect();
        assert!(received.is_sorted(), "{url}: {received:?}");
        assert_eq!(received.last(), Some(&size), "{url}: all bytes counted");
    }
}

#[test]
fn a_corrupt_file_is_rejected_and_the_next_mirror_used() {
    let (root, dest) = (mirrors(), tempfile::tempdir().unwrap());
    let server = Server::start(root.path());
    let got = download(
        "fashion-mnist-mini",
        dest.path(),
        &[&server.url("bad"), &server.url("good")],
        |_| {},
    )
    .unwrap();
    let requests = server.requests();
    assert!(requests.contains(&"bad/t10k-labels-idx1-ubyte.gz".to_string()));
    assert!(
        requests.contains(&"good/t10k-labels-idx1-ubyte.gz".to_string()),
        "{requests:?}"
    );
    assert_eq!(listing(&got).len(), 4);
    FashionMnist::load_mini(Split::Test, &DataSource::from_dir(&got)).unwrap();
}

#[test]
fn a_corrupt_file_from_the_only_mirror_is_not_left_behind() {
    let (root, dest) = (mirrors(), tempfile::tempdir().unwrap());
    let server = Server::start(root.path());
    let err = download(
        "fashion-mnist-mini",
        dest.path(),
        &[&server.url("bad")],
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains(&server.url("bad")),
        "{err}"
    );
    let names = listing(&dest.path().join("fashion-mnist-mini"));
    assert!(
        !names.iter().any(|n| n.starts_with("t10k-labels")),
        "corrupt file left behind: {names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
}

#[test]
fn missing_files_and_unreachable_mirrors_give_clear_errors() {
    let (root, dest) = (mirrors(), tempfile::tempdir().unwrap());
    let server = Server::start(root.path());
    let err = download(
        "fashion-mnist-mini",
        dest.path(),
        &[&server.url("nowhere")],
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("404"), "{err}");
    // A port nobody listens on: connection refused, as when offline.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = download(
        "fashion-mnist-mini",
        dest.path(),
        &[&format!("http://127.0.0.1:{closed}/")],
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("are you offline?") && err.contains("cannot reach the mirror"),
        "{err}"
    );
    let err = download("fashion-mnist-mini", dest.path(), &[], |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("no mirror is known"), "{err}");
    let err = download("cifar", dest.path(), &[], |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown data set \"cifar\""), "{err}");
    assert!(listing(&dest.path().join("fashion-mnist-mini")).is_empty());
}

#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn downloads_real_mnist_from_a_local_mirror() {
    let data = support::data::dir();
    let dest = tempfile::tempdir().unwrap();
    let server = Server::start(&data);
    let got = download("mnist", dest.path(), &[&server.url("mnist")], |_| {}).unwrap();
    assert_eq!(
        Mnist::load(Split::Test, &DataSource::from_dir(&got))
            .unwrap()
            .len(),
        10_000
    );
}
