//! GetHistory: the model's steps (downsampled) and its fits' epoch ends.
use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::split;
use crate::pb;

pub async fn get(
    svc: &TrainerService,
    req: Request<pb::GetHistoryRequest>,
) -> Result<Response<pb::GetHistoryResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("GetHistory", async {
        let h = on.session.history();
        Ok(pb::GetHistoryResponse {
            steps: h
                .steps()
                .iter()
                .map(|p| pb::HistoryStep {
                    step: p.step,
                    data_loss: p.data_loss.unwrap_or(f64::NAN),
                    reg_loss: p.reg_loss.unwrap_or(f64::NAN),
                    accuracy: p.accuracy.unwrap_or(f64::NAN),
                    learning_rate: p.learning_rate,
                    time: p.time,
                })
                .collect(),
            epochs: h
                .epochs()
                .iter()
                .map(|e| pb::HistoryEpoch {
                    step: e.step,
                    epoch: e.epoch,
                    mean_loss: e.mean_loss.unwrap_or(f64::NAN),
                    train_accuracy: e.train_accuracy.unwrap_or(f64::NAN),
                    validation_loss: e.validation_loss,
                    validation_accuracy: e.validation_accuracy,
                    learning_rate: e.learning_rate,
                    time: e.time,
                })
                .collect(),
            stride: h.stride(),
        })
    })
    .await
}
