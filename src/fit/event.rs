//! What a fit reports, in order: started, progress every few steps, each epoch's end,
//! finished with its reason. Numbered from 0 so a watcher can resume by index.
use crate::model::Losses;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub index: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Started {
        start_step: u64,
        train_rows: u64,
        validation_rows: u64,
        steps_per_epoch: u64,
        planned_steps: u64,
    },
    Progress {
        step: u64,
        epoch: u32,
        losses: Losses,
        accuracy: f64,
        learning_rate: f64,
        steps_per_second: f64,
    },
    EpochEnd(EpochEnd),
    Finished(Finished),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EpochEnd {
    pub epoch: u32,
    pub step: u64,
    pub mean_loss: f64,
    pub train_accuracy: f64,
    /// Loss (data + regularization) and accuracy on the validation rows.
    pub validation: Option<(f64, f64)>,
    pub improved: bool,
    /// The rate the next epoch starts with.
    pub learning_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Completed,
    EarlyStopped,
    MaxSteps,
    Cancelled,
    Failed,
}

/// Why a step failed: what its status said (the code as gRPC numbers it), so the event
/// carries it without this layer knowing the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    pub reason: String,
    pub field: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: EndReason,
    pub step: u64,
    pub steps: u64,
    pub epochs: u32,
    /// The best epoch's end and its monitored value (with early stopping).
    pub best: Option<(u64, f64)>,
    pub failure: Option<Failure>,
}
