//! The search order: explicit folder, `$TEKFAC_DATA_DIR/<name>/`, `./data/<name>/`, then the
//! data set's own extra folder, and an error that lists every place tried.
//!
//! NOTE: this changes the environment and the current folder, so it is the only test in its
//! binary (integration-test binaries run as separate processes).

use std::path::Path;
use tekfac::dataset::idx::encode_idx;
use tekfac::dataset::{DataSource, FashionMnist, Mnist, Split};

/// Writes a plain test split of `n` 2×2 images into `dir`.
fn write_split(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let images = encode_idx(&[n, 2, 2], &vec![7; n * 4]).unwrap();
    let labels = encode_idx(&[n], &vec![1; n]).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).unwrap();
}

fn count(source: &DataSource) -> usize {
    FashionMnist::load_mini(Split::Test, source).unwrap().len()
}

#[test]
fn folders_are_searched_in_order_and_all_are_named_on_failure() {
    let explicit = tempfile::tempdir().unwrap();
    let env_root = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let unverified = |dir: Option<&Path>| DataSource {
        dir: dir.map(Path::to_path_buf),
        verify: false,
        classes: None,
    };
    write_split(explicit.path(), 3);
    write_split(&env_root.path().join("fashion-mnist-mini"), 4);
    write_split(&cwd.path().join("data/fashion-mnist-mini"), 5);
    // SAFETY: the only test in this binary, so no other thread reads the environment.
    unsafe { std::env::set_var("TEKFAC_DATA_DIR", env_root.path()) };
    std::env::set_current_dir(cwd.path()).unwrap();

    assert_eq!(
        count(&unverified(Some(explicit.path()))),
        3,
        "explicit folder first"
    );
    assert_eq!(
        count(&unverified(Some(env_root.path()))),
        4,
        "then <explicit>/<name>"
    );
    assert_eq!(count(&unverified(None)), 4, "then $TEKFAC_DATA_DIR/<name>");
    std::fs::remove_dir_all(env_root.path().join("fashion-mnist-mini")).unwrap();
    assert_eq!(count(&unverified(None)), 5, "then ./data/<name>");
    std::fs::remove_dir_all(cwd.path().join("data")).unwrap();
    assert_eq!(
        count(&DataSource::default()),
        2000,
        "last, the source tree's embedded copy"
    );

    let empty = cwd.path();
    let err = Mnist::load(Split::Test, &unverified(Some(empty)))
        .unwrap_err()
        .to_string();
    let mnist_in_env = env_root.path().join("mnist");
    for place in [
        empty,
        &empty.join("mnist"),
        &mnist_in_env,
        Path::new("data/mnist"),
    ] {
        assert!(
            err.contains(&format!("{} (", place.display())),
            "{place:?} not in: {err}"
        );
    }
    assert!(
        err.contains("t10k-images-idx3-ubyte[.gz]") && err.contains("tekfac download mnist"),
        "{err}"
    );

    // SAFETY: as above.
    unsafe { std::env::remove_var("TEKFAC_DATA_DIR") };
    let err = Mnist::load(Split::Test, &DataSource::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("TEKFAC_DATA_DIR is unset"), "{err}");
}
