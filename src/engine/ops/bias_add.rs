//! Bias add gate `S = A + 1·bᵀ` (A: N×H, b: H): the same b is added to every row, so b
//! fans out N times and its gradient is the sum of the upstream rows, `db = Σ_i G_i`.
//! For A the gate is a plain add: `dA = G`.
use ndarray::{ArrayD, ArrayViewD, Axis, Ix1};

use super::as2;
use crate::engine::error::{EngineError, Result};
use crate::engine::graph::{Gate, Graph, NodeId};
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
