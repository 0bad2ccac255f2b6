//! Pictures of a traced graph (CS231n lecture 4's drawings): Graphviz DOT, an SVG laid out
//! here (no system Graphviz needed), and JSON. Matmul gates are blue, the data-loss path
//! red, the regularization path green; each edge carries its forward value above and the
//! gradient it sends back below.
//!
//! The input is the engine's [`Trace`] in f64; `pb::trace::from_wire` rebuilds one from
//! a `TraceStepResponse`, so a client renders exactly what the server traced.
use ndarray::ArrayD;
use serde_json::{Value, json};

use crate::engine::trace::{Trace, TraceNode};

/// What the renderers draw.
pub type Graph = Trace<f64>;

/// Tensors with more elements than this are summarized by their shape in labels.
pub const MAX_LABEL_ELEMENTS: usize = 12;

/// A number in at most ~8 characters.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A shape as `2×3` (`scalar` for `[]`).
pub fn shape(s: &[usize]) -> String {
    if s.is_empty() {
        return "scalar".into();
    }
    s.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
}

/// A tensor as label lines: a scalar, one bracketed line per row, or its shape when large.
pub fn lines(a: &ArrayD<f64>) -> Vec<String> {
    let row = |r: &[f64]| {
        format!(
            "[{}]",
            r.iter().map(|&v| num(v)).collect::<Vec<_>>().join(" ")
        )
    };
    match a.shape() {
        [] => vec![num(a.iter().copied().next().unwrap_or(f64::NAN))],
        _ if a.len() > MAX_LABEL_ELEMENTS => vec![format!("({} values)", shape(a.shape()))],
        [_] => vec![row(&a.iter().copied().collect::<Vec<_>>())],
        [_, c] => {
            let v: Vec<f64> = a.iter().copied().collect();
            v.chunks(*c).map(row).collect()
        }
        s => vec![format!("({} values)", shape(s))],
    }
}

/// A node's title: the leaf's name or the gate's kind.
pub fn title(n: &TraceNode<f64>) -> String {
    match &n.leaf_name {
        Some(name) => name.clone(),
        None => n.kind.clone(),
    }
}

/// The colour of an edge into `dst`: red on the data-loss path, green on the
/// regularization path, black into the total loss.
pub fn edge_colour(dst: &TraceNode<f64>) -> &'static str {
    if dst.data_path {
        "red"
    } else if dst.reg_path {
        "darkgreen"
    } else {
        "black"
    }
}

/// The border colour of a node: blue for matmul, then by path (leaves, which may feed
/// both terms, stay black).
pub fn node_colour(n: &TraceNode<f64>) -> &'static str {
    match n.kind.as_str() {
        "matmul" => "blue",
        "leaf" => "black",
        _ => edge_colour(n),
    }
}

/// The graph as JSON: nodes with tensors as `{shape, values}`, and the landmarks.
pub fn json(g: &Graph) -> String {
    let t = |a: &Option<ArrayD<f64>>| -> Value {
        a.as_ref().map_or(
            Value::Null,
            |a| json!({"shape": a.shape(), "values": a.iter().copied().collect::<Vec<_>>()}),
        )
    };
    let nodes: Vec<Value> = g
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "kind": n.kind,
                "leaf_name": n.leaf_name,
                "inputs": n.inputs,
                "shape": n.shape,
                "data_path": n.data_path,
                "reg_path": n.reg_path,
                "value": t(&n.value),
                "grad": t(&n.grad),
                "edges": n.edges.iter().map(|e| json!({
                    "input": e.input,
                    "rule": e.rule.name(),
                    "local_grad": t(&e.local),
                    "downstream": t(&e.downstream),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = json!({
        "with_values": g.with_values,
        "scores_node": g.scores,
        "data_loss_node": g.data_loss,
        "reg_loss_node": g.reg_loss,
        "loss_node": g.loss,
        "nodes": nodes,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// An edge's label: the forward value of its input (above the line) and the gradient the
/// edge sends back (below). Without values, the input's shape alone.
pub fn edge_label(g: &Graph, dst: &TraceNode<f64>, k: usize) -> (Vec<String>, Vec<String>) {
    let src = &g.nodes[dst.inputs[k]];
    let value = match &src.value {
        Some(v) => lines(v),
        None => vec![shape(&src.shape)],
    };
    let grad = dst.edges.get(k).and_then(|e| e.downstream.as_ref());
    (value, grad.map(lines).unwrap_or_default())
}

/// A node's label lines: its title, its shape, and a scalar's value.
pub fn node_label(n: &TraceNode<f64>) -> Vec<String> {
    let mut out = vec![title(n), shape(&n.shape)];
    if let (true, Some(v)) = (n.shape.is_empty(), &n.value) {
        out[1] = format!("= {}", lines(v).join(""));
    }
    out
}
