//! Sessions run in parallel without disturbing each other, and calls on one session are
//! serialized: 32 sessions trained at once end bit-identical to the same sessions trained
//! one at a time (and to the engine); 50 TrainSteps fired at one session at once each get
//! their own step number, and no update is lost or torn.

use std::sync::Arc;

use backprop::model::{
    ActivationSpec, Adam, DType, HiddenSpec, InitSpec, LossSpec, Model, ModelSpec, Momentum,
    OptimizerSpec, RmsProp, Sgd,
};
use backprop::pb;
use support::*;
use tokio::sync::Barrier;

const SESSIONS: usize = 32;
const STEPS: u64 = 20;
const D: usize = 5;
const C: usize = 4;
const N: usize = 6;

/// Session `i`'s model: dtypes, losses and optimizers vary with i, as do seeds.
fn specs(i: usize) -> (pb::ModelSpec, ModelSpec) {
    let (kind, opt) = match i % 4 {
        0 => (pb::OptimizerKind::Sgd, OptimizerSpec::Sgd(Sgd { lr: 1e-2 })),
        1 => (
            pb::OptimizerKind::Momentum,
            OptimizerSpec::Momentum(Momentum {
                lr: 1e-2,
                momentum: 0.9,
                nesterov: false,
            }),
        ),
        2 => (
            pb::OptimizerKind::Rmsprop,
            OptimizerSpec::RmsProp(RmsProp {
                lr: 1e-2,
                decay: 0.99,
                eps: 1e-8,
            }),
        ),
        _ => (
            pb::OptimizerKind::Adam,
            OptimizerSpec::Adam(Adam {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            }),
        ),
    };
    let f64_model = i % 2 == 1;
    let softmax = (i / 2) % 2 == 1;
    let wire = pb::ModelSpec {
        input_dim: D as u32,
        hidden: vec![layer(7, pb::Activation::Relu)],
        num_classes: C as u32,
        loss: if softmax {
            pb::LossKind::Softmax
        } else {
            pb::LossKind::Svm
        } as i32,
        l2: 1e-3,
        optimizer: Some(pb::Optimizer {
            kind: kind as i32,
            ..Default::default()
        }),
        init: seeded(1000 + i as u64),
        dtype: if f64_model {
            pb::Dtype::F64
        } else {
            pb::Dtype::F32
        } as i32,
        ..Default::default()
    };
    let engine = ModelSpec {
        input_dim: D,
        hidden: vec![HiddenSpec {
            units: 7,
            activation: ActivationSpec::Relu,
        }],
        num_classes: C,
        bias: true,
        loss: if softmax {
            LossSpec::Softmax
        } else {
            LossSpec::Svm { margin: 1.0 }
        },
        l2: 1e-3,
        optimizer: opt,
        init: InitSpec::Auto,
        seed: 1000 + i as u64,
        dtype: if f64_model { DType::F64 } else { DType::F32 },
        standardize: None,
        class_names: vec![],
    };
    (wire, engine)
}

fn batch(i: usize, step: u64) -> Batch {
    Batch::random(N, D, C, (i as u64) << 32 | step)
}

/// What one session's training produced: every step's losses and step number, and the
/// final parameters (values included).
/// A step's number and the bits of its data, regularization and total loss.
type StepBits = (u64, u64, u64, u64);

#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    steps: Vec<StepBits>,
    params: pb::GetModelResponse,
}

async fn train_session(mut c: Client, i: usize, barrier: Option<Arc<Barrier>>) -> Outcome {
    let (wire, _) = specs(i);
    let (id, _) = create(&mut c, wire).await;
    if let Some(b) = barrier {
        b.wait().await;
    }
    let f64_model = i % 2 == 1;
    let mut steps = Vec::new();
    for s in 1..=STEPS {
        let b = batch(i, s);
        let x = if f64_model {
            b.tensor::<f64>()
        } else {
            b.tensor::<f32>()
        };
        let r = train(&mut c, &id, &b, x).await;
        let l = r.losses.unwrap();
        steps.push((
            r.step,
            l.data_loss.unwrap().to_bits(),
            l.reg_loss.to_bits(),
            l.total_loss.unwrap().to_bits(),
        ));
    }
    let mut params = timeless(get_values(&mut c, &id).await);
    params.model_id.clear(); // ids and times differ between runs; everything else must not
    Outcome { steps, params }
}

fn engine_outcome<T: Wire>(i: usize, spec: &ModelSpec) -> (Vec<StepBits>, Model<T>) {
    let mut m = engine::<T>(spec);
    let steps = (1..=STEPS)
        .map(|s| {
            let b = batch(i, s);
            let r = m
                .train_step(b.array::<T>().view(), &b.labels_usize())
                .unwrap();
            (
                r.step,
                r.losses.data.unwrap().to_bits(),
                r.losses.reg.to_bits(),
                r.losses.total().unwrap().to_bits(),
            )
        })
        .collect();
    (steps, m)
}

// Each scenario runs twice: with the server's default, where these tiny models compute
// inline on the async workers, and with every call sent through the compute pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_sessions_concurrently_equal_one_at_a_time() {
    thirty_two_sessions(test_config().inline_max_work).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_sessions_concurrently_equal_one_at_a_time_on_the_pool() {
    thirty_two_sessions(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_train_steps_on_one_session_are_serialized() {
    fifty_steps_on_one_session(test_config().inline_max_work).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_train_steps_on_one_session_are_serialized_on_the_pool() {
    fifty_steps_on_one_session(0).await;
}

async fn thirty_two_sessions(inline_max_work: u64) {
    let mut config = test_config();
    config.compute_threads = 4;
    config.inline_max_work = inline_max_work;
    let srv = TestServer::with_config(config).await;

    // One at a time.
    let mut sequential = Vec::new();
    for i in 0..SESSIONS {
        sequential.push(train_session(srv.trainer(), i, None).await);
    }

    // All at once: every session created first, then all released together.
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|i| tokio::spawn(train_session(srv.trainer(), i, Some(barrier.clone()))))
        .collect();
    let mut concurrent = Vec::new();
    for t in tasks {
        concurrent.push(t.await.expect("session task"));
    }

    for i in 0..SESSIONS {
        assert_eq!(
            concurrent[i], sequential[i],
            "session {i}: concurrent training differs from one at a time"
        );
        // And both are what the engine gives.
        let (_, spec) = specs(i);
        let got = &concurrent[i];
        if spec.dtype == DType::F64 {
            let (steps, m) = engine_outcome::<f64>(i, &spec);
            assert_eq!(got.steps, steps, "session {i}: losses vs engine");
            assert_params_eq(&format!("session {i}"), &got.params, &m);
        } else {
            let (steps, m) = engine_outcome::<f32>(i, &spec);
            assert_eq!(got.steps, steps, "session {i}: losses vs engine");
            assert_params_eq(&format!("session {i}"), &got.params, &m);
        }
    }
    let mut c = srv.trainer();
    assert_eq!(list_ids(&mut c).await.len(), 2 * SESSIONS);
    srv.stop().await;
}

async fn fifty_steps_on_one_session(inline_max_work: u64) {
    const CALLS: u64 = 50;
    const READS: usize = 20;
    let mut config = test_config();
    config.compute_threads = 4;
    config.inline_max_work = inline_max_work;
    // Every call may wait on the one session: this is about order, not the queue's bound.
    config.limits.max_session_waiters = CALLS as usize + READS;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let (wire, spec) = specs(1); // momentum, f64: state carries from step to step
    let (id, _) = create(&mut c, wire).await;

    // The same batch every time, so the k-th update gives the same result whichever
    // call makes it: the engine, trained sequentially, says what each step must be.
    let b = batch(1, 1);
    let mut m = engine::<f64>(&spec);
    let mut states = vec![m.net().scores(b.array::<f64>().view()).unwrap()];
    let mut losses = Vec::new();
    for _ in 0..CALLS {
        let r = m
            .train_step(b.array::<f64>().view(), &b.labels_usize())
            .unwrap();
        losses.push(r.losses.total().unwrap());
        states.push(m.net().scores(b.array::<f64>().view()).unwrap());
    }

    let barrier = Arc::new(Barrier::new(CALLS as usize + READS));
    let mut trains = Vec::new();
    for _ in 0..CALLS {
        let (mut c, id, b, barrier) = (srv.trainer(), id.clone(), b.clone(), barrier.clone());
        trains.push(tokio::spawn(async move {
            barrier.wait().await;
            train(&mut c, &id, &b, b.tensor::<f64>()).await
        }));
    }
    // Reads interleaved with the updates must each see one whole model state.
    let mut reads = Vec::new();
    for _ in 0..READS {
        let (mut c, id, b, barrier) = (srv.trainer(), id.clone(), b.clone(), barrier.clone());
        reads.push(tokio::spawn(async move {
            barrier.wait().await;
            c.forward(pb::ForwardRequest {
                model_id: id,
                x: Some(b.tensor::<f64>()),
                labels: vec![],
                ..Default::default()
            })
            .await
            .expect("Forward")
            .into_inner()
        }));
    }

    let mut steps = Vec::new();
    for t in trains {
        let r = t.await.expect("TrainStep task");
        let k = r.step;
        assert!((1..=CALLS).contains(&k), "step {k}");
        assert_same(
            &format!("loss reported with step {k}"),
            r.losses.unwrap().total_loss.unwrap(),
            losses[k as usize - 1],
        );
        steps.push(k);
    }
    steps.sort_unstable();
    assert_eq!(
        steps,
        (1..=CALLS).collect::<Vec<_>>(),
        "steps must be distinct"
    );
    for t in reads {
        let scores = t.await.expect("Forward task").scores.unwrap();
        let seen = states
            .iter()
            .position(|s| f64::values(&scores) == s.iter().copied().collect::<Vec<_>>());
        assert!(seen.is_some(), "a Forward saw a model between two steps");
    }

    let after = get_values(&mut c, &id).await;
    assert_eq!(after.step, CALLS);
    assert_params_eq("after 50 concurrent steps", &after, &m);
    let listed = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.models[0].step, CALLS);
    srv.stop().await;
}
