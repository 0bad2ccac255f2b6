//! One generic elementwise gate for every activation. An activation is a pair: `f(x)` and
//! its derivative `f'`, written from the input x and the output y = f(x) (whichever is
//! cheaper: sigmoid's is `y(1−y)`, tanh's `1−y²`). Backward multiplies the upstream
//! gradient by `f'` in place, reusing the upstream buffer: `dx = G ⊙ f'(x, y)`.
use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::engine::error::Result;
use crate::engine::graph::{Gate, Graph, NodeId};
use crate::engine::scalar::Scalar;

/// An elementwise nonlinearity: value and local derivative side by side.
pub trait Activation: Send + Sync + 'static {
    /// Gate kind, e.g. `"relu"`.
    const KIND: &'static str;
    /// `y = f(x)`.
    fn f<T: Scalar>(&self, x: T) -> T;
    /// `dy/dx`, given both `x` and `y = f(x)`.
    fn df<T: Scalar>(&self, x: T, y: T) -> T;
}

struct Elementwise<A>(A);

impl<T: Scalar> Graph<'_, T> {
    /// `f(x)` elementwise.
    pub fn activation<A: Activation>(&mut self, x: NodeId, act: A) -> Result<NodeId> {
        // On a contiguous value `mapv` is one loop over its slice, which LLVM vectorises
        // when `f` has no branch or call (the f32 `fastmath` functions are written so).
        let out = self.value(x).mapv(|v| act.f(v));
        Ok(self.push_gate(Box::new(Elementwise(act)), vec![x], out))
    }
}

impl<T: Scalar, A: Activation> Gate<T> for Elementwise<A> {
    fn kind(&self) -> &'static str {
        A::KIND
    }

    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>> {
        if !needs[0] {
            return vec![None];
        }
        let mut g = upstream;
        Zip::from(&mut g)
            .and(&inputs[0])
            .and(output)
            .for_each(|g, &x, &y| *g *= self.0.df(x, y));
        vec![Some(g)]
    }
}
