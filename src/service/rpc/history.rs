//! GetHistory: the model's steps (downsampled) and its fits' epoch ends.
use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::split;
use crate::pb;
use crate::service::convert::about::{epoch_to_proto, step_to_proto};

pub async fn get(
    svc: &TrainerService,
    req: Request<pb::GetHistoryRequest>,
) -> Result<Response<pb::GetHistoryResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("GetHistory", async {
        let h = on.session.history();
        Ok(pb::GetHistoryResponse {
            steps: h.steps().iter().map(step_to_proto).collect(),
            epochs: h.epochs().iter().map(epoch_to_proto).collect(),
            stride: h.stride(),
        })
    })
    .await
}
