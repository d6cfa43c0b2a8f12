//! `CurvatureBlock` robustness and bookkeeping: NaN captures, running averages and re-seeding,
//! misuse reported as errors, the network damping rules of spec §1.7, f32 captures.

mod support;

use nalgebra::DMatrix;
use support::curvature::*;
use tekfac::curvature::{CurvatureBlock, Damping, KroneckerFactors, Variant, trace_adaptive};
use tekfac::optim::{DampingPolicy, DenseInCnn, default_lambda};
use tekfac::{Error, LayerCapture};

fn with_nan(c: &LayerCapture<f64>) -> LayerCapture<f64> {
    let mut bad = c.clone();
    bad.g[0].data_mut()[3] = f64::NAN;
    bad
}

#[test]
fn nan_capture_keeps_the_previous_basis_and_reports_it() {
    let good = random_capture(30, 4, 1, 3, 2, 1);
    for v in Variant::ALL {
        let mut block = fitted(v, &good);
        let (basis, diag) = (block.basis().unwrap().clone(), block.eigenvalues().unwrap());
        block.observe(&with_nan(&good)).unwrap();
        let err = block.refresh();
        assert!(
            matches!(err, Err(Error::NonFinite { .. })),
            "{v}: refresh must report the NaN, got {err:?}"
        );
        eprintln!("{v}: {}", err.unwrap_err());
        assert_eq!(block.basis(), Some(&basis), "{v}: previous basis kept");
        assert_eq!(
            block.eigenvalues(),
            Some(diag),
            "{v}: previous diagonal kept"
        );
        let u = block
            .precondition(&randn(&mut rng(31), 2, 4), &Damping::Additive(1e-3))
            .unwrap();
        assert!(
            u.iter().all(|x| x.is_finite()),
            "{v}: the update stays finite"
        );
        // The poisoned average was dropped: the next good observation starts afresh.
        assert!(block.factors().is_none());
        block.observe(&good).unwrap();
        block.refresh().unwrap();
        let nan_rescale = block.rescale(&with_nan(&good));
        if v.corrects_eigenvalues() {
            assert!(
                matches!(nan_rescale, Err(Error::NonFinite { .. })),
                "{v}: rescale must refuse NaN"
            );
        }
        assert!(
            block.eigenvalues().unwrap().iter().all(|x| x.is_finite()),
            "{v}: diagonal stays finite"
        );
    }
}

#[test]
fn ema_initialises_with_the_first_observation_then_decays() {
    let (c1, c2) = (
        random_capture(32, 3, 1, 2, 2, 1),
        random_capture(33, 4, 1, 2, 2, 1),
    );
    for v in Variant::ALL {
        let mut block = CurvatureBlock::new(v, &info(2, 2, false), 0.25);
        block.observe(&c1).unwrap();
        let f1 = KroneckerFactors::from_capture(v.trace_restricted(), &c1).unwrap();
        assert_eq!(
            block.factors(),
            Some(&f1),
            "{v}: first observation initialises"
        );
        block.observe(&c2).unwrap();
        let f2 = KroneckerFactors::from_capture(v.trace_restricted(), &c2).unwrap();
        let f = block.factors().unwrap();
        let want = &f1.a_factor * 0.25 + &f2.a_factor * 0.75;
        check(
            &format!("{v}: A ← ρA + (1−ρ)A_b"),
            rel_err(&f.a_factor, &want),
            EXACT,
        );
        check(
            &format!("{v}: δ ← ρδ + (1−ρ)δ_b"),
            rel_err_scalar(f.trace_scale, 0.25 * f1.trace_scale + 0.75 * f2.trace_scale),
            EXACT,
        );
    }
}

#[test]
fn corrected_diagonal_is_an_ema_reseeded_on_refresh() {
    let (c1, c2) = (
        random_capture(34, 3, 2, 2, 2, 1),
        random_capture(35, 4, 2, 2, 2, 1),
    );
    for v in [Variant::Ekfac, Variant::Tekfac] {
        let mut block = CurvatureBlock::new(v, &info(2, 2, true), 0.5);
        block.observe(&c1).unwrap();
        block.refresh().unwrap();
        let seed = block.eigenvalues().unwrap();
        let b = block.basis().unwrap().clone();
        let products = b.eigenvalue_products(block.factors().unwrap().trace_scale);
        check(
            &format!("{v}: refresh seeds the eigenvalue products"),
            rel_err(&seed, &products),
            EXACT,
        );
        block.rescale(&c2).unwrap();
        let batch = tekfac::curvature::corrected_batch(
            &b,
            &tekfac::curvature::CaptureRows::from_capture(&c2).unwrap(),
        );
        check(
            &format!("{v}: rescale blends ρ·seed + (1−ρ)·batch"),
            rel_err(&block.eigenvalues().unwrap(), &((seed + batch) * 0.5)),
            EXACT,
        );
        block.refresh().unwrap();
        check(
            &format!("{v}: the next refresh re-seeds"),
            rel_err(&block.eigenvalues().unwrap(), &products),
            EXACT,
        );
    }
    // K-FAC and TKFAC ignore rescale.
    let mut kfac = fitted(Variant::Kfac, &c1);
    let before = kfac.eigenvalues();
    kfac.rescale(&c2).unwrap();
    assert_eq!(kfac.eigenvalues(), before);
}

#[test]
fn misuse_is_reported_as_errors() {
    let c = random_capture(36, 3, 1, 2, 2, 1);
    let mut block = CurvatureBlock::new(Variant::Ekfac, &info(2, 2, false), 0.0);
    assert!(block.refresh().is_err(), "refresh before observe");
    assert!(
        block
            .precondition(&DMatrix::zeros(2, 3), &Damping::Additive(1.0))
            .is_err(),
        "precondition before refresh"
    );
    assert!(block.to_dense().is_err());
    let wide = random_capture(37, 3, 1, 4, 2, 1);
    assert!(
        matches!(block.observe(&wide), Err(Error::ShapeMismatch { .. })),
        "capture of another layer"
    );
    block.observe(&c).unwrap();
    block.refresh().unwrap();
    assert!(block.rescale(&wide).is_err());
    assert!(matches!(
        block.precondition(&DMatrix::zeros(3, 2), &Damping::Additive(1.0)),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(
        block
            .precondition(&DMatrix::zeros(2, 3), &Damping::FactoredTikhonov(1.0))
            .is_err(),
        "factored damping on EKFAC"
    );
    assert!(
        block
            .precondition(&DMatrix::zeros(2, 3), &Damping::Additive(-1.0))
            .is_err(),
        "negative λ"
    );
    let bad_rows = LayerCapture {
        rows_per_example: 2,
        ..c.clone()
    };
    assert!(
        block.observe(&bad_rows).is_err(),
        "3 rows do not split into examples of 2"
    );
    let no_sweep = LayerCapture {
        g: vec![],
        ..c.clone()
    };
    assert!(block.observe(&no_sweep).is_err());
    // λ = 0 on a block whose diagonal has exact zeros (all-zero gradients) is refused.
    let zero_g = LayerCapture {
        g: vec![c.g[0].scale(0.0)],
        ..c
    };
    for v in Variant::ALL {
        let block = fitted(v, &zero_g);
        let undamped = block.precondition(&DMatrix::zeros(2, 3), &Damping::Additive(0.0));
        assert!(
            matches!(undamped, Err(Error::InvalidArgument { .. })),
            "{v}: λ = 0 on a zero block"
        );
        let damped = block
            .precondition(
                &DMatrix::from_element(2, 3, 1.0),
                &Damping::for_variant(v, 0.5),
            )
            .unwrap();
        assert!(
            damped.iter().all(|x| x.is_finite()),
            "{v}: a zero block with λ > 0 is fine"
        );
    }
}

#[test]
fn damping_policy_follows_the_project_defaults() {
    let conv_capture = random_capture(38, 3, 4, 2, 2, 1);
    let dense_capture = random_capture(39, 3, 1, 3, 2, 1);
    let blocks_of = |v| vec![fitted(v, &conv_capture), fitted(v, &dense_capture)];
    let defaults = DampingPolicy::default();
    assert_eq!(
        (defaults.lambda, defaults.conv_floor, defaults.dense_in_cnn),
        (None, 1e-3, DenseInCnn::Fixed)
    );
    // λ unset: the tuned default of the variant and network (0.03 K-FAC/TKFAC on dense nets).
    for (v, dense, conv) in [
        (Variant::Kfac, 0.03, 0.1),
        (Variant::Tkfac, 0.03, 0.1),
        (Variant::Ekfac, 0.1, 0.1),
        (Variant::Tekfac, 0.1, 0.1),
    ] {
        assert_eq!(
            (default_lambda(v, false), default_lambda(v, true)),
            (dense, conv)
        );
        let blocks = blocks_of(v);
        assert_eq!(
            defaults.per_block(v, &blocks[1..])[0].lambda(),
            dense,
            "{v}"
        );
        let with_conv = defaults.per_block(v, &blocks);
        assert!(with_conv[1].lambda() >= conv, "{v}");
    }
    let settings = DampingPolicy::with_lambda(1e-3);
    let tekfac = blocks_of(Variant::Tekfac);
    let conv_lambda = tekfac[0].eigenvalues().unwrap().sum() / 6.0;
    check(
        "Eq. 3.5: λ = ΣΘ/dim Θ",
        rel_err_scalar(tekfac[0].trace_adaptive_damping(1e-3), conv_lambda),
        EXACT,
    );
    assert_eq!(
        trace_adaptive(1e-9, 10, 1e-3),
        1e-4,
        "the floor ϑ applies below it"
    );
    for (rule, dense_lambda) in [
        (DenseInCnn::Fixed, 1e-3),
        (DenseInCnn::Beta, conv_lambda),
        (DenseInCnn::BetaTimesLambda, conv_lambda * 1e-3),
    ] {
        let policy = DampingPolicy {
            dense_in_cnn: rule,
            ..settings
        };
        let d = policy.per_block(Variant::Tekfac, &tekfac);
        check(
            &format!("{rule:?}: conv λ"),
            rel_err_scalar(d[0].lambda(), conv_lambda),
            EXACT,
        );
        check(
            &format!("{rule:?}: dense λ"),
            rel_err_scalar(d[1].lambda(), dense_lambda),
            EXACT,
        );
        assert!(d.iter().all(|x| !x.is_factored()));
    }
    // Without conv layers β plays no role; other variants use their own mode everywhere.
    let beta = DampingPolicy {
        dense_in_cnn: DenseInCnn::Beta,
        ..settings
    };
    let dense_only = beta.per_block(Variant::Tekfac, &tekfac[1..]);
    assert_eq!(dense_only, vec![Damping::Additive(1e-3)]);
    assert_eq!(
        settings.per_block(Variant::Kfac, &blocks_of(Variant::Kfac)),
        vec![Damping::FactoredTikhonov(1e-3); 2]
    );
    assert_eq!(
        settings.per_block(Variant::Tkfac, &blocks_of(Variant::Tkfac)),
        vec![Damping::TkfacNormal(1e-3); 2]
    );
    assert_eq!(
        settings.per_block(Variant::Ekfac, &blocks_of(Variant::Ekfac)),
        vec![Damping::Additive(1e-3); 2]
    );
}

#[test]
fn f32_captures_match_f64() {
    let c = random_capture(40, 4, 2, 3, 2, 2);
    let c32 = LayerCapture {
        layer: c.layer,
        a: c.a.cast::<f32>(),
        g: c.g.iter().map(|g| g.cast::<f32>()).collect(),
        rows_per_example: 2,
    };
    for v in Variant::ALL {
        let mut b32 = CurvatureBlock::new(v, &info(2, 3, true), 0.0);
        b32.observe(&c32).unwrap();
        b32.refresh().unwrap();
        b32.rescale(&c32).unwrap();
        let err = rel_err(&b32.to_dense().unwrap(), &fitted(v, &c).to_dense().unwrap());
        check(&format!("{v}: f32 capture ≈ f64 capture"), err, 1e-6);
    }
}
