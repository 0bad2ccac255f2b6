//! CreateModel, GetModel, ListModels, UpdateModel, DeleteModel: a tenant's sessions,
//! their specs, parameters and metadata. ListModels pages in model_id order; its page
//! token is the last id of the page, versioned (clients treat it as opaque).
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::split;
use crate::model::{AnyModel, Model};
use crate::pb;
use crate::pb::array::{Form, WireScalar, to_tensor_in};
use crate::service::convert::about::{about_to_proto, epoch_to_proto, step_to_proto};
use crate::service::convert::{spec_from_proto, spec_to_proto};
use crate::service::limits::{Call, check_model_id, check_spec_size, echo, init_work};
use crate::service::route;
use crate::service::status::invalid;
use crate::session::about::{self, check_key};
use crate::session::history::now;
use crate::session::{self, About, AboutChange, Record, Replica, Session, SessionId, StoreError};
use crate::with_model;

pub async fn create(
    svc: &TrainerService,
    req: Request<pb::CreateModelRequest>,
) -> Result<Response<pb::CreateModelResponse>, Status> {
    let (tenant, req) = split(req);
    svc.observe("CreateModel", "", 0, async {
        let spec = spec_from_proto(req.spec)?;
        check_spec_size(&spec)?;
        check_label_count(req.labels.len(), "labels")?;
        let about = About::new(req.name, req.labels, now())
            .map_err(StoreError::from)?;
        svc.store.admit(&spec, &tenant)?;
        let init = spec.clone();
        let model = svc.run(init_work(&spec), move || AnyModel::new(init)).await??;
        let session = svc.store.insert(model, &tenant, Record::new(about)).await?;
        tracing::info!(model_id = %session.id, %tenant, parameters = session.parameter_count, name = %session.about().name, "created");
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
        let form = if req.raw_values {
            Form::Raw
        } else {
            Form::Numbers
        };
        let admitted = on.admit(Call::GetModel { values }, 0)?;
        let guard = on.read().await?;
        let (step, parameters) = on
            .compute(admitted, move || {
                Ok(with_model!(&*guard.guard, m => (m.step(), parameters(m, values, form))))
            })
            .await?;
        let (last_step, last_epoch) = on.session.last_points();
        Ok(pb::GetModelResponse {
            model_id: on.session.id.to_string(),
            spec: Some(spec_to_proto(&on.session.spec)),
            step,
            parameter_count: on.session.parameter_count,
            parameters,
            metadata: Some(about_to_proto(&on.session.about())),
            last_step: last_step.as_ref().map(step_to_proto),
            last_epoch: last_epoch.as_ref().map(epoch_to_proto),
        })
    })
    .await
}

pub async fn list(
    svc: &TrainerService,
    req: Request<pb::ListModelsRequest>,
) -> Result<Response<pb::ListModelsResponse>, Status> {
    let (tenant, req) = split(req);
    svc.observe("ListModels", "", 0, async {
        let after = parse_page_token(&req.page_token, svc.store.replica())?;
        let size = match req.page_size {
            0 => None,
            n => Some((n as usize).min(MAX_PAGE_SIZE)),
        };
        let labels = req.labels;
        let mut models = svc.store.list(&tenant);
        if !req.name.is_empty() || !labels.is_empty() {
            models.retain(|s| s.about().matches(&req.name, &labels));
        }
        let page = session::page(models, after, size);
        Ok(pb::ListModelsResponse {
            models: page.items.iter().map(summary).collect(),
            next_page_token: page.next_after.map(page_token).unwrap_or_default(),
            replica: svc.store.replica().name().unwrap_or_default().to_string(),
        })
    })
    .await
}

/// The most models one ListModels answer holds when the caller pages: a larger
/// `page_size` is taken as this (a page of 1000 small models is about 100 KB).
pub const MAX_PAGE_SIZE: usize = 1000;

/// What every page token starts with: a version, so the encoding can change without an
/// old token being misread.
const PAGE_TOKEN_PREFIX: &str = "p1:";

/// The token of a page that ends at `last`: the next page starts after it.
pub(super) fn page_token(last: SessionId) -> String {
    format!("{PAGE_TOKEN_PREFIX}{last}")
}

/// Where a page starts after (`None`: the first page, for an empty token). A token
/// another replica made is WRONG_REPLICA (the next page's call went elsewhere).
pub(super) fn parse_page_token(token: &str, here: Replica) -> Result<Option<SessionId>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let parts = token
        .strip_prefix(PAGE_TOKEN_PREFIX)
        .and_then(SessionId::parse)
        .ok_or_else(|| {
            invalid(
                "page_token",
                format!(
                    "{} is not a page token; pass back a next_page_token unchanged, or \
                     nothing for the first page",
                    echo(token)
                ),
            )
        })?;
    let owner = parts.replica;
    parts
        .on(here)
        .map(Some)
        .map_err(|_| route::wrong_replica("page_token", owner, here))
}

fn summary(s: &Arc<Session>) -> pb::ModelSummary {
    let (last_step, last_epoch) = s.last_points();
    pb::ModelSummary {
        model_id: s.id.to_string(),
        spec: Some(spec_to_proto(&s.spec)),
        step: s.step(),
        parameter_count: s.parameter_count,
        idle_seconds: s.idle_for().as_secs_f64(),
        metadata: Some(about_to_proto(&s.about())),
        last_step: last_step.as_ref().map(step_to_proto),
        last_epoch: last_epoch.as_ref().map(epoch_to_proto),
    }
}

pub async fn update(
    svc: &TrainerService,
    req: Request<pb::UpdateModelRequest>,
) -> Result<Response<pb::ModelMetadata>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("UpdateModel", async {
        check_label_count(req.set_labels.len(), "set_labels")?;
        check_label_count(req.remove_labels.len(), "remove_labels")?;
        for (i, key) in req.remove_labels.iter().enumerate() {
            check_key(key).map_err(|e| invalid(format!("remove_labels[{i}]"), e))?;
        }
        let change = AboutChange {
            name: req.name,
            set: req.set_labels,
            remove: req.remove_labels,
        };
        let about = svc.store.change_about(&on.session, change).await?;
        tracing::info!(model_id = %on.session.id, name = %about.name, labels = about.labels.len(), "metadata changed");
        Ok(about_to_proto(&about))
    })
    .await
}

/// More labels than a model may carry are refused before they are looked at.
fn check_label_count(n: usize, field: &str) -> Result<(), Status> {
    about::check_label_count(n).map_err(|e| invalid(field, e))
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

fn parameters<T: WireScalar>(m: &Model<T>, values: bool, form: Form) -> Vec<pb::ParameterInfo> {
    m.net()
        .params()
        .iter()
        .map(|p| pb::ParameterInfo {
            name: p.name.clone(),
            shape: p.value.shape().iter().map(|&d| d as u32).collect(),
            value: values.then(|| to_tensor_in(p.value.clone(), form)),
        })
        .collect()
}
