//! A block's state survives `state()` → `restore()`: the same updates afterwards.

mod support;

use support::curvature::*;
use tekfac::curvature::{CurvatureBlock, Damping, StateArray, Variant};

#[test]
fn state_round_trip_gives_the_same_updates() {
    let c = random_capture(50, 4, 2, 3, 2, 2);
    let grad = randn(&mut rng(51), 2, 4);
    for v in Variant::ALL {
        let block = fitted(v, &c);
        let mut copy = CurvatureBlock::new(v, &info(2, 3, true), 0.0);
        copy.restore(&block.state()).unwrap();
        let d = Damping::for_variant(v, 1e-2);
        assert_eq!(
            copy.precondition(&grad, &d).unwrap(),
            block.precondition(&grad, &d).unwrap(),
            "{v}"
        );
        assert_eq!(copy.factors(), block.factors(), "{v}");
        assert_eq!(copy.state(), block.state(), "{v}");
    }
}

#[test]
fn state_of_an_empty_block_is_empty_and_bad_shapes_are_refused() {
    let mut block = CurvatureBlock::new(Variant::Tekfac, &info(2, 3, false), 0.95);
    assert!(block.state().is_empty());
    let wrong = StateArray {
        name: "a_factor",
        shape: vec![3, 3],
        data: vec![0.0; 9],
    };
    assert!(block.restore(&[wrong]).is_err());
    assert!(CurvatureBlock::STATE_NAMES.len() == 11);
}
