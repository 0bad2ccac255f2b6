//! backprop: neural-network training as a gRPC service (CS231n lecture 4, as a server).
//!
//! The server side, from the math up:
//! - [`engine`]: the math: a computational graph with gates, losses, gradient checks.
//! - [`model`]: specs, nets of named parameters, optimizers, models of either dtype.
//! - [`checkpoint`]: a model's whole state as one safetensors file (export, import, disk).
//! - [`session`]: the session store (a lock per session), ids, the compute pool and the
//!   state directory.
//! - [`service`]: the `backprop.v1.Trainer` gRPC implementation, a thin layer over those:
//!   one file per group of RPCs in `service::rpc`, admission by cost in `service::limits`.
//! - [`server`]: `run(listener, config, shutdown)` with health and reflection beside it.
//! - [`malloc`]: allocator settings that keep step buffers in the process.
//! - [`metrics`]: a server's own Prometheus recorder: calls, steps, queue, shed, memory.
//!
//! Shared by both sides:
//! - [`pb`]: the `backprop.v1` wire types (generated, but the hand-written `Tensor`), the
//!   codec that encodes each message into a buffer of exactly its size, and the
//!   conversions both ends need (arrays, checkpoint chunks, traces).
//!
//! The client side (a third of the crate; it uses `pb`, `model`, `engine` and
//! `checkpoint` types but nothing of `service` or `session`):
//! - [`cli`]: the `backprop` subcommands for people (train on a CSV, models, describe,
//!   health, checkpoints), the graph renderers and the load generator.
pub mod checkpoint;
pub mod cli;
pub mod dataset;
pub mod engine;
pub mod fit;
pub mod malloc;
pub mod metrics;
pub mod model;
pub mod pb;
pub mod server;
pub mod service;
pub mod session;
