//! What every handler shares, so a handler is its own checks and its math: the call's
//! span and log line, the session lookup (tenant and id checked), the batch's shape,
//! admission by cost, the bounded wait for the session's lock, and where the math runs.
//!
//! The order is the same for every call on a session: look up, check what is cheap,
//! [`OnSession::admit`] (the estimate and its reservation), take the lock in arrival
//! order, [`OnSession::compute`]. A refusal at any point leaves the model untouched.
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::TrainerService;
use crate::engine::ops::check_labels;
use crate::model::AnyModel;
use crate::pb;
use crate::service::auth::tenant;
use crate::service::convert::{check_tensor, labels};
use crate::service::limits::{Call, Cost, check_model_id, runs_inline};
use crate::service::status::{RETRY_WAITERS, Reason, Refusal, invalid};
use crate::session::history::StepPoint;
use crate::session::{
    PoolError, Reservation, Session, SessionGuard, Tenant, UntilSent, WaitPlace, run_caught,
};

pub type ReadGuard = SessionGuard<tokio::sync::OwnedRwLockReadGuard<AnyModel>>;
pub type WriteGuard = SessionGuard<tokio::sync::OwnedRwLockWriteGuard<AnyModel>>;

/// A call taken by admission: its estimated cost and the memory it holds against the
/// budget until the call ends (waiting for the lock and the compute pool included).
#[must_use = "the reservation is given back as soon as this drops"]
pub struct Admitted {
    pub cost: Cost,
    held: Reservation,
}

/// A call on one live session of the caller's, with its batch rows (0 for calls
/// without a batch).
pub struct OnSession<'a> {
    svc: &'a TrainerService,
    pub session: Arc<Session>,
    rows: usize,
    /// The answer's share of the call's reservation, from its computation until the
    /// response carries it (see [`OnSession::observe`]).
    answer: std::sync::Mutex<Option<Reservation>>,
}

/// The caller's tenant and the request message.
pub fn split<R>(req: Request<R>) -> (Tenant, R) {
    let tenant = tenant(&req);
    (tenant, req.into_inner())
}

impl TrainerService {
    /// Runs one RPC inside a span with its method, model and batch size, and logs its
    /// outcome and duration.
    pub(super) async fn observe<R>(
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

    /// Runs work of size `work` (see [`Cost::work`]): on the compute pool, or right here
    /// when it is tiny ([`runs_inline`], the one rule). Either way a panic becomes an
    /// error that keeps its message.
    pub(super) async fn run<R: Send + 'static>(
        &self,
        work: u64,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolError> {
        if runs_inline(work, self.inline_max_work) {
            run_caught(f)
        } else {
            self.pool.run(f).await
        }
    }

    /// The session `id` names, after checking the id's shape (so a malformed id is
    /// never looked up or echoed whole).
    pub(super) fn session(&self, id: &str, tenant: &Tenant) -> Result<Arc<Session>, Status> {
        check_model_id(id)?;
        Ok(self.store.get(id, tenant)?)
    }

    /// A call on the caller's session `id` without a batch.
    pub(super) fn on_session(&self, id: &str, tenant: &Tenant) -> Result<OnSession<'_>, Status> {
        Ok(OnSession {
            svc: self,
            session: self.session(id, tenant)?,
            rows: 0,
            answer: std::sync::Mutex::new(None),
        })
    }

    /// The steps of a fit on `session`, each of up to `rows` rows (already checked
    /// against the model).
    pub(super) fn on_rows(&self, session: Arc<Session>, rows: usize) -> OnSession<'_> {
        OnSession {
            svc: self,
            session,
            rows,
            answer: std::sync::Mutex::new(None),
        }
    }

    /// A call on the caller's session `id` with the batch `x`, whose shape is checked
    /// here, before any lock: `[N, D]` with N > 0 and D the model's input width.
    pub(super) fn on_batch(
        &self,
        id: &str,
        tenant: &Tenant,
        x: &Option<pb::Tensor>,
    ) -> Result<OnSession<'_>, Status> {
        let mut on = self.on_session(id, tenant)?;
        let x = x.as_ref().ok_or_else(|| invalid("x", "required"))?;
        let shape = check_tensor(x, "x", self.admission.limits.max_batch_elements)?;
        let input_dim = on.session.spec.input_dim;
        on.rows = match shape[..] {
            [0, _] => return Err(invalid("x", "the batch is empty (N = 0)")),
            [n, d] if d == input_dim => n,
            _ => {
                return Err(invalid(
                    "x",
                    format!("expected shape [N, {input_dim}], got {:?}", x.shape),
                ));
            }
        };
        Ok(on)
    }
}

impl OnSession<'_> {
    /// Runs the rest of the call inside its span (see [`TrainerService::observe`]). The
    /// answer's bytes stay reserved until the transport has sent them: the response
    /// carries them as [`UntilSent`], which the server's per-call layer keeps with the
    /// response body.
    pub async fn observe<R>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<R, Status>>,
    ) -> Result<Response<R>, Status> {
        let id = self.session.id.to_string();
        let mut r = self.svc.observe(method, &id, self.rows, call).await;
        let answer = self.answer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Ok(response), Some(held)) = (&mut r, answer) {
            response.extensions_mut().insert(UntilSent::new(held));
        }
        r
    }

    /// The labels as the engine takes them, checked before any lock (one per row of x,
    /// each in `[0, C)`) by the engine's own rule.
    pub fn labels(&self, l: Vec<u32>) -> Result<Vec<usize>, Status> {
        let y = labels(l);
        check_labels(&y, self.rows, self.session.spec.num_classes)?;
        Ok(y)
    }

    /// The batch's rows (0 for a call without a batch).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Estimates `call` on this model and reserves its peak (plus `request_bytes`, the
    /// request it holds while waiting) against the memory budget; see
    /// [`Admission::admit`](crate::service::limits::Admission::admit).
    pub fn admit(&self, call: Call, request_bytes: u64) -> Result<Admitted, Status> {
        let (cost, held) = self.svc.admission.admit(
            &self.svc.store,
            &self.session.spec,
            self.rows,
            call,
            request_bytes,
        )?;
        Ok(Admitted { cost, held })
    }

    /// A place among the calls waiting for the session's lock, or RESOURCE_EXHAUSTED
    /// when `max_session_waiters` already wait.
    fn wait_place(&self) -> Result<WaitPlace, Status> {
        let max = self.svc.store.limits().max_session_waiters;
        self.session.waiters.try_enter(max).ok_or_else(|| {
            Refusal::new(
                Reason::SessionWaiters,
                format!(
                    "model_id: {max} calls already wait for this model \
                     (--max-session-waiters); retry later"
                ),
            )
            .limit(
                "--max-session-waiters",
                format!("one more call than the {max} that may wait for one model"),
            )
            .retry_after(RETRY_WAITERS)
            .into()
        })
    }

    /// Shared access to the model, waiting in a bounded queue.
    pub async fn read(&self) -> Result<ReadGuard, Status> {
        let _place = self.wait_place()?;
        Ok(self.session.read().await)
    }

    /// Exclusive access to the model, waiting in a bounded queue; refused while the
    /// session's last save failed (see `session::persist`).
    pub async fn write(&self) -> Result<WriteGuard, Status> {
        let _place = self.wait_place()?;
        Ok(self.session.write().await?)
    }

    /// Runs the admitted call's math (pool or inline by its work), then gives back what
    /// it reserved but the answer's encoded size, which is held until the answer is sent.
    pub async fn compute<R: Send + 'static>(
        &self,
        admitted: Admitted,
        f: impl FnOnce() -> Result<R, Status> + Send + 'static,
    ) -> Result<R, Status> {
        let Admitted { cost, mut held } = admitted;
        let r = self.svc.run(cost.work, f).await?;
        held.keep(cost.answer_bytes);
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
        r
    }

    /// Records that the model took an optimizer step, now at `step`: the step counter,
    /// and a background save when one is due. Called by every RPC that steps, where it
    /// steps, so a new training RPC cannot go uncounted. (The session's own step is set
    /// under the write lock, in the computation, so it never goes backwards.)
    /// The step goes into the model's history too.
    pub fn stepped(&self, point: StepPoint) {
        let step = point.step;
        self.svc.metrics.train_step();
        self.session.record(|h| h.record_step(point));
        self.svc.store.updated(&self.session, step);
    }
}

/// Bytes a request's tensor holds on the wire side (f32 values or f64 values).
pub fn tensor_bytes(t: &Option<pb::Tensor>) -> u64 {
    t.as_ref().map_or(0, |t| {
        4 * t.values.len() as u64 + 8 * t.values_f64.len() as u64
    })
}
