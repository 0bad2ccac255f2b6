//! `--tls-cert`/`--tls-key`/`--tls-client-ca`: with a CA and certificates this test makes
//! itself (rcgen), a TLS client trains; a plaintext client, a client that does not trust
//! the server's CA, and under mutual TLS a client without a certificate or with one from
//! another CA, are all refused.

use std::time::Duration;

use backprop::pb;
use backprop::pb::trainer_client::TrainerClient;
use support::pki::Pki;
use support::*;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn server_config(pki: &Pki, mutual: bool) -> backprop::server::Config {
    let client_ca = mutual.then(|| pki.path("ca.pem"));
    let tls = backprop::server::tls::load(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        client_ca.as_deref(),
    )
    .expect("the test's own PEM files load");
    backprop::server::Config {
        tls: Some(tls),
        ..test_config()
    }
}

/// A client trusting `ca`, presenting `identity` (`"client"`, `"stranger"`) if given.
fn client_tls(pki: &Pki, ca: &str, identity: Option<&str>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.read(ca)));
    if let Some(who) = identity {
        tls = tls.identity(Identity::from_pem(
            pki.read(&format!("{who}.pem")),
            pki.read(&format!("{who}.key")),
        ));
    }
    tls
}

fn https(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("client TLS config")
}

/// Connects through `endpoint` and lists the models: Ok only if the server accepted the
/// connection and answered. A refusal must come quickly, not as a hang.
async fn try_list(endpoint: Endpoint) -> Result<usize, String> {
    let attempt = async {
        let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
        TrainerClient::new(channel)
            .list_models(pb::ListModelsRequest::default())
            .await
            .map(|r| r.into_inner().models.len())
            .map_err(|s| format!("{s:?}"))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("a refused client gets an answer, not a hang")
}

#[tokio::test]
async fn a_tls_client_trains_and_others_are_refused() {
    let pki = Pki::new("tls");
    let client = client_tls(&pki, "ca.pem", None);
    let srv = TestServer::with_endpoint(server_config(&pki, false), false, |addr| {
        https(addr, client.clone())
    })
    .await;
    // Over TLS: create, train, list.
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let b = Batch::random(4, 3, 2, 1);
    assert_eq!(train(&mut c, &id, &b, b.tensor::<f32>()).await.step, 1);
    assert_eq!(list_ids(&mut c).await, vec![id.clone()]);
    assert_eq!(try_list(https(srv.addr, client.clone())).await, Ok(1));

    // Plaintext to the TLS port: refused.
    let plain = Endpoint::from_shared(format!("http://{}", srv.addr)).expect("uri");
    let err = try_list(plain)
        .await
        .expect_err("plaintext must be refused");
    assert!(!err.is_empty());
    // A client that trusts another CA refuses the server's certificate.
    let err = try_list(https(srv.addr, client_tls(&pki, "rogue-ca.pem", None)))
        .await
        .expect_err("an untrusted server certificate must be refused");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Nothing the refused clients did reached the store.
    assert_eq!(list_ids(&mut c).await, vec![id]);
    srv.stop().await;
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_from_the_client_ca() {
    let pki = Pki::new("mtls");
    let client = client_tls(&pki, "ca.pem", Some("client"));
    let srv = TestServer::with_endpoint(server_config(&pki, true), false, |addr| {
        https(addr, client.clone())
    })
    .await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    assert_eq!(try_list(https(srv.addr, client.clone())).await, Ok(1));

    // No client certificate.
    try_list(https(srv.addr, client_tls(&pki, "ca.pem", None)))
        .await
        .expect_err("a client without a certificate must be refused");
    // A certificate from a CA the server does not trust.
    try_list(https(
        srv.addr,
        client_tls(&pki, "ca.pem", Some("stranger")),
    ))
    .await
    .expect_err("a client certificate from another CA must be refused");
    // Plaintext.
    let plain = Endpoint::from_shared(format!("http://{}", srv.addr)).expect("uri");
    try_list(plain)
        .await
        .expect_err("plaintext must be refused");
    assert_eq!(list_ids(&mut c).await, vec![id]);
    srv.stop().await;
}

#[test]
fn unusable_tls_files_are_refused_naming_the_file() {
    let pki = Pki::new("tls-files");
    let load = |cert: &str, key: &str, ca: Option<&str>| {
        let ca = ca.map(|c| pki.path(c));
        backprop::server::tls::load(&pki.path(cert), &pki.path(key), ca.as_deref())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(load("server.pem", "server.key", Some("ca.pem")), Ok(()));
    let err = load("missing.pem", "server.key", None).unwrap_err();
    assert!(
        err.starts_with("--tls-cert ") && err.contains("missing.pem"),
        "{err}"
    );
    let err = load("server.key", "server.key", None).unwrap_err();
    assert!(
        err.contains("--tls-cert") && err.contains("CERTIFICATE"),
        "{err}"
    );
    let err = load("server.pem", "server.pem", None).unwrap_err();
    assert!(
        err.contains("--tls-key") && err.contains("PRIVATE KEY"),
        "{err}"
    );
    // A key that is not the certificate's.
    let err = load("server.pem", "client.key", None);
    assert!(err.is_err(), "a mismatched key must be refused at startup");
}
