//! The state directory in process: sessions (created, imported, trained) come back after
//! a graceful stop with every value; a delete removes the file; damaged files at start
//! are moved aside without stopping the server; unfinished writes are cleared.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backprop::pb;
use backprop::server::Config;
use backprop::session::PersistConfig;
use support::*;
use tonic::Code;

pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A server keeping its sessions in `dir`, saved only when asked (create, import,
/// UpdateModel, shutdown).
pub(crate) fn config(dir: &Path) -> Config {
    Config {
        persist: Some(PersistConfig {
            dir: dir.to_path_buf(),
            every_steps: 0,
            interval: Duration::from_secs(3600),
        }),
        ..test_config()
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The ids ListModels reports, sorted.
async fn listed_ids(c: &mut Client) -> Vec<String> {
    let models = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .expect("ListModels")
        .into_inner()
        .models;
    sorted(models.into_iter().map(|m| m.model_id).collect())
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn train(c: &mut Client, id: &str, steps: u64) {
    for s in 0..steps {
        let b = Batch::random(6, 5, 3, s);
        c.train_step(pb::TrainStepRequest {
            model_id: id.into(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels,
            learning_rate: None,
        })
        .await
        .expect("TrainStep");
    }
}

fn spec(kind: pb::OptimizerKind) -> pb::ModelSpec {
    pb::ModelSpec {
        optimizer: Some(pb::Optimizer {
            kind: kind as i32,
            ..Default::default()
        }),
        ..wire_spec(5, &[layer(7, pb::Activation::Tanh)], 3)
    }
}

#[tokio::test]
async fn sessions_come_back_after_a_graceful_stop() {
    let dir = scratch("graceful");
    let server = TestServer::with_metrics(config(&dir)).await;
    let mut c = server.trainer();
    let (a, _) = create(&mut c, spec(pb::OptimizerKind::Adam)).await;
    let (b, _) = create(&mut c, spec(pb::OptimizerKind::Momentum)).await;
    let (gone, _) = create(&mut c, spec(pb::OptimizerKind::Sgd)).await;
    // Created sessions are on disk before CreateModel answers.
    assert_eq!(files(&dir).len(), 3, "{:?}", files(&dir));
    let saved = scrape(&server).await;
    assert_eq!(saved[r#"backprop_state_saves_total{outcome="ok"}"#], 3.0);
    assert_eq!(saved["backprop_state_save_seconds_count"], 3.0);
    train(&mut c, &a, 7).await;
    train(&mut c, &b, 3).await;
    c.delete_model(pb::DeleteModelRequest {
        model_id: gone.clone(),
    })
    .await
    .unwrap();
    assert!(
        !files(&dir).iter().any(|f| f.starts_with(&gone)),
        "the file goes with the delete"
    );
    let before_a = get_values(&mut c, &a).await;
    let before_b = get_values(&mut c, &b).await;
    server.stop().await;

    let server = TestServer::with_config(config(&dir)).await;
    let mut c = server.trainer();
    assert_eq!(listed_ids(&mut c).await, sorted(vec![a.clone(), b.clone()]));
    assert_eq!(
        get_values(&mut c, &a).await,
        before_a,
        "same step, spec and values"
    );
    assert_eq!(get_values(&mut c, &b).await, before_b);
    let e = c
        .get_model(pb::GetModelRequest {
            model_id: gone,
            include_values: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn damaged_files_are_set_aside_and_the_server_starts() {
    let dir = scratch("damaged");
    let server = TestServer::with_config(config(&dir)).await;
    let mut c = server.trainer();
    let (good, _) = create(&mut c, spec(pb::OptimizerKind::Adam)).await;
    let (other, _) = create(&mut c, spec(pb::OptimizerKind::Sgd)).await;
    train(&mut c, &good, 2).await;
    server.stop().await;

    let file = |id: &str| dir.join(format!("{id}.safetensors"));
    // Garbage under a valid id; a truncated file; one session's file under another
    // id's name; a file whose name is no id; and an unfinished write.
    let bytes = std::fs::read(file(&other)).unwrap();
    std::fs::write(
        file("00000000000000000000000000000001"),
        b"not a checkpoint",
    )
    .unwrap();
    std::fs::write(
        file("00000000000000000000000000000002"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    std::fs::write(file("00000000000000000000000000000003"), &bytes).unwrap();
    std::fs::write(dir.join("notes.safetensors"), &bytes).unwrap();
    std::fs::write(dir.join(format!("{good}.safetensors.partial")), b"half").unwrap();

    let server = TestServer::with_config(config(&dir)).await;
    let mut c = server.trainer();
    assert_eq!(
        listed_ids(&mut c).await,
        sorted(vec![good.clone(), other.clone()]),
        "the good sessions are served"
    );
    assert_eq!(get_values(&mut c, &good).await.step, 2);
    let aside = files(&dir.join("corrupt"));
    assert_eq!(aside.len(), 4, "{aside:?}");
    for bad in ["0001", "0002", "0003"] {
        assert!(
            aside
                .iter()
                .any(|f| f.starts_with(&format!("0000000000000000000000000000{bad}.safetensors."))),
            "{bad} not set aside: {aside:?}"
        );
    }
    assert!(aside.iter().any(|f| f.starts_with("notes.safetensors.")));
    let mut left = files(&dir);
    left.retain(|f| f != "corrupt");
    assert_eq!(left.len(), 2, "only the two good files remain: {left:?}");
    server.stop().await;
}

#[tokio::test]
async fn imported_sessions_are_kept_too() {
    let dir = scratch("imported");
    let server = TestServer::start().await; // no state dir
    let mut c = server.trainer();
    let (id, _) = create(&mut c, spec(pb::OptimizerKind::Rmsprop)).await;
    train(&mut c, &id, 4).await;
    let mut out = tokio_stream::StreamExt::map(
        c.export_model(pb::ExportModelRequest {
            model_id: id.clone(),
            chunk_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner(),
        |c| c.unwrap(),
    );
    let mut chunks = vec![];
    while let Some(ch) = tokio_stream::StreamExt::next(&mut out).await {
        chunks.push(ch);
    }
    let before = get_values(&mut c, &id).await;

    let keeper = TestServer::with_config(config(&dir)).await;
    let mut k = keeper.trainer();
    let imported = k
        .import_model(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        files(&dir),
        vec![format!("{}.safetensors", imported.model_id)]
    );
    keeper.stop().await;
    let keeper = TestServer::with_config(config(&dir)).await;
    let mut k = keeper.trainer();
    let after = get_values(&mut k, &imported.model_id).await;
    assert_eq!(after.parameters, before.parameters);
    assert_eq!(after.step, 4);
    keeper.stop().await;
    server.stop().await;
}

/// Sends a bearer token with every call.
#[derive(Clone)]
struct Bearer(&'static str);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let v = format!("Bearer {}", self.0).parse().expect("ascii");
        req.metadata_mut().insert("authorization", v);
        Ok(req)
    }
}

#[tokio::test]
async fn a_restored_session_still_belongs_to_its_tenant() {
    use backprop::pb::trainer_client::TrainerClient;
    const ALICE: &str = "alice-0123456789abcdef";
    const BOB: &str = "bob-fedcba9876543210";
    let dir = scratch("tenants");
    let config = || Config {
        auth: Some(
            backprop::service::auth::Tokens::parse(&format!("{ALICE} alice\n{BOB} bob\n"))
                .expect("tokens"),
        ),
        ..config(&dir)
    };
    let server = TestServer::with_config(config()).await;
    let mut alice = TrainerClient::with_interceptor(server.channel.clone(), Bearer(ALICE));
    let id = alice
        .create_model(pb::CreateModelRequest {
            spec: Some(spec(pb::OptimizerKind::Sgd)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_id;
    server.stop().await;

    let server = TestServer::with_config(config()).await;
    let mut alice = TrainerClient::with_interceptor(server.channel.clone(), Bearer(ALICE));
    let mut bob = TrainerClient::with_interceptor(server.channel.clone(), Bearer(BOB));
    let get = |model_id: String| pb::GetModelRequest {
        model_id,
        include_values: false,
        ..Default::default()
    };
    alice
        .get_model(get(id.clone()))
        .await
        .expect("alice's own session");
    let e = bob.get_model(get(id.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let listed = bob
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.models.is_empty(), "bob sees no session");
    // The file names the tenant, never a token.
    let bytes = std::fs::read(dir.join(format!("{id}.safetensors"))).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("\"tenant\":\"alice\""));
    assert!(!text.contains(ALICE) && !text.contains(BOB));
    server.stop().await;
}
