//! Wire ↔ engine conversion on the server: specs ([`spec`], with the optimizer's fields
//! in [`optimizer`]), tensors decoded strictly ([`tensor`]), datasets ([`dataset`]) and a
//! model's metadata and history points ([`about`]). Encoding an array for an answer is
//! [`crate::pb::array`], which the clients share.
pub mod about;
pub mod dataset;
pub mod fit;
pub mod optimizer;
pub mod spec;
pub mod tensor;

pub use spec::{spec_from_proto, spec_to_proto};
pub use tensor::{check_tensor, labels, matrix, tensor_values};

/// A batch's losses as the wire reports them (the total when there is a data loss).
pub fn losses_pb(l: crate::model::Losses) -> crate::pb::Losses {
    crate::pb::Losses {
        data_loss: l.data,
        reg_loss: l.reg,
        total_loss: l.total(),
    }
}
