//! What happened to a model, kept with its session: one point per optimizer step
//! (TrainStep, TrainStream, ApplyGradients, Fit) and one per fit epoch's end, bounded
//! and downsampled so it always spans the model's whole life: when the step series is
//! full every other point goes and the stride doubles (every stride-th step is kept).
//! Checkpoints (ExportModel, the state directory) carry it as JSON metadata.
use serde::{Deserialize, Serialize};

/// Step points kept at most (then halved).
pub const MAX_STEPS: usize = 2048;
/// Epoch points kept at most (then halved, as the steps).
pub const MAX_EPOCHS: usize = 2048;
/// The longest history JSON a checkpoint may carry: the full series with every field
/// at its longest is under 1 MiB.
pub const MAX_HISTORY_BYTES: usize = 2 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPoint {
    pub step: u64,
    /// None for ApplyGradients (no batch).
    pub data_loss: Option<f64>,
    pub reg_loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub learning_rate: f64,
    /// Seconds since the Unix epoch.
    pub time: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    pub step: u64,
    pub epoch: u32,
    pub mean_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub validation_loss: Option<f64>,
    pub validation_accuracy: Option<f64>,
    pub learning_rate: f64,
    pub time: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    steps: Vec<StepPoint>,
    epochs: Vec<EpochPoint>,
    /// Every `stride`-th recorded step is kept.
    stride: u64,
    /// Steps recorded so far.
    seen: u64,
    epoch_stride: u64,
    epochs_seen: u64,
    /// The latest step and epoch, whatever the strides keep: a model's final metrics
    /// (ListModels, GetModel). Absent from files written before they were kept.
    #[serde(default)]
    last_step: Option<StepPoint>,
    #[serde(default)]
    last_epoch: Option<EpochPoint>,
}

impl Default for History {
    fn default() -> Self {
        History {
            steps: Vec::new(),
            epochs: Vec::new(),
            stride: 1,
            seen: 0,
            epoch_stride: 1,
            epochs_seen: 0,
            last_step: None,
            last_epoch: None,
        }
    }
}

/// Now, in seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Keeps every stride-th point of `series`: pushes `p` when it is the `seen`-th, and
/// halves the series (doubling the stride) when it is over `max`.
fn keep<T>(series: &mut Vec<T>, p: T, seen: &mut u64, stride: &mut u64, max: usize) {
    if seen.is_multiple_of(*stride) {
        series.push(p);
        if series.len() > max {
            let mut i = 0;
            series.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            *stride *= 2;
        }
    }
    *seen += 1;
}

impl History {
    pub fn record_step(&mut self, p: StepPoint) {
        self.last_step = Some(p.clone());
        keep(
            &mut self.steps,
            p,
            &mut self.seen,
            &mut self.stride,
            MAX_STEPS,
        );
    }

    pub fn record_epoch(&mut self, p: EpochPoint) {
        self.last_epoch = Some(p.clone());
        let (seen, stride) = (&mut self.epochs_seen, &mut self.epoch_stride);
        keep(&mut self.epochs, p, seen, stride, MAX_EPOCHS);
    }

    pub fn steps(&self) -> &[StepPoint] {
        &self.steps
    }

    pub fn epochs(&self) -> &[EpochPoint] {
        &self.epochs
    }

    /// The latest step recorded (kept even when the stride drops it from the series).
    pub fn last_step(&self) -> Option<&StepPoint> {
        self.last_step.as_ref()
    }

    /// The latest fit epoch recorded.
    pub fn last_epoch(&self) -> Option<&EpochPoint> {
        self.last_epoch.as_ref()
    }

    pub fn stride(&self) -> u64 {
        self.stride
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A history from a checkpoint's JSON, within the bounds this module keeps.
    pub fn from_json(json: &str) -> Result<Self, String> {
        if json.len() > MAX_HISTORY_BYTES {
            return Err(format!(
                "{} bytes of JSON, more than the {MAX_HISTORY_BYTES} a history takes",
                json.len()
            ));
        }
        let h: History = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if h.steps.len() > MAX_STEPS || h.epochs.len() > MAX_EPOCHS {
            return Err("more points than a history keeps".into());
        }
        if h.stride == 0 || !h.stride.is_power_of_two() || h.epoch_stride == 0 {
            return Err("the stride must be a power of two".into());
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64) -> StepPoint {
        StepPoint {
            step,
            data_loss: Some(1.0),
            reg_loss: Some(0.0),
            accuracy: None,
            learning_rate: 0.1,
            time: 0.0,
        }
    }

    #[test]
    fn the_step_series_stays_bounded_and_spans_every_step() {
        let mut h = History::default();
        let n = 3 * MAX_STEPS as u64 + 5;
        for s in 1..=n {
            h.record_step(point(s));
        }
        assert!(h.steps().len() <= MAX_STEPS);
        assert!(h.stride() >= 2 && h.stride().is_power_of_two());
        assert_eq!(h.steps()[0].step, 1);
        assert!(
            h.steps()
                .windows(2)
                .all(|w| w[1].step - w[0].step == h.stride())
        );
        assert!(n - h.steps().last().unwrap().step < h.stride() * 2);
        assert_eq!(h.last_step().unwrap().step, n);
        let back = History::from_json(&h.to_json()).unwrap();
        assert_eq!(back, h);
        assert!(History::from_json("{").is_err());
    }
}
