//! TraceStep: one step's whole computational graph as data (every gate, its inputs, and
//! with values each edge's local gradient and the gradient it passes down), for the
//! graph renderers and for learners. The answer is sized from the spec and refused over
//! the message limit before anything is built.
use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::{split, tensor_bytes};
use super::math::losses_pb;
use crate::model::Model;
use crate::pb;
use crate::service::convert::{WireScalar, matrix, to_tensor};
use crate::service::limits::{Call, check_trace_size};
use crate::with_model;

pub async fn trace_step(
    svc: &TrainerService,
    req: Request<pb::TraceStepRequest>,
) -> Result<Response<pb::TraceStepResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_batch(&req.model_id, &tenant, &req.x)?;
    on.observe("TraceStep", async {
        let y = on.labels(req.labels)?;
        let with_values = !req.shapes_only;
        if with_values {
            check_trace_size(&on.session.spec, on.rows())?;
        }
        let call = Call::Trace {
            values: with_values,
        };
        let admitted = on.admit(call, tensor_bytes(&req.x))?;
        let x = req.x.unwrap_or_default();
        let guard = on.read().await?;
        on.compute(
            admitted,
            move || with_model!(&*guard.guard, m => trace_typed(m, x, y, with_values)),
        )
        .await
    })
    .await
}

fn trace_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    y: Vec<usize>,
    with_values: bool,
) -> Result<pb::TraceStepResponse, Status> {
    use crate::engine::trace::LocalRule;
    let x = matrix::<T>(x, "x")?;
    let (trace, losses) = m.net().trace(x.view(), &y, with_values)?;
    let id = |i: usize| i as u32;
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
                    rule: match e.rule {
                        LocalRule::Elementwise => pb::LocalRule::Elementwise,
                        LocalRule::MatmulRight => pb::LocalRule::MatmulRight,
                        LocalRule::MatmulLeft => pb::LocalRule::MatmulLeft,
                        LocalRule::Scale => pb::LocalRule::Scale,
                        LocalRule::Unknown => pb::LocalRule::Unspecified,
                    } as i32,
                    local_grad: e.local.map(to_tensor),
                    downstream: e.downstream.map(to_tensor),
                })
                .collect(),
        })
        .collect();
    Ok(pb::TraceStepResponse {
        nodes,
        losses: Some(losses_pb(losses)),
        scores_node: trace.scores.map_or(0, id),
        data_loss_node: trace.data_loss.map(id),
        reg_loss_node: trace.reg_loss.map(id),
        loss_node: trace.loss.map_or(0, id),
        with_values: trace.with_values,
    })
}
