//! TrainStep and ApplyGradients: the RPCs that change a model (TrainStream, beside,
//! applies each of its batches through [`step_on`]). Each takes the session's
//! exclusive lock in arrival order, steps all-or-nothing (a refused step leaves values,
//! optimizer state and step as they were) and records the step where it is taken.
use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::{OnSession, split, tensor_bytes};
use crate::model::Model;
use crate::pb;
use crate::pb::array::WireScalar;
use crate::service::convert::losses_pb;
use crate::service::convert::{check_tensor, matrix, tensor_values};
use crate::service::limits::Call;
use crate::service::status::invalid;
use crate::session::history::{StepPoint, now};
use crate::with_model;

pub async fn train_step(
    svc: &TrainerService,
    req: Request<pb::TrainStepRequest>,
) -> Result<Response<pb::TrainStepResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_batch(&req.model_id, &tenant, &req.x)?;
    on.observe(
        "TrainStep",
        step_on(&on, req.x, req.labels, req.learning_rate),
    )
    .await
}

/// One optimizer step on the batch `x` (its shape already checked by `on_batch`) with
/// `labels`, at the spec's learning rate or `lr`: what TrainStep does and every batch of
/// a TrainStream.
pub async fn step_on(
    on: &OnSession<'_>,
    x: Option<pb::Tensor>,
    labels: Vec<u32>,
    lr: Option<f64>,
) -> Result<pb::TrainStepResponse, Status> {
    check_learning_rate(lr)?;
    let y = on.labels(labels)?;
    let admitted = on.admit(Call::TrainStep, tensor_bytes(&x))?;
    let x = x.unwrap_or_default();
    let mut guard = on.write().await?;
    let session = on.session.clone();
    let r = on
        .compute(admitted, move || {
            let r = with_model!(&mut *guard.guard, m => train_typed(m, x, y, lr))?;
            session.set_step(r.step);
            Ok(r)
        })
        .await?;
    let losses = r.losses.unwrap_or_default();
    on.stepped(StepPoint {
        step: r.step,
        data_loss: losses.data_loss,
        reg_loss: Some(losses.reg_loss),
        accuracy: Some(r.accuracy),
        learning_rate: lr.unwrap_or_else(|| on.session.spec.optimizer.learning_rate()),
        time: now(),
    });
    Ok(r)
}

pub async fn apply_gradients(
    svc: &TrainerService,
    req: Request<pb::ApplyGradientsRequest>,
) -> Result<Response<pb::ApplyGradientsResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("ApplyGradients", async {
        let most = svc.store.limits().max_parameters as usize;
        for g in &req.gradients {
            let field = format!("gradients[{}]", g.name);
            let t = g
                .tensor
                .as_ref()
                .ok_or_else(|| invalid(&field, "tensor is required"))?;
            check_tensor(t, &field, most)?;
        }
        let request_bytes = req.gradients.iter().map(|g| tensor_bytes(&g.tensor)).sum();
        let admitted = on.admit(Call::ApplyGradients, request_bytes)?;
        let mut guard = on.write().await?;
        let session = on.session.clone();
        let grads = req.gradients;
        let step = on
            .compute(admitted, move || {
                let step = with_model!(&mut *guard.guard, m => apply_typed(m, grads))?;
                session.set_step(step);
                Ok(step)
            })
            .await?;
        on.stepped(StepPoint {
            step,
            data_loss: None,
            reg_loss: None,
            accuracy: None,
            learning_rate: on.session.spec.optimizer.learning_rate(),
            time: now(),
        });
        Ok(pb::ApplyGradientsResponse { step })
    })
    .await
}

/// A step's own learning rate, when given, is finite and > 0.
fn check_learning_rate(lr: Option<f64>) -> Result<(), Status> {
    match lr {
        Some(lr) if !(lr.is_finite() && lr > 0.0) => Err(invalid(
            "learning_rate",
            format!("must be finite and > 0, got {lr}"),
        )),
        _ => Ok(()),
    }
}

fn train_typed<T: WireScalar>(
    m: &mut Model<T>,
    x: pb::Tensor,
    y: Vec<usize>,
    lr: Option<f64>,
) -> Result<pb::TrainStepResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let r = m.train_step_at(x.view(), &y, lr)?;
    Ok(pb::TrainStepResponse {
        losses: Some(losses_pb(r.losses)),
        accuracy: r.accuracy,
        step: r.step,
    })
}

fn apply_typed<T: WireScalar>(
    m: &mut Model<T>,
    grads: Vec<pb::NamedTensor>,
) -> Result<u64, Status> {
    let named = grads
        .into_iter()
        .map(|g| {
            let field = format!("gradients[{}]", g.name);
            let t = g
                .tensor
                .ok_or_else(|| invalid(&field, "tensor is required"))?;
            check_tensor(&t, &field, usize::MAX)?;
            Ok((g.name, tensor_values::<T>(t, &field)?))
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(m.apply_gradients(named)?)
}
