//! Seeded initialisers: normal, uniform, Kaiming (He), Xavier (Glorot) and Martens' sparse.
//!
//! All randomness in tekfac comes from [`Rng`] (xoshiro256++, portable and reproducible), seeded
//! explicitly, so a seed gives the same numbers on every machine and thread count.

use super::{Float, Tensor};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// The random-number generator used everywhere in tekfac.
pub type Rng = rand::rngs::Xoshiro256PlusPlus;

/// A generator seeded with `seed`.
pub fn seeded_rng(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

impl<F: Float> Tensor<F> {
    /// Samples `N(mean, std²)` elementwise.
    pub fn randn(dims: &[usize], mean: f64, std: f64, rng: &mut Rng) -> Self {
        let mut t = Self::zeros(dims);
        for x in t.data_mut() {
            let z: f64 = StandardNormal.sample(rng);
            *x = F::from_f64(mean + std * z);
        }
        t
    }

    /// Samples `U(low, high)` elementwise.
    pub fn rand_uniform(dims: &[usize], low: f64, high: f64, rng: &mut Rng) -> Self {
        let mut t = Self::zeros(dims);
        for x in t.data_mut() {
            *x = F::from_f64(rng.random_range(low..high));
        }
        t
    }

    /// Kaiming/He uniform for ReLU nets: `U(±√(6/fan_in))`, variance `2/fan_in`.
    pub fn kaiming_uniform(dims: &[usize], fan_in: usize, rng: &mut Rng) -> Self {
        let bound = (6.0 / fan_in.max(1) as f64).sqrt();
        Self::rand_uniform(dims, -bound, bound, rng)
    }

    /// Kaiming/He normal for ReLU nets: `N(0, 2/fan_in)`.
    pub fn kaiming_normal(dims: &[usize], fan_in: usize, rng: &mut Rng) -> Self {
        Self::randn(dims, 0.0, (2.0 / fan_in.max(1) as f64).sqrt(), rng)
    }

    /// Xavier/Glorot uniform for tanh/sigmoid nets: `U(±√(6/(fan_in+fan_out)))`.
    pub fn xavier_uniform(dims: &[usize], fan_in: usize, fan_out: usize, rng: &mut Rng) -> Self {
        let bound = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
        Self::rand_uniform(dims, -bound, bound, rng)
    }

    /// Martens' (2010, §5) sparse initialisation: each row of `[rows, fan_in]` (an output unit's
    /// incoming weights) gets `nonzero` entries `N(0, 1)` at distinct random columns (all of them
    /// when `fan_in ≤ nonzero`), the rest 0. Martens uses 15; the K-FAC paper's autoencoder runs
    /// used it too.
    ///
    /// ```
    /// use tekfac::Tensor;
    /// use tekfac::tensor::seeded_rng;
    /// let w = Tensor::<f64>::sparse(&[4, 100], 15, &mut seeded_rng(0));
    /// for row in w.data().chunks(100) {
    ///     assert_eq!(row.iter().filter(|&&x| x != 0.0).count(), 15);
    /// }
    /// ```
    pub fn sparse(dims: &[usize], nonzero: usize, rng: &mut Rng) -> Self {
        let mut t = Self::zeros(dims);
        let rows = dims.first().copied().unwrap_or(1);
        let fan_in = t.data().len() / rows.max(1);
        let mut columns: Vec<usize> = (0..fan_in).collect();
        for row in t.data_mut().chunks_exact_mut(fan_in.max(1)) {
            // A partial Fisher–Yates shuffle: the first `k` entries become a random k-subset.
            let k = nonzero.min(fan_in);
            for i in 0..k {
                columns.swap(i, rng.random_range(i..fan_in));
            }
            for &c in &columns[..k] {
                let z: f64 = StandardNormal.sample(rng);
                row[c] = F::from_f64(z);
            }
        }
        t
    }

    /// PyTorch's default for `Linear`/`Conv2d`: `U(±1/√fan_in)` (also the peer benchmark's init).
    pub fn fan_in_uniform(dims: &[usize], fan_in: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        Self::rand_uniform(dims, -bound, bound, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonzero_columns(row: &[f64]) -> Vec<usize> {
        (0..row.len()).filter(|&c| row[c] != 0.0).collect()
    }

    #[test]
    fn sparse_rows_have_their_own_random_columns_and_unit_normal_values() {
        let w = Tensor::<f64>::sparse(&[400, 1000], 15, &mut seeded_rng(7));
        let rows: Vec<Vec<usize>> = w.data().chunks(1000).map(nonzero_columns).collect();
        assert!(rows.iter().all(|r| r.len() == 15));
        assert!(
            rows.windows(2).any(|p| p[0] != p[1]),
            "every row uses the same columns"
        );
        // Every column is chosen with probability 15/1000 per row: 400 rows hit ~6 per column.
        let mut hits = vec![0usize; 1000];
        rows.iter().flatten().for_each(|&c| hits[c] += 1);
        assert!(hits.iter().filter(|&&h| h > 0).count() > 900);
        let values: Vec<f64> = w.data().iter().copied().filter(|&x| x != 0.0).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        // 6,000 draws of N(0, 1): the sample mean is within ±0.06 and the variance within
        // 1 ± 0.1 with probability > 0.999.
        assert!(mean.abs() < 0.06 && (var - 1.0).abs() < 0.1, "{mean} {var}");
    }

    #[test]
    fn sparse_fills_narrow_rows_and_shapes_conv_kernels_by_fan_in() {
        let narrow = Tensor::<f64>::sparse(&[3, 10], 15, &mut seeded_rng(1));
        assert!(narrow.data().iter().all(|&x| x != 0.0));
        let conv = Tensor::<f64>::sparse(&[8, 2, 5, 5], 15, &mut seeded_rng(1));
        for kernel in conv.data().chunks(50) {
            assert_eq!(nonzero_columns(kernel).len(), 15);
        }
        let again = Tensor::<f64>::sparse(&[8, 2, 5, 5], 15, &mut seeded_rng(1));
        assert_eq!(conv, again);
    }
}
