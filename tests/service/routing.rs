//! A replica's side of routing (`--replica-id`, `service::route`): its ids carry its
//! name; every RPC checks the `x-backprop-model` header against the body (walked over
//! the same table of every Trainer method the tenant test uses) and against the
//! replica; a call for another replica's id, page token or dataset is refused with
//! WRONG_REPLICA naming the owner; a refused call leaves the model exactly as it was.

use backprop::pb;
use backprop::pb::dataset::{Rows, upload_chunks};
use backprop::service::route::ROUTE_HEADER;
use backprop::session::Replica;
use support::*;
use tonic::Code;
use tonic_types::StatusExt;

use crate::auth::{Authed, Scope, call_as, cross_tenant_calls, routed_client};

const HERE: &str = "backprop-0";

async fn replica() -> TestServer {
    let mut config = test_config();
    config.replica = Replica::named(HERE).expect("a replica name");
    TestServer::with_config(config).await
}

/// Asserts a WRONG_REPLICA refusal naming `owner` (None: an id without a replica part).
#[track_caller]
fn assert_wrong_replica(e: &tonic::Status, owner: Option<&str>, what: &str) {
    assert_eq!(e.code(), Code::FailedPrecondition, "{what}: {e:?}");
    assert_eq!(reason(e), "WRONG_REPLICA", "{what}");
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("replica").map(String::as_str),
        Some(HERE),
        "{what}"
    );
    assert_eq!(
        info.metadata.get("owner").map(String::as_str),
        owner,
        "{what}"
    );
    if let Some(owner) = owner {
        assert!(e.message().contains(owner), "{what}: {}", e.message());
    }
}

/// Every Trainer method with a routing header that disagrees: a call naming a model or
/// dataset whose header names another id is INVALID_ARGUMENT on the header; a call
/// naming none whose header names another replica is WRONG_REPLICA. None changes the
/// model, and a header naming the same id is accepted.
#[tokio::test]
async fn every_rpc_checks_its_routing_header() {
    let srv = replica().await;
    let mut c = srv.trainer();
    let (a, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let (b, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    assert!(
        a.starts_with("backprop-0.") && a.len() == HERE.len() + 1 + 32,
        "{a}"
    );
    let x = [0.25f32, 0.5, 0.75, 1.0, 1.25, 1.5];
    let ds = c
        .upload_dataset(tokio_stream::iter(upload_chunks(
            Rows::F32(&x),
            3,
            &[1, 0],
            "d",
            1 << 20,
        )))
        .await
        .expect("upload")
        .into_inner()
        .dataset_id;
    assert!(ds.starts_with("backprop-0."), "{ds}");
    let before = export_file(&mut c, &a).await;
    let mut other_id: Authed = routed_client(&srv, &b);
    let mut other_replica: Authed = routed_client(&srv, "backprop-1");
    for (method, scope) in cross_tenant_calls() {
        match scope {
            Scope::Model | Scope::Dataset => {
                let e = call_as(&mut other_id, method, &a, &ds, &before)
                    .await
                    .expect_err(method);
                assert_eq!(e.code(), Code::InvalidArgument, "{method}: {e:?}");
                assert!(
                    e.message()
                        .starts_with(&format!("{ROUTE_HEADER}: the routing header")),
                    "{method}: {}",
                    e.message()
                );
            }
            Scope::None => {
                let e = call_as(&mut other_replica, method, &a, &ds, &before)
                    .await
                    .expect_err(method);
                assert_wrong_replica(&e, Some("backprop-1"), method);
            }
        }
        assert_eq!(
            export_file(&mut c, &a).await,
            before,
            "{method} changed the model"
        );
    }
    // The same id in the header as in the body is what the clients send: accepted.
    let mut same: Authed = routed_client(&srv, &a);
    let got = same
        .get_model(pb::GetModelRequest {
            model_id: a.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .expect("a header that agrees");
    assert_eq!(got.into_inner().step, 0);
    // This replica's bare name routes calls that name nothing.
    let mut here: Authed = routed_client(&srv, HERE);
    let listed = here
        .list_models(pb::ListModelsRequest::default())
        .await
        .expect("ListModels")
        .into_inner();
    assert_eq!(listed.replica, HERE);
    assert_eq!(listed.models.len(), 2);
    // A header that is neither an id nor a replica name.
    let mut junk: Authed = routed_client(&srv, "Not A Replica");
    let e = junk
        .list_models(pb::ListModelsRequest::default())
        .await
        .expect_err("junk header");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with(ROUTE_HEADER), "{}", e.message());
    srv.stop().await;
}

/// Ids, page tokens and datasets of another replica are refused with the owner named,
/// whether or not a header came with them; an id with no replica part is not this
/// replica's either.
#[tokio::test]
async fn another_replicas_ids_are_wrong_replica() {
    let srv = replica().await;
    let mut c = srv.trainer();
    let (a, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let hex = &a[HERE.len() + 1..];
    let b = Batch::random(2, 3, 2, 1);
    let forward = |id: String| pb::ForwardRequest {
        model_id: id,
        x: Some(b.tensor::<f32>()),
        labels: Vec::new(),
        ..Default::default()
    };
    let theirs = format!("backprop-1.{hex}");
    let e = c
        .forward(forward(theirs.clone()))
        .await
        .expect_err("theirs");
    assert_wrong_replica(&e, Some("backprop-1"), "Forward");
    assert!(e.message().contains(&theirs), "{}", e.message());
    let e = c
        .forward(forward(hex.to_string()))
        .await
        .expect_err("plain");
    assert_wrong_replica(&e, None, "Forward on a plain id");
    // A page token another replica handed out.
    let e = c
        .list_models(pb::ListModelsRequest {
            page_size: 1,
            page_token: format!("p1:{theirs}"),
            ..Default::default()
        })
        .await
        .expect_err("their token");
    assert_wrong_replica(&e, Some("backprop-1"), "ListModels page_token");
    // A fit of this replica's model on another replica's dataset.
    let e = c
        .fit(pb::FitRequest {
            model_id: a.clone(),
            dataset_id: format!("backprop-2.{hex}"),
            batch_size: 2,
            epochs: 1,
            ..Default::default()
        })
        .await
        .expect_err("their dataset");
    assert_wrong_replica(&e, Some("backprop-2"), "Fit dataset_id");
    // Malformed ids are the body's own error, as before.
    let e = c
        .forward(forward("backprop-1.xyz".into()))
        .await
        .expect_err("bad");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("model_id: "), "{}", e.message());
    // Without --replica-id, a replica-named id belongs elsewhere too.
    let plain = TestServer::start().await;
    let e = plain
        .trainer()
        .forward(forward(a.clone()))
        .await
        .expect_err("a replica's id on a plain server");
    assert_eq!(reason(&e), "WRONG_REPLICA");
    assert!(e.message().contains("no --replica-id"), "{}", e.message());
    plain.stop().await;
    srv.stop().await;
}
