//! A model's metadata end to end: the name and labels CreateModel takes, UpdateModel
//! changes and ListModels filters on; the creation time; the last fit's dataset; the
//! final metrics GetModel and ListModels report; and all of it kept by ExportModel /
//! ImportModel and by the state directory across a restart. Refused names and labels
//! change nothing.
use std::collections::BTreeMap;
use std::time::Duration;

use backprop::pb;
use backprop::server::Config;
use backprop::session::PersistConfig;
use support::*;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::datasets::upload_f32;
use crate::persist::{config, scratch};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn small() -> pb::ModelSpec {
    pb::ModelSpec {
        optimizer: sgd(0.1),
        init: seeded(5),
        ..wire_spec(4, &[layer(6, pb::Activation::Relu)], 3)
    }
}

async fn create_named(
    c: &mut Client,
    name: &str,
    pairs: &[(&str, &str)],
) -> Result<String, tonic::Status> {
    c.create_model(pb::CreateModelRequest {
        spec: Some(small()),
        name: name.into(),
        labels: labels(pairs),
    })
    .await
    .map(|r| r.into_inner().model_id)
}

async fn metadata(c: &mut Client, id: &str) -> pb::GetModelResponse {
    c.get_model(pb::GetModelRequest {
        model_id: id.into(),
        ..Default::default()
    })
    .await
    .expect("GetModel")
    .into_inner()
}

async fn listed(c: &mut Client, name: &str, pairs: &[(&str, &str)]) -> Vec<pb::ModelSummary> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_models(pb::ListModelsRequest {
                page_size: 1,
                page_token,
                name: name.into(),
                labels: labels(pairs),
            })
            .await
            .expect("ListModels")
            .into_inner();
        all.extend(page.models);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

fn field_of(e: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let details = e.get_error_details();
    let bad = details.bad_request().expect("BadRequest");
    bad.field_violations[0].field.clone()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn names_and_labels_are_kept_listed_filtered_and_changed() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let before = now();
    let a = create_named(&mut c, "digits", &[("team", "vision"), ("run", "1")])
        .await
        .unwrap();
    let after = now();
    let b = create_named(&mut c, "digits", &[("team", "nlp")])
        .await
        .unwrap();
    let plain = create_named(&mut c, "", &[]).await.unwrap();

    let m = metadata(&mut c, &a).await.metadata.expect("metadata");
    assert_eq!(m.name, "digits");
    assert_eq!(m.labels, labels(&[("team", "vision"), ("run", "1")]));
    assert!(
        m.created_time >= before.floor() && m.created_time <= after.ceil(),
        "{before} ≤ {} ≤ {after}",
        m.created_time
    );
    assert_eq!(m.dataset_id, "");
    let m = metadata(&mut c, &plain).await.metadata.expect("metadata");
    assert_eq!((m.name.as_str(), m.labels.len()), ("", 0));

    // Filters: by name, by labels, both; paging over the matches only.
    let ids = |models: Vec<pb::ModelSummary>| -> Vec<String> {
        let mut ids: Vec<String> = models.into_iter().map(|m| m.model_id).collect();
        ids.sort();
        ids
    };
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(ids(listed(&mut c, "digits", &[]).await), both);
    assert_eq!(
        ids(listed(&mut c, "", &[("team", "vision")]).await),
        std::slice::from_ref(&a)
    );
    assert_eq!(
        ids(listed(&mut c, "digits", &[("team", "nlp")]).await),
        std::slice::from_ref(&b)
    );
    assert!(
        listed(&mut c, "digits", &[("team", "ops")])
            .await
            .is_empty()
    );
    assert!(listed(&mut c, "other", &[]).await.is_empty());
    assert_eq!(listed(&mut c, "", &[]).await.len(), 3);
    let summary = &listed(&mut c, "", &[("run", "1")]).await[0];
    assert_eq!(summary.metadata.as_ref().unwrap().name, "digits");

    // UpdateModel: rename, set, remove (an absent key is ignored).
    let changed = c
        .update_model(pb::UpdateModelRequest {
            model_id: a.clone(),
            name: Some("digits v2".into()),
            set_labels: labels(&[("run", "2"), ("stage", "prod")]),
            remove_labels: vec!["team".into(), "never-set".into()],
        })
        .await
        .expect("UpdateModel")
        .into_inner();
    assert_eq!(changed.name, "digits v2");
    assert_eq!(changed.labels, labels(&[("run", "2"), ("stage", "prod")]));
    assert_eq!(changed.created_time, m_created(&mut c, &a).await);
    assert_eq!(metadata(&mut c, &a).await.metadata.unwrap(), changed);
    // Absent name: unchanged; "" removes it.
    let same = c
        .update_model(pb::UpdateModelRequest {
            model_id: a.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same, changed);
    let unnamed = c
        .update_model(pb::UpdateModelRequest {
            model_id: b.clone(),
            name: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unnamed.name, "");
    assert_eq!(unnamed.labels, labels(&[("team", "nlp")]));
}

async fn m_created(c: &mut Client, id: &str) -> f64 {
    metadata(c, id).await.metadata.unwrap().created_time
}

#[tokio::test]
async fn bad_names_and_labels_are_refused_by_field_and_change_nothing() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let long = "n".repeat(129);
    let value = "v".repeat(257);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 6] = [
        (&long, vec![], "name"),
        (" padded", vec![], "name"),
        ("tab\tname", vec![], "name"),
        ("ok", vec![("-bad", "x")], "labels[\"-bad\"]"),
        ("ok", vec![("a/b", "x")], "labels[\"a/b\"]"),
        ("ok", vec![("k", &value)], "labels[\"k\"]"),
    ];
    for (name, pairs, field) in cases {
        let e = create_named(&mut c, name, &pairs).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?} {pairs:?}");
        assert_eq!(field_of(&e), field, "{}", e.message());
    }
    let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    let e = c
        .create_model(pb::CreateModelRequest {
            spec: Some(small()),
            name: String::new(),
            labels: many.iter().cloned().collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), field_of(&e).as_str()),
        (Code::InvalidArgument, "labels")
    );
    assert!(
        list_ids(&mut c).await.is_empty(),
        "a refused create makes nothing"
    );

    let id = create_named(&mut c, "kept", &[("a", "1")]).await.unwrap();
    let before = metadata(&mut c, &id).await;
    let refused = [
        (
            pb::UpdateModelRequest {
                name: Some("x".repeat(129)),
                set_labels: labels(&[("b", "2")]),
                ..Default::default()
            },
            "name",
        ),
        (
            pb::UpdateModelRequest {
                name: Some("new".into()),
                set_labels: labels(&[("b", "2"), ("bad key", "3")]),
                ..Default::default()
            },
            "set_labels[\"bad key\"]",
        ),
        (
            pb::UpdateModelRequest {
                set_labels: labels(&[("a", "2")]),
                remove_labels: vec!["a".into()],
                ..Default::default()
            },
            "remove_labels[\"a\"]",
        ),
        (
            pb::UpdateModelRequest {
                remove_labels: vec!["team=ml".into()],
                ..Default::default()
            },
            "remove_labels[0]",
        ),
    ];
    for (mut request, field) in refused {
        request.model_id = id.clone();
        let e = c.update_model(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(field_of(&e), field, "{}", e.message());
        assert_eq!(metadata(&mut c, &id).await, before, "refused: {field}");
    }
    // 64 labels fit; the 65th does not, and the 64 stay.
    let full: BTreeMap<String, String> = (0..63).map(|i| (format!("k{i}"), "v".into())).collect();
    c.update_model(pb::UpdateModelRequest {
        model_id: id.clone(),
        set_labels: full,
        ..Default::default()
    })
    .await
    .expect("64 labels");
    let full = metadata(&mut c, &id).await;
    assert_eq!(full.metadata.as_ref().unwrap().labels.len(), 64);
    let e = c
        .update_model(pb::UpdateModelRequest {
            model_id: id.clone(),
            set_labels: labels(&[("one-more", "v")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), field_of(&e).as_str()),
        (Code::InvalidArgument, "set_labels")
    );
    assert_eq!(metadata(&mut c, &id).await, full);
    let e = c
        .update_model(pb::UpdateModelRequest {
            model_id: "0".repeat(32),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn final_metrics_are_the_latest_step_and_epoch() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let id = create_named(&mut c, "m", &[]).await.unwrap();
    let m = metadata(&mut c, &id).await;
    assert!(m.last_step.is_none() && m.last_epoch.is_none());

    let mut last = None;
    for s in 0..5 {
        let b = Batch::random(8, 4, 3, s);
        last = Some(train(&mut c, &id, &b, b.tensor::<f32>()).await);
    }
    let last = last.unwrap();
    let m = metadata(&mut c, &id).await;
    let step = m.last_step.expect("last step");
    assert_eq!(step.step, 5);
    let losses = last.losses.unwrap();
    assert_eq!(step.data_loss, losses.data_loss.unwrap());
    assert_eq!(step.reg_loss, losses.reg_loss);
    assert_eq!(step.accuracy, last.accuracy);
    let summary = &listed(&mut c, "m", &[]).await[0];
    assert_eq!(summary.last_step.as_ref(), Some(&step));

    // A fit: its dataset is recorded, its last epoch is the final epoch end.
    let (n, d) = (60, 4);
    let x: Vec<f32> = (0..n * d)
        .map(|i| ((i * 7919) % 13) as f32 / 13.0)
        .collect();
    let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let data = upload_f32(&mut c, &x, d, &y, 20).await;
    let mut events = c
        .fit(pb::FitRequest {
            model_id: id.clone(),
            dataset_id: data.dataset_id.clone(),
            validation_fraction: 0.25,
            epochs: 3,
            batch_size: 9,
            seed: 4,
            ..Default::default()
        })
        .await
        .expect("Fit")
        .into_inner();
    let mut last_end = None;
    while let Some(e) = events.next().await {
        if let Some(pb::fit_event::Event::EpochEnd(end)) = e.expect("event").event {
            last_end = Some(end);
        }
    }
    let end = last_end.expect("an epoch end");
    let m = metadata(&mut c, &id).await;
    assert_eq!(m.metadata.unwrap().dataset_id, data.dataset_id);
    let epoch = m.last_epoch.expect("last epoch");
    assert_eq!((epoch.epoch, epoch.step), (end.epoch, end.step));
    assert_eq!(epoch.validation_accuracy, end.validation_accuracy);
    assert_eq!(epoch.validation_loss, end.validation_loss);
    assert_eq!(m.last_step.unwrap().step, m.step);
}

#[tokio::test]
async fn export_and_import_keep_the_metadata_and_final_metrics() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let id = create_named(&mut c, "moved", &[("k", "v")]).await.unwrap();
    let b = Batch::random(8, 4, 3, 1);
    train(&mut c, &id, &b, b.tensor::<f32>()).await;
    let original = metadata(&mut c, &id).await;
    let file = export_file(&mut c, &id).await;
    let copy = c
        .import_model(tokio_stream::iter(chunks_of(&file)))
        .await
        .expect("ImportModel")
        .into_inner()
        .model_id;
    let imported = metadata(&mut c, &copy).await;
    assert_eq!(
        imported.metadata, original.metadata,
        "name, labels, created time"
    );
    assert_eq!(imported.last_step, original.last_step);
}

fn chunks_of(file: &[u8]) -> Vec<pb::CheckpointChunk> {
    vec![pb::CheckpointChunk {
        data: file.to_vec().into(),
        offset: 0,
        total_bytes: file.len() as u64,
        sha256: backprop::pb::chunks::sha256_hex(file),
    }]
}

#[tokio::test]
async fn an_acknowledged_change_is_on_disk_before_the_answer() {
    let dir = scratch("update");
    let srv = TestServer::with_config(config(&dir)).await;
    let mut c = srv.trainer();
    let id = create_named(&mut c, "before", &[]).await.unwrap();
    c.update_model(pb::UpdateModelRequest {
        model_id: id.clone(),
        name: Some("after".into()),
        set_labels: labels(&[("saved", "yes")]),
        ..Default::default()
    })
    .await
    .expect("UpdateModel");
    // Read the file itself: the change is there with no step taken and no stop.
    let file = std::fs::read(dir.join(format!("{id}.safetensors"))).expect("session file");
    let decoded = backprop::checkpoint::decode(&file).expect("decodes");
    let kept = backprop::session::Record::from_metadata(&decoded.extra).expect("record");
    assert_eq!(kept.about.name, "after");
    assert_eq!(
        kept.about.labels.get("saved").map(String::as_str),
        Some("yes")
    );
    let before = metadata(&mut c, &id).await;
    srv.stop().await;

    let srv = TestServer::with_config(config(&dir)).await;
    let mut c = srv.trainer();
    assert_eq!(metadata(&mut c, &id).await, before, "restored as it was");
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_change_that_cannot_be_saved_is_undone() {
    let dir = scratch("unsaved");
    let config = Config {
        persist: Some(PersistConfig {
            dir: dir.clone(),
            every_steps: 0,
            interval: Duration::from_millis(50),
        }),
        ..test_config()
    };
    let srv = TestServer::with_config(config).await;
    let mut c = srv.trainer();
    let id = create_named(&mut c, "first", &[("k", "1")]).await.unwrap();
    let before = metadata(&mut c, &id).await;
    std::fs::remove_dir_all(&dir).expect("remove the state dir");
    let e = c
        .update_model(pb::UpdateModelRequest {
            model_id: id.clone(),
            name: Some("lost".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("nothing was changed"), "{e:?}");
    assert_eq!(metadata(&mut c, &id).await, before, "undone");
    // Once the directory is back, the background retry saves the session and changes
    // are taken again.
    std::fs::create_dir_all(&dir).unwrap();
    let start = std::time::Instant::now();
    loop {
        let r = c
            .update_model(pb::UpdateModelRequest {
                model_id: id.clone(),
                name: Some("second".into()),
                ..Default::default()
            })
            .await;
        match r {
            Ok(m) => {
                assert_eq!(m.into_inner().name, "second");
                break;
            }
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "still refused: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let file = std::fs::read(dir.join(format!("{id}.safetensors"))).expect("session file");
    let decoded = backprop::checkpoint::decode(&file).unwrap();
    let kept = backprop::session::Record::from_metadata(&decoded.extra).unwrap();
    assert_eq!(kept.about.name, "second");
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
