//! Operational metrics, rendered as Prometheus text on `--metrics-listen`.
//!
//! Each server owns its own recorder (never the process-global one), so two servers in one
//! process, as in the tests, count apart and exactly. A [`Metrics`] is a cheap handle; the
//! disabled one (metrics off, the default) records nothing and costs a branch.
//!
//! Counters and histograms are recorded as things happen; the gauges (sessions,
//! parameters, queue depth, memory) are read from their owners when `/metrics` is scraped,
//! so they can never drift from the truth.
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Calls to the Trainer, by `method` and gRPC `code` (e.g. `OK`, `NOT_FOUND`).
pub const REQUESTS: &str = "backprop_requests_total";
/// Seconds from a call's arrival to its status, by `method`.
pub const REQUEST_DURATION: &str = "backprop_request_duration_seconds";
/// Optimizer steps taken, counted by each RPC that steps where it steps (today TrainStep
/// and ApplyGradients).
pub const TRAIN_STEPS: &str = "backprop_train_steps_total";
/// Calls refused to protect the server, by `reason`: `queue_full` (the compute queue) or
/// `message_too_large` (over `--max-message-mib`).
pub const SHED: &str = "backprop_shed_requests_total";
/// Seconds a job waited in the compute queue before a compute thread took it.
pub const QUEUE_WAIT: &str = "backprop_compute_queue_wait_seconds";
/// Jobs waiting for a compute thread now.
pub const QUEUE_DEPTH: &str = "backprop_compute_queue_depth";
/// Live sessions.
pub const SESSIONS: &str = "backprop_sessions";
/// Parameters (scalars) held by all live sessions together.
pub const PARAMETERS: &str = "backprop_parameters";
/// The process's resident memory, from /proc/self/statm.
pub const RESIDENT_MEMORY: &str = "backprop_process_resident_memory_bytes";
/// Counter, by `outcome` ("ok" | "error"): session files written to the state directory.
pub const STATE_SAVES: &str = "backprop_state_saves_total";
/// Gauge: sessions whose last save to the state directory failed; they refuse changes
/// until a save succeeds, and the Trainer's health entry is NOT_SERVING while any is.
pub const UNSAVED_SESSIONS: &str = "backprop_unsaved_sessions";
/// Histogram: seconds one session save took (encode, write, fsync, rename).
pub const STATE_SAVE_DURATION: &str = "backprop_state_save_seconds";
/// Gauge: bytes the live sessions hold (parameters and optimizer state), as the memory
/// budget counts them.
pub const MEMORY_SESSIONS: &str = "backprop_memory_sessions_bytes";
/// Gauge: bytes calls in flight hold against the memory budget (their estimated peaks,
/// uploads as they arrive); 0 on a server without a budget, which does not count them.
pub const MEMORY_RESERVED: &str = "backprop_memory_reserved_bytes";
/// Gauge: the memory budget (`--max-memory`, or the default from the machine); absent
/// on a server without one.
pub const MEMORY_BUDGET: &str = "backprop_memory_budget_bytes";
/// Counter: queued jobs skipped because their caller had gone (deadline passed,
/// cancelled) before a compute thread took them.
pub const EXPIRED: &str = "backprop_expired_jobs_total";

/// Histogram buckets, in seconds: 100 µs (an inline Forward) to 30 s (a big GradientCheck).
const BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Why a call was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    QueueFull,
    MessageTooLarge,
}

/// The gauges, read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub sessions: usize,
    pub parameters: u64,
    pub queue_depth: usize,
    pub memory_sessions: u64,
    pub memory_reserved: u64,
    pub memory_budget: Option<u64>,
}

/// A handle to one server's metrics, or to none.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Inner>>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    train_steps: Counter,
    queue_wait: Histogram,
    shed_queue_full: Counter,
    shed_too_large: Counter,
    saves_ok: Counter,
    saves_failed: Counter,
    save_duration: Histogram,
    /// Set when the count changes (not at scrape time): the persister owns the number.
    unsaved: Gauge,
    expired: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Metrics {
    /// A fresh recorder of this server's own.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let (train_steps, queue_wait, shed_queue_full, shed_too_large) =
            metrics::with_local_recorder(&recorder, || {
                describe();
                (
                    metrics::counter!(TRAIN_STEPS),
                    metrics::histogram!(QUEUE_WAIT),
                    metrics::counter!(SHED, "reason" => "queue_full"),
                    metrics::counter!(SHED, "reason" => "message_too_large"),
                )
            });
        let (saves_ok, saves_failed, save_duration, unsaved, expired) =
            metrics::with_local_recorder(&recorder, || {
                (
                    metrics::counter!(STATE_SAVES, "outcome" => "ok"),
                    metrics::counter!(STATE_SAVES, "outcome" => "error"),
                    metrics::histogram!(STATE_SAVE_DURATION),
                    metrics::gauge!(UNSAVED_SESSIONS),
                    metrics::counter!(EXPIRED),
                )
            });
        Metrics(Some(Arc::new(Inner {
            recorder,
            handle,
            train_steps,
            queue_wait,
            shed_queue_full,
            shed_too_large,
            saves_ok,
            saves_failed,
            save_duration,
            unsaved,
            expired,
        })))
    }

    /// Records nothing.
    pub fn disabled() -> Self {
        Metrics(None)
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// One finished Trainer call. `method` comes from a fixed list (the service's methods
    /// or "unknown"), so a client cannot grow the label set.
    pub fn request(&self, method: &'static str, code: &'static str, elapsed: Duration) {
        let Some(m) = &self.0 else { return };
        metrics::with_local_recorder(&m.recorder, || {
            metrics::counter!(REQUESTS, "method" => method, "code" => code).increment(1);
            metrics::histogram!(REQUEST_DURATION, "method" => method).record(elapsed);
        });
    }

    pub fn train_step(&self) {
        if let Some(m) = &self.0 {
            m.train_steps.increment(1);
        }
    }

    pub fn queue_wait(&self, waited: Duration) {
        if let Some(m) = &self.0 {
            m.queue_wait.record(waited);
        }
    }

    /// One session file written (or not) to the state directory.
    pub fn state_save(&self, ok: bool, took: Duration) {
        if let Some(m) = &self.0 {
            if ok {
                m.saves_ok.increment(1);
            } else {
                m.saves_failed.increment(1);
            }
            m.save_duration.record(took);
        }
    }

    /// How many sessions are unsaved (their last save failed) now.
    pub fn unsaved_sessions(&self, n: usize) {
        if let Some(m) = &self.0 {
            m.unsaved.set(n as f64);
        }
    }

    /// A queued job skipped because its caller had gone.
    pub fn expired(&self) {
        if let Some(m) = &self.0 {
            m.expired.increment(1);
        }
    }

    pub fn shed(&self, why: Shed) {
        if let Some(m) = &self.0 {
            match why {
                Shed::QueueFull => m.shed_queue_full.increment(1),
                Shed::MessageTooLarge => m.shed_too_large.increment(1),
            }
        }
    }

    /// The exposition text, after setting the gauges to `now`.
    pub fn render(&self, now: Gauges) -> String {
        let Some(m) = &self.0 else {
            return String::new();
        };
        metrics::with_local_recorder(&m.recorder, || {
            metrics::gauge!(SESSIONS).set(now.sessions as f64);
            metrics::gauge!(PARAMETERS).set(now.parameters as f64);
            metrics::gauge!(QUEUE_DEPTH).set(now.queue_depth as f64);
            metrics::gauge!(MEMORY_SESSIONS).set(now.memory_sessions as f64);
            metrics::gauge!(MEMORY_RESERVED).set(now.memory_reserved as f64);
            if let Some(budget) = now.memory_budget {
                metrics::gauge!(MEMORY_BUDGET).set(budget as f64);
            }
            if let Some(bytes) = resident_memory_bytes() {
                metrics::gauge!(RESIDENT_MEMORY).set(bytes as f64);
            }
        });
        m.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. The recorder keeps samples
    /// until then, so a server that is never scraped must still run this now and then.
    pub fn upkeep(&self) {
        if let Some(m) = &self.0 {
            m.handle.run_upkeep();
        }
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Trainer calls by method and gRPC status code");
    describe_histogram!(
        REQUEST_DURATION,
        "Seconds from a Trainer call's arrival to its status, by method"
    );
    describe_counter!(
        TRAIN_STEPS,
        "Optimizer steps taken (TrainStep and ApplyGradients answered OK)"
    );
    describe_counter!(
        SHED,
        "Calls refused to protect the server, by reason (queue_full, message_too_large)"
    );
    describe_histogram!(QUEUE_WAIT, "Seconds a job waited for a compute thread");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting for a compute thread");
    describe_gauge!(SESSIONS, "Live sessions");
    describe_gauge!(PARAMETERS, "Parameters held by all live sessions");
    describe_gauge!(
        MEMORY_SESSIONS,
        "Bytes the live sessions hold (parameters and optimizer state)"
    );
    describe_gauge!(
        MEMORY_RESERVED,
        "Bytes calls in flight hold against the memory budget (estimated peaks, uploads)"
    );
    describe_gauge!(MEMORY_BUDGET, "The memory budget in bytes");
    describe_gauge!(RESIDENT_MEMORY, "Resident memory of the process, in bytes");
    describe_counter!(
        STATE_SAVES,
        "Session files written to the state directory, by outcome"
    );
    describe_gauge!(
        UNSAVED_SESSIONS,
        "Sessions whose last save to the state directory failed (they refuse changes)"
    );
    describe_histogram!(
        STATE_SAVE_DURATION,
        "Seconds one session save took (encode, write, fsync, rename)"
    );
    describe_counter!(
        EXPIRED,
        "Queued jobs skipped because their caller had gone (deadline passed or cancelled)"
    );
}

/// Resident set size: the second field of /proc/self/statm, in pages. `None` off Linux.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new();
        m.request("Forward", "OK", Duration::from_millis(2));
        m.request("Forward", "OK", Duration::from_millis(3));
        m.request("Forward", "NOT_FOUND", Duration::from_millis(1));
        m.train_step();
        m.shed(Shed::QueueFull);
        let text = m.render(Gauges {
            sessions: 3,
            parameters: 1234,
            queue_depth: 0,
            memory_sessions: 4936,
            memory_reserved: 77,
            memory_budget: Some(1 << 20),
        });
        for line in [
            r#"backprop_requests_total{method="Forward",code="OK"} 2"#,
            r#"backprop_requests_total{method="Forward",code="NOT_FOUND"} 1"#,
            r#"backprop_request_duration_seconds_count{method="Forward"} 3"#,
            "backprop_train_steps_total 1",
            r#"backprop_shed_requests_total{reason="queue_full"} 1"#,
            r#"backprop_shed_requests_total{reason="message_too_large"} 0"#,
            "backprop_sessions 3",
            "backprop_parameters 1234",
            "backprop_compute_queue_depth 0",
            "backprop_memory_sessions_bytes 4936",
            "backprop_memory_reserved_bytes 77",
            "backprop_memory_budget_bytes 1048576",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        assert!(text.contains("# TYPE backprop_request_duration_seconds histogram"));
        if cfg!(target_os = "linux") {
            let rss = text
                .lines()
                .find_map(|l| l.strip_prefix("backprop_process_resident_memory_bytes "))
                .expect("resident memory");
            assert!(rss.parse::<f64>().unwrap() > 1e6, "{rss}");
        }
    }

    #[test]
    fn disabled_records_nothing() {
        let m = Metrics::disabled();
        m.request("Forward", "OK", Duration::ZERO);
        assert_eq!(m.render(Gauges::default()), "");
    }
}
