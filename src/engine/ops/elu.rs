//! ELU: `x` for x ≥ 0 and `α(eˣ − 1)` below. The slope below zero is `αeˣ = y + α`, read
//! off the output, so backward needs no second exponential. `exp_m1` keeps `eˣ − 1`
//! accurate near zero (in f32 `fastmath::exp_m1`, so the loop vectorises).
use super::activation::Activation;
use crate::engine::scalar::Scalar;

pub const DEFAULT_ALPHA: f64 = 1.0;

#[derive(Debug, Clone, Copy)]
pub struct Elu {
    pub alpha: f64,
}

impl Activation for Elu {
    const KIND: &'static str = "elu";

    fn f<T: Scalar>(&self, x: T) -> T {
        if x >= T::zero() {
            x
        } else {
            T::of(self.alpha) * x.exp_m1_fast()
        }
    }

    fn df<T: Scalar>(&self, x: T, y: T) -> T {
        if x >= T::zero() {
            T::one()
        } else {
            y + T::of(self.alpha)
        }
    }
}
