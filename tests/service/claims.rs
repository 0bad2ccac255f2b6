//! README claims about sessions under load, each checked on a real server: steps on one
//! session apply in arrival order; a call whose deadline passes while it waits for its
//! session's lock does no work; a full compute queue is refused at once (while the queue
//! is still full, not after waiting); the idle reaper removes the session's file; a save
//! that fails is counted in `backprop_state_saves_total{outcome="error"}`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backprop::model::Model;
use backprop::pb;
use backprop::server::Config;
use backprop::service::convert::spec_from_proto;
use backprop::session::{Limits, PersistConfig};
use support::*;
use tonic::Code;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("claims-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

async fn step_of(c: &mut Client, id: &str) -> u64 {
    c.get_model(pb::GetModelRequest {
        model_id: id.into(),
        include_values: false,
    })
    .await
    .expect("GetModel")
    .into_inner()
    .step
}

/// Holds `id`'s session with the slow GradientCheck; the handle gives when it ended.
fn hold(srv: &TestServer, id: &str) -> tokio::task::JoinHandle<Instant> {
    let (mut c, id) = (srv.trainer(), id.to_string());
    tokio::spawn(async move {
        c.gradient_check(slow_request(&id))
            .await
            .expect("the slow call");
        Instant::now()
    })
}

/// Session `slow`'s TrainStep batch number `k` (its dims: 16 inputs, 8 classes).
fn slow_batch(k: u64) -> Batch {
    Batch::random(6, 16, 8, 100 + k)
}

/// Steps sent one after another while the session is held (each 20 ms after the last, so
/// the order they reach the server is known) are applied in that order: the k-th sent is
/// answered with step k, and the model is the engine's after the batches in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_on_one_session_apply_in_arrival_order() {
    const STEPS: u64 = 5;
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, slow_spec()).await;
    // Idle for 100 ms first, so an idle time under 50 ms says the holder took the lock.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = hold(&srv, &id);
    wait_until_in_use(&mut c, &id, 0.05).await;
    let mut steps = vec![];
    let mut last_sent = Instant::now();
    for k in 1..=STEPS {
        let (mut c, id, b) = (srv.trainer(), id.clone(), slow_batch(k));
        steps.push(tokio::spawn(async move {
            c.train_step(pb::TrainStepRequest {
                model_id: id,
                x: Some(b.tensor::<f64>()),
                labels: b.labels.clone(),
            })
            .await
            .expect("TrainStep")
            .into_inner()
            .step
        }));
        last_sent = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let freed = busy.await.expect("slow task");
    assert!(
        freed > last_sent,
        "the session came free before the last step was sent: nothing was queued"
    );
    for (k, t) in steps.into_iter().enumerate() {
        assert_eq!(
            t.await.expect("step task"),
            k as u64 + 1,
            "the step sent {}th",
            k + 1
        );
    }
    let mut engine =
        Model::<f64>::new(spec_from_proto(Some(slow_spec())).expect("spec")).expect("engine");
    for k in 1..=STEPS {
        let b = slow_batch(k);
        engine
            .train_step(b.array::<f64>().view(), &b.labels_usize())
            .expect("engine step");
    }
    assert_params_eq(
        "after the queued steps",
        &get_values(&mut c, &id).await,
        &engine,
    );
    srv.stop().await;
}

/// A TrainStep whose deadline passes while the session is held by another call is never
/// applied, not even once the session comes free (the compute pool has a free thread, so
/// it is the session's lock it waited for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passes_waiting_for_the_session_does_no_work() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, slow_spec()).await;
    // Idle for 100 ms first, so an idle time under 50 ms says the holder took the lock.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = hold(&srv, &id);
    wait_until_in_use(&mut c, &id, 0.05).await;
    let b = slow_batch(1);
    let mut req = tonic::Request::new(pb::TrainStepRequest {
        model_id: id.clone(),
        x: Some(b.tensor::<f64>()),
        labels: b.labels.clone(),
    });
    let deadline = Duration::from_millis(60);
    req.set_timeout(deadline);
    let sent = Instant::now();
    let e = c.train_step(req).await.expect_err("the deadline passes");
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    let freed = busy.await.expect("slow task");
    assert!(
        freed > sent + deadline,
        "the session came free before the deadline: the step never waited for it"
    );
    // Time for a late step to land if it were going to.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        step_of(&mut c, &id).await,
        0,
        "a timed-out TrainStep was applied"
    );
    // The session works normally afterwards.
    let r = train(&mut c, &id, &b, b.tensor::<f64>()).await;
    assert_eq!(r.step, 1);
    srv.stop().await;
}

/// With the compute pool full (one thread running a slow call, its one waiting place
/// taken by a second), a further call is RESOURCE_EXHAUSTED while the slow calls are
/// still running: it was refused at once, not after waiting for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_at_once() {
    let mut config = test_config();
    config.compute_threads = 1;
    config.queue_depth = 1;
    config.inline_max_work = 0;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let (running, _) = create(&mut c, slow_spec()).await;
    let (waiting, _) = create(&mut c, slow_spec()).await;
    let (small, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    // Idle for 100 ms first, so an idle time under 50 ms says a holder took the lock
    // (right after CreateModel it is under 50 ms anyway).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = hold(&srv, &running);
    wait_until_in_use(&mut c, &running, 0.05).await;
    // The lock is taken before the job reaches the pool: a moment for the thread to
    // take it, so that the second slow call, on its own session, takes the pool's one
    // waiting place (a moment again for it to get there).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let queued = hold(&srv, &waiting);
    wait_until_in_use(&mut c, &waiting, 0.05).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = Batch::random(4, 3, 2, 5);
    let e = c
        .forward(pb::ForwardRequest {
            model_id: small.clone(),
            x: Some(b.tensor::<f32>()),
            labels: vec![],
        })
        .await
        .expect_err("the queue is full");
    let refused = Instant::now();
    assert_code(&e, Code::ResourceExhausted, "queue");
    let freed = busy.await.expect("the slow call");
    assert!(
        refused < freed,
        "the refusal came after the pool had room again: it waited"
    );
    queued.await.expect("the queued slow call");
    // Room again: the same call is answered.
    c.forward(pb::ForwardRequest {
        model_id: small,
        x: Some(b.tensor::<f32>()),
        labels: vec![],
    })
    .await
    .expect("Forward once the pool is free");
    srv.stop().await;
}

/// A session the reaper drops as idle loses its file too, so it does not come back at
/// the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_reaper_removes_the_sessions_file() {
    let dir = scratch("reaper");
    let config = Config {
        limits: Limits {
            idle_ttl: Some(Duration::from_millis(400)),
            ..Limits::default()
        },
        persist: Some(PersistConfig {
            dir: dir.clone(),
            every_steps: 0,
            interval: Duration::from_secs(3600),
        }),
        ..test_config()
    };
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let file = dir.join(format!("{id}.safetensors"));
    assert!(file.exists(), "the session's file is written on create");
    let start = Instant::now();
    while list_ids(&mut c).await.contains(&id) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the idle session was never reaped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!file.exists(), "the reaped session's file is still there");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("state dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
    srv.stop().await;
}

/// A background save that cannot be written (the state directory is gone) is counted as
/// `outcome="error"`; the ones before it as `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_is_counted_as_an_error() {
    let dir = scratch("save-error");
    let config = Config {
        persist: Some(PersistConfig {
            dir: dir.clone(),
            every_steps: 1,
            interval: Duration::from_millis(50),
        }),
        ..test_config()
    };
    let srv = TestServer::with_metrics(config).await;
    let mut c = srv.trainer();
    let before = scrape(&srv).await;
    let ok = r#"backprop_state_saves_total{outcome="ok"}"#;
    let error = r#"backprop_state_saves_total{outcome="error"}"#;
    let (id, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let after_create = scrape(&srv).await;
    assert_eq!(delta(&before, &after_create, ok), 1.0, "the save on create");
    assert_eq!(delta(&before, &after_create, error), 0.0);
    std::fs::remove_dir_all(&dir).expect("remove the state dir");
    let b = Batch::random(4, 3, 2, 1);
    train(&mut c, &id, &b, b.tensor::<f32>()).await;
    let start = Instant::now();
    loop {
        let now = scrape(&srv).await;
        if delta(&after_create, &now, error) >= 1.0 {
            assert_eq!(
                delta(&after_create, &now, ok),
                0.0,
                "a save into no directory"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no failed save was counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The session's last steps are not on disk, so the shutdown must say so.
    let err = srv.stop_with_error().await;
    assert!(err.contains("could not be saved"), "{err}");
}
