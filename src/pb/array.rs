//! ndarray ↔ `Tensor` without validation: encoding a model's arrays for an answer (in
//! the model's dtype, moving the buffer when it is already row-major), and reading an
//! answer's tensor back as f64 on the client side. The server's strict decoding of
//! requests is `service::convert::tensor`.
use ndarray::{ArrayD, IxDyn};

use super::Tensor;
use super::tensor::le_values;
use crate::engine::scalar::Scalar;

/// A model dtype that knows its wire form.
pub trait WireScalar: Scalar {
    fn from_f32s(v: Vec<f32>) -> Vec<Self>;
    fn from_f64s(v: Vec<f64>) -> Vec<Self>;
    fn tensor(shape: Vec<u32>, v: Vec<Self>) -> Tensor;
    /// The `backprop.v1.Dtype` of this scalar as `raw` bytes.
    const RAW_DTYPE: i32;
    /// The value as little-endian bytes (4 or 8).
    fn extend_le(v: &[Self], out: &mut Vec<u8>);
}

/// How an answer's tensors are written: as numbers (`values`/`values_f64`), or as `raw`
/// little-endian bytes for a client that sent its batch that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    #[default]
    Numbers,
    Raw,
}

impl Form {
    /// The form a request's tensor asks for: its own.
    pub fn of(t: &Tensor) -> Self {
        if t.raw.is_empty() {
            Form::Numbers
        } else {
            Form::Raw
        }
    }
}

impl WireScalar for f32 {
    fn from_f32s(v: Vec<f32>) -> Vec<Self> {
        v
    }
    fn from_f64s(v: Vec<f64>) -> Vec<Self> {
        v.into_iter().map(|x| x as f32).collect()
    }
    fn tensor(shape: Vec<u32>, values: Vec<Self>) -> Tensor {
        Tensor {
            shape,
            values,
            ..Default::default()
        }
    }
    const RAW_DTYPE: i32 = super::Dtype::F32 as i32;
    fn extend_le(v: &[Self], out: &mut Vec<u8>) {
        out.reserve(v.len() * 4);
        out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
}

impl WireScalar for f64 {
    fn from_f32s(v: Vec<f32>) -> Vec<Self> {
        v.into_iter().map(f64::from).collect()
    }
    fn from_f64s(v: Vec<f64>) -> Vec<Self> {
        v
    }
    fn tensor(shape: Vec<u32>, values_f64: Vec<Self>) -> Tensor {
        Tensor {
            shape,
            values_f64,
            ..Default::default()
        }
    }
    const RAW_DTYPE: i32 = super::Dtype::F64 as i32;
    fn extend_le(v: &[Self], out: &mut Vec<u8>) {
        out.reserve(v.len() * 8);
        out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
}

/// Encodes an array in row-major order; moves the buffer when it already is.
pub fn to_tensor<T: WireScalar, D: ndarray::Dimension>(a: ndarray::Array<T, D>) -> Tensor {
    let shape = a.shape().iter().map(|&d| d as u32).collect();
    let len = a.len();
    let values = if a.is_standard_layout() {
        // The buffer may extend past the array at either end (an owned slice of a larger
        // array); keep exactly the array's elements, in place.
        let (mut v, offset) = a.into_raw_vec_and_offset();
        v.drain(..offset.unwrap_or(0));
        v.truncate(len);
        v
    } else {
        a.iter().copied().collect()
    };
    T::tensor(shape, values)
}

/// Encodes an array in `form`: as [`to_tensor`] does, or as raw little-endian bytes in
/// the model's dtype (one pass over the values).
pub fn to_tensor_in<T: WireScalar, D: ndarray::Dimension>(
    a: ndarray::Array<T, D>,
    form: Form,
) -> Tensor {
    match form {
        Form::Numbers => to_tensor(a),
        Form::Raw => {
            let shape = a.shape().iter().map(|&d| d as u32).collect();
            let mut raw = Vec::new();
            match a.as_slice() {
                Some(v) => T::extend_le(v, &mut raw),
                None => T::extend_le(&a.iter().copied().collect::<Vec<_>>(), &mut raw),
            }
            Tensor {
                shape,
                raw,
                raw_dtype: T::RAW_DTYPE,
                ..Default::default()
            }
        }
    }
}

/// A tensor as f64, whatever its dtype; `None` if its shape and values disagree.
pub fn to_f64_array(t: &Tensor) -> Option<ArrayD<f64>> {
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let v: Vec<f64> = if !t.raw.is_empty() {
        raw_f64s(&t.raw, raw_width(t.raw_dtype) == Some(8))?
    } else if t.values_f64.is_empty() {
        t.values.iter().map(|&v| f64::from(v)).collect()
    } else {
        t.values_f64.clone()
    };
    ArrayD::from_shape_vec(IxDyn(&shape), v).ok()
}

/// Raw little-endian bytes as f64s (from f32s when not `wide`); `None` if the length is
/// not a whole number of values.
fn raw_f64s(raw: &[u8], wide: bool) -> Option<Vec<f64>> {
    let width = if wide { 8 } else { 4 };
    if !raw.len().is_multiple_of(width) {
        return None;
    }
    Some(if wide {
        le_values(raw, f64::from_le_bytes).collect()
    } else {
        le_values(raw, f32::from_le_bytes).map(f64::from).collect()
    })
}

/// Bytes per value of a `raw` tensor, by its `raw_dtype` (unspecified is f32); `None`
/// for a dtype the proto does not define.
pub fn raw_width(dtype: i32) -> Option<usize> {
    match super::Dtype::try_from(dtype).ok()? {
        super::Dtype::Unspecified | super::Dtype::F32 => Some(4),
        super::Dtype::F64 => Some(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    #[test]
    fn to_tensor_sends_only_the_arrays_elements() {
        let full = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32);
        // Rows 1..3 of an owned array: contiguous, but its buffer holds rows 0 and 3 too.
        let middle = full.clone().slice_move(s![1..3, ..]);
        let t = to_tensor(middle);
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.values, vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(to_tensor(full.clone()).values.len(), 12);
        assert_eq!(
            to_tensor(full.reversed_axes()).values[..4],
            [0.0, 3.0, 6.0, 9.0]
        );
    }
}
