//! The real binary under a real memory cap (`ulimit -v`), with its default memory budget
//! (`--max-memory auto`, derived from that cap): the red team's attacks get the right
//! code and message, and the server stays up with every session intact.
//!
//! - a tall, thin batch (input_dim 1, 4096 hidden units, 4,000,000 rows: 16 MB asking for
//!   ~65 GB of activations) on Forward, Evaluate, TrainStep and Backward;
//! - a trace of a deep maxout net, every node within its per-node limit;
//! - many concurrent 4 MB TrainSteps on one session.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backprop::pb;
use support::*;
use tonic::Code;
use tonic::transport::Channel;

/// Virtual memory the server may map: enough for its threads' stacks and arenas and a
/// budget of half of it, far below what the attacks would allocate.
const ULIMIT_KIB: u64 = 4 << 20; // 4 GiB

struct Capped {
    child: Child,
    client: Client,
    log: PathBuf,
}

impl Capped {
    async fn start(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let address = dir.join(format!("limits-{name}-{}.addr", std::process::id()));
        let log = dir.join(format!("limits-{name}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&address);
        let script = format!(
            "ulimit -v {ULIMIT_KIB} && exec \"$0\" serve --listen 127.0.0.1:0 \
             --compute-threads 2 --address-file \"$1\""
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_backprop"))
            .arg(&address)
            .env("RUST_LOG", "info")
            .env_remove("BACKPROP_MAX_MEMORY")
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start backprop serve under ulimit -v");
        let start = Instant::now();
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(&address)
                && !a.is_empty()
            {
                break a;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let client = Client::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Capped { child, client, log }
    }

    /// Panics if the server has exited (e.g. aborted on a failed allocation).
    fn assert_alive(&mut self, after: &str) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("the server exited ({status}) after {after}; log:\n{log}");
        }
    }
}

impl Drop for Capped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn step_of(c: &mut Client, id: &str) -> u64 {
    get_values(c, id).await.step
}

#[tokio::test]
async fn the_red_teams_batches_are_refused_and_the_server_stays_up() {
    let mut s = Capped::start("batches").await;
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(
        log.contains("memory budget (--max-memory auto)") && log.contains("AddressSpace"),
        "the default budget comes from the address-space limit:\n{log}"
    );
    let c = &mut s.client;
    let (keep, _) = create(c, wire_spec(4, &[layer(8, pb::Activation::Relu)], 3)).await;
    let kb = Batch::random(8, 4, 3, 1);
    let step = pb::TrainStepRequest {
        model_id: keep.clone(),
        x: Some(kb.tensor::<f32>()),
        labels: kb.labels.clone(),
        learning_rate: None,
    };
    c.train_step(step.clone()).await.expect("a step");
    let before = get_values(c, &keep).await;

    let (id, _) = create(c, wire_spec(1, &[layer(4096, pb::Activation::Relu)], 3)).await;
    let tall = Batch::random(4_000_000, 1, 3, 2);
    // Refused before any work: over the per-call cap, or (Forward's 68 MB of scores
    // and predictions) over the message limit.
    let never = "so it can never";
    let e = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(tall.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "x");
    assert!(e.message().contains(never), "{}", e.message());
    let e = c
        .evaluate(pb::EvaluateRequest {
            model_id: id.clone(),
            x: Some(tall.tensor::<f32>()),
            labels: tall.labels.clone(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(never), "{}", e.message());
    let e = c
        .train_step(pb::TrainStepRequest {
            model_id: id.clone(),
            x: Some(tall.tensor::<f32>()),
            labels: tall.labels.clone(),
            learning_rate: None,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(never), "{}", e.message());
    let e = c
        .backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: Some(tall.tensor::<f32>()),
            labels: tall.labels.clone(),
            upstream: None,
            return_input_grad: true,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(never), "{}", e.message());
    s.assert_alive("the tall batches");

    // A deep maxout trace: 64 rows × 64 units per node, 128 layers of 16 pieces.
    let c = &mut s.client;
    let (deep, _) = create(c, wire_spec(64, &[maxout(64, 16); 128], 10)).await;
    let b = Batch::random(64, 64, 10, 3);
    let e = c
        .trace_step(pb::TraceStepRequest {
            model_id: deep.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            shapes_only: false,
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "x");
    assert!(e.message().contains("shapes_only"), "{}", e.message());
    s.assert_alive("the deep trace");

    // Follow-up calls succeed and every session is intact.
    let c = &mut s.client;
    assert_eq!(
        get_values(c, &keep).await,
        before,
        "the other session changed"
    );
    c.train_step(step).await.expect("a step after the attacks");
    assert_eq!(step_of(c, &keep).await, 2);
    assert_eq!(step_of(c, &id).await, 0);
    let mut ids = list_ids(c).await;
    ids.sort();
    let mut want = vec![keep, id, deep];
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_on_one_session_are_bounded_and_the_server_stays_up() {
    let mut s = Capped::start("waiters").await;
    let c = &mut s.client;
    // 4 MB TrainSteps: 1000 rows × 1000 inputs in f32.
    let (id, _) = create(c, wire_spec(1000, &[layer(256, pb::Activation::Relu)], 10)).await;
    let b = Batch::random(1000, 1000, 10, 4);
    let req = pb::TrainStepRequest {
        model_id: id.clone(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels.clone(),
        learning_rate: None,
    };
    let calls: Vec<_> = (0..120)
        .map(|_| {
            let (mut c, req) = (s.client.clone(), req.clone());
            tokio::spawn(async move { c.train_step(req).await })
        })
        .collect();
    let (mut ok, mut refused) = (0u64, 0u64);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
                assert!(
                    e.message().contains("--max-session-waiters")
                        || e.message().contains("--max-memory"),
                    "{}",
                    e.message()
                );
                refused += 1;
            }
        }
    }
    s.assert_alive("120 concurrent steps");
    assert!(refused > 0, "120 steps on one session, 64 may wait");
    assert_eq!(ok + refused, 120);
    let c = &mut s.client;
    assert_eq!(
        step_of(c, &id).await,
        ok,
        "every accepted step applied once"
    );
    c.train_step(req).await.expect("a step afterwards");
}
