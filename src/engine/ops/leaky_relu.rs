//! Leaky ReLU `max(αx, x)` for 0 ≤ α < 1 (the lecture uses α = 0.1): slope 1 for x > 0
//! and α below, so negative units still pass a little gradient.
use super::activation::Activation;
use crate::engine::scalar::Scalar;

/// The lecture's slope.
pub const DEFAULT_SLOPE: f64 = 0.1;

#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu {
    pub slope: f64,
}

impl Activation for LeakyRelu {
    const KIND: &'static str = "leaky_relu";

    fn f<T: Scalar>(&self, x: T) -> T {
        if x > T::zero() {
            x
        } else {
            T::of(self.slope) * x
        }
    }

    fn df<T: Scalar>(&self, x: T, _y: T) -> T {
        if x > T::zero() {
            T::one()
        } else {
            T::of(self.slope)
        }
    }
}
