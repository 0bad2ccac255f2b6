//! The server's side of the checkpoint chunk format ([`crate::pb::chunks`]): the chunk
//! size an export uses, its answer stream, and the receiving of an upload (contiguous,
//! exactly the declared size within the server's limit, its SHA-256 checked, held
//! against the memory budget as it grows, cut off when it stalls).
use std::pin::Pin;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Status, Streaming};

use super::status::{Reason, Refusal, invalid};
use crate::pb;
use crate::pb::chunks::{DEFAULT_CHUNK_BYTES, Outgoing, sha256_hex};

/// The smallest chunk ExportModel sends (unless the message limit is smaller): a smaller
/// `chunk_bytes` is raised to it. Every chunk costs a message of framing and bookkeeping
/// on the way out, so tiny chunks would multiply a file's size in memory and time.
pub const MIN_CHUNK_BYTES: usize = 64 * 1024;
/// Memory an upload's buffer takes at once when it first grows (less for a smaller file).
/// Small, so a stream that sends one byte and stalls holds little: growth doubles
/// from here with what arrives.
const FIRST_BUFFER: usize = 64 * 1024;
/// Room left in a message for the chunk's other fields and framing.
const CHUNK_OVERHEAD: usize = 1024;

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CheckpointChunk, Status>> + Send>>;

/// The chunk size to use: the caller's (raised to [`MIN_CHUNK_BYTES`], and refused if it
/// does not fit in a message) or the default.
pub fn chunk_size(requested: u32, max_message_bytes: usize) -> Result<usize, Status> {
    let most = max_message_bytes.saturating_sub(CHUNK_OVERHEAD).max(1);
    match requested as usize {
        0 => Ok(DEFAULT_CHUNK_BYTES.min(most)),
        n if n <= most => Ok(n.max(MIN_CHUNK_BYTES).min(most)),
        n => Err(invalid(
            "chunk_bytes",
            format!("{n} does not fit in a message; at most {most}"),
        )),
    }
}

/// The file as ExportModel's answer stream: chunks are sliced one by one as the
/// transport takes them (it polls only when it can send), so the memory an export costs
/// is the one encoded file, whatever the chunk size.
pub fn stream(file: Outgoing, chunk: usize) -> ChunkStream {
    Box::pin(tokio_stream::iter(file.chunks(chunk).map(Ok)))
}

/// Receives a whole upload: checks that chunks are contiguous, that the file is exactly
/// the declared size (at most `max_bytes`, else RESOURCE_EXHAUSTED before anything is
/// buffered) and that its SHA-256 matches. Any failure (including the client cancelling)
/// returns before anything is created.
///
/// `hold(n)` is called before the buffer grows by `n` bytes, so what an upload holds
/// counts against the memory budget while the rest of it arrives (many slow uploads
/// cannot add up past the budget); its error ends the upload. An upload whose next chunk
/// takes longer than `stall` is cut off with DEADLINE_EXCEEDED, so a stalled client
/// cannot keep what it holds for as long as its own deadline allows.
pub async fn receive(
    mut stream: Streaming<pb::CheckpointChunk>,
    (max_bytes, max_flag): (u64, &str),
    stall: Duration,
    mut hold: impl FnMut(u64) -> Result<(), Status>,
) -> Result<Vec<u8>, Status> {
    let first = next_chunk(&mut stream, stall, "0 bytes")
        .await?
        .ok_or_else(|| invalid("chunks", "the upload is empty: no chunk arrived"))?;
    let total = first.total_bytes;
    if total == 0 {
        return Err(invalid(
            "total_bytes",
            "required in the first chunk (the size of the whole file)",
        ));
    }
    if total > max_bytes {
        return Err(Refusal::new(
            Reason::CheckpointSize,
            format!(
                "total_bytes: a {total}-byte checkpoint is larger than this server accepts \
                 ({max_bytes} bytes, from its parameter and memory limits)"
            ),
        )
        .limit(
            max_flag,
            format!("a {total}-byte checkpoint, more than the {max_bytes} bytes accepted"),
        )
        .into());
    }
    let declared = first.sha256.to_ascii_lowercase();
    if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            "sha256",
            "required in the first chunk: the file's SHA-256 as 64 hex digits",
        ));
    }
    // Grown as data arrives, not reserved at the declared size: a tiny message claiming
    // a gigabyte must not cost a gigabyte.
    let mut file = Vec::new();
    let mut next = Some(first);
    while let Some(chunk) = next {
        if chunk.offset != file.len() as u64 {
            return Err(invalid(
                "offset",
                format!(
                    "chunk at offset {} but {} bytes have arrived; chunks must come in order without gaps",
                    chunk.offset,
                    file.len()
                ),
            ));
        }
        if chunk.total_bytes != 0 && chunk.total_bytes != total {
            return Err(invalid(
                "total_bytes",
                format!(
                    "{} differs from the first chunk's {total}",
                    chunk.total_bytes
                ),
            ));
        }
        if file.len() as u64 + chunk.data.len() as u64 > total {
            return Err(invalid(
                "data",
                format!("more bytes than the {total} declared in total_bytes"),
            ));
        }
        grow(&mut file, chunk.data.len(), total as usize, &mut hold)?;
        file.extend_from_slice(&chunk.data);
        next = next_chunk(&mut stream, stall, format!("{} bytes", file.len())).await?;
    }
    if (file.len() as u64) < total {
        return Err(invalid(
            "chunks",
            format!(
                "the upload is truncated: {} of {total} bytes arrived",
                file.len()
            ),
        ));
    }
    let got = sha256_hex(&file);
    if got != declared {
        return Err(invalid(
            "sha256",
            format!(
                "the file is corrupted: its SHA-256 is {got}, the first chunk declared {declared}"
            ),
        ));
    }
    Ok(file)
}

/// The upload's next chunk, or DEADLINE_EXCEEDED when none comes within `stall`
/// (`arrived` says how much has arrived, for the message: "1024 bytes", "20 rows").
pub async fn next_chunk<T>(
    stream: &mut Streaming<T>,
    stall: Duration,
    arrived: impl std::fmt::Display,
) -> Result<Option<T>, Status> {
    match tokio::time::timeout(stall, stream.message()).await {
        Ok(chunk) => chunk,
        Err(_) => Err(Refusal::new(
            Reason::UploadStalled,
            format!(
                "the upload stalled: no chunk for {:.1} s after {arrived} \
                 (--upload-stall-secs); it is cut off and what it held is freed",
                stall.as_secs_f64()
            ),
        )
        .into()),
    }
}

/// Makes room in `file` for `more` bytes of a `total`-byte upload, doubling (never past
/// `total`) so the copies stay few, and holds each increase of capacity first.
fn grow(
    file: &mut Vec<u8>,
    more: usize,
    total: usize,
    hold: &mut impl FnMut(u64) -> Result<(), Status>,
) -> Result<(), Status> {
    let need = file.len() + more;
    if need <= file.capacity() {
        return Ok(());
    }
    let capacity = need.max(file.capacity() * 2).max(FIRST_BUFFER).min(total);
    hold((capacity - file.capacity()) as u64)?;
    file.reserve_exact(capacity - file.len());
    Ok(())
}
