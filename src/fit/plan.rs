//! What a fit will do, validated: batch size, its bounds (epochs and/or steps), how it
//! samples, its schedule, how often it reports, how it validates and when it stops early.
use super::early::EarlyStopping;
use super::sampler::Sampling;
use super::schedule::Schedule;

/// Where a fit's validation rows come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validation {
    None,
    /// A fraction of the training set, held out by the seeded split.
    Fraction(f64),
    /// A dataset of its own (the service holds it).
    Separate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub batch: usize,
    /// `None`: no bound (then `max_steps` is set).
    pub epochs: Option<u32>,
    pub max_steps: Option<u64>,
    pub seed: u64,
    pub sampling: Sampling,
    pub schedule: Schedule,
    /// A progress event every this many steps; `None` = about 20 per epoch.
    pub progress_every: Option<u64>,
    /// Rows drawn for each epoch's train accuracy.
    pub train_sample: usize,
    pub validation: Validation,
    pub early: Option<EarlyStopping>,
    /// Keep running when the call that started it ends.
    pub detach: bool,
}

/// The train sample when the request leaves it 0 (CS231n's `num_train_samples`).
pub const DEFAULT_TRAIN_SAMPLE: usize = 1000;

impl Plan {
    /// The steps the fit takes if it runs to the end.
    pub fn planned_steps(&self, steps_per_epoch: u64) -> u64 {
        let by_epochs = self
            .epochs
            .map_or(u64::MAX, |e| u64::from(e).saturating_mul(steps_per_epoch));
        by_epochs.min(self.max_steps.unwrap_or(u64::MAX))
    }

    /// Steps between progress events.
    pub fn progress_every(&self, steps_per_epoch: u64) -> u64 {
        self.progress_every
            .unwrap_or_else(|| (steps_per_epoch / 20).max(1))
            .max(1)
    }
}
