//! The compute pool: a fixed set of OS threads that run all model math, fed by a bounded
//! queue. The async runtime's workers only decode, route and encode; they never multiply
//! matrices, so a slow session cannot stall the network side. A full queue is an error
//! returned at once (the caller answers RESOURCE_EXHAUSTED) rather than unbounded waiting.
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError, bounded};
use tokio::sync::oneshot;

use crate::metrics::{Metrics, Shed};

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    #[error("the compute queue is full ({0} jobs waiting); retry later")]
    Busy(usize),
    #[error("the computation panicked: {0}")]
    Panicked(String),
    #[error("the compute pool has shut down")]
    Closed,
}

/// Runs `f` here, a panic caught and returned with its message: the one panic path, for
/// pool workers and for calls small enough to compute where they arrived.
pub fn run_caught<R>(f: impl FnOnce() -> R) -> Result<R, PoolError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        PoolError::Panicked(msg)
    })
}

/// A cheap handle to the pool; the threads end when the last handle is dropped.
#[derive(Clone)]
pub struct ComputePool {
    tx: Sender<Job>,
    capacity: usize,
    queued: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl ComputePool {
    /// `threads` workers (at least 1) and room for `capacity` waiting jobs (at least 1).
    pub fn new(threads: usize, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (tx, rx) = bounded::<Job>(capacity);
        let queued = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let queued = queued.clone();
            thread::Builder::new()
                .name(format!("backprop-compute-{i}"))
                .spawn(move || {
                    for job in rx.iter() {
                        queued.fetch_sub(1, Ordering::Relaxed);
                        job();
                    }
                })?;
        }
        Ok(ComputePool {
            tx,
            capacity,
            queued,
            metrics: Metrics::disabled(),
        })
    }

    /// Records queue waits and full-queue refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Jobs waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Runs `f` on a worker and waits for its result without blocking the async runtime.
    /// A panic inside `f` is caught and returned as an error; the worker lives on.
    ///
    /// If the caller stops waiting before a worker picks the job up (its deadline passed
    /// and the server dropped the call, or the client cancelled), the job is skipped: no
    /// work is done for a call nobody will read, and a TrainStep that timed out in the
    /// queue is not applied.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolError> {
        let (done, result) = oneshot::channel();
        let (metrics, enqueued) = (self.metrics.clone(), Instant::now());
        let job: Job = Box::new(move || {
            metrics.queue_wait(enqueued.elapsed());
            if done.is_closed() {
                metrics.expired();
                tracing::debug!("skipping a job whose caller has gone (deadline or cancel)");
                return;
            }
            let _ = done.send(run_caught(f));
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.metrics.shed(Shed::QueueFull);
                return Err(PoolError::Busy(self.capacity));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(PoolError::Closed);
            }
        }
        result.await.map_err(|_| PoolError::Closed)?
    }
}
