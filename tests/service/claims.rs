//! README claims about sessions under load, each checked on a real server: steps on one
//! session apply in arrival order; a call whose deadline passes while it waits for its
//! session's lock, or for a compute thread, does no work; a full compute queue is refused
//! at once (while the queue is still full, not after waiting); the idle reaper removes
//! the session's file; a save that fails is counted in
//! `backprop_state_saves_total{outcome="error"}`.

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
        ..Default::default()
    })
    .await
    .expect("GetModel")
    .into_inner()
    .step
}

/// Starts `req` (a GradientCheck that holds its session) and returns once it has taken
/// its session's lock; the handle gives when it ended.
async fn hold(
    srv: &TestServer,
    c: &mut Client,
    req: pb::GradientCheckRequest,
) -> tokio::task::JoinHandle<Instant> {
    let (mut holder, id) = (srv.trainer(), req.model_id.clone());
    start_in_use(c, &id, move || {
        tokio::spawn(async move {
            holder.gradient_check(req).await.expect("the slow call");
            Instant::now()
        })
    })
    .await
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
    // The holder must outlast the sending of every step; on a loaded machine the sends
    // can take longer than the slow call, so a holder that came free too early is tried
    // again with twice the rows (the check itself stays: the last try must hold).
    let mut rows = 48;
    let (id, steps) = loop {
        let (id, _) = create(&mut c, slow_spec()).await;
        let mut slow = slow_request(&id);
        let b = Batch::random(rows, 16, 8, 3);
        (slow.x, slow.labels) = (Some(b.tensor::<f64>()), b.labels);
        let busy = hold(&srv, &mut c, slow).await;
        let mut steps = vec![];
        let mut last_sent = Instant::now();
        for k in 1..=STEPS {
            let (mut c, id, b) = (srv.trainer(), id.clone(), slow_batch(k));
            steps.push(tokio::spawn(async move {
                c.train_step(pb::TrainStepRequest {
                    model_id: id,
                    x: Some(b.tensor::<f64>()),
                    labels: b.labels.clone(),
                    learning_rate: None,
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
        if freed > last_sent {
            break (id, steps);
        }
        assert!(
            rows < 48 * 4,
            "the session came free before the last step was sent, even held by a \
             gradient check of {rows} rows: nothing was queued"
        );
        for t in steps {
            t.await.expect("step task");
        }
        rows *= 2;
    };
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
    let busy = hold(&srv, &mut c, slow_request(&id)).await;
    let b = slow_batch(1);
    let mut req = tonic::Request::new(pb::TrainStepRequest {
        model_id: id.clone(),
        x: Some(b.tensor::<f64>()),
        labels: b.labels.clone(),
        learning_rate: None,
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

/// A holder with about four times [`slow_request`]'s work (a second or more in a debug
/// build), so one compute thread stays busy through everything
/// [`a_full_pool_refuses_at_once_skips_the_expired_and_keeps_order`] does while it runs.
fn heavy_request(id: &str) -> pb::GradientCheckRequest {
    let b = Batch::random(64, 16, 8, 3);
    pb::GradientCheckRequest {
        model_id: id.to_string(),
        x: Some(b.tensor::<f64>()),
        labels: b.labels,
        max_elements_per_parameter: 0,
    }
}

fn heavy_spec() -> pb::ModelSpec {
    pb::ModelSpec {
        loss: pb::LossKind::Softmax as i32,
        dtype: pb::Dtype::F64 as i32,
        init: seeded(2),
        ..wire_spec(16, &[layer(96, pb::Activation::Tanh)], 8)
    }
}

const STARTED: &str = "backprop_compute_queue_wait_seconds_count";
const DEPTH: &str = "backprop_compute_queue_depth";
const RESERVED: &str = "backprop_memory_reserved_bytes";
const EXPIRED: &str = "backprop_expired_jobs_total";
const SHED_FULL: &str = r#"backprop_shed_requests_total{reason="queue_full"}"#;
const STEPS_TAKEN: &str = "backprop_train_steps_total";

/// Scrapes until `ok` holds (every 5 ms, at most 10 s) and returns that scrape.
async fn until(srv: &TestServer, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape(srv).await;
        if ok(&s) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn train_task(
    srv: &TestServer,
    id: &str,
    b: Batch,
    timeout: Option<Duration>,
) -> tokio::task::JoinHandle<Result<u64, tonic::Status>> {
    let (mut c, id) = (srv.trainer(), id.to_string());
    tokio::spawn(async move {
        let mut req = tonic::Request::new(pb::TrainStepRequest {
            model_id: id,
            x: Some(b.tensor::<f64>()),
            labels: b.labels.clone(),
            learning_rate: None,
        });
        if let Some(t) = timeout {
            req.set_timeout(t);
        }
        Ok(c.train_step(req).await?.into_inner().step)
    })
}

/// One compute thread, room for two waiting jobs, and a heavy call on the thread; every
/// step below waits for a signal from the server's own metrics, never for a guessed time:
/// a job taken by the thread (`…queue_wait_seconds_count`), jobs waiting
/// (`…compute_queue_depth`), a call admitted or let go (`…memory_reserved_bytes`: a call
/// reserves its peak on arrival, in the same poll in which it queues for its session's
/// lock, and gives it back when it ends).
///
/// - Ordering: TrainSteps on one session, each sent once the server has the one before,
///   are answered with steps 1, 2, … in that order, and the model is the engine's after
///   the batches in that order; the first holds the queue's first place, the others wait
///   for the session.
/// - Deadline: a TrainStep on another session whose deadline passes in the queue's second
///   place is dropped by the server while the heavy call still holds the thread, is
///   skipped when the thread reaches it (`backprop_expired_jobs_total`), and is never
///   applied.
/// - Overload: with both places taken, a further call is RESOURCE_EXHAUSTED (QUEUE_FULL,
///   counted as shed) while the heavy call is still running: refused at once, not after
///   waiting for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_refuses_at_once_skips_the_expired_and_keeps_order() {
    const STEPS: u64 = 4;
    let mut config = test_config();
    config.compute_threads = 1;
    config.queue_depth = 2;
    config.inline_max_work = 0;
    // A budget, so calls in flight show in the reserved gauge.
    config.limits.max_memory = Some(1 << 30);
    let srv = TestServer::with_metrics(config).await;
    let mut c = srv.trainer();
    let (heavy, _) = create(&mut c, heavy_spec()).await;
    let (stepped, _) = create(&mut c, slow_spec()).await;
    let (late, _) = create(&mut c, slow_spec()).await;
    let (small, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let before = scrape(&srv).await;
    let started = |s: &Scrape| delta(&before, s, STARTED);

    // The heavy call takes the one compute thread.
    let busy = hold(&srv, &mut c, heavy_request(&heavy)).await;
    let mut now = until(&srv, "the heavy call on the thread", |s| started(s) == 1.0).await;
    assert_eq!(now[DEPTH], 0.0);

    let mut steps = vec![];
    for k in 1..=STEPS {
        let held = now[RESERVED];
        steps.push(train_task(&srv, &stepped, slow_batch(k), None));
        now = until(&srv, "the step admitted", |s| s[RESERVED] > held).await;
        if k == 1 {
            // It had the session's lock at once: its job takes the first place.
            now = until(&srv, "the first step queued", |s| s[DEPTH] == 1.0).await;
        }
    }
    let last_sent = Instant::now();

    let held_before_late = now[RESERVED];
    let deadline = Duration::from_millis(150);
    let late_step = train_task(&srv, &late, slow_batch(9), Some(deadline));
    until(&srv, "the late step queued", |s| s[DEPTH] == 2.0).await;

    let b = Batch::random(4, 3, 2, 5);
    let e = c
        .forward(pb::ForwardRequest {
            model_id: small.clone(),
            x: Some(b.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .expect_err("the queue is full");
    let refused = Instant::now();
    assert_code(&e, Code::ResourceExhausted, "queue");
    assert_reason(&e, Code::ResourceExhausted, "QUEUE_FULL");

    let e = late_step
        .await
        .expect("late step task")
        .expect_err("the deadline passes");
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    // The server let the late call go (its reservation is back) while the heavy call
    // still had the thread: its job was still waiting then.
    let dropped = until(&srv, "the late call dropped", |s| {
        s[RESERVED] == held_before_late
    })
    .await;
    assert_eq!(
        started(&dropped),
        1.0,
        "the thread was free before the late step's deadline passed: make the holder heavier"
    );
    assert_eq!(dropped[DEPTH], 2.0, "the dropped job still holds its place");
    assert_eq!(delta(&before, &dropped, SHED_FULL), 1.0, "the refusal");
    assert_eq!(delta(&before, &dropped, EXPIRED), 0.0);

    let freed = busy.await.expect("the heavy call");
    assert!(
        refused < freed && last_sent < freed,
        "the heavy call ended before the refusal: the pool was not full"
    );
    for (k, t) in steps.into_iter().enumerate() {
        assert_eq!(
            t.await.expect("step task").expect("TrainStep"),
            k as u64 + 1,
            "the step sent {}th",
            k + 1
        );
    }
    // The late job was ahead of step 2's in the queue, so it has been taken by now.
    let after = scrape(&srv).await;
    assert_eq!(delta(&before, &after, EXPIRED), 1.0, "the late job skipped");
    assert_eq!(delta(&before, &after, STEPS_TAKEN), STEPS as f64);
    assert_eq!(delta(&before, &after, SHED_FULL), 1.0);
    assert_eq!(after[DEPTH], 0.0);
    assert_eq!(
        step_of(&mut c, &late).await,
        0,
        "the timed-out step was applied"
    );

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
        &get_values(&mut c, &stepped).await,
        &engine,
    );
    // Room again: the refused call is answered, the late session steps normally.
    c.forward(pb::ForwardRequest {
        model_id: small,
        x: Some(b.tensor::<f32>()),
        labels: vec![],
        ..Default::default()
    })
    .await
    .expect("Forward once the pool is free");
    let b = slow_batch(9);
    assert_eq!(train(&mut c, &late, &b, b.tensor::<f64>()).await.step, 1);
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
