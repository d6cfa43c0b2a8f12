//! The tracker of issue 18 (`tekfac::train::track`, `tekfac::curvature::probe`,
//! `tekfac inspect --steps N --every K`): the exact cases where every step must equal the exact
//! natural gradient, the order Lemma 1 imposes at every probe, track.csv's form, determinism,
//! and the refusal of bad flags.

mod cli_common;
mod ng_common;

use cli_common::{assert_usage_error, tekfac, text, tmp};
use ng_common::{Net, conv_net, deep_linear_net, dense_net};
use tekfac::FisherType;
use tekfac::ParamStore;
use tekfac::curvature::{DampingRule, DampingSettings, Variant};
use tekfac::nn::{Activation, Linear, Sequential};
use tekfac::train::track::{Method, TRACK_COLUMNS, TrackRow, probe_pass};

/// Every fitted method's rows of one probe of `net` on `n` examples.
fn probe(net: &Net, n: usize, fisher: FisherType, rule: DampingRule) -> Vec<TrackRow> {
    let pass = net.pass(&net.input(n, 5), fisher);
    let settings = DampingSettings {
        lambda: 0.1,
        rule,
        ..DampingSettings::default()
    };
    probe_pass(&net.ps, &pass, &settings, None, 0).unwrap()
}

fn fitted(rows: &[TrackRow], v: Variant) -> impl Iterator<Item = &TrackRow> {
    rows.iter().filter(move |r| r.method == Method::Fitted(v))
}

#[test]
fn batch_of_one_every_method_steps_exactly() {
    for fisher in [FisherType::Exact, FisherType::Empirical] {
        let rows = probe(&dense_net(3), 1, fisher, DampingRule::Additive);
        assert_eq!(rows.len(), 2 * 4, "two layers, four methods");
        for r in &rows {
            let a = &r.agreement;
            let what = format!("{fisher:?} {} {}: {a:?}", r.layer, r.method.name());
            assert!(a.fisher_error < 1e-10, "{what}");
            assert!(1.0 - a.update_cosine < 1e-12, "{what}");
            assert!(a.update_error < 1e-10, "{what}");
        }
    }
    // Negative control: the same F̂ = F, but K-FAC's and TKFAC's own (factored) damping is not
    // F + λI, so their step differs from u* while EKFAC's and TEKFAC's (additive) does not.
    let rows = probe(&dense_net(3), 1, FisherType::Exact, DampingRule::Own);
    for r in &rows {
        let additive = matches!(r.method, Method::Fitted(Variant::Ekfac | Variant::Tekfac));
        assert_eq!(r.agreement.update_error < 1e-10, additive, "{r:?}");
    }
}

#[test]
fn deep_linear_mse_kfac_and_tkfac_step_exactly() {
    // Identity 12: g does not depend on the example, so F = G ⊗ A for any batch.
    let rows = probe(
        &deep_linear_net(4),
        6,
        FisherType::Exact,
        DampingRule::Additive,
    );
    assert_eq!(rows.len(), 3 * 4);
    for v in [Variant::Kfac, Variant::Tkfac] {
        for r in fitted(&rows, v) {
            assert!(r.agreement.update_error < 1e-9, "{r:?}");
            assert!(r.agreement.fisher_error < 1e-9, "{r:?}");
        }
    }
    // Negative control: with tanh between the layers g depends on the example.
    let rows = probe(&dense_net(4), 6, FisherType::Exact, DampingRule::Additive);
    let worst = fitted(&rows, Variant::Kfac)
        .map(|r| r.agreement.update_error)
        .fold(0.0, f64::max);
    assert!(
        worst > 1e-3,
        "K-FAC is not exact on a non-linear net: {worst}"
    );
}

#[test]
fn corrected_methods_fit_f_at_least_as_well_on_real_layers() {
    for (name, net, n) in [("dense", dense_net(5), 7), ("conv", conv_net(6), 4)] {
        for fisher in [FisherType::Exact, FisherType::Empirical] {
            let rows = probe(&net, n, fisher, DampingRule::Own);
            for (plain, corrected) in [
                (Variant::Kfac, Variant::Ekfac),
                (Variant::Tkfac, Variant::Tekfac),
            ] {
                for (p, c) in fitted(&rows, plain).zip(fitted(&rows, corrected)) {
                    assert_eq!(p.layer, c.layer);
                    let (p, c) = (p.agreement.fisher_error, c.agreement.fisher_error);
                    assert!(
                        c <= p * (1.0 + 1e-12),
                        "{name} {fisher:?} {plain}: {c} > {p}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_exact_step_is_a_dense_solve() {
    // u* from probe::exact_natural_gradient against an independent LU solve of (F + λI) u = ∇.
    let mut ps = ParamStore::<f64>::seeded(9);
    let model = Sequential::new()
        .push(Linear::new(&mut ps, "fc", 3, 2, true).unwrap())
        .push(Activation::Tanh);
    let net = Net {
        ps,
        model,
        example: vec![3],
        outputs: 2,
        loss: ng_common::Loss::Mse,
    };
    let pass = net.pass(&net.input(4, 1), FisherType::Exact);
    let f = tekfac::curvature::exact::exact_fisher(&pass.captures[0]).unwrap();
    let g =
        tekfac::train::track::layer_gradient(&net.ps.layers()[0], &net.ps, &pass.grads).unwrap();
    let u = tekfac::curvature::probe::exact_natural_gradient(&f, &g, 0.3).unwrap();
    let m = &f + nalgebra::DMatrix::identity(f.nrows(), f.ncols()) * 0.3;
    let v = tekfac::curvature::exact::vec_rows(&g);
    let want = m.lu().solve(&v).unwrap();
    let got = tekfac::curvature::exact::vec_rows(&u);
    assert!((got - &want).norm() < 1e-12 * want.norm());
    assert!(tekfac::curvature::probe::exact_natural_gradient(&f, &g, 0.0).is_err());
}

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
        for (s, layer, m, x) in &rows {
            let of = |v: &str| {
                rows.iter()
                    .find(|r| r.0 == *s && &r.1 == layer && r.2 == v)
                    .unwrap()
                    .3[0]
            };
            if m == "ekfac" {
                assert!(x[0] <= of("kfac") * (1.0 + 1e-9), "{name} step {s} {layer}");
            }
            if m == "tekfac" {
                assert!(
                    x[0] <= of("tkfac") * (1.0 + 1e-9),
                    "{name} step {s} {layer}"
                );
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
fn exact_optimizer_steps_along_the_exact_damped_natural_gradient() {
    use tekfac::optim::Optimizer;
    use tekfac::optim::{ExactConfig, ExactNaturalGradient};
    let mut net = dense_net(8);
    let config = ExactConfig {
        lr: 0.5,
        damping: 0.2,
        momentum: 0.0,
        decay: 0.0,
        stats_interval: 1,
        fisher: FisherType::Empirical,
    };
    let mut opt = ExactNaturalGradient::new(config.clone(), &net.ps).unwrap();
    let before = net.ps.clone();
    let pass = net.pass(&net.input(5, 2), Optimizer::<f64>::fisher(&opt));
    opt.step(&mut net.ps, &pass).unwrap();
    for (l, info) in before.layers().iter().enumerate() {
        let c = pass.captures.iter().find(|c| c.layer.0 == l).unwrap();
        let f = tekfac::curvature::exact::exact_fisher(c).unwrap();
        let g = tekfac::train::track::layer_gradient(info, &before, &pass.grads).unwrap();
        let u = tekfac::curvature::probe::exact_natural_gradient(&f, &g, config.damping).unwrap();
        let moved = ng_common::param_block(info, &before) - ng_common::param_block(info, &net.ps);
        let err = (&moved - &u * config.lr).norm() / (u.norm() * config.lr);
        assert!(
            err < 1e-5,
            "{}: ΔW̄ = −η u* up to f32 rounding, got {err}",
            info.name
        );
    }
    let mut ps = ParamStore::<f64>::seeded(0);
    Linear::new(&mut ps, "big", 100, 50, true).unwrap();
    assert!(
        ExactNaturalGradient::new(config.clone(), &ps).is_err(),
        "5050² block refused"
    );
    let zero = ExactConfig {
        damping: 0.0,
        ..config
    };
    assert!(
        ExactNaturalGradient::new(zero, &net.ps).is_err(),
        "λ = 0 refused"
    );
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
