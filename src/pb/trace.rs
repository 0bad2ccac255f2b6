//! A traced step between the engine and the wire, both directions: the server answers
//! TraceStep with [`to_wire`], and a client rebuilds the same graph with [`from_wire`]
//! (in f64, whatever the model's dtype) to draw it. One mapping of [`LocalRule`] to the
//! proto's enum serves both.
use super::array::{Form, WireScalar, to_f64_array, to_tensor_in};
use crate::engine::trace::{LocalRule, Trace, TraceEdge, TraceNode};
use crate::pb;

/// The TraceStep answer for a traced step and its losses, its tensors in `form`.
pub fn to_wire<T: WireScalar>(
    trace: Trace<T>,
    losses: pb::Losses,
    form: Form,
) -> pb::TraceStepResponse {
    let id = |i: usize| i as u32;
    let to_tensor = |a| to_tensor_in(a, form);
    let nodes = trace
        .nodes
        .into_iter()
        .map(|n| pb::TraceNode {
            id: id(n.id),
            kind: n.kind,
            inputs: n.inputs.into_iter().map(id).collect(),
            shape: n.shape.into_iter().map(id).collect(),
            leaf_name: n.leaf_name.unwrap_or_default(),
            data_path: n.data_path,
            reg_path: n.reg_path,
            value: n.value.map(to_tensor),
            grad: n.grad.map(to_tensor),
            edges: n
                .edges
                .into_iter()
                .map(|e| pb::TraceEdge {
                    input: id(e.input),
                    rule: rule_to_wire(e.rule) as i32,
                    local_grad: e.local.map(to_tensor),
                    downstream: e.downstream.map(to_tensor),
                })
                .collect(),
        })
        .collect();
    pb::TraceStepResponse {
        nodes,
        losses: Some(losses),
        scores_node: trace.scores.map_or(0, id),
        data_loss_node: trace.data_loss.map(id),
        reg_loss_node: trace.reg_loss.map(id),
        loss_node: trace.loss.map_or(0, id),
        with_values: trace.with_values,
    }
}

/// The graph a TraceStep response describes.
pub fn from_wire(r: &pb::TraceStepResponse) -> Trace<f64> {
    let us = |v: &[u32]| v.iter().map(|&d| d as usize).collect::<Vec<_>>();
    let nodes = r
        .nodes
        .iter()
        .map(|n| TraceNode {
            id: n.id as usize,
            kind: n.kind.clone(),
            inputs: us(&n.inputs),
            shape: us(&n.shape),
            leaf_name: (n.kind == "leaf").then(|| n.leaf_name.clone()),
            data_path: n.data_path,
            reg_path: n.reg_path,
            value: n.value.as_ref().and_then(to_f64_array),
            grad: n.grad.as_ref().and_then(to_f64_array),
            edges: n
                .edges
                .iter()
                .map(|e| TraceEdge {
                    input: e.input as usize,
                    rule: rule_from_wire(e.rule),
                    local: e.local_grad.as_ref().and_then(to_f64_array),
                    downstream: e.downstream.as_ref().and_then(to_f64_array),
                })
                .collect(),
        })
        .collect();
    Trace {
        nodes,
        with_values: r.with_values,
        scores: Some(r.scores_node as usize),
        data_loss: r.data_loss_node.map(|i| i as usize),
        reg_loss: r.reg_loss_node.map(|i| i as usize),
        loss: Some(r.loss_node as usize),
    }
}

/// How an edge's local gradient meets the upstream one, as the proto names it.
fn rule_to_wire(rule: LocalRule) -> pb::LocalRule {
    match rule {
        LocalRule::Elementwise => pb::LocalRule::Elementwise,
        LocalRule::MatmulRight => pb::LocalRule::MatmulRight,
        LocalRule::MatmulLeft => pb::LocalRule::MatmulLeft,
        LocalRule::Scale => pb::LocalRule::Scale,
        LocalRule::Unknown => pb::LocalRule::Unspecified,
    }
}

/// The engine's rule for a wire value; one this client does not know is `Unknown`.
fn rule_from_wire(rule: i32) -> LocalRule {
    match pb::LocalRule::try_from(rule) {
        Ok(pb::LocalRule::Elementwise) => LocalRule::Elementwise,
        Ok(pb::LocalRule::MatmulRight) => LocalRule::MatmulRight,
        Ok(pb::LocalRule::MatmulLeft) => LocalRule::MatmulLeft,
        Ok(pb::LocalRule::Scale) => LocalRule::Scale,
        Ok(pb::LocalRule::Unspecified) | Err(_) => LocalRule::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_crosses_the_wire_and_back() {
        let all = [
            LocalRule::Elementwise,
            LocalRule::MatmulRight,
            LocalRule::MatmulLeft,
            LocalRule::Scale,
            LocalRule::Unknown,
        ];
        for r in all {
            assert_eq!(rule_from_wire(rule_to_wire(r) as i32), r);
        }
        let wire = (0..64)
            .filter(|&i| pb::LocalRule::try_from(i).is_ok())
            .count();
        assert_eq!(wire, all.len(), "LocalRule vs the proto enum");
        assert_eq!(rule_from_wire(99), LocalRule::Unknown);
    }
}
