//! `--auth-tokens`: calls without a known bearer token are UNAUTHENTICATED (health stays
//! open); tenants never see each other's sessions; per-tenant session limits. That no
//! token reaches the logs is checked on the real binary's output, in `ops_cli.rs`.

use backprop::pb;
use backprop::pb::dataset::{Rows, upload_chunks};
use backprop::pb::trainer_client::TrainerClient;
use backprop::service::auth::Tokens;
use backprop::service::route::ROUTE_HEADER;
use support::*;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const ALICE: &str = "alice-0123456789abcdef";
const ALICE_NEW: &str = "alice-rotated-0123456789";
const BOB: &str = "bob-fedcba9876543210";

fn tokens_file() -> String {
    format!(
        "# tenant tokens\n\
         {ALICE} alice max_sessions=2 max_dataset_bytes=4096\n\
         {ALICE_NEW} alice   # the next one, while clients move over\n\
         \n\
         {BOB} bob\n"
    )
}

async fn server() -> TestServer {
    let mut config = test_config();
    config.auth = Some(Tokens::parse(&tokens_file()).expect("a good tokens file"));
    TestServer::with_config(config).await
}

/// Sends `authorization` with every call (or nothing), and a routing header
/// (`x-backprop-model`, for tests/service/routing.rs).
#[derive(Clone)]
pub(crate) struct Auth(Option<String>, Option<String>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in [("authorization", &self.0), (ROUTE_HEADER, &self.1)] {
            if let Some(v) = value {
                let v: MetadataValue<_> = v.parse().expect("ascii");
                req.metadata_mut().insert(key, v);
            }
        }
        Ok(req)
    }
}

pub(crate) type Authed = TrainerClient<InterceptedService<Channel, Auth>>;

fn client(srv: &TestServer, authorization: Option<&str>) -> Authed {
    TrainerClient::with_interceptor(
        srv.channel.clone(),
        Auth(authorization.map(String::from), None),
    )
}

/// A client without a token that sends `route` as the routing header of every call.
pub(crate) fn routed_client(srv: &TestServer, route: &str) -> Authed {
    TrainerClient::with_interceptor(srv.channel.clone(), Auth(None, Some(route.to_string())))
}

fn as_tenant(srv: &TestServer, token: &str) -> Authed {
    client(srv, Some(&format!("Bearer {token}")))
}

async fn create_as(c: &mut Authed) -> Result<String, tonic::Status> {
    c.create_model(pb::CreateModelRequest {
        spec: Some(wire_spec(3, &[], 2)),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().model_id)
}

async fn ids_of(c: &mut Authed) -> Vec<String> {
    let mut ids: Vec<String> = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .expect("ListModels")
        .into_inner()
        .models
        .into_iter()
        .map(|m| m.model_id)
        .collect();
    ids.sort();
    ids
}

async fn get(c: &mut Authed, id: &str) -> Result<pb::GetModelResponse, tonic::Status> {
    c.get_model(pb::GetModelRequest {
        model_id: id.to_string(),
        include_values: false,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn calls_without_a_known_bearer_token_are_unauthenticated() {
    let srv = server().await;
    let alice_wrongly = format!("Bearer {ALICE}x");
    let basic = format!("Basic {ALICE}");
    for authorization in [
        None,
        Some(alice_wrongly.as_str()),
        Some(basic.as_str()),
        Some(ALICE), // no scheme
        Some("Bearer "),
    ] {
        let mut c = client(&srv, authorization);
        let err = c
            .list_models(pb::ListModelsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{authorization:?}");
        let err = create_as(&mut c).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{authorization:?}");
        assert!(!err.message().contains(ALICE), "{err:?}");
    }
    // Nothing was created by the refused calls.
    assert!(ids_of(&mut as_tenant(&srv, ALICE)).await.is_empty());
    assert!(ids_of(&mut as_tenant(&srv, BOB)).await.is_empty());

    // Health needs no token; reflection does, like every other call.
    let health = srv
        .health()
        .check(tonic_health::pb::HealthCheckRequest {
            service: "backprop.v1.Trainer".into(),
        })
        .await
        .expect("health is open")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let list = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let err = ServerReflectionClient::new(srv.channel.clone())
        .server_reflection_info(tokio_stream::iter([list.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    ServerReflectionClient::with_interceptor(
        srv.channel.clone(),
        Auth(Some(format!("Bearer {BOB}")), None),
    )
    .server_reflection_info(tokio_stream::iter([list]))
    .await
    .expect("reflection with a token");
    srv.stop().await;
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_sessions() {
    let srv = server().await;
    let (mut alice, mut bob) = (as_tenant(&srv, ALICE), as_tenant(&srv, BOB));
    let a = create_as(&mut alice).await.unwrap();
    let b = create_as(&mut bob).await.unwrap();
    assert_eq!(ids_of(&mut alice).await, vec![a.clone()]);
    assert_eq!(ids_of(&mut bob).await, vec![b.clone()]);
    // Alice's other token is the same tenant.
    assert_eq!(
        ids_of(&mut as_tenant(&srv, ALICE_NEW)).await,
        vec![a.clone()]
    );

    // For Bob, Alice's model is exactly an unknown id: same code, same words.
    let unknown = "0".repeat(32);
    let never = get(&mut bob, &unknown).await.unwrap_err();
    let hers = get(&mut bob, &a).await.unwrap_err();
    assert_eq!(hers.code(), Code::NotFound);
    assert_eq!(hers.message(), never.message().replace(&unknown, &a));
    let batch = Batch::random(4, 3, 2, 1);
    let err = bob
        .train_step(pb::TrainStepRequest {
            model_id: a.clone(),
            x: Some(batch.tensor::<f32>()),
            labels: batch.labels.clone(),
            learning_rate: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = bob
        .forward(pb::ForwardRequest {
            model_id: a.clone(),
            x: Some(batch.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = bob
        .delete_model(pb::DeleteModelRequest {
            model_id: a.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Bob's attempts left Alice's model as it was; she trains it.
    let mine = get(&mut alice, &a).await.expect("still hers");
    assert_eq!(mine.step, 0);
    alice
        .train_step(pb::TrainStepRequest {
            model_id: a.clone(),
            x: Some(batch.tensor::<f32>()),
            labels: batch.labels.clone(),
            learning_rate: None,
        })
        .await
        .expect("her own model");
    assert_eq!(get(&mut alice, &a).await.unwrap().step, 1);
    alice
        .delete_model(pb::DeleteModelRequest { model_id: a })
        .await
        .expect("she deletes it");
    assert_eq!(ids_of(&mut bob).await, vec![b]);
    srv.stop().await;
}

/// A dataset of `rows` rows of 10 f32 values: `rows · (40 + 4)` bytes held.
async fn upload_as(c: &mut Authed, rows: usize) -> Result<String, tonic::Status> {
    let x: Vec<f32> = (0..rows * 10).map(|i| (i % 7) as f32).collect();
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % 2).collect();
    let chunks = upload_chunks(Rows::F32(&x), 10, &labels, "rows", 1 << 20);
    c.upload_dataset(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner().dataset_id)
}

async fn datasets_of(c: &mut Authed) -> usize {
    c.list_datasets(pb::ListDatasetsRequest::default())
        .await
        .expect("ListDatasets")
        .into_inner()
        .datasets
        .len()
}

/// Alice may hold 4,096 bytes of datasets (`max_dataset_bytes`): two of 1,760 fit, a third
/// is refused before it creates anything, her other token shares the cap, Bob has none,
/// and a delete makes room again.
#[tokio::test]
async fn per_tenant_dataset_limits() {
    let srv = server().await;
    let (mut alice, mut bob) = (as_tenant(&srv, ALICE), as_tenant(&srv, BOB));
    let first = upload_as(&mut alice, 40).await.expect("1,760 bytes");
    upload_as(&mut as_tenant(&srv, ALICE_NEW), 40)
        .await
        .expect("3,520 bytes in all");
    let err = upload_as(&mut alice, 40).await.unwrap_err();
    assert_reason(&err, Code::ResourceExhausted, "TENANT_DATASET_LIMIT");
    assert_eq!(
        quota(&err),
        (
            "max_dataset_bytes".to_string(),
            "this dataset needs 1760 bytes of the 4096 this tenant's datasets may hold \
             together (max_dataset_bytes in --auth-tokens)"
                .to_string()
        )
    );
    assert!(
        err.message()
            .contains("tenant alice may hold 4096 bytes of datasets")
            && err.message().contains("it holds 3520"),
        "{err:?}"
    );
    assert_eq!(
        datasets_of(&mut alice).await,
        2,
        "the refused upload made nothing"
    );
    // 576 bytes are left: 14 rows (616 bytes) do not fit, 13 (572) do.
    let err = upload_as(&mut alice, 14).await.unwrap_err();
    assert_reason(&err, Code::ResourceExhausted, "TENANT_DATASET_LIMIT");
    let last = upload_as(&mut alice, 13).await.expect("572 bytes fit");
    let err = upload_as(&mut alice, 1).await.unwrap_err();
    assert_reason(&err, Code::ResourceExhausted, "TENANT_DATASET_LIMIT");
    for _ in 0..3 {
        upload_as(&mut bob, 40)
            .await
            .expect("Bob has no cap of his own");
    }
    alice
        .delete_dataset(pb::DeleteDatasetRequest { dataset_id: first })
        .await
        .expect("delete");
    upload_as(&mut alice, 40)
        .await
        .expect("room again after the delete");
    assert_eq!(datasets_of(&mut alice).await, 3);
    alice
        .delete_dataset(pb::DeleteDatasetRequest { dataset_id: last })
        .await
        .expect("delete");
    srv.stop().await;
}

#[tokio::test]
async fn per_tenant_session_limits() {
    let srv = server().await;
    let (mut alice, mut bob) = (as_tenant(&srv, ALICE), as_tenant(&srv, BOB));
    let first = create_as(&mut alice).await.unwrap();
    create_as(&mut as_tenant(&srv, ALICE_NEW)).await.unwrap();
    let err = create_as(&mut alice).await.unwrap_err();
    assert_code(&err, Code::ResourceExhausted, "max_sessions");
    assert!(
        err.message().contains("alice holds its maximum of 2"),
        "{err:?}"
    );
    assert_eq!(ids_of(&mut alice).await.len(), 2);
    // Bob has no limit of his own and is not held back by Alice's.
    for _ in 0..3 {
        create_as(&mut bob).await.unwrap();
    }
    alice
        .delete_model(pb::DeleteModelRequest { model_id: first })
        .await
        .unwrap();
    create_as(&mut alice)
        .await
        .expect("room again after a delete");
    srv.stop().await;
}

/// What another tenant's call on Alice's model must answer.
pub(crate) enum Scope {
    /// Names a model: NOT_FOUND, exactly as for an unknown id.
    Model,
    /// Names a dataset: NOT_FOUND, exactly as for an unknown dataset id.
    Dataset,
    /// Names no model (checked otherwise below: ListModels does not show hers; what
    /// CreateModel and ImportModel make is Bob's).
    None,
}

/// Every Trainer method and how it is scoped (the calls themselves are in [`call_as`]).
/// A new RPC that is not in this table fails
/// `every_rpc_keeps_tenants_apart`; one in it that forgets the tenant check answers
/// something other than NOT_FOUND there.
pub(crate) fn cross_tenant_calls() -> Vec<(&'static str, Scope)> {
    vec![
        ("CreateModel", Scope::None),
        ("Forward", Scope::Model),
        ("Backward", Scope::Model),
        ("TrainStep", Scope::Model),
        ("TrainStream", Scope::Model),
        ("ApplyGradients", Scope::Model),
        ("Evaluate", Scope::Model),
        ("GetModel", Scope::Model),
        ("ListModels", Scope::None),
        ("DeleteModel", Scope::Model),
        ("UpdateModel", Scope::Model),
        ("GradientCheck", Scope::Model),
        ("TraceStep", Scope::Model),
        ("ExportModel", Scope::Model),
        ("ImportModel", Scope::None),
        ("UploadDataset", Scope::None),
        ("GetDataset", Scope::Dataset),
        ("ListDatasets", Scope::None),
        ("DeleteDataset", Scope::Dataset),
        ("Fit", Scope::Model),
        ("WatchFit", Scope::Model),
        ("CancelFit", Scope::Model),
        ("GetHistory", Scope::Model),
    ]
}

/// The call's status; no model id (it made none).
fn none<T>(r: Result<T, tonic::Status>) -> Result<Option<String>, tonic::Status> {
    r.map(|_| None)
}

/// Bob calls `method` on Alice's model `a` (or dataset `ds`) with a request that would
/// succeed for her.
pub(crate) async fn call_as(
    c: &mut Authed,
    method: &str,
    a: &str,
    ds: &str,
    file: &[u8],
) -> Result<Option<String>, tonic::Status> {
    let b = Batch::random(4, 3, 2, 1);
    let id = a.to_string();
    let grads = vec![
        named(
            "layers.0.weight",
            &ndarray::ArrayD::<f32>::zeros(vec![3, 2]),
        ),
        named("layers.0.bias", &ndarray::ArrayD::<f32>::zeros(vec![2])),
    ];
    let x = Some(b.tensor::<f32>());
    let labels = b.labels.clone();
    match method {
        "CreateModel" => c
            .create_model(pb::CreateModelRequest {
                spec: Some(wire_spec(3, &[], 2)),
                ..Default::default()
            })
            .await
            .map(|r| Some(r.into_inner().model_id)),
        "Forward" => none(
            c.forward(pb::ForwardRequest {
                model_id: id,
                x,
                labels,
                ..Default::default()
            })
            .await,
        ),
        "Backward" => none(
            c.backward(pb::BackwardRequest {
                model_id: id,
                x,
                labels,
                upstream: None,
                return_input_grad: true,
            })
            .await,
        ),
        "TrainStep" => none(
            c.train_step(pb::TrainStepRequest {
                model_id: id,
                x,
                labels,
                learning_rate: None,
            })
            .await,
        ),
        "ApplyGradients" => none(
            c.apply_gradients(pb::ApplyGradientsRequest {
                model_id: id,
                gradients: grads,
            })
            .await,
        ),
        "Evaluate" => none(
            c.evaluate(pb::EvaluateRequest {
                model_id: id,
                x,
                labels,
            })
            .await,
        ),
        "GetModel" => none(
            c.get_model(pb::GetModelRequest {
                model_id: id,
                include_values: true,
                ..Default::default()
            })
            .await,
        ),
        "ListModels" => none(c.list_models(pb::ListModelsRequest::default()).await),
        "DeleteModel" => none(
            c.delete_model(pb::DeleteModelRequest { model_id: id })
                .await,
        ),
        "UpdateModel" => none(
            c.update_model(pb::UpdateModelRequest {
                model_id: id,
                name: Some("taken over".into()),
                ..Default::default()
            })
            .await,
        ),
        "GradientCheck" => none(
            c.gradient_check(pb::GradientCheckRequest {
                model_id: id,
                x,
                labels,
                max_elements_per_parameter: 0,
            })
            .await,
        ),
        "TraceStep" => none(
            c.trace_step(pb::TraceStepRequest {
                model_id: id,
                x,
                labels,
                shapes_only: false,
            })
            .await,
        ),
        // The stream's first message: a leak would show there (the weights).
        // A stream's refusal is its batch's answer; as a status, so the checks are the same.
        "TrainStream" => {
            let first = pb::TrainStreamRequest {
                model_id: id,
                sequence: 1,
                x,
                labels,
                learning_rate: None,
            };
            let mut s = c
                .train_stream(tokio_stream::iter([first]))
                .await?
                .into_inner();
            let answer = s.message().await?.expect("an answer");
            match answer.result {
                Some(pb::train_stream_response::Result::Error(e)) => {
                    Err(tonic::Status::new(Code::from(e.code), e.message))
                }
                _ => Ok(None),
            }
        }
        "ExportModel" => {
            let mut s = c
                .export_model(pb::ExportModelRequest {
                    model_id: id,
                    chunk_bytes: 0,
                })
                .await?
                .into_inner();
            none(s.message().await)
        }
        "ImportModel" => {
            let sha: String = {
                use sha2::Digest;
                sha2::Sha256::digest(file)
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect()
            };
            let chunk = pb::CheckpointChunk {
                data: file.to_vec().into(),
                offset: 0,
                total_bytes: file.len() as u64,
                sha256: sha,
            };
            c.import_model(tokio_stream::iter([chunk]))
                .await
                .map(|r| Some(r.into_inner().model_id))
        }
        "UploadDataset" => {
            let x = [0.5f32; 6];
            let chunks = upload_chunks(Rows::F32(&x), 3, &[0, 1], "bob's", 1 << 20);
            none(c.upload_dataset(tokio_stream::iter(chunks)).await)
        }
        "GetDataset" => none(
            c.get_dataset(pb::GetDatasetRequest {
                dataset_id: ds.into(),
            })
            .await,
        ),
        "ListDatasets" => none(c.list_datasets(pb::ListDatasetsRequest::default()).await),
        "DeleteDataset" => none(
            c.delete_dataset(pb::DeleteDatasetRequest {
                dataset_id: ds.into(),
            })
            .await,
        ),
        "Fit" => {
            let mut s = c
                .fit(pb::FitRequest {
                    model_id: id,
                    dataset_id: ds.into(),
                    batch_size: 2,
                    epochs: 1,
                    ..Default::default()
                })
                .await?
                .into_inner();
            none(s.message().await)
        }
        "WatchFit" => {
            let mut s = c
                .watch_fit(pb::WatchFitRequest {
                    model_id: id,
                    from_event: 0,
                })
                .await?
                .into_inner();
            none(s.message().await)
        }
        "CancelFit" => none(c.cancel_fit(pb::CancelFitRequest { model_id: id }).await),
        "GetHistory" => none(c.get_history(pb::GetHistoryRequest { model_id: id }).await),
        other => panic!("no call for {other} in call_as"),
    }
}

/// Walks every Trainer method (the list comes from the service's own descriptor set):
/// each call Bob makes on Alice's model is NOT_FOUND with the words an unknown id gets,
/// none changes her model (its checkpoint is bit-identical afterwards), ListModels does
/// not show it, and what CreateModel and ImportModel make is Bob's, not hers.
#[tokio::test]
async fn every_rpc_keeps_tenants_apart() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut methods: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "backprop.v1")
        .flat_map(|f| f.service.iter())
        .filter(|s| s.name() == "Trainer")
        .flat_map(|s| s.method.iter().map(|m| m.name().to_string()))
        .collect();
    methods.sort();
    let table = cross_tenant_calls();
    let mut covered: Vec<String> = table.iter().map(|(m, _)| m.to_string()).collect();
    covered.sort();
    assert_eq!(
        covered, methods,
        "the cross-tenant table must name every Trainer method exactly once"
    );

    let srv = server().await;
    let (mut alice, mut bob) = (as_tenant(&srv, ALICE), as_tenant(&srv, BOB));
    let a = create_as(&mut alice).await.unwrap();
    let b = Batch::random(4, 3, 2, 1);
    alice
        .train_step(pb::TrainStepRequest {
            model_id: a.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            learning_rate: None,
        })
        .await
        .expect("she trains her model");
    let export = |c: &mut Authed, id: String| {
        let mut c = c.clone();
        async move {
            let mut s = c
                .export_model(pb::ExportModelRequest {
                    model_id: id,
                    chunk_bytes: 0,
                })
                .await?
                .into_inner();
            let mut file = Vec::new();
            while let Some(m) = s.message().await? {
                file.extend_from_slice(&m.data);
            }
            Ok::<_, tonic::Status>(file)
        }
    };
    // Her dataset (and a fit on it, so WatchFit and GetHistory have something to leak).
    let x = [0.25f32, 0.5, 0.75, 1.0, 1.25, 1.5];
    let ds = alice
        .upload_dataset(tokio_stream::iter(upload_chunks(
            Rows::F32(&x),
            3,
            &[1, 0],
            "hers",
            1 << 20,
        )))
        .await
        .expect("her dataset")
        .into_inner()
        .dataset_id;
    let mut fit = alice
        .fit(pb::FitRequest {
            model_id: a.clone(),
            dataset_id: ds.clone(),
            batch_size: 2,
            epochs: 1,
            ..Default::default()
        })
        .await
        .expect("her fit")
        .into_inner();
    while fit.message().await.expect("her fit's events").is_some() {}
    let hers = export(&mut alice, a.clone()).await.expect("her export");
    let unknown = "0".repeat(32);
    for (method, scope) in &table {
        let r = call_as(&mut bob, method, &a, &ds, &hers).await;
        match scope {
            Scope::Model | Scope::Dataset => {
                let err = r.expect_err(method);
                assert_eq!(err.code(), Code::NotFound, "{method}: {err:?}");
                // The very answer an unknown id gets: nothing tells "someone else's".
                let (never, theirs) = match scope {
                    Scope::Model => (call_as(&mut bob, method, &unknown, &ds, &hers).await, &a),
                    _ => (call_as(&mut bob, method, &a, &unknown, &hers).await, &ds),
                };
                let never = never.expect_err(method);
                assert_eq!(
                    err.message(),
                    never.message().replace(&unknown, theirs),
                    "{method}"
                );
            }
            Scope::None => {
                if let Some(made) = r.unwrap_or_else(|e| panic!("{method}: {e:?}")) {
                    assert_ne!(made, a, "{method}");
                    assert!(ids_of(&mut bob).await.contains(&made), "{method}: Bob's");
                    assert!(
                        !ids_of(&mut alice).await.contains(&made),
                        "{method}: not hers"
                    );
                }
            }
        }
        assert_eq!(
            export(&mut alice, a.clone()).await.expect("still hers"),
            hers,
            "{method} by another tenant changed her model"
        );
        assert!(
            !ids_of(&mut bob).await.contains(&a),
            "{method}: Bob lists hers"
        );
    }
    assert_eq!(ids_of(&mut alice).await, vec![a]);
    // Her dataset is still hers alone; Bob's own model cannot fit on it either.
    let dataset_ids = |c: &mut Authed| {
        let mut c = c.clone();
        async move {
            c.list_datasets(pb::ListDatasetsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .datasets
                .into_iter()
                .map(|d| d.dataset_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(dataset_ids(&mut alice).await, vec![ds.clone()]);
    assert!(!dataset_ids(&mut bob).await.contains(&ds));
    let own = create_as(&mut bob).await.unwrap();
    let err = bob
        .fit(pb::FitRequest {
            model_id: own,
            dataset_id: ds.clone(),
            batch_size: 2,
            epochs: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("no dataset"), "{}", err.message());
    srv.stop().await;
}
