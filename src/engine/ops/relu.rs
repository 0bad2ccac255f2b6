//! ReLU `max(0, x)`: passes x where x > 0, so its local gradient is 1 there and 0 below
//! (at x = 0 we take 0, the lecture's subgradient).
use super::activation::Activation;
use crate::engine::scalar::Scalar;

#[derive(Debug, Clone, Copy, Default)]
pub struct Relu;

impl Activation for Relu {
    const KIND: &'static str = "relu";

    fn f<T: Scalar>(&self, x: T) -> T {
        if x > T::zero() { x } else { T::zero() }
    }

    fn df<T: Scalar>(&self, x: T, _y: T) -> T {
        if x > T::zero() { T::one() } else { T::zero() }
    }
}
