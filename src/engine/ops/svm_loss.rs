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
            // Not `max(0)`: it drops a NaN, and a NaN score would then give a loss of 0.
            row.mapv_inplace(|v| hinge(v - sy + self.margin));
            row[y] = T::zero();
        }
        m
    }
}

/// `max(0, m)` that keeps a NaN margin NaN, so a NaN score shows in the loss.
fn hinge<T: Scalar>(m: T) -> T {
    if m.is_nan() || m > T::zero() {
        m
    } else {
        T::zero()
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
                } else if m.is_nan() {
                    // A NaN margin has no gradient to give; NaN says so downstream.
                    count = T::nan();
                    T::nan()
                } else {
                    T::zero()
                }
            });
            row[y] = -count * scale;
        }
        vec![Some(d.into_dyn())]
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, arr0};

    use crate::engine::{BackwardOptions, Graph};

    fn loss_and_grad(scores: Vec<f32>, labels: &[usize]) -> (f32, ArrayD<f32>) {
        let mut g = Graph::<f32>::new();
        let n = labels.len();
        let s = ArrayD::from_shape_vec(IxDyn(&[n, scores.len() / n]), scores).unwrap();
        let s = g.leaf("s", s, true);
        let l = g.svm_loss(s, labels, 1.0).unwrap();
        let loss = g.value(l).sum();
        let mut grads = g
            .backward(
                vec![(l, arr0(1.0f32).into_dyn())],
                BackwardOptions::default(),
            )
            .unwrap();
        (loss, grads.take(s).unwrap())
    }

    #[test]
    fn a_nan_score_gives_a_nan_loss_and_gradient_never_a_hidden_zero() {
        // Row 1 has a NaN among its other scores.
        let (loss, grad) = loss_and_grad(vec![0.0, 1.0, -5.0, 0.0, f32::NAN, 0.0], &[0, 0]);
        assert!(loss.is_nan(), "loss {loss}");
        assert!(grad.iter().skip(3).any(|g| g.is_nan()), "{grad:?}");
        // A NaN at the true class taints its whole row.
        let (loss, _) = loss_and_grad(vec![f32::NAN, -9.0, -9.0], &[0]);
        assert!(loss.is_nan(), "loss {loss}");
        // Finite scores as before: row 0's margins are 2 and 0, row 1's 1 and 1; mean 2.
        let (loss, grad) = loss_and_grad(vec![0.0, 1.0, -5.0, 0.0, 0.0, 0.0], &[0, 0]);
        assert_eq!(loss, 2.0);
        assert_eq!(grad.as_slice().unwrap(), &[-0.5, 0.5, 0.0, -1.0, 0.5, 0.5]);
    }
}
