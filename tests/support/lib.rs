//! The end-to-end harness: boots the real server (`backprop::server::run`) in-process on
//! `127.0.0.1:0`, hands out tonic clients, stops it through its shutdown future; plus
//! helpers to build requests, compare wire tensors with the engine bit for bit, and check
//! that a rejected call left its model exactly as it was.
//!
//! One crate every test binary depends on (a dev-dependency named `support`): `engine`
//! (seeded data and the gate harness), `errors` (what an error status must say and
//! carry), `process` (the real binary as a child process, a
//! tmpfs to fill), `pki` (certificates made by the tests).

pub mod engine;
pub mod errors;
pub mod pki;
pub mod process;

pub use errors::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use backprop::engine::Scalar;
use backprop::model::{Model, ModelSpec};
use backprop::pb;
use backprop::pb::trainer_client::TrainerClient;
use backprop::server::{self, Config, Listeners};
use ndarray::{Array2, ArrayD};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;

pub type Client = TrainerClient<Channel>;
type RunResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A server running on this test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Where `GET /metrics` answers, for a server started with metrics.
    pub metrics_addr: Option<SocketAddr>,
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<(RunResult, Instant)>>,
}

/// Small, quick defaults for tests: two compute threads, a short shutdown grace.
pub fn test_config() -> Config {
    Config {
        compute_threads: 2,
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(test_config()).await
    }

    /// A plaintext server with `/metrics` on a port of its own.
    pub async fn with_metrics(config: Config) -> Self {
        Self::with_endpoint(config, true, |addr| {
            Channel::from_shared(format!("http://{addr}")).expect("uri")
        })
        .await
    }

    pub async fn with_config(config: Config) -> Self {
        Self::with_endpoint(config, false, |addr| {
            Channel::from_shared(format!("http://{addr}")).expect("uri")
        })
        .await
    }

    /// A server with a metrics listener too when `metrics`; `channel` connects through
    /// the endpoint `endpoint` makes of the gRPC address (e.g. one with TLS).
    pub async fn with_endpoint(
        config: Config,
        metrics: bool,
        endpoint: impl FnOnce(SocketAddr) -> Endpoint,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let metrics = match metrics {
            true => Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind metrics"),
            ),
            false => None,
        };
        let metrics_addr = metrics
            .as_ref()
            .map(|l| l.local_addr().expect("metrics addr"));
        let listeners = Listeners {
            grpc: listener,
            metrics,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = server::run(listeners, config, async move {
                // A dropped sender (test over) also stops the server.
                let _ = rx.await;
            })
            .await;
            (result, Instant::now())
        });
        let channel = endpoint(addr)
            .connect()
            .await
            .expect("connect to the test server");
        TestServer {
            addr,
            metrics_addr,
            channel,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A Trainer client on the shared connection, with no message-size limit of its own
    /// (so the server's limits are what a test sees).
    pub fn trainer(&self) -> Client {
        TrainerClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    /// Fires the shutdown future without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Fires the shutdown future and waits (bounded) for `run` to return; panics if it
    /// returned an error or took longer than `within`. Returns when `run` returned.
    pub async fn stop_within(mut self, within: Duration) -> Instant {
        self.trigger_shutdown();
        let task = self.task.take().expect("server task");
        let (result, returned_at) = tokio::time::timeout(within, task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked");
        result.expect("server::run returned an error");
        returned_at
    }

    /// Fires the shutdown future and returns `run`'s error, panicking if it returned Ok
    /// (e.g. a shutdown that could not save every session must fail).
    pub async fn stop_with_error(mut self) -> String {
        self.trigger_shutdown();
        let task = self.task.take().expect("server task");
        let (result, _) = tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked");
        result
            .expect_err("server::run should have failed")
            .to_string()
    }

    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(3)).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// Data

/// SplitMix64: deterministic test data, independent of the engine's own generator.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// A labelled batch, kept in f64; converted to the model's dtype on use.
#[derive(Debug, Clone)]
pub struct Batch {
    pub n: usize,
    pub d: usize,
    pub x: Vec<f64>,
    pub labels: Vec<u32>,
}

impl Batch {
    /// N×D values in [-scale, scale) and N labels in [0, C).
    pub fn random(n: usize, d: usize, c: usize, seed: u64) -> Self {
        let mut g = Gen::new(seed);
        let x = (0..n * d).map(|_| g.unit() * 2.0).collect();
        let labels = (0..n).map(|_| g.below(c as u32)).collect();
        Batch { n, d, x, labels }
    }

    /// X as the wire tensor of dtype `T` (`values` for f32, `values_f64` for f64).
    pub fn tensor<T: Wire>(&self) -> pb::Tensor {
        T::tensor(
            vec![self.n as u32, self.d as u32],
            self.x.iter().map(|&v| T::of(v)).collect(),
        )
    }

    /// X as the engine sees it after the server's conversion to `T`.
    pub fn array<T: Wire>(&self) -> Array2<T> {
        Array2::from_shape_vec((self.n, self.d), self.x.iter().map(|&v| T::of(v)).collect())
            .expect("batch shape")
    }

    pub fn labels_usize(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| l as usize).collect()
    }
}

/// The model dtypes as the tests see them on the wire.
pub trait Wire: Scalar {
    const DTYPE: pb::Dtype;
    fn tensor(shape: Vec<u32>, values: Vec<Self>) -> pb::Tensor;
    /// The values of a tensor the server sent for a model of this dtype (and checks the
    /// other field is empty, as the proto promises).
    fn values(t: &pb::Tensor) -> Vec<Self>;
    fn bits(self) -> u64;
}

impl Wire for f32 {
    const DTYPE: pb::Dtype = pb::Dtype::F32;
    fn tensor(shape: Vec<u32>, values: Vec<Self>) -> pb::Tensor {
        pb::Tensor {
            shape,
            values,
            values_f64: vec![],
            ..Default::default()
        }
    }
    fn values(t: &pb::Tensor) -> Vec<Self> {
        assert!(
            t.values_f64.is_empty(),
            "an f32 model answered in values_f64"
        );
        t.values.clone()
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
}

impl Wire for f64 {
    const DTYPE: pb::Dtype = pb::Dtype::F64;
    fn tensor(shape: Vec<u32>, values_f64: Vec<Self>) -> pb::Tensor {
        pb::Tensor {
            shape,
            values: vec![],
            values_f64,
            ..Default::default()
        }
    }
    fn values(t: &pb::Tensor) -> Vec<Self> {
        assert!(t.values.is_empty(), "an f64 model answered in values");
        t.values_f64.clone()
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

/// Asserts a wire tensor equals an engine array: same shape, bit-identical values.
#[track_caller]
pub fn assert_tensor_eq<T: Wire, D: ndarray::Dimension>(
    what: &str,
    wire: &pb::Tensor,
    engine: &ndarray::Array<T, D>,
) {
    let shape: Vec<u32> = engine.shape().iter().map(|&d| d as u32).collect();
    assert_eq!(wire.shape, shape, "{what}: shape");
    let got = T::values(wire);
    let want: Vec<T> = engine.iter().copied().collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.bits(), w.bits(), "{what}[{i}]: server {g} vs engine {w}");
    }
}

/// Asserts two f64s (losses, accuracies) are bit-identical.
#[track_caller]
pub fn assert_same(what: &str, got: f64, want: f64) {
    assert_eq!(
        got.to_bits(),
        want.to_bits(),
        "{what}: server {got} vs engine {want}"
    );
}

/// Asserts every parameter the server holds is bit-identical to the engine model's.
#[track_caller]
pub fn assert_params_eq<T: Wire>(what: &str, got: &pb::GetModelResponse, engine: &Model<T>) {
    let params = engine.net().params();
    assert_eq!(
        got.parameters.len(),
        params.len(),
        "{what}: parameter count"
    );
    for (g, p) in got.parameters.iter().zip(params) {
        assert_eq!(g.name, p.name, "{what}: parameter order");
        let value = g.value.as_ref().expect("values were asked for");
        assert_tensor_eq(&format!("{what}: {}", p.name), value, &p.value);
    }
    assert_eq!(got.step, engine.step(), "{what}: step");
}

// ---------------------------------------------------------------------------------------
// Specs

/// The smallest wire spec: everything else takes its default.
pub fn wire_spec(input_dim: u32, hidden: &[pb::HiddenLayer], num_classes: u32) -> pb::ModelSpec {
    pb::ModelSpec {
        input_dim,
        hidden: hidden.to_vec(),
        num_classes,
        ..Default::default()
    }
}

pub fn layer(units: u32, activation: pb::Activation) -> pb::HiddenLayer {
    pb::HiddenLayer {
        units,
        activation: activation as i32,
        ..Default::default()
    }
}

pub fn maxout(units: u32, pieces: u32) -> pb::HiddenLayer {
    pb::HiddenLayer {
        units,
        activation: pb::Activation::Maxout as i32,
        maxout_pieces: Some(pieces),
        ..Default::default()
    }
}

pub fn sgd(lr: f64) -> Option<pb::Optimizer> {
    Some(pb::Optimizer {
        kind: pb::OptimizerKind::Sgd as i32,
        learning_rate: Some(lr),
        ..Default::default()
    })
}

pub fn seeded(seed: u64) -> Option<pb::Init> {
    Some(pb::Init {
        seed,
        ..Default::default()
    })
}

/// Creates a model; returns its id and the echoed response.
pub async fn create(c: &mut Client, spec: pb::ModelSpec) -> (String, pb::CreateModelResponse) {
    let r = c
        .create_model(pb::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .expect("CreateModel")
        .into_inner();
    (r.model_id.clone(), r)
}

/// The engine model for an engine spec (the oracle every number is checked against).
pub fn engine<T: Wire>(spec: &ModelSpec) -> Model<T> {
    Model::<T>::new(spec.clone()).expect("engine model")
}

pub async fn get_values(c: &mut Client, id: &str) -> pb::GetModelResponse {
    c.get_model(pb::GetModelRequest {
        model_id: id.to_string(),
        include_values: true,
        ..Default::default()
    })
    .await
    .expect("GetModel")
    .into_inner()
}

/// `m` with its wall-clock times zeroed (creation time, the last step's and epoch's), so
/// that the same calls on two twin models compare equal.
pub fn timeless(mut m: pb::GetModelResponse) -> pb::GetModelResponse {
    if let Some(about) = &mut m.metadata {
        about.created_time = 0.0;
    }
    if let Some(s) = &mut m.last_step {
        s.time = 0.0;
    }
    if let Some(e) = &mut m.last_epoch {
        e.time = 0.0;
    }
    m
}

/// The model's whole checkpoint (ExportModel's chunks joined).
pub async fn export_file(c: &mut Client, id: &str) -> Vec<u8> {
    let mut s = c
        .export_model(pb::ExportModelRequest {
            model_id: id.into(),
            chunk_bytes: 0,
        })
        .await
        .expect("ExportModel")
        .into_inner();
    let mut file = Vec::new();
    while let Some(m) = s.message().await.expect("a chunk") {
        file.extend_from_slice(&m.data);
    }
    file
}

pub async fn train(c: &mut Client, id: &str, b: &Batch, x: pb::Tensor) -> pb::TrainStepResponse {
    c.train_step(pb::TrainStepRequest {
        model_id: id.to_string(),
        x: Some(x),
        labels: b.labels.clone(),
        learning_rate: None,
    })
    .await
    .expect("TrainStep")
    .into_inner()
}

pub async fn list_ids(c: &mut Client) -> Vec<String> {
    c.list_models(pb::ListModelsRequest::default())
        .await
        .expect("ListModels")
        .into_inner()
        .models
        .into_iter()
        .map(|m| m.model_id)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Slow calls, to catch one in flight

/// An f64 model whose full GradientCheck ([`slow_request`]) takes a few hundred ms in a
/// debug build: long enough to act while it runs.
pub fn slow_spec() -> pb::ModelSpec {
    pb::ModelSpec {
        loss: pb::LossKind::Softmax as i32,
        dtype: pb::Dtype::F64 as i32,
        init: seeded(1),
        ..wire_spec(16, &[layer(48, pb::Activation::Tanh)], 8)
    }
}

pub fn slow_request(id: &str) -> pb::GradientCheckRequest {
    let b = Batch::random(48, 16, 8, 3);
    pb::GradientCheckRequest {
        model_id: id.to_string(),
        x: Some(b.tensor::<f64>()),
        labels: b.labels,
        max_elements_per_parameter: 0,
    }
}

/// How long a session is left unused before [`start_in_use`] starts its call.
const IDLE_MARGIN: Duration = Duration::from_millis(100);

/// The session's idle time as ListModels reports it (ListModels itself is no use).
async fn idle_seconds(c: &mut Client, id: &str) -> f64 {
    let models = c
        .list_models(pb::ListModelsRequest::default())
        .await
        .expect("ListModels")
        .into_inner()
        .models;
    models
        .iter()
        .find(|m| m.model_id == id)
        .expect("listed")
        .idle_seconds
}

/// Starts a call on session `id` (`start` spawns it) and returns once the call has taken
/// the session's lock in the server, so it is running there (or has already run).
///
/// The lock's taking is seen in the session's idle time, reset when a call takes the
/// lock: the session is first left unused until its idle time is at least
/// [`IDLE_MARGIN`], then `start` runs at `s`. A listing answered at `r` (client time)
/// that shows an idle time under `r − s` has seen a use since `s`; without one the idle
/// time would be over `r − s + IDLE_MARGIN`, whenever the listing is served. So no
/// threshold has to be beaten by a quick enough poll, and a session just created (idle
/// for less than any threshold) is not taken for one in use.
pub async fn start_in_use<T>(c: &mut Client, id: &str, start: impl FnOnce() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let idle = Duration::from_secs_f64(idle_seconds(c, id).await);
        if idle >= IDLE_MARGIN {
            break;
        }
        assert!(Instant::now() < deadline, "the session never went idle");
        tokio::time::sleep(IDLE_MARGIN - idle).await;
    }
    let s = Instant::now();
    let started = start();
    loop {
        let idle = idle_seconds(c, id).await;
        if idle < s.elapsed().as_secs_f64() {
            return started;
        }
        assert!(
            Instant::now() < deadline,
            "the call never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Rejected calls

/// Compares two GetModel snapshots (values included) bit for bit, step too.
#[track_caller]
pub fn assert_same_snapshot(before: &pb::GetModelResponse, after: &pb::GetModelResponse) {
    assert_eq!(before.step, after.step, "step changed");
    assert_eq!(before.spec, after.spec, "spec changed");
    assert_eq!(before.parameters.len(), after.parameters.len());
    for (b, a) in before.parameters.iter().zip(&after.parameters) {
        assert_eq!(b.name, a.name);
        assert_eq!(b.shape, a.shape, "{}: shape changed", b.name);
        let (bv, av) = (b.value.as_ref().unwrap(), a.value.as_ref().unwrap());
        let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits32(&bv.values),
            bits32(&av.values),
            "{}: changed",
            b.name
        );
        assert_eq!(
            bits64(&bv.values_f64),
            bits64(&av.values_f64),
            "{}: changed",
            b.name
        );
    }
}

/// An engine array as a named wire tensor (e.g. one gradient of an ApplyGradients).
pub fn named<T: Wire>(name: &str, a: &ArrayD<T>) -> pb::NamedTensor {
    pb::NamedTensor {
        name: name.to_string(),
        tensor: Some(T::tensor(
            a.shape().iter().map(|&d| d as u32).collect(),
            a.iter().copied().collect(),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Metrics

/// One scrape: `name{labels}` → value, exactly as the exposition text spells them.
pub type Scrape = std::collections::HashMap<String, f64>;

/// `GET path` over plain HTTP/1.1; the status line and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
        .await
        .expect("send");
    let mut raw = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut raw)
        .await
        .expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

pub async fn scrape(srv: &TestServer) -> Scrape {
    let (status, body) = http_get(srv.metrics_addr.expect("metrics on"), "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// How much `key` moved between two scrapes (absent = 0: a counter appears on first use).
pub fn delta(before: &Scrape, after: &Scrape, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}
