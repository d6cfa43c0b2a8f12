//! Model presets by name, and the task (loss) each one trains.

use super::args::{InitName, ModelName, TrainArgs};
use tekfac::nn::{Activation, Init, Module, presets};
use tekfac::train::Task;
use tekfac::{ParamStore, Result};

/// Builds the preset `--model` with `--init`, registering its parameters in `ps`.
pub fn build(
    args: &TrainArgs,
    ps: &mut ParamStore<f32>,
    pixels: usize,
    classes: usize,
) -> Result<(Box<dyn Module<f32>>, Task)> {
    let init = match args.init {
        InitName::Preset => None,
        InitName::FanInUniform => Some(Init::FanInUniform),
        InitName::Kaiming => Some(Init::Kaiming),
        InitName::Xavier => Some(Init::Xavier),
        InitName::Sparse => Some(Init::Sparse(15)),
    };
    Ok(match args.model {
        ModelName::Mlp => (
            Box::new(presets::Mlp::with_init(
                ps,
                pixels,
                classes,
                init.unwrap_or(Init::FanInUniform),
            )?),
            Task::Classify,
        ),
        ModelName::Cnn => (
            Box::new(presets::Cnn::with_init(
                ps,
                classes,
                init.unwrap_or(Init::FanInUniform),
            )?),
            Task::Classify,
        ),
        ModelName::Autoencoder => (
            Box::new(presets::Autoencoder::with(
                ps,
                pixels,
                Activation::Sigmoid,
                init.unwrap_or(Init::Xavier),
            )?),
            Task::Autoencode,
        ),
    })
}
