//! Sigmoid `σ(x) = 1/(1 + e^−x)`, with local gradient `σ(x)(1 − σ(x)) = y(1 − y)`.
//! For x < 0 it is computed as `eˣ/(1 + eˣ)` so that e^−x never overflows.
use super::activation::Activation;
use crate::engine::scalar::Scalar;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

impl Activation for Sigmoid {
    const KIND: &'static str = "sigmoid";

    fn f<T: Scalar>(&self, x: T) -> T {
        if x >= T::zero() {
            T::one() / (T::one() + (-x).exp())
        } else {
            let e = x.exp();
            e / (T::one() + e)
        }
    }

    fn df<T: Scalar>(&self, _x: T, y: T) -> T {
        y * (T::one() - y)
    }
}
