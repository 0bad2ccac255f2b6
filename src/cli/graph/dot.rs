//! Graphviz DOT: `dot -Tsvg graph.dot > graph.svg` draws it left to right. Gates are
//! boxes, leaves ellipses; an edge's label is the forward value over a rule over the
//! gradient sent back.
use std::fmt::Write;

use super::draw::{Graph, edge_colour, edge_label, node_colour, node_label};

/// Escapes a label for a quoted DOT string; lines are joined with `\n`.
fn quoted(lines: &[String]) -> String {
    let esc: Vec<String> = lines
        .iter()
        .map(|l| l.replace('\\', "\\\\").replace('"', "\\\""))
        .collect();
    format!("\"{}\"", esc.join("\\n"))
}

pub fn dot(g: &Graph) -> String {
    let mut s = String::new();
    s.push_str("digraph backprop {\n");
    s.push_str("  rankdir=LR;\n");
    s.push_str("  node [fontname=\"Helvetica\", fontsize=10];\n");
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for n in &g.nodes {
        let colour = node_colour(n);
        let style = match n.kind.as_str() {
            "leaf" => "shape=ellipse".to_string(),
            "matmul" => "shape=box, style=\"rounded,filled\", fillcolor=lightblue".to_string(),
            _ if Some(n.id) == g.loss => "shape=box, style=\"rounded,bold\"".to_string(),
            _ => "shape=box, style=rounded".to_string(),
        };
        let _ = writeln!(
            s,
            "  n{} [label={}, {style}, color={colour}];",
            n.id,
            quoted(&node_label(n))
        );
    }
    for n in &g.nodes {
        for (k, &i) in n.inputs.iter().enumerate() {
            let (value, grad) = edge_label(g, n, k);
            let mut label = value;
            if !grad.is_empty() {
                label.push("────".into());
                label.extend(grad);
            }
            let _ = writeln!(
                s,
                "  n{i} -> n{} [label={}, color={}];",
                n.id,
                quoted(&label),
                edge_colour(n)
            );
        }
    }
    s.push_str("}\n");
    s
}
