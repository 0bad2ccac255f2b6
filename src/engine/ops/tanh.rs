//! Hyperbolic tangent, with local gradient `1 − tanh²(x) = 1 − y²`. In f32 through
//! `fastmath::tanh` (a loop of it vectorises), in f64 through libm.
use super::activation::Activation;
use crate::engine::scalar::Scalar;

#[derive(Debug, Clone, Copy, Default)]
pub struct Tanh;

impl Activation for Tanh {
    const KIND: &'static str = "tanh";

    fn f<T: Scalar>(&self, x: T) -> T {
        x.tanh_fast()
    }

    fn df<T: Scalar>(&self, _x: T, y: T) -> T {
        T::one() - y * y
    }
}
