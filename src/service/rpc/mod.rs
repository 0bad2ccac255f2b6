//! The `backprop.v1.Trainer` service, one file per group of RPCs: `models` (create,
//! get, list, delete), `math` (forward, backward, evaluate, gradient check), `train`
//! (train step, apply gradients), `stream` (train stream), `trace`, `checkpoint` (export,
//! import), `datasets` (upload, get, list, delete), `fit` (fit, watch, cancel),
//! `history`. What every
//! handler shares (span and log, session lookup, admission by cost, the bounded lock
//! queue, inline-or-pool) is `call`. Each handler decodes, validates what is cheap,
//! admits the call by its estimated cost (`service::limits`), takes the session's lock in
//! arrival order, runs the math on the compute pool (or inline when tiny) and encodes.
//! Nothing here does matrix work on the async runtime.
mod call;
mod checkpoint;
mod datasets;
mod fit;
mod history;
mod math;
mod models;
mod stream;
mod trace;
mod train;

use tonic::{Request, Response, Status, Streaming};

use crate::metrics::Metrics;
use crate::pb;
use crate::pb::trainer_server::Trainer;
use crate::service::limits::Admission;
use crate::service::route::{self, Routed};
use crate::session::{ComputePool, SessionStore};

pub use crate::service::limits::{DEFAULT_INLINE_MAX_WORK, RequestLimits};

#[derive(Clone)]
pub struct TrainerService {
    store: SessionStore,
    pool: ComputePool,
    /// The request limits and the message limit (export chunks and every answer must
    /// fit in it).
    admission: Admission,
    inline_max_work: u64,
    /// Steps are counted here, by the handlers that take them.
    metrics: Metrics,
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
            metrics: Metrics::disabled(),
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

    /// Checks the call's routing header (see `service::route`) before anything else.
    fn route<R: Routed>(&self, req: &Request<R>) -> Result<(), Status> {
        route::check(
            req.metadata(),
            req.get_ref().routed_id(),
            self.store.replica(),
        )
    }

    /// Counts optimizer steps in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// The service's table: each RPC checks its routing header, then is its group's
/// function.
#[tonic::async_trait]
impl Trainer for TrainerService {
    async fn create_model(
        &self,
        req: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::CreateModelResponse>, Status> {
        self.route(&req)?;
        models::create(self, req).await
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        self.route(&req)?;
        math::forward(self, req).await
    }

    async fn backward(
        &self,
        req: Request<pb::BackwardRequest>,
    ) -> Result<Response<pb::BackwardResponse>, Status> {
        self.route(&req)?;
        math::backward(self, req).await
    }

    async fn train_step(
        &self,
        req: Request<pb::TrainStepRequest>,
    ) -> Result<Response<pb::TrainStepResponse>, Status> {
        self.route(&req)?;
        train::train_step(self, req).await
    }

    async fn apply_gradients(
        &self,
        req: Request<pb::ApplyGradientsRequest>,
    ) -> Result<Response<pb::ApplyGradientsResponse>, Status> {
        self.route(&req)?;
        train::apply_gradients(self, req).await
    }

    async fn evaluate(
        &self,
        req: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::EvaluateResponse>, Status> {
        self.route(&req)?;
        math::evaluate(self, req).await
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        self.route(&req)?;
        models::get(self, req).await
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.route(&req)?;
        models::list(self, req).await
    }

    async fn delete_model(
        &self,
        req: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        self.route(&req)?;
        models::delete(self, req).await
    }

    async fn update_model(
        &self,
        req: Request<pb::UpdateModelRequest>,
    ) -> Result<Response<pb::ModelMetadata>, Status> {
        self.route(&req)?;
        models::update(self, req).await
    }

    async fn gradient_check(
        &self,
        req: Request<pb::GradientCheckRequest>,
    ) -> Result<Response<pb::GradientCheckResponse>, Status> {
        self.route(&req)?;
        math::gradient_check(self, req).await
    }

    type ExportModelStream = crate::service::checkpoint::ChunkStream;

    async fn export_model(
        &self,
        req: Request<pb::ExportModelRequest>,
    ) -> Result<Response<Self::ExportModelStream>, Status> {
        self.route(&req)?;
        checkpoint::export(self, req).await
    }

    async fn import_model(
        &self,
        req: Request<Streaming<pb::CheckpointChunk>>,
    ) -> Result<Response<pb::ImportModelResponse>, Status> {
        self.route(&req)?;
        checkpoint::import(self, req).await
    }

    async fn trace_step(
        &self,
        req: Request<pb::TraceStepRequest>,
    ) -> Result<Response<pb::TraceStepResponse>, Status> {
        self.route(&req)?;
        trace::trace_step(self, req).await
    }

    type TrainStreamStream = stream::AnswerStream;

    async fn train_stream(
        &self,
        req: Request<Streaming<pb::TrainStreamRequest>>,
    ) -> Result<Response<Self::TrainStreamStream>, Status> {
        self.route(&req)?;
        stream::train_stream(self, req).await
    }

    async fn upload_dataset(
        &self,
        req: Request<Streaming<pb::DatasetChunk>>,
    ) -> Result<Response<pb::DatasetInfo>, Status> {
        self.route(&req)?;
        datasets::upload(self, req).await
    }

    async fn get_dataset(
        &self,
        req: Request<pb::GetDatasetRequest>,
    ) -> Result<Response<pb::DatasetInfo>, Status> {
        self.route(&req)?;
        datasets::get(self, req).await
    }

    async fn list_datasets(
        &self,
        req: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        self.route(&req)?;
        datasets::list(self, req).await
    }

    async fn delete_dataset(
        &self,
        req: Request<pb::DeleteDatasetRequest>,
    ) -> Result<Response<pb::DeleteDatasetResponse>, Status> {
        self.route(&req)?;
        datasets::delete(self, req).await
    }

    type FitStream = fit::EventStream;

    async fn fit(&self, req: Request<pb::FitRequest>) -> Result<Response<Self::FitStream>, Status> {
        self.route(&req)?;
        fit::fit(self, req).await
    }

    type WatchFitStream = fit::EventStream;

    async fn watch_fit(
        &self,
        req: Request<pb::WatchFitRequest>,
    ) -> Result<Response<Self::WatchFitStream>, Status> {
        self.route(&req)?;
        fit::watch(self, req).await
    }

    async fn cancel_fit(
        &self,
        req: Request<pb::CancelFitRequest>,
    ) -> Result<Response<pb::CancelFitResponse>, Status> {
        self.route(&req)?;
        fit::cancel(self, req).await
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        self.route(&req)?;
        history::get(self, req).await
    }
}
