//! Fit: training on a dataset held by the server, as CS231n's `Solver` does in process,
//! apart from any transport. What a fit does is fixed by its [`Plan`]; which rows each
//! step takes by the [`sampler`] (documented in the proto so a client can reproduce it);
//! the rate of each step by the [`schedule`]; when it stops early by [`early`]. A running
//! fit is a [`job::FitJob`]: its events, kept for watchers, and its cancel switch.
//!
//! The loop itself (a step at a time under the session's lock, on the compute pool) is
//! the service's (`service::rpc::fit`), since each step is admitted like a TrainStep.
pub mod early;
pub mod event;
pub mod job;
pub mod plan;
pub mod sampler;
pub mod schedule;

pub use early::{EarlyStopping, Monitor, Tracker, Verdict};
pub use event::{EndReason, Event, EventKind};
pub use job::FitJob;
pub use plan::{Plan, Validation};
pub use sampler::{Sampler, Sampling};
pub use schedule::Schedule;
