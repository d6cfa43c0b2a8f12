//! `KroneckerBasis` on singular factors: rows and columns that are exactly zero (pixels black
//! in every image of a batch) are split off as eigenvectors `e_i` with eigenvalue 0, so the
//! eigensolver never sees them. On an MNIST batch, nalgebra's `SymmetricEigen` returns NaN
//! eigenvectors for the TKFAC `δΦ` of the MLP preset's fc1 when handed the whole matrix.

mod support;

use nalgebra::{DMatrix, SymmetricEigen};
use tekfac::curvature::{KroneckerBasis, KroneckerFactors};
use tekfac::dataset::{self, DataSource, Split};
use tekfac::nn::{Mlp, Module};
use tekfac::tensor::seeded_rng;
use tekfac::{FisherType, ParamStore, Tape, Tensor};

/// `‖QᵀQ − I‖_F` and `‖Q diag(d) Qᵀ − m‖_F / ‖m‖_F` of the input-side decomposition.
fn errors(m: &DMatrix<f64>, basis: &KroneckerBasis) -> (f64, f64) {
    let q = &basis.q_a;
    let n = q.nrows();
    let orth = (q.transpose() * q - DMatrix::identity(n, n)).norm();
    let back = q * DMatrix::from_diagonal(&basis.d_a) * q.transpose();
    (orth, (back - m).norm() / m.norm().max(f64::MIN_POSITIVE))
}

#[test]
fn zero_rows_are_split_off_exactly() {
    let n = 40;
    let x = Tensor::<f64>::randn(&[60, n], 0.0, 1.0, &mut seeded_rng(3));
    let mut x = DMatrix::from_row_slice(60, n, x.data());
    let zero = [0, 1, 7, 20, 39];
    for &i in &zero {
        x.column_mut(i).fill(0.0);
    }
    let m = x.transpose() * &x / 60.0;
    let g = DMatrix::identity(2, 2);
    let basis = KroneckerBasis::new(&m, &g).unwrap();
    let (orth, back) = errors(&m, &basis);
    assert!(
        orth < 1e-12 && back < 1e-12,
        "orth {orth:.2e}, back {back:.2e}"
    );
    for &i in &zero {
        let k = (0..n)
            .find(|&k| basis.q_a[(i, k)] == 1.0)
            .expect("e_i is a column");
        assert_eq!(basis.q_a.column(k).norm(), 1.0);
        assert_eq!(basis.d_a[k], 0.0);
    }
    let all_zero = DMatrix::zeros(3, 3);
    let basis = KroneckerBasis::new(&all_zero, &g).unwrap();
    assert_eq!(basis.q_a, DMatrix::identity(3, 3));
    assert!(basis.d_a.iter().all(|&d| d == 0.0));
}

#[cfg_attr(
    not(tekfac_real_data),
    ignore = "needs the real data: set TEKFAC_DATA_DIR"
)]
#[test]
fn mnist_tkfac_factor_gets_a_finite_orthogonal_basis() {
    support::data::dir();
    let data = dataset::load("mnist", Split::Test, &DataSource::default()).unwrap();
    let b = data.batch(&(0..128).collect::<Vec<_>>()).unwrap();
    let mut ps = ParamStore::<f32>::seeded(0);
    let model = Mlp::new(&mut ps, 784, 10).unwrap();
    let mut tape = Tape::new(&ps);
    let x = tape.input(b.images);
    let logits = model.forward(&mut tape, x).unwrap();
    let loss = tape.cross_entropy(logits, &b.labels).unwrap();
    let fisher = FisherType::Sampled { k: 2, seed: 6 };
    let captures = tape.backward_with(loss, fisher).unwrap().captures;
    let fc1 = captures.iter().find(|c| c.layer.0 == 0).unwrap();
    let factors = KroneckerFactors::from_capture(true, fc1).unwrap();
    let raw = SymmetricEigen::new(factors.a_factor.clone());
    let raw_nan = raw.eigenvectors.iter().filter(|x| x.is_nan()).count();
    eprintln!("nalgebra on the whole 785×785 δΦ: {raw_nan} NaN eigenvector entries");
    let basis = KroneckerBasis::from_factors(&factors).unwrap();
    let (orth, back) = errors(&factors.a_factor, &basis);
    eprintln!("split-off basis: ‖QᵀQ − I‖ {orth:.2e}, relative reconstruction {back:.2e}");
    assert!(
        orth < 1e-10 && back < 1e-10,
        "orth {orth:.2e}, back {back:.2e}"
    );
}
