//! The graph as data: every node of a recorded tape with its gate kind, inputs and shape,
//! and (when asked) its forward value, the upstream gradient `dL/d(node)` arriving at it,
//! and for each input edge the local gradient and the downstream gradient it sends back,
//! so that a reader can check `downstream = local × upstream` at every gate by hand.
//!
//! Nothing here re-derives a gate's math: the downstream gradient of an edge is the gate's
//! own `backward` called with the retained upstream and only that input needed, and the
//! local gradient of an elementwise or scalar-output gate is its `backward` with an
//! upstream of ones. Each gate declares its rule and, where it is not that default (matmul
//! and bias_add, whose local gradients multiply rather than scale), its local gradient:
//! see `Gate::local_rule` and `Gate::local`. Nothing here matches a gate's name.
use ndarray::{ArrayD, ArrayViewD, arr0};

use super::backward::BackwardOptions;
use super::error::Result;
use super::graph::{Graph, NodeId, NodeKind};
pub use super::local_rule::LocalRule;
use super::scalar::Scalar;

/// One input edge of a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEdge<T> {
    /// The input node.
    pub input: usize,
    pub rule: LocalRule,
    /// The local gradient (see [`LocalRule`]); with values only.
    pub local: Option<ArrayD<T>>,
    /// What this edge sends back to its input, `dL/d(input)` through this gate alone; with
    /// values only, and absent when no gradient flows (the input needs none).
    pub downstream: Option<ArrayD<T>>,
}

/// One node of the traced graph.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceNode<T> {
    pub id: usize,
    /// `"leaf"` or the gate's kind (`"matmul"`, `"relu"`, `"svm_loss"`, ...).
    pub kind: String,
    /// The input nodes, in the gate's argument order.
    pub inputs: Vec<usize>,
    pub shape: Vec<usize>,
    /// A leaf's name (`"x"`, `"layers.0.weight"`).
    pub leaf_name: Option<String>,
    /// Below the data loss (the node is the data loss or feeds it).
    pub data_path: bool,
    /// Below the regularization term R.
    pub reg_path: bool,
    /// Forward value; with values only.
    pub value: Option<ArrayD<T>>,
    /// `dL/d(node)`: the sum of the downstream gradients of the edges leaving it (the
    /// upstream gradient of the gates it feeds); with values only.
    pub grad: Option<ArrayD<T>>,
    /// One per input, in order.
    pub edges: Vec<TraceEdge<T>>,
}

/// A traced graph, nodes in tape (topological) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace<T> {
    pub nodes: Vec<TraceNode<T>>,
    /// Whether values and gradients are included.
    pub with_values: bool,
    pub scores: Option<usize>,
    pub data_loss: Option<usize>,
    pub reg_loss: Option<usize>,
    pub loss: Option<usize>,
}

/// Landmarks of a graph that colour its paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct Landmarks {
    pub scores: Option<NodeId>,
    pub data_loss: Option<NodeId>,
    pub reg_loss: Option<NodeId>,
    pub loss: Option<NodeId>,
}

impl<T: Scalar> Graph<'_, T> {
    /// Runs backward from `seeds` keeping every node's gradient, and returns the graph as
    /// data. Without `with_values` only the structure (kinds, inputs, shapes, paths) is
    /// returned and backward is not run.
    pub fn trace(
        &self,
        seeds: Vec<(NodeId, ArrayD<T>)>,
        marks: Landmarks,
        with_values: bool,
    ) -> Result<Trace<T>> {
        let n = self.len();
        let data_path = self.ancestors(marks.data_loss);
        let reg_path = self.ancestors(marks.reg_loss);
        let grads = if with_values {
            Some(self.backward(seeds, BackwardOptions { retain_all: true })?)
        } else {
            None
        };
        let mut nodes = Vec::with_capacity(n);
        for (i, node) in self.nodes().iter().enumerate() {
            let grad = grads.as_ref().and_then(|g| g.get(NodeId(i)).cloned());
            let edges = match &node.kind {
                NodeKind::Leaf { .. } => Vec::new(),
                NodeKind::Gate(gate) if !with_values => node
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(k, j)| TraceEdge {
                        input: j.0,
                        rule: gate.local_rule(k, node.value.ndim()),
                        local: None,
                        downstream: None,
                    })
                    .collect(),
                NodeKind::Gate(_) => self.edges(NodeId(i), grad.as_ref()),
            };
            nodes.push(TraceNode {
                id: i,
                kind: node.kind_name().to_string(),
                inputs: node.inputs.iter().map(|j| j.0).collect(),
                shape: node.value.shape().to_vec(),
                leaf_name: match &node.kind {
                    NodeKind::Leaf { name } => Some(name.clone()),
                    NodeKind::Gate(_) => None,
                },
                data_path: data_path[i],
                reg_path: reg_path[i],
                value: with_values.then(|| node.value.to_owned()),
                grad,
                edges,
            });
        }
        Ok(Trace {
            nodes,
            with_values,
            scores: marks.scores.map(|i| i.0),
            data_loss: marks.data_loss.map(|i| i.0),
            reg_loss: marks.reg_loss.map(|i| i.0),
            loss: marks.loss.map(|i| i.0),
        })
    }

    /// `root` and every node below it.
    fn ancestors(&self, root: Option<NodeId>) -> Vec<bool> {
        let mut mark = vec![false; self.len()];
        let Some(root) = root else { return mark };
        mark[root.0] = true;
        for i in (0..=root.0).rev() {
            if mark[i] {
                for j in &self.node(NodeId(i)).inputs {
                    mark[j.0] = true;
                }
            }
        }
        mark
    }

    /// The edges of gate `id`, given its retained upstream gradient.
    fn edges(&self, id: NodeId, upstream: Option<&ArrayD<T>>) -> Vec<TraceEdge<T>> {
        let node = self.node(id);
        let NodeKind::Gate(gate) = &node.kind else {
            return Vec::new();
        };
        let inputs: Vec<ArrayViewD<'_, T>> = node.inputs.iter().map(|&j| self.value(j)).collect();
        let output = node.value.view();
        // One input at a time, so each edge's share of a fan-in is seen apart.
        let only = |k: usize| -> Vec<bool> { (0..inputs.len()).map(|m| m == k).collect() };
        let through =
            |k: usize, g: ArrayD<T>| gate.backward(&inputs, &output, g, &only(k)).swap_remove(k);
        node.inputs
            .iter()
            .enumerate()
            .map(|(k, j)| {
                let rule = gate.local_rule(k, output.ndim());
                // A gate that names its local gradient (matmul, bias_add) gives it; for
                // the others it is their backward applied to ones: a linear map of G
                // scaled by 1 is the local gradient itself.
                let local = gate.local(k, &inputs, &output).or_else(|| match rule {
                    LocalRule::Scale => through(k, arr0(T::one()).into_dyn()),
                    LocalRule::Elementwise => through(k, ArrayD::ones(output.raw_dim())),
                    _ => None,
                });
                let downstream = upstream
                    .filter(|_| self.node(*j).requires_grad)
                    .and_then(|g| through(k, g.clone()));
                TraceEdge {
                    input: j.0,
                    rule,
                    local,
                    downstream,
                }
            })
            .collect()
    }
}
