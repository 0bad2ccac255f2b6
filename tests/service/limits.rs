//! Admission by cost, end to end on the in-process server: a call is sized from the spec
//! and its rows before anything is allocated, and refused with a message that names the
//! limit and how to get under it: INVALID_ARGUMENT when it can never succeed here (over
//! the per-call cap or the message limit), RESOURCE_EXHAUSTED when the memory budget is
//! merely taken now. Calls waiting on one session are bounded; malformed ids and shapes
//! are the client's mistake; a checkpoint header too big for any allowed model is refused
//! before it is parsed.

use std::time::Duration;

use backprop::pb;
use backprop::service::convert::spec_from_proto;
use backprop::service::limits::{Call, estimate};
use backprop::session::Limits;
use prost::Message;
use prost::bytes::Bytes;
use support::*;
use tonic::Code;

/// The `R` of "send at most R rows" in a refusal.
fn rows_advised(message: &str) -> usize {
    let at = message
        .find("send at most ")
        .unwrap_or_else(|| panic!("no advice in {message:?}"));
    message[at + "send at most ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {message:?}"))
}

async fn step_of(c: &mut Client, id: &str) -> u64 {
    get_values(c, id).await.step
}

fn forward(id: &str, b: &Batch) -> pb::ForwardRequest {
    pb::ForwardRequest {
        model_id: id.into(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels.clone(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_tall_thin_batch_is_refused_before_any_work_and_told_how_many_rows_fit() {
    let mut config = test_config();
    config.limits = Limits {
        max_memory: Some(256 << 20),
        ..Limits::default()
    };
    // Below the budget, so a call at the cap also fits beside the sessions.
    config.limits.max_call_memory = Some(128 << 20);
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    // The red team's net: one input, 4096 hidden units. 3,000,000 rows is a 12 MB
    // request within max_batch_elements (and an answer within the message limit), but
    // ~150 GB of activations.
    let (id, _) = create(
        &mut c,
        wire_spec(1, &[layer(4096, pb::Activation::Relu)], 3),
    )
    .await;
    let tall = Batch::random(3_000_000, 1, 3, 1);
    let x = || Some(tall.tensor::<f32>());
    let labels = || tall.labels.clone();
    let never = "so it can never succeed here";
    let e = c.forward(forward(&id, &tall)).await.unwrap_err();
    assert_invalid(&e, "x");
    assert!(e.message().contains(never), "{}", e.message());
    assert!(
        e.message()
            .contains("(134217728 bytes, --max-call-memory or --max-memory)"),
        "names the limit: {}",
        e.message()
    );
    let fits = rows_advised(e.message());
    assert!((1_000..100_000).contains(&fits), "{fits} rows");
    let e = c
        .evaluate(pb::EvaluateRequest {
            model_id: id.clone(),
            x: x(),
            labels: labels(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(never), "{}", e.message());
    let e = c
        .train_step(pb::TrainStepRequest {
            model_id: id.clone(),
            x: x(),
            labels: labels(),
            learning_rate: None,
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "x");
    assert!(e.message().contains(never), "{}", e.message());
    let e = c
        .backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: x(),
            labels: labels(),
            upstream: None,
            return_input_grad: false,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(never), "{}", e.message());
    let e = c
        .gradient_check(pb::GradientCheckRequest {
            model_id: id.clone(),
            x: x(),
            labels: labels(),
            max_elements_per_parameter: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    // The advice is exact: that many rows are taken, one more is not.
    let ok = Batch::random(fits, 1, 3, 2);
    c.forward(forward(&id, &ok))
        .await
        .expect("the advised rows");
    let over = Batch::random(fits + 1, 1, 3, 2);
    let e = c.forward(forward(&id, &over)).await.unwrap_err();
    assert!(e.message().contains(never), "{}", e.message());
    assert_eq!(step_of(&mut c, &id).await, 0, "nothing was applied");
    srv.stop().await;
}

#[tokio::test]
async fn a_call_over_what_the_budget_has_left_is_resource_exhausted_without_the_free_bytes() {
    let budget: u64 = 48 << 20;
    let mut config = test_config();
    config.limits = Limits {
        max_memory: Some(budget),
        ..Limits::default()
    };
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    // 1000→8000→10 in f32 with SGD: 8,098,010 parameters, 32,392,040 bytes held.
    let (big, _) = create(
        &mut c,
        wire_spec(1000, &[layer(8000, pb::Activation::Relu)], 10),
    )
    .await;
    let small_wire = wire_spec(64, &[layer(1024, pb::Activation::Relu)], 10);
    let small_spec = spec_from_proto(Some(small_wire.clone())).unwrap();
    let (small, _) = create(&mut c, small_wire).await;
    // Rows whose estimate fits in the budget but not beside the big model.
    let held = 32_392_040 + small_spec.state_bytes().unwrap();
    let rows = (1..100_000)
        .find(|&r| {
            let need = estimate(
                &small_spec,
                r,
                Call::Forward {
                    labels: true,
                    probabilities: false,
                },
            )
            .peak_bytes
                + (r * 64 * 4) as u64;
            need > budget - held + (1 << 20)
        })
        .expect("some batch is over what is left");
    let b = Batch::random(rows, 64, 10, 3);
    let e = c.forward(forward(&small, &b)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains(
            "memory budget (50331648 bytes, --max-memory) cannot hold this call's estimated peak"
        ),
        "{}",
        e.message()
    );
    // How much is free is not said (another tenant's use would show in it).
    assert!(!e.message().contains("free"), "{}", e.message());
    let free = budget - held;
    assert!(!e.message().contains(&free.to_string()), "{}", e.message());
    // Once the big model is gone the same call fits.
    c.delete_model(pb::DeleteModelRequest { model_id: big })
        .await
        .unwrap();
    c.forward(forward(&small, &b)).await.expect("fits now");
    // And nothing stays reserved after calls: a model of most of the budget fits.
    create(
        &mut c,
        wire_spec(1000, &[layer(9000, pb::Activation::Relu)], 10),
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn answers_over_the_message_limit_are_refused_before_the_work() {
    let mut config = test_config();
    config.max_message_bytes = 1 << 20;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    // 300→1024→10: 318,474 parameters, 1.27 MB in f32: over a 1 MiB message.
    let (id, _) = create(
        &mut c,
        wire_spec(300, &[layer(1024, pb::Activation::Relu)], 10),
    )
    .await;
    let e = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "include_values");
    assert!(
        e.message().contains("message limit of 1048576 bytes")
            && e.message().contains("ExportModel"),
        "{}",
        e.message()
    );
    let shapes = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .expect("GetModel without values")
        .into_inner();
    assert_eq!(shapes.parameter_count, 318_474);
    let b = Batch::random(4, 300, 10, 1);
    let e = c
        .backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            upstream: None,
            return_input_grad: false,
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "x");
    assert!(
        e.message().contains("the gradients alone do not fit"),
        "{}",
        e.message()
    );
    // Wide scores: 2 inputs, 5000 classes; 100 rows of scores are 2 MB.
    let (wide, _) = create(&mut c, wire_spec(2, &[], 5000)).await;
    let b = Batch::random(100, 2, 5000, 2);
    let e = c.forward(forward(&wide, &b)).await.unwrap_err();
    assert_invalid(&e, "x");
    let fits = rows_advised(e.message());
    assert!((10..100).contains(&fits), "{}", e.message());
    let ok = Batch::random(fits, 2, 5000, 3);
    let r = c.forward(forward(&wide, &ok)).await.expect("advised rows");
    assert!(r.into_inner().encoded_len() <= 1 << 20);
    srv.stop().await;
}

#[tokio::test]
async fn a_trace_is_sized_from_the_spec_before_it_is_built() {
    let mut config = test_config();
    config.max_message_bytes = 8 << 20;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    // Every node within the per-node limit (64 rows × 64 units = 4096), but 4 maxout
    // layers of 16 pieces make an answer of tens of MB.
    let (id, _) = create(&mut c, wire_spec(64, &[maxout(64, 16); 4], 10)).await;
    let trace = |rows: usize, shapes_only: bool| {
        let b = Batch::random(rows, 64, 10, rows as u64);
        pb::TraceStepRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels,
            shapes_only,
        }
    };
    let e = c.trace_step(trace(64, false)).await.unwrap_err();
    assert_invalid(&e, "x");
    assert!(
        e.message().contains("message limit of 8388608 bytes")
            && e.message().contains("shapes_only"),
        "{}",
        e.message()
    );
    let fits = rows_advised(e.message());
    let r = c
        .trace_step(trace(fits, false))
        .await
        .expect("the advised rows");
    let size = r.into_inner().encoded_len();
    assert!(size <= 8 << 20, "{size} bytes");
    assert!(
        size > 4 << 20,
        "the advice is not far below the limit: {size} bytes"
    );
    let e = c.trace_step(trace(fits + 1, false)).await.unwrap_err();
    assert_invalid(&e, "x");
    let r = c.trace_step(trace(64, true)).await.expect("the structure");
    assert!(!r.into_inner().with_values);

    // The red team's deep net: 128 maxout layers of 16 pieces, each node still within
    // the per-node limit. Refused at once, with the way out.
    let (deep, _) = create(&mut c, wire_spec(64, &[maxout(64, 16); 128], 10)).await;
    let b = Batch::random(64, 64, 10, 9);
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        c.trace_step(pb::TraceStepRequest {
            model_id: deep.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            shapes_only: false,
        }),
    )
    .await
    .expect("refused at once")
    .unwrap_err();
    assert_invalid(&e, "x");
    assert!(
        e.message()
            .contains("set shapes_only for the structure alone"),
        "{}",
        e.message()
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_one_session_are_bounded() {
    let mut config = test_config();
    config.limits.max_session_waiters = 3;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let (slow, _) = create(&mut c, slow_spec()).await;
    let (other, _) = create(&mut c, wire_spec(4, &[], 3)).await;
    let (mut c2, req) = (srv.trainer(), slow_request(&slow));
    let holder = start_in_use(&mut c, &slow, || {
        tokio::spawn(async move { c2.gradient_check(req).await })
    })
    .await;
    let b = Batch::random(48, 16, 8, 4);
    let steps: Vec<_> = (0..10)
        .map(|_| {
            let mut c = srv.trainer();
            let req = pb::TrainStepRequest {
                model_id: slow.clone(),
                x: Some(b.tensor::<f64>()),
                labels: b.labels.clone(),
                learning_rate: None,
            };
            tokio::spawn(async move { c.train_step(req).await })
        })
        .collect();
    // Another session is not held up by the full queue.
    let o = Batch::random(2, 4, 3, 1);
    c.train_step(pb::TrainStepRequest {
        model_id: other.clone(),
        x: Some(o.tensor::<f32>()),
        labels: o.labels.clone(),
        learning_rate: None,
    })
    .await
    .expect("another session");
    let (mut ok, mut refused) = (0, 0);
    for s in steps {
        match s.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_code(&e, Code::ResourceExhausted, "--max-session-waiters");
                assert!(
                    e.message().contains("3 calls already wait"),
                    "{}",
                    e.message()
                );
                assert_reason(&e, Code::ResourceExhausted, "SESSION_WAITERS");
                assert_eq!(retry_delay(&e), Duration::from_millis(500));
                assert_eq!(
                    quota(&e),
                    (
                        "--max-session-waiters".to_string(),
                        "one more call than the 3 that may wait for one model".to_string()
                    )
                );
                refused += 1;
            }
        }
    }
    holder.await.unwrap().expect("the holder finished");
    assert!(refused >= 1, "10 steps behind a held lock with room for 3");
    assert_eq!(ok + refused, 10);
    assert_eq!(
        step_of(&mut c, &slow).await,
        ok,
        "every accepted step applied once"
    );
    srv.stop().await;
}

#[tokio::test]
async fn malformed_model_ids_are_refused_early_and_never_echoed_whole() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let long = "x".repeat(10_000);
    let b = Batch::random(2, 4, 3, 1);
    let mut errors = vec![
        c.forward(forward(&long, &b)).await.unwrap_err(),
        c.get_model(pb::GetModelRequest {
            model_id: long.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.delete_model(pb::DeleteModelRequest {
            model_id: long.clone(),
        })
        .await
        .unwrap_err(),
    ];
    match c
        .export_model(pb::ExportModelRequest {
            model_id: long.clone(),
            chunk_bytes: 0,
        })
        .await
    {
        Err(e) => errors.push(e),
        Ok(_) => panic!("exported a malformed id"),
    }
    for e in errors {
        assert_invalid(&e, "model_id");
        assert!(
            e.message().len() < 200,
            "{} bytes echoed",
            e.message().len()
        );
        assert!(
            e.message().contains("(10000 bytes)") && e.message().contains("32 hex digits"),
            "{}",
            e.message()
        );
    }
    // A well-formed id no session has is still NOT_FOUND.
    let e = c.forward(forward(&"0".repeat(32), &b)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    srv.stop().await;
}

#[tokio::test]
async fn a_malformed_shape_is_invalid_and_a_merely_large_one_resource_exhausted() {
    let mut config = test_config();
    config.request_limits.max_batch_elements = 100;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(2, &[], 3)).await;
    let x = |shape: Vec<u32>, n: usize| pb::ForwardRequest {
        probabilities: false,
        model_id: id.clone(),
        x: Some(pb::Tensor {
            shape,
            values: vec![0.5; n],
            values_f64: vec![],
            ..Default::default()
        }),
        labels: vec![],
    };
    // A shape claiming far more than the values sent.
    let e = c.forward(x(vec![100_000, 2], 4)).await.unwrap_err();
    assert_invalid(&e, "x");
    assert!(
        e.message().contains("needs 200000 values, got 4"),
        "{}",
        e.message()
    );
    // A shape whose product overflows.
    let e = c
        .forward(x(vec![u32::MAX, u32::MAX, u32::MAX], 4))
        .await
        .unwrap_err();
    assert_invalid(&e, "x");
    assert!(e.message().contains("overflows"), "{}", e.message());
    // Well formed, just over the limit: retryable with a smaller batch.
    let e = c.forward(x(vec![51, 2], 102)).await.unwrap_err();
    assert_code(&e, Code::ResourceExhausted, "limit of 100 per tensor");
    c.forward(x(vec![50, 2], 100)).await.expect("at the limit");
    srv.stop().await;
}

#[tokio::test]
async fn a_checkpoint_header_beyond_any_allowed_model_is_refused_before_decoding() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    // A safetensors file with a header 1 MiB over the limit (a million-layer spec would
    // be bigger).
    let len = backprop::service::limits::MAX_CHECKPOINT_HEADER + (1 << 20);
    let mut file = len.to_le_bytes().to_vec();
    file.push(b'{');
    file.extend_from_slice(&vec![b' '; len as usize - 2]);
    file.push(b'}');
    let upload = tokio_stream::iter(vec![pb::CheckpointChunk {
        data: Bytes::from(file.clone()),
        offset: 0,
        total_bytes: file.len() as u64,
        sha256: backprop::pb::chunks::sha256_hex(&file),
    }]);
    let e = c.import_model(upload).await.unwrap_err();
    assert_invalid(&e, "checkpoint");
    assert!(
        e.message().contains(&format!("the header is {len} bytes"))
            && e.message().contains("128 hidden layers"),
        "{}",
        e.message()
    );
    assert!(list_ids(&mut c).await.is_empty());
    srv.stop().await;
}

/// Waits (bounded) until the server's calls in flight hold at least `bytes` against the
/// budget, and returns what they hold.
async fn until_reserved(srv: &TestServer, bytes: f64) -> f64 {
    for _ in 0..200 {
        let held = scrape(srv).await["backprop_memory_reserved_bytes"];
        if held >= bytes {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("calls in flight never held {bytes} bytes");
}

/// A checkpoint of about 4.25 MB (~1.06M f32 parameters) in 1 MiB chunks, exported
/// from a model that is then deleted, so the sessions hold nothing.
async fn four_mb_checkpoint(c: &mut Client) -> Vec<pb::CheckpointChunk> {
    let (id, _) = create(c, wire_spec(1024, &[layer(1024, pb::Activation::Relu)], 10)).await;
    let mut export = c
        .export_model(pb::ExportModelRequest {
            model_id: id.clone(),
            chunk_bytes: 1 << 20,
        })
        .await
        .expect("ExportModel")
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = export.message().await.expect("chunk") {
        chunks.push(chunk);
    }
    let total = chunks[0].total_bytes;
    assert!((4_200_000..4_400_000).contains(&total), "{total} bytes");
    assert_eq!(chunks.len(), 5);
    c.delete_model(pb::DeleteModelRequest { model_id: id })
        .await
        .expect("DeleteModel");
    chunks
}

#[tokio::test]
async fn uploads_hold_what_has_arrived_within_their_share_of_the_budget() {
    let budget = 9u64 << 20;
    let mut config = test_config();
    config.limits.max_memory = Some(budget);
    let srv = TestServer::with_metrics(config).await;
    let mut c = srv.trainer();
    let chunks = four_mb_checkpoint(&mut c).await;
    // Alone, an upload fits: the file (4.25 MB) while it arrives is within the uploads'
    // default share (half the budget, 4.5 MiB), and the model it decodes into within
    // the budget.
    let alone = c
        .import_model(tokio_stream::iter(chunks.clone()))
        .await
        .expect("one upload fits")
        .into_inner();
    c.delete_model(pb::DeleteModelRequest {
        model_id: alone.model_id,
    })
    .await
    .expect("DeleteModel");

    // A slow upload sends three of its five chunks and waits: its 4 MiB buffer is held.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for chunk in &chunks[..3] {
        tx.send(chunk.clone()).await.unwrap();
    }
    let mut slow_client = srv.trainer();
    let slow = tokio::spawn(async move {
        slow_client
            .import_model(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let held = until_reserved(&srv, (3u64 << 20) as f64).await;
    assert_eq!(held, (4u64 << 20) as f64, "the buffer grew to 1, 2, 4 MiB");

    // Beside it, a second upload is refused as soon as its buffer would grow past what
    // the uploads' share has left (its first growth, to 1 MiB: 4 + 1 > 4.5 MiB).
    let e = c
        .import_model(tokio_stream::iter(chunks.clone()))
        .await
        .unwrap_err();
    assert_code(&e, Code::ResourceExhausted, "uploads in flight");
    assert_reason(&e, Code::ResourceExhausted, "UPLOAD_SHARE");
    assert_eq!(
        retry_delay(&e),
        Duration::from_secs(1),
        "it fits once others finish"
    );
    assert_eq!(quota(&e).0, "--max-upload-memory");
    let share = budget / 2;
    assert!(
        e.message()
            .contains(&format!("{share} bytes together (--max-upload-memory)"))
            && e.message().contains("this upload (1048576 bytes)")
            && !e.message().contains("free"),
        "{}",
        e.message()
    );
    assert!(
        list_ids(&mut c).await.is_empty(),
        "the refused upload created nothing"
    );
    assert_eq!(
        scrape(&srv).await["backprop_memory_reserved_bytes"],
        held,
        "the refused upload gave back all it held"
    );
    // Uploads cannot starve the rest: a model as large as the checkpoint is created
    // beside the stalled upload, in the half of the budget uploads may not take.
    let (big, _) = create(
        &mut c,
        wire_spec(1024, &[layer(1024, pb::Activation::Relu)], 10),
    )
    .await;
    c.delete_model(pb::DeleteModelRequest { model_id: big })
        .await
        .expect("DeleteModel");

    // The slow upload is cut off: what it held comes back, and the same upload fits.
    drop(tx);
    let e = slow.await.unwrap().unwrap_err();
    assert_code(&e, Code::InvalidArgument, "truncated");
    assert_eq!(scrape(&srv).await["backprop_memory_reserved_bytes"], 0.0);
    c.import_model(tokio_stream::iter(chunks))
        .await
        .expect("fits once the slow upload is gone");
    srv.stop().await;
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_and_gives_back_what_it_held() {
    let mut config = test_config();
    config.limits.max_memory = Some(64 << 20);
    config.request_limits.upload_stall = Duration::from_millis(400);
    let srv = TestServer::with_metrics(config).await;
    let mut c = srv.trainer();
    let chunks = four_mb_checkpoint(&mut c).await;
    // Two chunks, then silence with the stream left open: the client's own deadline
    // (none here) would let it hold its 2 MiB forever.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for chunk in &chunks[..2] {
        tx.send(chunk.clone()).await.unwrap();
    }
    let started = std::time::Instant::now();
    let stalled = c
        .import_model(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_code(&stalled, Code::DeadlineExceeded, "the upload stalled");
    assert_reason(&stalled, Code::DeadlineExceeded, "UPLOAD_STALLED");
    assert!(
        stalled
            .message()
            .contains("no chunk for 0.4 s after 2097152 bytes (--upload-stall-secs)"),
        "{}",
        stalled.message()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "cut off only after the stall: {:?}",
        started.elapsed()
    );
    assert_eq!(scrape(&srv).await["backprop_memory_reserved_bytes"], 0.0);
    assert!(list_ids(&mut c).await.is_empty(), "it created nothing");
    drop(tx);
    // Chunks that keep coming, each within the stall, are not cut off.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let paced = tokio::spawn(async move {
        for chunk in chunks {
            tx.send(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    c.import_model(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("a paced upload longer than the stall in all arrives");
    paced.await.unwrap();
    srv.stop().await;
}
