//! backprop: neural-network training as a gRPC service (CS231n lecture 4, as a server).
//!
//! - [`engine`]: the math: a computational graph with gates, losses, gradient checks.
//! - [`model`]: specs, nets of named parameters, optimizers, models of either dtype.
//! - [`checkpoint`]: a model's whole state as one safetensors file (export, import, disk).
//! - [`session`]: the session store (a lock per session), ids, and the compute pool.
//! - [`service`]: the `backprop.v1.Trainer` gRPC implementation, a thin layer over those:
//!   one file per group of RPCs in `service::rpc`, admission by cost in `service::limits`.
//! - [`server`]: `run(listener, config, shutdown)` with health and reflection beside it.
//! - [`malloc`]: allocator settings that keep step buffers in the process.
//! - [`metrics`]: a server's own Prometheus recorder: calls, steps, queue, shed, memory.
//! - [`cli`]: the `backprop` client subcommands for people (train on a CSV, models, health).
//! - [`pb`]: the `backprop.v1` wire types (generated, but the hand-written `Tensor`), and
//!   the codec that encodes each message into a buffer of exactly its size.
pub mod checkpoint;
pub mod cli;
pub mod engine;
pub mod malloc;
pub mod metrics;
pub mod model;
pub mod pb;
pub mod server;
pub mod service;
pub mod session;
