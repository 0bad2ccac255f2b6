//! Sum gate `Σ a` (to a scalar): every element contributed with weight 1, so each
//! receives the upstream scalar, `da = G·1`.
use ndarray::{ArrayD, ArrayViewD, arr0};

use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

struct Sum;

impl<T: Scalar> Graph<'_, T> {
    /// The sum of all elements of `a`, as a 0-d value.
    pub fn sum(&mut self, a: NodeId) -> Result<NodeId> {
        let out = arr0(self.value(a).sum()).into_dyn();
        Ok(self.push_gate(Box::new(Sum), vec![a], out))
    }
}

impl<T: Scalar> Gate<T> for Sum {
    fn kind(&self) -> &'static str {
        "sum"
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        let g = upstream.sum();
        vec![needs[0].then(|| ArrayD::from_elem(inputs[0].raw_dim(), g))]
    }
}
