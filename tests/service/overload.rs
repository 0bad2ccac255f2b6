//! Overload: a call whose deadline passes while it waits for a compute thread does no
//! work (a timed-out TrainStep is not applied), and the `max_memory` budget refuses
//! CreateModel and ImportModel beyond it until memory is freed.

use std::time::{Duration, Instant};

use backprop::pb;
use backprop::session::Limits;
use prost::bytes::Bytes;
use support::*;
use tokio_stream::StreamExt;
use tonic::Code;

async fn step_of(c: &mut Client, id: &str) -> u64 {
    c.get_model(pb::GetModelRequest {
        model_id: id.into(),
        include_values: false,
        ..Default::default()
    })
    .await
    .expect("GetModel")
    .into_inner()
    .step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_in_the_queue_does_no_work() {
    let mut config = test_config();
    config.compute_threads = 1;
    config.inline_max_work = 0; // every call goes through the one compute thread
    let server = TestServer::with_metrics(config).await;
    let before = scrape(&server).await;
    let mut c = server.trainer();
    // A step big enough to hold the only compute thread for a while (~100 GFLOP).
    let (big, _) = create(
        &mut c,
        wire_spec(1000, &[layer(4000, pb::Activation::Relu)], 10),
    )
    .await;
    let (small, _) = create(&mut c, wire_spec(4, &[layer(8, pb::Activation::Relu)], 3)).await;
    let heavy = Batch::random(4000, 1000, 10, 1);
    let ready = scrape(&server).await;
    let busy = {
        let mut c = server.trainer();
        let req = pb::TrainStepRequest {
            model_id: big.clone(),
            x: Some(heavy.tensor::<f32>()),
            labels: heavy.labels.clone(),
            learning_rate: None,
        };
        tokio::spawn(async move {
            let start = Instant::now();
            c.train_step(req).await.expect("the heavy step");
            start.elapsed()
        })
    };
    // The heavy step is computing once the thread has taken its job (a guessed sleep
    // let the small call in first on a loaded machine).
    let start = Instant::now();
    while delta(
        &ready,
        &scrape(&server).await,
        "backprop_compute_queue_wait_seconds_count",
    ) < 1.0
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the heavy step never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let b = Batch::random(5, 4, 3, 2);
    let mut req = tonic::Request::new(pb::TrainStepRequest {
        model_id: small.clone(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels.clone(),
        learning_rate: None,
    });
    req.set_timeout(Duration::from_millis(100));
    let e = c
        .train_step(req)
        .await
        .expect_err("the deadline passes in the queue");
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{:?}: {}",
        e.code(),
        e.message()
    );
    let took = busy.await.expect("heavy task");
    assert!(
        took > Duration::from_millis(450),
        "the heavy step ({took:?}) must outlast the small call's deadline for this test to mean anything"
    );
    // The timed-out step was skipped when the thread came free: the model is untouched.
    assert_eq!(
        step_of(&mut c, &small).await,
        0,
        "a timed-out TrainStep was applied"
    );
    let after = scrape(&server).await;
    assert_eq!(delta(&before, &after, "backprop_expired_jobs_total"), 1.0);
    // And the session works normally afterwards.
    let r = c
        .train_step(pb::TrainStepRequest {
            model_id: small.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            learning_rate: None,
        })
        .await
        .expect("TrainStep")
        .into_inner();
    assert_eq!(r.step, 1);
    server.stop().await;
}

#[tokio::test]
async fn the_memory_budget_refuses_models_beyond_it() {
    // 10→100→10 in f32: 2,110 parameters; with Adam 3 copies → 25,320 bytes.
    let adam = |dtype: pb::Dtype| pb::ModelSpec {
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            ..Default::default()
        }),
        dtype: dtype as i32,
        ..wire_spec(10, &[layer(100, pb::Activation::Relu)], 10)
    };
    let mut config = test_config();
    config.limits = Limits {
        max_memory: Some(60_000),
        ..Limits::default()
    };
    let server = TestServer::with_config(config).await;
    let mut c = server.trainer();
    let (a, _) = create(&mut c, adam(pb::Dtype::F32)).await;
    let (_b, _) = create(&mut c, adam(pb::Dtype::F32)).await; // 50,640 held
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(adam(pb::Dtype::F32)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        // The budget and the need are named; what is free is not (it would show another
        // tenant's use).
        e.message().contains(
            "memory budget (60000 bytes, --max-memory) cannot hold this model (25320 bytes)"
        ) && !e.message().contains("9360"),
        "{}",
        e.message()
    );
    // Import counts against the same budget.
    let file: Vec<u8> = c
        .export_model(pb::ExportModelRequest {
            model_id: a.clone(),
            chunk_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .map(|c| c.unwrap().data)
        .collect::<Vec<Bytes>>()
        .await
        .concat();
    let upload = || {
        tokio_stream::iter(vec![pb::CheckpointChunk {
            data: Bytes::from(file.clone()),
            offset: 0,
            total_bytes: file.len() as u64,
            sha256: backprop::pb::chunks::sha256_hex(&file),
        }])
    };
    let e = c.import_model(upload()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    // Freeing a model makes room again.
    c.delete_model(pb::DeleteModelRequest { model_id: a })
        .await
        .unwrap();
    c.import_model(upload())
        .await
        .expect("fits after the delete");
    // An f64 SGD model of the same shape: 2,110 × 8 = 16,880 bytes; 25,320 + 25,320 held.
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(pb::ModelSpec {
                dtype: pb::Dtype::F64 as i32,
                ..wire_spec(10, &[layer(100, pb::Activation::Relu)], 10)
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("(16880 bytes)"), "{}", e.message());
    server.stop().await;
}
