//! The element types a model can compute in: `f32` (the default, fast) and `f64` (for
//! exact gradient checks).
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::Float;

use super::fastmath;

/// A floating-point element type the engine computes in.
pub trait Scalar:
    LinalgScalar
    + Float
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + 'static
{
    /// Name used on the wire and in errors.
    const NAME: &'static str;
    /// Converts from f64, rounding to nearest (hyper-parameters are given in f64).
    fn of(v: f64) -> Self;
    /// Widens (or keeps) to f64, exactly.
    fn as_f64(self) -> f64;
    /// `eˣ` for elementwise loops: f32 takes [`fastmath::exp`], branch-free so that a
    /// loop over a slice vectorises (within 1 ulp); f64 keeps libm, the reference that
    /// gradient checks and PyTorch parity are measured with.
    fn exp_fast(self) -> Self;
    /// `eˣ − 1` likewise ([`fastmath::exp_m1`] in f32, libm in f64).
    fn exp_m1_fast(self) -> Self;
    /// `tanh x` likewise ([`fastmath::tanh`] in f32, libm in f64).
    fn tanh_fast(self) -> Self;
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";
    fn of(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        fastmath::exp(self)
    }
    #[inline(always)]
    fn exp_m1_fast(self) -> Self {
        fastmath::exp_m1(self)
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        fastmath::tanh(self)
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";
    fn of(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn exp_m1_fast(self) -> Self {
        self.exp_m1()
    }
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}

/// The flat (row-major) index of the first NaN or infinity in `a`, if any.
///
/// Every batch and every update is scanned, so this is on the hot path: a contiguous
/// array is checked in blocks with an or-reduction the compiler vectorizes (no early exit
/// inside a block), and only a block that fails is searched for the index.
pub fn first_non_finite<T, S, D>(a: &ndarray::ArrayBase<S, D>) -> Option<usize>
where
    T: Scalar,
    S: ndarray::Data<Elem = T>,
    D: ndarray::Dimension,
{
    const BLOCK: usize = 4096;
    match a.as_slice() {
        Some(s) => {
            let block = s
                .chunks(BLOCK)
                .position(|c| c.iter().fold(false, |bad, v| bad | !v.is_finite()))?;
            let start = block * BLOCK;
            s[start..]
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| start + i)
        }
        None => a.iter().position(|v| !v.is_finite()),
    }
}
