//! Fit on the wire: a FitRequest checked into a [`Plan`] (every field that can be wrong
//! is named before anything starts), and a fit's events out.
use tonic::Status;

use super::losses_pb;
use crate::fit::event::{EpochEnd, Finished};
use crate::fit::plan::DEFAULT_TRAIN_SAMPLE;
use crate::fit::{
    EarlyStopping, EndReason, Event, EventKind, Monitor, Plan, Sampling, Schedule, Validation,
};
use crate::pb;
use crate::service::status::invalid;

/// The request's plan, given the training rows `rows` (N) and the spec's rate `lr0`.
/// Checks everything but the datasets themselves (the caller's).
pub fn plan_from_proto(r: &pb::FitRequest, rows: usize, lr0: f64) -> Result<Plan, Status> {
    let fraction = r.validation_fraction;
    if !(fraction.is_finite() && (0.0..1.0).contains(&fraction)) {
        return Err(invalid(
            "validation_fraction",
            format!("must be in [0, 1), got {fraction}"),
        ));
    }
    let validation = match (r.validation_dataset_id.is_empty(), fraction > 0.0) {
        (false, true) => {
            return Err(invalid(
                "validation_fraction",
                "give a validation dataset or a fraction, not both",
            ));
        }
        (false, false) => Validation::Separate,
        (true, true) => {
            let held = crate::fit::sampler::held_out(rows, fraction);
            if held == 0 || held >= rows {
                return Err(invalid(
                    "validation_fraction",
                    format!(
                        "{fraction} of {rows} rows holds out {held}: at least one row must \
                         be held out and one left to train on"
                    ),
                ));
            }
            Validation::Fraction(fraction)
        }
        (true, false) => Validation::None,
    };
    let train_rows = match validation {
        Validation::Fraction(f) => rows - crate::fit::sampler::held_out(rows, f),
        _ => rows,
    };
    if r.epochs == 0 && r.max_steps == 0 {
        return Err(invalid(
            "epochs",
            "set epochs, max_steps or both (both 0 would never end)",
        ));
    }
    let batch = r.batch_size as usize;
    if batch == 0 || batch > train_rows {
        return Err(invalid(
            "batch_size",
            format!("must be from 1 to the {train_rows} training rows, got {batch}"),
        ));
    }
    let sampling = match pb::Sampling::try_from(r.sampling) {
        Ok(pb::Sampling::Unspecified | pb::Sampling::Shuffle) => Sampling::Shuffle {
            drop_last: r.drop_last,
        },
        Ok(pb::Sampling::WithReplacement) => Sampling::WithReplacement,
        Err(_) => {
            return Err(invalid(
                "sampling",
                format!("unknown sampling {}", r.sampling),
            ));
        }
    };
    let early = match &r.early_stopping {
        None => None,
        Some(e) => {
            if matches!(validation, Validation::None) {
                return Err(invalid(
                    "early_stopping",
                    "needs validation rows: set validation_dataset_id or validation_fraction",
                ));
            }
            if e.patience == 0 {
                return Err(invalid("early_stopping.patience", "must be ≥ 1"));
            }
            if !(e.min_delta.is_finite() && e.min_delta >= 0.0) {
                return Err(invalid(
                    "early_stopping.min_delta",
                    "must be finite and ≥ 0",
                ));
            }
            let monitor = match pb::Monitor::try_from(e.monitor) {
                Ok(pb::Monitor::Unspecified | pb::Monitor::ValidationLoss) => {
                    Monitor::ValidationLoss
                }
                Ok(pb::Monitor::ValidationAccuracy) => Monitor::ValidationAccuracy,
                Err(_) => {
                    return Err(invalid(
                        "early_stopping.monitor",
                        format!("unknown monitor {}", e.monitor),
                    ));
                }
            };
            Some(EarlyStopping {
                monitor,
                patience: e.patience,
                min_delta: e.min_delta,
                keep_last: e.keep_last,
            })
        }
    };
    Ok(Plan {
        batch,
        epochs: (r.epochs > 0).then_some(r.epochs),
        max_steps: (r.max_steps > 0).then_some(r.max_steps),
        seed: r.seed,
        sampling,
        schedule: schedule_from_proto(r.schedule.as_ref(), lr0)?,
        progress_every: (r.progress_every > 0).then_some(u64::from(r.progress_every)),
        train_sample: match r.train_sample {
            0 => DEFAULT_TRAIN_SAMPLE,
            n => n as usize,
        },
        validation,
        early,
        detach: r.detach,
    })
}

fn schedule_from_proto(s: Option<&pb::Schedule>, lr0: f64) -> Result<Schedule, Status> {
    let Some(s) = s else {
        return Ok(Schedule::Constant);
    };
    let decay = s.decay.unwrap_or(0.95);
    let check_decay = || {
        if decay.is_finite() && decay > 0.0 && decay <= 1.0 {
            Ok(decay)
        } else {
            Err(invalid(
                "schedule.decay",
                format!("must be in (0, 1], got {decay}"),
            ))
        }
    };
    match pb::ScheduleKind::try_from(s.kind) {
        Ok(pb::ScheduleKind::Unspecified | pb::ScheduleKind::Constant) => Ok(Schedule::Constant),
        Ok(pb::ScheduleKind::EpochDecay) => Ok(Schedule::EpochDecay {
            decay: check_decay()?,
        }),
        Ok(pb::ScheduleKind::Step) => Ok(Schedule::Step {
            decay: check_decay()?,
            every: s.step_epochs.max(1),
        }),
        Ok(pb::ScheduleKind::Cosine) => {
            if !(s.min_lr.is_finite() && s.min_lr >= 0.0 && s.min_lr < lr0) {
                return Err(invalid(
                    "schedule.min_lr",
                    format!(
                        "must be in [0, {lr0}) (the spec's learning rate), got {}",
                        s.min_lr
                    ),
                ));
            }
            Ok(Schedule::Cosine { min: s.min_lr })
        }
        Err(_) => Err(invalid("schedule.kind", format!("unknown kind {}", s.kind))),
    }
}

pub fn event_to_proto(e: Event) -> pb::FitEvent {
    use pb::fit_event::Event as E;
    let event = match e.kind {
        EventKind::Started {
            start_step,
            train_rows,
            validation_rows,
            steps_per_epoch,
            planned_steps,
        } => E::Started(pb::FitStarted {
            start_step,
            train_rows,
            validation_rows,
            steps_per_epoch,
            planned_steps,
        }),
        EventKind::Progress {
            step,
            epoch,
            losses,
            accuracy,
            learning_rate,
            steps_per_second,
        } => E::Progress(pb::FitProgress {
            step,
            epoch,
            losses: Some(losses_pb(losses)),
            accuracy,
            learning_rate,
            steps_per_second,
        }),
        EventKind::EpochEnd(EpochEnd {
            epoch,
            step,
            mean_loss,
            train_accuracy,
            validation,
            improved,
            learning_rate,
        }) => E::EpochEnd(pb::FitEpochEnd {
            epoch,
            step,
            mean_loss,
            train_accuracy,
            validation_loss: validation.map(|v| v.0),
            validation_accuracy: validation.map(|v| v.1),
            improved,
            learning_rate,
        }),
        EventKind::Finished(Finished {
            reason,
            step,
            steps,
            epochs,
            best,
            failure,
        }) => E::Finished(pb::FitFinished {
            reason: match reason {
                EndReason::Completed => pb::FitEnd::Completed,
                EndReason::EarlyStopped => pb::FitEnd::EarlyStopped,
                EndReason::MaxSteps => pb::FitEnd::MaxSteps,
                EndReason::Cancelled => pb::FitEnd::Cancelled,
                EndReason::Failed => pb::FitEnd::Failed,
            } as i32,
            step,
            steps,
            epochs,
            best_step: best.map(|b| b.0),
            best_value: best.map(|b| b.1),
            error: failure.map(|f| pb::BatchError {
                code: f.code,
                message: f.message,
                reason: f.reason,
                field: f.field,
            }),
        }),
    };
    pb::FitEvent {
        index: e.index,
        event: Some(event),
    }
}
