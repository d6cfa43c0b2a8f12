//! Model presets by name, and the task (loss) each one trains.

use super::args::ModelName;
use tekfac::nn::{Activation, Init, Linear, Module, Sequential};
use tekfac::train::Task;
use tekfac::{ParamStore, Result};

/// Builds a preset, registering its parameters in `ps`.
pub fn build(name: ModelName, ps: &mut ParamStore<f32>, pixels: usize, classes: usize) -> Result<(Box<dyn Module<f32>>, Task)> {
    Ok(match name {
        ModelName::Mlp => (Box::new(mlp(ps, &[pixels, 512, 256, classes])?), Task::Classify),
        ModelName::Cnn => return Err(tekfac::Error::invalid("model", "tmp")),
        ModelName::Autoencoder => return Err(tekfac::Error::invalid("model", "tmp")),
    })
}

/// A ReLU MLP over flattened inputs.
fn mlp(ps: &mut ParamStore<f32>, sizes: &[usize]) -> Result<Sequential<f32>> {
    let mut net = Sequential::new().push(Activation::Flatten);
    for (i, w) in sizes.windows(2).enumerate() {
        net = net.push(Linear::with_init(ps, &format!("fc{}", i + 1), w[0], w[1], true, Init::FanInUniform)?);
        if i + 2 < sizes.len() {
            net = net.push(Activation::Relu);
        }
    }
    Ok(net)
}
