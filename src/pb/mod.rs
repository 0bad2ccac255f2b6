//! The `backprop.v1` wire contract, generated from `proto/backprop/v1/backprop.proto`,
//! with the pieces written by hand: the `Tensor` message ([`tensor`]) and the codec of
//! the generated services and clients ([`codec`]), which sizes every encode buffer to its
//! message.
pub mod codec;
pub mod tensor;

tonic::include_proto!("backprop.v1");
pub use tensor::Tensor;

/// Encoded descriptor set, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("backprop_descriptor");
