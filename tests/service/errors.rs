//! Every error path returns its code, names the offending field (in the message and as a
//! `google.rpc.BadRequest` field violation for INVALID_ARGUMENT), and leaves the model
//! bit-identical: parameters and step (GetModel before and after, and against an engine
//! mirror), and optimizer state (the next TrainStep still matches the mirror exactly).

use std::time::Duration;

use backprop::model::{
    ActivationSpec, DType, HiddenSpec, InitSpec, LossSpec, Model, ModelSpec, Momentum,
    OptimizerSpec,
};
use backprop::pb;
use backprop::server::Config;
use support::*;
use tonic::{Code, Status};

const D: usize = 3;
const C: usize = 3;

/// A trained session (momentum, so optimizer state matters) and its engine mirror.
struct Fixture<T: Wire> {
    srv: TestServer,
    c: Client,
    id: String,
    mirror: Model<T>,
    before: pb::GetModelResponse,
}

impl<T: Wire> Fixture<T> {
    async fn new() -> Self {
        Self::with_config(test_config()).await
    }

    async fn with_config(config: Config) -> Self {
        let srv = TestServer::with_config(config).await;
        let mut c = srv.trainer();
        let wire = pb::ModelSpec {
            input_dim: D as u32,
            hidden: vec![layer(4, pb::Activation::Relu)],
            num_classes: C as u32,
            l2: 0.01,
            optimizer: Some(pb::Optimizer {
                kind: pb::OptimizerKind::Momentum as i32,
                learning_rate: Some(0.1),
                ..Default::default()
            }),
            init: seeded(5),
            dtype: T::DTYPE as i32,
            ..Default::default()
        };
        let (id, _) = create(&mut c, wire).await;
        let mut mirror = engine::<T>(&ModelSpec {
            input_dim: D,
            hidden: vec![HiddenSpec {
                units: 4,
                activation: ActivationSpec::Relu,
            }],
            num_classes: C,
            bias: true,
            loss: LossSpec::Svm { margin: 1.0 },
            l2: 0.01,
            optimizer: OptimizerSpec::Momentum(Momentum {
                lr: 0.1,
                momentum: 0.9,
                nesterov: false,
            }),
            init: InitSpec::Auto,
            seed: 5,
            dtype: if T::DTYPE == pb::Dtype::F64 {
                DType::F64
            } else {
                DType::F32
            },
            standardize: None,
            class_names: vec![],
        });
        for s in 0..2 {
            let b = Batch::random(4, D, C, 50 + s);
            train(&mut c, &id, &b, b.tensor::<T>()).await;
            mirror
                .train_step(b.array::<T>().view(), &b.labels_usize())
                .unwrap();
        }
        let before = get_values(&mut c, &id).await;
        assert_params_eq("fixture", &before, &mirror);
        Fixture {
            srv,
            c,
            id,
            mirror,
            before,
        }
    }

    /// The model is exactly as it was before the rejected calls.
    async fn assert_unchanged(&mut self, after_what: &str) {
        let after = get_values(&mut self.c, &self.id).await;
        assert_same_snapshot(&self.before, &after);
        assert_params_eq(after_what, &after, &self.mirror);
        let listed = self
            .c
            .list_models(pb::ListModelsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let me = listed
            .models
            .iter()
            .find(|m| m.model_id == self.id)
            .unwrap();
        assert_eq!(me.step, self.mirror.step(), "{after_what}: listed step");
    }

    /// One more good step on both: hidden optimizer state was not touched either.
    async fn finish(mut self) {
        self.assert_unchanged("end").await;
        let b = Batch::random(4, D, C, 99);
        let r = train(&mut self.c, &self.id, &b, b.tensor::<T>()).await;
        let want = self
            .mirror
            .train_step(b.array::<T>().view(), &b.labels_usize())
            .unwrap();
        assert_eq!(r.step, want.step);
        assert_same(
            "loss after errors",
            r.losses.unwrap().total_loss.unwrap(),
            want.losses.total().unwrap(),
        );
        let after = get_values(&mut self.c, &self.id).await;
        assert_params_eq("step after errors", &after, &self.mirror);
        self.srv.stop().await;
    }

    fn good_batch(&self) -> Batch {
        Batch::random(4, D, C, 7)
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Forward,
    Backward,
    TrainStep,
    Evaluate,
    GradientCheck,
}

const BATCH_RPCS: [Rpc; 5] = [
    Rpc::Forward,
    Rpc::Backward,
    Rpc::TrainStep,
    Rpc::Evaluate,
    Rpc::GradientCheck,
];

/// Calls a batch RPC with X and labels; only the outcome matters.
async fn call(
    c: &mut Client,
    rpc: Rpc,
    id: &str,
    x: Option<pb::Tensor>,
    labels: Vec<u32>,
) -> Result<(), Status> {
    let model_id = id.to_string();
    match rpc {
        Rpc::Forward => c
            .forward(pb::ForwardRequest {
                model_id,
                x,
                labels,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::Backward => c
            .backward(pb::BackwardRequest {
                model_id,
                x,
                labels,
                upstream: None,
                return_input_grad: true,
            })
            .await
            .map(drop),
        Rpc::TrainStep => c
            .train_step(pb::TrainStepRequest {
                model_id,
                x,
                labels,
                learning_rate: None,
            })
            .await
            .map(drop),
        Rpc::Evaluate => c
            .evaluate(pb::EvaluateRequest {
                model_id,
                x,
                labels,
            })
            .await
            .map(drop),
        Rpc::GradientCheck => c
            .gradient_check(pb::GradientCheckRequest {
                model_id,
                x,
                labels,
                max_elements_per_parameter: 0,
            })
            .await
            .map(drop),
    }
}

fn f32_tensor(shape: &[u32], values: Vec<f32>) -> pb::Tensor {
    pb::Tensor {
        shape: shape.to_vec(),
        values,
        values_f64: vec![],
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// INVALID_ARGUMENT on batches

#[tokio::test]
async fn bad_x_shapes_are_rejected_naming_x() {
    let mut f = Fixture::<f32>::new().await;
    let (id, good) = (f.id.clone(), f.good_batch());
    let labels4 = good.labels.clone();
    let cases: Vec<(&str, Option<pb::Tensor>, Vec<u32>, &str)> = vec![
        (
            "wrong D",
            Some(f32_tensor(&[4, 4], vec![0.5; 16])),
            labels4.clone(),
            "expected shape [N, 3]",
        ),
        (
            "values length ≠ product of shape",
            Some(f32_tensor(&[4, 3], vec![0.5; 11])),
            labels4.clone(),
            "needs 12 values, got 11",
        ),
        (
            "too many values",
            Some(f32_tensor(&[4, 3], vec![0.5; 13])),
            labels4.clone(),
            "needs 12 values, got 13",
        ),
        (
            "empty batch",
            Some(f32_tensor(&[0, 3], vec![])),
            vec![],
            "empty",
        ),
        ("missing x", None, labels4.clone(), "required"),
        ("1-D x", Some(f32_tensor(&[3], vec![0.5; 3])), vec![0], "x"),
        (
            "3-D x",
            Some(f32_tensor(&[1, 4, 3], vec![0.5; 12])),
            vec![0],
            "x",
        ),
        ("no shape", Some(f32_tensor(&[], vec![0.5])), vec![0], "x"),
        (
            "both values and values_f64",
            Some(pb::Tensor {
                shape: vec![4, 3],
                values: vec![0.5; 12],
                values_f64: vec![0.5; 12],
                ..Default::default()
            }),
            labels4.clone(),
            "not several",
        ),
    ];
    for (what, x, labels, needle) in cases {
        for rpc in BATCH_RPCS {
            let err = call(&mut f.c, rpc, &id, x.clone(), labels.clone())
                .await
                .expect_err(what);
            assert_invalid(&err, "x");
            assert!(
                err.message().contains(needle),
                "{rpc:?} {what}: {:?} lacks {needle:?}",
                err.message()
            );
        }
        f.assert_unchanged(what).await;
    }
    f.finish().await;
}

#[tokio::test]
async fn nan_and_inf_in_x_are_rejected_f32() {
    let mut f = Fixture::<f32>::new().await;
    let id = f.id.clone();
    let good = f.good_batch();
    for (bad, shown) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let mut x = good.tensor::<f32>();
        x.values[7] = bad;
        for rpc in BATCH_RPCS {
            let err = call(&mut f.c, rpc, &id, Some(x.clone()), good.labels.clone())
                .await
                .expect_err("non-finite x");
            assert_invalid(&err, "x");
            assert!(
                err.message().contains("index 7") && err.message().contains(shown),
                "{rpc:?}: {:?}",
                err.message()
            );
        }
    }
    // An f64 value too big for an f32 model becomes inf on conversion: still rejected.
    let mut x = good.tensor::<f64>();
    x.values_f64[2] = 1e300;
    let err = call(&mut f.c, Rpc::TrainStep, &id, Some(x), good.labels.clone())
        .await
        .unwrap_err();
    assert_invalid(&err, "x");
    f.finish().await;
}

#[tokio::test]
async fn nan_and_inf_in_x_are_rejected_f64() {
    let mut f = Fixture::<f64>::new().await;
    let id = f.id.clone();
    let good = f.good_batch();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut x = good.tensor::<f64>();
        x.values_f64[0] = bad;
        for rpc in BATCH_RPCS {
            let err = call(&mut f.c, rpc, &id, Some(x.clone()), good.labels.clone())
                .await
                .expect_err("non-finite x");
            assert_invalid(&err, "x");
            assert!(err.message().contains("not finite"), "{:?}", err.message());
        }
    }
    f.finish().await;
}

#[tokio::test]
async fn label_errors_name_the_label() {
    let mut f = Fixture::<f32>::new().await;
    let id = f.id.clone();
    let good = f.good_batch();
    let x = good.tensor::<f32>();
    for rpc in BATCH_RPCS {
        // Out of range: C = 3, so label 3 at index 2.
        let err = call(&mut f.c, rpc, &id, Some(x.clone()), vec![0, 1, 3, 2])
            .await
            .unwrap_err();
        assert_invalid(&err, "labels[2]");
        assert!(err.message().contains("out of range [0, 3)"), "{err:?}");
        // Far out of range.
        let err = call(&mut f.c, rpc, &id, Some(x.clone()), vec![0, 1, 2, u32::MAX])
            .await
            .unwrap_err();
        assert_invalid(&err, "labels[3]");
        // Too few and too many.
        for labels in [vec![0, 1, 2], vec![0, 1, 2, 0, 1]] {
            let n = labels.len();
            let err = call(&mut f.c, rpc, &id, Some(x.clone()), labels)
                .await
                .unwrap_err();
            assert_invalid(&err, "labels");
            assert!(
                err.message().contains("expected 4 labels"),
                "{rpc:?} {n}: {err:?}"
            );
        }
    }
    // Labels are required except by Forward (and Backward with upstream).
    for rpc in [
        Rpc::Backward,
        Rpc::TrainStep,
        Rpc::Evaluate,
        Rpc::GradientCheck,
    ] {
        let err = call(&mut f.c, rpc, &id, Some(x.clone()), vec![])
            .await
            .unwrap_err();
        assert_invalid(&err, "labels");
    }
    f.finish().await;
}

#[tokio::test]
async fn backward_target_errors() {
    let mut f = Fixture::<f32>::new().await;
    let id = f.id.clone();
    let good = f.good_batch();
    let up = Batch::random(4, C, C, 8).tensor::<f32>();
    let backward = |labels: Vec<u32>, upstream: Option<pb::Tensor>| pb::BackwardRequest {
        model_id: id.clone(),
        x: Some(good.tensor::<f32>()),
        labels,
        upstream,
        return_input_grad: true,
    };
    let cases = vec![
        (
            "both",
            backward(good.labels.clone(), Some(up.clone())),
            "upstream",
            "not both",
        ),
        ("neither", backward(vec![], None), "labels", "upstream"),
        (
            "upstream rows",
            backward(vec![], Some(f32_tensor(&[3, 3], vec![0.1; 9]))),
            "upstream",
            "expected shape [4, 3]",
        ),
        (
            "upstream cols",
            backward(vec![], Some(f32_tensor(&[4, 2], vec![0.1; 8]))),
            "upstream",
            "expected shape [4, 3]",
        ),
        (
            "upstream 1-D",
            backward(vec![], Some(f32_tensor(&[12], vec![0.1; 12]))),
            "upstream",
            "expected shape [4, 3]",
        ),
        (
            "upstream values length",
            backward(vec![], Some(f32_tensor(&[4, 3], vec![0.1; 10]))),
            "upstream",
            "needs 12 values, got 10",
        ),
        (
            "upstream NaN",
            backward(vec![], {
                let mut u = up.clone();
                u.values[5] = f32::NAN;
                Some(u)
            }),
            "upstream",
            "not finite",
        ),
    ];
    for (what, req, field, needle) in cases {
        let err = f.c.backward(req).await.expect_err(what);
        assert_invalid(&err, field);
        assert!(err.message().contains(needle), "{what}: {err:?}");
    }
    f.finish().await;
}

// ---------------------------------------------------------------------------------------
// INVALID_ARGUMENT on specs

#[tokio::test]
async fn bad_specs_are_rejected_and_create_nothing() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let base = || wire_spec(3, &[layer(4, pb::Activation::Relu)], 2);
    let with_layer = |h: pb::HiddenLayer| wire_spec(3, &[h], 2);
    let with_opt = |o: pb::Optimizer| pb::ModelSpec {
        optimizer: Some(o),
        ..base()
    };
    let opt = |kind: pb::OptimizerKind| pb::Optimizer {
        kind: kind as i32,
        ..Default::default()
    };
    let leaky = |s: f64| pb::HiddenLayer {
        leaky_slope: Some(s),
        ..layer(4, pb::Activation::LeakyRelu)
    };
    let cases: Vec<(&str, Option<pb::ModelSpec>, &str)> = vec![
        ("no spec", None, "spec"),
        ("input_dim 0", Some(wire_spec(0, &[], 2)), "spec.input_dim"),
        (
            "input_dim absurd",
            Some(wire_spec((1 << 24) + 1, &[], 2)),
            "spec.input_dim",
        ),
        (
            "num_classes 1",
            Some(wire_spec(3, &[], 1)),
            "spec.num_classes",
        ),
        (
            "num_classes 0",
            Some(wire_spec(3, &[], 0)),
            "spec.num_classes",
        ),
        (
            "units 0",
            Some(with_layer(layer(0, pb::Activation::Relu))),
            "spec.hidden[0].units",
        ),
        (
            "units 0 in the second layer",
            Some(wire_spec(
                3,
                &[
                    layer(4, pb::Activation::Relu),
                    layer(0, pb::Activation::Tanh),
                ],
                2,
            )),
            "spec.hidden[1].units",
        ),
        (
            "maxout_pieces 1",
            Some(with_layer(maxout(4, 1))),
            "spec.hidden[0].maxout_pieces",
        ),
        (
            "maxout_pieces 0",
            Some(with_layer(maxout(4, 0))),
            "spec.hidden[0].maxout_pieces",
        ),
        (
            "maxout_pieces 1000",
            Some(with_layer(maxout(4, 1000))),
            "spec.hidden[0].maxout_pieces",
        ),
        (
            "leaky slope 1.5",
            Some(with_layer(leaky(1.5))),
            "spec.hidden[0].leaky_slope",
        ),
        (
            "leaky slope -0.1",
            Some(with_layer(leaky(-0.1))),
            "spec.hidden[0].leaky_slope",
        ),
        (
            "leaky slope NaN",
            Some(with_layer(leaky(f64::NAN))),
            "spec.hidden[0].leaky_slope",
        ),
        (
            "elu alpha 0",
            Some(with_layer(pb::HiddenLayer {
                elu_alpha: Some(0.0),
                ..layer(4, pb::Activation::Elu)
            })),
            "spec.hidden[0].elu_alpha",
        ),
        (
            "elu_alpha on a ReLU layer",
            Some(with_layer(pb::HiddenLayer {
                elu_alpha: Some(1.0),
                ..layer(4, pb::Activation::Relu)
            })),
            "spec.hidden[0].elu_alpha",
        ),
        (
            "leaky_slope on an ELU layer",
            Some(with_layer(pb::HiddenLayer {
                leaky_slope: Some(0.1),
                ..layer(4, pb::Activation::Elu)
            })),
            "spec.hidden[0].leaky_slope",
        ),
        (
            "maxout_pieces on a tanh layer",
            Some(with_layer(pb::HiddenLayer {
                maxout_pieces: Some(2),
                ..layer(4, pb::Activation::Tanh)
            })),
            "spec.hidden[0].maxout_pieces",
        ),
        (
            "unknown activation",
            Some(with_layer(pb::HiddenLayer {
                activation: 99,
                ..layer(4, pb::Activation::Relu)
            })),
            "spec.hidden[0].activation",
        ),
        (
            "negative l2",
            Some(pb::ModelSpec { l2: -0.1, ..base() }),
            "spec.l2",
        ),
        (
            "infinite l2",
            Some(pb::ModelSpec {
                l2: f64::INFINITY,
                ..base()
            }),
            "spec.l2",
        ),
        (
            "lr 0",
            Some(with_opt(pb::Optimizer {
                learning_rate: Some(0.0),
                ..opt(pb::OptimizerKind::Sgd)
            })),
            "spec.optimizer.learning_rate",
        ),
        (
            "lr negative",
            Some(with_opt(pb::Optimizer {
                learning_rate: Some(-0.01),
                ..opt(pb::OptimizerKind::Adam)
            })),
            "spec.optimizer.learning_rate",
        ),
        (
            "lr NaN",
            Some(with_opt(pb::Optimizer {
                learning_rate: Some(f64::NAN),
                ..opt(pb::OptimizerKind::Momentum)
            })),
            "spec.optimizer.learning_rate",
        ),
        (
            "momentum 1",
            Some(with_opt(pb::Optimizer {
                momentum: Some(1.0),
                ..opt(pb::OptimizerKind::Momentum)
            })),
            "spec.optimizer.momentum",
        ),
        (
            "momentum on SGD",
            Some(with_opt(pb::Optimizer {
                momentum: Some(0.9),
                ..opt(pb::OptimizerKind::Sgd)
            })),
            "spec.optimizer.momentum",
        ),
        (
            "beta2 1",
            Some(with_opt(pb::Optimizer {
                beta2: Some(1.0),
                ..opt(pb::OptimizerKind::Adam)
            })),
            "spec.optimizer.beta2",
        ),
        (
            "epsilon 0",
            Some(with_opt(pb::Optimizer {
                epsilon: Some(0.0),
                ..opt(pb::OptimizerKind::Rmsprop)
            })),
            "spec.optimizer.epsilon",
        ),
        (
            "unknown optimizer",
            Some(with_opt(pb::Optimizer {
                kind: 42,
                ..Default::default()
            })),
            "spec.optimizer.kind",
        ),
        (
            "svm margin 0",
            Some(pb::ModelSpec {
                svm_margin: Some(0.0),
                ..base()
            }),
            "spec.svm_margin",
        ),
        (
            "svm margin with softmax",
            Some(pb::ModelSpec {
                loss: pb::LossKind::Softmax as i32,
                svm_margin: Some(1.0),
                ..base()
            }),
            "spec.svm_margin",
        ),
        (
            "unknown loss",
            Some(pb::ModelSpec { loss: 9, ..base() }),
            "spec.loss",
        ),
        (
            "unknown dtype",
            Some(pb::ModelSpec { dtype: 7, ..base() }),
            "spec.dtype",
        ),
        (
            "unknown init scheme",
            Some(pb::ModelSpec {
                init: Some(pb::Init {
                    scheme: 5,
                    ..Default::default()
                }),
                ..base()
            }),
            "spec.init.scheme",
        ),
        (
            "weight_scale 0",
            Some(pb::ModelSpec {
                init: Some(pb::Init {
                    scheme: pb::InitScheme::Gaussian as i32,
                    weight_scale: Some(0.0),
                    seed: 0,
                }),
                ..base()
            }),
            "spec.init.weight_scale",
        ),
        (
            "weight_scale with He",
            Some(pb::ModelSpec {
                init: Some(pb::Init {
                    scheme: pb::InitScheme::He as i32,
                    weight_scale: Some(0.1),
                    seed: 0,
                }),
                ..base()
            }),
            "spec.init.weight_scale",
        ),
    ];
    for (what, spec, field) in cases {
        let err = c
            .create_model(pb::CreateModelRequest {
                spec,
                ..Default::default()
            })
            .await
            .expect_err(what);
        assert_invalid(&err, field);
    }
    assert!(
        list_ids(&mut c).await.is_empty(),
        "a rejected spec created a session"
    );
    // The base spec itself is fine.
    create(&mut c, base()).await;
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// ApplyGradients

#[tokio::test]
async fn apply_gradients_errors() {
    let mut f = Fixture::<f32>::new().await;
    let id = f.id.clone();
    let b = f.good_batch();
    let good =
        f.c.backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .gradients;
    assert_eq!(good[0].name, "layers.0.weight");
    let edit = |f: &dyn Fn(&mut Vec<pb::NamedTensor>)| {
        let mut g = good.clone();
        f(&mut g);
        g
    };
    let first = |g: &[pb::NamedTensor]| g[0].tensor.clone().unwrap();
    let cases: Vec<(&str, Vec<pb::NamedTensor>, &str, &str)> = vec![
        (
            "unknown name",
            edit(&|g| {
                g.push(named::<f32>(
                    "layers.9.weight",
                    &ndarray::ArrayD::zeros(vec![2]),
                ))
            }),
            "gradients[layers.9.weight]",
            "no parameter",
        ),
        (
            "missing parameter",
            edit(&|g| {
                g.remove(1);
            }),
            "gradients",
            "layers.0.bias",
        ),
        ("none at all", vec![], "gradients", "missing"),
        (
            "duplicate",
            edit(&|g| {
                let d = g[0].clone();
                g.push(d);
            }),
            "gradients[layers.0.weight]",
            "more than once",
        ),
        (
            "wrong shape (transposed)",
            edit(&|g| {
                let mut t = first(g);
                t.shape = vec![4, 3];
                g[0].tensor = Some(t);
            }),
            "gradients[layers.0.weight]",
            "expected shape [3, 4]",
        ),
        (
            "values length ≠ product of shape",
            edit(&|g| {
                let mut t = first(g);
                t.values.pop();
                g[0].tensor = Some(t);
            }),
            "gradients[layers.0.weight]",
            "needs 12 values, got 11",
        ),
        (
            "no tensor",
            edit(&|g| g[0].tensor = None),
            "gradients[layers.0.weight]",
            "required",
        ),
        (
            "NaN",
            edit(&|g| {
                let mut t = first(g);
                t.values[5] = f32::NAN;
                g[0].tensor = Some(t);
            }),
            "layers.0.weight",
            "not finite",
        ),
        (
            // Only the last parameter is bad: nothing before it may have been applied.
            "Inf in the last parameter",
            edit(&|g| {
                let last = g.len() - 1;
                let mut t = g[last].tensor.clone().unwrap();
                t.values[0] = f32::INFINITY;
                g[last].tensor = Some(t);
            }),
            "layers.1.bias",
            "not finite",
        ),
    ];
    for (what, gradients, field, needle) in cases {
        let err =
            f.c.apply_gradients(pb::ApplyGradientsRequest {
                model_id: id.clone(),
                gradients,
            })
            .await
            .expect_err(what);
        assert_invalid(&err, field);
        assert!(err.message().contains(needle), "{what}: {err:?}");
        f.assert_unchanged(what).await;
    }
    f.finish().await;
}

// ---------------------------------------------------------------------------------------
// An update that would overflow

#[tokio::test]
async fn overflowing_update_is_rejected_and_changes_nothing() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(
        &mut c,
        pb::ModelSpec {
            optimizer: sgd(1e30),
            init: seeded(3),
            ..wire_spec(3, &[], 3)
        },
    )
    .await;
    let before = get_values(&mut c, &id).await;
    // Inputs around 1e9: dW ≈ Xᵀ·dS/N ≈ 1e9, so lr·dW ≈ 1e39 overflows f32 (max 3.4e38),
    // while the bias gradient (≈ 1) gives a finite 1e30.
    let mut b = Batch::random(4, 3, 3, 5);
    b.x.iter_mut().for_each(|v| *v *= 1e9);
    let err = c
        .train_step(pb::TrainStepRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            learning_rate: None,
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "layers.0.weight");
    assert!(err.message().contains("not finite"), "{err:?}");
    let after = get_values(&mut c, &id).await;
    assert_same_snapshot(&before, &after);
    assert_eq!(after.step, 0);

    // The same through ApplyGradients, with a finite but huge gradient on the bias only.
    let grads = before
        .parameters
        .iter()
        .map(|p| {
            let n = p.shape.iter().product::<u32>() as usize;
            let v = if p.name == "layers.0.bias" { 1e10 } else { 0.0 };
            pb::NamedTensor {
                name: p.name.clone(),
                tensor: Some(f32_tensor(&p.shape, vec![v; n])),
            }
        })
        .collect();
    let err = c
        .apply_gradients(pb::ApplyGradientsRequest {
            model_id: id.clone(),
            gradients: grads,
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "layers.0.bias");
    assert_same_snapshot(&before, &get_values(&mut c, &id).await);

    // A sane batch still trains.
    let b = Batch::random(4, 3, 3, 6);
    let b = Batch {
        x: b.x.iter().map(|v| v * 1e-31).collect(),
        ..b
    };
    assert_eq!(train(&mut c, &id, &b, b.tensor::<f32>()).await.step, 1);
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// NOT_FOUND

#[tokio::test]
async fn unknown_and_deleted_ids_are_not_found_and_malformed_ones_invalid() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(D as u32, &[], C as u32)).await;
    let (gone, _) = create(&mut c, wire_spec(D as u32, &[], C as u32)).await;
    c.delete_model(pb::DeleteModelRequest {
        model_id: gone.clone(),
    })
    .await
    .unwrap();
    // A well-formed id no session has: the live id with its first digit changed.
    let unknown = match id.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", &id[1..]),
    };
    let b = Batch::random(2, D, C, 1);
    let ids = [
        unknown.as_str(),
        gone.as_str(),
        "",
        "nope",
        &id[..31],
        &format!("{id}0"),
        &format!("{}g", &id[..31]),
        &format!(" {}", &id[1..]),
    ];
    for bad in ids {
        let mut errors = Vec::new();
        for rpc in BATCH_RPCS {
            errors.push(
                call(&mut c, rpc, bad, Some(b.tensor::<f32>()), b.labels.clone())
                    .await
                    .unwrap_err(),
            );
        }
        let model_id = bad.to_string();
        errors.push(
            c.get_model(pb::GetModelRequest {
                model_id: model_id.clone(),
                include_values: true,
                ..Default::default()
            })
            .await
            .unwrap_err(),
        );
        errors.push(
            c.apply_gradients(pb::ApplyGradientsRequest {
                model_id: model_id.clone(),
                gradients: vec![],
            })
            .await
            .unwrap_err(),
        );
        errors.push(
            c.delete_model(pb::DeleteModelRequest {
                model_id: model_id.clone(),
            })
            .await
            .unwrap_err(),
        );
        // A malformed id (not 32 hex digits) is refused before any lookup.
        let well_formed = bad.len() == 32 && bad.bytes().all(|b| b.is_ascii_hexdigit());
        for e in errors {
            if well_formed {
                assert_code(&e, Code::NotFound, "model_id");
            } else {
                assert_invalid(&e, "model_id");
            }
        }
    }
    // Only the live model is listed, and it was not hurt.
    assert_eq!(list_ids(&mut c).await, vec![id.clone()]);
    assert_eq!(
        get_values(&mut c, &id).await.step,
        0,
        "a NOT_FOUND call touched another model"
    );
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// RESOURCE_EXHAUSTED

#[tokio::test]
async fn max_sessions_is_enforced() {
    let mut config = test_config();
    config.limits.max_sessions = 2;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let (a, _) = create(&mut c, wire_spec(2, &[], 2)).await;
    create(&mut c, wire_spec(2, &[], 2)).await;
    let err = c
        .create_model(pb::CreateModelRequest {
            spec: Some(wire_spec(2, &[], 2)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_code(&err, Code::ResourceExhausted, "2 sessions");
    assert_eq!(list_ids(&mut c).await.len(), 2);
    c.delete_model(pb::DeleteModelRequest { model_id: a })
        .await
        .unwrap();
    create(&mut c, wire_spec(2, &[], 2)).await;
    assert_eq!(list_ids(&mut c).await.len(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn max_parameters_is_enforced() {
    let mut config = test_config();
    config.limits.max_parameters = 100;
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    // 9·10 + 10 = 100: exactly at the limit.
    let (_, r) = create(&mut c, wire_spec(9, &[], 10)).await;
    assert_eq!(r.parameter_count, 100);
    // 10·10 + 10 = 110.
    let err = c
        .create_model(pb::CreateModelRequest {
            spec: Some(wire_spec(10, &[], 10)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_code(&err, Code::ResourceExhausted, "110");
    assert!(err.message().contains("100"), "{err:?}");
    // Maxout pieces count: 3 → 8 (×4 pieces: 4·(24 + 8) = 128) → 2.
    let err = c
        .create_model(pb::CreateModelRequest {
            spec: Some(wire_spec(3, &[maxout(8, 4)], 2)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_code(&err, Code::ResourceExhausted, "parameters");
    assert_eq!(list_ids(&mut c).await.len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn max_batch_elements_is_enforced() {
    let mut config = test_config();
    config.request_limits.max_batch_elements = 12; // 4 rows of D = 3
    let mut f = Fixture::<f32>::with_config(config).await;
    let id = f.id.clone();
    let big = Batch::random(5, D, C, 9);
    for rpc in BATCH_RPCS {
        let err = call(
            &mut f.c,
            rpc,
            &id,
            Some(big.tensor::<f32>()),
            big.labels.clone(),
        )
        .await
        .unwrap_err();
        assert_code(&err, Code::ResourceExhausted, "x");
        assert!(err.message().contains("12"), "{err:?}");
    }
    f.assert_unchanged("batch too big").await;
    // 4 rows fit.
    let ok = f.good_batch();
    call(
        &mut f.c,
        Rpc::Forward,
        &id,
        Some(ok.tensor::<f32>()),
        vec![],
    )
    .await
    .unwrap();
    f.finish().await;
}

#[tokio::test]
async fn message_bigger_than_max_message_bytes_is_refused() {
    let mut config = test_config();
    config.max_message_bytes = 4096;
    let mut f = Fixture::<f32>::with_config(config).await;
    let id = f.id.clone();
    // 600 rows × 3 f32 ≈ 7.2 KB on the wire.
    let big = Batch::random(600, D, C, 11);
    let err =
        f.c.train_step(pb::TrainStepRequest {
            model_id: id.clone(),
            x: Some(big.tensor::<f32>()),
            labels: big.labels.clone(),
            learning_rate: None,
        })
        .await
        .unwrap_err();
    assert_code(&err, Code::ResourceExhausted, "4096");
    f.assert_unchanged("message too big").await;
    // Just under the limit both ways: 300 rows × 3 f32 in, 300 × 3 scores out.
    let fits = Batch::random(300, D, C, 12);
    let r =
        f.c.forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(fits.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .expect("a request and an answer under 4096 bytes fit");
    assert_eq!(r.into_inner().predictions.len(), 300);
    // An answer over the limit (GetModel with values of a model of 9·100 + 100 = 1000
    // parameters, 4000+ bytes) is sized before any work and refused: it could never be
    // sent (tonic's encoder would only say OUT_OF_RANGE after the work).
    let (big, _) = create(&mut f.c, wire_spec(9, &[], 100)).await;
    let err =
        f.c.get_model(pb::GetModelRequest {
            model_id: big.clone(),
            include_values: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "include_values");
    assert!(err.message().contains("4096"), "{}", err.message());
    f.c.get_model(pb::GetModelRequest {
        model_id: big,
        include_values: false,
        ..Default::default()
    })
    .await
    .expect("the same answer without values fits");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_compute_queue_is_resource_exhausted() {
    let mut config = test_config();
    config.compute_threads = 1;
    config.queue_depth = 1;
    // Tiny calls compute inline by default; here every call must go through the queue.
    config.inline_max_work = 0;
    let mut f = Fixture::<f32>::with_config(config).await;
    let (slow, _) = create(&mut f.c, slow_spec()).await;
    let (mut c, slow_id) = (f.srv.trainer(), slow.clone());
    let busy = start_in_use(&mut f.c, &slow, || {
        tokio::spawn(async move { c.gradient_check(slow_request(&slow_id)).await })
    })
    .await;

    // The one compute thread is busy and the queue holds one job. Forward takes the
    // session's lock shared, so 5 at once all reach the queue: at least 4 are refused.
    let b = f.good_batch();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (mut c, id, b) = (f.srv.trainer(), f.id.clone(), b.clone());
            tokio::spawn(async move {
                call(&mut c, Rpc::Forward, &id, Some(b.tensor::<f32>()), b.labels).await
            })
        })
        .collect();
    let mut refused = 0;
    for t in calls {
        if let Err(e) = t.await.unwrap() {
            assert_code(&e, Code::ResourceExhausted, "queue");
            // Machine-readable: the reason, when to retry, and the limit with its numbers.
            assert_reason(&e, Code::ResourceExhausted, "QUEUE_FULL");
            assert_eq!(retry_delay(&e), Duration::from_millis(200));
            assert_eq!(
                quota(&e),
                (
                    "--queue-depth".to_string(),
                    "one more job than the 1 the compute queue holds".to_string()
                )
            );
            refused += 1;
        }
    }
    assert!(refused >= 4, "only {refused} of 5 calls refused");
    busy.await.unwrap().expect("the slow call itself completes");
    f.finish().await;
}

#[tokio::test]
async fn gradient_check_work_limit_is_invalid_argument() {
    let mut config = test_config();
    // The fixture has 31 parameters in 4 tensors; a batch of 4 rows. Checking all costs
    // 31 elements × 4 rows × 31 = 3844; one element per tensor costs 4 × 4 × 31 = 496.
    config.request_limits.max_gradcheck_work = 1000;
    let mut f = Fixture::<f32>::with_config(config).await;
    let b = f.good_batch();
    let mut req = pb::GradientCheckRequest {
        model_id: f.id.clone(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels.clone(),
        max_elements_per_parameter: 0,
    };
    let err = f.c.gradient_check(req.clone()).await.unwrap_err();
    assert_invalid(&err, "max_elements_per_parameter");
    req.max_elements_per_parameter = 1;
    let r = f.c.gradient_check(req).await.unwrap().into_inner();
    assert!(r.errors.iter().all(|e| e.elements_checked == 1));
    f.finish().await;
}
