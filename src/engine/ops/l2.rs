//! L2 regularization gate `R = λ·Σ W²` on one weight matrix, with local gradient `2λW`.
//!
//! This is the lecture's formula, and it is part of backprop's contract: no factor ½, so
//! the gradient is `2λW`; it applies to weight matrices only, never to biases (the model
//! pushes one of these per weight matrix and adds them up).
use ndarray::{ArrayD, ArrayViewD, arr0};

use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

struct L2<T> {
    lambda: T,
}

impl<T: Scalar> Graph<'_, T> {
    /// `λ·Σ W²`, as a 0-d value.
    pub fn l2(&mut self, w: NodeId, lambda: T) -> Result<NodeId> {
        let out = arr0(lambda * sum_of_squares(&self.value(w))).into_dyn();
        Ok(self.push_gate(Box::new(L2 { lambda }), vec![w], out))
    }
}

/// `Σ w²`. Sixteen independent partial sums let the compiler vectorize the loop (and
/// round less than one long chain); a strided array takes the plain path.
fn sum_of_squares<T: Scalar>(w: &ArrayViewD<'_, T>) -> T {
    let Some(s) = w.as_slice() else {
        return w.iter().map(|&x| x * x).sum();
    };
    let mut lanes = [T::zero(); 16];
    let chunks = s.chunks_exact(16);
    let tail: T = chunks.remainder().iter().map(|&x| x * x).sum();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x * x;
        }
    }
    lanes.iter().copied().sum::<T>() + tail
}

impl<T: Scalar> Gate<T> for L2<T> {
    fn kind(&self) -> &'static str {
        "l2"
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        let scale = (self.lambda + self.lambda) * upstream.sum();
        vec![needs[0].then(|| inputs[0].mapv(|w| scale * w))]
    }
}
