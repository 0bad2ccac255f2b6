//! An SVG drawn without Graphviz: a layered layout written here. Each gate sits in the
//! column of its depth (1 + the deepest of its inputs), each leaf one column before its
//! last consumer; within a column nodes keep tape order. Edges are curves from the right
//! side of their input to the left side of their gate, labelled a third of the way along with the
//! forward value above the curve and the gradient sent back below it.
use std::fmt::Write;

use super::draw::{Graph, edge_colour, edge_label, node_colour, node_label};

const CHAR_W: f64 = 6.2;
const LINE_H: f64 = 12.0;
const PAD: f64 = 8.0;
const MARGIN: f64 = 30.0;
const ROW_GAP: f64 = 36.0;
/// A white outline under edge labels, so a label stays legible where curves cross it.
const HALO: &str = "stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\"";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn width(lines: &[String]) -> f64 {
    lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * CHAR_W
}

/// Each node's column: gates by depth, then each leaf one column before its last
/// consumer (a weight beside its matmul, not beside its L2 term), then gates again.
fn columns(g: &Graph) -> Vec<usize> {
    let mut col = vec![0usize; g.nodes.len()];
    let depth = |col: &mut Vec<usize>| {
        for node in &g.nodes {
            if !node.inputs.is_empty() {
                col[node.id] = 1 + node.inputs.iter().map(|&i| col[i]).max().unwrap_or(0);
            }
        }
    };
    depth(&mut col);
    for node in g.nodes.iter().filter(|n| n.inputs.is_empty()) {
        let last = g
            .nodes
            .iter()
            .filter(|m| m.inputs.contains(&node.id))
            .map(|m| col[m.id])
            .max();
        col[node.id] = last.map_or(0, |c| c.saturating_sub(1));
    }
    depth(&mut col);
    col
}

pub fn svg(g: &Graph) -> String {
    let col = columns(g);
    let labels: Vec<Vec<String>> = g.nodes.iter().map(node_label).collect();
    let size: Vec<(f64, f64)> = labels
        .iter()
        .map(|l| (width(l) + 2.0 * PAD, l.len() as f64 * LINE_H + PAD))
        .collect();
    // The widest edge label sets the gap between columns.
    let mut edge_w: f64 = 0.0;
    let mut edge_h: f64 = 0.0;
    for n in &g.nodes {
        for k in 0..n.inputs.len() {
            let (v, d) = edge_label(g, n, k);
            edge_w = edge_w.max(width(&v).max(width(&d)));
            edge_h = edge_h.max((v.len() + d.len()) as f64 * LINE_H);
        }
    }
    let ncols = col.iter().max().map_or(0, |c| c + 1);
    let node_w = size.iter().map(|s| s.0).fold(0.0, f64::max);
    let col_w = node_w + edge_w + 40.0;
    let gap = ROW_GAP.max(edge_h * 1.2);
    // Stack each column's nodes, then centre the columns on the tallest.
    let mut pos = vec![(0.0, 0.0); g.nodes.len()];
    let mut heights = vec![0.0f64; ncols];
    for n in &g.nodes {
        let c = col[n.id];
        pos[n.id] = (MARGIN + c as f64 * col_w, heights[c]);
        heights[c] += size[n.id].1 + gap;
    }
    let tallest = heights.iter().copied().fold(0.0, f64::max);
    for n in &g.nodes {
        pos[n.id].1 += MARGIN + (tallest - heights[col[n.id]]) / 2.0 + LINE_H * 2.0;
    }
    let w = MARGIN * 2.0 + ncols.saturating_sub(1) as f64 * col_w + node_w;
    let h = MARGIN * 2.0 + tallest + LINE_H * 3.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"10\">"
    );
    s.push_str("<defs>\n");
    for c in ["red", "darkgreen", "black"] {
        let _ = writeln!(
            s,
            "<marker id=\"arrow-{c}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{c}\"/></marker>"
        );
    }
    s.push_str("</defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let _ = writeln!(
        s,
        "<text x=\"{MARGIN}\" y=\"{:.0}\" fill=\"#555\">forward value above each edge, \
         gradient sent back (dL/d input) below · matmul blue · data-loss path red · \
         regularization path green</text>",
        MARGIN - 10.0
    );
    // Edges first, so nodes are drawn over their ends.
    for n in &g.nodes {
        for (k, &i) in n.inputs.iter().enumerate() {
            let colour = edge_colour(n);
            let (x1, y1) = (pos[i].0 + size[i].0, pos[i].1 + size[i].1 / 2.0);
            let (x2, y2) = (pos[n.id].0, pos[n.id].1 + size[n.id].1 / 2.0);
            let dx = (x2 - x1) / 2.0;
            let _ = writeln!(
                s,
                "<path d=\"M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}\" \
                 fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.2\" \
                 marker-end=\"url(#arrow-{colour})\"/>",
                x1 + dx,
                x2 - dx
            );
            let (value, grad) = edge_label(g, n, k);
            // Labels sit a third of the way along the curve, nearer the input: edges into
            // one gate converge, so their midpoints crowd; their starts are a row apart.
            let t = 0.35;
            let u = 1.0 - t;
            let mx = u * u * u * x1
                + 3.0 * u * u * t * (x1 + dx)
                + 3.0 * u * t * t * (x2 - dx)
                + t * t * t * x2;
            let my = (u * u * u + 3.0 * u * u * t) * y1 + (3.0 * u * t * t + t * t * t) * y2;
            for (j, line) in value.iter().enumerate() {
                let y = my - 3.0 - (value.len() - 1 - j) as f64 * LINE_H;
                let _ = writeln!(
                    s,
                    "<text x=\"{mx:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"#222\" {HALO}>{}</text>",
                    esc(line)
                );
            }
            for (j, line) in grad.iter().enumerate() {
                let y = my + LINE_H + j as f64 * LINE_H;
                let _ = writeln!(
                    s,
                    "<text x=\"{mx:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"#c05000\" \
                     font-style=\"italic\" {HALO}>{}</text>",
                    esc(line)
                );
            }
        }
    }
    for n in &g.nodes {
        let (x, y) = pos[n.id];
        let (bw, bh) = size[n.id];
        let colour = node_colour(n);
        let fill = if n.kind == "matmul" {
            "#dde8ff"
        } else {
            "white"
        };
        let (rx, sw) = match n.kind.as_str() {
            "leaf" => (bh / 2.0, 1.0),
            _ if Some(n.id) == g.loss => (4.0, 2.5),
            _ => (4.0, 1.5),
        };
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" rx=\"{rx:.1}\" \
             fill=\"{fill}\" stroke=\"{colour}\" stroke-width=\"{sw}\"/>"
        );
        for (j, line) in labels[n.id].iter().enumerate() {
            let weight = if j == 0 { " font-weight=\"bold\"" } else { "" };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\"{weight}>{}</text>",
                x + bw / 2.0,
                y + PAD / 2.0 + (j as f64 + 0.8) * LINE_H,
                esc(line)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
