//! `--threads` sizes the pool that runs the training (the data loading must not start rayon's
//! default pool first), config.json records that size, and the losses do not depend on it.

use std::path::Path;

mod support;
use support::cli::{tekfac, text, tmp};

/// Trains SGD for 6 steps on 1,000 examples with `threads` threads into `out`; returns the
/// `threads` entry of its config.json and the metrics rows without their `seconds` column.
fn run(out: &Path, threads: &str) -> (String, Vec<String>) {
    let o = tekfac(&[
        "train",
        "--optimizer",
        "sgd",
        "--train-limit",
        "1000",
        "--batch-size",
        "100",
        "--max-steps",
        "6",
        "--log-every",
        "2",
        "--threads",
        threads,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    let entry = config
        .lines()
        .find(|l| l.contains("\"threads\""))
        .unwrap_or_else(|| panic!("no threads entry in {config}"));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows = csv
        .lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.remove(3); // seconds
            cells.join(",")
        })
        .collect();
    (entry.trim().trim_end_matches(',').to_string(), rows)
}

#[test]
fn threads_flag_sizes_the_pool_and_changes_no_result() {
    let (one, three) = (tmp("threads-1"), tmp("threads-3"));
    let (c1, rows1) = run(&one, "1");
    let (c3, rows3) = run(&three, "3");
    assert_eq!(c1, "\"threads\": 1");
    // NOTE: 3, not 2: rayon's default pool has one thread per core, and CI machines have 2.
    assert_eq!(c3, "\"threads\": 3");
    assert_eq!(rows1.len(), 4, "{rows1:?}");
    assert_eq!(
        rows1, rows3,
        "the step losses and norms depend on the thread count"
    );
}
