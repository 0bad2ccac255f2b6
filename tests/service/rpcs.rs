//! Every Trainer RPC end to end against the real server on 127.0.0.1:0, each number
//! checked against the engine called directly with the same spec and seed (same seed →
//! bit-identical parameters → bit-identical scores, losses and gradients), and where cheap
//! against the lecture's formulas computed here by hand.

use backprop::engine::gradcheck::Elements;
use backprop::engine::ops::gelu::GeluForm;
use backprop::model::{
    ActivationSpec, Adam, DType, HiddenSpec, InitSpec, LossSpec, Losses, ModelSpec, Momentum,
    OptimizerSpec, RmsProp, Sgd, Target,
};
use backprop::pb;
use ndarray::Array2;
use support::*;
use tonic::Code;

fn hidden(units: usize, activation: ActivationSpec) -> HiddenSpec {
    HiddenSpec { units, activation }
}

/// The engine spec with the documented defaults, written out by hand (not converted from
/// the wire), so a wrong default in the service shows up as a mismatch.
fn engine_spec(input_dim: usize, hidden: Vec<HiddenSpec>, num_classes: usize) -> ModelSpec {
    ModelSpec {
        input_dim,
        hidden,
        num_classes,
        bias: true,
        loss: LossSpec::Svm { margin: 1.0 },
        l2: 0.0,
        optimizer: OptimizerSpec::Sgd(Sgd { lr: 1e-2 }),
        init: InitSpec::Auto,
        seed: 0,
        dtype: DType::F32,
        standardize: None,
        class_names: vec![],
    }
}

fn argmax<T: PartialOrd + Copy>(row: &[T]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn accuracy(pred: &[u32], labels: &[u32]) -> f64 {
    pred.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

/// The lecture's SVM data loss from scores, in f64: mean_i Σ_{j≠y_i} max(0, s_j − s_y + Δ).
fn svm_loss(scores: &[f64], c: usize, labels: &[u32], margin: f64) -> f64 {
    let n = labels.len();
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let row = &scores[i * c..(i + 1) * c];
        for (j, &s) in row.iter().enumerate() {
            if j != y as usize {
                total += (s - row[y as usize] + margin).max(0.0);
            }
        }
    }
    total / n as f64
}

/// The lecture's softmax data loss from scores, in f64: mean_i −log(e^{s_y} / Σ_j e^{s_j}).
fn softmax_loss(scores: &[f64], c: usize, labels: &[u32]) -> f64 {
    let n = labels.len();
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let row = &scores[i * c..(i + 1) * c];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|s| (s - m).exp()).sum();
        total += -(row[y as usize] - m - z.ln());
    }
    total / n as f64
}

/// λ·Σ W² over the weights (never biases) of a GetModel snapshot, in f64.
fn l2_of(snapshot: &pb::GetModelResponse, l2: f64) -> f64 {
    snapshot
        .parameters
        .iter()
        .filter(|p| p.name.ends_with(".weight"))
        .map(|p| {
            let v = p.value.as_ref().unwrap();
            let sq: f64 = v
                .values
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                + v.values_f64.iter().map(|&x| x * x).sum::<f64>();
            l2 * sq
        })
        .sum()
}

/// Asserts the wire losses are the engine's, bit for bit: data, reg, and their sum.
#[track_caller]
fn assert_losses(what: &str, got: &pb::Losses, want: &Losses) {
    let (data, total) = (want.data.unwrap(), want.total().unwrap());
    assert_same(&format!("{what} data_loss"), got.data_loss.unwrap(), data);
    assert_same(&format!("{what} reg_loss"), got.reg_loss, want.reg);
    assert_same(
        &format!("{what} total_loss"),
        got.total_loss.unwrap(),
        total,
    );
}

#[track_caller]
fn assert_close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-12);
    assert!(
        err <= rel,
        "{what}: {got} vs {want} (relative error {err:e})"
    );
}

fn hex_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------
// CreateModel, GetModel

#[tokio::test]
async fn create_model_fills_in_every_default() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();

    let (id, r) = create(
        &mut c,
        wire_spec(4, &[layer(5, pb::Activation::Unspecified)], 3),
    )
    .await;
    assert!(hex_id(&id), "model_id {id:?} is not 32 hex digits");
    assert_eq!(r.parameter_count, 4 * 5 + 5 + 5 * 3 + 3);
    let expected = pb::ModelSpec {
        input_dim: 4,
        hidden: vec![pb::HiddenLayer {
            units: 5,
            activation: pb::Activation::Relu as i32,
            leaky_slope: None,
            elu_alpha: None,
            maxout_pieces: None,
            gelu_approximate: None,
        }],
        num_classes: 3,
        no_bias: false,
        loss: pb::LossKind::Svm as i32,
        svm_margin: Some(1.0),
        l2: 0.0,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Sgd as i32,
            learning_rate: Some(1e-2),
            ..Default::default()
        }),
        init: Some(pb::Init {
            scheme: pb::InitScheme::Unspecified as i32, // per-layer He/Xavier
            weight_scale: None,
            seed: 0,
        }),
        dtype: pb::Dtype::F32 as i32,
        standardize: None,
        class_names: vec![],
    };
    assert_eq!(r.spec.as_ref(), Some(&expected));

    // A second model gets a different id.
    let (id2, _) = create(&mut c, wire_spec(4, &[], 3)).await;
    assert_ne!(id, id2);
    srv.stop().await;
}

#[tokio::test]
async fn create_model_fills_activation_optimizer_and_init_defaults() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let layers = [
        layer(2, pb::Activation::LeakyRelu),
        layer(2, pb::Activation::Elu),
        layer(2, pb::Activation::Maxout),
        layer(2, pb::Activation::Sigmoid),
        layer(2, pb::Activation::Tanh),
    ];
    let optimizers = [
        (
            pb::OptimizerKind::Momentum,
            pb::Optimizer {
                kind: pb::OptimizerKind::Momentum as i32,
                learning_rate: Some(1e-2),
                momentum: Some(0.9),
                nesterov: false,
                ..Default::default()
            },
        ),
        (
            pb::OptimizerKind::Rmsprop,
            pb::Optimizer {
                kind: pb::OptimizerKind::Rmsprop as i32,
                learning_rate: Some(1e-2),
                decay_rate: Some(0.99),
                epsilon: Some(1e-8),
                ..Default::default()
            },
        ),
        (
            pb::OptimizerKind::Adam,
            pb::Optimizer {
                kind: pb::OptimizerKind::Adam as i32,
                learning_rate: Some(1e-3),
                beta1: Some(0.9),
                beta2: Some(0.999),
                epsilon: Some(1e-8),
                ..Default::default()
            },
        ),
    ];
    for (kind, expected_opt) in optimizers {
        let spec = pb::ModelSpec {
            loss: pb::LossKind::Softmax as i32,
            optimizer: Some(pb::Optimizer {
                kind: kind as i32,
                ..Default::default()
            }),
            init: Some(pb::Init {
                scheme: pb::InitScheme::Gaussian as i32,
                weight_scale: None,
                seed: 9,
            }),
            dtype: pb::Dtype::F64 as i32,
            ..wire_spec(3, &layers, 2)
        };
        let (_, r) = create(&mut c, spec).await;
        let s = r.spec.unwrap();
        assert_eq!(s.optimizer, Some(expected_opt), "{kind:?} defaults");
        assert_eq!(s.svm_margin, None, "softmax has no margin");
        assert_eq!(s.loss, pb::LossKind::Softmax as i32);
        assert_eq!(s.dtype, pb::Dtype::F64 as i32);
        assert_eq!(
            s.init,
            Some(pb::Init {
                scheme: pb::InitScheme::Gaussian as i32,
                weight_scale: Some(1e-2),
                seed: 9
            })
        );
        let opts: Vec<_> = s
            .hidden
            .iter()
            .map(|h| (h.activation, h.leaky_slope, h.elu_alpha, h.maxout_pieces))
            .collect();
        assert_eq!(
            opts,
            vec![
                (pb::Activation::LeakyRelu as i32, Some(0.1), None, None),
                (pb::Activation::Elu as i32, None, Some(1.0), None),
                (pb::Activation::Maxout as i32, None, None, Some(2)),
                (pb::Activation::Sigmoid as i32, None, None, None),
                (pb::Activation::Tanh as i32, None, None, None),
            ]
        );
        // 3→2 (leaky) 2→2 (elu) 2→2 ×2 pieces (maxout) 2→2 2→2, then 2→2 scores.
        assert_eq!(r.parameter_count, 8 + 6 + 2 * 6 + 6 + 6 + 6);
    }
    srv.stop().await;
}

#[tokio::test]
async fn get_model_names_shapes_and_values_match_the_engine() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();

    // Maxout (3 pieces) then ReLU, f32.
    let wire = pb::ModelSpec {
        init: seeded(11),
        ..wire_spec(3, &[maxout(4, 3), layer(2, pb::Activation::Relu)], 2)
    };
    let (id, created) = create(&mut c, wire).await;
    let spec = ModelSpec {
        seed: 11,
        ..engine_spec(
            3,
            vec![
                hidden(4, ActivationSpec::Maxout { pieces: 3 }),
                hidden(2, ActivationSpec::Relu),
            ],
            2,
        )
    };
    let bare = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<(&str, Vec<u32>)> = bare
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.shape.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("layers.0.pieces.0.weight", vec![3, 4]),
            ("layers.0.pieces.0.bias", vec![4]),
            ("layers.0.pieces.1.weight", vec![3, 4]),
            ("layers.0.pieces.1.bias", vec![4]),
            ("layers.0.pieces.2.weight", vec![3, 4]),
            ("layers.0.pieces.2.bias", vec![4]),
            ("layers.1.weight", vec![4, 2]),
            ("layers.1.bias", vec![2]),
            ("layers.2.weight", vec![2, 2]),
            ("layers.2.bias", vec![2]),
        ]
    );
    assert!(bare.parameters.iter().all(|p| p.value.is_none()));
    assert_eq!(bare.model_id, id);
    assert_eq!(bare.step, 0);
    assert_eq!(bare.parameter_count, 3 * 16 + 10 + 6);
    assert_eq!(bare.parameter_count, created.parameter_count);
    assert_eq!(bare.spec, created.spec);

    let full = get_values(&mut c, &id).await;
    assert_params_eq("f32 maxout init", &full, &engine::<f32>(&spec));
    // Weights are drawn, biases start at zero.
    assert!(
        full.parameters[0]
            .value
            .as_ref()
            .unwrap()
            .values
            .iter()
            .any(|&v| v != 0.0)
    );
    assert!(
        full.parameters[1]
            .value
            .as_ref()
            .unwrap()
            .values
            .iter()
            .all(|&v| v == 0.0)
    );

    // No biases, f64, Gaussian init.
    let wire = pb::ModelSpec {
        no_bias: true,
        dtype: pb::Dtype::F64 as i32,
        init: Some(pb::Init {
            scheme: pb::InitScheme::Gaussian as i32,
            weight_scale: Some(0.5),
            seed: 3,
        }),
        ..wire_spec(3, &[layer(4, pb::Activation::Tanh)], 2)
    };
    let (id, created) = create(&mut c, wire).await;
    assert_eq!(created.parameter_count, 12 + 8);
    let spec = ModelSpec {
        bias: false,
        dtype: DType::F64,
        init: InitSpec::Gaussian { scale: 0.5 },
        seed: 3,
        ..engine_spec(3, vec![hidden(4, ActivationSpec::Tanh)], 2)
    };
    let full = get_values(&mut c, &id).await;
    let names: Vec<&str> = full.parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["layers.0.weight", "layers.1.weight"]);
    assert_params_eq("f64 no-bias init", &full, &engine::<f64>(&spec));
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// Forward, Evaluate

#[tokio::test]
async fn forward_f32_svm_matches_engine_and_the_lecture() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        l2: 0.01,
        init: seeded(7),
        ..wire_spec(4, &[layer(6, pb::Activation::Relu)], 3)
    };
    let (id, _) = create(&mut c, wire).await;
    let spec = ModelSpec {
        l2: 0.01,
        seed: 7,
        ..engine_spec(4, vec![hidden(6, ActivationSpec::Relu)], 3)
    };
    let model = engine::<f32>(&spec);
    let b = Batch::random(5, 4, 3, 100);
    let x = b.array::<f32>();

    // Without labels: scores and predictions only.
    let r = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let scores = model.net().scores(x.view()).unwrap();
    assert_tensor_eq("scores", r.scores.as_ref().unwrap(), &scores);
    let pred: Vec<u32> = scores
        .rows()
        .into_iter()
        .map(|row| argmax(row.as_slice().unwrap()))
        .collect();
    assert_eq!(r.predictions, pred);
    assert_eq!(r.losses, None);
    assert_eq!(r.accuracy, None);

    // With labels: losses and accuracy too.
    let r = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (scores2, losses) = model.net().evaluate(x.view(), &b.labels_usize()).unwrap();
    assert_eq!(scores, scores2);
    assert_tensor_eq("scores", r.scores.as_ref().unwrap(), &scores);
    let l = r.losses.unwrap();
    assert_losses("forward", &l, &losses);
    assert_same("accuracy", r.accuracy.unwrap(), accuracy(&pred, &b.labels));

    // The conventions, by hand: SVM with Δ = 1 averaged over rows; R = λ·ΣW² on weights.
    let s64: Vec<f64> = r.scores.unwrap().values.iter().map(|&v| v as f64).collect();
    assert_close(
        "svm loss by hand",
        l.data_loss.unwrap(),
        svm_loss(&s64, 3, &b.labels, 1.0),
        1e-5,
    );
    let snap = get_values(&mut c, &id).await;
    assert!(l.reg_loss > 0.0);
    assert_close("L2 by hand", l.reg_loss, l2_of(&snap, 0.01), 1e-5);
    assert_eq!(snap.step, 0, "Forward changed the step");
    srv.stop().await;
}

#[tokio::test]
async fn forward_f64_softmax_matches_engine_and_accepts_f32_values() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        loss: pb::LossKind::Softmax as i32,
        dtype: pb::Dtype::F64 as i32,
        init: seeded(21),
        ..wire_spec(3, &[layer(5, pb::Activation::Tanh)], 4)
    };
    let (id, _) = create(&mut c, wire).await;
    let spec = ModelSpec {
        loss: LossSpec::Softmax,
        dtype: DType::F64,
        seed: 21,
        ..engine_spec(3, vec![hidden(5, ActivationSpec::Tanh)], 4)
    };
    let model = engine::<f64>(&spec);
    let b = Batch::random(6, 3, 4, 200);

    let r = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f64>()),
            labels: b.labels.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (scores, losses) = model
        .net()
        .evaluate(b.array::<f64>().view(), &b.labels_usize())
        .unwrap();
    let st = r.scores.unwrap();
    assert_tensor_eq("scores", &st, &scores);
    let l = r.losses.unwrap();
    assert_losses("forward", &l, &losses);
    assert_eq!(l.reg_loss, 0.0);
    assert_close(
        "softmax loss by hand",
        l.data_loss.unwrap(),
        softmax_loss(&st.values_f64, 4, &b.labels),
        1e-12,
    );
    let pred: Vec<u32> = st.values_f64.chunks(4).map(argmax).collect();
    assert_eq!(r.predictions, pred);
    assert_same("accuracy", r.accuracy.unwrap(), accuracy(&pred, &b.labels));

    // f32 values on the wire are widened to the model's f64.
    let r = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let widened: Array2<f64> = b.array::<f32>().mapv(f64::from);
    let scores = model.net().scores(widened.view()).unwrap();
    assert_tensor_eq(
        "scores from f32 values",
        r.scores.as_ref().unwrap(),
        &scores,
    );
    srv.stop().await;
}

#[tokio::test]
async fn evaluate_matches_engine_and_changes_nothing() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        l2: 0.05,
        loss: pb::LossKind::Softmax as i32,
        init: seeded(5),
        ..wire_spec(4, &[maxout(3, 2)], 3)
    };
    let (id, _) = create(&mut c, wire).await;
    let spec = ModelSpec {
        l2: 0.05,
        loss: LossSpec::Softmax,
        seed: 5,
        ..engine_spec(4, vec![hidden(3, ActivationSpec::Maxout { pieces: 2 })], 3)
    };
    let model = engine::<f32>(&spec);
    let b = Batch::random(7, 4, 3, 300);
    let r = c
        .evaluate(pb::EvaluateRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let (scores, losses) = model
        .net()
        .evaluate(b.array::<f32>().view(), &b.labels_usize())
        .unwrap();
    let l = r.losses.unwrap();
    assert_losses("evaluate", &l, &losses);
    assert!(l.reg_loss > 0.0);
    let pred: Vec<u32> = scores
        .rows()
        .into_iter()
        .map(|row| argmax(row.as_slice().unwrap()))
        .collect();
    assert_same("accuracy", r.accuracy, accuracy(&pred, &b.labels));
    assert_eq!(r.num_examples, 7);
    assert_params_eq("after Evaluate", &get_values(&mut c, &id).await, &model);
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// Backward

#[tokio::test]
async fn backward_with_labels_matches_engine_on_a_maxout_model() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        l2: 0.02,
        init: seeded(13),
        ..wire_spec(4, &[maxout(5, 3)], 3)
    };
    let (id, _) = create(&mut c, wire).await;
    let spec = ModelSpec {
        l2: 0.02,
        seed: 13,
        ..engine_spec(4, vec![hidden(5, ActivationSpec::Maxout { pieces: 3 })], 3)
    };
    let model = engine::<f32>(&spec);
    let b = Batch::random(6, 4, 3, 400);
    let r = c
        .backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            upstream: None,
            return_input_grad: false,
        })
        .await
        .unwrap()
        .into_inner();
    let labels = b.labels_usize();
    let g = model
        .net()
        .gradients(b.array::<f32>().view(), Target::Labels(&labels), false)
        .unwrap();
    let l = r.losses.unwrap();
    assert_losses("backward", &l, &g.losses);
    assert_eq!(r.gradients.len(), 8);
    for ((got, p), want) in r.gradients.iter().zip(model.net().params()).zip(&g.params) {
        assert_eq!(got.name, p.name);
        assert_tensor_eq(&got.name, got.tensor.as_ref().unwrap(), want);
    }
    assert_eq!(r.gradients[2].name, "layers.0.pieces.1.weight");
    // Some gradient reaches every piece's weight on this batch (the max routes it).
    for i in [0, 2, 4] {
        assert!(
            r.gradients[i]
                .tensor
                .as_ref()
                .unwrap()
                .values
                .iter()
                .any(|&v| v != 0.0)
        );
    }
    assert!(r.input_grad.is_none(), "dX was not asked for");
    assert_params_eq("after Backward", &get_values(&mut c, &id).await, &model);
    srv.stop().await;
}

#[tokio::test]
async fn backward_with_upstream_and_input_grad_matches_engine_f64_no_bias() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        no_bias: true,
        l2: 0.1,
        dtype: pb::Dtype::F64 as i32,
        init: seeded(17),
        ..wire_spec(3, &[layer(4, pb::Activation::LeakyRelu)], 2)
    };
    let (id, _) = create(&mut c, wire).await;
    let spec = ModelSpec {
        bias: false,
        l2: 0.1,
        dtype: DType::F64,
        seed: 17,
        ..engine_spec(
            3,
            vec![hidden(4, ActivationSpec::LeakyRelu { slope: 0.1 })],
            2,
        )
    };
    let model = engine::<f64>(&spec);
    let b = Batch::random(5, 3, 2, 500);
    let up = Batch::random(5, 2, 2, 501);
    let r = c
        .backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f64>()),
            labels: vec![],
            upstream: Some(up.tensor::<f64>()),
            return_input_grad: true,
        })
        .await
        .unwrap()
        .into_inner();
    let upa = up.array::<f64>();
    let g = model
        .net()
        .gradients(b.array::<f64>().view(), Target::Upstream(upa.view()), true)
        .unwrap();
    let l = r.losses.unwrap();
    assert_eq!(l.data_loss, None, "no data loss with an upstream gradient");
    assert_eq!(l.total_loss, None);
    assert_same("reg_loss", l.reg_loss, g.losses.reg);
    assert!(l.reg_loss > 0.0);
    let names: Vec<&str> = r.gradients.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["layers.0.weight", "layers.1.weight"]);
    for (got, want) in r.gradients.iter().zip(&g.params) {
        assert_tensor_eq(&got.name, got.tensor.as_ref().unwrap(), want);
    }
    let dx = r.input_grad.expect("dX was asked for");
    assert_eq!(dx.shape, vec![5, 3]);
    assert_tensor_eq("dX", &dx, g.input.as_ref().unwrap());

    // By hand for the output layer: dW₁ = hᵀ·dS + 2λW₁ with h = leaky(X·W₀).
    let snap = get_values(&mut c, &id).await;
    let w0 = &snap.parameters[0].value.as_ref().unwrap().values_f64; // 3×4
    let w1 = &snap.parameters[1].value.as_ref().unwrap().values_f64; // 4×2
    let mut dw1 = [0.0f64; 8];
    for i in 0..5 {
        for k in 0..4 {
            let z: f64 = (0..3).map(|j| b.x[i * 3 + j] * w0[j * 4 + k]).sum();
            let h = if z > 0.0 { z } else { 0.1 * z };
            for o in 0..2 {
                dw1[k * 2 + o] += h * up.x[i * 2 + o];
            }
        }
    }
    let got = &r.gradients[1].tensor.as_ref().unwrap().values_f64;
    for (e, (&g, &d)) in got.iter().zip(&dw1).enumerate() {
        assert_close(
            &format!("dW1[{e}] by hand"),
            g,
            d + 2.0 * 0.1 * w1[e],
            1e-12,
        );
    }
    assert_params_eq("after Backward", &snap, &model);
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// TrainStep, ApplyGradients

/// Trains a server session and an engine model side by side on `steps` batches.
async fn train_side_by_side<T: Wire>(
    c: &mut Client,
    id: &str,
    model: &mut backprop::model::Model<T>,
    steps: u64,
    seed: u64,
) {
    let (d, k) = (model.net().spec().input_dim, model.net().spec().num_classes);
    for s in 1..=steps {
        let b = Batch::random(4, d, k, seed + s);
        let r = train(c, id, &b, b.tensor::<T>()).await;
        let want = model
            .train_step(b.array::<T>().view(), &b.labels_usize())
            .unwrap();
        assert_eq!(r.step, s);
        assert_eq!(r.step, want.step);
        let l = r.losses.unwrap();
        assert_losses(&format!("step {s}"), &l, &want.losses);
        assert_same(&format!("step {s} accuracy"), r.accuracy, want.accuracy);
    }
}

#[tokio::test]
async fn train_step_matches_engine_f32_svm_momentum() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        l2: 0.01,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Momentum as i32,
            learning_rate: Some(0.1),
            nesterov: true,
            ..Default::default()
        }),
        init: seeded(31),
        ..wire_spec(3, &[layer(5, pb::Activation::Relu)], 3)
    };
    let (id, _) = create(&mut c, wire).await;
    let mut model = engine::<f32>(&ModelSpec {
        l2: 0.01,
        optimizer: OptimizerSpec::Momentum(Momentum {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
        }),
        seed: 31,
        ..engine_spec(3, vec![hidden(5, ActivationSpec::Relu)], 3)
    });
    let initial = get_values(&mut c, &id).await;
    train_side_by_side(&mut c, &id, &mut model, 6, 600).await;
    let after = get_values(&mut c, &id).await;
    assert_params_eq("after 6 steps", &after, &model);
    assert_ne!(
        initial.parameters, after.parameters,
        "training changed nothing"
    );
    let listed = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.models[0].step, 6);
    srv.stop().await;
}

#[tokio::test]
async fn train_step_matches_engine_f64_softmax_adam_maxout() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        loss: pb::LossKind::Softmax as i32,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            learning_rate: Some(0.01),
            ..Default::default()
        }),
        dtype: pb::Dtype::F64 as i32,
        init: seeded(41),
        ..wire_spec(3, &[maxout(4, 2), layer(3, pb::Activation::Elu)], 2)
    };
    let (id, _) = create(&mut c, wire).await;
    let mut model = engine::<f64>(&ModelSpec {
        loss: LossSpec::Softmax,
        optimizer: OptimizerSpec::Adam(Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }),
        dtype: DType::F64,
        seed: 41,
        ..engine_spec(
            3,
            vec![
                hidden(4, ActivationSpec::Maxout { pieces: 2 }),
                hidden(3, ActivationSpec::Elu { alpha: 1.0 }),
            ],
            2,
        )
    });
    train_side_by_side(&mut c, &id, &mut model, 5, 700).await;
    assert_params_eq("after 5 steps", &get_values(&mut c, &id).await, &model);
    srv.stop().await;
}

#[tokio::test]
async fn train_step_matches_engine_f32_rmsprop_no_bias() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        no_bias: true,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Rmsprop as i32,
            ..Default::default()
        }),
        init: seeded(43),
        ..wire_spec(2, &[layer(3, pb::Activation::Sigmoid)], 2)
    };
    let (id, _) = create(&mut c, wire).await;
    let mut model = engine::<f32>(&ModelSpec {
        bias: false,
        optimizer: OptimizerSpec::RmsProp(RmsProp {
            lr: 1e-2,
            decay: 0.99,
            eps: 1e-8,
        }),
        seed: 43,
        ..engine_spec(2, vec![hidden(3, ActivationSpec::Sigmoid)], 2)
    });
    train_side_by_side(&mut c, &id, &mut model, 4, 800).await;
    assert_params_eq("after 4 steps", &get_values(&mut c, &id).await, &model);
    srv.stop().await;
}

#[tokio::test]
async fn apply_gradients_averaged_across_sessions_matches_engine() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        l2: 0.01,
        optimizer: sgd(0.5),
        init: seeded(51),
        ..wire_spec(3, &[layer(4, pb::Activation::Relu)], 3)
    };
    let spec = ModelSpec {
        l2: 0.01,
        optimizer: OptimizerSpec::Sgd(Sgd { lr: 0.5 }),
        seed: 51,
        ..engine_spec(3, vec![hidden(4, ActivationSpec::Relu)], 3)
    };
    // Two replicas (same seed) see different batches; the client averages their gradients.
    let (a, _) = create(&mut c, wire.clone()).await;
    let (bid, _) = create(&mut c, wire).await;
    let (b1, b2) = (Batch::random(4, 3, 3, 900), Batch::random(4, 3, 3, 901));
    let mut grads = Vec::new();
    for (id, b) in [(&a, &b1), (&bid, &b2)] {
        let r = c
            .backward(pb::BackwardRequest {
                model_id: id.clone(),
                x: Some(b.tensor::<f32>()),
                labels: b.labels.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        grads.push(r.gradients);
    }
    let averaged: Vec<pb::NamedTensor> = grads[0]
        .iter()
        .zip(&grads[1])
        .map(|(g1, g2)| {
            let (t1, t2) = (g1.tensor.as_ref().unwrap(), g2.tensor.as_ref().unwrap());
            pb::NamedTensor {
                name: g1.name.clone(),
                tensor: Some(pb::Tensor {
                    shape: t1.shape.clone(),
                    values: t1
                        .values
                        .iter()
                        .zip(&t2.values)
                        .map(|(x, y)| (x + y) / 2.0)
                        .collect(),
                    values_f64: vec![],
                    ..Default::default()
                }),
            }
        })
        .collect();
    // Send them in reverse order: matching is by name.
    let mut reversed = averaged.clone();
    reversed.reverse();
    let r = c
        .apply_gradients(pb::ApplyGradientsRequest {
            model_id: a.clone(),
            gradients: reversed,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.step, 1);

    let mut model = engine::<f32>(&spec);
    // The same gradients as the engine takes them.
    let engine_grads = || -> Vec<(String, ndarray::ArrayD<f32>)> {
        averaged
            .iter()
            .map(|g| {
                let t = g.tensor.as_ref().unwrap();
                let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                (
                    g.name.clone(),
                    ndarray::ArrayD::from_shape_vec(shape, t.values.clone()).unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(model.apply_gradients(engine_grads()).unwrap(), 1);
    let after = get_values(&mut c, &a).await;
    assert_params_eq("after ApplyGradients", &after, &model);
    // SGD by hand on one element: w ← w − lr·g.
    let w0 = engine::<f32>(&spec).net().params()[0]
        .value
        .iter()
        .copied()
        .next()
        .unwrap();
    let g0 = averaged[0].tensor.as_ref().unwrap().values[0];
    assert_eq!(
        after.parameters[0].value.as_ref().unwrap().values[0],
        w0 - 0.5f32 * g0
    );
    // The other replica is untouched.
    assert_params_eq(
        "replica",
        &get_values(&mut c, &bid).await,
        &engine::<f32>(&spec),
    );

    // f64 gradients for an f32 model are rounded to f32.
    let as_f64: Vec<pb::NamedTensor> = averaged
        .iter()
        .map(|g| {
            let t = g.tensor.as_ref().unwrap();
            pb::NamedTensor {
                name: g.name.clone(),
                tensor: Some(pb::Tensor {
                    shape: t.shape.clone(),
                    values: vec![],
                    values_f64: t.values.iter().map(|&v| v as f64).collect(),
                    ..Default::default()
                }),
            }
        })
        .collect();
    let r = c
        .apply_gradients(pb::ApplyGradientsRequest {
            model_id: a.clone(),
            gradients: as_f64,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.step, 2);
    model.apply_gradients(engine_grads()).unwrap();
    assert_params_eq(
        "after 2 ApplyGradients",
        &get_values(&mut c, &a).await,
        &model,
    );
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// ListModels, DeleteModel

#[tokio::test]
async fn list_and_delete_models() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    assert!(list_ids(&mut c).await.is_empty());
    let (a, ra) = create(&mut c, wire_spec(2, &[], 2)).await;
    let (b, rb) = create(&mut c, wire_spec(3, &[layer(2, pb::Activation::Tanh)], 4)).await;
    let (d, _) = create(&mut c, wire_spec(4, &[], 2)).await;
    let batch = Batch::random(3, 3, 4, 1000);
    train(&mut c, &b, &batch, batch.tensor::<f32>()).await;
    train(&mut c, &b, &batch, batch.tensor::<f32>()).await;

    let listed = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    let mut want = vec![a.clone(), b.clone(), d.clone()];
    want.sort();
    assert_eq!(
        listed
            .iter()
            .map(|m| m.model_id.clone())
            .collect::<Vec<_>>(),
        want
    );
    for m in &listed {
        let (spec, count, step) = if m.model_id == a {
            (&ra.spec, ra.parameter_count, 0)
        } else if m.model_id == b {
            (&rb.spec, rb.parameter_count, 2)
        } else {
            continue;
        };
        assert_eq!(&m.spec, spec);
        assert_eq!(m.parameter_count, count);
        assert_eq!(m.step, step);
        assert!(
            (0.0..60.0).contains(&m.idle_seconds),
            "idle {}",
            m.idle_seconds
        );
    }

    c.delete_model(pb::DeleteModelRequest {
        model_id: b.clone(),
    })
    .await
    .unwrap();
    let mut want = vec![a.clone(), d.clone()];
    want.sort();
    assert_eq!(list_ids(&mut c).await, want);
    let err = c
        .get_model(pb::GetModelRequest {
            model_id: b.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .delete_model(pb::DeleteModelRequest {
            model_id: b.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "deleting twice");
    // The others still work.
    let r = c
        .get_model(pb::GetModelRequest {
            model_id: a.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().model_id, a);
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// GradientCheck

#[tokio::test]
async fn gradient_check_f64_is_below_1e6_and_matches_engine() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        loss: pb::LossKind::Softmax as i32,
        l2: 0.01,
        dtype: pb::Dtype::F64 as i32,
        init: seeded(61),
        ..wire_spec(3, &[layer(4, pb::Activation::Tanh)], 3)
    };
    let (id, _) = create(&mut c, wire).await;
    let spec = ModelSpec {
        loss: LossSpec::Softmax,
        l2: 0.01,
        dtype: DType::F64,
        seed: 61,
        ..engine_spec(3, vec![hidden(4, ActivationSpec::Tanh)], 3)
    };
    let model = engine::<f64>(&spec);
    let b = Batch::random(4, 3, 3, 1100);
    let r = c
        .gradient_check(pb::GradientCheckRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f64>()),
            labels: b.labels.clone(),
            max_elements_per_parameter: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.max_relative_error < 1e-6,
        "max relative error {}",
        r.max_relative_error
    );
    let want = model
        .gradient_check(b.array::<f64>().view(), &b.labels_usize(), Elements::All)
        .unwrap();
    let shown: Vec<(&str, u64)> = r
        .errors
        .iter()
        .map(|e| (e.name.as_str(), e.elements_checked))
        .collect();
    assert_eq!(
        shown,
        [
            ("layers.0.weight", 12),
            ("layers.0.bias", 4),
            ("layers.1.weight", 12),
            ("layers.1.bias", 3)
        ]
    );
    for (e, w) in r.errors.iter().zip(&want) {
        assert_same(&e.name, e.max_relative_error, w.max_relative_error);
        assert!(e.max_relative_error < 1e-6);
    }
    let worst = want
        .iter()
        .map(|w| w.max_relative_error)
        .fold(0.0, f64::max);
    assert_same("max", r.max_relative_error, worst);
    assert!(
        worst > 0.0,
        "an error of exactly zero everywhere is suspicious"
    );

    // A sample of at most 2 elements per parameter.
    let r = c
        .gradient_check(pb::GradientCheckRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f64>()),
            labels: b.labels.clone(),
            max_elements_per_parameter: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.errors.iter().all(|e| e.elements_checked == 2),
        "{:?}",
        r.errors
    );
    assert!(r.max_relative_error < 1e-6);
    assert_params_eq(
        "after GradientCheck",
        &get_values(&mut c, &id).await,
        &model,
    );
    srv.stop().await;
}

#[tokio::test]
async fn gradient_check_on_f32_model_runs_in_f64() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let wire = pb::ModelSpec {
        loss: pb::LossKind::Softmax as i32,
        init: seeded(71),
        ..wire_spec(2, &[layer(3, pb::Activation::Sigmoid)], 2)
    };
    let (id, _) = create(&mut c, wire).await;
    let b = Batch::random(3, 2, 2, 1200);
    let r = c
        .gradient_check(pb::GradientCheckRequest {
            model_id: id,
            x: Some(b.tensor::<f32>()),
            labels: b.labels.clone(),
            max_elements_per_parameter: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.errors.len(), 4);
    assert!(
        r.max_relative_error < 1e-6,
        "max relative error {}",
        r.max_relative_error
    );
    srv.stop().await;
}

#[tokio::test]
async fn gelu_in_both_forms_over_the_wire() {
    // A GELU layer of each form: the spec comes back as sent, the served forward equals
    // the engine's, and the gradient checks below 1e-6 in f64.
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let tanh_form = pb::HiddenLayer {
        gelu_approximate: Some(pb::GeluApproximate::Tanh as i32),
        ..layer(4, pb::Activation::Gelu)
    };
    let wire = pb::ModelSpec {
        loss: pb::LossKind::Softmax as i32,
        dtype: pb::Dtype::F64 as i32,
        init: seeded(71),
        ..wire_spec(3, &[layer(5, pb::Activation::Gelu), tanh_form], 3)
    };
    let (id, created) = create(&mut c, wire).await;
    let s = created.spec.expect("spec");
    let forms: Vec<_> = s
        .hidden
        .iter()
        .map(|h| (h.activation, h.gelu_approximate))
        .collect();
    assert_eq!(
        forms,
        [
            (
                pb::Activation::Gelu as i32,
                Some(pb::GeluApproximate::None as i32)
            ),
            (
                pb::Activation::Gelu as i32,
                Some(pb::GeluApproximate::Tanh as i32)
            ),
        ]
    );
    let spec = ModelSpec {
        loss: LossSpec::Softmax,
        dtype: DType::F64,
        seed: 71,
        ..engine_spec(
            3,
            vec![
                hidden(5, ActivationSpec::gelu()),
                hidden(
                    4,
                    ActivationSpec::Gelu {
                        form: GeluForm::Tanh,
                    },
                ),
            ],
            3,
        )
    };
    let model = engine::<f64>(&spec);
    let b = Batch::random(6, 3, 3, 1200);
    let served = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f64>()),
            labels: b.labels.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (_, want) = model
        .net()
        .evaluate(b.array::<f64>().view(), &b.labels_usize())
        .unwrap();
    assert_same(
        "data loss",
        served.losses.unwrap().data_loss.unwrap(),
        want.data.unwrap(),
    );
    let r = c
        .gradient_check(pb::GradientCheckRequest {
            model_id: id.clone(),
            x: Some(b.tensor::<f64>()),
            labels: b.labels.clone(),
            max_elements_per_parameter: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.max_relative_error < 1e-6 && r.max_relative_error > 0.0,
        "max relative error {}",
        r.max_relative_error
    );
    // A form on a layer that is not GELU is refused, naming the field.
    let bad = wire_spec(
        3,
        &[pb::HiddenLayer {
            gelu_approximate: Some(pb::GeluApproximate::Tanh as i32),
            ..layer(4, pb::Activation::Relu)
        }],
        3,
    );
    let err = c
        .create_model(pb::CreateModelRequest {
            spec: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "spec.hidden[0].gelu_approximate");
    srv.stop().await;
}
