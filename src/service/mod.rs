//! The gRPC face: the `backprop.v1.Trainer` implementation (a thin layer over the model
//! and session modules), admission by cost (`limits`), wire conversion, the one place
//! errors become statuses (`status`, with the machine-readable reasons in `reason`),
//! bearer-token authentication (which tenant a call is), routing across replicas
//! (`route`),
//! checkpoint streaming, and the health entry that follows the state directory.
pub mod auth;
pub mod checkpoint;
pub mod convert;
pub mod health;
pub mod limits;
pub mod reason;
pub mod route;
pub mod rpc;
pub mod status;

pub use limits::RequestLimits;
pub use rpc::TrainerService;
