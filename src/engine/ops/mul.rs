//! Elementwise multiply gate `a ⊙ b`: the local gradient with respect to a is b and with
//! respect to b is a, so mul *switches* its inputs: `da = G ⊙ b`, `db = G ⊙ a`.
use ndarray::{ArrayD, ArrayViewD};

use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

struct Mul;

impl<T: Scalar> Graph<'_, T> {
    /// `a ⊙ b`, same shapes.
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.same_shape(a, b, "mul")?;
        let out = &self.value(a) * &self.value(b);
        Ok(self.push_gate(Box::new(Mul), vec![a, b], out))
    }
}

impl<T: Scalar> Gate<T> for Mul {
    fn kind(&self) -> &'static str {
        "mul"
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        let da = needs[0].then(|| &upstream * &inputs[1]);
        let db = needs[1].then(|| upstream * &inputs[0]);
        vec![da, db]
    }
}
