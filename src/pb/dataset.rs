//! The dataset upload format both sides speak (see `DatasetChunk` in the proto): whole
//! rows little-endian in their dtype, one label per row, the first chunk carrying the
//! header with the SHA-256 of all the rows' bytes followed by all the labels' bytes.
//! The server's strict decoding is `crate::dataset::build`; clients cut an upload here.
use prost::bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{DatasetChunk, DatasetHeader, Dtype};

/// Rows to upload, row-major, in the dtype the dataset keeps.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Rows<'_> {
    fn le_bytes(&self) -> Vec<u8> {
        match self {
            Rows::F32(v) => v.iter().flat_map(|a| a.to_le_bytes()).collect(),
            Rows::F64(v) => v.iter().flat_map(|a| a.to_le_bytes()).collect(),
        }
    }

    fn dtype(&self) -> Dtype {
        match self {
            Rows::F32(_) => Dtype::F32,
            Rows::F64(_) => Dtype::F64,
        }
    }
}

/// Chunk size when the caller does not choose one: large enough that framing is
/// negligible, well under the default message limit.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// The declared checksum: SHA-256 (lowercase hex) of `x` (the rows' bytes) then the
/// labels as 4-byte little-endian integers.
pub fn sha256_hex(x: &[u8], labels: &[u32]) -> String {
    let mut h = DatasetHash::default();
    h.rows(x);
    h.finish(labels)
}

/// The declared checksum computed as the rows arrive (the server's side of an upload).
#[derive(Default)]
pub struct DatasetHash(Sha256);

impl DatasetHash {
    /// Adds rows' bytes, in order.
    pub fn rows(&mut self, x: &[u8]) {
        self.0.update(x);
    }

    /// Adds every label, after all the rows, and gives the checksum.
    pub fn finish(mut self, labels: &[u32]) -> String {
        for chunk in labels.chunks(16 * 1024) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|l| l.to_le_bytes()).collect();
            self.0.update(&bytes);
        }
        super::chunks::hex(&self.0.finalize())
    }
}

/// An upload of `rows` (N × `dim` values) and `labels` (N) named `name`, cut into chunks
/// of about `chunk_bytes` of values each (at least one row). The chunks share one buffer.
pub fn upload_chunks(
    rows: Rows<'_>,
    dim: usize,
    labels: &[u32],
    name: &str,
    chunk_bytes: usize,
) -> Vec<DatasetChunk> {
    let x = rows.le_bytes();
    let header = DatasetHeader {
        rows: labels.len() as u64,
        dim: dim as u32,
        dtype: rows.dtype() as i32,
        sha256: sha256_hex(&x, labels),
        name: name.to_string(),
    };
    let row_bytes = (x.len() / labels.len().max(1)).max(1);
    let per_chunk = (chunk_bytes / row_bytes).max(1);
    let x = Bytes::from(x);
    let mut header = Some(header);
    labels
        .chunks(per_chunk)
        .enumerate()
        .map(|(i, l)| {
            let start = i * per_chunk;
            DatasetChunk {
                header: header.take(),
                first_row: start as u64,
                x: x.slice(start * row_bytes..(start + l.len()) * row_bytes),
                labels: l.to_vec(),
            }
        })
        .collect()
}
