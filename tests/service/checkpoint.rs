//! ExportModel / ImportModel end to end: a model exported at step k and imported trains on
//! bit-identically with the original; models bigger than the message limit stream in
//! chunks; a truncated, reordered, oversized or corrupted upload (or one with a negative
//! second moment) is refused with a clear error and creates nothing.

use backprop::pb;
use backprop::pb::chunks::sha256_hex;
use backprop::service::checkpoint::MIN_CHUNK_BYTES;
use prost::bytes::Bytes;
use support::*;
use tokio_stream::StreamExt;
use tonic::Code;

fn spec(optimizer: pb::OptimizerKind, dtype: pb::Dtype) -> pb::ModelSpec {
    pb::ModelSpec {
        optimizer: Some(pb::Optimizer {
            kind: optimizer as i32,
            ..Default::default()
        }),
        dtype: dtype as i32,
        l2: 1e-3,
        loss: pb::LossKind::Softmax as i32,
        init: seeded(7),
        ..wire_spec(6, &[layer(9, pb::Activation::Relu), maxout(5, 2)], 4)
    }
}

async fn train(c: &mut Client, id: &str, steps: u64, seed: u64) -> u64 {
    let mut step = 0;
    for s in 0..steps {
        let b = Batch::random(10, 6, 4, seed + s);
        step = c
            .train_step(pb::TrainStepRequest {
                model_id: id.into(),
                x: Some(b.tensor::<f64>()),
                labels: b.labels.clone(),
                learning_rate: None,
            })
            .await
            .expect("TrainStep")
            .into_inner()
            .step;
    }
    step
}

/// The whole file, reassembled from the stream, with the declared size and checksum.
async fn export(c: &mut Client, id: &str, chunk_bytes: u32) -> (Vec<u8>, Vec<pb::CheckpointChunk>) {
    let chunks: Vec<pb::CheckpointChunk> = c
        .export_model(pb::ExportModelRequest {
            model_id: id.into(),
            chunk_bytes,
        })
        .await
        .expect("ExportModel")
        .into_inner()
        .map(|c| c.expect("chunk"))
        .collect()
        .await;
    let file: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
    assert_eq!(chunks[0].total_bytes, file.len() as u64);
    assert_eq!(chunks[0].sha256, sha256_hex(&file));
    (file, chunks)
}

fn upload(file: &[u8], chunk: usize) -> Vec<pb::CheckpointChunk> {
    file.chunks(chunk)
        .enumerate()
        .map(|(i, d)| pb::CheckpointChunk {
            data: Bytes::copy_from_slice(d),
            offset: (i * chunk) as u64,
            total_bytes: file.len() as u64,
            sha256: if i == 0 {
                sha256_hex(file)
            } else {
                String::new()
            },
        })
        .collect()
}

async fn import(
    c: &mut Client,
    chunks: Vec<pb::CheckpointChunk>,
) -> Result<pb::ImportModelResponse, tonic::Status> {
    c.import_model(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

/// Values and state as the server reports them, for exact comparison.
async fn snapshot(c: &mut Client, id: &str) -> (u64, Vec<(String, Vec<u32>, Vec<u64>)>) {
    let m = get_values(c, id).await;
    let params = m
        .parameters
        .into_iter()
        .map(|p| {
            let t = p.value.expect("values");
            let bits = if t.values_f64.is_empty() {
                t.values.iter().map(|v| u64::from(v.to_bits())).collect()
            } else {
                t.values_f64.iter().map(|v| v.to_bits()).collect()
            };
            (p.name, t.shape, bits)
        })
        .collect();
    (m.step, params)
}

#[tokio::test]
async fn an_imported_model_trains_on_bit_identically() {
    let server = TestServer::start().await;
    let mut c = server.trainer();
    for (opt, dtype) in [
        (pb::OptimizerKind::Adam, pb::Dtype::F32),
        (pb::OptimizerKind::Momentum, pb::Dtype::F64),
        (pb::OptimizerKind::Rmsprop, pb::Dtype::F32),
        (pb::OptimizerKind::Sgd, pb::Dtype::F64),
    ] {
        let (id, created) = create(&mut c, spec(opt, dtype)).await;
        assert_eq!(train(&mut c, &id, 5, 100).await, 5);
        // 700 bytes is below the floor: raised to 64 KiB, one chunk for this small file.
        let (file, chunks) = export(&mut c, &id, 700).await;
        assert!(file.len() < MIN_CHUNK_BYTES);
        assert_eq!(chunks.len(), 1, "{opt:?}: {} bytes", file.len());

        let imported = import(&mut c, upload(&file, 1000))
            .await
            .expect("ImportModel");
        assert_ne!(imported.model_id, id);
        assert_eq!(imported.step, 5);
        assert_eq!(imported.parameter_count, created.parameter_count);
        assert_eq!(
            imported.spec, created.spec,
            "{opt:?}: the spec comes back whole"
        );
        assert_eq!(
            snapshot(&mut c, &id).await,
            snapshot(&mut c, &imported.model_id).await
        );

        // The same further steps on both: identical to the last bit (Adam's m, v and t,
        // momentum's velocity and RMSProp's cache came along).
        assert_eq!(train(&mut c, &id, 6, 500).await, 11);
        assert_eq!(train(&mut c, &imported.model_id, 6, 500).await, 11);
        let (a, b) = (
            snapshot(&mut c, &id).await,
            snapshot(&mut c, &imported.model_id).await,
        );
        assert_eq!(a, b, "{opt:?}/{dtype:?}: after 6 more steps");
        // An export of either is now the same model, and the same file but for the
        // history's time stamps (the same steps, taken at other moments).
        let (fa, fb) = (
            export(&mut c, &id, 0).await.0,
            export(&mut c, &imported.model_id, 0).await.0,
        );
        let (da, db) = (
            backprop::checkpoint::decode(&fa).unwrap(),
            backprop::checkpoint::decode(&fb).unwrap(),
        );
        assert_eq!(da.model, db.model, "{opt:?}/{dtype:?}: the exported models");
        let steps = |d: &backprop::checkpoint::Decoded| {
            let h = backprop::session::history::History::from_json(&d.extra["history"]).unwrap();
            h.steps()
                .iter()
                .map(|p| (p.step, p.data_loss.map(f64::to_bits)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            steps(&da),
            steps(&db),
            "the same steps with the same losses"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn models_larger_than_the_message_limit_stream_in_chunks() {
    let server = TestServer::with_config(backprop::server::Config {
        max_message_bytes: 64 * 1024,
        ..test_config()
    })
    .await;
    let mut c = server.trainer();
    // 200·300 + 300·10 weights in f64 (~500 KB, plus Adam's m and v: ~1.5 MB).
    let (id, _) = create(
        &mut c,
        pb::ModelSpec {
            dtype: pb::Dtype::F64 as i32,
            optimizer: Some(pb::Optimizer {
                kind: pb::OptimizerKind::Adam as i32,
                ..Default::default()
            }),
            ..wire_spec(200, &[layer(300, pb::Activation::Tanh)], 10)
        },
    )
    .await;
    // GetModel with values no longer fits in one message.
    let too_big = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    // Refused before the work (admission by cost), with the limit and the way out.
    assert_eq!(too_big.code(), Code::InvalidArgument, "{too_big:?}");
    assert!(
        too_big.message().contains("65536") && too_big.message().contains("ExportModel"),
        "{too_big:?}"
    );
    let (file, chunks) = export(&mut c, &id, 0).await;
    assert!(file.len() > 1_400_000, "{} bytes", file.len());
    assert!(chunks.iter().all(|c| c.data.len() <= 63 * 1024));
    let imported = import(&mut c, upload(&file, 60 * 1024))
        .await
        .expect("ImportModel");
    assert_eq!(export(&mut c, &imported.model_id, 0).await.0, file);
    // A chunk size that cannot fit in a message is refused.
    let e = c
        .export_model(pb::ExportModelRequest {
            model_id: id.clone(),
            chunk_bytes: 64 * 1024,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("chunk_bytes: 65536 does not fit"),
        "{}",
        e.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_uploads_are_refused_and_create_nothing() {
    let server = TestServer::with_config(backprop::server::Config {
        limits: backprop::session::Limits {
            max_parameters: 100_000,
            ..Default::default()
        },
        ..test_config()
    })
    .await;
    let mut c = server.trainer();
    let (id, _) = create(&mut c, spec(pb::OptimizerKind::Adam, pb::Dtype::F64)).await;
    train(&mut c, &id, 2, 1).await;
    let (file, _) = export(&mut c, &id, 0).await;
    let good = upload(&file, 512);
    assert!(good.len() > 4);

    let mut cases: Vec<(&str, Vec<pb::CheckpointChunk>, Code, &str)> = vec![];
    cases.push((
        "empty",
        vec![],
        Code::InvalidArgument,
        "chunks: the upload is empty",
    ));
    let mut truncated = good.clone();
    truncated.pop();
    cases.push((
        "truncated",
        truncated,
        Code::InvalidArgument,
        "chunks: the upload is truncated",
    ));
    let mut gap = good.clone();
    gap.remove(2);
    cases.push((
        "a missing middle chunk",
        gap,
        Code::InvalidArgument,
        "offset: chunk at offset 1536 but 1024 bytes have arrived",
    ));
    let mut swapped = good.clone();
    swapped.swap(1, 2);
    cases.push(("out of order", swapped, Code::InvalidArgument, "offset:"));
    let mut flipped = good.clone();
    let mut d = flipped[3].data.to_vec();
    d[10] ^= 1;
    flipped[3].data = d.into();
    cases.push((
        "one flipped bit",
        flipped,
        Code::InvalidArgument,
        "sha256: the file is corrupted",
    ));
    let mut no_sum = good.clone();
    no_sum[0].sha256.clear();
    cases.push((
        "no checksum",
        no_sum,
        Code::InvalidArgument,
        "sha256: required in the first chunk",
    ));
    let mut no_total = good.clone();
    no_total[0].total_bytes = 0;
    cases.push((
        "no size",
        no_total,
        Code::InvalidArgument,
        "total_bytes: required",
    ));
    let mut huge = good.clone();
    huge[0].total_bytes = 1 << 40;
    cases.push((
        "an absurd size",
        huge,
        Code::ResourceExhausted,
        "total_bytes: a 1099511627776-byte checkpoint is larger than this server accepts",
    ));
    let mut extra = good.clone();
    let last = extra.last().unwrap().clone();
    extra.push(pb::CheckpointChunk {
        offset: file.len() as u64,
        data: Bytes::from_static(b"more"),
        ..last
    });
    cases.push((
        "bytes beyond the size",
        extra,
        Code::InvalidArgument,
        "data: more bytes than the",
    ));
    // A consistent checksum over damaged content: the checkpoint itself is refused.
    let mut damaged = file.clone();
    let n = damaged.len();
    damaged[n - 3..].copy_from_slice(&[0xff, 0xff, 0xff]); // the end of an f64 → NaN
    cases.push((
        "NaN inside, checksum recomputed",
        upload(&damaged, 512),
        Code::InvalidArgument,
        "is not finite",
    ));
    // A negative second moment (Adam's v is an average of squares), checksum recomputed.
    let mut negative = file.clone();
    let (n, header) = safetensors::SafeTensors::read_metadata(&file).expect("header");
    let (start, _) = header
        .info("layers.0.weight.adam_v")
        .expect("adam_v")
        .data_offsets;
    let at = 8 + n + start + 3 * 8;
    negative[at..at + 8].copy_from_slice(&(-1.0f64).to_le_bytes());
    cases.push((
        "a negative adam_v",
        upload(&negative, 512),
        Code::InvalidArgument,
        "layers.0.weight.adam_v: value at flat index 3 is negative (-1); this slot is a \
         running average of squared gradients",
    ));
    cases.push((
        "not a safetensors file",
        upload(b"hello, this is not a checkpoint", 8),
        Code::InvalidArgument,
        "checkpoint: not a safetensors file",
    ));

    for (what, chunks, code, want) in cases {
        let e = import(&mut c, chunks).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(
            e.message().contains(want),
            "{what}: {:?} lacks {want:?}",
            e.message()
        );
    }
    let models = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(models.len(), 1, "only the original exists");

    // Over the server's parameter limit: refused like CreateModel would be.
    let big_server = TestServer::with_config(backprop::server::Config {
        limits: backprop::session::Limits {
            max_parameters: 50,
            ..Default::default()
        },
        ..test_config()
    })
    .await;
    let e = import(&mut big_server.trainer(), upload(&file, 4096))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());

    let e = c
        .export_model(pb::ExportModelRequest {
            model_id: "0123456789abcdef0123456789abcdef".into(),
            chunk_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}
