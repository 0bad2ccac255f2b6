//! Bias add gate `S = A + 1·bᵀ` (A: N×H, b: H): the same b is added to every row, so b
//! fans out N times and its gradient is the sum of the upstream rows, `db = Σ_i G_i`.
//! For A the gate is a plain add: `dA = G`.
use ndarray::{ArrayD, ArrayViewD, Axis, Ix1, IxDyn};

use super::as2;
use crate::engine::error::{EngineError, Result};
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::local_rule::LocalRule;
use crate::engine::scalar::Scalar;

struct BiasAdd;

impl<T: Scalar> Graph<'_, T> {
    /// `A + b` broadcast over rows.
    pub fn bias_add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (_, h) = self.matrix_shape(a, "bias_add.a")?;
        if self.value(b).shape() != [h] {
            return Err(EngineError::shape(
                "bias_add.b",
                format!("[{h}]"),
                self.value(b).shape(),
            ));
        }
        let bias = self
            .value(b)
            .into_dimensionality::<Ix1>()
            .unwrap_or_else(|_| unreachable!("checked above"));
        let out = (&as2(&self.value(a)) + &bias).into_dyn();
        Ok(self.push_gate(Box::new(BiasAdd), vec![a, b], out))
    }
}

impl<T: Scalar> Gate<T> for BiasAdd {
    /// `dA = 1 ⊙ G` elementwise; `db = 1ᵀ·G`, the row sums.
    fn local_rule(&self, k: usize, _out_rank: usize) -> LocalRule {
        if k == 0 {
            LocalRule::Elementwise
        } else {
            LocalRule::MatmulLeft
        }
    }

    /// `S = A + 1·bᵀ`: ∂S/∂A is 1 elementwise, ∂S/∂b is the column 1 (N rows).
    fn local(
        &self,
        k: usize,
        inputs: &[ArrayViewD<'_, T>],
        output: &ArrayViewD<'_, T>,
    ) -> Option<ArrayD<T>> {
        Some(if k == 0 {
            ArrayD::ones(inputs[0].raw_dim())
        } else {
            ArrayD::ones(IxDyn(&[output.shape()[0]]))
        })
    }

    fn kind(&self) -> &'static str {
        "bias_add"
    }

    fn backward(
        &self,
        _inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        let db = needs[1].then(|| upstream.sum_axis(Axis(0)));
        let da = needs[0].then_some(upstream);
        vec![da, db]
    }
}
