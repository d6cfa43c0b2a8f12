//! Model presets by name, and the task (loss) each one trains.

use super::args::ModelName;
use tekfac::nn::{Module, presets};
use tekfac::train::Task;
use tekfac::{ParamStore, Result};

/// Builds a preset, registering its parameters in `ps`.
pub fn build(
    name: ModelName,
    ps: &mut ParamStore<f32>,
    pixels: usize,
    classes: usize,
) -> Result<(Box<dyn Module<f32>>, Task)> {
    Ok(match name {
        ModelName::Mlp => (
            Box::new(presets::Mlp::new(ps, pixels, classes)?),
            Task::Classify,
        ),
        ModelName::Cnn => (Box::new(presets::Cnn::new(ps, classes)?), Task::Classify),
        ModelName::Autoencoder => (
            Box::new(presets::Autoencoder::new(ps, pixels)?),
            Task::Autoencode,
        ),
    })
}
