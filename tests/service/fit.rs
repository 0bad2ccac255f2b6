//! Fit end to end: a fit equals the same batches sent as TrainSteps bit for bit (the
//! sampling and the schedules reproduced here from the proto's description alone),
//! early stopping goes back to the best epoch, cancelling or hanging up leaves a model
//! equal to exactly k TrainSteps, a detached fit is followed and replayed by WatchFit,
//! other writers are refused while it runs, every bad request is named, a step that
//! would go non-finite ends the fit at the last good step, and the history records it
//! all and travels with ExportModel.
use std::time::Duration;

use backprop::model::AnyModel;
use backprop::pb;
use backprop::pb::dataset::{Rows, upload_chunks};
use support::*;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::datasets::{blobs, upload, upload_f32};

/// SplitMix64 and the draw the proto documents, written from its text.
struct Documented(u64);

impl Documented {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
    fn shuffle(&mut self, rows: &mut [usize]) {
        for i in (1..rows.len()).rev() {
            let j = self.below(i + 1);
            rows.swap(i, j);
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Constant,
    EpochDecay(f64),
    Step(f64, u32),
    Cosine(f64),
}

/// Every step's rows and rate, as the proto says a fit takes them.
fn documented_steps(
    n: usize,
    batch: usize,
    epochs: u32,
    seed: u64,
    (with_replacement, fraction): (bool, f64),
    lr0: f64,
    kind: Kind,
) -> Vec<(Vec<usize>, f64)> {
    let mut g = Documented(seed);
    let mut train: Vec<usize> = (0..n).collect();
    if fraction > 0.0 {
        g.shuffle(&mut train);
        let held = ((n as f64) * fraction).round() as usize;
        train = train.split_off(held);
    }
    let m = train.len();
    let per_epoch = if with_replacement {
        (m / batch).max(1)
    } else {
        m.div_ceil(batch)
    };
    let planned = per_epoch as u64 * u64::from(epochs);
    let mut steps = Vec::new();
    for e in 0..epochs {
        let batches: Vec<Vec<usize>> = if with_replacement {
            (0..per_epoch)
                .map(|_| (0..batch).map(|_| train[g.below(m)]).collect())
                .collect()
        } else {
            g.shuffle(&mut train);
            train.chunks(batch).map(<[usize]>::to_vec).collect()
        };
        for rows in batches {
            let k = steps.len() as u64;
            let lr = match kind {
                Kind::Constant => lr0,
                Kind::EpochDecay(d) => (0..e).fold(lr0, |lr, _| lr * d),
                Kind::Step(d, every) => (0..e / every).fold(lr0, |lr, _| lr * d),
                Kind::Cosine(min) => {
                    min + (lr0 - min)
                        * (1.0 + libm::cos(std::f64::consts::PI * (k as f64 / planned as f64)))
                        / 2.0
                }
            };
            steps.push((rows, lr));
        }
    }
    steps
}

/// The model's whole state (values, optimizer state, step) through ExportModel.
async fn state(c: &mut Client, id: &str) -> AnyModel {
    let mut s = c
        .export_model(pb::ExportModelRequest {
            model_id: id.into(),
            chunk_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = s.next().await {
        file.extend_from_slice(&chunk.unwrap().data);
    }
    backprop::checkpoint::decode(&file).expect("decode").model
}

/// Sends `steps` as TrainSteps with `learning_rate` set, the rows taken from `x`.
async fn replay(
    c: &mut Client,
    id: &str,
    x: &[f32],
    d: usize,
    y: &[u32],
    steps: &[(Vec<usize>, f64)],
    f64_wire: bool,
) {
    for (rows, lr) in steps {
        let values: Vec<f32> = rows
            .iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
            .collect();
        let shape = vec![rows.len() as u32, d as u32];
        let tensor = if f64_wire {
            pb::Tensor {
                shape,
                values: Vec::new(),
                values_f64: values.iter().map(|&v| f64::from(v)).collect(),
                ..Default::default()
            }
        } else {
            pb::Tensor {
                shape,
                values,
                values_f64: Vec::new(),
                ..Default::default()
            }
        };
        c.train_step(pb::TrainStepRequest {
            model_id: id.into(),
            x: Some(tensor),
            labels: rows.iter().map(|&r| y[r]).collect(),
            learning_rate: Some(*lr),
        })
        .await
        .expect("TrainStep");
    }
}

/// Runs a fit to its end; returns every event.
async fn fit_all(c: &mut Client, req: pb::FitRequest) -> Vec<pb::FitEvent> {
    let mut s = c.fit(req).await.expect("Fit").into_inner();
    let mut events = Vec::new();
    while let Some(e) = s.next().await {
        events.push(e.expect("event"));
    }
    events
}

fn finished(events: &[pb::FitEvent]) -> pb::FitFinished {
    match events.last().and_then(|e| e.event.clone()) {
        Some(pb::fit_event::Event::Finished(f)) => f,
        other => panic!("the last event is not the finish: {other:?}"),
    }
}

fn spec(
    d: u32,
    c: u32,
    optimizer: pb::Optimizer,
    loss: pb::LossKind,
    dtype: pb::Dtype,
) -> pb::ModelSpec {
    pb::ModelSpec {
        input_dim: d,
        hidden: vec![layer(6, pb::Activation::Tanh)],
        num_classes: c,
        loss: loss as i32,
        l2: 1e-3,
        optimizer: Some(optimizer),
        init: seeded(3),
        dtype: dtype as i32,
        ..Default::default()
    }
}

fn fit_request(model: &str, dataset: &str, batch: u32, epochs: u32, seed: u64) -> pb::FitRequest {
    pb::FitRequest {
        model_id: model.into(),
        dataset_id: dataset.into(),
        batch_size: batch,
        epochs,
        seed,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_fit_equals_its_documented_train_steps_bit_for_bit() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (n, d, classes) = (37usize, 4usize, 3u32);
    let (x, y) = blobs(n, d, classes, 11);
    let data = upload(&mut c, upload_chunks(Rows::F32(&x), d, &y, "fit", 64))
        .await
        .unwrap();
    let optimizers = [
        pb::OptimizerKind::Sgd,
        pb::OptimizerKind::Momentum,
        pb::OptimizerKind::Rmsprop,
        pb::OptimizerKind::Adam,
        pb::OptimizerKind::Adamw,
    ];
    let schedules = [
        (Kind::Constant, None),
        (
            Kind::EpochDecay(0.5),
            Some(pb::Schedule {
                kind: pb::ScheduleKind::EpochDecay as i32,
                decay: Some(0.5),
                ..Default::default()
            }),
        ),
        (
            Kind::Step(0.25, 2),
            Some(pb::Schedule {
                kind: pb::ScheduleKind::Step as i32,
                decay: Some(0.25),
                step_epochs: 2,
                ..Default::default()
            }),
        ),
        (
            Kind::Cosine(1e-4),
            Some(pb::Schedule {
                kind: pb::ScheduleKind::Cosine as i32,
                min_lr: 1e-4,
                ..Default::default()
            }),
        ),
    ];
    let mut case = 0u64;
    for (oi, kind) in optimizers.into_iter().enumerate() {
        for (si, (k, schedule)) in schedules.iter().enumerate() {
            case += 1;
            let dtype = if case.is_multiple_of(2) {
                pb::Dtype::F64
            } else {
                pb::Dtype::F32
            };
            let loss = if oi % 2 == 0 {
                pb::LossKind::Softmax
            } else {
                pb::LossKind::Svm
            };
            let with_replacement = si == 1;
            let fraction = if si == 2 { 0.2 } else { 0.0 };
            let opt = pb::Optimizer {
                kind: kind as i32,
                learning_rate: Some(0.05),
                ..Default::default()
            };
            let s = spec(d as u32, classes, opt, loss, dtype);
            let (fitted, _) = create(&mut c, s.clone()).await;
            let (stepped, _) = create(&mut c, s).await;
            let (batch, epochs, seed) = (8, 4, 100 + case);
            let mut req = fit_request(&fitted, &data.dataset_id, batch, epochs, seed);
            req.schedule = *schedule;
            req.validation_fraction = fraction;
            if with_replacement {
                req.sampling = pb::Sampling::WithReplacement as i32;
            }
            let events = fit_all(&mut c, req).await;
            let end = finished(&events);
            assert_eq!(
                end.reason,
                pb::FitEnd::Completed as i32,
                "case {case}: {end:?}"
            );
            let steps = documented_steps(
                n,
                batch as usize,
                epochs,
                seed,
                (with_replacement, fraction),
                0.05,
                *k,
            );
            assert_eq!(end.steps, steps.len() as u64, "case {case}");
            replay(&mut c, &stepped, &x, d, &y, &steps, case.is_multiple_of(3)).await;
            assert_eq!(
                state(&mut c, &fitted).await,
                state(&mut c, &stepped).await,
                "case {case}: {kind:?}, schedule {si}, {dtype:?}, {loss:?}"
            );
            let progress_lrs: Vec<f64> = events
                .iter()
                .filter_map(|e| match &e.event {
                    Some(pb::fit_event::Event::Progress(p)) => Some(p.learning_rate),
                    _ => None,
                })
                .collect();
            assert!(!progress_lrs.is_empty());
            assert!(
                progress_lrs
                    .iter()
                    .all(|lr| steps.iter().any(|(_, l)| l == lr)),
                "case {case}: a reported rate is not one of the steps'"
            );
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn early_stopping_goes_back_to_the_best_epoch() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (n, d) = (40usize, 4usize);
    let (x, y) = blobs(n, d, 3, 12);
    let data = upload_f32(&mut c, &x, d, &y, y.len()).await;
    let opt = pb::Optimizer {
        kind: pb::OptimizerKind::Adam as i32,
        learning_rate: Some(0.01),
        ..Default::default()
    };
    let s = spec(d as u32, 3, opt, pb::LossKind::Softmax, pb::Dtype::F32);
    let (fitted, _) = create(&mut c, s.clone()).await;
    let (stepped, _) = create(&mut c, s).await;
    let mut req = fit_request(&fitted, &data.dataset_id, 10, 20, 5);
    req.validation_fraction = 0.25;
    // No later epoch can beat the first by 1e9: the fit stops after `patience` more
    // epochs and goes back to the end of the first.
    req.early_stopping = Some(pb::EarlyStopping {
        patience: 2,
        min_delta: 1e9,
        ..Default::default()
    });
    let events = fit_all(&mut c, req).await;
    let end = finished(&events);
    assert_eq!(end.reason, pb::FitEnd::EarlyStopped as i32, "{end:?}");
    assert_eq!(
        (end.epochs, end.steps),
        (3, 9),
        "30 training rows in batches of 10"
    );
    assert_eq!(end.best_step, Some(3));
    assert_eq!(end.step, 3, "back at the first epoch's end");
    let epoch_ends: Vec<pb::FitEpochEnd> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::fit_event::Event::EpochEnd(x)) => Some(*x),
            _ => None,
        })
        .collect();
    assert_eq!(epoch_ends.len(), 3);
    assert!(epoch_ends[0].improved && !epoch_ends[1].improved);
    assert_eq!(end.best_value, epoch_ends[0].validation_loss);
    let steps = documented_steps(n, 10, 1, 5, (false, 0.25), 0.01, Kind::Constant);
    replay(&mut c, &stepped, &x, d, &y, &steps, false).await;
    assert_eq!(state(&mut c, &fitted).await, state(&mut c, &stepped).await);
    srv.stop().await;
}

/// A model slow enough that a fit is still running when the test acts.
fn slow(d: u32) -> pb::ModelSpec {
    pb::ModelSpec {
        input_dim: d,
        hidden: vec![
            layer(256, pb::Activation::Relu),
            layer(256, pb::Activation::Relu),
        ],
        num_classes: 3,
        optimizer: sgd(1e-3),
        init: seeded(4),
        ..Default::default()
    }
}

/// Waits for the fit's next progress event, its step.
async fn next_progress(s: &mut tonic::Streaming<pb::FitEvent>) -> u64 {
    loop {
        match s.next().await.expect("an event").expect("ok").event {
            Some(pb::fit_event::Event::Progress(p)) => return p.step,
            Some(pb::fit_event::Event::Finished(f)) => panic!("finished early: {f:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn cancel_and_hang_up_stop_at_a_step_boundary_and_writers_are_refused_meanwhile() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (n, d) = (256usize, 64usize);
    let (x, y) = blobs(n, d, 3, 13);
    let data = upload_f32(&mut c, &x, d, &y, y.len()).await;
    for hang_up in [false, true] {
        let (fitted, _) = create(&mut c, slow(d as u32)).await;
        let (stepped, _) = create(&mut c, slow(d as u32)).await;
        let mut req = fit_request(&fitted, &data.dataset_id, 32, 1000, 9);
        req.progress_every = 1;
        let mut s = c.fit(req.clone()).await.unwrap().into_inner();
        next_progress(&mut s).await;

        // Writers are refused while it runs; readers are served.
        let b = Batch::random(2, d, 3, 1);
        let e = c
            .train_step(pb::TrainStepRequest {
                model_id: fitted.clone(),
                x: Some(b.tensor::<f32>()),
                labels: b.labels.clone(),
                learning_rate: None,
            })
            .await
            .unwrap_err();
        assert_reason(&e, Code::FailedPrecondition, "FIT_RUNNING");
        let e = c.fit(req.clone()).await.unwrap_err();
        assert_reason(&e, Code::FailedPrecondition, "FIT_RUNNING");
        c.forward(pb::ForwardRequest {
            model_id: fitted.clone(),
            x: Some(b.tensor::<f32>()),
            labels: vec![],
            ..Default::default()
        })
        .await
        .expect("Forward while a fit runs");

        let step = if hang_up {
            drop(s);
            // The fit stops at its next step boundary; WatchFit sees its end.
            let mut w = c
                .watch_fit(pb::WatchFitRequest {
                    model_id: fitted.clone(),
                    from_event: 0,
                })
                .await
                .unwrap()
                .into_inner();
            let mut last = None;
            while let Some(e) = w.next().await {
                last = Some(e.unwrap());
            }
            let end = finished(&[last.unwrap()]);
            assert_eq!(end.reason, pb::FitEnd::Cancelled as i32);
            end.step
        } else {
            let r = c
                .cancel_fit(pb::CancelFitRequest {
                    model_id: fitted.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.cancelled);
            let mut rest = Vec::new();
            while let Some(e) = s.next().await {
                rest.push(e.unwrap());
            }
            let end = finished(&rest);
            assert_eq!(end.reason, pb::FitEnd::Cancelled as i32);
            assert_eq!(end.step, r.step);
            r.step
        };
        assert!(step >= 1);
        let steps = documented_steps(n, 32, 1000, 9, (false, 0.0), 1e-3, Kind::Constant);
        replay(&mut c, &stepped, &x, d, &y, &steps[..step as usize], false).await;
        assert_eq!(
            state(&mut c, &fitted).await,
            state(&mut c, &stepped).await,
            "hang up: {hang_up}"
        );
        // The model takes TrainSteps again.
        train(&mut c, &fitted, &b, b.tensor::<f32>()).await;
    }
    srv.stop().await;
}

/// DeleteModel during a fit (as the proto says): the fit ends CANCELLED at a step
/// boundary, the model is gone, and the dataset stays for other fits.
#[tokio::test]
async fn deleting_the_model_cancels_its_fit() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (n, d) = (256usize, 64usize);
    let (x, y) = blobs(n, d, 3, 15);
    let data = upload_f32(&mut c, &x, d, &y, y.len()).await;
    let (fitted, _) = create(&mut c, slow(d as u32)).await;
    let mut req = fit_request(&fitted, &data.dataset_id, 32, 1000, 9);
    req.progress_every = 1;
    let mut s = c.fit(req).await.unwrap().into_inner();
    next_progress(&mut s).await;
    c.delete_model(pb::DeleteModelRequest {
        model_id: fitted.clone(),
    })
    .await
    .expect("DeleteModel while a fit runs");
    let mut rest = Vec::new();
    while let Some(e) = s.next().await {
        rest.push(e.unwrap());
    }
    let end = finished(&rest);
    assert_eq!(end.reason, pb::FitEnd::Cancelled as i32);
    assert!(end.step >= 1 && end.step < 1000 * 8, "{end:?}");
    let e = c
        .watch_fit(pb::WatchFitRequest {
            model_id: fitted,
            from_event: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // The dataset feeds a new model's fit.
    let (other, _) = create(&mut c, slow(d as u32)).await;
    let events = fit_all(&mut c, fit_request(&other, &data.dataset_id, 32, 1, 9)).await;
    assert_eq!(finished(&events).reason, pb::FitEnd::Completed as i32);
    srv.stop().await;
}

#[tokio::test]
async fn a_detached_fit_outlives_its_call_and_watch_fit_replays_its_events() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (x, y) = blobs(30, 4, 3, 14);
    let data = upload_f32(&mut c, &x, 4, &y, y.len()).await;
    let opt = pb::Optimizer {
        kind: pb::OptimizerKind::Sgd as i32,
        learning_rate: Some(0.1),
        ..Default::default()
    };
    let (id, _) = create(&mut c, spec(4, 3, opt, pb::LossKind::Svm, pb::Dtype::F32)).await;
    let e = c
        .watch_fit(pb::WatchFitRequest {
            model_id: id.clone(),
            from_event: 0,
        })
        .await
        .unwrap_err();
    assert_reason(&e, Code::FailedPrecondition, "NO_FIT");
    let mut req = fit_request(&id, &data.dataset_id, 5, 6, 1);
    req.detach = true;
    req.progress_every = 1;
    drop(c.fit(req).await.unwrap());
    let watch = |from| pb::WatchFitRequest {
        model_id: id.clone(),
        from_event: from,
    };
    let mut all = Vec::new();
    let mut w = c.watch_fit(watch(0)).await.unwrap().into_inner();
    while let Some(e) = w.next().await {
        all.push(e.unwrap());
    }
    let end = finished(&all);
    assert_eq!(end.reason, pb::FitEnd::Completed as i32, "{end:?}");
    assert_eq!(end.steps, 36);
    assert_eq!(
        all.iter().map(|e| e.index).collect::<Vec<_>>(),
        (0..all.len() as u64).collect::<Vec<_>>(),
        "every event from the first, in order"
    );
    // started + 36 progress + 6 epoch ends + finished.
    assert_eq!(all.len(), 1 + 36 + 6 + 1);
    assert!(matches!(
        all[0].event,
        Some(pb::fit_event::Event::Started(_))
    ));
    let mut later = Vec::new();
    let mut w = c.watch_fit(watch(40)).await.unwrap().into_inner();
    while let Some(e) = w.next().await {
        later.push(e.unwrap());
    }
    assert_eq!(later, all[40..].to_vec());
    let r = c
        .cancel_fit(pb::CancelFitRequest {
            model_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.cancelled, "nothing was running");
    assert_eq!(r.step, 36);

    // The history has every step and every epoch.
    let h = c
        .get_history(pb::GetHistoryRequest {
            model_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.stride, 1);
    assert_eq!(
        h.steps.iter().map(|p| p.step).collect::<Vec<_>>(),
        (1..=36).collect::<Vec<_>>()
    );
    assert_eq!(
        h.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    assert!(
        h.steps
            .iter()
            .all(|p| p.learning_rate == 0.1 && p.data_loss.is_finite())
    );
    srv.stop().await;
}

#[tokio::test]
async fn every_bad_fit_request_is_named_before_anything_starts() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (x, y) = blobs(20, 4, 3, 15);
    let data = upload_f32(&mut c, &x, 4, &y, y.len()).await;
    let (x5, y5) = blobs(20, 5, 3, 15);
    let wide = upload(
        &mut c,
        upload_chunks(Rows::F32(&x5), 4 + 1, &y5, "w", 1 << 20),
    )
    .await
    .unwrap();
    let mut y_big = y.clone();
    y_big[7] = 3;
    let labels = upload(
        &mut c,
        upload_chunks(Rows::F32(&x), 4, &y_big, "l", 1 << 20),
    )
    .await
    .unwrap();
    let (id, _) = create(&mut c, wire_spec(4, &[], 3)).await;
    let base = fit_request(&id, &data.dataset_id, 5, 2, 0);
    let with = |f: &dyn Fn(&mut pb::FitRequest)| {
        let mut r = base.clone();
        f(&mut r);
        r
    };
    let cases: Vec<(&str, pb::FitRequest, &str)> = vec![
        (
            "a wider dataset",
            with(&|r| r.dataset_id = wide.dataset_id.clone()),
            "dataset_id",
        ),
        (
            "a label ≥ classes",
            with(&|r| r.dataset_id = labels.dataset_id.clone()),
            "dataset_id",
        ),
        ("batch 0", with(&|r| r.batch_size = 0), "batch_size"),
        ("batch > N", with(&|r| r.batch_size = 21), "batch_size"),
        ("no bound", with(&|r| r.epochs = 0), "epochs"),
        (
            "a malformed dataset id",
            with(&|r| r.dataset_id = "x".into()),
            "dataset_id",
        ),
        (
            "both validations",
            with(&|r| {
                r.validation_dataset_id = data.dataset_id.clone();
                r.validation_fraction = 0.5;
            }),
            "validation_fraction",
        ),
        (
            "a fraction of 1",
            with(&|r| r.validation_fraction = 1.0),
            "validation_fraction",
        ),
        (
            "early stopping without validation",
            with(&|r| {
                r.early_stopping = Some(pb::EarlyStopping {
                    patience: 1,
                    ..Default::default()
                })
            }),
            "early_stopping",
        ),
        (
            "patience 0",
            with(&|r| {
                r.validation_fraction = 0.25;
                r.early_stopping = Some(pb::EarlyStopping::default());
            }),
            "early_stopping.patience",
        ),
        (
            "decay 0",
            with(&|r| {
                r.schedule = Some(pb::Schedule {
                    kind: pb::ScheduleKind::EpochDecay as i32,
                    decay: Some(0.0),
                    ..Default::default()
                })
            }),
            "schedule.decay",
        ),
        (
            "min_lr over lr0",
            with(&|r| {
                r.schedule = Some(pb::Schedule {
                    kind: pb::ScheduleKind::Cosine as i32,
                    min_lr: 1.0,
                    ..Default::default()
                })
            }),
            "schedule.min_lr",
        ),
    ];
    let before = state(&mut c, &id).await;
    for (what, req, field) in cases {
        let e = c.fit(req).await.expect_err(what);
        assert_invalid(&e, field);
        if what == "a label ≥ classes" {
            assert!(e.message().contains("row 7 has label 3"), "{}", e.message());
        }
    }
    let unknown = with(&|r| r.dataset_id = "0".repeat(32));
    let e = c.fit(unknown).await.unwrap_err();
    assert_reason(&e, Code::NotFound, "DATASET_NOT_FOUND");
    assert_eq!(
        state(&mut c, &id).await,
        before,
        "a refused fit changed the model"
    );

    // A rate that overflows f32 ends the fit as failed at the last good step.
    let huge = pb::Optimizer {
        kind: pb::OptimizerKind::Sgd as i32,
        learning_rate: Some(1e38),
        ..Default::default()
    };
    let (boom, _) = create(
        &mut c,
        spec(4, 3, huge, pb::LossKind::Softmax, pb::Dtype::F32),
    )
    .await;
    let events = fit_all(&mut c, fit_request(&boom, &data.dataset_id, 5, 3, 0)).await;
    let end = finished(&events);
    assert_eq!(end.reason, pb::FitEnd::Failed as i32, "{end:?}");
    let error = end.error.expect("the step's error");
    assert_eq!(error.code, Code::InvalidArgument as i32);
    let model = state(&mut c, &boom).await;
    assert_eq!(model.step(), end.step);
    assert_eq!(end.steps, end.step, "the failed step is not counted");
    srv.stop().await;
}

#[tokio::test]
async fn history_records_train_steps_and_apply_gradients_and_travels_with_export() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (id, _) = create(&mut c, wire_spec(3, &[], 2)).await;
    let b = Batch::random(4, 3, 2, 2);
    for _ in 0..3 {
        train(&mut c, &id, &b, b.tensor::<f32>()).await;
    }
    let model = get_values(&mut c, &id).await;
    let grads = model
        .parameters
        .iter()
        .map(|p| pb::NamedTensor {
            name: p.name.clone(),
            tensor: Some(pb::Tensor {
                shape: p.shape.clone(),
                values: vec![0.5; p.shape.iter().product::<u32>() as usize],
                values_f64: vec![],
                ..Default::default()
            }),
        })
        .collect();
    c.apply_gradients(pb::ApplyGradientsRequest {
        model_id: id.clone(),
        gradients: grads,
    })
    .await
    .unwrap();
    let h = c
        .get_history(pb::GetHistoryRequest {
            model_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.steps.iter().map(|p| p.step).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        h.steps[..3]
            .iter()
            .all(|p| p.data_loss.is_finite() && p.learning_rate == 1e-2)
    );
    assert!(
        h.steps[3].data_loss.is_nan(),
        "ApplyGradients sees no batch"
    );

    // ExportModel carries it; ImportModel gives it to the new session.
    let mut s = c
        .export_model(pb::ExportModelRequest {
            model_id: id.clone(),
            chunk_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(ch) = s.next().await {
        chunks.push(ch.unwrap());
    }
    let copy = c
        .import_model(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner()
        .model_id;
    let h2 = c
        .get_history(pb::GetHistoryRequest { model_id: copy })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h2.steps.iter().map(|p| p.step).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        h2.steps[0].data_loss.to_bits(),
        h.steps[0].data_loss.to_bits()
    );
    let _ = Duration::ZERO;
    srv.stop().await;
}
