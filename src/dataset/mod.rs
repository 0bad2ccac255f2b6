//! Datasets held by the server: N rows of D values (f32 or f64, as uploaded) and N
//! labels, immutable once built, so one upload feeds any number of fits and models.
//!
//! - [`build`]: the strict decoding of an upload, chunk by chunk (whole rows, in order,
//!   finite values, the declared size and SHA-256).
//! - [`file`]: a dataset as a safetensors file, for the state directory.
//!
//! A batch is gathered from the rows a fit picks and converted to the model's dtype
//! exactly as a TrainStep's tensor is (f32 → f64 widens exactly, f64 → f32 rounds to
//! nearest), so a fit's steps equal the same TrainSteps bit for bit.
pub mod build;
pub mod file;

use ndarray::Array2;

use crate::engine::scalar::Scalar;
pub use crate::model::DType;

pub use build::{Builder, DatasetError, Header};

/// The values of a dataset, row-major, in the dtype they were uploaded in.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
        }
    }
}

/// One dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    rows: usize,
    dim: usize,
    values: Values,
    labels: Vec<u32>,
    sha256: String,
    name: String,
}

impl Dataset {
    /// A dataset from its parts; `values` must hold `rows × dim` values and `labels`
    /// `rows` labels (the builder and the file decoder check this first).
    fn new(dim: usize, values: Values, labels: Vec<u32>, sha256: String, name: String) -> Self {
        debug_assert_eq!(values.len(), labels.len() * dim);
        Dataset {
            rows: labels.len(),
            dim,
            values,
            labels,
            sha256,
            name,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn dtype(&self) -> DType {
        match self.values {
            Values::F32(_) => DType::F32,
            Values::F64(_) => DType::F64,
        }
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    pub fn values(&self) -> &Values {
        &self.values
    }

    /// 1 + the largest label (0 for no rows): the classes a model needs to fit on it.
    pub fn label_classes(&self) -> u32 {
        self.labels.iter().max().map_or(0, |&m| m.saturating_add(1))
    }

    /// The first row whose label is not below `classes`, and that label.
    pub fn first_label_from(&self, classes: usize) -> Option<(usize, u32)> {
        self.labels
            .iter()
            .position(|&l| l as usize >= classes)
            .map(|i| (i, self.labels[i]))
    }

    /// Bytes held in memory: the values and the labels.
    pub fn bytes(&self) -> u64 {
        held_bytes(self.rows as u64, self.dim as u64, self.dtype())
    }

    /// The rows `picked` (indices below `rows`), in that order, as an N×D batch in the
    /// model's dtype, and their labels.
    pub fn batch<T: Scalar>(&self, picked: &[usize]) -> (Array2<T>, Vec<usize>) {
        let d = self.dim;
        let mut x = Vec::with_capacity(picked.len() * d);
        match &self.values {
            Values::F32(v) => {
                for &r in picked {
                    x.extend(v[r * d..(r + 1) * d].iter().map(|&a| T::of(f64::from(a))));
                }
            }
            Values::F64(v) => {
                for &r in picked {
                    x.extend(v[r * d..(r + 1) * d].iter().map(|&a| T::of(a)));
                }
            }
        }
        let y = picked.iter().map(|&r| self.labels[r] as usize).collect();
        let x = Array2::from_shape_vec((picked.len(), d), x).expect("rows × dim values");
        (x, y)
    }
}

/// Bytes a dataset of `rows × dim` values in `dtype` holds (values and 4-byte labels);
/// `u64::MAX` when that overflows.
pub fn held_bytes(rows: u64, dim: u64, dtype: DType) -> u64 {
    let width = dtype_width(dtype);
    rows.checked_mul(dim)
        .and_then(|n| n.checked_mul(width))
        .and_then(|n| n.checked_add(rows.checked_mul(4)?))
        .unwrap_or(u64::MAX)
}

/// Bytes per value.
pub fn dtype_width(dtype: DType) -> u64 {
    match dtype {
        DType::F32 => 4,
        DType::F64 => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_the_picked_rows_in_order_and_converts_like_the_wire() {
        let values = Values::F64(vec![0.1, 0.2, 1.1, 1.2, 2.1, 2.2]);
        let d = Dataset::new(2, values, vec![0, 1, 2], String::new(), String::new());
        let (x, y) = d.batch::<f32>(&[2, 0, 2]);
        assert_eq!(x.shape(), &[3, 2]);
        assert_eq!(x.row(0).to_vec(), vec![2.1f64 as f32, 2.2f64 as f32]);
        assert_eq!(x.row(1).to_vec(), vec![0.1f64 as f32, 0.2f64 as f32]);
        assert_eq!(y, vec![2, 0, 2]);
        let (x64, _) = d.batch::<f64>(&[1]);
        assert_eq!(x64.row(0).to_vec(), vec![1.1, 1.2]);
        assert_eq!(d.label_classes(), 3);
        assert_eq!(d.first_label_from(2), Some((2, 2)));
        assert_eq!(d.first_label_from(3), None);
        assert_eq!(d.bytes(), 3 * 2 * 8 + 3 * 4);
    }
}
