//! Datasets on the wire: an upload's header in, a dataset's description out.
use tonic::Status;

use super::spec::{dtype_from_proto, dtype_to_proto};
use crate::dataset::Header;
use crate::pb;
use crate::session::StoredDataset;

pub fn header_from_proto(h: pb::DatasetHeader) -> Result<Header, Status> {
    Ok(Header {
        rows: h.rows,
        dim: h.dim,
        dtype: dtype_from_proto("header.dtype", h.dtype)?,
        sha256: h.sha256,
        name: h.name,
    })
}

pub fn info_to_proto(d: &StoredDataset) -> pb::DatasetInfo {
    let data = &d.data;
    pb::DatasetInfo {
        dataset_id: d.id.to_string(),
        name: data.name().to_string(),
        rows: data.rows() as u64,
        dim: data.dim() as u32,
        dtype: dtype_to_proto(data.dtype()),
        sha256: data.sha256().to_string(),
        label_classes: data.label_classes(),
        bytes: data.bytes(),
        idle_seconds: d.idle_for().as_secs_f64(),
    }
}
