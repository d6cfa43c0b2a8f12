//! `tekfac compare` and `tekfac inspect` end to end on the embedded Fashion-MNIST subset:
//! compare writes the table and both chart formats; inspect prints per-layer errors in the
//! proven order (EKFAC ≤ K-FAC, TEKFAC ≤ TKFAC) and writes one heatmap per layer.

use std::path::Path;

mod support;
use support::cli::{tekfac, text, tmp};

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
}

fn assert_svg(path: &Path) {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(s.contains("<svg"), "{} is not an SVG", path.display());
}

#[test]
fn compare_fails_when_every_optimizer_diverges_but_keeps_the_table() {
    let out = tmp("diverge");
    let o = tekfac(&[
        "compare",
        "--train-limit",
        "300",
        "--epochs",
        "1",
        "--optimizers",
        "sgd,kfac",
        "--lr",
        "1e6",
        "--batch-size",
        "100",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("all diverged"), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("sgd (diverged)") && md.contains("kfac (diverged)"),
        "{md}"
    );
}

#[test]
fn compare_writes_the_table_and_both_chart_formats() {
    let out = tmp("compare");
    let o = tekfac(&[
        "compare",
        "--train-limit",
        "1000",
        "--epochs",
        "1",
        "--optimizers",
        "sgd,tekfac",
        "--lr-for",
        "sgd=0.02",
        "--damping-for",
        "tekfac=0.2,kfac=0.5",
        "--damping-rule-for",
        "tekfac=factored-shift",
        "--batch-size",
        "100",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| sgd |") && md.contains("| tekfac |"), "{md}");
    assert!(md.contains("| 0.2 (factored-shift) |"), "{md}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("optimizer,lr,damping,final_train_loss,final_test_accuracy"));
    // --lr-for / --damping-for reach their runs; the others keep the per-optimizer defaults.
    for (line, name, lr, damping) in [
        (lines[1], "sgd", "0.02", ""),
        (lines[2], "tekfac", "0.01", "0.200000"),
    ] {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!((f[0], f[1], f[2]), (name, lr, damping), "{line}");
        let acc: f64 = f[4].parse().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{line}");
    }
    let config = std::fs::read_to_string(out.join("sgd").join("config.json")).unwrap();
    assert!(config.contains("\"lr\": 0.02"), "{config}");
    assert!(config.contains("\"damping_rule\": \"own\""), "{config}");
    let config = std::fs::read_to_string(out.join("tekfac").join("config.json")).unwrap();
    assert!(
        config.contains("\"damping_rule\": \"factored-shift\""),
        "{config}"
    );
    for stem in [
        "loss_vs_epoch",
        "loss_vs_seconds",
        "accuracy_vs_epoch",
        "accuracy_vs_seconds",
    ] {
        assert_png(&out.join(format!("{stem}.png")));
        assert_svg(&out.join(format!("{stem}.svg")));
    }
    for run in ["sgd", "tekfac"] {
        assert!(out.join(run).join("metrics.csv").exists());
        assert_png(&out.join(run).join("loss_vs_epoch.png"));
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_malformed_per_optimizer_setting_is_a_usage_error() {
    for bad in ["sgd", "sgdx=0.1", "adam=-1", "kfac=nan"] {
        let o = tekfac(&["compare", "--lr-for", bad, "--quiet"]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains("--lr-for"), "{bad}: {}", text(&o));
    }
    for bad in ["ekfac", "ekfacx=own", "ekfac=shifted"] {
        let o = tekfac(&["compare", "--damping-rule-for", bad, "--quiet"]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(
            text(&o).contains("--damping-rule-for"),
            "{bad}: {}",
            text(&o)
        );
    }
}

/// `(layer, variant, relative error, tr F̂ / tr F)` from inspect's tables.
fn errors(stdout: &str) -> Vec<(String, String, f64, f64)> {
    let mut layer = String::new();
    let mut out = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("layer ") {
            layer = rest.split(':').next().unwrap().to_string();
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 7 && ["kfac", "ekfac", "tkfac", "tekfac"].contains(&f[0]) {
            let (err, ratio) = (f[1].parse().unwrap(), f[3].parse().unwrap());
            out.push((layer.clone(), f[0].to_string(), err, ratio));
        }
    }
    out
}

#[test]
fn inspect_errors_come_in_the_proven_order() {
    let cases = [
        ("mlp", "exact", ["fc1", "fc2"]),
        ("mlp", "empirical", ["fc1", "fc2"]),
        ("conv", "exact", ["conv1", "fc1"]),
    ];
    for (model, fisher, layers) in cases {
        let out = tmp(&format!("inspect-{model}-{fisher}"));
        let dir = out.to_str().unwrap();
        let o = tekfac(&[
            "inspect",
            "--model",
            model,
            "--probe-fisher",
            fisher,
            "--out",
            dir,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let errs = errors(&stdout);
        assert_eq!(errs.len(), 8, "two layers × four variants:\n{stdout}");
        for layer in layers {
            let row = |v: &str| {
                let row = errs
                    .iter()
                    .find(|(l, name, _, _)| l == layer && name == v)
                    .unwrap_or_else(|| panic!("no {v} row for {layer}:\n{stdout}"));
                (row.2, row.3)
            };
            let err = |v: &str| row(v).0;
            // The corrected diagonals are diag(Qᵀ F Q), so their trace is tr F; TKFAC's δ is
            // tr F on dense layers (on conv layers it drops the cross-location terms).
            let exact_trace = ["ekfac", "tekfac"]
                .iter()
                .chain(layer.starts_with("fc").then_some(&"tkfac"));
            for v in exact_trace {
                assert!(
                    (row(v).1 - 1.0).abs() < 2e-4,
                    "{layer} {v} trace:\n{stdout}"
                );
            }
            // NOTE: the printed values are rounded to 6 digits, so allow equality at that scale.
            assert!(err("ekfac") <= err("kfac") + 1e-6, "{layer}:\n{stdout}");
            assert!(err("tekfac") <= err("tkfac") + 1e-6, "{layer}:\n{stdout}");
            for v in ["kfac", "ekfac", "tkfac", "tekfac"] {
                assert!((0.0..1.0).contains(&err(v)), "{layer} {v}:\n{stdout}");
            }
            assert_png(&out.join(format!("fisher_{layer}.png")));
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
