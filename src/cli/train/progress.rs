//! Training progress on stdout: a bar redrawn in place on a terminal, or, when stdout is a
//! pipe or a file (CI logs, `| tee`), a plain line now and then, never a carriage return.
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where training stands after a step.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// 1-based.
    pub epoch: usize,
    /// Steps taken so far in this run.
    pub step: u64,
    /// Mean loss and accuracy over this epoch's batches so far.
    pub loss: f64,
    pub accuracy: f64,
}

pub struct Progress {
    epochs: usize,
    total_steps: u64,
    start: Instant,
    last_output: Option<Instant>,
    terminal: bool,
}

/// Bar redraws at most this often, so drawing never slows a fast run.
const REDRAW: Duration = Duration::from_millis(80);
/// Without a terminal: a line at the end of an epoch at most this often ...
const LINE_EVERY: Duration = Duration::from_secs(1);
/// ... and one mid-epoch when an epoch is long.
const LINE_MID_EPOCH: Duration = Duration::from_secs(5);
const BAR_WIDTH: usize = 24;

impl Progress {
    pub fn new(epochs: usize, total_steps: u64) -> Self {
        Progress {
            epochs,
            total_steps,
            start: Instant::now(),
            last_output: None,
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Steps per second since the start.
    pub fn rate(&self, steps: u64) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if secs > 0.0 { steps as f64 / secs } else { 0.0 }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn step(&mut self, s: Snapshot) {
        let due = |every| self.last_output.is_none_or(|t| t.elapsed() >= every);
        if self.terminal {
            if due(REDRAW) || s.step == self.total_steps {
                self.draw_bar(s);
            }
        } else if due(LINE_MID_EPOCH) && self.last_output.is_some() {
            self.line(s);
        }
    }

    pub fn epoch_end(&mut self, s: Snapshot) {
        if self.terminal {
            self.draw_bar(s);
        } else {
            let due = self.last_output.is_none_or(|t| t.elapsed() >= LINE_EVERY);
            if s.epoch == 1 || s.epoch == self.epochs || due {
                self.line(s);
            }
        }
    }

    /// Ends the bar's line, so what follows starts on a fresh one.
    pub fn finish(&mut self) {
        if self.terminal && self.last_output.is_some() {
            println!();
        }
    }

    fn stats(&self, s: Snapshot) -> String {
        format!(
            "epoch {}/{}  step {}/{}  loss {:.4}  acc {:.3}  {:.0} steps/s",
            s.epoch,
            self.epochs,
            s.step,
            self.total_steps,
            s.loss,
            s.accuracy,
            self.rate(s.step)
        )
    }

    fn draw_bar(&mut self, s: Snapshot) {
        let done = s.step as f64 / self.total_steps.max(1) as f64;
        let filled = ((done * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
        let rate = self.rate(s.step);
        let eta = if rate > 0.0 {
            let left = self.total_steps.saturating_sub(s.step) as f64 / rate;
            format!("  eta {left:.0}s")
        } else {
            String::new()
        };
        let mut out = std::io::stdout().lock();
        // \r and "erase line": redraw in place.
        let _ = write!(
            out,
            "\r\x1b[2K[{}{}] {:>3.0}%  {}{eta}",
            "#".repeat(filled),
            "-".repeat(BAR_WIDTH - filled),
            done * 100.0,
            self.stats(s)
        );
        let _ = out.flush();
        self.last_output = Some(Instant::now());
    }

    fn line(&mut self, s: Snapshot) {
        println!("{}", self.stats(s));
        self.last_output = Some(Instant::now());
    }
}
