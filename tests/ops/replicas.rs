//! Scale-out (docs/DEPLOY.md): three real replicas (`backprop serve --replica-id
//! backprop-N`), each with its own state directory, behind the reference nginx and
//! HAProxy configurations of deploy/, all on 127.0.0.1. Through either proxy every RPC
//! answers as a direct call does; sessions spread over the replicas and each session's
//! calls reach only its own; `kill -9` of a replica under load costs its sessions only
//! UNAVAILABLE until it is back, at a consistent snapshot, with nothing lost or
//! duplicated; a rolling restart by SIGTERM loses no acknowledged step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backprop::model::Model;
use backprop::pb;
use backprop::pb::dataset::{Rows, upload_chunks};
use backprop::service::convert::spec_from_proto;
use backprop::service::route::{ROUTE_HEADER, routed, routed_to};
use support::process::{Binary, free_port, scratch, wait_for_port};
use support::*;
use tokio::sync::Mutex;
use tonic::Code;
use tonic::transport::Channel;

use crate::proxy::{Kind, Proxy};

const N: usize = 3;
const D: usize = 5;
const C: usize = 3;

fn replica_name(i: usize) -> String {
    format!("backprop-{i}")
}

/// The replica an id names (its part before the dot).
fn owner(id: &str) -> usize {
    let (name, _) = id
        .split_once('.')
        .unwrap_or_else(|| panic!("{id} has no replica"));
    (0..N)
        .find(|&i| replica_name(i) == name)
        .unwrap_or_else(|| panic!("{id}: unknown replica"))
}

/// One replica: its process (None while it is down), its fixed ports and state dir.
struct Replica {
    bin: Option<Binary>,
    scratch: PathBuf,
    port: u16,
    metrics: u16,
    index: usize,
}

impl Replica {
    async fn start(root: &Path, index: usize) -> Self {
        let scratch = root.join(replica_name(index));
        std::fs::create_dir_all(scratch.join("state")).expect("state dir");
        let mut r = Replica {
            bin: None,
            scratch,
            port: free_port(),
            metrics: free_port(),
            index,
        };
        r.up().await;
        r
    }

    /// (Re)starts the process on the replica's own port and state directory.
    async fn up(&mut self) {
        let (state, metrics, name) = (
            self.scratch.join("state").display().to_string(),
            format!("127.0.0.1:{}", self.metrics),
            replica_name(self.index),
        );
        let args = [
            "--replica-id",
            &name,
            "--state-dir",
            &state,
            "--save-every-steps",
            "1",
            "--save-interval-secs",
            "0.2",
            "--metrics-listen",
            &metrics,
            "--shutdown-grace-secs",
            "5",
        ];
        let listen = format!("127.0.0.1:{}", self.port);
        self.bin = Some(Binary::start_on(&self.scratch, &listen, &args).await);
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A direct client (not through the proxy).
    fn direct(&self) -> Client {
        self.bin.as_ref().expect("replica is up").client.clone()
    }

    /// `backprop_requests_total{method=..., code=...}` of this replica.
    async fn requests(&self, method: &str, code: &str) -> f64 {
        let addr = format!("127.0.0.1:{}", self.metrics).parse().expect("addr");
        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let key = format!("backprop_requests_total{{method=\"{method}\",code=\"{code}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }
}

async fn start_replicas(name: &str) -> (PathBuf, Vec<Replica>) {
    let root = scratch(&format!("replicas-{name}"));
    let mut replicas = Vec::new();
    for i in 0..N {
        replicas.push(Replica::start(&root, i).await);
    }
    (root, replicas)
}

async fn client_of(proxy: &Proxy) -> Client {
    let channel = Channel::from_shared(proxy.uri())
        .expect("uri")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {:?}: {e}", proxy.kind));
    Client::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

fn spec(seed: u64) -> pb::ModelSpec {
    pb::ModelSpec {
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Momentum as i32,
            ..Default::default()
        }),
        l2: 1e-3,
        init: seeded(seed),
        ..wire_spec(D as u32, &[layer(8, pb::Activation::Tanh)], C as u32)
    }
}

async fn create(c: &mut Client, seed: u64) -> Result<String, tonic::Status> {
    c.create_model(pb::CreateModelRequest {
        spec: Some(spec(seed)),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().model_id)
}

fn batch(seed: u64, step: u64) -> Batch {
    Batch::random(6, D, C, seed * 1_000_003 + step)
}

async fn step(c: &mut Client, id: &str, b: &Batch) -> Result<u64, tonic::Status> {
    c.train_step(routed(pb::TrainStepRequest {
        model_id: id.to_string(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels.clone(),
        learning_rate: None,
    }))
    .await
    .map(|r| r.into_inner().step)
}

// ---------------------------------------------------------------------------------------
// Every RPC, through the proxy and directly

/// An answer as text with the run's ids replaced by names and timings zeroed, so that
/// the same calls on two twin models compare equal.
struct Transcript {
    lines: Vec<String>,
    names: Vec<(String, String)>,
}

impl Transcript {
    fn name(&mut self, id: &str, as_: &str) {
        self.names.push((id.to_string(), as_.to_string()));
    }

    fn push<T: std::fmt::Debug>(&mut self, what: &str, r: &Result<T, tonic::Status>) {
        let mut text = match r {
            Ok(v) => format!("{what}: {v:?}"),
            Err(s) => format!("{what}: {:?} {}", s.code(), s.message()),
        };
        for (id, name) in &self.names {
            text = text.replace(id, name);
        }
        self.lines.push(text);
    }
}

/// A fit's events to the end, their rates (wall-clock) zeroed.
async fn timeless_events(
    s: &mut tonic::Streaming<pb::FitEvent>,
) -> Result<Vec<pb::FitEvent>, tonic::Status> {
    let mut events = Vec::new();
    while let Some(mut e) = s.message().await? {
        if let Some(pb::fit_event::Event::Progress(p)) = &mut e.event {
            p.steps_per_second = 0.0;
        }
        events.push(e);
    }
    Ok(events)
}

/// The same calls, every RPC of the Trainer, on model `id` over `c` (through a proxy
/// when `routed`, each call carrying its header, or directly); returns the transcript.
async fn every_rpc(c: &mut Client, id: &str, route: &str) -> Vec<String> {
    let mut t = Transcript {
        lines: Vec::new(),
        names: Vec::new(),
    };
    t.name(id, "MODEL");
    let b = batch(7, 1);
    let x = Some(b.tensor::<f32>());
    let labels = b.labels.clone();
    let r = c
        .forward(routed(pb::ForwardRequest {
            model_id: id.into(),
            x: x.clone(),
            labels: labels.clone(),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner());
    t.push("Forward", &r);
    let r = c
        .backward(routed(pb::BackwardRequest {
            model_id: id.into(),
            x: x.clone(),
            labels: labels.clone(),
            upstream: None,
            return_input_grad: true,
        }))
        .await
        .map(|r| r.into_inner());
    let grads = r.as_ref().map(|g| g.gradients.clone()).unwrap_or_default();
    t.push("Backward", &r);
    let r = step(c, id, &b).await;
    t.push("TrainStep", &r);
    let r = c
        .apply_gradients(routed(pb::ApplyGradientsRequest {
            model_id: id.into(),
            gradients: grads,
        }))
        .await
        .map(|r| r.into_inner());
    t.push("ApplyGradients", &r);
    let r = c
        .evaluate(routed(pb::EvaluateRequest {
            model_id: id.into(),
            x: x.clone(),
            labels: labels.clone(),
        }))
        .await
        .map(|r| r.into_inner());
    t.push("Evaluate", &r);
    let r = c
        .gradient_check(routed(pb::GradientCheckRequest {
            model_id: id.into(),
            x: x.clone(),
            labels: labels.clone(),
            max_elements_per_parameter: 3,
        }))
        .await
        .map(|r| r.into_inner());
    t.push("GradientCheck", &r);
    let r = c
        .trace_step(routed(pb::TraceStepRequest {
            model_id: id.into(),
            x: x.clone(),
            labels: labels.clone(),
            shapes_only: false,
        }))
        .await
        .map(|r| r.into_inner());
    t.push("TraceStep", &r);
    // TrainStream: five batches, the first naming the model.
    let batches: Vec<pb::TrainStreamRequest> = (0..5)
        .map(|i| {
            let b = batch(8, i);
            pb::TrainStreamRequest {
                model_id: if i == 0 { id.into() } else { String::new() },
                sequence: i,
                x: Some(b.tensor::<f32>()),
                labels: b.labels,
                learning_rate: None,
            }
        })
        .collect();
    let r = async {
        let mut s = c
            .train_stream(routed_to(tokio_stream::iter(batches), id))
            .await?
            .into_inner();
        let mut answers = Vec::new();
        while let Some(a) = s.message().await? {
            answers.push(a);
        }
        Ok(answers)
    }
    .await;
    t.push("TrainStream", &r);
    // A dataset next to the model, a fit on it, and what follows a fit.
    let data = Batch::random(12, D, C, 99);
    let values: Vec<f32> = data.tensor::<f32>().values;
    let chunks = upload_chunks(Rows::F32(&values), D, &data.labels, "twins", 64);
    let r = c
        .upload_dataset(routed_to(tokio_stream::iter(chunks), id))
        .await
        .map(|r| r.into_inner());
    let ds = r.as_ref().map(|d| d.dataset_id.clone()).unwrap_or_default();
    t.name(&ds, "DATASET");
    t.push(
        "UploadDataset",
        &r.map(|d| (d.rows, d.dim, d.sha256, d.bytes)),
    );
    let r = c
        .get_dataset(routed(pb::GetDatasetRequest {
            dataset_id: ds.clone(),
        }))
        .await
        .map(|r| {
            let d = r.into_inner();
            (d.dataset_id, d.rows, d.label_classes)
        });
    t.push("GetDataset", &r);
    let r = c
        .list_datasets(routed_to(pb::ListDatasetsRequest::default(), route))
        .await
        .map(|r| {
            let l = r.into_inner();
            let ids: Vec<String> = l.datasets.into_iter().map(|d| d.dataset_id).collect();
            (ids.contains(&ds), l.replica)
        });
    t.push("ListDatasets", &r);
    let r = async {
        let mut s = c
            .fit(routed(pb::FitRequest {
                model_id: id.into(),
                dataset_id: ds.clone(),
                batch_size: 4,
                epochs: 2,
                seed: 5,
                progress_every: 1,
                ..Default::default()
            }))
            .await?
            .into_inner();
        timeless_events(&mut s).await
    }
    .await;
    t.push("Fit", &r);
    let r = async {
        let mut s = c
            .watch_fit(routed(pb::WatchFitRequest {
                model_id: id.into(),
                from_event: 0,
            }))
            .await?
            .into_inner();
        timeless_events(&mut s).await
    }
    .await;
    t.push("WatchFit", &r);
    let r = c
        .cancel_fit(routed(pb::CancelFitRequest {
            model_id: id.into(),
        }))
        .await
        .map(|r| r.into_inner());
    t.push("CancelFit", &r);
    let r = c
        .get_history(routed(pb::GetHistoryRequest {
            model_id: id.into(),
        }))
        .await
        .map(|r| {
            // When each point was recorded differs between the twins; the rest may not.
            let mut h = r.into_inner();
            h.steps.iter_mut().for_each(|p| p.time = 0.0);
            h.epochs.iter_mut().for_each(|p| p.time = 0.0);
            h
        });
    t.push("GetHistory", &r);
    let r = c
        .update_model(routed(pb::UpdateModelRequest {
            model_id: id.into(),
            name: Some("twin".into()),
            set_labels: [("via".to_string(), "either".to_string())].into(),
            ..Default::default()
        }))
        .await
        .map(|r| {
            let mut m = r.into_inner();
            m.created_time = 0.0;
            m
        });
    t.push("UpdateModel", &r);
    let r = c
        .get_model(routed(pb::GetModelRequest {
            model_id: id.into(),
            include_values: true,
            ..Default::default()
        }))
        .await
        .map(|r| timeless(r.into_inner()));
    t.push("GetModel", &r);
    // Export, and import the file back onto the same replica.
    let r = async {
        let mut s = c
            .export_model(routed(pb::ExportModelRequest {
                model_id: id.into(),
                chunk_bytes: 0,
            }))
            .await?
            .into_inner();
        let mut file = Vec::new();
        while let Some(m) = s.message().await? {
            file.extend_from_slice(&m.data);
        }
        Ok(file)
    }
    .await;
    let file = r.clone().unwrap_or_default();
    // The file holds the history's wall-clock times (its length varies with them): what
    // it carries is compared through the model imported from it.
    t.push("ExportModel", &r.map(|f| !f.is_empty()));
    let chunks = backprop::pb::chunks::split(file, 1 << 16);
    let r = c
        .import_model(routed_to(tokio_stream::iter(chunks), route))
        .await
        .map(|r| r.into_inner());
    let imported = r.as_ref().map(|i| i.model_id.clone()).unwrap_or_default();
    t.name(&imported, "IMPORTED");
    t.push("ImportModel", &r);
    let r = c
        .get_model(routed(pb::GetModelRequest {
            model_id: imported.clone(),
            include_values: true,
            ..Default::default()
        }))
        .await
        .map(|r| timeless(r.into_inner()));
    t.push("GetModel(imported)", &r);
    let r = c
        .list_models(routed_to(pb::ListModelsRequest::default(), route))
        .await
        .map(|r| {
            let l = r.into_inner();
            let ids: BTreeSet<String> = l.models.into_iter().map(|m| m.model_id).collect();
            (ids.contains(id), ids.contains(&imported), l.replica)
        });
    t.push("ListModels", &r);
    let r = c
        .delete_dataset(routed(pb::DeleteDatasetRequest { dataset_id: ds }))
        .await
        .map(|r| r.into_inner());
    t.push("DeleteDataset", &r);
    for (what, model) in [
        ("DeleteModel(imported)", imported),
        ("DeleteModel", id.into()),
    ] {
        let r = c
            .delete_model(routed(pb::DeleteModelRequest { model_id: model }))
            .await
            .map(|r| r.into_inner());
        t.push(what, &r);
    }
    t.lines
}

/// Every RPC gives the same answers through nginx and through HAProxy as directly, on
/// twin models (the same seeded spec on the same replica), and the proxied calls reach
/// the replica the id names.
#[tokio::test]
async fn every_rpc_through_either_proxy_answers_as_a_direct_call() {
    let _alone = crate::ALONE.lock().await;
    let (root, replicas) = start_replicas("every-rpc").await;
    let addrs: Vec<String> = replicas.iter().map(Replica::addr).collect();
    for kind in Kind::ALL {
        let proxy = Proxy::start(kind, &root, &addrs).await;
        let mut via = client_of(&proxy).await;
        let id = create(&mut via, 11)
            .await
            .expect("CreateModel through the proxy");
        let r = owner(&id);
        let mut direct = replicas[r].direct();
        let twin = create(&mut direct, 11).await.expect("CreateModel directly");
        assert_eq!(owner(&twin), r);
        let name = replica_name(r);
        let proxied = every_rpc(&mut via, &id, &name).await;
        let straight = every_rpc(&mut direct, &twin, &name).await;
        assert_eq!(proxied.len(), straight.len());
        for (p, s) in proxied.iter().zip(&straight) {
            assert_eq!(p, s, "{kind:?}: through the proxy vs directly");
        }
        // Nothing in either transcript failed (a refusal would be the same both ways).
        for line in &proxied {
            assert!(
                !line.contains("FailedPrecondition") && !line.contains("Unavailable"),
                "{kind:?}: {line}"
            );
        }
        assert!(
            proxied
                .iter()
                .any(|l| l.starts_with("ListModels: (true, true, \"backprop-")),
            "{kind:?}: ListModels names its replica: {proxied:#?}"
        );
        drop(proxy);
    }
}

// ---------------------------------------------------------------------------------------
// Placement

/// 300 sessions created through each proxy spread over all three replicas; one
/// TrainStep on each, through the proxy, reaches the replica its id names (each
/// replica's metrics count exactly its own sessions' steps and no refused one), and a
/// direct ListModels of each replica shows exactly the ids that name it, at step 1.
#[tokio::test]
async fn sessions_spread_over_the_replicas_and_their_calls_stay_on_theirs() {
    let _alone = crate::ALONE.lock().await;
    let (root, replicas) = start_replicas("spread").await;
    let addrs: Vec<String> = replicas.iter().map(Replica::addr).collect();
    let mut all: Vec<String> = Vec::new();
    for kind in Kind::ALL {
        let proxy = Proxy::start(kind, &root, &addrs).await;
        let mut via = client_of(&proxy).await;
        let before: Vec<f64> = futures_all(&replicas, "TrainStep", "OK").await;
        let mut ids = Vec::new();
        for k in 0..300 {
            ids.push(create(&mut via, k).await.expect("CreateModel"));
        }
        let mut per = [0usize; N];
        for id in &ids {
            per[owner(id)] += 1;
        }
        for (i, n) in per.iter().enumerate() {
            assert!(
                *n >= 50,
                "{kind:?}: replica {i} got {n} of 300 sessions: {per:?}"
            );
        }
        for (k, id) in ids.iter().enumerate() {
            let s = step(&mut via, id, &batch(k as u64, 1)).await;
            assert_eq!(s.ok(), Some(1), "{kind:?}: TrainStep on {id}");
        }
        let after = futures_all(&replicas, "TrainStep", "OK").await;
        for i in 0..N {
            assert_eq!(
                after[i] - before[i],
                per[i] as f64,
                "{kind:?}: replica {i} served exactly its own sessions' steps"
            );
        }
        all.extend(ids);
        // One replica's models a page at a time through the proxy: each page after the
        // first goes to the replica that answered (its page tokens are its own).
        let mut paged = Vec::new();
        let (mut token, mut to) = (String::new(), replica_name(1));
        loop {
            let page = via
                .list_models(routed_to(
                    pb::ListModelsRequest {
                        page_size: 37,
                        page_token: token,
                        ..Default::default()
                    },
                    &to,
                ))
                .await
                .expect("ListModels page")
                .into_inner();
            assert_eq!(page.replica, replica_name(1));
            paged.extend(page.models.into_iter().map(|m| m.model_id));
            if page.next_page_token.is_empty() {
                break;
            }
            (token, to) = (page.next_page_token, page.replica);
        }
        let direct: Vec<String> = list_all(&mut replicas[1].direct())
            .await
            .into_keys()
            .collect();
        assert_eq!(paged, direct, "{kind:?}: paged through the proxy");
        // The CLI lists one replica's models through the proxy.
        let out = std::process::Command::new(support::process::binary())
            .args([
                "models",
                "--json",
                "--replica",
                "backprop-2",
                "--address",
                &proxy.uri(),
            ])
            .output()
            .expect("backprop models");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(listed["replica"], "backprop-2");
        let cli: Vec<&str> = listed["models"]
            .as_array()
            .expect("models")
            .iter()
            .map(|m| m["model_id"].as_str().expect("id"))
            .collect();
        let on2: Vec<String> = list_all(&mut replicas[2].direct())
            .await
            .into_keys()
            .collect();
        assert_eq!(cli, on2, "{kind:?}: backprop models --replica");
        drop(proxy);
    }
    for r in &replicas {
        for code in ["FAILED_PRECONDITION", "NOT_FOUND", "INVALID_ARGUMENT"] {
            assert_eq!(
                r.requests("TrainStep", code).await,
                0.0,
                "no TrainStep was {code}"
            );
        }
        let listed = list_all(&mut r.direct()).await;
        let want: BTreeMap<String, u64> = all
            .iter()
            .filter(|id| owner(id) == r.index)
            .map(|id| (id.clone(), 1))
            .collect();
        assert_eq!(listed, want, "replica {} holds exactly its ids", r.index);
    }
}

/// GetModel with values, routed on the id (through a proxy).
async fn get_routed(c: &mut Client, id: &str) -> pb::GetModelResponse {
    c.get_model(routed(pb::GetModelRequest {
        model_id: id.to_string(),
        include_values: true,
        ..Default::default()
    }))
    .await
    .expect("GetModel")
    .into_inner()
}

async fn futures_all(replicas: &[Replica], method: &str, code: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for r in replicas {
        out.push(r.requests(method, code).await);
    }
    out
}

/// Every model a replica lists, with its step.
async fn list_all(c: &mut Client) -> BTreeMap<String, u64> {
    let l = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .expect("ListModels")
        .into_inner();
    l.models.into_iter().map(|m| (m.model_id, m.step)).collect()
}

// ---------------------------------------------------------------------------------------
// Failures

/// The engine's twin of session `seed` trained on its batches numbered `batches`.
fn replay(seed: u64, batches: &[u64]) -> Model<f32> {
    let mut m = Model::<f32>::new(spec_from_proto(Some(spec(seed))).expect("spec")).expect("model");
    for &n in batches {
        let b = batch(seed, n);
        m.train_step(b.array::<f32>().view(), &b.labels_usize())
            .expect("replay");
    }
    m
}

/// What the load clients saw: per session the batches applied at steps 1, 2, … as far
/// as the answers tell (`applied[id][s - 1]` is the number of the batch step s took) and
/// the batch in flight; outcomes by (replica of the session, phase, code).
#[derive(Default)]
struct Seen {
    applied: BTreeMap<String, Vec<u64>>,
    inflight: BTreeMap<String, u64>,
    /// Sessions with a call on its way now.
    busy: BTreeSet<String>,
    /// Acknowledged steps a session no longer had when it answered next (a replica
    /// came back older).
    rewound: u64,
    codes: BTreeMap<(usize, &'static str, i32), u64>,
}

impl Seen {
    fn acked_all(&self) -> BTreeMap<String, u64> {
        self.applied
            .iter()
            .map(|(id, a)| (id.clone(), a.len() as u64))
            .collect()
    }

    fn acked(&self, id: &str) -> u64 {
        self.applied.get(id).map_or(0, |a| a.len() as u64)
    }

    /// The batches of session `id` up to `step`, the one in flight included: what the
    /// server must have applied to be at `step`.
    fn batches_to(&self, id: &str, step: u64) -> Vec<u64> {
        let mut a = self.applied.get(id).cloned().unwrap_or_default();
        if step as usize == a.len() + 1 {
            a.push(*self.inflight.get(id).expect("a batch in flight"));
        }
        assert!(
            step as usize <= a.len(),
            "{id} is at step {step}, beyond every batch sent ({})",
            a.len()
        );
        a.truncate(step as usize);
        a
    }

    /// Session `id` answered `step` for batch `n`: what went before it stays (a shorter
    /// history is a rewind: the replica came back older after a kill), with `lost` (a
    /// batch whose answer was lost) as the step before when one is missing.
    fn answered(&mut self, id: &str, step: u64, n: u64, lost: Option<u64>) {
        let a = self.applied.entry(id.to_string()).or_default();
        let before = step as usize - 1;
        if before == a.len() + 1 {
            a.push(lost.unwrap_or_else(|| panic!("{id}: step {step} follows a step never sent")));
        }
        assert!(
            before <= a.len(),
            "{id}: step {step} after {} known",
            a.len()
        );
        self.rewound += (a.len() - before) as u64;
        a.truncate(before);
        a.push(n);
    }
}

/// Trains the sessions in `mine` (id, seed) round-robin through the proxy until `stop`,
/// each call carrying the session's next batch (numbered from 1, never reused), and
/// records every answer (which step took which batch) under the phase `phase` says it
/// is in. Sessions of the replica in `hold` are left alone. After a failed call, and
/// after a hold, the client asks the session's step before training it again (a failed
/// call may have been applied before its answer was lost; a killed replica comes back
/// at its last save), as a careful client does.
async fn load(mut c: Client, mine: Vec<(String, u64)>, shared: Arc<Load>) {
    let mut sent: Vec<u64> = vec![0; mine.len()];
    let mut lost: Vec<Option<u64>> = vec![None; mine.len()];
    let mut resync: Vec<bool> = vec![false; mine.len()];
    while !shared.stop.load(Ordering::Relaxed) {
        for (k, (id, seed)) in mine.iter().enumerate() {
            if shared.hold.load(Ordering::Relaxed) == owner(id) {
                resync[k] = true;
                continue;
            }
            if resync[k] {
                let r = c
                    .get_model(routed(pb::GetModelRequest {
                        model_id: id.clone(),
                        include_values: false,
                        ..Default::default()
                    }))
                    .await;
                if let Ok(m) = r {
                    let at = m.into_inner().step;
                    let mut s = shared.seen.lock().await;
                    let a = s.applied.entry(id.clone()).or_default();
                    if at as usize == a.len() + 1 {
                        a.push(lost[k].expect("a step the client never sent"));
                    }
                    assert!(
                        at as usize <= a.len(),
                        "{id}: at step {at} after {} sent",
                        a.len()
                    );
                    let gone = (a.len() - at as usize) as u64;
                    a.truncate(at as usize);
                    s.rewound += gone;
                    (resync[k], lost[k]) = (false, None);
                }
                continue;
            }
            sent[k] += 1;
            let n = sent[k];
            {
                let mut s = shared.seen.lock().await;
                s.inflight.insert(id.clone(), n);
                s.busy.insert(id.clone());
            }
            let r = step(&mut c, id, &batch(*seed, n)).await;
            // The phase the answer came in (a call cut by the kill counts as "down").
            let p = *shared.phase.lock().unwrap();
            let mut s = shared.seen.lock().await;
            s.busy.remove(id);
            let code = match r {
                Ok(step) => {
                    s.answered(id, step, n, lost[k].take());
                    Code::Ok
                }
                Err(e) => {
                    (resync[k], lost[k]) = (true, Some(n));
                    e.code()
                }
            };
            *s.codes.entry((owner(id), p, code as i32)).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What the load tasks share with the test.
struct Load {
    seen: Mutex<Seen>,
    phase: std::sync::Mutex<&'static str>,
    stop: AtomicBool,
    /// A replica whose sessions are not called (`usize::MAX`: none).
    hold: AtomicUsize,
}

impl Load {
    fn phase(&self, p: &'static str) {
        *self.phase.lock().unwrap() = p;
    }
}

/// Starts `clients` load tasks over `sessions` through `proxy`.
async fn start_load(
    proxy: &Proxy,
    sessions: &[(String, u64)],
    clients: usize,
) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let shared = Arc::new(Load {
        seen: Mutex::new(Seen::default()),
        phase: std::sync::Mutex::new("before"),
        stop: AtomicBool::new(false),
        hold: AtomicUsize::new(usize::MAX),
    });
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mine: Vec<(String, u64)> = sessions.iter().skip(i).step_by(clients).cloned().collect();
        tasks.push(tokio::spawn(load(
            client_of(proxy).await,
            mine,
            shared.clone(),
        )));
    }
    (shared, tasks)
}

/// Stops the load and waits for its tasks (a failed assertion in one fails the test).
async fn stop_load(shared: &Load, tasks: Vec<tokio::task::JoinHandle<()>>) {
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
}

/// Every session is the replay of its batches up to the step it holds.
async fn all_replay(kind: Kind, replicas: &[Replica], sessions: &[(String, u64)], seen: &Seen) {
    for (id, seed) in sessions {
        let got = get_values(&mut replicas[owner(id)].direct(), id).await;
        let batches = seen.batches_to(id, got.step);
        assert_params_eq(&format!("{kind:?} {id}"), &got, &replay(*seed, &batches));
    }
}

async fn sessions_through(proxy: &Proxy, n: u64) -> Vec<(String, u64)> {
    let mut via = client_of(proxy).await;
    let mut out = Vec::new();
    for seed in 0..n {
        out.push((
            create(&mut via, 1000 + seed).await.expect("CreateModel"),
            1000 + seed,
        ));
    }
    let per: BTreeSet<usize> = out.iter().map(|(id, _)| owner(id)).collect();
    assert_eq!(per.len(), N, "the sessions landed on every replica");
    out
}

/// `kill -9` of one replica while four clients train 18 sessions through the proxy
/// (nginx, then HAProxy): its sessions answer UNAVAILABLE and nothing else until it is
/// back, the other replicas' sessions never fail, CreateModel keeps succeeding; after the
/// restart each of its sessions is back at a step no later than the last acknowledged
/// one plus the call in flight and no older than half a second before the kill (saves
/// run after every step), bit-identical to replaying its batches, and trains on;
/// every session created is listed by exactly one replica.
#[tokio::test]
async fn kill_9_of_a_replica_costs_only_its_sessions_downtime() {
    let _alone = crate::ALONE.lock().await;
    for kind in Kind::ALL {
        let (root, mut replicas) = start_replicas(&format!("kill9-{kind:?}")).await;
        let addrs: Vec<String> = replicas.iter().map(Replica::addr).collect();
        let proxy = Proxy::start(kind, &root, &addrs).await;
        let sessions = sessions_through(&proxy, 18).await;
        let (load, tasks) = start_load(&proxy, &sessions, 4).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // What a save (every step, in the background, and every 0.2 s) has surely
        // written by the kill, half a second later.
        let early = load.seen.lock().await.acked_all();
        tokio::time::sleep(Duration::from_millis(500)).await;

        let dead = owner(&sessions[0].0);
        replicas[dead]
            .bin
            .as_ref()
            .expect("up")
            .signal(libc::SIGKILL);
        load.phase("down");
        replicas[dead].bin.take().expect("up").wait().await;
        // Answers already on their way when it died have arrived.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at_kill = load.seen.lock().await.acked_all();
        // While it is down: new sessions are made on the live replicas.
        let mut via = client_of(&proxy).await;
        let mut created_down = Vec::new();
        for seed in 0..6 {
            let id = create(&mut via, 5000 + seed).await.unwrap_or_else(|e| {
                panic!(
                    "{kind:?}: CreateModel with a replica down: {e:?}\n{}",
                    proxy.log()
                )
            });
            assert_ne!(owner(&id), dead);
            created_down.push(id);
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Its sessions are left alone until their restored state is checked.
        load.hold.store(dead, Ordering::Relaxed);
        load.phase("restarting");
        // A call the proxy still holds for the dead replica (HAProxy retries the
        // connection) ends, refused, before the replica is back.
        let waited = Instant::now();
        while load
            .seen
            .lock()
            .await
            .busy
            .iter()
            .any(|id| owner(id) == dead)
        {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "{kind:?}: a call hangs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let acked_down = load.seen.lock().await.acked_all();
        replicas[dead].up().await;
        wait_for_port(replicas[dead].port, "the restarted replica").await;
        // Restored: every session of the dead replica, at a consistent snapshot.
        let mut direct = replicas[dead].direct();
        for (id, seed) in sessions.iter().filter(|(id, _)| owner(id) == dead) {
            let got = get_values(&mut direct, id).await;
            let acked = acked_down.get(id).copied().unwrap_or(0);
            assert_eq!(
                acked,
                at_kill.get(id).copied().unwrap_or(0),
                "{kind:?}: {id} was acknowledged while its replica was down"
            );
            // Not beyond the call in flight at the kill, not older than half a second.
            let old = early.get(id).copied().unwrap_or(0);
            assert!(
                got.step <= acked + 1 && got.step >= old && old > 0,
                "{kind:?}: {id} came back at step {}; {acked} was acknowledged at the kill, \
                 {old} half a second before",
                got.step
            );
            let batches = load.seen.lock().await.batches_to(id, got.step);
            assert_params_eq(&format!("{kind:?} {id}"), &got, &replay(*seed, &batches));
        }
        load.phase("after");
        load.hold.store(usize::MAX, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(800)).await;
        stop_load(&load, tasks).await;
        let seen = load.seen.lock().await;
        all_replay(kind, &replicas, &sessions, &seen).await;
        let count = |r: usize, p: &'static str, code: Code| {
            seen.codes.get(&(r, p, code as i32)).copied().unwrap_or(0)
        };
        let live: Vec<usize> = (0..N).filter(|&r| r != dead).collect();
        for (&(r, p, code), n) in &seen.codes {
            let code = Code::from(code);
            if r != dead {
                assert_eq!(
                    code,
                    Code::Ok,
                    "{kind:?}: a live replica's session failed ({p}) {n}×"
                );
            } else if p == "down" {
                assert!(
                    code == Code::Unavailable || code == Code::Ok,
                    "{kind:?}: the dead replica's session answered {code:?} while it was down"
                );
            } else if p == "after" || p == "before" {
                assert_eq!(code, Code::Ok, "{kind:?}: the dead replica's session, {p}");
            }
        }
        assert!(
            count(dead, "down", Code::Unavailable) > 0,
            "{kind:?}: the outage was seen"
        );
        for p in ["before", "after"] {
            assert!(
                count(dead, p, Code::Ok) > 0,
                "{kind:?}: its sessions trained {p}"
            );
            for &r in &live {
                assert!(
                    count(r, p, Code::Ok) > 0,
                    "{kind:?}: replica {r} trained {p}"
                );
            }
        }
        // Nothing lost or duplicated: every session made is listed by exactly one replica.
        let mut listed: Vec<String> = Vec::new();
        for r in &replicas {
            let ids = list_all(&mut r.direct()).await;
            for id in ids.keys() {
                assert_eq!(owner(id), r.index, "{id} is listed by replica {}", r.index);
            }
            listed.extend(ids.into_keys());
        }
        let mut made: Vec<String> = sessions.iter().map(|(id, _)| id.clone()).collect();
        made.extend(created_down);
        made.sort();
        listed.sort();
        assert_eq!(listed, made, "{kind:?}: every session, once");
        eprintln!(
            "{kind:?} kill -9 of replica {dead}: calls by (replica, phase, code): {:?}",
            seen.codes
        );
        drop(proxy);
    }
}

/// A rolling restart (SIGTERM each replica in turn, waiting for it to be back) under
/// load through each proxy loses no acknowledged step: afterwards every session's step
/// is at least its last acknowledged one, and its parameters are the replay of its
/// batches up to the step it holds.
#[tokio::test]
async fn a_rolling_restart_loses_no_acknowledged_step() {
    let _alone = crate::ALONE.lock().await;
    for kind in Kind::ALL {
        let (root, mut replicas) = start_replicas(&format!("rolling-{kind:?}")).await;
        let addrs: Vec<String> = replicas.iter().map(Replica::addr).collect();
        let proxy = Proxy::start(kind, &root, &addrs).await;
        let sessions = sessions_through(&proxy, 12).await;
        let (load, tasks) = start_load(&proxy, &sessions, 3).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        for r in replicas.iter_mut() {
            load.phase("restarting");
            let code = r.bin.take().expect("up").terminate().await;
            assert_eq!(
                code,
                Some(0),
                "{kind:?}: replica {} saved everything and exited",
                r.index
            );
            r.up().await;
            load.phase("between");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        stop_load(&load, tasks).await;
        let seen = load.seen.lock().await;
        let start = Instant::now();
        let mut ok = 0u64;
        for (id, seed) in &sessions {
            let got = get_values(&mut replicas[owner(id)].direct(), id).await;
            let acked = seen.acked(id);
            assert!(
                got.step >= acked,
                "{kind:?}: {id} is at step {} after the restarts, {acked} was acknowledged",
                got.step
            );
            let batches = seen.batches_to(id, got.step);
            assert_params_eq(&format!("{kind:?} {id}"), &got, &replay(*seed, &batches));
            ok += acked;
        }
        assert!(ok > 0, "{kind:?}: steps were acknowledged");
        assert_eq!(seen.rewound, 0, "{kind:?}: acknowledged steps were lost");
        for (&(r, p, code), n) in &seen.codes {
            let code = Code::from(code);
            assert!(
                code == Code::Ok || (p == "restarting" && code == Code::Unavailable),
                "{kind:?}: replica {r}'s session answered {code:?} {n}× ({p})"
            );
        }
        eprintln!(
            "{kind:?} rolling restart: {ok} steps acknowledged, checked in {:?}; calls: {:?}",
            start.elapsed(),
            seen.codes
        );
        drop(proxy);
    }
}

// ---------------------------------------------------------------------------------------
// Misrouting

/// A call that reaches the wrong replica is refused with the owner named; a header
/// that disagrees with the body is INVALID_ARGUMENT naming the header.
#[tokio::test]
async fn a_misrouted_call_names_its_replica() {
    let _alone = crate::ALONE.lock().await;
    let (_root, replicas) = start_replicas("misrouted").await;
    let mut on0 = replicas[0].direct();
    let id = create(&mut on0, 1).await.expect("CreateModel");
    assert!(id.starts_with("backprop-0."), "{id}");
    let mut on1 = replicas[1].direct();
    let e = step(&mut on1, &id, &batch(1, 1))
        .await
        .expect_err("misrouted");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("held by replica backprop-0")
            && e.message().contains("this is replica backprop-1")
            && e.message().contains(ROUTE_HEADER),
        "{}",
        e.message()
    );
    let mut req = tonic::Request::new(pb::GetModelRequest {
        model_id: id.clone(),
        include_values: false,
        ..Default::default()
    });
    let other = id.replace("backprop-0.", "backprop-2.");
    req.metadata_mut()
        .insert(ROUTE_HEADER, other.parse().expect("ascii"));
    let e = on0.get_model(req).await.expect_err("mismatch");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with(&format!("{ROUTE_HEADER}: ")),
        "{}",
        e.message()
    );
}

/// A replica started on a state directory another replica wrote refuses to start, and
/// says why; under its own name it serves the sessions again.
#[tokio::test]
async fn a_state_directory_keeps_its_replica() {
    let _alone = crate::ALONE.lock().await;
    let (_root, mut replicas) = start_replicas("state-owner").await;
    let id = create(&mut replicas[0].direct(), 1)
        .await
        .expect("CreateModel");
    let code = replicas[0].bin.take().expect("up").terminate().await;
    assert_eq!(code, Some(0));
    let state = replicas[0].scratch.join("state").display().to_string();
    let out = std::process::Command::new(support::process::binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--replica-id",
            "backprop-7",
        ])
        .args(["--state-dir", &state])
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "started on another replica's state dir"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("belongs to replica backprop-0")
            && stderr.contains("this server is backprop-7"),
        "{stderr}"
    );
    replicas[0].up().await;
    let listed = list_all(&mut replicas[0].direct()).await;
    assert_eq!(listed.keys().collect::<Vec<_>>(), vec![&id]);
}

/// `backprop migrate` through nginx moves a trained session to another replica: the
/// copy is the same model at the same step with the same history, the source is gone,
/// and training goes on under the new id. Pointed at one replica instead of a proxy it
/// moves nothing and says why.
#[tokio::test]
async fn migrate_moves_a_session_between_replicas() {
    let _alone = crate::ALONE.lock().await;
    let (root, replicas) = start_replicas("migrate").await;
    let addrs: Vec<String> = replicas.iter().map(Replica::addr).collect();
    let proxy = Proxy::start(Kind::Nginx, &root, &addrs).await;
    let mut via = client_of(&proxy).await;
    let id = create(&mut via, 42).await.expect("CreateModel");
    for s in 1..=3 {
        assert_eq!(step(&mut via, &id, &batch(42, s)).await.ok(), Some(s));
    }
    let before = get_routed(&mut via, &id).await;
    let history = |c: &mut Client, id: String| {
        let mut c = c.clone();
        async move {
            let mut h = c
                .get_history(routed(pb::GetHistoryRequest { model_id: id }))
                .await
                .expect("GetHistory")
                .into_inner();
            h.steps.iter_mut().for_each(|p| p.time = p.time.round());
            h
        }
    };
    let history_before = history(&mut via, id.clone()).await;
    let from = owner(&id);
    let to = replica_name((from + 1) % N);
    let migrate = |address: String, id: String, to: String| {
        std::process::Command::new(support::process::binary())
            .args(["migrate", &id, "--to", &to, "--json", "--address", &address])
            .output()
            .expect("run backprop migrate")
    };

    // Straight at the source replica, not a proxy: the import stays there.
    let out = migrate(addrs[from].clone(), id.clone(), to.clone());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing moved") && stderr.contains("x-backprop-model"),
        "{stderr}"
    );
    let left = list_all(&mut replicas[from].direct()).await;
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        vec![&id],
        "no copy left behind"
    );

    let out = migrate(proxy.uri(), id.clone(), to.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let new_id = moved["model_id"].as_str().expect("model_id").to_string();
    assert_eq!(owner(&new_id), (from + 1) % N);
    assert_eq!(moved["step"], 3);
    let after = get_routed(&mut via, &new_id).await;
    assert_eq!(after.step, before.step);
    assert_eq!(after.parameters, before.parameters);
    let mut history_after = history(&mut via, new_id.clone()).await;
    history_after
        .steps
        .iter_mut()
        .for_each(|p| p.time = p.time.round());
    assert_eq!(history_after, history_before, "the history moved too");
    let e = replicas[from]
        .direct()
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await
        .expect_err("the source is deleted");
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(step(&mut via, &new_id, &batch(42, 4)).await.ok(), Some(4));
}
