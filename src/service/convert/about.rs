//! A model's metadata and its history's points on the wire (ModelMetadata, HistoryStep,
//! HistoryEpoch): one mapping for GetModel, ListModels, UpdateModel and GetHistory.
use crate::pb;
use crate::session::About;
use crate::session::history::{EpochPoint, StepPoint};

pub fn about_to_proto(a: &About) -> pb::ModelMetadata {
    pb::ModelMetadata {
        name: a.name.clone(),
        labels: a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        created_time: a.created,
        dataset_id: a.dataset.clone(),
    }
}

/// A step point; what the step did not measure (ApplyGradients has no batch) is NaN.
pub fn step_to_proto(p: &StepPoint) -> pb::HistoryStep {
    pb::HistoryStep {
        step: p.step,
        data_loss: p.data_loss.unwrap_or(f64::NAN),
        reg_loss: p.reg_loss.unwrap_or(f64::NAN),
        accuracy: p.accuracy.unwrap_or(f64::NAN),
        learning_rate: p.learning_rate,
        time: p.time,
    }
}

pub fn epoch_to_proto(e: &EpochPoint) -> pb::HistoryEpoch {
    pb::HistoryEpoch {
        step: e.step,
        epoch: e.epoch,
        mean_loss: e.mean_loss.unwrap_or(f64::NAN),
        train_accuracy: e.train_accuracy.unwrap_or(f64::NAN),
        validation_loss: e.validation_loss,
        validation_accuracy: e.validation_accuracy,
        learning_rate: e.learning_rate,
        time: e.time,
    }
}
