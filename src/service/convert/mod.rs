//! Wire ↔ engine conversion on the server: specs ([`spec`], with the optimizer's fields
//! in [`optimizer`]) and tensors decoded strictly ([`tensor`]). Encoding an array for an
//! answer is [`crate::pb::array`], which the clients share.
pub mod optimizer;
pub mod spec;
pub mod tensor;

pub use spec::{spec_from_proto, spec_to_proto};
pub use tensor::{check_tensor, labels, matrix, tensor_values};
