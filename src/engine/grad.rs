//! Gradients live apart from values, in a store indexed by node id, so a graph can be
//! read while its gradients are written.
use ndarray::ArrayD;

use super::graph::NodeId;
use super::scalar::Scalar;

pub struct GradStore<T: Scalar> {
    grads: Vec<Option<ArrayD<T>>>,
}

impl<T: Scalar> GradStore<T> {
    pub fn new(nodes: usize) -> Self {
        GradStore {
            grads: (0..nodes).map(|_| None).collect(),
        }
    }

    /// `grad(node) += g`; the first contribution is moved in, not copied.
    pub fn accumulate(&mut self, id: NodeId, g: ArrayD<T>) {
        match &mut self.grads[id.0] {
            Some(acc) => *acc += &g,
            slot @ None => *slot = Some(g),
        }
    }

    pub fn get(&self, id: NodeId) -> Option<&ArrayD<T>> {
        self.grads[id.0].as_ref()
    }

    pub fn take(&mut self, id: NodeId) -> Option<ArrayD<T>> {
        self.grads[id.0].take()
    }
}
