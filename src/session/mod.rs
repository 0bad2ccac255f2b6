//! Where models live between calls, apart from any transport: the session store (one lock
//! per session, limits, idle reaping), session ids, the tenants that own sessions, the
//! compute pool that runs the math off the async runtime, and the state directory that
//! keeps sessions across restarts; the memory reservations and queue places of calls in
//! flight (`budget`); a page of a tenant's sessions in id order (`page`); the datasets
//! fits train on (`datasets`); what happened to each model, step by step (`history`);
//! the names and labels people give models (`about`; changed by `relabel`), and how
//! both travel in checkpoints (`record`).
pub mod about;
pub mod budget;
pub mod datasets;
pub mod history;
pub mod id;
pub mod page;
pub mod persist;
pub mod pool;
pub mod record;
mod relabel;
pub mod store;
pub mod tenant;

pub use about::{About, AboutChange, AboutError};
pub use budget::{Reservation, UntilSent, UploadHold, WaitPlace};
pub use datasets::StoredDataset;
pub use id::{Replica, SessionId};
pub use page::{Page, page};
pub use persist::{PersistConfig, Persister};
pub use pool::{ComputePool, PoolError, run_caught};
pub use record::Record;
pub use store::{Limits, Session, SessionGuard, SessionStore, StoreError};
pub use tenant::Tenant;
