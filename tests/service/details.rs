//! Machine-readable error details: every error the server answers carries a
//! `google.rpc.ErrorInfo` (domain `backprop`, a stable reason), whether the service made
//! it or the gRPC layer under it; a limit's refusal a `QuotaFailure` naming the limit's
//! flag with the numbers; a refusal that may succeed later a `RetryInfo`. (The full
//! compute queue's and the session waiters' details are checked where those refusals are
//! provoked: `errors::full_compute_queue_is_resource_exhausted`,
//! `limits::calls_waiting_for_one_session_are_bounded`; the uploads' share, a stalled
//! upload and the state directory's in `limits` and `ops/durability`.)

use std::time::Duration;

use backprop::pb;
use backprop::server::Config;
use backprop::service::auth::Tokens;
use prost::bytes::Bytes;
use support::*;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A server whose limits are small enough that each is cheap to reach.
fn sweep_config() -> Config {
    let mut config = test_config();
    config.max_message_bytes = 16 * 1024;
    config.limits.max_parameters = 10_000;
    config.request_limits.max_batch_elements = 1000;
    config.request_limits.max_gradcheck_work = 1000;
    config
}

/// One call as a tonic client of another shape would make it: `body` sent as-is to
/// `method` (e.g. a message of the wrong type, or a method the server has not).
async fn raw_unary<M: prost::Message + Send + 'static>(
    srv: &TestServer,
    method: &str,
    body: M,
) -> Status {
    let mut g = tonic::client::Grpc::new(srv.channel.clone());
    g.ready().await.expect("ready");
    let path = PathAndQuery::try_from(format!("/backprop.v1.Trainer/{method}")).unwrap();
    let codec = tonic_prost::ProstCodec::<M, pb::ForwardResponse>::default();
    g.unary(tonic::Request::new(body), path, codec)
        .await
        .expect_err("refused")
}

fn upload(first: pb::CheckpointChunk) -> impl tokio_stream::Stream<Item = pb::CheckpointChunk> {
    tokio_stream::iter(vec![first])
}

/// A representative failing call of every RPC (and the gRPC layer's own refusals): each
/// answer's ErrorInfo is from `backprop` with the reason its cause has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_carries_a_reason() {
    let srv = TestServer::with_config(sweep_config()).await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(3, &[layer(4, pb::Activation::Relu)], 3)).await;
    // 100·40 + 40 + 40·10 + 10 = 4450 parameters: values of about 17.8 KB, over 16 KiB.
    let (big, _) = create(
        &mut c,
        wire_spec(100, &[layer(40, pb::Activation::Relu)], 10),
    )
    .await;
    let absent = "0".repeat(32);
    let good = Batch::random(4, 3, 3, 1);
    let x = |b: &Batch| Some(b.tensor::<f32>());
    let mut seen: Vec<(&str, Status, Code, &str)> = Vec::new();
    let mut expect = |what, r: Status, code, reason| seen.push((what, r, code, reason));

    let e = c
        .create_model(pb::CreateModelRequest {
            spec: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect(
        "CreateModel without a spec",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(wire_spec(100, &[layer(200, pb::Activation::Relu)], 10)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let (subject, description) = quota(&e);
    assert_eq!(subject, "--max-parameters");
    assert_eq!(
        description,
        "22210 parameters, more than the 10000 a model may have"
    );
    expect(
        "CreateModel too big",
        e,
        Code::ResourceExhausted,
        "PARAMETER_LIMIT",
    );
    let forward = |model_id: &str, x: Option<pb::Tensor>| pb::ForwardRequest {
        model_id: model_id.into(),
        x,
        labels: vec![],
        ..Default::default()
    };
    let e = c.forward(forward("nope", x(&good))).await.unwrap_err();
    expect(
        "Forward, malformed id",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c.forward(forward(&absent, x(&good))).await.unwrap_err();
    expect("Forward, unknown id", e, Code::NotFound, "MODEL_NOT_FOUND");
    let e = c
        .forward(forward(&id, x(&Batch::random(4, 5, 3, 1))))
        .await
        .unwrap_err();
    expect(
        "Forward, wrong width",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // 400 × 3 = 1200 elements (4.8 KB, within the message limit) over the 1000 allowed.
    let e = c
        .evaluate(pb::EvaluateRequest {
            model_id: id.clone(),
            x: x(&Batch::random(400, 3, 3, 1)),
            labels: vec![0; 400],
        })
        .await
        .unwrap_err();
    assert_eq!(
        quota(&e),
        (
            "--max-batch-elements".to_string(),
            "x has 1200 elements, more than the 1000 a tensor may have".to_string()
        )
    );
    expect(
        "Evaluate, tensor over the limit",
        e,
        Code::ResourceExhausted,
        "TENSOR_LIMIT",
    );
    // 2000 × 3 f32 = 24 KB: over the 16 KiB message limit, refused by the decoder.
    let e = c
        .forward(forward(&id, x(&Batch::random(2000, 3, 3, 1))))
        .await
        .unwrap_err();
    let (subject, description) = quota(&e);
    assert_eq!(subject, "--max-message-mib");
    assert!(
        description.starts_with("a message of ")
            && description.ends_with(" bytes, more than the 16384-byte limit"),
        "{description}"
    );
    expect(
        "Forward over the message limit",
        e,
        Code::ResourceExhausted,
        "MESSAGE_LIMIT",
    );
    let e = c
        .backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: x(&good),
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect(
        "Backward without labels",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c
        .train_step(pb::TrainStepRequest {
            model_id: id.clone(),
            x: x(&good),
            labels: vec![0, 1, 2, 7],
            learning_rate: None,
        })
        .await
        .unwrap_err();
    expect(
        "TrainStep, label out of range",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c
        .apply_gradients(pb::ApplyGradientsRequest {
            model_id: id.clone(),
            gradients: vec![],
        })
        .await
        .unwrap_err();
    expect(
        "ApplyGradients, none",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c
        .get_model(pb::GetModelRequest {
            model_id: big.clone(),
            include_values: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let (subject, description) = quota(&e);
    assert_eq!(subject, "--max-message-mib");
    assert!(
        description.ends_with("bytes, more than the 16384-byte message limit"),
        "{description}"
    );
    expect(
        "GetModel, answer too large",
        e,
        Code::InvalidArgument,
        "ANSWER_TOO_LARGE",
    );
    let e = c
        .delete_model(pb::DeleteModelRequest {
            model_id: absent.clone(),
        })
        .await
        .unwrap_err();
    expect("DeleteModel, unknown", e, Code::NotFound, "MODEL_NOT_FOUND");
    let e = c
        .gradient_check(pb::GradientCheckRequest {
            model_id: id.clone(),
            x: x(&good),
            labels: good.labels.clone(),
            max_elements_per_parameter: 0,
        })
        .await
        .unwrap_err();
    expect(
        "GradientCheck, too much work",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c
        .trace_step(pb::TraceStepRequest {
            model_id: id.clone(),
            x: None,
            labels: vec![],
            shapes_only: true,
        })
        .await
        .unwrap_err();
    expect(
        "TraceStep without x",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c
        .export_model(pb::ExportModelRequest {
            model_id: id.clone(),
            chunk_bytes: 1 << 20,
        })
        .await
        .unwrap_err();
    expect(
        "ExportModel, chunk too big",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let e = c
        .import_model(tokio_stream::iter(Vec::<pb::CheckpointChunk>::new()))
        .await
        .unwrap_err();
    expect(
        "ImportModel, empty",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let junk = b"this is not a safetensors file".to_vec();
    let e = c
        .import_model(upload(pb::CheckpointChunk {
            data: Bytes::from(junk.clone()),
            offset: 0,
            total_bytes: junk.len() as u64,
            sha256: backprop::pb::chunks::sha256_hex(&junk),
        }))
        .await
        .unwrap_err();
    expect(
        "ImportModel, not a checkpoint",
        e,
        Code::InvalidArgument,
        "INVALID_CHECKPOINT",
    );
    let e = c
        .import_model(upload(pb::CheckpointChunk {
            data: Bytes::from_static(b"x"),
            offset: 0,
            total_bytes: 1 << 30,
            sha256: "0".repeat(64),
        }))
        .await
        .unwrap_err();
    // The parameter limit binds (no memory budget): 10 000 × 24 + 16 MiB.
    assert_eq!(
        quota(&e),
        (
            "--max-parameters".to_string(),
            "a 1073741824-byte checkpoint, more than the 17017216 bytes accepted".to_string()
        )
    );
    expect(
        "ImportModel, too large",
        e,
        Code::ResourceExhausted,
        "CHECKPOINT_SIZE",
    );
    let e = c
        .list_models(pb::ListModelsRequest {
            page_size: 2,
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    expect(
        "ListModels, bad token",
        e,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // The gRPC layer's own refusals: a method the server has not, and a body that does
    // not decode as the method's request (field 1 a varint where Forward has a string).
    let e = raw_unary(&srv, "NoSuchMethod", pb::GetModelRequest::default()).await;
    expect("an unknown method", e, Code::Unimplemented, "UNIMPLEMENTED");
    let e = raw_unary(
        &srv,
        "Forward",
        pb::ListModelsRequest {
            page_size: 5,
            page_token: String::new(),
            ..Default::default()
        },
    )
    .await;
    expect("an undecodable request", e, Code::Internal, "INTERNAL");

    for (what, status, code, want) in &seen {
        assert_eq!(status.code(), *code, "{what}: {status:?}");
        assert_eq!(reason(status), *want, "{what}: {status:?}");
        if *code == Code::InvalidArgument {
            assert!(
                status.get_details_bad_request().is_some(),
                "{what}: INVALID_ARGUMENT without its BadRequest: {status:?}"
            );
        }
    }
    assert_eq!(seen.len(), 21);
    srv.stop().await;
}

/// Server and tenant session limits name their limit; a missing token has its reason.
#[tokio::test]
async fn session_limits_and_authentication_have_reasons() {
    let token = "alice-0123456789abcdef";
    let mut config = test_config();
    config.limits.max_sessions = 2;
    config.auth = Some(Tokens::parse(&format!("{token} alice max_sessions=1\n")).unwrap());
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let e = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap_err();
    assert_reason(&e, Code::Unauthenticated, "UNAUTHENTICATED");
    let as_alice = |spec: pb::ModelSpec| {
        let mut r = tonic::Request::new(pb::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    c.create_model(as_alice(wire_spec(2, &[], 2)))
        .await
        .expect("alice's first");
    let e = c
        .create_model(as_alice(wire_spec(2, &[], 2)))
        .await
        .unwrap_err();
    assert_reason(&e, Code::ResourceExhausted, "TENANT_SESSION_LIMIT");
    assert_eq!(
        quota(&e),
        (
            "max_sessions".to_string(),
            "one more session than the 1 this tenant may hold (max_sessions in --auth-tokens)"
                .to_string()
        )
    );
    assert!(e.get_details_retry_info().is_none(), "{e:?}");
    srv.stop().await;

    let mut config = test_config();
    config.limits.max_sessions = 1;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    create(&mut c, wire_spec(2, &[], 2)).await;
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(wire_spec(2, &[], 2)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_reason(&e, Code::ResourceExhausted, "SESSION_LIMIT");
    assert_eq!(quota(&e).0, "--max-sessions");
    srv.stop().await;
}

/// The memory budget names `--max-memory` with the need and the budget (never what is
/// free: that is another tenant's business), and is retryable only when the request
/// fits the budget at all.
#[tokio::test]
async fn the_memory_budget_is_retryable_only_for_what_could_fit() {
    let adam = |hidden: u32| pb::ModelSpec {
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            ..Default::default()
        }),
        ..wire_spec(10, &[layer(hidden, pb::Activation::Relu)], 10)
    };
    let mut config = test_config();
    config.limits.max_memory = Some(60_000);
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    // 2,110 parameters × 4 bytes × 3 (Adam) = 25,320 bytes each.
    create(&mut c, adam(100)).await;
    create(&mut c, adam(100)).await;
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(adam(100)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_reason(&e, Code::ResourceExhausted, "MEMORY_BUDGET");
    assert_eq!(retry_delay(&e), Duration::from_secs(1));
    let (subject, description) = quota(&e);
    assert_eq!(subject, "--max-memory");
    assert_eq!(
        description,
        "this model needs 25320 bytes of the 60000-byte memory budget, which every session \
         and call in flight share"
    );
    // 60,000 − 2 × 25,320 = 9,360 bytes are free: that is not said.
    assert!(
        !e.message().contains("9360") && !description.contains("9360"),
        "what is free leaked: {e:?}"
    );
    // 21,010 parameters × 12 bytes = 252,120: more than the whole budget, never fits.
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(adam(1000)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_reason(&e, Code::ResourceExhausted, "MEMORY_BUDGET");
    assert!(
        e.get_details_retry_info().is_none(),
        "a model larger than the budget is not worth retrying: {e:?}"
    );
    assert!(quota(&e).1.contains("needs 252120 bytes"), "{e:?}");
    srv.stop().await;
}
