//! ExportModel streams lazily: with `chunk_bytes = 1` (raised to the 64 KiB floor) on a
//! model of several MB, the real server's peak memory grows by a small multiple of the
//! file, not by tens of bytes per byte of it, and the chunks reassemble to exactly the
//! file a default export sends, checksum included.

use backprop::pb;
use backprop::pb::chunks::sha256_hex;
use backprop::service::checkpoint::MIN_CHUNK_BYTES;
use support::process::{Binary, scratch};
use tokio_stream::StreamExt;

/// 1024 → 1024 → 10 with Adam in f32: about 1.06 M parameters, a 12.7 MB checkpoint.
fn big_spec() -> pb::ModelSpec {
    pb::ModelSpec {
        input_dim: 1024,
        hidden: vec![pb::HiddenLayer {
            units: 1024,
            activation: pb::Activation::Relu as i32,
            ..Default::default()
        }],
        num_classes: 10,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn export(
    c: &mut pb::trainer_client::TrainerClient<tonic::transport::Channel>,
    id: &str,
    chunk_bytes: u32,
) -> Vec<pb::CheckpointChunk> {
    c.export_model(pb::ExportModelRequest {
        model_id: id.into(),
        chunk_bytes,
    })
    .await
    .expect("ExportModel")
    .into_inner()
    .map(|c| c.expect("chunk"))
    .collect()
    .await
}

#[tokio::test]
async fn a_one_byte_chunk_export_costs_about_the_file_not_seventy_times_it() {
    let dir = scratch("export-stream");
    let mut server = Binary::start(&dir, &[]).await;
    let id = server
        .client
        .create_model(pb::CreateModelRequest {
            spec: Some(big_spec()),
            ..Default::default()
        })
        .await
        .expect("CreateModel")
        .into_inner()
        .model_id;
    // One export first, so the allocator has seen one encode; the peak before the tiny-
    // chunk export then includes everything a default export costs.
    let reference = export(&mut server.client, &id, 0).await;
    let file: Vec<u8> = reference
        .iter()
        .flat_map(|c| c.data.iter().copied())
        .collect();
    assert!(file.len() > 12_000_000, "{} bytes", file.len());
    let peak_before = server.status_kib("VmHWM");

    let chunks = export(&mut server.client, &id, 1).await;
    // A second one: nothing held over from the first accumulates.
    assert_eq!(export(&mut server.client, &id, 1).await.len(), chunks.len());
    let peak_after = server.status_kib("VmHWM");
    let rss_after = server.status_kib("VmRSS");

    // The floor: every chunk but the last is 64 KiB, offsets contiguous.
    assert_eq!(chunks.len(), file.len().div_ceil(MIN_CHUNK_BYTES));
    let mut offset = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.offset, offset, "chunk {i}");
        if i + 1 < chunks.len() {
            assert_eq!(c.data.len(), MIN_CHUNK_BYTES, "chunk {i}");
        }
        offset += c.data.len() as u64;
    }
    let got: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
    assert_eq!(got, file, "the chunks do not reassemble to the file");
    assert_eq!(chunks[0].total_bytes, file.len() as u64);
    assert_eq!(chunks[0].sha256, sha256_hex(&file));
    assert!(chunks[1..].iter().all(|c| c.sha256.is_empty()));

    // Building every 1-byte chunk up front cost ~72 bytes per byte (900 MB here); a lazy
    // stream costs the encoded file and the encoder's scratch (about twice the file),
    // which the allocator may place afresh (another compute thread's arena) each time.
    let grew = (peak_after.saturating_sub(peak_before)) * 1024;
    let file_mb = file.len() as u64;
    eprintln!(
        "file {file_mb} bytes, {} chunks; VmHWM {peak_before} -> {peak_after} KiB",
        chunks.len()
    );
    assert!(
        grew < 3 * file_mb,
        "peak memory grew by {grew} bytes for a {file_mb}-byte export (VmHWM {peak_before} → {peak_after} KiB, VmRSS now {rss_after} KiB)"
    );
    assert!(
        peak_after * 1024 < 12 * file_mb,
        "peak memory {peak_after} KiB for a {file_mb}-byte model"
    );
    assert_eq!(server.terminate().await, Some(0));
}
