//! Multiclass SVM (hinge) loss, averaged over the batch:
//! `L = 1/N Σ_i Σ_{j≠y_i} max(0, s_ij − s_{i,y_i} + Δ)`.
//!
//! Each positive margin is a max gate that passed its input, so it sends `+1/N` to
//! `s_ij` and `−1/N` to `s_{i,y_i}`; a margin of exactly 0 counts as not passed.
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, arr0};

use super::{as2, check_labels};
use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

struct SvmLoss<T> {
    labels: Vec<usize>,
    margin: T,
}

impl<T: Scalar> SvmLoss<T> {
    /// The hinge terms `max(0, s_ij − s_{i,y_i} + Δ)`, with the `j = y_i` terms zeroed.
    fn margins(&self, s: &ArrayView2<'_, T>) -> Array2<T> {
        let mut m = s.to_owned();
        for (mut row, &y) in m.rows_mut().into_iter().zip(&self.labels) {
            let sy = row[y];
            row.mapv_inplace(|v| (v - sy + self.margin).max(T::zero()));
            row[y] = T::zero();
        }
        m
    }
}

impl<T: Scalar> Graph<'_, T> {
    /// Mean SVM loss of `scores` (N×C) for `labels`, as a 0-d value.
    pub fn svm_loss(&mut self, scores: NodeId, labels: &[usize], margin: T) -> Result<NodeId> {
        let (n, c) = self.matrix_shape(scores, "scores")?;
        check_labels(labels, n, c)?;
        let gate = SvmLoss {
            labels: labels.to_vec(),
            margin,
        };
        let total = gate.margins(&as2(&self.value(scores))).sum();
        let out = arr0(total / T::of(n as f64)).into_dyn();
        Ok(self.push_gate(Box::new(gate), vec![scores], out))
    }
}

impl<T: Scalar> Gate<T> for SvmLoss<T> {
    fn kind(&self) -> &'static str {
        "svm_loss"
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        if !needs[0] {
            return vec![None];
        }
        let s = as2(&inputs[0]);
        let scale = upstream.sum() / T::of(s.nrows() as f64);
        let mut d = self.margins(&s);
        for (mut row, &y) in d.rows_mut().into_iter().zip(&self.labels) {
            let mut count = T::zero();
            row.mapv_inplace(|m| {
                if m > T::zero() {
                    count += T::one();
                    scale
                } else {
                    T::zero()
                }
            });
            row[y] = -count * scale;
        }
        vec![Some(d.into_dyn())]
    }
}
