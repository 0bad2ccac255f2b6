//! The checkpoint chunk format both sides speak: ExportModel's answer and ImportModel's
//! upload are one encoded file cut into `CheckpointChunk`s, the first carrying the file's
//! size and SHA-256 so the receiver can tell a complete file from a truncated or
//! corrupted one. The server's receiving side (limits, stalls, the memory budget) is
//! `service::checkpoint`; the CLI uploads and checks downloads with what is here.
use prost::bytes::Bytes;
use sha2::{Digest, Sha256};

use super::CheckpointChunk;

/// Chunk size when the caller does not choose one.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lowercase hex (a digest as the wire writes it).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An encoded checkpoint on its way out: one buffer, which every chunk slices (a
/// reference count, no copy), and its SHA-256 for the first chunk.
pub struct Outgoing {
    file: Bytes,
    sha256: String,
}

impl Outgoing {
    /// Hashes the file: work in proportion to its size, so a server calls this off the
    /// async runtime.
    pub fn new(file: Vec<u8>) -> Self {
        let sha256 = sha256_hex(&file);
        Outgoing {
            file: Bytes::from(file),
            sha256,
        }
    }

    /// The file in chunks of at most `chunk` bytes, each made only when asked for (the
    /// first carries the size and checksum). Held by a stream, the buffer lives as long
    /// as the stream does; a receiver that hangs up drops both.
    pub fn chunks(self, chunk: usize) -> impl Iterator<Item = CheckpointChunk> + Send {
        let Outgoing { file, sha256 } = self;
        let total = file.len();
        let mut sha256 = Some(sha256);
        (0..total.max(1))
            .step_by(chunk.max(1))
            .map(move |offset| CheckpointChunk {
                data: file.slice(offset..(offset + chunk).min(total)),
                offset: offset as u64,
                total_bytes: total as u64,
                sha256: sha256.take().unwrap_or_default(),
            })
    }
}

/// The file cut into chunks of at most `chunk` bytes, as `backprop import` uploads it.
pub fn split(file: Vec<u8>, chunk: usize) -> impl Iterator<Item = CheckpointChunk> + Send {
    Outgoing::new(file).chunks(chunk)
}
