//! Early stopping on a validation metric with patience, keeping track of the best
//! epoch's end (so the fit can go back to it, as Solver keeps `best_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// Lower is better.
    ValidationLoss,
    /// Higher is better.
    ValidationAccuracy,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    pub monitor: Monitor,
    /// Epochs without an improvement of more than `min_delta` before stopping; ≥ 1.
    pub patience: u32,
    pub min_delta: f64,
    /// Keep the last model instead of going back to the best.
    pub keep_last: bool,
}

/// What one epoch's value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub improved: bool,
    pub stop: bool,
}

/// The best value so far and the epochs since it.
#[derive(Debug, Clone)]
pub struct Tracker {
    rule: EarlyStopping,
    best: Option<(f64, u64)>,
    waited: u32,
}

impl Tracker {
    pub fn new(rule: EarlyStopping) -> Self {
        Tracker {
            rule,
            best: None,
            waited: 0,
        }
    }

    /// Records an epoch that ended at `step` with the monitored `value`. A NaN never
    /// improves.
    pub fn observe(&mut self, value: f64, step: u64) -> Verdict {
        let better = match (self.best, self.rule.monitor) {
            (_, _) if value.is_nan() => false,
            (None, _) => true,
            (Some((b, _)), Monitor::ValidationLoss) => value < b - self.rule.min_delta,
            (Some((b, _)), Monitor::ValidationAccuracy) => value > b + self.rule.min_delta,
        };
        if better {
            self.best = Some((value, step));
            self.waited = 0;
        } else {
            self.waited += 1;
        }
        Verdict {
            improved: better,
            stop: self.waited >= self.rule.patience,
        }
    }

    /// The best value and the step it was reached at.
    pub fn best(&self) -> Option<(f64, u64)> {
        self.best
    }

    pub fn rule(&self) -> &EarlyStopping {
        &self.rule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_counts_epochs_without_improvement() {
        let mut t = Tracker::new(EarlyStopping {
            monitor: Monitor::ValidationLoss,
            patience: 2,
            min_delta: 0.01,
            keep_last: false,
        });
        assert!(t.observe(1.0, 10).improved);
        assert_eq!(
            t.observe(0.995, 20),
            Verdict {
                improved: false,
                stop: false
            }
        );
        assert!(t.observe(0.5, 30).improved);
        assert!(!t.observe(0.6, 40).stop);
        assert!(t.observe(f64::NAN, 50).stop);
        assert_eq!(t.best(), Some((0.5, 30)));
        let mut acc = Tracker::new(EarlyStopping {
            monitor: Monitor::ValidationAccuracy,
            patience: 1,
            min_delta: 0.0,
            keep_last: true,
        });
        assert!(acc.observe(0.5, 1).improved);
        assert!(acc.observe(0.6, 2).improved);
        assert!(acc.observe(0.6, 3).stop);
    }
}
