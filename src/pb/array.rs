//! ndarray ↔ `Tensor` without validation: encoding a model's arrays for an answer (in
//! the model's dtype, moving the buffer when it is already row-major), and reading an
//! answer's tensor back as f64 on the client side. The server's strict decoding of
//! requests is `service::convert::tensor`.
use ndarray::{ArrayD, IxDyn};

use super::Tensor;
use crate::engine::scalar::Scalar;

/// A model dtype that knows its wire form.
pub trait WireScalar: Scalar {
    fn from_f32s(v: Vec<f32>) -> Vec<Self>;
    fn from_f64s(v: Vec<f64>) -> Vec<Self>;
    fn tensor(shape: Vec<u32>, v: Vec<Self>) -> Tensor;
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
            values_f64: Vec::new(),
        }
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
            values: Vec::new(),
            values_f64,
        }
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

/// A tensor as f64, whatever its dtype; `None` if its shape and values disagree.
pub fn to_f64_array(t: &Tensor) -> Option<ArrayD<f64>> {
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let v: Vec<f64> = if t.values_f64.is_empty() {
        t.values.iter().map(|&v| f64::from(v)).collect()
    } else {
        t.values_f64.clone()
    };
    ArrayD::from_shape_vec(IxDyn(&shape), v).ok()
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
