//! The gates. Each file holds one gate: its forward (a `Graph` method that checks shapes,
//! computes the output and pushes the node) beside its backward (the `Gate` impl).
//!
//! | gate | forward | backward (downstream = local × upstream `G`) |
//! |---|---|---|
//! | matmul | `S = X·W` | `dX = G·Wᵀ`, `dW = Xᵀ·G` |
//! | bias_add | `S = A + 1·bᵀ` | `dA = G`, `db = Σ_rows G` |
//! | add | `a + b` | distributes: `da = G`, `db = G` |
//! | mul | `a ⊙ b` | switches: `da = G ⊙ b`, `db = G ⊙ a` |
//! | max | `max(a, b)` | routes: `G` to the larger (ties to `a`), 0 to the other |
//! | sum | `Σ a` | `da = G·1` |
//! | activations | `y = f(x)` | `dx = G ⊙ f'(x)` (see `activation.rs`) |
//! | svm_loss | `1/N Σ_i Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ)` | `1/N` per positive margin, `−count/N` at `y_i` |
//! | softmax_loss | `1/N Σ_i −log softmax(s_i)_{y_i}` | `(p − onehot(y))/N` |
//! | l2 | `λ·Σ W²` | `2λW` |
//! | standardize | `(X − μ) ⊙ s`, s = 1/σ per column (constants) | `dX = G ⊙ s` |
pub mod activation;
pub mod add;
pub mod bias_add;
pub mod elu;
pub mod gelu;
pub mod l2;
pub mod leaky_relu;
pub mod matmul;
pub mod max;
pub mod mul;
pub mod relu;
pub mod sigmoid;
pub mod softmax_loss;
pub mod standardize;
pub mod sum;
pub mod svm_loss;
pub mod tanh;

use ndarray::{ArrayView2, ArrayViewD, Ix2};

use super::error::{EngineError, Result};
use super::graph::{Graph, NodeId};
use super::scalar::Scalar;

/// A 2-D view of a value whose rank the forward pass already checked.
pub(crate) fn as2<'v, T>(a: &'v ArrayViewD<'_, T>) -> ArrayView2<'v, T> {
    a.view()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| unreachable!("rank checked at forward: {:?}", a.shape()))
}

impl<T: Scalar> Graph<'_, T> {
    /// The shape of a node's value, as `(rows, cols)`, or a shape error naming `field`.
    pub(crate) fn matrix_shape(&self, id: NodeId, field: &str) -> Result<(usize, usize)> {
        match self.value(id).shape() {
            &[r, c] => Ok((r, c)),
            other => Err(EngineError::shape(field, "a matrix [rows, cols]", other)),
        }
    }

    /// Checks that two nodes have identical shapes (elementwise gates).
    pub(crate) fn same_shape(&self, a: NodeId, b: NodeId, gate: &str) -> Result<()> {
        let (sa, sb) = (
            self.value(a).shape().to_vec(),
            self.value(b).shape().to_vec(),
        );
        if sa != sb {
            return Err(EngineError::shape(
                gate,
                format!("{sa:?} (same as the first input)"),
                &sb,
            ));
        }
        Ok(())
    }
}

/// Checks one label per row, each in `[0, classes)`.
pub fn check_labels(labels: &[usize], rows: usize, classes: usize) -> Result<()> {
    if labels.len() != rows {
        return Err(EngineError::LabelCount {
            field: "labels".into(),
            expected: rows,
            got: labels.len(),
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
        return Err(EngineError::Label {
            field: "labels".into(),
            index,
            label: label as u64,
            classes,
        });
    }
    Ok(())
}
