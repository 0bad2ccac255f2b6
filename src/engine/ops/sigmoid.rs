//! Sigmoid `σ(x) = 1/(1 + e^−x)`, with local gradient `σ(x)(1 − σ(x)) = y(1 − y)`.
//! For x < 0 it is computed as `eˣ/(1 + eˣ)` so that e^−x never overflows: both forms
//! share `e = e^−|x| ≤ 1` and differ only in the numerator, a select rather than a
//! branch, so the f32 loop vectorises. Either form stays in [0, 1], and σ(±1000) is
//! exactly 1 or 0.
use super::activation::Activation;
use crate::engine::scalar::Scalar;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

impl Activation for Sigmoid {
    const KIND: &'static str = "sigmoid";

    fn f<T: Scalar>(&self, x: T) -> T {
        let e = (-x.abs()).exp_fast();
        let numerator = if x >= T::zero() { T::one() } else { e };
        numerator / (T::one() + e)
    }

    fn df<T: Scalar>(&self, _x: T, y: T) -> T {
        y * (T::one() - y)
    }
}
