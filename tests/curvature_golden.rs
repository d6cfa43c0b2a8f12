//! Golden numbers: fixed inputs whose curvature statistics, approximation errors and updates
//! were computed by an independent program and are written here as f64 literals. Relative-error
//! identities (`tests/curvature_identities_*.rs`) cannot see a wrong overall scale (a missing
//! 1/N, a factor 2 in δ, λ where √λ belongs); these numbers can.
//!
//! - `reference_numbers_of_identities_check_py`: the six (ā, g) samples of
//!   `shared/spec/identities_check.py` (seed 0) and its errors ‖F − F̂‖_F per variant.

mod support;

use nalgebra::DMatrix;
use support::curvature::{EXACT, capture, check, fitted, rel_err_scalar};
use tekfac::curvature::Variant;
use tekfac::curvature::exact::exact_fisher;

/// Cross-check against `shared/spec/identities_check.py`: its six (ā, g) samples (seed 0) and
/// its Frobenius errors ‖F − ·‖ for the four variants (invariant under its cvec ordering).
#[test]
fn reference_numbers_of_identities_check_py() {
    #[rustfmt::skip]
    let a = DMatrix::from_row_slice(6, 3, &[
        0.9417154046806644, -1.3965781047011498, 1.0,
        -1.016348894188071, -0.07212002278507135, 1.0,
        -1.3090373644593587, 0.1938877412491041, 1.0,
        -0.33366798379566953, 1.6456717605826776, 1.0,
        2.4041193322985697, -1.53108259287363, 1.0,
        -0.596962748085702, 1.503680882481937, 1.0,
    ]);
    #[rustfmt::skip]
    let g = DMatrix::from_row_slice(6, 2, &[
        -0.6797144480784211, 0.3705035674606598,
        0.5375894618245707, -2.4932976458129645,
        4.966248517675986, -3.234908152737524,
        -3.9122283609378936, -3.599096641369089,
        7.168192562641959, -18.03283665436264,
        13.435800543843392, -9.912321654349219,
    ]);
    let c = capture(&a, &[g], 1);
    let f = exact_fisher(&c).unwrap();
    check(
        "[ref] tr F",
        rel_err_scalar(f.trace(), 777.3962205220223),
        EXACT,
    );
    let reference = [
        (Variant::Kfac, 372.48013808007727),
        (Variant::Ekfac, 259.22415300929674),
        (Variant::Tkfac, 128.99726889009096),
        (Variant::Tekfac, 121.32595112480548),
    ];
    for (v, want) in reference {
        let err = (&f - fitted(v, &c).to_dense().unwrap()).norm();
        check(
            &format!("[ref] {v}: ‖F − F̂‖ = identities_check.py"),
            rel_err_scalar(err, want),
            EXACT,
        );
    }
}
