//! The tape: a computational graph recorded as a `Vec` of nodes in the order they were
//! pushed, which is a topological order (a node can only name nodes pushed before it).
//!
//! Forward runs while the graph is built: each gate method (in `ops/`) computes its output
//! at once and pushes a node holding that value and the gate. Backward walks the tape in
//! reverse; at each gate, `downstream = local gradient × upstream gradient` (the chain
//! rule), and the results are *added* into the inputs' gradients, so a value used twice
//! (fan-out) receives the sum of both paths for free.
//!
//! Leaves (parameters, data) borrow their values, so building a graph over a model never
//! copies its weights. Everything here is `Send`: no `Rc`, no `RefCell`.
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};

use super::local_rule::LocalRule;
use super::scalar::Scalar;

/// Index of a node on its tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// A gate's backward half. The forward half is the `Graph` method that pushed the node
/// (in the same file as the gate).
pub trait Gate<T: Scalar>: Send + Sync {
    /// The gate's kind, e.g. `"matmul"`, `"relu"`, `"svm_loss"`.
    fn kind(&self) -> &'static str;

    /// Given the values of the inputs, the gate's own output and the upstream gradient
    /// `dL/d(output)` (owned, so elementwise gates can reuse its buffer), returns
    /// `dL/d(input_i)` for every input with `needs[i]` set (`None` elsewhere).
    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        output: &ArrayViewD<'_, T>,
        upstream: ArrayD<T>,
        needs: &[bool],
    ) -> Vec<Option<ArrayD<T>>>;

    /// How input `k`'s local gradient combines with the upstream gradient (for the
    /// trace). The default fits every gate whose output is a scalar (losses, l2, sum:
    /// `D = L·G`) or whose local gradient is elementwise (activations, add, mul, max).
    fn local_rule(&self, k: usize, out_rank: usize) -> LocalRule {
        let _ = k;
        if out_rank == 0 {
            LocalRule::Scale
        } else {
            LocalRule::Elementwise
        }
    }

    /// Input `k`'s local gradient, for gates where it is not the default (backward
    /// applied to ones). `None` means "derive it from backward".
    fn local(
        &self,
        k: usize,
        inputs: &[ArrayViewD<'_, T>],
        output: &ArrayViewD<'_, T>,
    ) -> Option<ArrayD<T>> {
        let _ = (k, inputs, output);
        None
    }
}

/// What a node is: a leaf given from outside, or the output of a gate.
pub enum NodeKind<T: Scalar> {
    Leaf { name: String },
    Gate(Box<dyn Gate<T>>),
}

pub struct Node<'a, T: Scalar> {
    pub value: CowArray<'a, T, IxDyn>,
    pub inputs: Vec<NodeId>,
    pub kind: NodeKind<T>,
    /// Whether any leaf below this node wants a gradient; backward skips the rest.
    pub requires_grad: bool,
}

impl<T: Scalar> Node<'_, T> {
    /// `"leaf"` or the gate's kind.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Leaf { .. } => "leaf",
            NodeKind::Gate(g) => g.kind(),
        }
    }
}

/// A tape over values of type `T`, borrowing leaf values for `'a`.
#[derive(Default)]
pub struct Graph<'a, T: Scalar> {
    nodes: Vec<Node<'a, T>>,
}

impl<'a, T: Scalar> Graph<'a, T> {
    pub fn new() -> Self {
        Graph { nodes: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, id: NodeId) -> &Node<'a, T> {
        &self.nodes[id.0]
    }

    pub fn nodes(&self) -> &[Node<'a, T>] {
        &self.nodes
    }

    pub fn value(&self, id: NodeId) -> ArrayViewD<'_, T> {
        self.nodes[id.0].value.view()
    }

    /// Pushes a leaf that borrows its value (a parameter, a batch).
    pub fn leaf_view(
        &mut self,
        name: impl Into<String>,
        value: ArrayViewD<'a, T>,
        requires_grad: bool,
    ) -> NodeId {
        self.push_leaf(name.into(), CowArray::from(value), requires_grad)
    }

    /// Pushes a leaf that owns its value.
    pub fn leaf(
        &mut self,
        name: impl Into<String>,
        value: ArrayD<T>,
        requires_grad: bool,
    ) -> NodeId {
        self.push_leaf(name.into(), CowArray::from(value), requires_grad)
    }

    fn push_leaf(
        &mut self,
        name: String,
        value: CowArray<'a, T, IxDyn>,
        requires_grad: bool,
    ) -> NodeId {
        self.nodes.push(Node {
            value,
            inputs: Vec::new(),
            kind: NodeKind::Leaf { name },
            requires_grad,
        });
        NodeId(self.nodes.len() - 1)
    }

    /// Pushes a gate's output. Called by the forward methods in `ops/`, which have
    /// already checked shapes and computed `value`.
    pub(crate) fn push_gate(
        &mut self,
        gate: Box<dyn Gate<T>>,
        inputs: Vec<NodeId>,
        value: ArrayD<T>,
    ) -> NodeId {
        let requires_grad = inputs.iter().any(|i| self.nodes[i.0].requires_grad);
        self.nodes.push(Node {
            value: CowArray::from(value),
            inputs,
            kind: NodeKind::Gate(gate),
            requires_grad,
        });
        NodeId(self.nodes.len() - 1)
    }
}
