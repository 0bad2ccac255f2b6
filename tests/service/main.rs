//! The service layer end to end: the real server (`backprop::server::run`) on this test's
//! runtime on 127.0.0.1:0, called over TCP by tonic clients: every RPC, errors and
//! refusals and their machine-readable details, admission by cost, concurrency and
//! overload, checkpoints, persistence, tenants, ListModels' pages, metrics, TLS and the
//! traced graph.
mod auth;
mod checkpoint;
mod claims;
mod concurrency;
mod datasets;
mod details;
mod errors;
mod fit;
mod limits;
mod metadata;
mod metrics;
mod ops;
mod overload;
mod paging;
mod persist;
mod preprocessing;
mod raw_tensors;
mod refusals;
mod routing;
mod rpcs;
mod stream;
mod tls;
mod trace;
