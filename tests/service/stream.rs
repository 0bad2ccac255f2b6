//! TrainStream end to end: its steps are the same TrainSteps bit for bit, a refused
//! batch is answered alone and changes nothing, a client that stops reading holds the
//! server back (nothing buffers without limit), and a cancelled stream leaves the model
//! at exactly the steps it answered or was applying.
use std::time::{Duration, Instant};

use backprop::pb;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Endpoint;

fn spec(dtype: pb::Dtype, seed: u64) -> pb::ModelSpec {
    pb::ModelSpec {
        init: seeded(seed),
        dtype: dtype as i32,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            ..Default::default()
        }),
        ..wire_spec(5, &[layer(7, pb::Activation::Tanh)], 3)
    }
}

fn message<T: Wire>(id: &str, sequence: u64, b: &Batch) -> pb::TrainStreamRequest {
    pb::TrainStreamRequest {
        model_id: id.to_string(),
        sequence,
        x: Some(b.tensor::<T>()),
        labels: b.labels.clone(),
        learning_rate: None,
    }
}

/// Sends `messages` on one stream and reads every answer.
async fn stream_all(
    c: &mut Client,
    messages: Vec<pb::TrainStreamRequest>,
) -> Vec<pb::TrainStreamResponse> {
    let mut answers = c
        .train_stream(tokio_stream::iter(messages))
        .await
        .expect("TrainStream")
        .into_inner();
    let mut got = vec![];
    while let Some(a) = answers.next().await {
        got.push(a.expect("an answer"));
    }
    got
}

fn applied(a: &pb::TrainStreamResponse) -> &pb::TrainStepResponse {
    match &a.result {
        Some(pb::train_stream_response::Result::Step(s)) => s,
        other => panic!("batch {} was not applied: {other:?}", a.sequence),
    }
}

async fn same_as_train_steps<T: Wire>(dtype: pb::Dtype) {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (streamed, _) = create(&mut c, spec(dtype, 31)).await;
    let (stepped, _) = create(&mut c, spec(dtype, 31)).await;
    let batches: Vec<Batch> = (0..12).map(|i| Batch::random(9, 5, 3, 100 + i)).collect();
    // Only the first message names the model; the others leave it empty.
    let messages = batches
        .iter()
        .enumerate()
        .map(|(i, b)| message::<T>(if i == 0 { &streamed } else { "" }, 1000 + i as u64, b))
        .collect();
    let answers = stream_all(&mut c, messages).await;
    assert_eq!(answers.len(), batches.len());
    for (i, (a, b)) in answers.iter().zip(&batches).enumerate() {
        assert_eq!(
            a.sequence,
            1000 + i as u64,
            "answers come in the order sent"
        );
        let want = train(&mut c, &stepped, b, b.tensor::<T>()).await;
        // Equal as numbers (losses and accuracy are f64 on the wire, == within bits
        // but for ±0), and the parameters below are compared bit for bit.
        assert_eq!(*applied(a), want, "batch {i}");
    }
    assert_same_snapshot(
        &get_values(&mut c, &stepped).await,
        &get_values(&mut c, &streamed).await,
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_stream_steps_exactly_as_train_steps_do_f32() {
    same_as_train_steps::<f32>(pb::Dtype::F32).await;
}

#[tokio::test]
async fn a_stream_steps_exactly_as_train_steps_do_f64() {
    same_as_train_steps::<f64>(pb::Dtype::F64).await;
}

#[tokio::test]
async fn a_bad_batch_is_refused_alone_and_the_stream_goes_on() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (streamed, _) = create(&mut c, spec(pb::Dtype::F32, 5)).await;
    let (stepped, _) = create(&mut c, spec(pb::Dtype::F32, 5)).await;
    let good: Vec<Batch> = (0..3).map(|i| Batch::random(6, 5, 3, 7 + i)).collect();
    let mut bad_labels = Batch::random(6, 5, 3, 99);
    bad_labels.labels[4] = 3; // the model has 3 classes
    let wrong_width = Batch::random(6, 4, 3, 98);
    let messages = vec![
        message::<f32>(&streamed, 1, &good[0]),
        message::<f32>(&streamed, 2, &bad_labels),
        message::<f32>("", 3, &wrong_width),
        message::<f32>(&stepped, 4, &good[1]), // another model than the stream's
        message::<f32>("", 5, &good[1]),
        message::<f32>(&streamed, 6, &good[2]),
    ];
    let answers = stream_all(&mut c, messages).await;
    let seqs: Vec<u64> = answers.iter().map(|a| a.sequence).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    let error = |a: &pb::TrainStreamResponse| match &a.result {
        Some(pb::train_stream_response::Result::Error(e)) => e.clone(),
        other => panic!("batch {} was not refused: {other:?}", a.sequence),
    };
    let e = error(&answers[1]);
    assert_eq!(e.code, Code::InvalidArgument as i32);
    assert_eq!(e.field, "labels[4]");
    assert_eq!(e.reason, "INVALID_ARGUMENT");
    assert!(e.message.contains("labels"), "{}", e.message);
    let e = error(&answers[2]);
    assert_eq!(e.code, Code::InvalidArgument as i32);
    assert_eq!(e.field, "x");
    assert!(e.message.contains("[N, 5]"), "{}", e.message);
    let e = error(&answers[3]);
    assert_eq!(e.code, Code::InvalidArgument as i32);
    assert_eq!(e.field, "model_id");
    assert_eq!(applied(&answers[0]).step, 1);
    assert_eq!(applied(&answers[4]).step, 2);
    assert_eq!(applied(&answers[5]).step, 3);
    // The stream's model is the three good batches as TrainSteps, nothing more; the
    // other model was never touched by the stream.
    assert_eq!(get_values(&mut c, &stepped).await.step, 0);
    for b in &good {
        train(&mut c, &stepped, b, b.tensor::<f32>()).await;
    }
    assert_same_snapshot(
        &get_values(&mut c, &stepped).await,
        &get_values(&mut c, &streamed).await,
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_first_message_must_name_the_model_and_an_unknown_one_is_not_found() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let b = Batch::random(2, 5, 3, 1);
    let answers = stream_all(
        &mut c,
        vec![
            message::<f32>("", 1, &b),
            message::<f32>(&"0".repeat(32), 2, &b),
        ],
    )
    .await;
    for (a, (code, field)) in answers
        .iter()
        .zip([(Code::InvalidArgument, "model_id"), (Code::NotFound, "")])
    {
        match &a.result {
            Some(pb::train_stream_response::Result::Error(e)) => {
                assert_eq!(e.code, code as i32, "{e:?}");
                if !field.is_empty() {
                    assert_eq!(e.field, field);
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answers.len(), 2);
    srv.stop().await;
}

/// The model's step, without its values.
async fn step_of(c: &mut Client, id: &str) -> u64 {
    c.get_model(pb::GetModelRequest {
        model_id: id.to_string(),
        include_values: false,
        ..Default::default()
    })
    .await
    .expect("GetModel")
    .into_inner()
    .step
}

/// Waits until the model's step has not moved for `quiet`; returns it.
async fn settled_step(c: &mut Client, id: &str, quiet: Duration) -> u64 {
    let mut last = step_of(c, id).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = step_of(c, id).await;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return now;
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_the_stream_back_and_loses_nothing() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, spec(pb::Dtype::F32, 8)).await;
    let b = Batch::random(1, 5, 3, 2);
    const TOTAL: u64 = 30_000;
    let first = message::<f32>(&id, 0, &b);
    let rest = (1..TOTAL).map(move |i| message::<f32>("", i, &b));
    let outbound = tokio_stream::iter(std::iter::once(first).chain(rest));
    // A client with HTTP/2's default 64 KiB windows, so what it takes in unread is small
    // beside TOTAL answers (about 45 bytes each).
    let channel = Endpoint::from_shared(format!("http://{}", srv.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    let mut answers = pb::trainer_client::TrainerClient::new(channel)
        .train_stream(outbound)
        .await
        .expect("TrainStream")
        .into_inner();
    // Nothing is read: the server may run ahead only by what the windows and buffers
    // hold, then it must wait.
    let held = settled_step(&mut c, &id, Duration::from_secs(1)).await;
    assert!(held > 0, "the stream never started");
    assert!(
        held < TOTAL,
        "all {TOTAL} batches were applied with no answer read: answers buffered without limit"
    );
    // Reading releases it, and every batch is answered once, in order.
    let mut n = 0;
    while let Some(a) = answers.next().await {
        let a = a.expect("an answer");
        assert_eq!(a.sequence, n);
        assert_eq!(applied(&a).step, n + 1);
        n += 1;
    }
    assert_eq!(n, TOTAL);
    assert_eq!(step_of(&mut c, &id).await, TOTAL);
    srv.stop().await;
}

/// A tonic client cannot reset a bidirectional call before its request stream ends (the
/// request body keeps the HTTP/2 stream open), so the server learns of the cancel only
/// after the batches already sent: what matters is that the model is then exactly the
/// batches it applied, each whole.
#[tokio::test]
async fn a_cancelled_stream_leaves_the_model_at_a_step_boundary() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wide = pb::ModelSpec {
        init: seeded(12),
        dtype: pb::Dtype::F64 as i32,
        ..wire_spec(64, &[layer(256, pb::Activation::Relu)], 10)
    };
    let (streamed, _) = create(&mut c, wide.clone()).await;
    let (stepped, _) = create(&mut c, wide).await;
    let batches: Vec<Batch> = (0..60)
        .map(|i| Batch::random(64, 64, 10, 500 + i))
        .collect();
    let (tx, rx) = mpsc::channel(4);
    let mut answers = c
        .clone()
        .train_stream(ReceiverStream::new(rx))
        .await
        .expect("TrainStream")
        .into_inner();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sender = {
        let (id, batches, sent) = (streamed.clone(), batches.clone(), sent.clone());
        tokio::spawn(async move {
            for (i, b) in batches.iter().enumerate() {
                if tx.send(message::<f64>(&id, i as u64, b)).await.is_err() {
                    return;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            // Keep the request open: the cancel comes from the client's side.
            std::future::pending::<()>().await;
        })
    };
    for i in 0..5u64 {
        let a = answers.next().await.expect("an answer").expect("ok");
        assert_eq!(applied(&a).step, i + 1);
    }
    drop(answers);
    sender.abort();
    let k = settled_step(&mut c, &streamed, Duration::from_millis(500)).await;
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!((5..=sent).contains(&k), "step {k}, {sent} batches sent");
    for b in &batches[..k as usize] {
        train(&mut c, &stepped, b, b.tensor::<f64>()).await;
    }
    assert_same_snapshot(
        &get_values(&mut c, &stepped).await,
        &get_values(&mut c, &streamed).await,
    );
    srv.stop().await;
}
