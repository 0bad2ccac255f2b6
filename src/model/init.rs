//! Seeded, deterministic initialization: the same spec and seed give bit-identical
//! parameters on every machine (normals come from [`crate::engine::rng`], drawn in f64
//! and rounded once to the model's dtype). Biases start at 0.
use ndarray::ArrayD;

use super::spec::{InitSpec, ModelSpec};
use crate::engine::rng::Rng;
use crate::engine::scalar::Scalar;

/// One value per parameter of `spec.parameter_shapes()`, in order.
pub fn init_params<T: Scalar>(spec: &ModelSpec) -> Vec<ArrayD<T>> {
    let mut rng = Rng::new(spec.seed);
    spec.parameter_shapes()
        .into_iter()
        .map(|p| {
            if !p.is_weight {
                return ArrayD::zeros(p.shape);
            }
            let (fan_in, fan_out) = (p.shape[0] as f64, p.shape[1] as f64);
            let std = match spec.layer_init(p.layer) {
                InitSpec::Gaussian { scale } => scale,
                InitSpec::He => (2.0 / fan_in).sqrt(),
                InitSpec::Xavier | InitSpec::Auto => (2.0 / (fan_in + fan_out)).sqrt(),
            };
            ArrayD::from_shape_simple_fn(p.shape, || T::of(std * rng.normal()))
        })
        .collect()
}
