//! The refresh policy (`curvature/warm.rs`): exact first, warm after, the periodic exact
//! refresh, every fallback to the exact path with its reason; and a real MNIST input factor,
//! singular through its always-zero pixels, refreshed warm without NaN, loss of orthogonality
//! or a dead pixel leaking into an eigenvector.

mod support;

use nalgebra::DMatrix;
use support::curvature::*;
use support::warm::*;
use tekfac::curvature::{
    EigenRefresh, ExactReason, FactorRefresh, KroneckerBasis, KroneckerFactors, MovingAverage,
    RefineFailure, Steering, Variant, WarmStart, off_diagonal_mass, refine_eigenbasis,
    refine_eigenbasis_with,
};
use tekfac::dataset::{self, DataSource, Split};
use tekfac::nn::{Activation, Linear, Module, Sequential};
use tekfac::optim::{NaturalGradient, NgConfig};
use tekfac::{FisherType, ParamStore, Tape};

/// Factors of a small block from a seeded capture, a fixed perturbation of them, and a basis.
fn small_factors(seed: u64, scale: f64) -> KroneckerFactors {
    let c = random_capture(seed, 40, 1, 12, 6, 1);
    let mut f = KroneckerFactors::from_capture(false, &c).unwrap();
    let wobble = random_capture(seed + 1000, 40, 1, 12, 6, 1);
    let w = KroneckerFactors::from_capture(false, &wobble).unwrap();
    f.a_factor += &w.a_factor * scale;
    f.g_factor += &w.g_factor * scale;
    f
}

/// `F = V diag(λ) Vᵀ` (`[12, 12]`, well-separated `λ`) and a previous basis `V R(θ)` turned from
/// its eigenvectors by a fixed rotation, with `θ` bisected so that `off(V R(θ)) = off` to 0.1 %:
/// a previous basis at a chosen distance from diagonalising the new factor.
fn factor_and_basis_at(off: f64) -> (KroneckerFactors, KroneckerBasis) {
    factor_and_basis_where(off_diagonal_mass, off)
}

/// `off(Q)` after one iteration from `q` (f64 steering).
fn off_after_one_iteration(f: &DMatrix<f64>, q: &DMatrix<f64>) -> f64 {
    let refined = refine_eigenbasis_with(f, q, 0.0, 1, Steering::F64).unwrap();
    refined.off_diagonal
}

/// [`factor_and_basis_at`] with `distance(F, Q_prev) = target` instead.
fn factor_and_basis_where(
    distance: fn(&DMatrix<f64>, &DMatrix<f64>) -> f64,
    target: f64,
) -> (KroneckerFactors, KroneckerBasis) {
    let n = 12;
    let v = random_orthogonal(&mut rng(93), n);
    let lambda: Vec<f64> = (0..n).map(|i| 0.7f64.powi(i as i32)).collect();
    let f = with_spectrum(&v, &lambda);
    let g = randn(&mut rng(94), n, n);
    let skew = (&g - g.transpose()) * 0.5;
    let turned = |theta: f64| &v * (eye(n) + &skew * theta).qr().q();
    let (mut lo, mut hi) = (0.0, 1e-3);
    while distance(&f, &turned(hi)) < target {
        hi *= 2.0;
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        match distance(&f, &turned(mid)) < target {
            true => lo = mid,
            false => hi = mid,
        }
    }
    let q_a = turned(hi);
    let reached = distance(&f, &q_a);
    assert!(
        (reached / target - 1.0).abs() < 1e-3,
        "{reached:.4e} for {target:.4e}"
    );
    let d_g = nalgebra::dvector![3.0, 2.0, 1.0];
    let factors = KroneckerFactors {
        a_factor: f,
        g_factor: DMatrix::from_diagonal(&d_g),
        trace_scale: 1.0,
    };
    let d_a = nalgebra::DVector::from_vec(lambda);
    let basis = KroneckerBasis {
        q_a,
        d_a,
        q_g: eye(3),
        d_g,
    };
    (factors, basis)
}

/// The default policy with f64 steering (so `d` can be compared to f64 rounding), keeping a
/// previous basis within `keep`.
fn keeping_within(keep: f64) -> EigenRefresh {
    EigenRefresh::new(WarmStart {
        keep_tolerance: Some(keep),
        steering: Steering::F64,
        ..WarmStart::default()
    })
    .unwrap()
}

/// `(iterations, off(Q))` of a warm refresh of a factor; panics for an exact one.
fn warm(how: FactorRefresh) -> (usize, f64) {
    match how {
        FactorRefresh::Warm {
            iterations,
            off_diagonal,
        } => (iterations, off_diagonal),
        FactorRefresh::Exact(why) => panic!("exact ({why}), expected warm"),
    }
}

/// The default keep threshold of each variant (warm.rs module docs): EKFAC half the tolerance,
/// TEKFAC the whole of it; a given one holds for every variant.
#[test]
fn the_keep_threshold_is_each_variants_own_unless_given() {
    let default = WarmStart::default();
    assert_eq!((default.keep_tolerance, default.keep()), (None, 0.05));
    let keep = |config: &NgConfig, v| config.refresh_settings(v).keep();
    assert_eq!(keep(&NgConfig::DEFAULT, Variant::Ekfac), 0.025);
    assert_eq!(keep(&NgConfig::DEFAULT, Variant::Tekfac), 0.05);
    let loose = NgConfig {
        warm_start: WarmStart {
            tolerance: 0.1,
            ..default
        },
        ..NgConfig::DEFAULT
    };
    assert_eq!(keep(&loose, Variant::Ekfac), 0.05);
    assert_eq!(keep(&loose, Variant::Tekfac), 0.1);
    let given = NgConfig {
        warm_start: WarmStart {
            keep_tolerance: Some(0.01),
            ..default
        },
        ..NgConfig::DEFAULT
    };
    for v in [Variant::Ekfac, Variant::Tekfac] {
        assert_eq!(keep(&given, v), 0.01, "{v}");
    }
}

/// A previous basis within the keep threshold (EKFAC's 0.025 here) is kept as it is (no
/// iteration), with the Rayleigh quotients of the new factor and an identity change of
/// coordinates; `min_iterations: 1` or `keep_tolerance: Some(0)` refines it anyway.
#[test]
fn a_basis_within_the_keep_tolerance_is_kept_and_only_measured() {
    let (f, b0) = factor_and_basis_at(0.0125);
    let mut policy = keeping_within(0.025);
    let (kept, report, changes) = policy.refresh_with_changes(&f, Some(&b0), None).unwrap();
    let (iterations, off) = warm(report.a);
    assert_eq!(iterations, 0, "{report}");
    assert_eq!(kept.q_a, b0.q_a, "the basis is kept bit for bit");
    assert!((off - 0.0125).abs() < 1e-4, "{report}");
    assert!((off - off_diagonal_mass(&f.a_factor, &b0.q_a)).abs() < 1e-9);
    let rayleigh = (b0.q_a.transpose() * &f.a_factor * &b0.q_a).diagonal();
    assert!((&kept.d_a - rayleigh).amax() < 1e-12 * f.a_factor.norm());
    let change = changes[0].as_ref().expect("a warm factor has a change");
    let x: Vec<f64> = (0..2 * 12).map(|i| i as f64).collect();
    assert_eq!((change.iterations(), change.apply(x.clone(), 2)), (0, x));
    // At least one iteration, as requested; or no basis good enough to keep.
    let mut always = EigenRefresh::new(WarmStart {
        min_iterations: 1,
        steering: Steering::F64,
        ..WarmStart::default()
    })
    .unwrap();
    for policy in [&mut always, &mut keeping_within(0.0)] {
        let (b, report) = policy.refresh(&f, Some(&b0)).unwrap();
        let (iterations, off) = warm(report.a);
        assert!(iterations == 1 && off < 0.0125, "{report}");
        assert_ne!(b.q_a, b0.q_a);
    }
}

/// A previous basis between `keep_tolerance` and `tolerance` is iterated until it is within the
/// tolerance, not kept; with `keep_tolerance = tolerance` (the policy before the setting) the
/// same basis is kept. Further than the tolerance it is iterated under either.
#[test]
fn a_basis_between_the_keep_tolerance_and_the_tolerance_is_iterated() {
    let (f, b0) = factor_and_basis_at(0.0375);
    // f32 steering measures off(Q) from f32 Rayleigh quotients: to about 1e-5 here.
    for (steering, measured) in [(Steering::F64, 1e-9), (Steering::F32, 1e-4)] {
        let mut policy = EigenRefresh::new(WarmStart {
            steering,
            ..WarmStart::default().for_variant(Variant::Ekfac)
        })
        .unwrap();
        let (b, report) = policy.refresh(&f, Some(&b0)).unwrap();
        let (iterations, off) = warm(report.a);
        assert!(iterations >= 1, "{steering:?}: {report}");
        // Within the tolerance (0.05), and closer than the basis it started from.
        assert!(off < 0.0375, "{steering:?}: {report}");
        let direct = off_diagonal_mass(&f.a_factor, &b.q_a);
        assert!((off - direct).abs() < measured, "{report}: {direct:.3e}");
        assert!(orthonormality_error(&b.q_a) <= ORTHONORMAL);
    }
    // keep_tolerance = tolerance (TEKFAC's, and the policy before the setting existed): kept.
    let mut previous_policy = keeping_within(0.05);
    let (b, report) = previous_policy.refresh(&f, Some(&b0)).unwrap();
    let (iterations, off) = warm(report.a);
    assert!(iterations == 0 && off > 0.025, "{report}");
    assert_eq!(b.q_a, b0.q_a, "the basis is kept bit for bit");
    // Once an iteration has run, the iterations stop within the tolerance, not the keep one:
    // a basis that one iteration brings to 0.0375 gets exactly one.
    let (f, b0) = factor_and_basis_where(off_after_one_iteration, 0.0375);
    assert!(off_diagonal_mass(&f.a_factor, &b0.q_a) > 0.05);
    let (_, report) = keeping_within(0.025).refresh(&f, Some(&b0)).unwrap();
    let (iterations, off) = warm(report.a);
    assert!(iterations == 1 && off > 0.025 && off <= 0.05, "{report}");
    // Beyond the tolerance: iterated under both.
    let (f, b0) = factor_and_basis_at(0.1);
    for keep in [0.025, 0.05] {
        let (_, report) = keeping_within(keep).refresh(&f, Some(&b0)).unwrap();
        let (iterations, off) = warm(report.a);
        assert!(iterations >= 1 && off <= 0.05, "keep {keep}: {report}");
    }
}

/// `keep_tolerance` outside `[0, tolerance]`, or not finite, is refused with an error naming it
/// and its range: by the policy, and by `NaturalGradient` for every variant (K-FAC and TKFAC
/// refresh exactly but take the same settings). The ends of the range are accepted.
#[test]
fn an_invalid_keep_tolerance_is_refused_with_its_range() {
    let ps = ParamStore::<f32>::seeded(0);
    let with = |keep: f64| WarmStart {
        keep_tolerance: Some(keep),
        ..WarmStart::default()
    };
    for keep in [-0.01, f64::NAN, 0.06, f64::INFINITY] {
        let why = EigenRefresh::new(with(keep)).unwrap_err().to_string();
        eprintln!("{why}");
        assert!(
            why.contains("keep_tolerance") && why.contains("[0, tolerance] = [0, 0.05]"),
            "{why}"
        );
        assert!(why.contains(&format!("got {keep}")), "{why}");
        for variant in [
            Variant::Kfac,
            Variant::Ekfac,
            Variant::Tkfac,
            Variant::Tekfac,
        ] {
            let config = NgConfig {
                warm_start: with(keep),
                ..NgConfig::DEFAULT
            };
            let refused = NaturalGradient::new(variant, config, &ps).map(|_| ());
            assert_eq!(refused.unwrap_err().to_string(), why, "{variant}");
        }
    }
    // The default keep threshold follows a smaller tolerance; a given one must be lowered
    // with it, and the error says so.
    let strict = WarmStart {
        tolerance: 1e-3,
        ..WarmStart::default()
    };
    assert!(strict.check().is_ok());
    assert_eq!(strict.for_variant(Variant::Ekfac).keep(), 5e-4);
    let why = (WarmStart {
        keep_tolerance: Some(0.025),
        ..strict
    })
    .check()
    .unwrap_err()
    .to_string();
    assert!(
        why.contains("keep_tolerance") && why.contains("smaller tolerance"),
        "{why}"
    );
    let why = (WarmStart {
        tolerance: f64::NAN,
        ..WarmStart::default()
    })
    .check();
    assert!(
        why.unwrap_err()
            .to_string()
            .contains("tolerance must be finite")
    );
    for keep in [0.0, 0.025, 0.05] {
        assert!(EigenRefresh::new(with(keep)).is_ok(), "{keep}");
        let config = NgConfig {
            warm_start: with(keep),
            ..NgConfig::DEFAULT
        };
        assert!(NaturalGradient::new(Variant::Ekfac, config, &ps).is_ok());
    }
}

#[test]
fn the_policy_falls_back_to_the_exact_path_and_says_why() {
    let close = |s| small_factors(90, s);
    let exact_of = |f: &KroneckerFactors| KroneckerBasis::from_factors(f).unwrap();
    // First refresh: exact; a slightly moved factor: warm.
    let mut policy = EigenRefresh::new(WarmStart::default()).unwrap();
    let (b0, r0) = policy.refresh(&close(0.0), None).unwrap();
    assert_eq!(r0.a, FactorRefresh::Exact(ExactReason::NoPrevious));
    assert_eq!(r0.g, FactorRefresh::Exact(ExactReason::NoPrevious));
    assert_eq!(
        b0,
        exact_of(&close(0.0)),
        "the exact path is nalgebra's, unchanged"
    );
    let (b1, r1) = policy.refresh(&close(0.02), Some(&b0)).unwrap();
    assert!(
        matches!(r1.a, FactorRefresh::Warm { off_diagonal, .. } if off_diagonal <= 0.05),
        "{r1}"
    );
    assert!(orthonormality_error(&b1.q_a) <= ORTHONORMAL);
    // Switched off: exact every time.
    let mut off = EigenRefresh::new(WarmStart::exact_only()).unwrap();
    let (_, r) = off.refresh(&close(0.02), Some(&b0)).unwrap();
    assert_eq!(r.a, FactorRefresh::Exact(ExactReason::Disabled));
    // exact_every = 3: exact, warm, warm, exact, warm, ...
    let mut every = EigenRefresh::new(WarmStart {
        exact_every: 3,
        ..WarmStart::default()
    })
    .unwrap();
    let mut basis = None;
    let mut pattern = String::new();
    for k in 0..7 {
        let (b, r) = every
            .refresh(&close(0.002 * k as f64), basis.as_ref())
            .unwrap();
        pattern.push(match r.a {
            FactorRefresh::Warm { .. } => 'w',
            FactorRefresh::Exact(ExactReason::Scheduled) => 'S',
            FactorRefresh::Exact(_) => 'e',
        });
        basis = Some(b);
    }
    assert_eq!(pattern, "ewwSwwS");
    // A policy resumed from its saved streak schedules the next exact refresh as before.
    let mut resumed = EigenRefresh::resume(*every.settings(), every.warm_streak()).unwrap();
    assert_eq!(resumed, every);
    let next = |p: &mut EigenRefresh| p.refresh(&close(0.014), basis.as_ref()).unwrap().1.a;
    assert_eq!(next(&mut resumed), next(&mut every));
    // A previous basis too far away for the tolerance: refined, judged, replaced by the exact.
    let mut strict = EigenRefresh::new(WarmStart {
        tolerance: 1e-6,
        keep_tolerance: Some(0.0),
        max_iterations: 1,
        ..WarmStart::default()
    })
    .unwrap();
    let far = KroneckerBasis {
        q_a: random_orthogonal(&mut rng(91), 13),
        q_g: random_orthogonal(&mut rng(92), 6),
        ..b0.clone()
    };
    let (b, r) = strict.refresh(&close(0.02), Some(&far)).unwrap();
    assert!(
        matches!(r.a, FactorRefresh::Exact(ExactReason::NotConverged { off_diagonal, iterations: 1 }) if off_diagonal > 1e-6),
        "{r}"
    );
    assert_eq!(b, exact_of(&close(0.02)), "fallback = nalgebra's basis");
    // A previous basis that is not orthonormal, or of other dims.
    let skewed = KroneckerBasis {
        q_a: &b0.q_a * 1.01,
        ..b0.clone()
    };
    let (_, r) = policy.refresh(&close(0.02), Some(&skewed)).unwrap();
    assert_eq!(
        r.a,
        FactorRefresh::Exact(ExactReason::Failed(RefineFailure::NotOrthonormal))
    );
    let other_dims = KroneckerBasis {
        q_g: eye(5),
        ..b0.clone()
    };
    let (_, r) = policy.refresh(&close(0.02), Some(&other_dims)).unwrap();
    assert_eq!(r.g, FactorRefresh::Exact(ExactReason::DimsChanged));
    // Non-finite factors: an error, and nothing is refreshed.
    let mut bad = close(0.0);
    bad.a_factor[(0, 0)] = f64::NAN;
    assert!(policy.refresh(&bad, Some(&b0)).is_err());
    // Every outcome reads as a sentence (the library returns events, the front end prints).
    for s in [r1.to_string(), r.to_string()] {
        eprintln!("{s}");
        assert!(s.contains("input factor") && s.contains("output factor"));
    }
}

/// 1,000 MNIST training images (pixels in [0, 1]), or `None` when `$TEKFAC_DATA_DIR` is unset.
fn mnist_images() -> Option<dataset::Dataset> {
    if std::env::var_os("TEKFAC_DATA_DIR").is_none() {
        eprintln!("skipped: TEKFAC_DATA_DIR is not set (it must hold mnist/train-*-ubyte.gz)");
        return None;
    }
    let train = dataset::load("mnist", Split::Train, &DataSource::default())
        .expect("TEKFAC_DATA_DIR is set but MNIST could not be loaded from it");
    Some(train.take(1000))
}

/// The TEKFAC input factor `δΦ` `[785, 785]` of a 784-64-10 MLP's fc1 after each of `steps`
/// batches of 100 (EMA decay 0.95, sampled Fisher), fixed seeded weights.
fn mnist_input_factors(data: &dataset::Dataset, steps: usize) -> Vec<DMatrix<f64>> {
    let mut ps = ParamStore::<f32>::seeded(0);
    let model = Sequential::new()
        .push(Activation::Flatten)
        .push(Linear::new(&mut ps, "fc1", 784, 64, true).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(&mut ps, "fc2", 64, 10, true).unwrap());
    let mut average = MovingAverage::<KroneckerFactors>::new(0.95);
    let mut out = Vec::new();
    for step in 0..steps {
        let idx: Vec<usize> = (step * 100..(step + 1) * 100)
            .map(|i| i % data.len())
            .collect();
        let batch = data.batch(&idx).unwrap();
        let mut tape = Tape::new(&ps);
        let x = tape.input(batch.images);
        let logits = model.forward(&mut tape, x).unwrap();
        let loss = tape.cross_entropy(logits, &batch.labels).unwrap();
        let fisher = FisherType::Sampled {
            k: 1,
            seed: step as u64,
        };
        let pass = tape.backward_with(loss, fisher).unwrap();
        let fc1 = pass
            .captures
            .iter()
            .find(|c| c.layer.0 == 0)
            .expect("fc1 is captured");
        average.update(KroneckerFactors::from_capture(true, fc1).unwrap());
        out.push(average.value().unwrap().a_factor.clone());
    }
    out
}

#[test]
fn a_singular_mnist_input_factor_never_breaks_it() {
    let Some(data) = mnist_images() else { return };
    let factors = mnist_input_factors(&data, 8);
    let last = factors.last().unwrap();
    let dead: Vec<usize> = (0..785)
        .filter(|&i| last.row(i).iter().all(|&x| x == 0.0))
        .collect();
    eprintln!(
        "{} always-zero pixels: zero rows and columns of δΦ",
        dead.len()
    );
    assert!(dead.len() > 50, "MNIST has many always-zero pixels");
    // The policy: exact (deflated) first, then warm refreshes chained from it, 2 iterations each.
    let g = DMatrix::<f64>::identity(3, 3);
    let as_factors = |a: &DMatrix<f64>| KroneckerFactors {
        a_factor: a.clone(),
        g_factor: g.clone(),
        trace_scale: 1.0,
    };
    let mut policy = EigenRefresh::new(WarmStart::default()).unwrap();
    let (basis, first) = policy.refresh(&as_factors(&factors[0]), None).unwrap();
    assert_eq!(first.a, FactorRefresh::Exact(ExactReason::NoPrevious));
    let (_, second) = policy
        .refresh(&as_factors(&factors[1]), Some(&basis))
        .unwrap();
    eprintln!("policy on the next MNIST factor: {second}");
    assert!(matches!(second.a, FactorRefresh::Warm { .. }), "{second}");
    let mut q = basis.q_a;
    for (step, f) in factors.iter().enumerate().skip(1) {
        let refined = refine_eigenbasis(f, &q, 0.0, 2).unwrap();
        assert!(refined.q.iter().all(|x| x.is_finite()) && refined.d.iter().all(|x| x.is_finite()));
        check(
            &format!("MNIST δΦ step {step}: ‖QᵀQ − I‖_F"),
            orthonormality_error(&refined.q),
            ORTHONORMAL,
        );
        let honest = off_diagonal_mass(f, &refined.q);
        eprintln!(
            "step {step}: off(Q) {:.2e} (direct {honest:.2e})",
            refined.off_diagonal
        );
        assert!(
            (refined.off_diagonal - honest).abs() < 1e-5,
            "cheap off(Q) agrees"
        );
        assert!(
            honest < 0.05,
            "step {step}: the warm basis nearly diagonalises δΦ"
        );
        // The always-zero pixels of this factor stay out of every eigenvector with curvature.
        let dead_now: Vec<usize> = (0..785)
            .filter(|&i| f.row(i).iter().all(|&x| x == 0.0))
            .collect();
        let leak = (0..785)
            .filter(|&i| refined.d[i] > 0.0)
            .flat_map(|i| dead_now.iter().map(move |&p| (p, i)))
            .map(|(p, i)| refined.q[(p, i)].abs())
            .fold(0.0, f64::max);
        assert_eq!(
            leak, 0.0,
            "step {step}: a dead pixel leaked into an eigenvector"
        );
        q = refined.q;
    }
}
