//! Fit, WatchFit and CancelFit. A fit is a job on its session, not a connection: it runs
//! in a task of its own, one step at a time, each step exactly a TrainStep (admitted by
//! its cost, the session's write lock taken in arrival order, one compute-pool job), so
//! other calls on the model and on every other model interleave with its steps and no
//! compute thread is held for longer than one batch. While it runs only it may change
//! the model (`Session::write_as_fit`); others get FAILED_PRECONDITION.
//!
//! Its events go to a log on the job ([`FitJob`]); every caller (the Fit call itself,
//! each WatchFit) reads that log from its own task, so a slow reader never slows the
//! fit. Without `detach`, the end of the Fit call (cancel, deadline, client gone) stops
//! the fit at its next step boundary.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

use super::TrainerService;
use super::call::{OnSession, split};
use super::stream::batch_error;
use crate::dataset::Dataset;
use crate::engine::rng::Rng;
use crate::fit::event::{EpochEnd, Failure, Finished};
use crate::fit::{EndReason, EventKind, FitJob, Plan, Sampler, Tracker, Validation, sampler};
use crate::model::{AnyModel, Losses, accuracy, predictions};
use crate::pb;
use crate::service::convert::fit::{event_to_proto, plan_from_proto};
use crate::service::limits::{Call, check_dataset_id};
use crate::service::status::{Reason, Refusal, invalid};
use crate::session::history::{EpochPoint, StepPoint, now};
use crate::session::{Reservation, Session};
use crate::with_model;

/// Events a reader may have on its way before its task waits for the client.
const READER_BUFFER: usize = 64;
/// Rows evaluated per compute job at an epoch's end, at least (more when the batch is
/// larger): the job stays about one batch long.
const EVAL_ROWS: usize = 256;

/// A fit's events as a response stream. Dropping it before the fit ends (the call is
/// over) cancels a fit that was not detached.
pub struct EventStream {
    events: mpsc::Receiver<Result<pb::FitEvent, Status>>,
    cancel_on_drop: Option<Arc<FitJob>>,
}

impl Stream for EventStream {
    type Item = Result<pb::FitEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(job) = self.cancel_on_drop.take() {
            job.cancel();
        }
    }
}

/// Follows `job`'s log from event `from` to its end, in a task of its own.
fn follow(job: Arc<FitJob>, from: u64, cancel_on_drop: bool) -> EventStream {
    let (tx, rx) = mpsc::channel(READER_BUFFER);
    let reader = job.clone();
    tokio::spawn(async move {
        let mut wake = reader.subscribe();
        let mut next = from;
        loop {
            let (events, finished) = reader.events_from(next);
            for e in events {
                next = e.index + 1;
                if tx.send(Ok(event_to_proto(e))).await.is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    EventStream {
        events: rx,
        cancel_on_drop: cancel_on_drop.then_some(job),
    }
}

pub async fn fit(
    svc: &TrainerService,
    req: Request<pb::FitRequest>,
) -> Result<Response<EventStream>, Status> {
    let (tenant, req) = split(req);
    let session = svc.session(&req.model_id, &tenant)?;
    let on = svc.on_rows(session.clone(), 0);
    on.observe("Fit", async {
        check_dataset_id("dataset_id", &req.dataset_id)?;
        let train = svc
            .store
            .get_dataset(&req.dataset_id, &tenant)?
            .data
            .clone();
        check_fits("dataset_id", &train, &session)?;
        let validation = if req.validation_dataset_id.is_empty() {
            None
        } else {
            check_dataset_id("validation_dataset_id", &req.validation_dataset_id)?;
            let v = svc
                .store
                .get_dataset(&req.validation_dataset_id, &tenant)
                .map_err(|e| invalid("validation_dataset_id", e.to_string()))?
                .data
                .clone();
            check_fits("validation_dataset_id", &v, &session)?;
            Some(v)
        };
        let lr0 = session.spec.optimizer.learning_rate();
        let plan = plan_from_proto(&req, train.rows(), lr0)?;
        // The best epoch's model is kept beside the live one: its bytes are held for
        // the whole fit, refused now rather than at the first epoch's end.
        let keeps_best = plan.early.is_some_and(|e| !e.keep_last);
        let best_bytes = if keeps_best {
            session.spec.state_bytes().unwrap_or(u64::MAX)
        } else {
            0
        };
        let held = svc.store.reserve(best_bytes)?;
        let job = Arc::new(FitJob::new());
        session.start_fit(job.clone())?;
        let dataset = req.dataset_id.clone();
        session.edit_about(|a| a.dataset = dataset);
        let detach = plan.detach;
        let runner = Runner {
            svc: svc.clone(),
            session: session.clone(),
            job: job.clone(),
            plan,
            train,
            validation,
            _held: held,
        };
        tokio::spawn(runner.run());
        tracing::info!(model_id = %session.id, dataset_id = %req.dataset_id, detach, "fit started");
        Ok(follow(job, 0, !detach))
    })
    .await
}

pub async fn watch(
    svc: &TrainerService,
    req: Request<pb::WatchFitRequest>,
) -> Result<Response<EventStream>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("WatchFit", async {
        let job = on.session.fit().ok_or_else(no_fit)?;
        Ok(follow(job, req.from_event, false))
    })
    .await
}

pub async fn cancel(
    svc: &TrainerService,
    req: Request<pb::CancelFitRequest>,
) -> Result<Response<pb::CancelFitResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("CancelFit", async {
        let cancelled = match on.session.running_fit() {
            Some(job) => {
                job.cancel();
                job.finished().await;
                true
            }
            None => false,
        };
        Ok(pb::CancelFitResponse {
            cancelled,
            step: on.session.step(),
        })
    })
    .await
}

fn no_fit() -> Status {
    Refusal::new(
        Reason::NoFit,
        "model_id: no fit has run on this model since it was created or loaded",
    )
    .into()
}

/// A dataset's rows must be the model's input and its labels below its classes; the
/// first bad row is named.
fn check_fits(field: &str, d: &Dataset, session: &Session) -> Result<(), Status> {
    let spec = &session.spec;
    if d.dim() != spec.input_dim {
        return Err(invalid(
            field,
            format!(
                "its rows have {} values, the model takes input_dim {}",
                d.dim(),
                spec.input_dim
            ),
        ));
    }
    if let Some((row, label)) = d.first_label_from(spec.num_classes) {
        return Err(invalid(
            field,
            format!(
                "row {row} has label {label}, not below the model's {} classes",
                spec.num_classes
            ),
        ));
    }
    Ok(())
}

/// One fit, from its first step to its last event.
struct Runner {
    svc: TrainerService,
    session: Arc<Session>,
    job: Arc<FitJob>,
    plan: Plan,
    train: Arc<Dataset>,
    validation: Option<Arc<Dataset>>,
    /// The best model's bytes, held against the memory budget until the fit ends.
    _held: Reservation,
}

/// How the loop ended, before its event is made.
struct End {
    reason: EndReason,
    failure: Option<Status>,
}

impl End {
    fn because(reason: EndReason) -> Self {
        End {
            reason,
            failure: None,
        }
    }

    /// A step's error ends the fit as failed; the server shutting down (or the model
    /// deleted meanwhile) cancels it.
    fn failed(s: Status) -> Self {
        let shutting_down = s
            .get_details_error_info()
            .is_some_and(|i| i.reason == Reason::ShuttingDown.as_str());
        if shutting_down || s.code() == Code::NotFound {
            return End::because(EndReason::Cancelled);
        }
        End {
            reason: EndReason::Failed,
            failure: Some(s),
        }
    }
}

/// What the loop keeps between steps.
struct Progress {
    steps: u64,
    epochs: u32,
    tracker: Option<Tracker>,
    best: Option<AnyModel>,
}

impl Runner {
    async fn run(self) {
        let mut p = Progress {
            steps: 0,
            epochs: 0,
            tracker: self.plan.early.map(Tracker::new),
            best: None,
        };
        let end = self.drive(&mut p).await;
        let best = p
            .tracker
            .as_ref()
            .and_then(Tracker::best)
            .map(|(v, s)| (s, v));
        // Back to the best epoch's end, as Solver keeps best_params.
        if end.reason == EndReason::EarlyStopped
            && let Some(model) = p.best.take()
            && let Ok(mut guard) = self.session.write_as_fit(&self.job).await
        {
            let step = model.step();
            *guard.guard = model;
            self.session.set_step(step);
            drop(guard);
            self.svc.store.updated(&self.session, step);
        }
        let failure = end.failure.map(|s| {
            let e = batch_error(&s);
            Failure {
                code: e.code,
                message: e.message,
                reason: e.reason,
                field: e.field,
            }
        });
        let step = self.session.step();
        tracing::info!(model_id = %self.session.id, reason = ?end.reason, steps = p.steps, step, "fit finished");
        self.job.push(EventKind::Finished(Finished {
            reason: end.reason,
            step,
            steps: p.steps,
            epochs: p.epochs,
            best,
            failure,
        }));
    }

    async fn drive(&self, p: &mut Progress) -> End {
        let plan = &self.plan;
        let mut rng = Rng::new(plan.seed);
        let n = self.train.rows();
        let (held_out, train_rows) = match plan.validation {
            Validation::Fraction(f) => sampler::split(&mut rng, n, f),
            _ => (Vec::new(), (0..n).collect()),
        };
        let validation: Option<(Arc<Dataset>, Vec<usize>)> = match &self.validation {
            Some(v) => Some((v.clone(), (0..v.rows()).collect())),
            None if !held_out.is_empty() => Some((self.train.clone(), held_out)),
            None => None,
        };
        let m = train_rows.len();
        let mut sampler = Sampler::new(rng, train_rows.clone(), plan.batch, plan.sampling);
        let per_epoch = sampler.steps_per_epoch() as u64;
        let planned = plan.planned_steps(per_epoch);
        let every = plan.progress_every(per_epoch);
        let on = self.svc.on_rows(self.session.clone(), plan.batch);
        // The start step is read under the lock the steps take, after any step in flight.
        let start_step = match self.session.write_as_fit(&self.job).await {
            Ok(guard) => guard.guard.step(),
            Err(e) => return End::failed(e.into()),
        };
        self.job.push(EventKind::Started {
            start_step,
            train_rows: m as u64,
            validation_rows: validation.as_ref().map_or(0, |v| v.1.len() as u64),
            steps_per_epoch: per_epoch,
            planned_steps: planned,
        });
        let lr0 = self.session.spec.optimizer.learning_rate();
        let mut sample_rng = Rng::new(plan.seed.wrapping_add(1));
        let started = Instant::now();
        for epoch in 0u32.. {
            if plan.epochs.is_some_and(|e| epoch >= e) {
                return End::because(EndReason::Completed);
            }
            let batches = sampler.epoch();
            let last = batches.len().saturating_sub(1);
            let (mut loss_sum, mut loss_rows) = (0.0, 0usize);
            for (i, rows) in batches.into_iter().enumerate() {
                if self.job.is_cancelled() || self.session.is_removed() {
                    return End::because(EndReason::Cancelled);
                }
                if plan.max_steps.is_some_and(|s| p.steps >= s) {
                    return End::because(EndReason::MaxSteps);
                }
                let lr = plan.schedule.rate(lr0, p.steps, epoch, planned);
                let n_rows = rows.len();
                let r = match self.step(&on, rows, lr).await {
                    Ok(r) => r,
                    Err(e) => return End::failed(e),
                };
                p.steps += 1;
                if let Some(total) = r.losses.total() {
                    loss_sum += total * n_rows as f64;
                    loss_rows += n_rows;
                }
                if p.steps.is_multiple_of(every) || i == last {
                    self.job.push(EventKind::Progress {
                        step: r.step,
                        epoch,
                        losses: r.losses,
                        accuracy: r.accuracy,
                        learning_rate: lr,
                        steps_per_second: p.steps as f64
                            / started.elapsed().as_secs_f64().max(1e-9),
                    });
                }
            }
            p.epochs = epoch + 1;
            let sample: Vec<usize> = (0..plan.train_sample.min(m))
                .map(|_| train_rows[sample_rng.below(m)])
                .collect();
            let train_accuracy = match self.evaluate(&self.train, sample).await {
                Ok((_, acc)) => acc,
                Err(e) => return End::failed(e),
            };
            let measured = match &validation {
                Some((d, rows)) => match self.evaluate(d, rows.clone()).await {
                    Ok(v) => Some(v),
                    Err(e) => return End::failed(e),
                },
                None => None,
            };
            let step = self.session.step();
            let mut improved = false;
            let mut stop = false;
            if let (Some(t), Some((loss, acc))) = (p.tracker.as_mut(), measured) {
                let value = match t.rule().monitor {
                    crate::fit::Monitor::ValidationLoss => loss,
                    crate::fit::Monitor::ValidationAccuracy => acc,
                };
                let v = t.observe(value, step);
                improved = v.improved;
                stop = v.stop;
                if improved && !t.rule().keep_last {
                    match self.snapshot().await {
                        Ok(m) => p.best = Some(m),
                        Err(e) => return End::failed(e),
                    }
                }
            }
            let mean_loss = (loss_rows > 0).then(|| loss_sum / loss_rows as f64);
            let next_lr = plan.schedule.rate(lr0, p.steps, epoch + 1, planned);
            self.session.record(|h| {
                h.record_epoch(EpochPoint {
                    step,
                    epoch,
                    mean_loss,
                    train_accuracy: Some(train_accuracy),
                    validation_loss: measured.map(|v| v.0),
                    validation_accuracy: measured.map(|v| v.1),
                    learning_rate: next_lr,
                    time: now(),
                })
            });
            self.job.push(EventKind::EpochEnd(EpochEnd {
                epoch,
                step,
                mean_loss: mean_loss.unwrap_or(f64::NAN),
                train_accuracy,
                validation: measured,
                improved,
                learning_rate: next_lr,
            }));
            if stop {
                return End::because(EndReason::EarlyStopped);
            }
        }
        End::because(EndReason::Completed)
    }

    /// One step on `rows` at rate `lr`: exactly what a TrainStep with those rows (in the
    /// model's dtype) and that `learning_rate` does.
    async fn step(
        &self,
        on: &OnSession<'_>,
        rows: Vec<usize>,
        lr: f64,
    ) -> Result<crate::model::StepReport, Status> {
        let request_bytes = (rows.len() * self.train.dim()) as u64 * 8;
        let admitted = on.admit(Call::TrainStep, request_bytes)?;
        let mut guard = self.session.write_as_fit(&self.job).await?;
        let (data, session) = (self.train.clone(), self.session.clone());
        let r = on
            .compute(admitted, move || {
                let r = with_model!(&mut *guard.guard, m => {
                    let (x, y) = data.batch(&rows);
                    m.train_step_at(x.view(), &y, Some(lr))
                })?;
                session.set_step(r.step);
                Ok(r)
            })
            .await?;
        on.stepped(StepPoint {
            step: r.step,
            data_loss: r.losses.data,
            reg_loss: Some(r.losses.reg),
            accuracy: Some(r.accuracy),
            learning_rate: lr,
            time: now(),
        });
        Ok(r)
    }

    /// Total loss (mean data loss + regularization) and accuracy of the model on `rows`
    /// of `data`, a compute job per chunk of rows under the read lock.
    async fn evaluate(&self, data: &Arc<Dataset>, rows: Vec<usize>) -> Result<(f64, f64), Status> {
        if rows.is_empty() {
            return Ok((f64::NAN, f64::NAN));
        }
        let chunk = self.plan.batch.max(EVAL_ROWS);
        let on = self.svc.on_rows(self.session.clone(), chunk);
        let (mut data_sum, mut correct, mut reg) = (0.0, 0.0, 0.0);
        for part in rows.chunks(chunk) {
            let admitted = on.admit(Call::Evaluate, 0)?;
            let guard = on.read().await?;
            let (d, part) = (data.clone(), part.to_vec());
            let (losses, acc, n): (Losses, f64, usize) = on
                .compute(admitted, move || {
                    Ok(with_model!(&*guard.guard, m => {
                        let (x, y) = d.batch(&part);
                        let (scores, losses) = m.net().evaluate(x.view(), &y)?;
                        (losses, accuracy(&predictions(&scores.view()), &y), y.len())
                    }))
                })
                .await?;
            data_sum += losses.data.unwrap_or(f64::NAN) * n as f64;
            correct += acc * n as f64;
            reg = losses.reg;
        }
        let n = rows.len() as f64;
        Ok((data_sum / n + reg, correct / n))
    }

    /// A copy of the whole model (values, optimizer state, step), on the compute pool.
    async fn snapshot(&self) -> Result<AnyModel, Status> {
        let guard = self.session.read().await;
        let work = self.session.spec.state_bytes().unwrap_or(u64::MAX);
        Ok(self.svc.run(work, move || guard.guard.clone()).await?)
    }
}
