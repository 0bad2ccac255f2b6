//! Durability that never lies, on real disk conditions (a tmpfs filled up, or remounted
//! read-only): a session whose file cannot be written refuses changes with UNAVAILABLE
//! and the reason (never the server's directory), the Trainer's health entry is
//! NOT_SERVING and `backprop_unsaved_sessions` counts it until a save succeeds again; a
//! CreateModel that cannot be saved leaves nothing behind; a delete that cannot remove
//! the file leaves the session served (and so does the idle reaper); a SIGTERM that
//! cannot save everything makes the binary exit non-zero.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use backprop::pb;
use backprop::server::Config;
use backprop::session::{Limits, PersistConfig};
use support::process::{Binary, Tmpfs, scratch, stderr};
use support::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

const TRAINER: &str = "backprop.v1.Trainer";

fn config(dir: PathBuf) -> Config {
    Config {
        persist: Some(PersistConfig {
            dir,
            every_steps: 1,
            interval: Duration::from_millis(100),
        }),
        ..test_config()
    }
}

fn spec() -> pb::ModelSpec {
    wire_spec(5, &[layer(8, pb::Activation::Relu)], 3)
}

fn step_request(id: &str, seed: u64) -> pb::TrainStepRequest {
    let b = Batch::random(4, 5, 3, seed);
    pb::TrainStepRequest {
        model_id: id.into(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels,
        learning_rate: None,
    }
}

/// Trains until a step is refused (bounded); returns the refusal and the last step
/// acknowledged before it.
async fn train_until_refused(c: &mut Client, id: &str) -> (tonic::Status, u64) {
    let start = Instant::now();
    let mut last = 0;
    loop {
        match c.train_step(step_request(id, last)).await {
            Ok(r) => last = r.into_inner().step,
            Err(s) => return (s, last),
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "TrainStep never failed although the state dir is unwritable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Trains until a step is accepted again (bounded); returns its step.
async fn train_until_accepted(c: &mut Client, id: &str) -> u64 {
    let start = Instant::now();
    loop {
        match c.train_step(step_request(id, 99)).await {
            Ok(r) => return r.into_inner().step,
            Err(s) => assert_eq!(s.code(), Code::Unavailable, "{s:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "TrainStep still refused after the disk recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn health(srv: &TestServer, service: &str) -> ServingStatus {
    let status = srv
        .health()
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    ServingStatus::try_from(status).expect("a serving status")
}

/// Polls until the Trainer's health entry is `want` (bounded: it follows asynchronously).
async fn wait_health(srv: &TestServer, want: ServingStatus) {
    let start = Instant::now();
    while health(srv, TRAINER).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "health of {TRAINER} never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_full_disk_refuses_changes_until_a_save_succeeds() {
    let dir = scratch("durability-full");
    let disk = Tmpfs::mount(dir.join("state"), 1 << 20);
    let srv = TestServer::with_metrics(config(disk.dir.clone())).await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, spec()).await;
    c.train_step(step_request(&id, 1)).await.expect("TrainStep");
    assert_eq!(health(&srv, TRAINER).await, ServingStatus::Serving);
    let before = scrape(&srv).await;
    assert_eq!(before["backprop_unsaved_sessions"], 0.0);

    disk.fill();
    let (refused, acked) = train_until_refused(&mut c, &id).await;
    assert_code(&refused, Code::Unavailable, "No space left on device");
    assert_reason(&refused, Code::Unavailable, "NOT_DURABLE");
    assert_eq!(retry_delay(&refused), Duration::from_secs(5));
    let msg = refused.message();
    assert!(msg.contains(&format!("{id}.safetensors")), "{msg}");
    assert!(msg.contains("refused until a save succeeds"), "{msg}");
    assert!(
        !msg.contains(&*disk.dir.to_string_lossy()) && !msg.contains(&*dir.to_string_lossy()),
        "the message reveals the state directory: {msg}"
    );
    // ApplyGradients is a change too; reads still work.
    let e = c
        .apply_gradients(pb::ApplyGradientsRequest {
            model_id: id.clone(),
            gradients: vec![],
        })
        .await
        .unwrap_err();
    assert_code(&e, Code::Unavailable, "No space left on device");
    let m = get_values(&mut c, &id).await;
    assert_eq!(m.step, acked, "a refused step changed the model");
    wait_health(&srv, ServingStatus::NotServing).await;
    assert_eq!(health(&srv, "").await, ServingStatus::Serving);
    let during = scrape(&srv).await;
    assert_eq!(during["backprop_unsaved_sessions"], 1.0);
    assert!(
        delta(
            &before,
            &during,
            r#"backprop_state_saves_total{outcome="error"}"#
        ) >= 1.0,
        "no failed save counted"
    );
    // A new session that cannot be saved is not created at all.
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(spec()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_code(&e, Code::Unavailable, "No space left on device");
    assert!(!e.message().contains(&*dir.to_string_lossy()), "{e:?}");
    assert_eq!(list_ids(&mut c).await, vec![id.clone()]);
    assert_eq!(disk.session_files(), vec![format!("{id}.safetensors")]);

    // Space comes back: the saver's retry clears the state and changes are accepted.
    disk.free();
    let step = train_until_accepted(&mut c, &id).await;
    assert_eq!(step, acked + 1);
    wait_health(&srv, ServingStatus::Serving).await;
    let after = scrape(&srv).await;
    assert_eq!(after["backprop_unsaved_sessions"], 0.0);
    assert!(
        delta(
            &during,
            &after,
            r#"backprop_state_saves_total{outcome="ok"}"#
        ) >= 1.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_delete_on_a_read_only_disk_keeps_the_session_and_its_file() {
    let dir = scratch("durability-ro-delete");
    let disk = Tmpfs::mount(dir.join("state"), 4 << 20);
    let srv = TestServer::with_config(config(disk.dir.clone())).await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, spec()).await;
    let file = format!("{id}.safetensors");

    disk.set_read_only(true);
    let e = c
        .delete_model(pb::DeleteModelRequest {
            model_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_code(&e, Code::Unavailable, "Read-only file system");
    assert!(e.message().contains(&file), "{e:?}");
    assert!(!e.message().contains(&*dir.to_string_lossy()), "{e:?}");
    // Still served, still on disk.
    assert_eq!(list_ids(&mut c).await, vec![id.clone()]);
    assert_eq!(get_values(&mut c, &id).await.step, 0);
    assert_eq!(disk.session_files(), vec![file.clone()]);
    // And the retry, once the disk is writable, deletes both.
    disk.set_read_only(false);
    c.delete_model(pb::DeleteModelRequest {
        model_id: id.clone(),
    })
    .await
    .expect("DeleteModel after the disk recovered");
    assert_eq!(list_ids(&mut c).await, Vec::<String>::new());
    assert_eq!(disk.session_files(), Vec::<String>::new());
    let e = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    srv.stop().await;
    // Nothing comes back at the next start.
    let srv = TestServer::with_config(config(disk.dir.clone())).await;
    assert_eq!(list_ids(&mut srv.trainer()).await, Vec::<String>::new());
    srv.stop().await;
}

#[tokio::test]
async fn the_idle_reaper_keeps_a_session_whose_file_cannot_be_removed() {
    let dir = scratch("durability-ro-reap");
    let disk = Tmpfs::mount(dir.join("state"), 4 << 20);
    let srv = TestServer::with_config(Config {
        limits: Limits {
            idle_ttl: Some(Duration::from_millis(200)),
            ..Limits::default()
        },
        ..config(disk.dir.clone())
    })
    .await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, spec()).await;
    disk.set_read_only(true);
    // Many reaper rounds (every 50 ms) past the TTL: ListModels does not count as a use.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(list_ids(&mut c).await, vec![id.clone()]);
    assert_eq!(disk.session_files(), vec![format!("{id}.safetensors")]);
    disk.set_read_only(false);
    let start = Instant::now();
    while !list_ids(&mut c).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the reaper never dropped the session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(disk.session_files(), Vec::<String>::new());
    srv.stop().await;
}

/// The binary: SIGTERM while a session cannot be saved exits non-zero and says so; once
/// the disk has room again the session comes back from its last good file.
#[tokio::test]
async fn sigterm_that_cannot_save_everything_exits_non_zero() {
    let dir = scratch("durability-sigterm");
    let disk = Tmpfs::mount(dir.join("state"), 1 << 20);
    let state = disk.dir.to_str().expect("utf-8 path").to_string();
    let args = [
        "--state-dir",
        &state,
        "--save-every-steps",
        "1",
        "--save-interval-secs",
        "0.1",
    ];
    let mut server = Binary::start(&dir, &args).await;
    let c = &mut server.client;
    let id = c
        .create_model(pb::CreateModelRequest {
            spec: Some(spec()),
            ..Default::default()
        })
        .await
        .expect("CreateModel")
        .into_inner()
        .model_id;
    let saved = c
        .train_step(step_request(&id, 1))
        .await
        .expect("TrainStep")
        .into_inner()
        .step;
    // Let the background save of that step land before the disk fills.
    tokio::time::sleep(Duration::from_millis(500)).await;
    disk.fill();
    let (refused, acked) = train_until_refused(c, &id).await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(acked >= saved);
    let code = server.terminate().await;
    assert_ne!(
        code,
        Some(0),
        "exit code {code:?} after a failed save at shutdown"
    );
    assert_eq!(code, Some(1));
    let log = stderr(&dir);
    assert!(
        log.contains("could not be saved to the state directory at shutdown"),
        "{log}"
    );

    disk.free();
    let mut server = Binary::start(&dir, &args).await;
    let m = server
        .client
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .expect("the session is back")
        .into_inner();
    assert!(
        (saved..=acked).contains(&m.step),
        "restored at step {}, saved {saved}, last acknowledged {acked}",
        m.step
    );
    // With room on the disk, SIGTERM saves everything and exits 0.
    server
        .client
        .train_step(step_request(&id, 7))
        .await
        .expect("TrainStep after the restart");
    assert_eq!(server.terminate().await, Some(0));
}
