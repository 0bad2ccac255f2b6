//! Add gate `a + b`: the local gradient is 1 for both inputs, so add *distributes* the
//! upstream gradient unchanged to each.
use ndarray::{ArrayD, ArrayViewD};

use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

struct Add;

impl<T: Scalar> Graph<'_, T> {
    /// `a + b`, same shapes.
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.same_shape(a, b, "add")?;
        let out = &self.value(a) + &self.value(b);
        Ok(self.push_gate(Box::new(Add), vec![a, b], out))
    }
}

impl<T: Scalar> Gate<T> for Add {
    fn kind(&self) -> &'static str {
        "add"
    }

    fn backward(
        &self,
        _inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        match (needs[0], needs[1]) {
            (true, true) => vec![Some(upstream.clone()), Some(upstream)],
            (true, false) => vec![Some(upstream), None],
            (false, true) => vec![None, Some(upstream)],
            (false, false) => vec![None, None],
        }
    }
}
