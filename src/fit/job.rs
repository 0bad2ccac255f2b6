//! A running (or finished) fit as its watchers and its writer see it: the events so far
//! (the last [`KEPT_EVENTS`]), a signal for new ones, and the cancel switch the loop
//! checks between steps. Cheap to share: the loop, the call that started it and every
//! WatchFit hold the same `Arc`.
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::event::{Event, EventKind};

/// Events kept for replay; older ones are dropped (a watcher sees the gap in `index`).
pub const KEPT_EVENTS: usize = 10_000;

pub struct FitJob {
    log: Mutex<Log>,
    /// Events pushed so far; watchers wait on its changes.
    pushed: watch::Sender<u64>,
    cancel: AtomicBool,
}

#[derive(Default)]
struct Log {
    events: VecDeque<Event>,
    next: u64,
    finished: bool,
}

impl Default for FitJob {
    fn default() -> Self {
        Self::new()
    }
}

impl FitJob {
    pub fn new() -> Self {
        FitJob {
            log: Mutex::new(Log::default()),
            pushed: watch::Sender::new(0),
            cancel: AtomicBool::new(false),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event (a `Finished` one ends the fit) and wakes the watchers.
    pub fn push(&self, kind: EventKind) {
        let mut log = self.log();
        if log.finished {
            return;
        }
        log.finished = matches!(kind, EventKind::Finished(_));
        let index = log.next;
        log.next += 1;
        log.events.push_back(Event { index, kind });
        if log.events.len() > KEPT_EVENTS {
            log.events.pop_front();
        }
        let n = log.next;
        drop(log);
        self.pushed.send_replace(n);
    }

    /// The kept events from index `from` on, and whether the fit has finished.
    pub fn events_from(&self, from: u64) -> (Vec<Event>, bool) {
        let log = self.log();
        // Indices are contiguous: the first kept one tells where `from` is, so a watcher
        // woken for one event does not scan every kept one.
        let first = log.events.front().map_or(log.next, |e| e.index);
        let skip = from.saturating_sub(first) as usize;
        let events = log.events.iter().skip(skip).cloned().collect();
        (events, log.finished)
    }

    /// Wakes on every new event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.pushed.subscribe()
    }

    /// Asks the loop to stop at its next step boundary.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
        // Wake a loop waiting for nothing but this (and watchers, harmlessly).
        self.pushed.send_modify(|_| {});
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// Whether the fit still runs (it has not pushed its `Finished` event).
    pub fn is_running(&self) -> bool {
        !self.log().finished
    }

    /// Waits until the fit has finished.
    pub async fn finished(&self) {
        let mut rx = self.subscribe();
        while self.is_running() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::event::{EndReason, Finished};

    #[test]
    fn events_are_numbered_kept_and_end_with_the_finish() {
        let job = FitJob::new();
        for _ in 0..3 {
            job.push(EventKind::Progress {
                step: 1,
                epoch: 0,
                losses: crate::model::Losses {
                    data: Some(1.0),
                    reg: 0.0,
                },
                accuracy: 0.5,
                learning_rate: 0.1,
                steps_per_second: 1.0,
            });
        }
        let (from1, done) = job.events_from(1);
        assert_eq!(
            from1.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(!done && job.is_running());
        job.push(EventKind::Finished(Finished {
            reason: EndReason::Completed,
            step: 8,
            steps: 3,
            epochs: 1,
            best: None,
            failure: None,
        }));
        job.push(EventKind::Finished(Finished {
            reason: EndReason::Failed,
            step: 9,
            steps: 3,
            epochs: 1,
            best: None,
            failure: None,
        }));
        let (all, done) = job.events_from(0);
        assert_eq!(all.len(), 4, "nothing after the finish");
        assert!(done && !job.is_running());
    }
}
