//! GELU (Hendrycks & Gimpel, 2016): `x·Φ(x)`, the input weighted by the probability that
//! a standard normal falls below it. Two forms, as PyTorch's `gelu(approximate=...)`:
//! - exact: `½x(1 + erf(x/√2))`, slope `Φ(x) + x·φ(x)` with `φ(x) = e^{−x²/2}/√(2π)`;
//! - tanh: `½x(1 + tanh(u))`, `u = √(2/π)(x + 0.044715x³)`, slope
//!   `½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)` with `t = tanh(u)`.
//!
//! `erf` comes from libm in f64 (then rounded to the model's dtype), so f32 and f64 models
//! share one well-tested implementation.
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI, PI};

use serde::{Deserialize, Serialize};

use super::activation::Activation;
use crate::engine::scalar::Scalar;

/// The cubic coefficient of the tanh form.
const CUBIC: f64 = 0.044_715;

/// Which GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluForm {
    /// `x·Φ(x)` through `erf` (PyTorch's `approximate='none'`).
    #[default]
    Erf,
    /// The tanh approximation (PyTorch's `approximate='tanh'`, BERT's and GPT-2's).
    Tanh,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Gelu {
    pub form: GeluForm,
}

/// `√(2/π)`.
fn sqrt_2_over_pi() -> f64 {
    FRAC_2_SQRT_PI * FRAC_1_SQRT_2
}

impl Activation for Gelu {
    const KIND: &'static str = "gelu";

    fn f<T: Scalar>(&self, x: T) -> T {
        let v = x.as_f64();
        T::of(match self.form {
            GeluForm::Erf => 0.5 * v * (1.0 + libm::erf(v * FRAC_1_SQRT_2)),
            GeluForm::Tanh => 0.5 * v * (1.0 + (sqrt_2_over_pi() * (v + CUBIC * v * v * v)).tanh()),
        })
    }

    fn df<T: Scalar>(&self, x: T, _y: T) -> T {
        let v = x.as_f64();
        T::of(match self.form {
            GeluForm::Erf => {
                let cdf = 0.5 * (1.0 + libm::erf(v * FRAC_1_SQRT_2));
                let pdf = (-0.5 * v * v).exp() / (2.0 * PI).sqrt();
                cdf + v * pdf
            }
            GeluForm::Tanh => {
                let k = sqrt_2_over_pi();
                let t = (k * (v + CUBIC * v * v * v)).tanh();
                0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * CUBIC * v * v)
            }
        })
    }
}
