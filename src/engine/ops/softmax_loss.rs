//! Softmax cross-entropy loss, averaged over the batch:
//! `L = 1/N Σ_i −log(e^{s_{i,y_i}} / Σ_j e^{s_ij})`.
//!
//! The row maximum is subtracted before exponentiating (the result is unchanged and
//! e^s never overflows). e^s is `Scalar::exp_fast`: the vectorising `fastmath::exp`
//! in f32, libm in f64. The local gradient is `(p − onehot(y))/N` with p the softmax
//! probabilities, which the forward pass keeps for backward.
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut1, Axis, arr0};

use super::{as2, check_labels};
use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

struct SoftmaxLoss<T> {
    labels: Vec<usize>,
    probs: Array2<T>,
}

impl<T: Scalar> Graph<'_, T> {
    /// Mean softmax cross-entropy of `scores` (N×C) for `labels`, as a 0-d value.
    pub fn softmax_loss(&mut self, scores: NodeId, labels: &[usize]) -> Result<NodeId> {
        let (n, c) = self.matrix_shape(scores, "scores")?;
        check_labels(labels, n, c)?;
        let mut probs = as2(&self.value(scores)).to_owned();
        let mut total = T::zero();
        for (mut row, &y) in probs.axis_iter_mut(Axis(0)).zip(labels) {
            let log_z = shift_by_max(&mut row);
            total += log_z - row[y];
            row.mapv_inplace(|v| (v - log_z).exp_fast());
        }
        let out = arr0(total / T::of(n as f64)).into_dyn();
        let gate = SoftmaxLoss {
            labels: labels.to_vec(),
            probs,
        };
        Ok(self.push_gate(Box::new(gate), vec![scores], out))
    }
}

/// Subtracts the row's maximum from it (so no e^s overflows) and returns
/// `log Σ_j e^{s_j}` of the shifted row.
fn shift_by_max<T: Scalar>(row: &mut ArrayViewMut1<'_, T>) -> T {
    let max = row.fold(T::neg_infinity(), |m, &v| m.max(v));
    row.mapv_inplace(|v| v - max);
    row.mapv(|v| v.exp_fast()).sum().ln()
}

/// Each row's softmax probabilities `e^{s_j} / Σ_k e^{s_k}`, computed as the loss does
/// (Forward's `probabilities`).
pub fn softmax<T: Scalar>(scores: ArrayView2<'_, T>) -> Array2<T> {
    let mut probs = scores.to_owned();
    for mut row in probs.axis_iter_mut(Axis(0)) {
        let log_z = shift_by_max(&mut row);
        row.mapv_inplace(|v| (v - log_z).exp_fast());
    }
    probs
}

impl<T: Scalar> Gate<T> for SoftmaxLoss<T> {
    fn kind(&self) -> &'static str {
        "softmax_loss"
    }

    fn backward(
        &self,
        _inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        if !needs[0] {
            return vec![None];
        }
        let scale = upstream.sum() / T::of(self.probs.nrows() as f64);
        let mut d = self.probs.clone();
        for (mut row, &y) in d.axis_iter_mut(Axis(0)).zip(&self.labels) {
            row[y] -= T::one();
            row.mapv_inplace(|v| v * scale);
        }
        vec![Some(d.into_dyn())]
    }
}
