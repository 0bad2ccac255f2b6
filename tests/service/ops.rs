//! What operators and tools rely on: gRPC health (SERVING while up, NOT_SERVING once
//! shutdown starts), server reflection v1 and v1alpha (grpcurl, ghz), idle sessions
//! dropped after the TTL, and graceful shutdown that lets an in-flight call finish within
//! a bounded grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backprop::pb;
use support::*;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const TRAINER: &str = "backprop.v1.Trainer";

async fn health_of(srv: &TestServer, service: &str) -> Result<i32, tonic::Status> {
    srv.health()
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map(|r| r.into_inner().status)
}

#[tokio::test]
async fn health_reports_serving() {
    let srv = TestServer::start().await;
    assert_eq!(
        health_of(&srv, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health_of(&srv, TRAINER).await.unwrap(),
        ServingStatus::Serving as i32
    );
    let err = health_of(&srv, "backprop.v1.Nope").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    srv.stop().await;
}

/// Sends ListServices and FileContainingSymbol(Trainer) over one reflection stream of the
/// given version; returns the service names and the Trainer's file descriptor bytes.
macro_rules! reflect {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol(TRAINER.to_string()),
        ]
        .map(|m| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        });
        let mut stream = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("reflection stream")
            .into_inner();
        let (mut services, mut files) = (Vec::new(), Vec::new());
        while let Some(r) = stream.message().await.expect("reflection answer") {
            match r.message_response.expect("an answer") {
                MessageResponse::ListServicesResponse(l) => {
                    services.extend(l.service.into_iter().map(|s| s.name))
                }
                MessageResponse::FileDescriptorResponse(f) => files.extend(f.file_descriptor_proto),
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
        (services, files)
    }};
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    let srv = TestServer::start().await;
    let (v1, files_v1) = reflect!(v1, srv.channel.clone());
    let (v1alpha, files_v1alpha) = reflect!(v1alpha, srv.channel.clone());
    for (version, services, files) in [
        ("v1", &v1, &files_v1),
        ("v1alpha", &v1alpha, &files_v1alpha),
    ] {
        for want in [TRAINER, "grpc.health.v1.Health"] {
            assert!(
                services.iter().any(|s| s == want),
                "{version}: {want} missing from {services:?}"
            );
        }
        // The Trainer's file is served, with its methods and messages.
        assert!(!files.is_empty(), "{version}: no descriptor for {TRAINER}");
        let file = files
            .iter()
            .find(|f| contains(f, "backprop/v1/backprop.proto"));
        let file = file.unwrap_or_else(|| panic!("{version}: backprop.proto not served"));
        for name in [
            "Trainer",
            "TrainStep",
            "GradientCheck",
            "TrainStepRequest",
            "values_f64",
        ] {
            assert!(contains(file, name), "{version}: descriptor lacks {name}");
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_dropped_after_the_ttl() {
    const TTL: Duration = Duration::from_millis(200);
    let mut config = test_config();
    config.limits.idle_ttl = Some(TTL);
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let start = Instant::now();
    let (idle, _) = create(&mut c, wire_spec(2, &[], 2)).await;
    let (busy, _) = create(&mut c, wire_spec(2, &[], 2)).await;

    // Keep `busy` in use (GetModel counts; ListModels does not) until `idle` is gone.
    let gone_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "idle session still listed after 2 s with a TTL of {TTL:?}"
        );
        c.get_model(pb::GetModelRequest {
            model_id: busy.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .expect("the session in use must survive");
        let ids = list_ids(&mut c).await;
        assert!(ids.contains(&busy), "a session in use was dropped");
        if !ids.contains(&idle) {
            break start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        gone_after >= TTL,
        "dropped after {gone_after:?}, before the TTL"
    );
    let err = c
        .forward(pb::ForwardRequest {
            model_id: idle.clone(),
            x: Some(Batch::random(1, 2, 2, 0).tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_code(&err, Code::NotFound, "model_id");

    // Left alone, the other one goes too.
    let left_alone = Instant::now();
    while list_ids(&mut c).await.contains(&busy) {
        assert!(
            left_alone.elapsed() < Duration::from_secs(2),
            "session not dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(left_alone.elapsed() >= TTL - Duration::from_millis(50));
    srv.stop().await;
}

#[tokio::test]
async fn no_ttl_keeps_idle_sessions() {
    let srv = TestServer::start().await; // idle_ttl: None
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(2, &[], 2)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(list_ids(&mut c).await, vec![id]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_an_in_flight_call_finish() {
    let mut config = test_config();
    config.compute_threads = 1;
    let mut srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, slow_spec()).await;
    let done = Arc::new(AtomicBool::new(false));
    let (mut c2, id2, done2) = (srv.trainer(), id.clone(), done.clone());
    let call = start_in_use(&mut c, &id, || {
        tokio::spawn(async move {
            let r = c2.gradient_check(slow_request(&id2)).await;
            done2.store(true, Ordering::SeqCst);
            (r, Instant::now())
        })
    })
    .await;
    srv.trigger_shutdown();
    assert!(
        !done.load(Ordering::SeqCst),
        "the call finished before shutdown was triggered; make it slower"
    );

    // run() must wait for the call: it may not return before the answer is out.
    let addr = srv.addr;
    let (stopped_at, answered) = tokio::join!(srv.stop_within(Duration::from_secs(4)), call);
    let (r, answered_at) = answered.unwrap();
    let r = r.expect("the in-flight call completes").into_inner();
    assert_eq!(r.errors.len(), 4);
    assert!(r.max_relative_error < 1e-5, "{}", r.max_relative_error);
    assert!(
        stopped_at + Duration::from_millis(50) >= answered_at,
        "run() returned {:?} before the in-flight call was answered",
        answered_at - stopped_at
    );

    // Nothing listens any more.
    let reconnect = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await;
    assert!(reconnect.is_err(), "the server still accepts connections");
    let err = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_marks_not_serving_and_the_grace_period_is_bounded() {
    const GRACE: Duration = Duration::from_millis(300);
    let mut config = test_config();
    config.shutdown_grace = GRACE;
    let mut srv = TestServer::with_config(config).await;
    // A Watch stream never ends by itself: it holds shutdown up until the grace runs out.
    let mut watch = srv
        .health()
        .watch(HealthCheckRequest {
            service: TRAINER.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let triggered = Instant::now();
    srv.trigger_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("a health update at shutdown")
        .expect("the watch stream is still open")
        .expect("an update");
    assert_eq!(next.status, ServingStatus::NotServing as i32);

    srv.stop_within(Duration::from_secs(2)).await;
    let took = triggered.elapsed();
    assert!(
        took >= GRACE - Duration::from_millis(20),
        "stopped after {took:?}, before the grace ran out, with a call still open"
    );
    drop(watch);
}

/// A fit's event stream open when the server starts stopping ends at once with
/// UNAVAILABLE (SHUTTING_DOWN) and a message that says so, not with the connection cut
/// under it; the server then stops within its grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_ends_unavailable_when_the_server_stops() {
    let mut srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(3, &[layer(8, pb::Activation::Relu)], 2)).await;
    let x = [
        0.25f32, 0.5, 0.75, 1.0, 1.25, 1.5, -0.5, 0.0, 2.0, 1.0, -1.0, 0.5,
    ];
    let ds = c
        .upload_dataset(tokio_stream::iter(backprop::pb::dataset::upload_chunks(
            backprop::pb::dataset::Rows::F32(&x),
            3,
            &[1, 0, 1, 0],
            "stop",
            1 << 20,
        )))
        .await
        .expect("upload")
        .into_inner()
        .dataset_id;
    let mut events = c
        .fit(pb::FitRequest {
            model_id: id,
            dataset_id: ds,
            batch_size: 2,
            epochs: 1_000_000,
            progress_every: 1,
            ..Default::default()
        })
        .await
        .expect("Fit")
        .into_inner();
    for _ in 0..3 {
        events
            .message()
            .await
            .expect("an event")
            .expect("the fit runs");
    }
    srv.trigger_shutdown();
    let end = loop {
        match events.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended OK while the fit was still running"),
            Err(s) => break s,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert_eq!(reason(&end), "SHUTTING_DOWN");
    assert!(
        end.message().starts_with("the server is stopping"),
        "{}",
        end.message()
    );
    srv.stop_within(Duration::from_secs(4)).await;
}
