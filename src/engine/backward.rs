//! Backward over a recorded tape: walk it in reverse; at each gate, `downstream = local
//! gradient × upstream gradient` (the gate's `backward`), added into the inputs'
//! gradients in the [`GradStore`], so fan-out sums its paths. Apart from the tape itself
//! so that the graph does not depend on the gradient store.
use ndarray::{ArrayD, ArrayViewD};

use super::error::{EngineError, Result};
use super::grad::GradStore;
use super::graph::{Graph, NodeId, NodeKind};
use super::scalar::Scalar;

/// Options for [`Graph::backward`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BackwardOptions {
    /// Keep the gradient of every node, not only of the leaves (for introspection).
    /// Otherwise an intermediate gradient's buffer is handed on to the next gate.
    pub retain_all: bool,
}

impl<T: Scalar> Graph<'_, T> {
    /// Backpropagates from one or more seeds: `(node, dL/d(node))`. Usually one seed, the
    /// loss with gradient 1; several seeds add up (e.g. a caller's gradient on the scores
    /// plus the regularization term with gradient 1).
    /// A seed whose shape differs from its node's value is a shape error.
    pub fn backward(
        &self,
        seeds: Vec<(NodeId, ArrayD<T>)>,
        opts: BackwardOptions,
    ) -> Result<GradStore<T>> {
        let mut grads = GradStore::new(self.len());
        let mut last = 0;
        for (id, g) in seeds {
            let want = self.node(id).value.shape();
            if g.shape() != want {
                return Err(EngineError::shape(
                    "upstream",
                    format!("{want:?}"),
                    g.shape(),
                ));
            }
            last = last.max(id.0);
            grads.accumulate(id, g);
        }
        for i in (0..=last).rev() {
            let node = self.node(NodeId(i));
            let NodeKind::Gate(gate) = &node.kind else {
                continue;
            };
            if !node.requires_grad {
                continue;
            }
            let upstream = if opts.retain_all {
                grads.get(NodeId(i)).map(|g| g.to_owned())
            } else {
                grads.take(NodeId(i))
            };
            let Some(upstream) = upstream else { continue };
            let inputs: Vec<ArrayViewD<'_, T>> = node
                .inputs
                .iter()
                .map(|j| self.node(*j).value.view())
                .collect();
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|j| self.node(*j).requires_grad)
                .collect();
            let downstream = gate.backward(&inputs, &node.value.view(), upstream, &needs);
            for (j, d) in node.inputs.iter().zip(downstream) {
                if let Some(d) = d {
                    grads.accumulate(*j, d);
                }
            }
        }
        Ok(grads)
    }
}
