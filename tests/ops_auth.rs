//! `--auth-tokens`: calls without a known bearer token are UNAUTHENTICATED (health stays
//! open); tenants never see each other's sessions; per-tenant session limits. That no
//! token reaches the logs is checked on the real binary's output, in `ops_cli.rs`.
mod common;

use backprop::pb;
use backprop::pb::trainer_client::TrainerClient;
use backprop::service::auth::Tokens;
use common::*;
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
         {ALICE} alice max_sessions=2\n\
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

/// Sends `authorization` with every call (or nothing).
#[derive(Clone)]
struct Auth(Option<String>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            let v: MetadataValue<_> = v.parse().expect("ascii");
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

type Authed = TrainerClient<InterceptedService<Channel, Auth>>;

fn client(srv: &TestServer, authorization: Option<&str>) -> Authed {
    TrainerClient::with_interceptor(srv.channel.clone(), Auth(authorization.map(String::from)))
}

fn as_tenant(srv: &TestServer, token: &str) -> Authed {
    client(srv, Some(&format!("Bearer {token}")))
}

async fn create_as(c: &mut Authed) -> Result<String, tonic::Status> {
    c.create_model(pb::CreateModelRequest {
        spec: Some(wire_spec(3, &[], 2)),
    })
    .await
    .map(|r| r.into_inner().model_id)
}

async fn ids_of(c: &mut Authed) -> Vec<String> {
    let mut ids: Vec<String> = c
        .list_models(pb::ListModelsRequest {})
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
        let err = c.list_models(pb::ListModelsRequest {}).await.unwrap_err();
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
        Auth(Some(format!("Bearer {BOB}"))),
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
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = bob
        .forward(pb::ForwardRequest {
            model_id: a.clone(),
            x: Some(batch.tensor::<f32>()),
            labels: vec![],
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
