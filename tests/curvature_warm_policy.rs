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
    RefineFailure, Steering, WarmStart, off_diagonal_mass, refine_eigenbasis,
};
use tekfac::dataset::{self, DataSource, Split};
use tekfac::nn::{Activation, Linear, Module, Sequential};
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

/// A previous basis already within the tolerance is kept as it is (no iteration), with the
/// Rayleigh quotients of the new factor and an identity change of coordinates; one that is not
/// is refined; `min_iterations: 1` refines either way.
#[test]
fn a_basis_within_the_tolerance_is_kept_and_only_measured() {
    let close = |s| small_factors(90, s);
    let f64_steered = WarmStart {
        steering: Steering::F64,
        ..WarmStart::default()
    };
    let mut policy = EigenRefresh::new(f64_steered);
    let (b0, _) = policy.refresh(&close(0.0), None).unwrap();
    let moved = close(0.002);
    let (kept, report, changes) = policy.refresh_with_changes(&moved, Some(&b0)).unwrap();
    let FactorRefresh::Warm {
        iterations: 0,
        off_diagonal,
    } = report.a
    else {
        panic!("{report}");
    };
    assert_eq!(kept.q_a, b0.q_a, "the basis is kept bit for bit");
    assert!((off_diagonal - off_diagonal_mass(&moved.a_factor, &b0.q_a)).abs() < 1e-9);
    let rayleigh = (b0.q_a.transpose() * &moved.a_factor * &b0.q_a).diagonal();
    assert!((&kept.d_a - rayleigh).amax() < 1e-12 * moved.a_factor.norm());
    let change = changes[0].as_ref().expect("a warm factor has a change");
    let x: Vec<f64> = (0..2 * 13).map(|i| i as f64).collect();
    assert_eq!((change.iterations(), change.apply(x.clone(), 2)), (0, x));
    // Further away than the tolerance: iterated.
    let (_, report) = policy.refresh(&close(0.3), Some(&b0)).unwrap();
    assert!(matches!(report.a, FactorRefresh::Warm { iterations, .. } if iterations >= 1));
    // At least one iteration, as requested.
    let mut always = EigenRefresh::new(WarmStart {
        min_iterations: 1,
        ..f64_steered
    });
    let (_, report) = always.refresh(&moved, Some(&b0)).unwrap();
    assert!(
        matches!(report.a, FactorRefresh::Warm { iterations: 1, .. }),
        "{report}"
    );
}

#[test]
fn the_policy_falls_back_to_the_exact_path_and_says_why() {
    let close = |s| small_factors(90, s);
    let exact_of = |f: &KroneckerFactors| KroneckerBasis::from_factors(f).unwrap();
    // First refresh: exact; a slightly moved factor: warm.
    let mut policy = EigenRefresh::new(WarmStart::default());
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
    let mut off = EigenRefresh::new(WarmStart::exact_only());
    let (_, r) = off.refresh(&close(0.02), Some(&b0)).unwrap();
    assert_eq!(r.a, FactorRefresh::Exact(ExactReason::Disabled));
    // exact_every = 3: exact, warm, warm, exact, warm, ...
    let mut every = EigenRefresh::new(WarmStart {
        exact_every: 3,
        ..WarmStart::default()
    });
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
    let mut resumed = EigenRefresh::resume(*every.settings(), every.warm_streak());
    assert_eq!(resumed, every);
    let next = |p: &mut EigenRefresh| p.refresh(&close(0.014), basis.as_ref()).unwrap().1.a;
    assert_eq!(next(&mut resumed), next(&mut every));
    // A previous basis too far away for the tolerance: refined, judged, replaced by the exact.
    let mut strict = EigenRefresh::new(WarmStart {
        tolerance: 1e-6,
        max_iterations: 1,
        ..WarmStart::default()
    });
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
    let mut policy = EigenRefresh::new(WarmStart::default());
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
