//! Learning-rate schedules: the rate of a fit's step k (from 0) in epoch e (from 0),
//! from the spec's rate lr0. The proto's `ScheduleKind` documents the same formulas,
//! down to the order of the f64 operations, so a client can reproduce every rate; the
//! cosine is `libm`'s (a port of musl's), the same on every machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    Constant,
    /// lr0 · decay^e: CS231n's `lr_decay`, applied at every epoch's end.
    EpochDecay {
        decay: f64,
    },
    /// lr0 · decay^floor(e / every).
    Step {
        decay: f64,
        every: u32,
    },
    /// min + (lr0 − min)(1 + cos(π k / K))/2 over K planned steps.
    Cosine {
        min: f64,
    },
}

impl Schedule {
    /// The rate of step `k` in epoch `epoch`, of `planned` steps in all.
    pub fn rate(&self, lr0: f64, k: u64, epoch: u32, planned: u64) -> f64 {
        match *self {
            Schedule::Constant => lr0,
            Schedule::EpochDecay { decay } => decayed(lr0, decay, epoch),
            Schedule::Step { decay, every } => decayed(lr0, decay, epoch / every.max(1)),
            Schedule::Cosine { min } => {
                let t = k as f64 / planned.max(1) as f64;
                min + (lr0 - min) * (1.0 + libm::cos(std::f64::consts::PI * t)) / 2.0
            }
        }
    }
}

/// lr0 multiplied by `decay` `times` times, one multiplication after another (as Solver
/// decays its rate at each epoch's end), so every client gets the same bits.
fn decayed(lr0: f64, decay: f64, times: u32) -> f64 {
    (0..times).fold(lr0, |lr, _| lr * decay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schedule_follows_its_formula() {
        assert_eq!(Schedule::Constant.rate(0.1, 50, 3, 100), 0.1);
        let d = Schedule::EpochDecay { decay: 0.5 };
        assert_eq!(d.rate(0.1, 0, 0, 10), 0.1);
        assert_eq!(d.rate(0.1, 9, 2, 10), 0.025);
        let s = Schedule::Step {
            decay: 0.1,
            every: 2,
        };
        assert_eq!(s.rate(1.0, 0, 1, 10), 1.0);
        assert!((s.rate(1.0, 0, 2, 10) - 0.1).abs() < 1e-15);
        let c = Schedule::Cosine { min: 0.0 };
        assert_eq!(c.rate(0.2, 0, 0, 100), 0.2);
        assert!((c.rate(0.2, 50, 0, 100) - 0.1).abs() < 1e-15);
        assert!(c.rate(0.2, 100, 0, 100).abs() < 1e-15);
    }
}
