//! TraceStep: one step's whole computational graph as data (every gate, its inputs, and
//! with values each edge's local gradient and the gradient it passes down), for the
//! graph renderers and for learners. The answer is sized from the spec and refused over
//! the message limit before anything is built.
use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::{split, tensor_bytes};
use crate::model::Model;
use crate::pb;
use crate::pb::array::{Form, WireScalar};
use crate::pb::trace::to_wire;
use crate::service::convert::losses_pb;
use crate::service::convert::matrix;
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
    let form = Form::of(&x);
    let x = matrix::<T>(x, "x")?;
    let (trace, losses) = m.net().trace(x.view(), &y, with_values)?;
    Ok(to_wire(trace, losses_pb(losses), form))
}
