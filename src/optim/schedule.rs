//! Learning-rate schedules shared by every optimizer: `lr(step) = base · factor(step)`.

/// How the learning rate changes with the step number (0-based).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Schedule {
    /// The base rate at every step.
    #[default]
    Constant,
    /// Multiply by `gamma` at each listed step (PyTorch's `MultiStepLR`).
    Step {
        /// Steps at which the rate drops.
        milestones: Vec<u64>,
        /// Factor applied at each milestone (usual: 0.1).
        gamma: f64,
    },
    /// Cosine decay from the base rate to `min_factor · base` over `total` steps.
    Cosine {
        /// Steps of the whole run.
        total: u64,
        /// Final rate as a fraction of the base (usual: 0).
        min_factor: f64,
    },
}

/// A schedule with an optional linear warm-up over the first `warmup` steps.
///
/// ```
/// use tekfac::optim::{LrSchedule, Schedule};
///
/// let s = LrSchedule {
///     schedule: Schedule::Step { milestones: vec![100, 200], gamma: 0.1 },
///     warmup: 4,
/// };
/// assert_eq!(s.factor(0), 0.25); // warm-up: (step + 1)/4
/// assert_eq!(s.factor(50), 1.0);
/// assert!((s.factor(150) - 0.1).abs() < 1e-12);
/// assert!((s.factor(250) - 0.01).abs() < 1e-12);
/// // a training loop calls opt.set_lr(base_lr * s.factor(step)) before each step
/// ```
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LrSchedule {
    /// The shape after warm-up.
    pub schedule: Schedule,
    /// Steps of linear warm-up from `base/warmup` to `base` (0: none).
    pub warmup: u64,
}

impl LrSchedule {
    /// The multiplier of the base learning rate at `step`.
    pub fn factor(&self, step: u64) -> f64 {
        let warm = if self.warmup > 0 && step < self.warmup {
            (step + 1) as f64 / self.warmup as f64
        } else {
            1.0
        };
        let shape = match &self.schedule {
            Schedule::Constant => 1.0,
            Schedule::Step { milestones, gamma } => {
                gamma.powi(milestones.iter().filter(|&&m| step >= m).count() as i32)
            }
            Schedule::Cosine { total, min_factor } => {
                let t = (step as f64 / (*total).max(1) as f64).min(1.0);
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        warm * shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_have_the_documented_shape() {
        let step = LrSchedule {
            schedule: Schedule::Step {
                milestones: vec![10, 20],
                gamma: 0.1,
            },
            warmup: 0,
        };
        assert_eq!(step.factor(9), 1.0);
        assert!((step.factor(10) - 0.1).abs() < 1e-15 && (step.factor(25) - 0.01).abs() < 1e-15);
        let cos = LrSchedule {
            schedule: Schedule::Cosine {
                total: 100,
                min_factor: 0.0,
            },
            warmup: 0,
        };
        assert!(
            (cos.factor(0) - 1.0).abs() < 1e-12
                && (cos.factor(50) - 0.5).abs() < 1e-12
                && cos.factor(100).abs() < 1e-12
        );
        let warm = LrSchedule {
            schedule: Schedule::Constant,
            warmup: 4,
        };
        assert_eq!(
            [warm.factor(0), warm.factor(3), warm.factor(4)],
            [0.25, 1.0, 1.0]
        );
    }
}
