//! `--metrics-listen`: `/metrics` after known traffic moved each counter by exactly the
//! calls made, with the status code of each, and the gauges show the server's state.

use backprop::pb;
use support::*;
use tonic::Code;

fn requests(method: &str, code: &str) -> String {
    format!(r#"backprop_requests_total{{method="{method}",code="{code}"}}"#)
}

fn durations(method: &str) -> String {
    format!(r#"backprop_request_duration_seconds_count{{method="{method}"}}"#)
}

#[tokio::test]
async fn counters_move_by_exactly_the_calls_made() {
    let mut config = test_config();
    config.inline_max_work = 0; // every TrainStep goes through the compute queue
    let srv = TestServer::with_endpoint(config, true, |addr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri")
    })
    .await;
    let mut c = srv.trainer();
    let before = scrape(&srv).await;

    let (a, created) = create(&mut c, wire_spec(3, &[layer(5, pb::Activation::Relu)], 2)).await;
    let (b, _) = create(&mut c, wire_spec(2, &[], 2)).await;
    let batch = Batch::random(4, 3, 2, 1);
    for _ in 0..3 {
        train(&mut c, &a, &batch, batch.tensor::<f32>()).await;
    }
    let missing = c
        .forward(pb::ForwardRequest {
            model_id: "0".repeat(32),
            x: Some(batch.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad = c
        .train_step(pb::TrainStepRequest {
            model_id: a.clone(),
            x: Some(batch.tensor::<f32>()),
            labels: vec![0], // 4 rows need 4 labels,
            learning_rate: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    c.delete_model(pb::DeleteModelRequest { model_id: b })
        .await
        .unwrap();
    assert_eq!(list_ids(&mut c).await, vec![a.clone()]);
    // Health is not a Trainer call: it is not counted.
    srv.health()
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();

    let after = scrape(&srv).await;
    let d = |key: &str| delta(&before, &after, key);
    assert_eq!(d(&requests("CreateModel", "OK")), 2.0);
    assert_eq!(d(&requests("TrainStep", "OK")), 3.0);
    assert_eq!(d(&requests("TrainStep", "INVALID_ARGUMENT")), 1.0);
    assert_eq!(d(&requests("Forward", "NOT_FOUND")), 1.0);
    assert_eq!(d(&requests("Forward", "OK")), 0.0);
    assert_eq!(d(&requests("DeleteModel", "OK")), 1.0);
    assert_eq!(d(&requests("ListModels", "OK")), 1.0);
    assert_eq!(d(&durations("CreateModel")), 2.0);
    assert_eq!(d(&durations("TrainStep")), 4.0);
    assert_eq!(d(&durations("Forward")), 1.0);
    let all: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("backprop_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(all, 9.0, "only the 9 Trainer calls are counted: {after:#?}");
    assert_eq!(d("backprop_train_steps_total"), 3.0);
    // The compute queue saw the two CreateModel inits and the three steps; the refused
    // calls never reached it.
    assert_eq!(d("backprop_compute_queue_wait_seconds_count"), 5.0);
    assert_eq!(after["backprop_sessions"], 1.0);
    assert_eq!(
        after["backprop_parameters"], created.parameter_count as f64,
        "3·5 + 5 + 5·2 + 2 = 32"
    );
    assert_eq!(after["backprop_compute_queue_depth"], 0.0);
    assert!(after["backprop_process_resident_memory_bytes"] > 1e6);
    let le_inf = r#"backprop_request_duration_seconds_bucket{method="TrainStep",le="+Inf"}"#;
    assert_eq!(d(le_inf), 4.0);
    srv.stop().await;
}

#[tokio::test]
async fn shed_requests_are_counted_by_reason() {
    let mut config = test_config();
    config.max_message_bytes = 4096;
    let srv = TestServer::with_endpoint(config, true, |addr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri")
    })
    .await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let before = scrape(&srv).await;
    let big = Batch::random(600, 3, 2, 11); // ≈ 7.2 KB on the wire
    for _ in 0..2 {
        let err = c
            .train_step(pb::TrainStepRequest {
                model_id: id.clone(),
                x: Some(big.tensor::<f32>()),
                labels: big.labels.clone(),
                learning_rate: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
    }
    let after = scrape(&srv).await;
    let d = |key: &str| delta(&before, &after, key);
    assert_eq!(
        d(r#"backprop_shed_requests_total{reason="message_too_large"}"#),
        2.0
    );
    assert_eq!(
        d(r#"backprop_shed_requests_total{reason="queue_full"}"#),
        0.0
    );
    assert_eq!(d(&requests("TrainStep", "RESOURCE_EXHAUSTED")), 2.0);
    assert_eq!(d("backprop_train_steps_total"), 0.0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_counted_as_shed() {
    let mut config = test_config();
    config.compute_threads = 1;
    config.queue_depth = 1;
    config.inline_max_work = 0;
    let srv = TestServer::with_endpoint(config, true, |addr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri")
    })
    .await;
    let mut c = srv.trainer();
    let (slow, _) = create(&mut c, slow_spec()).await;
    let (small, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let before = scrape(&srv).await;
    let (mut c2, slow_id) = (srv.trainer(), slow.clone());
    let busy = start_in_use(&mut c, &slow, || {
        tokio::spawn(async move { c2.gradient_check(slow_request(&slow_id)).await })
    })
    .await;
    let b = Batch::random(4, 3, 2, 5);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (mut c, id, b) = (srv.trainer(), small.clone(), b.clone());
            tokio::spawn(async move {
                c.forward(pb::ForwardRequest {
                    model_id: id,
                    x: Some(b.tensor::<f32>()),
                    labels: vec![],
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    let mut refused = 0.0;
    for t in calls {
        if let Err(e) = t.await.unwrap() {
            assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
            refused += 1.0;
        }
    }
    busy.await.unwrap().expect("the slow call completes");
    assert!(refused >= 1.0, "the queue never filled");
    let after = scrape(&srv).await;
    let d = |key: &str| delta(&before, &after, key);
    assert_eq!(
        d(r#"backprop_shed_requests_total{reason="queue_full"}"#),
        refused
    );
    assert_eq!(d(&requests("Forward", "RESOURCE_EXHAUSTED")), refused);
    assert_eq!(d(&requests("Forward", "OK")), 5.0 - refused);
    assert_eq!(d(&requests("GradientCheck", "OK")), 1.0);
    srv.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_answers_only_metrics() {
    let srv = TestServer::with_endpoint(test_config(), true, |addr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri")
    })
    .await;
    let addr = srv.metrics_addr.unwrap();
    let (status, _) = http_get(addr, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for help in [
        "# TYPE backprop_sessions gauge",
        "# TYPE backprop_parameters gauge",
        "# TYPE backprop_compute_queue_depth gauge",
        "# TYPE backprop_process_resident_memory_bytes gauge",
        "# TYPE backprop_train_steps_total counter",
        "# TYPE backprop_shed_requests_total counter",
    ] {
        assert!(body.contains(help), "no {help:?} in\n{body}");
    }
    srv.stop().await;
}
