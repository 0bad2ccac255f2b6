//! Elementwise max gate `max(a, b)`: the local gradient is 1 for the input that won and 0
//! for the other, so max *routes* the upstream gradient to the larger input. Ties go to
//! the first input, so exactly one input receives each element's gradient.
use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

struct Max;

impl<T: Scalar> Graph<'_, T> {
    /// `max(a, b)` elementwise, same shapes.
    pub fn max(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.same_shape(a, b, "max")?;
        let out = Zip::from(&self.value(a))
            .and(&self.value(b))
            .map_collect(|&x, &y| if x >= y { x } else { y });
        Ok(self.push_gate(Box::new(Max), vec![a, b], out))
    }
}

impl<T: Scalar> Gate<T> for Max {
    fn kind(&self) -> &'static str {
        "max"
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let zero = T::zero();
        let db = needs[1].then(|| {
            Zip::from(&upstream)
                .and(a)
                .and(b)
                .map_collect(|&g, &x, &y| if x >= y { zero } else { g })
        });
        let da = needs[0].then(|| {
            let mut g = upstream;
            Zip::from(&mut g).and(a).and(b).for_each(|g, &x, &y| {
                if x < y {
                    *g = zero;
                }
            });
            g
        });
        vec![da, db]
    }
}
