//! Tensors as raw little-endian bytes (`Tensor.raw`, `raw_dtype`): a batch sent that way
//! trains and answers exactly as the same numbers do (bit-identical models, scores and
//! gradients), in either dtype and across dtypes; the answer comes back raw in the
//! model's dtype; GetModel answers raw on request; malformed raw tensors are refused
//! with the field named and change nothing.

use backprop::pb;
use support::*;
use tonic::Code;

fn raw_of(b: &Batch, dtype: pb::Dtype) -> pb::Tensor {
    let raw: Vec<u8> = match dtype {
        pb::Dtype::F64 => b.x.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        _ => b.x.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
    };
    pb::Tensor {
        shape: vec![b.n as u32, b.d as u32],
        raw,
        raw_dtype: dtype as i32,
        ..Default::default()
    }
}

/// The numbers of a raw answer, as f64, after checking it is raw in `dtype` only.
fn raw_values(t: &pb::Tensor, dtype: pb::Dtype) -> Vec<f64> {
    assert!(t.values.is_empty() && t.values_f64.is_empty(), "{t:?}");
    assert_eq!(t.raw_dtype, dtype as i32);
    match dtype {
        pb::Dtype::F64 => t
            .raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        _ => t
            .raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
    }
}

fn number_values(t: &pb::Tensor) -> Vec<f64> {
    assert!(t.raw.is_empty());
    if t.values_f64.is_empty() {
        t.values.iter().map(|&v| v as f64).collect()
    } else {
        t.values_f64.clone()
    }
}

fn spec(dtype: pb::Dtype) -> pb::ModelSpec {
    pb::ModelSpec {
        dtype: dtype as i32,
        init: seeded(4),
        ..wire_spec(5, &[layer(7, pb::Activation::Tanh)], 3)
    }
}

/// For f32 and f64 models, and raw batches of either dtype: Forward, Backward and
/// TraceStep answer raw, with the very numbers the same batch as numbers gets, and
/// TrainStep takes the very same step (the two models' parameters are bit-identical,
/// read back raw and as numbers).
#[tokio::test]
async fn raw_batches_answer_and_train_as_numbers_do() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let b = Batch::random(6, 5, 3, 9);
    for model_dtype in [pb::Dtype::F32, pb::Dtype::F64] {
        for raw_dtype in [pb::Dtype::F32, pb::Dtype::F64] {
            let what = format!("{model_dtype:?} model, {raw_dtype:?} raw batch");
            let (by_raw, _) = create(&mut c, spec(model_dtype)).await;
            let (by_numbers, _) = create(&mut c, spec(model_dtype)).await;
            // The numbers twin gets the batch in the raw batch's dtype, as numbers.
            let numbers = match raw_dtype {
                pb::Dtype::F64 => b.tensor::<f64>(),
                _ => b.tensor::<f32>(),
            };
            let raw = raw_of(&b, raw_dtype);
            let forward = |id: &str, x: pb::Tensor| pb::ForwardRequest {
                model_id: id.into(),
                x: Some(x),
                labels: b.labels.clone(),
                ..Default::default()
            };
            let r = c
                .forward(forward(&by_raw, raw.clone()))
                .await
                .unwrap()
                .into_inner();
            let n = c
                .forward(forward(&by_numbers, numbers.clone()))
                .await
                .unwrap()
                .into_inner();
            let scores = r.scores.unwrap();
            assert_eq!(scores.shape, vec![6, 3], "{what}");
            assert_eq!(
                raw_values(&scores, model_dtype),
                number_values(&n.scores.unwrap()),
                "{what}: scores"
            );
            assert_eq!(
                (r.losses, r.predictions),
                (n.losses, n.predictions),
                "{what}"
            );

            let backward = |id: &str, x: pb::Tensor| pb::BackwardRequest {
                model_id: id.into(),
                x: Some(x),
                labels: b.labels.clone(),
                upstream: None,
                return_input_grad: true,
            };
            let r = c
                .backward(backward(&by_raw, raw.clone()))
                .await
                .unwrap()
                .into_inner();
            let n = c
                .backward(backward(&by_numbers, numbers.clone()))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.gradients.len(), 4);
            for (g, h) in r.gradients.iter().zip(&n.gradients) {
                assert_eq!(
                    raw_values(g.tensor.as_ref().unwrap(), model_dtype),
                    number_values(h.tensor.as_ref().unwrap()),
                    "{what}: {}",
                    g.name
                );
            }
            assert_eq!(
                raw_values(r.input_grad.as_ref().unwrap(), model_dtype),
                number_values(n.input_grad.as_ref().unwrap()),
                "{what}: dX"
            );

            let trace = |id: &str, x: pb::Tensor| pb::TraceStepRequest {
                model_id: id.into(),
                x: Some(x),
                labels: b.labels.clone(),
                shapes_only: false,
            };
            let r = c
                .trace_step(trace(&by_raw, raw.clone()))
                .await
                .unwrap()
                .into_inner();
            let n = c
                .trace_step(trace(&by_numbers, numbers.clone()))
                .await
                .unwrap()
                .into_inner();
            for (a, z) in r.nodes.iter().zip(&n.nodes) {
                if let (Some(a), Some(z)) = (&a.value, &z.value) {
                    assert_eq!(raw_values(a, model_dtype), number_values(z), "{what}");
                }
            }

            for id in [&by_raw, &by_numbers] {
                let x = if id == &by_raw {
                    raw.clone()
                } else {
                    numbers.clone()
                };
                c.train_step(pb::TrainStepRequest {
                    model_id: id.to_string(),
                    x: Some(x),
                    labels: b.labels.clone(),
                    learning_rate: None,
                })
                .await
                .unwrap();
            }
            let values = |id: &str, raw_values: bool| pb::GetModelRequest {
                model_id: id.into(),
                include_values: true,
                raw_values,
            };
            let r = c
                .get_model(values(&by_raw, true))
                .await
                .unwrap()
                .into_inner();
            let n = c
                .get_model(values(&by_numbers, false))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.step, 1);
            for (p, q) in r.parameters.iter().zip(&n.parameters) {
                assert_eq!(
                    raw_values(p.value.as_ref().unwrap(), model_dtype),
                    number_values(q.value.as_ref().unwrap()),
                    "{what}: {} after the step",
                    p.name
                );
            }
        }
    }
    srv.stop().await;
}

/// A raw tensor with values too, a length that is not whole values, a length that
/// disagrees with the shape, or an unknown dtype: INVALID_ARGUMENT naming the field, and
/// the model is as it was.
#[tokio::test]
async fn malformed_raw_tensors_are_refused() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, spec(pb::Dtype::F32)).await;
    let before = export_file(&mut c, &id).await;
    let b = Batch::random(2, 5, 3, 1);
    let good = raw_of(&b, pb::Dtype::F32);
    let cases = [
        (
            pb::Tensor {
                values: vec![0.0; 10],
                ..good.clone()
            },
            "x: set one of values, values_f64 and raw",
        ),
        (
            pb::Tensor {
                raw: good.raw[..39].to_vec(),
                ..good.clone()
            },
            "x.raw: 39 bytes is not a whole number of 4-byte values",
        ),
        (
            pb::Tensor {
                raw: good.raw[..36].to_vec(),
                ..good.clone()
            },
            "x: shape [2, 5] needs 10 values, got 9",
        ),
        (
            pb::Tensor {
                raw_dtype: 9,
                ..good.clone()
            },
            "x.raw_dtype: 9 is not a dtype",
        ),
    ];
    for (x, want) in cases {
        let e = c
            .train_step(pb::TrainStepRequest {
                model_id: id.clone(),
                x: Some(x),
                labels: b.labels.clone(),
                learning_rate: None,
            })
            .await
            .expect_err(want);
        assert_eq!(e.code(), Code::InvalidArgument, "{want}: {e:?}");
        assert!(e.message().starts_with(want), "{}", e.message());
    }
    assert_eq!(
        export_file(&mut c, &id).await,
        before,
        "a refused batch changed the model"
    );
    srv.stop().await;
}
