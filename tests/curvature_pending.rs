//! Factor statistics held as stacked f32 rows (`curvature/pending.rs`) and blended as one
//! stacked gram give the running averages that blending each step's batch at once gives, for
//! K-FAC's `A, G` and TKFAC's raw numerators, one and two sweeps, into an empty average (the
//! first observation seeds it) and into a full one: to f32 rounding against the f32 path, and
//! against the f64 spec path (`observe`). A stack holds at most `ROW_BLOCK` rows per factor (a
//! conv layer's batch never fits), and its parts round-trip and are refused when they do not
//! fit the layer.

mod support;

use nalgebra::DMatrix;
use support::curvature::info;
use support::tensors::f32_capture as capture;
use tekfac::curvature::{
    CurvatureBlock, FastFactors, FastRows, PendingFactors, PendingParts, ROW_BLOCK, Variant,
};

/// `‖a − b‖_F / ‖b‖_F`.
fn rel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).norm() / b.norm()
}

/// Blocks fed the same captures three ways: the f64 spec path (`observe`), the f32 path one
/// step at a time (`observe_factors`), and the f32 rows held and blended as one stack
/// (`observe_pending`) — first `k₁` captures into empty averages, then `k₂` more into full ones.
#[test]
fn held_steps_blend_like_the_steps_one_by_one() {
    let (d_in, d_out) = (300, 120);
    let info = info(d_out, d_in, false);
    for variant in [Variant::Ekfac, Variant::Tekfac] {
        for (sweeps, n, k1, k2) in [(1, 128, 3, 8), (2, 64, 1, 5)] {
            let label = format!("{variant:?}, {sweeps} sweep(s), {n} rows");
            let mut spec = CurvatureBlock::new(variant, &info, 0.95);
            let mut each = CurvatureBlock::new(variant, &info, 0.95);
            let mut held = CurvatureBlock::new(variant, &info, 0.95);
            let mut pending = PendingFactors::new(held.dims());
            let tr = variant.trace_restricted();
            for (round, k) in [k1, k2].into_iter().enumerate() {
                for s in 0..k {
                    let c = capture(
                        n,
                        1,
                        d_in,
                        d_out,
                        sweeps,
                        100 * round as u64 + 10 * s as u64,
                    );
                    spec.observe(&c).unwrap();
                    each.observe_factors(FastFactors::new(tr, &c).unwrap())
                        .unwrap();
                    let rows = FastRows::from_capture(&c).unwrap();
                    assert!(pending.fits(&rows), "{label}: {} held", pending.count());
                    let rho = held.factor_decay();
                    pending.push(&rows, None, tr, (rho, 1.0 - rho), held.factors().is_none());
                }
                assert_eq!(pending.count(), k as u64);
                held.observe_pending(pending.take()).unwrap();
                assert!(pending.is_empty());
                let (want, f32_path, got) = (
                    spec.factors().unwrap(),
                    each.factors().unwrap(),
                    held.factors().unwrap(),
                );
                for (name, g, e, w) in [
                    ("A", &got.a_factor, &f32_path.a_factor, &want.a_factor),
                    ("G", &got.g_factor, &f32_path.g_factor, &want.g_factor),
                ] {
                    let (to_f32, to_spec) = (rel(g, e), rel(g, w));
                    assert!(
                        to_f32 < 2e-6 && to_spec < 2e-6,
                        "{label}, round {round}: {name} {to_f32:.1e} from the f32 path, \
                         {to_spec:.1e} from the spec"
                    );
                    assert_eq!(g, &g.transpose(), "{label}: {name} symmetric");
                }
                let dt = (got.trace_scale - want.trace_scale).abs() / want.trace_scale;
                assert!(dt <= 1e-12, "{label}, round {round}: trace_scale {dt:.1e}");
            }
        }
    }
}

/// A broken weight (the held rows not decayed by later observations) is caught: the check
/// above is not vacuous.
#[test]
fn a_stack_blended_with_the_wrong_decay_differs() {
    let info = info(50, 200, false);
    let variant = Variant::Ekfac;
    let mut each = CurvatureBlock::new(variant, &info, 0.9);
    let mut held = CurvatureBlock::new(variant, &info, 0.9);
    let mut pending = PendingFactors::new(held.dims());
    for s in 0..4 {
        let c = capture(128, 1, 200, 50, 1, s);
        each.observe_factors(FastFactors::new(false, &c).unwrap())
            .unwrap();
        let rows = FastRows::from_capture(&c).unwrap();
        // NOTE: c_old = 1 never decays the held rows or the old average.
        pending.push(&rows, None, false, (1.0, 0.1), held.factors().is_none());
    }
    held.observe_pending(pending.take()).unwrap();
    let e = rel(
        &held.factors().unwrap().a_factor,
        &each.factors().unwrap().a_factor,
    );
    assert!(e > 1e-2, "wrong weights went unnoticed ({e:.1e})");
}

/// At most `ROW_BLOCK` rows per factor: eight batches of 128 fit, a ninth does not; two sweeps
/// count twice for `G`; a conv batch of `N·T > ROW_BLOCK` rows never fits; nor does another
/// layer's shape.
#[test]
fn a_stack_holds_at_most_one_row_block() {
    let mut pending = PendingFactors::new((40, 101));
    let c = capture(128, 1, 100, 40, 1, 1);
    let rows = FastRows::from_capture(&c).unwrap();
    for _ in 0..ROW_BLOCK / 128 {
        assert!(pending.fits(&rows));
        pending.push(&rows, None, false, (0.95, 0.05), false);
    }
    assert!(!pending.fits(&rows), "a ninth batch of 128 rows");
    let two = capture(ROW_BLOCK / 2 + 1, 1, 100, 40, 2, 2);
    assert!(!PendingFactors::new((40, 101)).fits(&FastRows::from_capture(&two).unwrap()));
    let conv = capture(128, 9, 100, 40, 1, 3);
    assert!(!PendingFactors::new((40, 101)).fits(&FastRows::from_capture(&conv).unwrap()));
    assert!(!PendingFactors::new((41, 101)).fits(&rows), "another layer");
}

/// One way to spoil held parts.
type Break = Box<dyn Fn(&mut PendingParts)>;

/// `parts` and `from_parts` round-trip; parts of another width, weights that do not match their
/// rows, a decay outside `[0, 1]`, a fractional count, or rows with a zero count are refused.
#[test]
fn held_parts_round_trip_and_misfits_are_refused() {
    let dims = (40, 101);
    let mut pending = PendingFactors::new(dims);
    for s in 0..3 {
        let c = capture(64, 1, 100, 40, 2, s);
        let rows = FastRows::from_capture(&c).unwrap();
        pending.push(&rows, None, true, (0.95, 0.05), s == 0);
    }
    let back = PendingFactors::from_parts(dims, pending.parts()).unwrap();
    assert_eq!(back, pending);
    assert_eq!(
        PendingFactors::from_parts(dims, PendingFactors::new(dims).parts()).unwrap(),
        PendingFactors::new(dims)
    );
    let broken: [(&str, Break); 5] = [
        ("width", Box::new(|p| p.a_rows.truncate(p.a_rows.len() - 1))),
        ("weights", Box::new(|p| p.g_weights.push(1.0))),
        ("decay", Box::new(|p| p.scalars[1] = 1.5)),
        ("count", Box::new(|p| p.scalars[2] = 2.5)),
        ("empty count", Box::new(|p| p.scalars[2] = 0.0)),
    ];
    for (what, breaks) in broken {
        let mut parts = pending.parts();
        breaks(&mut parts);
        assert!(
            PendingFactors::from_parts(dims, parts).is_err(),
            "{what} accepted"
        );
    }
    assert!(PendingFactors::from_parts((40, 100), pending.parts()).is_err());
}
