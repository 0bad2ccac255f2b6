//! The admission estimate (`service::limits::estimate`) is at least the real peak: every
//! call is run through the real `TrainerService` (in this process, computing inline, so
//! nothing runs elsewhere) under a counting global allocator, its answer encoded too, and
//! the bytes allocated at the peak above what was live before the call are compared with
//! the estimate, for several nets (ReLU, maxout, deep no-bias tanh, f64 softmax with
//! Adam) and every call the estimator knows.
//!
//! One test only, in a binary of its own: the allocator counts the whole process, so
//! nothing may run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use backprop::model::ModelSpec;
use backprop::pb;
use backprop::pb::trainer_server::Trainer;
use backprop::service::convert::spec_from_proto;
use backprop::service::limits::{Call, estimate};
use backprop::service::{RequestLimits, TrainerService};
use backprop::session::{ComputePool, Limits, SessionStore};
use prost::Message;
use support::*;
use tonic::Request;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` (a call and the encoding of its answer) and returns the bytes it allocated at
/// its peak beyond what was live when it started.
async fn peak_of<F: std::future::Future<Output = usize>>(f: F) -> (usize, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let encoded = f.await;
    (PEAK.load(Ordering::SeqCst) - before, encoded)
}

fn nets() -> Vec<(&'static str, pb::ModelSpec)> {
    vec![
        (
            "relu 64→512→10",
            wire_spec(64, &[layer(512, pb::Activation::Relu)], 10),
        ),
        (
            "maxout 32→(128×4)→(64×3)→10",
            wire_spec(32, &[maxout(128, 4), maxout(64, 3)], 10),
        ),
        (
            "deep tanh, no bias",
            pb::ModelSpec {
                no_bias: true,
                l2: 1e-3,
                ..wire_spec(16, &[layer(96, pb::Activation::Tanh); 6], 5)
            },
        ),
        (
            "f64 softmax, Adam, l2",
            pb::ModelSpec {
                dtype: pb::Dtype::F64 as i32,
                loss: pb::LossKind::Softmax as i32,
                l2: 1e-4,
                optimizer: Some(pb::Optimizer {
                    kind: pb::OptimizerKind::Adam as i32,
                    ..Default::default()
                }),
                ..wire_spec(48, &[layer(256, pb::Activation::Elu), maxout(64, 2)], 12)
            },
        ),
    ]
}

#[tokio::test]
async fn the_estimate_is_at_least_the_real_peak() {
    let store = SessionStore::new(Limits::default());
    let pool = ComputePool::new(1, 16).expect("pool");
    let svc = TrainerService::new(store, pool, RequestLimits::default())
        .with_inline_max_work(u64::MAX)
        .with_max_message_bytes(1 << 30);
    let mut checked = 0;
    for (name, wire) in nets() {
        let spec: ModelSpec = spec_from_proto(Some(wire.clone())).expect("spec");
        let dtype_f64 = wire.dtype == pb::Dtype::F64 as i32;
        let id = svc
            .create_model(Request::new(pb::CreateModelRequest {
                spec: Some(wire),
                ..Default::default()
            }))
            .await
            .expect("create")
            .into_inner()
            .model_id;
        let (d, c) = (spec.input_dim, spec.num_classes);
        for rows in [1usize, 40, 300] {
            let b = Batch::random(rows, d, c, rows as u64);
            let x = || {
                if dtype_f64 {
                    b.tensor::<f64>()
                } else {
                    b.tensor::<f32>()
                }
            };
            let upstream = Batch::random(rows, c, c, 9);
            let up = || {
                if dtype_f64 {
                    upstream.tensor::<f64>()
                } else {
                    upstream.tensor::<f32>()
                }
            };
            let ok = |what: &str| format!("{name}, {rows} rows: {what}");
            let mut runs: Vec<(Call, usize, usize)> = Vec::new();

            let (p, e) = peak_of(async {
                let r = svc.forward(Request::new(pb::ForwardRequest {
                    model_id: id.clone(),
                    x: Some(x()),
                    labels: b.labels.clone(),
                    probabilities: true,
                }));
                r.await.expect("forward").into_inner().encode_to_vec().len()
            })
            .await;
            runs.push((
                Call::Forward {
                    labels: true,
                    probabilities: true,
                },
                p,
                e,
            ));
            let (p, e) = peak_of(async {
                let r = svc.forward(Request::new(pb::ForwardRequest {
                    model_id: id.clone(),
                    x: Some(x()),
                    labels: vec![],
                    ..Default::default()
                }));
                r.await.expect("forward").into_inner().encode_to_vec().len()
            })
            .await;
            runs.push((
                Call::Forward {
                    labels: false,
                    probabilities: false,
                },
                p,
                e,
            ));
            let (p, e) = peak_of(async {
                let r = svc.evaluate(Request::new(pb::EvaluateRequest {
                    model_id: id.clone(),
                    x: Some(x()),
                    labels: b.labels.clone(),
                }));
                r.await
                    .expect("evaluate")
                    .into_inner()
                    .encode_to_vec()
                    .len()
            })
            .await;
            runs.push((Call::Evaluate, p, e));
            let (p, e) = peak_of(async {
                let r = svc.backward(Request::new(pb::BackwardRequest {
                    model_id: id.clone(),
                    x: Some(x()),
                    labels: b.labels.clone(),
                    upstream: None,
                    return_input_grad: true,
                }));
                r.await
                    .expect("backward")
                    .into_inner()
                    .encode_to_vec()
                    .len()
            })
            .await;
            runs.push((
                Call::Backward {
                    upstream: false,
                    input_grad: true,
                },
                p,
                e,
            ));
            let (p, e) = peak_of(async {
                let r = svc.backward(Request::new(pb::BackwardRequest {
                    model_id: id.clone(),
                    x: Some(x()),
                    labels: vec![],
                    upstream: Some(up()),
                    return_input_grad: false,
                }));
                r.await
                    .expect("backward")
                    .into_inner()
                    .encode_to_vec()
                    .len()
            })
            .await;
            runs.push((
                Call::Backward {
                    upstream: true,
                    input_grad: false,
                },
                p,
                e,
            ));
            let (p, e) = peak_of(async {
                let r = svc.train_step(Request::new(pb::TrainStepRequest {
                    model_id: id.clone(),
                    x: Some(x()),
                    labels: b.labels.clone(),
                    learning_rate: None,
                }));
                r.await.expect("train").into_inner().encode_to_vec().len()
            })
            .await;
            runs.push((Call::TrainStep, p, e));
            if rows <= 40 {
                let (p, e) = peak_of(async {
                    let r = svc.gradient_check(Request::new(pb::GradientCheckRequest {
                        model_id: id.clone(),
                        x: Some(x()),
                        labels: b.labels.clone(),
                        max_elements_per_parameter: 2,
                    }));
                    r.await
                        .expect("gradcheck")
                        .into_inner()
                        .encode_to_vec()
                        .len()
                })
                .await;
                let checks = spec.parameter_shapes().len() as u64 * 2;
                runs.push((Call::GradientCheck { checks }, p, e));
            }
            let (p, e) = peak_of(async {
                let r = svc.trace_step(Request::new(pb::TraceStepRequest {
                    model_id: id.clone(),
                    x: Some(x()),
                    labels: b.labels.clone(),
                    shapes_only: true,
                }));
                r.await.expect("trace").into_inner().encode_to_vec().len()
            })
            .await;
            runs.push((Call::Trace { values: false }, p, e));
            let (p, e) = peak_of(async {
                let r = svc.get_model(Request::new(pb::GetModelRequest {
                    model_id: id.clone(),
                    include_values: true,
                    ..Default::default()
                }));
                r.await.expect("get").into_inner().encode_to_vec().len()
            })
            .await;
            runs.push((Call::GetModel { values: true }, p, e));

            for (call, measured, encoded) in runs {
                let cost = estimate(&spec, rows, call);
                assert!(
                    cost.peak_bytes >= measured as u64,
                    "{}: measured peak {measured} bytes > estimate {}",
                    ok(&format!("{call:?}")),
                    cost.peak_bytes
                );
                assert!(
                    cost.answer_bytes >= encoded as u64,
                    "{}: encoded answer {encoded} bytes > estimate {}",
                    ok(&format!("{call:?}")),
                    cost.answer_bytes
                );
                // Not absurdly pessimistic either: a server would refuse what it can do.
                assert!(
                    cost.peak_bytes <= 4 * measured as u64 + (5 << 20),
                    "{}: estimate {} is far above the measured {measured}",
                    ok(&format!("{call:?}")),
                    cost.peak_bytes
                );
                checked += 1;
            }
        }
    }
    // A trace with values on a net within its per-node limits (every value ≤ 4096).
    let wire = wire_spec(8, &[maxout(16, 3), layer(12, pb::Activation::Sigmoid)], 4);
    let spec = spec_from_proto(Some(wire.clone())).expect("spec");
    let id = svc
        .create_model(Request::new(pb::CreateModelRequest {
            spec: Some(wire),
            ..Default::default()
        }))
        .await
        .expect("create")
        .into_inner()
        .model_id;
    for rows in [1usize, 16, 64] {
        let b = Batch::random(rows, 8, 4, 5);
        let (measured, encoded) = peak_of(async {
            let r = svc.trace_step(Request::new(pb::TraceStepRequest {
                model_id: id.clone(),
                x: Some(b.tensor::<f32>()),
                labels: b.labels.clone(),
                shapes_only: false,
            }));
            r.await.expect("trace").into_inner().encode_to_vec().len()
        })
        .await;
        let cost = estimate(&spec, rows, Call::Trace { values: true });
        assert!(
            cost.peak_bytes >= measured as u64 && cost.answer_bytes >= encoded as u64,
            "trace with values, {rows} rows: measured {measured} / encoded {encoded}, \
             estimated {cost:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 4 * (3 * 8 + 2) + 3, "every run was compared");
}
