//! `tekfac inspect --steps N --every K` end to end on the embedded Fashion-MNIST subset:
//! track.csv's form, Lemma 1 at every probe of a run (MLP, conv, autoencoder), determinism for a
//! seed, no `running` rows without a natural-gradient optimizer, the exact optimizer, and bad
//! flags refused before anything is written.

mod support;

use support::cli::{assert_usage_error, tekfac, text, tmp};
use tekfac::train::track::TRACK_COLUMNS;

/// The rows of a track.csv, checked for form: the header, seven fields, known layers and
/// methods, finite numbers in range.
fn read_track(path: &std::path::Path) -> Vec<(u64, String, String, [f64; 4])> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(TRACK_COLUMNS));
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 7, "{line}");
            let x: Vec<f64> = f[3..].iter().map(|v| v.parse().unwrap()).collect();
            assert!(x.iter().all(|v| v.is_finite()), "{line}");
            assert!(x[0] >= 0.0 && x[2] >= 0.0 && x[3] >= 0.0, "{line}");
            assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&x[1]), "{line}");
            let method = f[2].to_string();
            assert!(["kfac", "ekfac", "tkfac", "tekfac", "running"].contains(&method.as_str()));
            (
                f[0].parse().unwrap(),
                f[1].to_string(),
                method,
                [x[0], x[1], x[2], x[3]],
            )
        })
        .collect()
}

fn inspect(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "inspect",
        "--probe-size",
        "24",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    tekfac(&args)
}

#[test]
fn track_csv_is_well_formed_and_keeps_lemma_1_at_every_probe() {
    let cases: [(&str, &[&str], usize); 3] = [
        ("mlp", &["--optimizer", "ekfac"], 2),
        ("conv", &["--optimizer", "tekfac", "--model", "conv"], 2),
        (
            "ae",
            &[
                "--optimizer",
                "kfac",
                "--model",
                "autoencoder",
                "--hidden",
                "8",
            ],
            6,
        ),
    ];
    for (name, flags, layers) in cases {
        let out = tmp(&format!("track-{name}"));
        let mut args = vec!["--steps", "25", "--every", "10", "--batch-size", "32"];
        args.extend(flags);
        let o = inspect(&out, &args);
        assert!(o.status.success(), "{}", text(&o));
        let rows = read_track(&out.join("track.csv"));
        let steps: Vec<u64> = rows.iter().map(|r| r.0).collect();
        for (step, methods) in [(0, 4), (10, 5), (20, 5), (25, 5)] {
            let n = steps.iter().filter(|&&s| s == step).count();
            assert_eq!(n, layers * methods, "{name}: rows at step {step}");
        }
        assert_eq!(
            rows.len(),
            layers * (4 + 3 * 5),
            "{name}: probes at 0, 10, 20, 25 only"
        );
        // NOTE: an absolute slack for layers where every F̂ equals F to rounding (the
        // autoencoder's output layer: errors ~1e-9 that differ in their 9th digit).
        let at_most = |x: f64, bound: f64| x <= bound * (1.0 + 1e-9) + 1e-12;
        for (s, layer, m, x) in &rows {
            let of = |v: &str| {
                rows.iter()
                    .find(|r| r.0 == *s && &r.1 == layer && r.2 == v)
                    .unwrap()
                    .3[0]
            };
            if m == "ekfac" {
                assert!(at_most(x[0], of("kfac")), "{name} step {s} {layer}");
            }
            if m == "tekfac" {
                assert!(at_most(x[0], of("tkfac")), "{name} step {s} {layer}");
            }
        }
        let losses = std::fs::read_to_string(out.join("loss.csv")).unwrap();
        assert_eq!(losses.lines().count(), 1 + 4, "{losses}");
        for chart in [
            "update_cosine",
            "update_error",
            "length_ratio",
            "fisher_error",
        ] {
            assert!(
                out.join(format!("{chart}_fc1.png")).exists(),
                "{name} {chart}"
            );
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn a_run_is_deterministic_for_its_seed() {
    let run = |tag: &str, seed: &str| {
        let out = tmp(&format!("track-seed-{tag}"));
        let o = inspect(&out, &["--steps", "12", "--every", "6", "--seed", seed]);
        assert!(o.status.success(), "{}", text(&o));
        let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
        let files = (read("track.csv"), read("loss.csv"));
        std::fs::remove_dir_all(&out).unwrap();
        files
    };
    let (a, b, c) = (run("a", "3"), run("b", "3"), run("c", "4"));
    assert_eq!(a, b, "same seed, same files");
    assert_ne!(a.0, c.0, "another seed, another run");
}

#[test]
fn first_order_runs_have_no_running_rows() {
    let out = tmp("track-sgd");
    let o = inspect(
        &out,
        &["--optimizer", "sgd", "--steps", "4", "--every", "2"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let rows = read_track(&out.join("track.csv"));
    assert_eq!(rows.len(), 3 * 2 * 4);
    assert!(rows.iter().all(|r| r.2 != "running"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_flags_exit_2_naming_the_flag_before_anything_is_written() {
    let out = tmp("track-bad");
    let bad: [(&[&str], &str); 13] = [
        (&["--every", "0"], "--every"),
        (&["--hidden", "0"], "--hidden"),
        (&["--hidden", "65"], "--hidden"),
        (&["--lr", "-0.1"], "--lr"),
        (&["--lr", "nan"], "--lr"),
        (&["--damping", "0"], "--damping"),
        (&["--momentum", "1"], "--momentum"),
        (&["--ema-decay", "-0.5"], "--ema-decay"),
        (&["--eigen-interval", "0"], "--eigen-interval"),
        (&["--fisher-samples", "0"], "--fisher-samples"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--probe-size", "100000000"], "--probe-size"),
        (&["--probe-fisher", "sampled"], "--probe-fisher"),
    ];
    for (flags, name) in bad {
        let mut args = vec!["inspect", "--out", out.to_str().unwrap()];
        args.extend(flags);
        let o = tekfac(&args);
        assert_usage_error(&o, name);
        assert!(!out.exists(), "{flags:?} wrote {}", out.display());
    }
}

#[test]
fn inspect_trains_with_the_exact_natural_gradient() {
    let out = tmp("track-exact");
    let o = inspect(
        &out,
        &["--optimizer", "exact", "--steps", "20", "--every", "10"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let rows = read_track(&out.join("track.csv"));
    assert_eq!(rows.len(), 3 * 2 * 4, "no running rows for exact");
    let losses = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let probe: Vec<f64> = losses
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(probe[2] < probe[0], "the probe loss falls: {losses}");
    std::fs::remove_dir_all(&out).unwrap();
}
