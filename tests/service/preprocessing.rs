//! Models that carry their preprocessing and class names (the spec's `standardize` and
//! `class_names`): a standardizing model answers raw rows exactly as the same model
//! answers rows standardized by the caller, trains the same, shows both in GetModel and
//! ListModels, keeps them through export and import, and bad statistics or names are
//! INVALID_ARGUMENT naming the field, with no model made.

use backprop::pb;
use support::*;
use tonic::Code;

const D: usize = 4;
const MEAN: [f64; D] = [10.0, -3.0, 0.25, 100.0];
const STD: [f64; D] = [2.0, 0.5, 1.0, 40.0];

fn spec(standardize: bool) -> pb::ModelSpec {
    pb::ModelSpec {
        dtype: pb::Dtype::F64 as i32,
        init: seeded(6),
        loss: pb::LossKind::Softmax as i32,
        standardize: standardize.then(|| pb::Standardization {
            mean: MEAN.to_vec(),
            std: STD.to_vec(),
        }),
        class_names: if standardize {
            vec!["setosa".into(), "versicolor".into(), "virginica".into()]
        } else {
            vec![]
        },
        ..wire_spec(D as u32, &[layer(6, pb::Activation::Relu)], 3)
    }
}

fn f64_tensor(rows: &[[f64; D]]) -> pb::Tensor {
    pb::Tensor {
        shape: vec![rows.len() as u32, D as u32],
        values_f64: rows.iter().flatten().copied().collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_model_standardizes_its_own_input() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (with, created) = create(&mut c, spec(true)).await;
    let (plain, _) = create(&mut c, spec(false)).await;
    let shown = created.spec.expect("spec");
    assert_eq!(shown.standardize.as_ref().unwrap().mean, MEAN.to_vec());
    assert_eq!(shown.class_names, ["setosa", "versicolor", "virginica"]);
    let mut rng = Gen::new(3);
    let raw: Vec<[f64; D]> = (0..8)
        .map(|_| std::array::from_fn(|j| MEAN[j] + STD[j] * 2.0 * rng.unit()))
        .collect();
    let standardized: Vec<[f64; D]> = raw
        .iter()
        .map(|r| std::array::from_fn(|j| (r[j] - MEAN[j]) * (1.0 / STD[j])))
        .collect();
    let labels: Vec<u32> = (0..8).map(|i| i % 3).collect();
    for step in 0..3 {
        let forward = |id: &str, rows: &[[f64; D]]| pb::ForwardRequest {
            model_id: id.into(),
            x: Some(f64_tensor(rows)),
            labels: labels.clone(),
            ..Default::default()
        };
        let a = c.forward(forward(&with, &raw)).await.unwrap().into_inner();
        let b = c
            .forward(forward(&plain, &standardized))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            a, b,
            "step {step}: Forward on raw rows vs standardized ones"
        );
        let train = |id: &str, rows: &[[f64; D]]| pb::TrainStepRequest {
            model_id: id.into(),
            x: Some(f64_tensor(rows)),
            labels: labels.clone(),
            learning_rate: None,
        };
        let a = c.train_step(train(&with, &raw)).await.unwrap().into_inner();
        let b = c
            .train_step(train(&plain, &standardized))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a, b, "step {step}: TrainStep");
    }
    let (a, b) = (
        get_values(&mut c, &with).await,
        get_values(&mut c, &plain).await,
    );
    assert_eq!(
        a.parameters, b.parameters,
        "the same parameters after three steps"
    );

    // Softmax probabilities on request: each row e^s / Σ e^s of its scores, summing to 1,
    // largest at the prediction; absent unless asked for.
    let r = c
        .forward(pb::ForwardRequest {
            model_id: with.clone(),
            x: Some(f64_tensor(&raw)),
            probabilities: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (scores, probs) = (r.scores.unwrap().values_f64, r.probabilities.unwrap());
    assert_eq!(probs.shape, vec![8, 3]);
    for (i, (s, p)) in scores.chunks(3).zip(probs.values_f64.chunks(3)).enumerate() {
        let z: f64 = s.iter().map(|v| v.exp()).sum();
        for (sv, pv) in s.iter().zip(p) {
            assert!(
                (pv - sv.exp() / z).abs() < 1e-15,
                "row {i}: {p:?} for scores {s:?}"
            );
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(best as u32, r.predictions[i]);
    }
    let r = c
        .forward(pb::ForwardRequest {
            model_id: with.clone(),
            x: Some(f64_tensor(&raw)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.probabilities, None);

    // Listed and kept through a checkpoint.
    let listed = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let summary = listed.models.iter().find(|m| m.model_id == with).unwrap();
    assert_eq!(summary.spec.as_ref(), Some(&shown));
    let file = export_file(&mut c, &with).await;
    let imported = c
        .import_model(tokio_stream::iter(backprop::pb::chunks::split(
            file,
            1 << 16,
        )))
        .await
        .unwrap()
        .into_inner();
    let back = get_values(&mut c, &imported.model_id).await;
    assert_eq!(back.spec.as_ref(), Some(&shown));
    assert_eq!(back.parameters, a.parameters);
    srv.stop().await;
}

#[tokio::test]
async fn bad_statistics_and_names_are_refused() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let with = |f: &dyn Fn(&mut pb::ModelSpec)| {
        let mut s = spec(true);
        f(&mut s);
        s
    };
    let cases: Vec<(pb::ModelSpec, &str)> = vec![
        (
            with(&|s| {
                s.standardize
                    .as_mut()
                    .unwrap()
                    .mean
                    .pop()
                    .map(drop)
                    .unwrap_or(())
            }),
            "spec.standardize.mean: 3 values for 4 input columns",
        ),
        (
            with(&|s| s.standardize.as_mut().unwrap().std[2] = 0.0),
            "spec.standardize.std[2]: must be finite and > 0",
        ),
        (
            with(&|s| s.standardize.as_mut().unwrap().mean[0] = f64::INFINITY),
            "spec.standardize.mean[0]: must be finite",
        ),
        (
            with(&|s| s.class_names.truncate(2)),
            "spec.class_names: 2 names for 3 classes",
        ),
        (
            with(&|s| s.class_names[2] = "setosa".into()),
            "spec.class_names[2]: \"setosa\" is also class 0's name",
        ),
        (
            with(&|s| s.class_names[1] = String::new()),
            "spec.class_names[1]: must be 1 to 128 bytes",
        ),
    ];
    for (s, want) in cases {
        let e = c
            .create_model(pb::CreateModelRequest {
                spec: Some(s),
                ..Default::default()
            })
            .await
            .expect_err(want);
        assert_eq!(e.code(), Code::InvalidArgument, "{want}: {e:?}");
        assert!(e.message().starts_with(want), "{}", e.message());
    }
    assert!(
        list_ids(&mut c).await.is_empty(),
        "a refused spec made a model"
    );
    srv.stop().await;
}
