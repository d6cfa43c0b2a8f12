//! Seeded initialisers: normal, uniform, Kaiming (He) and Xavier (Glorot).
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

    /// PyTorch's default for `Linear`/`Conv2d`: `U(±1/√fan_in)` (also the peer benchmark's init).
    pub fn fan_in_uniform(dims: &[usize], fan_in: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        Self::rand_uniform(dims, -bound, bound, rng)
    }
}
