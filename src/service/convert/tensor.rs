//! Tensors from the wire, strictly: a shape that disagrees with its values, overflows or
//! is over the server's limit is refused with the field's name before anything is
//! decoded, and decoding costs one pass at most (an f32 tensor for an f32 model is
//! moved, not copied). The other direction, which cannot fail, is [`crate::pb::array`].
use ndarray::{Array2, ArrayD, IxDyn};
use tonic::Status;

use crate::pb;
use crate::pb::array::{WireScalar, raw_width};
use crate::pb::tensor::le_values;
use crate::service::status::{Reason, Refusal, invalid};

/// Checks a tensor's shape against its values and a size limit, without touching the
/// values: cheap enough for the async side. Returns the shape.
pub fn check_tensor(
    t: &pb::Tensor,
    field: &str,
    max_elements: usize,
) -> Result<Vec<usize>, Status> {
    let carriers = [
        !t.values.is_empty(),
        !t.values_f64.is_empty(),
        !t.raw.is_empty(),
    ];
    if carriers.iter().filter(|&&c| c).count() > 1 {
        return Err(invalid(
            field,
            "set one of values, values_f64 and raw, not several",
        ));
    }
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let got = if t.raw.is_empty() {
        t.values.len().max(t.values_f64.len())
    } else {
        let width = raw_width(t.raw_dtype).ok_or_else(|| {
            invalid(
                format!("{field}.raw_dtype"),
                format!("{} is not a dtype (DTYPE_F32 or DTYPE_F64)", t.raw_dtype),
            )
        })?;
        if !t.raw.len().is_multiple_of(width) {
            return Err(invalid(
                format!("{field}.raw"),
                format!(
                    "{} bytes is not a whole number of {width}-byte values",
                    t.raw.len()
                ),
            ));
        }
        t.raw.len() / width
    };
    // A malformed tensor (its shape overflows or disagrees with its values) is the
    // client's mistake whatever its size; only a well-formed one over the limit is the
    // retryable RESOURCE_EXHAUSTED.
    match expected {
        None => Err(invalid(field, format!("shape {:?} overflows", t.shape))),
        Some(n) if n != got => Err(invalid(
            field,
            format!("shape {:?} needs {n} values, got {got}", t.shape),
        )),
        Some(n) if n > max_elements => Err(Refusal::new(
            Reason::TensorLimit,
            format!(
                "{field}: {n} elements is more than this server's limit of {max_elements} \
                 per tensor"
            ),
        )
        .limit(
            "--max-batch-elements",
            format!("{field} has {n} elements, more than the {max_elements} a tensor may have"),
        )
        .into()),
        Some(_) => Ok(shape),
    }
}

/// Decodes a tensor (already checked with [`check_tensor`]) into the model's dtype: one
/// pass when it comes in the model's dtype (numbers are moved, raw bytes read once).
pub fn tensor_values<T: WireScalar>(t: pb::Tensor, field: &str) -> Result<ArrayD<T>, Status> {
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let values = if !t.raw.is_empty() {
        if raw_width(t.raw_dtype) == Some(8) {
            T::from_f64s(le_values(&t.raw, f64::from_le_bytes).collect())
        } else {
            T::from_f32s(le_values(&t.raw, f32::from_le_bytes).collect())
        }
    } else if t.values_f64.is_empty() {
        T::from_f32s(t.values)
    } else {
        T::from_f64s(t.values_f64)
    };
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| invalid(field, e.to_string()))
}

/// Decodes an N×D (or N×C) matrix.
pub fn matrix<T: WireScalar>(t: pb::Tensor, field: &str) -> Result<Array2<T>, Status> {
    if t.shape.len() != 2 {
        return Err(invalid(
            field,
            format!("expected a matrix shape [rows, cols], got {:?}", t.shape),
        ));
    }
    tensor_values::<T>(t, field)?
        .into_dimensionality()
        .map_err(|e| invalid(field, e.to_string()))
}

pub fn labels(v: Vec<u32>) -> Vec<usize> {
    v.into_iter().map(|l| l as usize).collect()
}
