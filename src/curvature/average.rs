//! Running averages of curvature statistics (spec §1.4).
//!
//! Convex exponential moving average with decay `ρ` (default 0.95 in the optimizer):
//!
//! ```text
//! x̄ ← ρ·x̄ + (1 − ρ)·x_batch
//! ```
//!
//! **Initial value (a documented choice, spec §1.4):** the first observation initialises the
//! average, `x̄₁ = x₁`. The weights of `x₁ … x_k` are then `ρ^{k−1}, (1−ρ)ρ^{k−2}, …, (1−ρ)`,
//! which sum to 1, so no bias correction is needed and no prior (alecwangcq's `I`, baolgr's
//! bootstrap `δ₀ = d_in'·d_out`) leaks into the estimate. With `ρ = 0` every observation
//! replaces the average, which is how the identity tests make each identity exact.
//!
//! [`MovingAverage::blend`] takes arbitrary coefficients `x̄ ← c_old·x̄ + c_new·x` (identity 15:
//! TKFAC's raw-numerator traces stay equal under any coefficients, e.g. AdaFisher's
//! `(0.92, 0.008)`).
//!
//! A batch reaches an average as a [`BatchStatistic`]: a formed value (every [`Blend`] type is
//! its own batch), or a batch that writes `c_old·x̄ + c_new·x` straight into the average without
//! being formed first (the f32 statistics path, `fast_factors.rs` and `fast_correction.rs`).

use nalgebra::DMatrix;

/// A value that can be blended linearly with another of the same shape.
pub trait Blend: Clone {
    /// `self ← c_old·self + c_new·batch`.
    fn blend(&mut self, c_old: f64, c_new: f64, batch: &Self);
}

impl Blend for f64 {
    fn blend(&mut self, c_old: f64, c_new: f64, batch: &Self) {
        *self = c_old * *self + c_new * batch;
    }
}

impl Blend for DMatrix<f64> {
    fn blend(&mut self, c_old: f64, c_new: f64, batch: &Self) {
        assert_eq!(
            self.shape(),
            batch.shape(),
            "MovingAverage: a batch statistic changed shape"
        );
        self.zip_apply(batch, |x, b| *x = c_old * *x + c_new * b);
    }
}

/// A batch statistic on its way into a [`MovingAverage`] of `T`: formed, or blended in place.
pub trait BatchStatistic<T> {
    /// The shape the batch has (a block checks it against its own before blending).
    fn shape(&self) -> (usize, usize);
    /// The batch as a value (the first observation initialises the average with it).
    fn form(self) -> T;
    /// `avg ← c_old·avg + c_new·batch`, bit for bit what [`Blend::blend`] with the formed batch
    /// gives.
    fn blend_into(self, avg: &mut T, c_old: f64, c_new: f64);
}

impl<T: Blend + Shaped> BatchStatistic<T> for T {
    fn shape(&self) -> (usize, usize) {
        Shaped::shape(self)
    }
    fn form(self) -> T {
        self
    }
    fn blend_into(self, avg: &mut T, c_old: f64, c_new: f64) {
        avg.blend(c_old, c_new, &self);
    }
}

/// The shape of a value that is averaged: `(rows, cols)` of a matrix, `(d_out, d_in')` of a
/// pair of factors, `(1, 1)` of a scalar.
pub trait Shaped {
    /// `(rows, cols)`.
    fn shape(&self) -> (usize, usize);
}

impl Shaped for f64 {
    fn shape(&self) -> (usize, usize) {
        (1, 1)
    }
}

impl Shaped for DMatrix<f64> {
    fn shape(&self) -> (usize, usize) {
        DMatrix::shape(self)
    }
}

/// Whether every entry of a batch is finite (a block refuses a non-finite re-scaling batch
/// before it reaches the average).
pub trait AllFinite {
    /// True when no entry is NaN or ±Inf.
    fn all_finite(&self) -> bool;
}

impl AllFinite for DMatrix<f64> {
    fn all_finite(&self) -> bool {
        self.iter().all(|x| x.is_finite())
    }
}

/// A convex EMA `x̄ ← ρ·x̄ + (1−ρ)·x`, initialised by its first observation.
///
/// ```
/// use tekfac::curvature::MovingAverage;
/// let mut m = MovingAverage::new(0.5);
/// assert!(m.value().is_none());
/// m.update(4.0);          // first observation initialises
/// m.update(2.0);          // 0.5·4 + 0.5·2
/// assert_eq!(m.value(), Some(&3.0));
/// ```
#[derive(Clone, Debug)]
pub struct MovingAverage<T> {
    decay: f64,
    value: Option<T>,
    count: u64,
}

impl<T: Blend> MovingAverage<T> {
    /// An empty average with decay `ρ ∈ [0, 1]`.
    ///
    /// # Panics
    /// When `decay` is outside `[0, 1]` (the optimizer validates its configuration first).
    pub fn new(decay: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&decay),
            "MovingAverage: decay must lie in [0, 1], got {decay}"
        );
        MovingAverage {
            decay,
            value: None,
            count: 0,
        }
    }

    /// The decay `ρ`.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The current average, `None` before the first observation.
    pub fn value(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// Observations blended in since the average was last (re)initialised.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `x̄ ← ρ·x̄ + (1−ρ)·batch`, or `x̄ = batch` for the first observation.
    pub fn update(&mut self, batch: impl BatchStatistic<T>) {
        let rho = self.decay;
        self.blend(rho, 1.0 - rho, batch);
    }

    /// `x̄ ← c_old·x̄ + c_new·batch` with arbitrary coefficients, or `x̄ = batch` first.
    pub fn blend(&mut self, c_old: f64, c_new: f64, batch: impl BatchStatistic<T>) {
        match &mut self.value {
            Some(v) => batch.blend_into(v, c_old, c_new),
            None => self.value = Some(batch.form()),
        }
        self.count += 1;
    }

    /// `x̄ ← c_old·x̄ + batch` for a batch that already holds `count` observations with their
    /// weights (`pending.rs`: `c_old = Π c_old,j`), or `x̄ = batch` when the average is empty.
    pub fn absorb(&mut self, c_old: f64, count: u64, batch: impl BatchStatistic<T>) {
        match &mut self.value {
            Some(v) => batch.blend_into(v, c_old, 1.0),
            None => self.value = Some(batch.form()),
        }
        self.count += count;
    }

    /// Replaces the average by `value`, as if it were the first observation (re-seeding of
    /// `s*`/`Θ` on a basis refresh, spec §1.5).
    pub fn reseed(&mut self, value: T) {
        self.value = Some(value);
        self.count = 1;
    }

    /// Forgets the average; the next observation initialises it again.
    pub fn reset(&mut self) {
        self.value = None;
        self.count = 0;
    }
}
