//! Matrix multiply gate `S = X·W` (X: N×D, W: D×H). The local gradient of S with respect
//! to X is W and with respect to W is X, so `dX = G·Wᵀ` and `dW = Xᵀ·G` ("mul switches",
//! in matrix form). dX is computed only when something below X wants it, which saves the
//! largest product of a first layer.
use ndarray::{ArrayD, ArrayViewD};

use super::as2;
use crate::engine::error::{EngineError, Result};
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::local_rule::LocalRule;
use crate::engine::matmul_kernel::matmul;
use crate::engine::scalar::Scalar;

struct MatMul;

impl<T: Scalar> Graph<'_, T> {
    /// `X·W`.
    pub fn matmul(&mut self, x: NodeId, w: NodeId) -> Result<NodeId> {
        let (_, d) = self.matrix_shape(x, "matmul.x")?;
        let (dw, _) = self.matrix_shape(w, "matmul.w")?;
        if d != dw {
            return Err(EngineError::shape(
                "matmul.w",
                format!("[{d}, _] (rows = columns of x)"),
                self.value(w).shape(),
            ));
        }
        let out = matmul(&as2(&self.value(x)), &as2(&self.value(w))).into_dyn();
        Ok(self.push_gate(Box::new(MatMul), vec![x, w], out))
    }
}

impl<T: Scalar> Gate<T> for MatMul {
    /// `dX = G·Wᵀ` (local gradient W on the right), `dW = Xᵀ·G` (local X on the left).
    fn local_rule(&self, k: usize, _out_rank: usize) -> LocalRule {
        if k == 0 {
            LocalRule::MatmulRight
        } else {
            LocalRule::MatmulLeft
        }
    }

    /// `S = X·W`: ∂S/∂X is W, ∂S/∂W is X.
    fn local(
        &self,
        k: usize,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
    ) -> Option<ArrayD<T>> {
        Some(if k == 0 { &inputs[1] } else { &inputs[0] }.to_owned())
    }

    fn kind(&self) -> &'static str {
        "matmul"
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        _output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        let (x, w, g) = (as2(&inputs[0]), as2(&inputs[1]), upstream.view());
        let g = as2(&g);
        let dx = needs[0].then(|| matmul(&g, &w.t()).into_dyn());
        let dw = needs[1].then(|| matmul(&x.t(), &g).into_dyn());
        vec![dx, dw]
    }
}
