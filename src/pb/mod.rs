//! The `backprop.v1` wire contract, generated from `proto/backprop/v1/backprop.proto`,
//! and what both sides of it share, so that a client never imports the server's
//! internals:
//!
//! - [`tensor`]: the `Tensor` message, written by hand to decode a batch in one pass;
//! - [`array`](mod@array): ndarray ↔ `Tensor` without validation (answers out, answers read back);
//! - [`chunks`]: the checkpoint chunk format (size and SHA-256 first, slices after);
//! - [`dataset`](mod@dataset): the dataset upload format (whole rows, the checksum first);
//! - [`trace`]: a traced step ↔ `TraceStepResponse`, both directions;
//! - [`codec`]: the codec of the generated services and clients, which sizes every encode
//!   buffer to its message.
pub mod array;
pub mod chunks;
pub mod codec;
pub mod dataset;
pub mod tensor;
pub mod trace;

tonic::include_proto!("backprop.v1");
pub use tensor::Tensor;

/// Encoded descriptor set, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("backprop_descriptor");
