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
/// The narrowest bar drawn before parts of the line are left out.
const MIN_BAR: usize = 8;

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
        let rate = self.rate(s.step);
        let eta = if rate > 0.0 {
            let left = self.total_steps.saturating_sub(s.step) as f64 / rate;
            format!("eta {left:.0}s")
        } else {
            String::new()
        };
        let parts = [
            format!("epoch {}/{}", s.epoch, self.epochs),
            format!("step {}/{}", s.step, self.total_steps),
            format!("loss {:.4}", s.loss),
            format!("acc {:.3}", s.accuracy),
            format!("{rate:.0} steps/s"),
            eta,
        ];
        let line = bar_line(terminal_width(), done, &parts);
        let mut out = std::io::stdout().lock();
        // \r and "erase line": redraw in place.
        let _ = write!(out, "\r\x1b[2K{line}");
        let _ = out.flush();
        self.last_output = Some(Instant::now());
    }

    fn line(&mut self, s: Snapshot) {
        println!("{}", self.stats(s));
        self.last_output = Some(Instant::now());
    }
}

/// The terminal's width in columns: the tty's own (TIOCGWINSZ), else $COLUMNS, else 80.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize for a tty and fails otherwise; no other effect.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0
    {
        return ws.ws_col as usize;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(80)
}

/// The bar and as many of `parts` (most important first; empty ones skipped) as fit in
/// `width - 1` columns (a line that fills the last column wraps on some terminals): the
/// bar narrows to [`MIN_BAR`] first, then trailing parts are left out, then the line is
/// cut.
fn bar_line(width: usize, done: f64, parts: &[String]) -> String {
    let room = width.saturating_sub(1);
    let parts: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .collect();
    let draw = |bar: usize, keep: usize| {
        let filled = ((done * bar as f64).round() as usize).min(bar);
        let mut line = format!(
            "[{}{}] {:>3.0}%",
            "#".repeat(filled),
            "-".repeat(bar - filled),
            done * 100.0
        );
        for p in &parts[..keep] {
            line.push_str("  ");
            line.push_str(p);
        }
        line
    };
    for keep in (1..=parts.len()).rev() {
        let fixed = draw(0, keep).chars().count();
        if fixed + MIN_BAR <= room {
            return draw(BAR_WIDTH.min(room - fixed), keep);
        }
    }
    draw(MIN_BAR, parts.len().min(1))
        .chars()
        .take(room)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fits_the_terminal() {
        let parts: Vec<String> = [
            "epoch 12/100",
            "step 12345/100000",
            "loss 0.1234",
            "acc 0.953",
            "12345 steps/s",
            "eta 123s",
        ]
        .map(String::from)
        .to_vec();
        for width in [20, 40, 60, 80, 100, 200] {
            let line = bar_line(width, 0.42, &parts);
            assert!(line.chars().count() < width, "{width}: {line:?}");
            assert!(line.starts_with('['), "{width}: {line:?}");
        }
        // Wide: everything, the full bar. 80 columns: the bar and the first parts.
        let wide = bar_line(200, 0.5, &parts);
        assert!(
            wide.contains(&"#".repeat(12)) && wide.ends_with("eta 123s"),
            "{wide}"
        );
        let narrow = bar_line(80, 0.5, &parts);
        assert!(
            narrow.contains("epoch 12/100") && narrow.contains("loss"),
            "{narrow}"
        );
        assert!(!bar_line(40, 0.5, &parts).contains("eta"));
    }
}
