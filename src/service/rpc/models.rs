//! CreateModel, GetModel, ListModels, DeleteModel: a tenant's sessions, their specs and
//! their parameters.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::split;
use crate::model::{AnyModel, Model};
use crate::pb;
use crate::service::convert::{WireScalar, spec_from_proto, spec_to_proto, to_tensor};
use crate::service::limits::{Call, check_model_id, check_spec_size, init_work};
use crate::session::Session;
use crate::with_model;

pub async fn create(
    svc: &TrainerService,
    req: Request<pb::CreateModelRequest>,
) -> Result<Response<pb::CreateModelResponse>, Status> {
    let (tenant, req) = split(req);
    svc.observe("CreateModel", "", 0, async {
        let spec = spec_from_proto(req.spec)?;
        check_spec_size(&spec)?;
        svc.store.admit(&spec, &tenant)?;
        let init = spec.clone();
        let model = svc.run(init_work(&spec), move || AnyModel::new(init)).await??;
        let session = svc.store.insert(model, &tenant).await?;
        tracing::info!(model_id = %session.id, %tenant, parameters = session.parameter_count, "created");
        Ok(pb::CreateModelResponse {
            model_id: session.id.to_string(),
            parameter_count: session.parameter_count,
            spec: Some(spec_to_proto(&spec)),
        })
    })
    .await
}

pub async fn get(
    svc: &TrainerService,
    req: Request<pb::GetModelRequest>,
) -> Result<Response<pb::GetModelResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("GetModel", async {
        let values = req.include_values;
        let admitted = on.admit(Call::GetModel { values }, 0)?;
        let guard = on.read().await?;
        let (step, parameters) = on
            .compute(admitted, move || {
                Ok(with_model!(&*guard.guard, m => (m.step(), parameters(m, values))))
            })
            .await?;
        Ok(pb::GetModelResponse {
            model_id: on.session.id.to_string(),
            spec: Some(spec_to_proto(&on.session.spec)),
            step,
            parameter_count: on.session.parameter_count,
            parameters,
        })
    })
    .await
}

pub async fn list(
    svc: &TrainerService,
    req: Request<pb::ListModelsRequest>,
) -> Result<Response<pb::ListModelsResponse>, Status> {
    let (tenant, _) = split(req);
    svc.observe("ListModels", "", 0, async {
        let mut models: Vec<pb::ModelSummary> = svc
            .store
            .list(&tenant)
            .iter()
            .map(|s: &Arc<Session>| pb::ModelSummary {
                model_id: s.id.to_string(),
                spec: Some(spec_to_proto(&s.spec)),
                step: s.step(),
                parameter_count: s.parameter_count,
                idle_seconds: s.idle_for().as_secs_f64(),
            })
            .collect();
        models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
        Ok(pb::ListModelsResponse { models })
    })
    .await
}

pub async fn delete(
    svc: &TrainerService,
    req: Request<pb::DeleteModelRequest>,
) -> Result<Response<pb::DeleteModelResponse>, Status> {
    let (tenant, req) = split(req);
    check_model_id(&req.model_id)?;
    svc.observe("DeleteModel", &req.model_id, 0, async {
        svc.store.remove(&req.model_id, &tenant).await?;
        tracing::info!(model_id = %req.model_id, "deleted");
        Ok(pb::DeleteModelResponse {})
    })
    .await
}

fn parameters<T: WireScalar>(m: &Model<T>, values: bool) -> Vec<pb::ParameterInfo> {
    m.net()
        .params()
        .iter()
        .map(|p| pb::ParameterInfo {
            name: p.name.clone(),
            shape: p.value.shape().iter().map(|&d| d as u32).collect(),
            value: values.then(|| to_tensor(p.value.clone())),
        })
        .collect()
}
