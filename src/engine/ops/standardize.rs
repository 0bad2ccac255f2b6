//! Standardize gate `Y = (X − 1·μᵀ) ⊙ 1·sᵀ` (X: N×D, μ and s = 1/σ: D constants of the
//! model's spec, not parameters): each input column is shifted by its mean and scaled
//! by its inverse standard deviation, so a model trained on standardized features takes
//! raw ones (CS231n's "preprocessing", kept with the model instead of in every client).
//! Per element it is affine in x with slope s_j, so `dX = G ⊙ 1·sᵀ`.
use ndarray::{Array1, ArrayD, ArrayViewD, Axis};

use super::as2;
use crate::engine::error::{EngineError, Result};
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::local_rule::LocalRule;
use crate::engine::scalar::Scalar;

struct Standardize<T> {
    /// 1/σ per column: the slope of every element of that column.
    scale: Array1<T>,
}

impl<T: Scalar> Graph<'_, T> {
    /// `(X − μ) / σ` column by column, `inv_std` being `1/σ` (the gate keeps it for
    /// backward).
    pub fn standardize(&mut self, x: NodeId, mean: Vec<T>, inv_std: Vec<T>) -> Result<NodeId> {
        let (_, d) = self.matrix_shape(x, "standardize.x")?;
        if mean.len() != d || inv_std.len() != d {
            return Err(EngineError::shape(
                "standardize",
                format!("[{d}] means and scales"),
                &[mean.len(), inv_std.len()],
            ));
        }
        let (mean, scale) = (Array1::from(mean), Array1::from(inv_std));
        let out = ((&as2(&self.value(x)) - &mean) * &scale).into_dyn();
        Ok(self.push_gate(Box::new(Standardize { scale }), vec![x], out))
    }
}

impl<T: Scalar> Gate<T> for Standardize<T> {
    /// `dX = L ⊙ G` with L the scales broadcast over the rows.
    fn local_rule(&self, _k: usize, _out_rank: usize) -> LocalRule {
        LocalRule::Elementwise
    }

    /// ∂Y/∂X elementwise: s_j in every row.
    fn local(
        &self,
        _k: usize,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
    ) -> Option<ArrayD<T>> {
        let rows = inputs[0].shape()[0];
        let scale = self.scale.view().insert_axis(Axis(0));
        Some(
            scale
                .broadcast((rows, self.scale.len()))?
                .to_owned()
                .into_dyn(),
        )
    }

    fn kind(&self) -> &'static str {
        "standardize"
    }

    fn backward(
        &self,
        _inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        vec![needs[0].then(|| (&as2(&upstream.view()) * &self.scale).into_dyn())]
    }
}
