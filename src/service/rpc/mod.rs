//! The `backprop.v1.Trainer` service: decode, validate what is cheap, admit the call by
//! its estimated cost (`limits`), take the session's lock in arrival order, run the math
//! on the compute pool, encode. Nothing here does matrix work on the async runtime.
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::service::auth::tenant;
use crate::service::checkpoint;
use crate::service::convert::{
    WireScalar, check_tensor, labels, matrix, spec_from_proto, spec_to_proto, tensor_values,
    to_tensor,
};
use crate::service::limits::{
    Admission, Call, Cost, check_checkpoint_header, check_gradcheck, check_model_id,
    check_spec_size, check_trace_size, runs_inline,
};
use crate::service::status::invalid;
use crate::engine::gradcheck::Elements;
use crate::engine::ops::check_labels;
use crate::model::{AnyModel, Losses, Model, Target, accuracy, predictions};
use crate::pb;
use crate::pb::trainer_server::Trainer;
use crate::session::{
    ComputePool, PoolError, Reservation, Session, SessionGuard, SessionStore, WaitPlace,
};
use crate::with_model;

pub use crate::service::limits::{DEFAULT_INLINE_MAX_WORK, RequestLimits};

#[derive(Clone)]
pub struct TrainerService {
    store: SessionStore,
    pool: ComputePool,
    /// The request limits and the message limit (export chunks and every answer must
    /// fit in it).
    admission: Admission,
    inline_max_work: u64,
}

impl TrainerService {
    pub fn new(store: SessionStore, pool: ComputePool, limits: RequestLimits) -> Self {
        TrainerService {
            store,
            pool,
            admission: Admission {
                limits,
                max_message_bytes: 4 * 1024 * 1024,
            },
            inline_max_work: DEFAULT_INLINE_MAX_WORK,
        }
    }

    /// Sets the message limit the server enforces (export chunks are sized to fit it).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.admission.max_message_bytes = bytes;
        self
    }

    /// Sets the work below which calls compute inline (0: every call uses the pool).
    pub fn with_inline_max_work(mut self, work: u64) -> Self {
        self.inline_max_work = work;
        self
    }

    /// Runs model math: on the compute pool, or right here when it is tiny (see
    /// [`runs_inline`]). Either way a panic becomes an error.
    async fn compute<R: Send + 'static>(
        &self,
        work: u64,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolError> {
        if runs_inline(work, self.inline_max_work) {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .map_err(|_| PoolError::Panicked("inline computation panicked".into()))
        } else {
            self.pool.run(f).await
        }
    }

    /// Runs one RPC inside a span with its method, model and batch size, and logs its
    /// outcome and duration.
    async fn observe<R>(
        &self,
        method: &'static str,
        model_id: &str,
        rows: usize,
        call: impl Future<Output = Result<R, Status>>,
    ) -> Result<Response<R>, Status> {
        let span = tracing::info_span!("rpc", method, model_id, rows);
        let start = Instant::now();
        let result = call.instrument(span.clone()).await;
        let micros = start.elapsed().as_micros() as u64;
        let _enter = span.enter();
        match &result {
            Ok(_) => tracing::debug!(micros, "ok"),
            Err(s) if s.code() == tonic::Code::Internal => {
                tracing::error!(micros, code = ?s.code(), message = s.message(), "failed")
            }
            Err(s) => tracing::info!(micros, code = ?s.code(), message = s.message(), "rejected"),
        }
        result.map(Response::new)
    }

    /// Checks the batch tensor's shape cheaply (before any lock) and returns its rows.
    fn batch(&self, x: &Option<pb::Tensor>, session: &Session) -> Result<usize, Status> {
        let x = x.as_ref().ok_or_else(|| invalid("x", "required"))?;
        let shape = check_tensor(x, "x", self.admission.limits.max_batch_elements)?;
        match shape[..] {
            [0, _] => Err(invalid("x", "the batch is empty (N = 0)")),
            [n, d] if d == session.spec.input_dim => Ok(n),
            _ => Err(invalid(
                "x",
                format!(
                    "expected shape [N, {}], got {:?}",
                    session.spec.input_dim, x.shape
                ),
            )),
        }
    }

    /// Estimates the call on `session`'s model and reserves its peak (plus the request
    /// it holds while waiting) against the memory budget; see [`Admission::admit`].
    fn admit(
        &self,
        session: &Session,
        rows: usize,
        call: Call,
        request_bytes: u64,
    ) -> Result<(Cost, Reservation), Status> {
        self.admission
            .admit(&self.store, &session.spec, rows, call, request_bytes)
    }

    /// A place among the calls waiting for `session`'s lock, or RESOURCE_EXHAUSTED when
    /// `max_session_waiters` already wait.
    fn wait_place(&self, session: &Session) -> Result<WaitPlace, Status> {
        let max = self.store.limits().max_session_waiters;
        session.waiters.try_enter(max).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "model_id: {max} calls already wait for this model (--max-session-waiters); \
                 retry later"
            ))
        })
    }

    /// Shared access to the model, waiting in a bounded queue.
    async fn read(&self, session: &Arc<Session>) -> Result<ReadGuard, Status> {
        let _place = self.wait_place(session)?;
        Ok(session.read().await)
    }

    /// Exclusive access to the model, waiting in a bounded queue; refused while the
    /// session's last save failed (see `session::persist`).
    async fn write(&self, session: &Arc<Session>) -> Result<WriteGuard, Status> {
        let _place = self.wait_place(session)?;
        Ok(session.write().await?)
    }

    /// The session `id` names, after checking the id's shape (so a malformed id is
    /// never looked up or echoed whole).
    fn session(&self, id: &str, tenant: &crate::session::Tenant) -> Result<Arc<Session>, Status> {
        check_model_id(id)?;
        Ok(self.store.get(id, tenant)?)
    }

    /// The labels as the engine takes them, checked before any lock (one per row of x,
    /// each in `[0, C)`) by the engine's own rule.
    fn labels_for(
        &self,
        l: Vec<u32>,
        rows: usize,
        session: &Session,
    ) -> Result<Vec<usize>, Status> {
        let y = labels(l);
        check_labels(&y, rows, session.spec.num_classes)?;
        Ok(y)
    }
}

type ReadGuard = SessionGuard<tokio::sync::OwnedRwLockReadGuard<AnyModel>>;
type WriteGuard = SessionGuard<tokio::sync::OwnedRwLockWriteGuard<AnyModel>>;

/// Bytes a request's tensor holds on the wire side (f32 values or f64 values).
fn tensor_bytes(t: &Option<pb::Tensor>) -> u64 {
    t.as_ref().map_or(0, |t| {
        4 * t.values.len() as u64 + 8 * t.values_f64.len() as u64
    })
}

fn losses_pb(l: Losses) -> pb::Losses {
    pb::Losses {
        data_loss: l.data,
        reg_loss: l.reg,
        total_loss: l.total(),
    }
}

fn forward_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    y: Option<Vec<usize>>,
) -> Result<pb::ForwardResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let (scores, losses) = match &y {
        Some(y) => {
            let (s, l) = m.net().evaluate(x.view(), y)?;
            (s, Some(l))
        }
        None => (m.net().scores(x.view())?, None),
    };
    let preds = predictions(&scores.view());
    Ok(pb::ForwardResponse {
        accuracy: y.as_ref().map(|y| accuracy(&preds, y)),
        predictions: preds.into_iter().map(|p| p as u32).collect(),
        losses: losses.map(losses_pb),
        scores: Some(to_tensor(scores)),
    })
}

fn backward_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    target: Result<Vec<usize>, pb::Tensor>,
    input_grad: bool,
) -> Result<pb::BackwardResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let g = match &target {
        Ok(y) => m.net().gradients(x.view(), Target::Labels(y), input_grad)?,
        Err(up) => {
            let up = matrix::<T>(up.clone(), "upstream")?;
            m.net()
                .gradients(x.view(), Target::Upstream(up.view()), input_grad)?
        }
    };
    Ok(pb::BackwardResponse {
        losses: Some(losses_pb(g.losses)),
        gradients: m
            .net()
            .params()
            .iter()
            .zip(g.params)
            .map(|(p, g)| pb::NamedTensor {
                name: p.name.clone(),
                tensor: Some(to_tensor(g)),
            })
            .collect(),
        input_grad: g.input.map(to_tensor),
    })
}

fn train_typed<T: WireScalar>(
    m: &mut Model<T>,
    x: pb::Tensor,
    y: Vec<usize>,
) -> Result<pb::TrainStepResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let r = m.train_step(x.view(), &y)?;
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

fn evaluate_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    y: Vec<usize>,
) -> Result<pb::EvaluateResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let (scores, losses) = m.net().evaluate(x.view(), &y)?;
    Ok(pb::EvaluateResponse {
        losses: Some(losses_pb(losses)),
        accuracy: accuracy(&predictions(&scores.view()), &y),
        num_examples: y.len() as u64,
    })
}

fn parameters_typed<T: WireScalar>(m: &Model<T>, values: bool) -> Vec<pb::ParameterInfo> {
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

fn gradcheck_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    y: Vec<usize>,
    elements: Elements,
) -> Result<pb::GradientCheckResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let checks = m.gradient_check(x.view(), &y, elements)?;
    let errors: Vec<pb::ParameterError> = m
        .net()
        .params()
        .iter()
        .zip(checks)
        .map(|(p, c)| pb::ParameterError {
            name: p.name.clone(),
            max_relative_error: c.max_relative_error,
            elements_checked: c.elements_checked as u64,
            worst_element: c.worst_element.map(|i| i as u64),
        })
        .collect();
    Ok(pb::GradientCheckResponse {
        max_relative_error: errors
            .iter()
            .map(|e| e.max_relative_error)
            .fold(0.0, f64::max),
        errors,
    })
}

#[tonic::async_trait]
impl Trainer for TrainerService {
    async fn create_model(
        &self,
        req: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::CreateModelResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        self.observe("CreateModel", "", 0, async {
            let spec = spec_from_proto(req.spec)?;
            check_spec_size(&spec)?;
            self.store.admit(&spec, &tenant)?;
            let init = spec.clone();
            let model = self.pool.run(move || AnyModel::new(init)).await??;
            let session = self.store.insert(model, &tenant).await?;
            tracing::info!(model_id = %session.id, %tenant, parameters = session.parameter_count, "created");
            Ok(pb::CreateModelResponse {
                model_id: session.id.to_string(),
                parameter_count: session.parameter_count,
                spec: Some(spec_to_proto(&spec)),
            })
        })
        .await
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        let rows = self.batch(&req.x, &session)?;
        self.observe("Forward", &req.model_id, rows, async {
            let y = if req.labels.is_empty() {
                None
            } else {
                Some(self.labels_for(req.labels, rows, &session)?)
            };
            let call = Call::Forward {
                labels: y.is_some(),
            };
            let (cost, _held) = self.admit(&session, rows, call, tensor_bytes(&req.x))?;
            let x = req.x.unwrap_or_default();
            let guard = self.read(&session).await?;
            self.compute(
                cost.work,
                move || with_model!(&*guard.guard, m => forward_typed(m, x, y)),
            )
            .await?
        })
        .await
    }

    async fn backward(
        &self,
        req: Request<pb::BackwardRequest>,
    ) -> Result<Response<pb::BackwardResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        let rows = self.batch(&req.x, &session)?;
        self.observe("Backward", &req.model_id, rows, async {
            let request_bytes = tensor_bytes(&req.x) + tensor_bytes(&req.upstream);
            let target = match (req.labels.is_empty(), req.upstream) {
                (false, Some(_)) => {
                    return Err(invalid("upstream", "give labels or upstream, not both"));
                }
                (true, None) => {
                    return Err(invalid("labels", "give labels or an upstream gradient"));
                }
                (false, None) => Ok(self.labels_for(req.labels, rows, &session)?),
                (true, Some(up)) => {
                    let most = self.admission.limits.max_batch_elements;
                    let shape = check_tensor(&up, "upstream", most)?;
                    let want = [rows, session.spec.num_classes];
                    if shape != want {
                        return Err(invalid(
                            "upstream",
                            format!("expected shape {want:?} (the scores'), got {shape:?}"),
                        ));
                    }
                    Err(up)
                }
            };
            let input_grad = req.return_input_grad;
            let call = Call::Backward {
                upstream: target.is_err(),
                input_grad,
            };
            let (cost, _held) = self.admit(&session, rows, call, request_bytes)?;
            let x = req.x.unwrap_or_default();
            let guard = self.read(&session).await?;
            self.compute(
                cost.work,
                move || with_model!(&*guard.guard, m => backward_typed(m, x, target, input_grad)),
            )
            .await?
        })
        .await
    }

    async fn train_step(
        &self,
        req: Request<pb::TrainStepRequest>,
    ) -> Result<Response<pb::TrainStepResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        let rows = self.batch(&req.x, &session)?;
        self.observe("TrainStep", &req.model_id, rows, async {
            let y = self.labels_for(req.labels, rows, &session)?;
            let request_bytes = tensor_bytes(&req.x);
            let (cost, _held) = self.admit(&session, rows, Call::TrainStep, request_bytes)?;
            let x = req.x.unwrap_or_default();
            let mut guard = self.write(&session).await?;
            let s = session.clone();
            self.compute(cost.work, move || {
                let r = with_model!(&mut *guard.guard, m => train_typed(m, x, y));
                if let Ok(r) = &r {
                    s.set_step(r.step);
                }
                r
            })
            .await?
            .inspect(|r| self.store.updated(&session, r.step))
        })
        .await
    }

    async fn apply_gradients(
        &self,
        req: Request<pb::ApplyGradientsRequest>,
    ) -> Result<Response<pb::ApplyGradientsResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        self.observe("ApplyGradients", &req.model_id, 0, async {
            for g in &req.gradients {
                let field = format!("gradients[{}]", g.name);
                let t = g
                    .tensor
                    .as_ref()
                    .ok_or_else(|| invalid(&field, "tensor is required"))?;
                check_tensor(t, &field, self.store.limits().max_parameters as usize)?;
            }
            let request_bytes = req.gradients.iter().map(|g| tensor_bytes(&g.tensor)).sum();
            let call = Call::ApplyGradients;
            let (cost, _held) = self.admit(&session, 0, call, request_bytes)?;
            let mut guard = self.write(&session).await?;
            let s = session.clone();
            let grads = req.gradients;
            self.compute(cost.work, move || {
                let step = with_model!(&mut *guard.guard, m => apply_typed(m, grads))?;
                s.set_step(step);
                Ok(pb::ApplyGradientsResponse { step })
            })
            .await?
            .inspect(|r| self.store.updated(&session, r.step))
        })
        .await
    }

    async fn evaluate(
        &self,
        req: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::EvaluateResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        let rows = self.batch(&req.x, &session)?;
        self.observe("Evaluate", &req.model_id, rows, async {
            let y = self.labels_for(req.labels, rows, &session)?;
            let request_bytes = tensor_bytes(&req.x);
            let (cost, _held) = self.admit(&session, rows, Call::Evaluate, request_bytes)?;
            let x = req.x.unwrap_or_default();
            let guard = self.read(&session).await?;
            self.compute(
                cost.work,
                move || with_model!(&*guard.guard, m => evaluate_typed(m, x, y)),
            )
            .await?
        })
        .await
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        self.observe("GetModel", &req.model_id, 0, async {
            let values = req.include_values;
            let (cost, _held) = self.admit(&session, 0, Call::GetModel { values }, 0)?;
            let guard = self.read(&session).await?;
            let (step, parameters) = self
                .compute(cost.work, move || with_model!(&*guard.guard, m => (m.step(), parameters_typed(m, values))))
                .await?;
            Ok(pb::GetModelResponse {
                model_id: session.id.to_string(),
                spec: Some(spec_to_proto(&session.spec)),
                step,
                parameter_count: session.parameter_count,
                parameters,
            })
        })
        .await
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let tenant = tenant(&req);
        self.observe("ListModels", "", 0, async {
            let mut models: Vec<pb::ModelSummary> = self
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

    async fn delete_model(
        &self,
        req: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        check_model_id(&req.model_id)?;
        self.observe("DeleteModel", &req.model_id, 0, async {
            self.store.remove(&req.model_id, &tenant).await?;
            tracing::info!(model_id = %req.model_id, "deleted");
            Ok(pb::DeleteModelResponse {})
        })
        .await
    }

    async fn gradient_check(
        &self,
        req: Request<pb::GradientCheckRequest>,
    ) -> Result<Response<pb::GradientCheckResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        let rows = self.batch(&req.x, &session)?;
        self.observe("GradientCheck", &req.model_id, rows, async {
            let y = self.labels_for(req.labels, rows, &session)?;
            let per = req.max_elements_per_parameter as u64;
            let checks = check_gradcheck(&self.admission.limits, &session.spec, rows, per)?;
            let call = Call::GradientCheck { checks };
            let (cost, _held) = self.admit(&session, rows, call, tensor_bytes(&req.x))?;
            let elements = if per == 0 {
                Elements::All
            } else {
                Elements::Sample {
                    per_tensor: per as usize,
                    seed: 0,
                }
            };
            let x = req.x.unwrap_or_default();
            let guard = self.read(&session).await?;
            self.compute(
                cost.work,
                move || with_model!(&*guard.guard, m => gradcheck_typed(m, x, y, elements)),
            )
            .await?
        })
        .await
    }

    type ExportModelStream = checkpoint::ChunkStream;

    async fn export_model(
        &self,
        req: Request<pb::ExportModelRequest>,
    ) -> Result<Response<Self::ExportModelStream>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        self.observe("ExportModel", &req.model_id, 0, async {
            let most = self.admission.max_message_bytes;
            let chunk = checkpoint::chunk_size(req.chunk_bytes, most)?;
            let guard = self.read(&session).await?;
            // Encoded under the read lock: one consistent snapshot of values, state, step.
            // Hashed on the pool too; the chunks are sliced lazily as they are sent.
            let file = self
                .pool
                .run(move || {
                    let file = crate::checkpoint::encode(&guard.guard, &[]);
                    drop(guard);
                    file.map(checkpoint::Outgoing::new)
                })
                .await??;
            Ok(file.stream(chunk))
        })
        .await
    }

    async fn import_model(
        &self,
        req: Request<tonic::Streaming<pb::CheckpointChunk>>,
    ) -> Result<Response<pb::ImportModelResponse>, Status> {
        let tenant = tenant(&req);
        let stream = req.into_inner();
        self.observe("ImportModel", "", 0, async {
            // What has arrived is held against the budget while the rest arrives, then
            // as much again for the model it decodes into; once decoded, the model is
            // admitted by its own size.
            let mut held = self.store.reserve(0)?;
            let file = checkpoint::receive(stream, self.store.max_checkpoint_bytes(), |more| {
                self.store
                    .grow(&mut held, more, "this upload", "retry later, or import when fewer uploads are in flight")
                    .map_err(Status::from)
            })
            .await?;
            check_checkpoint_header(&file)?;
            self.store.grow(
                &mut held,
                file.len() as u64,
                "this upload and the model it decodes into",
                "retry later",
            )?;
            let decoded = self
                .pool
                .run(move || crate::checkpoint::decode(&file))
                .await??;
            drop(held);
            let model = decoded.model;
            check_spec_size(model.spec())?;
            self.store.admit(model.spec(), &tenant)?;
            let session = self.store.insert(model, &tenant).await?;
            tracing::info!(model_id = %session.id, %tenant, parameters = session.parameter_count, step = session.step(), "imported");
            Ok(pb::ImportModelResponse {
                model_id: session.id.to_string(),
                parameter_count: session.parameter_count,
                spec: Some(spec_to_proto(&session.spec)),
                step: session.step(),
            })
        })
        .await
    }

    async fn trace_step(
        &self,
        req: Request<pb::TraceStepRequest>,
    ) -> Result<Response<pb::TraceStepResponse>, Status> {
        let tenant = tenant(&req);
        let req = req.into_inner();
        let session = self.session(&req.model_id, &tenant)?;
        let rows = self.batch(&req.x, &session)?;
        self.observe("TraceStep", &req.model_id, rows, async {
            let y = self.labels_for(req.labels, rows, &session)?;
            let with_values = !req.shapes_only;
            if with_values {
                check_trace_size(&session.spec, rows)?;
            }
            // The whole answer (every node's and edge's values) is sized from the spec and
            // refused over the message limit before anything is built.
            let call = Call::Trace {
                values: with_values,
            };
            let (cost, _held) = self.admit(&session, rows, call, tensor_bytes(&req.x))?;
            let x = req.x.unwrap_or_default();
            let guard = self.read(&session).await?;
            self.compute(
                cost.work,
                move || with_model!(&*guard.guard, m => trace_typed(m, x, y, with_values)),
            )
            .await?
        })
        .await
    }
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
