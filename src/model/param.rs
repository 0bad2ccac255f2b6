//! A model's parameters as the net and the optimizer both see them: named tensors, the
//! weights told apart from the biases (only weights are regularized), and the finiteness
//! check every stored value passes.
use ndarray::ArrayD;

use crate::engine::error::{EngineError, Result};
use crate::engine::scalar::{Scalar, first_non_finite};

/// A named parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param<T> {
    pub name: String,
    pub value: ArrayD<T>,
    /// Weight matrices are regularized, biases are not.
    pub is_weight: bool,
}

/// Checks that every value is finite; the error gives the first bad flat index.
pub fn check_finite<T, S, D>(field: &str, a: &ndarray::ArrayBase<S, D>) -> Result<()>
where
    T: Scalar,
    S: ndarray::Data<Elem = T>,
    D: ndarray::Dimension,
{
    match first_non_finite(a) {
        Some(index) => Err(EngineError::NonFinite {
            field: field.into(),
            index,
            value: a.iter().nth(index).map_or(f64::NAN, |v| v.as_f64()),
        }),
        None => Ok(()),
    }
}
