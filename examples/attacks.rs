//! Attacks (issue 13; not in CI): re-runs the outside red team's attacks against a running
//! server with its default limits, one after the other, and tallies each: what was sent,
//! the outcomes by gRPC code (or, for raw connections, what the server did with them),
//! whether a well-behaved client was still served while the attack held its resources and
//! right after it, whether the server is still alive, and the server's resident memory
//! before, at the peak of and after the attack (with `--server-pid`, from /proc).
//!
//! Run: `cargo run --release --example attacks -- --address 127.0.0.1:PORT --server-pid
//! PID [--json FILE]` (`bench/attacks/run.sh` starts a default server and does this for
//! you; bench/attacks/README.md describes every attack). `--list` names them, `--only
//! a,b` runs some.
//!
//! Exits 1 if the server died, a probe failed, or an attack got INTERNAL, UNKNOWN, an
//! outcome the attack does not allow (each names its allowed ones: a tall batch must be
//! refused, not computed) or did not end within its time bound.
//!
//! The attacks keep the client's own memory modest: a stalled upload sends the same 4 MiB
//! buffer again and again, raw HTTP/2 clients write requests once and never buffer
//! answers; the largest client-side allocations are the 120 concurrent 4 MB TrainSteps
//! (~1 GB while they are in flight) and the 20 MB model id.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backprop::cli::error::code_name;
use backprop::pb;
use backprop::pb::chunks::sha256_hex;
use backprop::pb::trainer_client::TrainerClient;
use clap::{Parser, ValueEnum};
use prost::bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Status;
use tonic::transport::Channel;

type Client = TrainerClient<Channel>;
type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug, Clone, Serialize)]
#[command(
    about = "Re-run issue 13's attacks against a backprop server and tally them",
    args_override_self = true
)]
struct Args {
    /// Server address, host:port.
    #[arg(long, required_unless_present = "list")]
    address: Option<String>,
    /// The server's process id: its VmRSS is sampled from /proc every 20 ms, and it must
    /// still be alive after every attack.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the tally as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The server's log file: the 20 MB model id must not show up in it whole.
    #[arg(long)]
    server_log: Option<PathBuf>,
    /// Run only these attacks (comma-separated; `--list` names them).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Attack>,
    /// Write the names of the attacks not run (the server died first) to this file,
    /// comma-separated, for a rerun with `--only` against a fresh server.
    #[arg(long)]
    not_run: Option<PathBuf>,
    /// Print the attacks and exit.
    #[arg(long)]
    list: bool,
    /// Silent sockets in `idle-sockets`.
    #[arg(long, default_value_t = 2000)]
    idle_connections: usize,
    /// The server's connection cap, which `idle-sockets-to-cap` fills (and exceeds by
    /// 500); default: computed as the server does, from its open-files limit in
    /// /proc/PID/limits (three quarters of it, at most 10,000).
    #[arg(long)]
    max_connections: Option<usize>,
    /// The server's --handshake-timeout-secs (how long to wait for silent sockets to be
    /// closed).
    #[arg(long, default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// The server's --default-deadline-secs (how long to wait for held calls to end).
    #[arg(long, default_value_t = 120)]
    default_deadline_secs: u64,
    /// The server's --send-timeout-secs (how long to wait for non-readers to be closed).
    #[arg(long, default_value_t = 30)]
    send_timeout_secs: u64,
    /// Streams opened on the one raw connection of `half-sent-streams`.
    #[arg(long, default_value_t = 5000)]
    half_sent_streams: u32,
    /// Connections of `never-read-get-model`, each asking for an 8 MB answer on
    /// `--never-read-streams` streams.
    #[arg(long, default_value_t = 1)]
    never_read_connections: usize,
    #[arg(long, default_value_t = 256)]
    never_read_streams: u32,
    /// Concurrent slow exports in `export-tiny-chunks`.
    #[arg(long, default_value_t = 8)]
    exports: usize,
    /// Concurrent 4 MB TrainSteps on one session in `waiters-on-one-session`.
    #[arg(long, default_value_t = 120)]
    waiters: usize,
    /// Concurrent stalled uploads in `stalled-imports`.
    #[arg(long, default_value_t = 16)]
    uploads: usize,
    /// The size each stalled upload declares (total_bytes); the default is just under
    /// what a default server accepts (50M parameters × 8 bytes × 3, plus 16 MiB).
    #[arg(long, default_value_t = 1_200_000_000)]
    upload_declared_bytes: u64,
    /// Bytes each stalled upload actually sends before it stalls.
    #[arg(long, default_value_t = 128 << 20)]
    upload_sent_bytes: u64,
    /// Concurrent calls per method with the tall, thin batch.
    #[arg(long, default_value_t = 2)]
    tall_concurrency: usize,
    /// Client runtime threads.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
}

// ---------------------------------------------------------------------------------------
// The attacks

/// Every attack, in the order they run (issue 13's order).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Attack {
    TallForward,
    TallEvaluate,
    TallTrainStep,
    TallBackward,
    TallGradientCheck,
    ExportTinyChunks,
    DeepTrace,
    IdleSockets,
    IdleSocketsToCap,
    HalfSentStreams,
    NeverReadGetModel,
    WaitersOnOneSession,
    StalledImports,
    AnswersOverMessageLimit,
    LongModelIds,
    HugeModelId,
    ImportMillionLayerSpec,
    ImportNegativeAdamV,
    SvmNan,
    MalformedShapes,
}

impl Attack {
    fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_string())
    }

    fn what(self) -> &'static str {
        match self {
            Attack::TallForward => "Forward, x [4000000, 1] on input_dim 1 → 4096 hidden → 3",
            Attack::TallEvaluate => "Evaluate, the same tall batch",
            Attack::TallTrainStep => "TrainStep, the same tall batch",
            Attack::TallBackward => "Backward (return_input_grad), the same tall batch",
            Attack::TallGradientCheck => "GradientCheck, the same tall batch",
            Attack::ExportTinyChunks => {
                "concurrent ExportModel(chunk_bytes = 1) of a 10 MB model, read 10 ms per chunk"
            }
            Attack::DeepTrace => {
                "concurrent TraceStep, 64 rows, 128 maxout layers of 64 units × 16 pieces"
            }
            Attack::IdleSockets => "TCP connections that send nothing",
            Attack::IdleSocketsToCap => {
                "silent TCP connections up to the server's connection cap, and 500 more"
            }
            Attack::HalfSentStreams => {
                "one raw HTTP/2 connection opening thousands of TrainStep streams, bodies half sent"
            }
            Attack::NeverReadGetModel => {
                "raw HTTP/2: GetModel with values (8 MB answers) on every stream, never read"
            }
            Attack::WaitersOnOneSession => "concurrent 4 MB TrainSteps on one session",
            Attack::StalledImports => {
                "concurrent ImportModel uploads declaring more than they send, then stalling"
            }
            Attack::AnswersOverMessageLimit => {
                "a 17.2M-parameter f32 model: GetModel with values and Backward (69 MB answers)"
            }
            Attack::LongModelIds => {
                "a 10,000-character model id on Forward, GetModel, Delete, Export"
            }
            Attack::HugeModelId => "a 20 MB model id on GetModel and Forward",
            Attack::ImportMillionLayerSpec => {
                "ImportModel of a checkpoint whose spec has 1M layers"
            }
            Attack::ImportNegativeAdamV => "ImportModel of an Adam checkpoint with adam_v < 0",
            Attack::SvmNan => "SVM: NaN in x, and finite x whose scores overflow to NaN",
            Attack::MalformedShapes => "x shapes claiming 2e8 values, or overflowing u64",
        }
    }

    async fn run(self, ctx: &Ctx) -> Result<Tally, Error> {
        match self {
            Attack::TallForward => tall_batch(ctx, Method::Forward).await,
            Attack::TallEvaluate => tall_batch(ctx, Method::Evaluate).await,
            Attack::TallTrainStep => tall_batch(ctx, Method::TrainStep).await,
            Attack::TallBackward => tall_batch(ctx, Method::Backward).await,
            Attack::TallGradientCheck => tall_batch(ctx, Method::GradientCheck).await,
            Attack::ExportTinyChunks => export_tiny_chunks(ctx).await,
            Attack::DeepTrace => deep_trace(ctx).await,
            Attack::IdleSockets => idle_sockets(ctx, ctx.args.idle_connections).await,
            Attack::IdleSocketsToCap => idle_sockets(ctx, ctx.connection_cap() + 500).await,
            Attack::HalfSentStreams => half_sent_streams(ctx).await,
            Attack::NeverReadGetModel => never_read_get_model(ctx).await,
            Attack::WaitersOnOneSession => waiters_on_one_session(ctx).await,
            Attack::StalledImports => stalled_imports(ctx).await,
            Attack::AnswersOverMessageLimit => answers_over_message_limit(ctx).await,
            Attack::LongModelIds => long_model_ids(ctx).await,
            Attack::HugeModelId => huge_model_id(ctx).await,
            Attack::ImportMillionLayerSpec => import_million_layer_spec(ctx).await,
            Attack::ImportNegativeAdamV => import_negative_adam_v(ctx).await,
            Attack::SvmNan => svm_nan(ctx).await,
            Attack::MalformedShapes => malformed_shapes(ctx).await,
        }
    }

    /// How long the attack may take in all, including waiting for the server to end what
    /// it holds; beyond it the attack counts as failed.
    fn time_bound(self, args: &Args) -> Duration {
        let held = match self {
            Attack::IdleSockets | Attack::IdleSocketsToCap => 4 * args.handshake_timeout_secs,
            Attack::HalfSentStreams | Attack::StalledImports => args.default_deadline_secs,
            Attack::NeverReadGetModel => args.send_timeout_secs,
            _ => 0,
        };
        Duration::from_secs(held + 240)
    }
}

// ---------------------------------------------------------------------------------------
// Tallies, probes, the server's memory

/// What one attack sent and what came of it.
#[derive(Default, Serialize)]
struct Tally {
    /// How many calls, connections or streams were sent.
    sent: u64,
    /// "calls", "connections" or "streams".
    unit: &'static str,
    /// Outcome → count: a gRPC code name, or what the server did with a raw connection.
    outcomes: BTreeMap<String, u64>,
    /// The first message seen per non-OK outcome (cut at 300 bytes), for the report.
    messages: BTreeMap<String, String>,
    /// What went against the attack's expectations; any entry fails the run.
    unexpected: Vec<String>,
    notes: Vec<String>,
    /// A well-behaved client's calls while the attack held its resources.
    probe_during: Option<Probe>,
}

impl Tally {
    fn new(unit: &'static str) -> Self {
        Tally {
            unit,
            ..Default::default()
        }
    }

    fn count(&mut self, outcome: impl Into<String>) {
        self.add(outcome, 1);
    }

    fn add(&mut self, outcome: impl Into<String>, n: u64) {
        if n > 0 {
            *self.outcomes.entry(outcome.into()).or_default() += n;
        }
    }

    /// Counts a call's result under `label` (`label CODE`, or just `CODE` when `label` is
    /// empty) and keeps the first message of each kind.
    fn call<T>(&mut self, label: &str, r: &Result<T, Status>) -> String {
        let code = match r {
            Ok(_) => "OK".to_string(),
            Err(s) => code_name(s.code()).to_string(),
        };
        let key = if label.is_empty() {
            code.clone()
        } else {
            format!("{label} {code}")
        };
        if let Err(s) = r {
            let m: String = s.message().chars().take(300).collect();
            self.messages.entry(key.clone()).or_insert(m);
        }
        self.count(key);
        code
    }

    /// Like [`Tally::call`], and flags a result whose code is not `want`.
    fn expect<T>(&mut self, label: &str, r: &Result<T, Status>, want: &str) {
        let got = self.call(label, r);
        if got != want {
            self.flag(format!("{label}: {got}, expected {want}"));
        }
    }

    /// Flags every outcome not in `allowed`.
    fn allow(&mut self, allowed: &[&str]) {
        let bad: Vec<String> = self
            .outcomes
            .iter()
            .filter(|(o, _)| !allowed.contains(&o.as_str()))
            .map(|(o, n)| format!("{n} × {o} (allowed: {})", allowed.join(", ")))
            .collect();
        self.unexpected.extend(bad);
    }

    fn flag(&mut self, what: impl Into<String>) {
        self.unexpected.push(what.into());
    }

    fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }

    /// INTERNAL or UNKNOWN anywhere, or anything unexpected.
    fn failed(&self) -> bool {
        !self.unexpected.is_empty()
            || self
                .outcomes
                .keys()
                .any(|o| o.contains("INTERNAL") || o.contains("UNKNOWN"))
            || self.probe_during.as_ref().is_some_and(|p| !p.ok)
    }
}

/// A well-behaved client, on a connection of its own: Health, then CreateModel,
/// TrainStep, Forward and DeleteModel on a small model.
#[derive(Serialize, Clone, Debug)]
struct Probe {
    ok: bool,
    ms: f64,
    error: Option<String>,
}

/// How long a probe may take: at the connection cap it waits in the listen backlog for
/// a silent socket's handshake timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

async fn probe(uri: String) -> Probe {
    let start = Instant::now();
    let result = match tokio::time::timeout(PROBE_TIMEOUT, probe_calls(uri)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    Probe {
        ok: result.is_ok(),
        ms: start.elapsed().as_secs_f64() * 1e3,
        error: result.err(),
    }
}

async fn probe_calls(uri: String) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: Status| format!("{what}: {} {}", code_name(err.code()), err.message())
    };
    let channel = Channel::from_shared(uri)
        .map_err(|err| err.to_string())?
        .connect_timeout(PROBE_TIMEOUT)
        .connect()
        .await
        .map_err(|err| format!("connect: {err}"))?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(e("Health"))?
        .into_inner()
        .status;
    if status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        return Err(format!("Health: status {status}, not SERVING"));
    }
    let mut c = TrainerClient::new(channel);
    let id = create(&mut c, spec(4, vec![relu(8)], 3))
        .await
        .map_err(e("CreateModel"))?;
    let (x, labels) = batch(&mut Rng(7), 8, 4, 3);
    let step = c
        .train_step(pb::TrainStepRequest {
            model_id: id.clone(),
            x: Some(x.clone()),
            labels,
            learning_rate: None,
        })
        .await
        .map_err(e("TrainStep"))?
        .into_inner()
        .step;
    if step != 1 {
        return Err(format!("TrainStep: step {step}, not 1"));
    }
    let scores = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(x),
            labels: vec![],
            ..Default::default()
        })
        .await
        .map_err(e("Forward"))?
        .into_inner()
        .scores
        .map(|s| s.shape)
        .unwrap_or_default();
    if scores != [8, 3] {
        return Err(format!("Forward: scores {scores:?}, not [8, 3]"));
    }
    c.delete_model(pb::DeleteModelRequest { model_id: id })
        .await
        .map_err(e("DeleteModel"))?;
    Ok(())
}

/// The server's VmRSS, sampled every 20 ms on a thread of its own, so the peak of an
/// attack is seen even when the runtime is busy.
#[derive(Clone)]
struct Rss {
    pid: Option<u32>,
    peak_kib: Arc<AtomicU64>,
}

impl Rss {
    fn start(pid: Option<u32>) -> Self {
        let rss = Rss {
            pid,
            peak_kib: Arc::default(),
        };
        if let Some(pid) = pid {
            let peak = rss.peak_kib.clone();
            std::thread::spawn(move || {
                loop {
                    match rss_kib(pid) {
                        Some(k) => {
                            peak.fetch_max(k, Ordering::Relaxed);
                        }
                        None => return,
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        rss
    }

    fn now_mib(&self) -> Option<f64> {
        self.pid.and_then(rss_kib).map(mib)
    }

    fn reset_peak(&self) {
        let now = self.pid.and_then(rss_kib).unwrap_or(0);
        self.peak_kib.store(now, Ordering::Relaxed);
    }

    fn peak_mib(&self) -> Option<f64> {
        self.pid.map(|_| mib(self.peak_kib.load(Ordering::Relaxed)))
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How many descriptors a process has open.
fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// A process is alive if /proc has it and it is not a zombie (exited, not yet reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

// ---------------------------------------------------------------------------------------
// The context and helpers

struct Ctx {
    args: Args,
    address: String,
    uri: String,
    rss: Rss,
}

/// A client on a connection of its own, with room for the largest messages an attack
/// sends or gets.
async fn connect(uri: String) -> Result<Client, Error> {
    let channel = Channel::from_shared(uri)?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    Ok(TrainerClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

impl Ctx {
    async fn client(&self) -> Result<Client, Error> {
        connect(self.uri.clone()).await
    }

    /// A probe started `after` from now, for the time an attack holds its resources.
    fn probe_after(&self, after: Duration) -> tokio::task::JoinHandle<Probe> {
        let uri = self.uri.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            probe(uri).await
        })
    }

    /// The server's connection cap: `--max-connections`, else as the server computes its
    /// default (three quarters of its soft open-files limit, at most 10,000).
    fn connection_cap(&self) -> usize {
        if let Some(n) = self.args.max_connections {
            return n;
        }
        let soft = self.args.server_pid.and_then(|pid| {
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
        match soft {
            Some(soft) => (soft - soft / 4).clamp(1, 10_000),
            None => self.args.idle_connections,
        }
    }
}

/// SplitMix64: reproducible batches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
    }
}

fn batch(r: &mut Rng, n: u32, d: u32, c: u32) -> (pb::Tensor, Vec<u32>) {
    let x = pb::Tensor {
        shape: vec![n, d],
        values: (0..n as u64 * d as u64).map(|_| r.unit()).collect(),
        ..Default::default()
    };
    let labels = (0..n).map(|_| (r.next() % c as u64) as u32).collect();
    (x, labels)
}

fn spec(input_dim: u32, hidden: Vec<pb::HiddenLayer>, num_classes: u32) -> pb::ModelSpec {
    pb::ModelSpec {
        input_dim,
        hidden,
        num_classes,
        ..Default::default()
    }
}

fn relu(units: u32) -> pb::HiddenLayer {
    pb::HiddenLayer {
        units,
        activation: pb::Activation::Relu as i32,
        ..Default::default()
    }
}

fn maxout(units: u32, pieces: u32) -> pb::HiddenLayer {
    pb::HiddenLayer {
        units,
        activation: pb::Activation::Maxout as i32,
        maxout_pieces: Some(pieces),
        ..Default::default()
    }
}

async fn create(c: &mut Client, spec: pb::ModelSpec) -> Result<String, Status> {
    Ok(c.create_model(pb::CreateModelRequest {
        spec: Some(spec),
        ..Default::default()
    })
    .await?
    .into_inner()
    .model_id)
}

async fn delete(c: &mut Client, id: &str) {
    let _ = c
        .delete_model(pb::DeleteModelRequest {
            model_id: id.to_string(),
        })
        .await;
}

/// The whole checkpoint of a model, through ExportModel.
async fn export(c: &mut Client, id: &str) -> Result<Vec<u8>, Error> {
    let mut stream = c
        .export_model(pb::ExportModelRequest {
            model_id: id.to_string(),
            chunk_bytes: 0,
        })
        .await?
        .into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = stream.message().await? {
        file.extend_from_slice(&chunk.data);
    }
    Ok(file)
}

/// Uploads `file` in 1 MiB chunks with the right size and checksum.
async fn import(c: &mut Client, file: Vec<u8>) -> Result<pb::ImportModelResponse, Status> {
    let total = file.len() as u64;
    let sha256 = sha256_hex(&file);
    let file = Bytes::from(file);
    let chunks: Vec<pb::CheckpointChunk> = (0..file.len())
        .step_by(1 << 20)
        .map(|at| pb::CheckpointChunk {
            data: file.slice(at..(at + (1 << 20)).min(file.len())),
            offset: at as u64,
            total_bytes: total,
            sha256: sha256.clone(),
        })
        .collect();
    Ok(c.import_model(tokio_stream::iter(chunks))
        .await?
        .into_inner())
}

/// Raises this process's open-files limit to its hard limit (the socket attacks hold
/// thousands); returns the limit in effect.
fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write one struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
    let n = r.rlim_cur as u64;
    n
}

/// A loopback source address of its own for each call (127.0.0.2, .3, …) when the
/// server is on loopback: the server closes silent sockets first, so their ports stay in
/// TIME_WAIT on its side for a minute, and a new connection from the same address and
/// port would wait a second for the kernel to sort that out.
fn fresh_source(server: &str) -> Option<std::net::IpAddr> {
    use std::sync::atomic::AtomicU8;
    static NEXT: AtomicU8 = AtomicU8::new(2);
    let ip = server.parse::<std::net::SocketAddr>().ok()?.ip();
    ip.is_loopback().then(|| {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, k))
    })
}

async fn connect_from(
    source: Option<std::net::IpAddr>,
    address: String,
) -> std::io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(address).await;
    };
    let to: std::net::SocketAddr = address
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}

/// Waits until the peer closes `s` (EOF or reset), discarding what it sends; the time it
/// took, or `None` if still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration, buf: usize) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = vec![0u8; buf];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/2, where a client library would hide what the attack does

mod h2 {
    use tokio::io::AsyncReadExt;

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A gRPC request's header block: literals without indexing, no Huffman (names and
    /// values here are under 127 bytes, so each length is one byte).
    pub fn grpc_headers(path: &str) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ] {
            block.push(0x00);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    /// One gRPC message: uncompressed flag, big-endian length, the bytes.
    pub fn grpc_message(m: &impl prost::Message) -> Vec<u8> {
        let body = m.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    /// The next frame, `None` at EOF or on a read error.
    pub async fn read_frame(s: &mut (impl AsyncReadExt + Unpin)) -> Option<Frame> {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    pub fn u32_at(payload: &[u8], at: usize) -> u32 {
        payload
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

// ---------------------------------------------------------------------------------------
// Tall, thin batches

#[derive(Clone, Copy, Debug)]
enum Method {
    Forward,
    Evaluate,
    TrainStep,
    Backward,
    GradientCheck,
}

async fn batch_call(
    c: &mut Client,
    method: Method,
    id: String,
    x: pb::Tensor,
    labels: Vec<u32>,
) -> Result<(), Status> {
    let x = Some(x);
    match method {
        Method::Forward => c
            .forward(pb::ForwardRequest {
                model_id: id,
                x,
                labels: vec![],
                ..Default::default()
            })
            .await
            .map(drop),
        Method::Evaluate => c
            .evaluate(pb::EvaluateRequest {
                model_id: id,
                x,
                labels,
            })
            .await
            .map(drop),
        Method::TrainStep => c
            .train_step(pb::TrainStepRequest {
                model_id: id,
                x,
                labels,
                learning_rate: None,
            })
            .await
            .map(drop),
        Method::Backward => c
            .backward(pb::BackwardRequest {
                model_id: id,
                x,
                labels,
                upstream: None,
                return_input_grad: true,
            })
            .await
            .map(drop),
        Method::GradientCheck => c
            .gradient_check(pb::GradientCheckRequest {
                model_id: id,
                x,
                labels,
                max_elements_per_parameter: 1,
            })
            .await
            .map(drop),
    }
}

/// input_dim 1, one hidden layer of 4096, x of 4,000,000 rows: a 16 MB request within
/// max_batch_elements whose activations alone would be 65 GB. It must be refused, never
/// computed; the step must stay 0.
async fn tall_batch(ctx: &Ctx, method: Method) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let id = create(&mut c, spec(1, vec![relu(4096)], 3)).await?;
    let (x, labels) = batch(&mut Rng(1), 4_000_000, 1, 3);
    let mut tally = Tally::new("calls");
    let calls: Vec<_> = (0..ctx.args.tall_concurrency)
        .map(|_| {
            let (mut c, id, x, labels) = (c.clone(), id.clone(), x.clone(), labels.clone());
            tokio::spawn(async move { batch_call(&mut c, method, id, x, labels).await })
        })
        .collect();
    drop((x, labels));
    for call in calls {
        let r = call.await?;
        tally.sent += 1;
        tally.call("", &r);
    }
    tally.allow(&["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]);
    let step = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await?
        .into_inner()
        .step;
    if step != 0 {
        tally.flag(format!("the model is at step {step} after refused calls"));
    }
    delete(&mut c, &id).await;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// ExportModel with tiny chunks, read slowly

async fn export_tiny_chunks(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    // 1000 → 2500 → 10 in f32: 2,527,510 parameters, a 10.1 MB checkpoint.
    let id = create(&mut c, spec(1000, vec![relu(2500)], 10)).await?;
    let mut tally = Tally::new("calls");
    let during = ctx.probe_after(Duration::from_secs(1));
    let exports: Vec<_> = (0..ctx.args.exports)
        .map(|_| {
            let id = id.clone();
            let client = connect(ctx.uri.clone());
            async move {
                let mut c = client.await?;
                let mut stream = match c
                    .export_model(pb::ExportModelRequest {
                        model_id: id,
                        chunk_bytes: 1,
                    })
                    .await
                {
                    Ok(s) => s.into_inner(),
                    Err(s) => return Ok::<_, Error>((Err(s), 0, 0, 0)),
                };
                let (mut file, mut chunks, mut largest) = (Vec::new(), 0u64, 0usize);
                let (mut total, mut sha) = (0u64, String::new());
                loop {
                    match stream.message().await {
                        Ok(Some(chunk)) => {
                            if chunks == 0 {
                                total = chunk.total_bytes;
                                sha = chunk.sha256.clone();
                            }
                            chunks += 1;
                            largest = largest.max(chunk.data.len());
                            file.extend_from_slice(&chunk.data);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(None) => break,
                        Err(s) => return Ok((Err(s), chunks, largest, file.len())),
                    }
                }
                let intact = file.len() as u64 == total && sha256_hex(&file) == sha;
                let r = if intact {
                    Ok(())
                } else {
                    Err(Status::data_loss(
                        "the file does not match its size or SHA-256",
                    ))
                };
                Ok((r, chunks, largest, file.len()))
            }
        })
        .map(tokio::spawn)
        .collect();
    for e in exports {
        let (r, chunks, largest, bytes) = e.await??;
        tally.sent += 1;
        tally.call("", &r);
        if tally.notes.is_empty() {
            tally.note(format!(
                "{bytes} bytes in {chunks} chunks of at most {largest} bytes each"
            ));
        }
    }
    tally.probe_during = Some(during.await?);
    tally.allow(&["OK"]);
    delete(&mut c, &id).await;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// TraceStep on a deep maxout net

async fn deep_trace(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    // Every node within the per-node limit (64 rows × 64 units = 4096 elements), 8.5M
    // parameters; with values the answer would be gigabytes.
    let id = create(&mut c, spec(64, vec![maxout(64, 16); 128], 10)).await?;
    let (x, labels) = batch(&mut Rng(3), 64, 64, 10);
    let mut tally = Tally::new("calls");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut c = c.clone();
            let req = pb::TraceStepRequest {
                model_id: id.clone(),
                x: Some(x.clone()),
                labels: labels.clone(),
                shapes_only: false,
            };
            tokio::spawn(async move { c.trace_step(req).await.map(drop) })
        })
        .collect();
    for call in calls {
        let r = call.await?;
        tally.sent += 1;
        tally.call("", &r);
    }
    // The way out the refusal names: the structure alone.
    let shapes = c
        .trace_step(pb::TraceStepRequest {
            model_id: id.clone(),
            x: Some(x),
            labels,
            shapes_only: true,
        })
        .await;
    tally.sent += 1;
    tally.call("shapes_only", &shapes);
    if let Ok(r) = &shapes {
        tally.note(format!("shapes_only: {} nodes", r.get_ref().nodes.len()));
    }
    tally.allow(&["INVALID_ARGUMENT", "shapes_only OK"]);
    delete(&mut c, &id).await;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Silent sockets

/// What became of one silent socket.
enum Silent {
    ConnectFailed,
    ConnectTimedOut,
    /// Closed by the server this long after it connected.
    Closed(f64),
    Open(TcpStream),
}

/// `n` sockets that connect and send nothing. A probe must be served while they are open
/// (at the cap: once the first are closed), and the server must close every one of them,
/// those over the cap after waiting in the listen backlog.
async fn idle_sockets(ctx: &Ctx, n: usize) -> Result<Tally, Error> {
    use std::sync::atomic::AtomicUsize;
    let mut tally = Tally::new("connections");
    let fds = raise_fd_limit() as usize;
    let n = if n + 200 > fds {
        tally.note(format!(
            "{n} sockets asked, {} opened: this process may open {fds} files",
            fds - 200
        ));
        fds - 200
    } else {
        n
    };
    let cap = ctx.connection_cap().max(1);
    let pid = ctx.args.server_pid;
    let fds_before = pid.and_then(open_fds);
    let start = Instant::now();
    // A few connects in flight at a time: the server's listen backlog is small (128), and
    // a burst over it leaves handshakes the kernel drops after the client counted them
    // connected.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let connected = Arc::new(AtomicUsize::new(0));
    let rounds = n.div_ceil(cap) as u64;
    let wait = Duration::from_secs(ctx.args.handshake_timeout_secs * (rounds + 1) + 15);
    let source = fresh_source(&ctx.address);
    let sockets: Vec<_> = (0..n)
        .map(|_| {
            let (address, in_flight, connected) =
                (ctx.address.clone(), in_flight.clone(), connected.clone());
            tokio::spawn(async move {
                let permit = in_flight.acquire_owned().await;
                let connect = connect_from(source, address);
                let mut s = match tokio::time::timeout(Duration::from_secs(5), connect).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(_)) => return Silent::ConnectFailed,
                    Err(_) => return Silent::ConnectTimedOut,
                };
                drop(permit);
                connected.fetch_add(1, Ordering::Relaxed);
                let at = Instant::now();
                match closed_within(&mut s, wait, 512).await {
                    Some(_) => Silent::Closed(at.elapsed().as_secs_f64()),
                    None => Silent::Open(s),
                }
            })
        })
        .collect();
    // The probe goes in once the sockets are all connected, or the cap is full; the
    // server's descriptors are counted meanwhile.
    let fds_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let fds_peak = fds_peak.clone();
        tokio::spawn(async move {
            while let Some(k) = pid.and_then(open_fds) {
                fds_peak.fetch_max(k as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let full = n.min(cap);
    while connected.load(Ordering::Relaxed) < full && start.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tally.note(format!(
        "{} connected {:.1} s after the first connect, when the probe started",
        connected.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    ));
    let during = ctx.probe_after(Duration::ZERO);
    let mut held = Vec::new();
    let mut open = Vec::new();
    for socket in sockets {
        tally.sent += 1;
        match socket.await? {
            Silent::ConnectFailed => tally.count("connect failed"),
            Silent::ConnectTimedOut => tally.count("connect timed out (backlog full)"),
            Silent::Closed(t) => {
                tally.count("closed by the server");
                held.push(t);
            }
            Silent::Open(s) => open.push(s),
        }
    }
    sampler.abort();
    // A socket still open here may be one the server never had: its handshake completed
    // on the client's side while the backlog was full, and the kernel dropped it later
    // without a word. Its first byte is answered with a reset. One the server holds would
    // take the byte and stay open.
    let checks: Vec<_> = open
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let _ = s.write_all(b"P").await;
                closed_within(&mut s, Duration::from_secs(3), 512)
                    .await
                    .is_some()
            })
        })
        .collect();
    for c in checks {
        tally.count(if c.await? {
            "never taken by the server (reset on the first byte)"
        } else {
            "still open"
        });
    }
    held.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (held.first(), held.last()) {
        tally.note(format!(
            "each closed {first:.1} s to {last:.1} s after it connected (median {:.1} s)",
            held[held.len() / 2]
        ));
    }
    tally.probe_during = Some(during.await?);
    if let (Some(b), Some(a)) = (fds_before, pid.and_then(open_fds)) {
        tally.note(format!(
            "the server's open descriptors: {b} before, at most {} meanwhile, {a} after \
             (its connection cap: {cap})",
            fds_peak.load(Ordering::Relaxed)
        ));
    }
    tally.allow(&[
        "closed by the server",
        "connect timed out (backlog full)",
        "never taken by the server (reset on the first byte)",
    ]);
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Half-sent streams on one connection

/// How the server ended one stream (the first frame that ended it).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StreamEnd {
    Refused,
    /// HEADERS with END_STREAM: the trailers of an answer (an RST_STREAM(NO_ERROR) may
    /// follow, telling the client to stop sending its body).
    Answered,
    Reset(u32),
}

/// What the server did with the streams of one raw connection.
#[derive(Default)]
struct StreamEnds {
    by_stream: std::collections::HashMap<u32, StreamEnd>,
    goaway: Option<(u32, u32)>,
    closed: bool,
}

impl StreamEnds {
    fn end(&mut self, stream: u32, how: StreamEnd) {
        self.by_stream.entry(stream).or_insert(how);
    }
}

/// One connection opening `--half-sent-streams` TrainStep streams: each sends its headers
/// and, on the streams the server takes, the first 16 bytes of a 4 MB message, then
/// nothing more. Streams over the announced cap must be refused; the ones taken must be
/// ended by the server (the default deadline) with the connection still answering pings.
async fn half_sent_streams(ctx: &Ctx) -> Result<Tally, Error> {
    use tokio::sync::mpsc;
    let mut tally = Tally::new("streams");
    let sock = TcpStream::connect(&ctx.address).await?;
    let (mut rd, mut wr) = sock.into_split();
    wr.write_all(h2::PREFACE).await?;
    wr.write_all(&h2::frame(h2::SETTINGS, 0, 0, &[])).await?;
    let mut cap = None;
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), h2::read_frame(&mut rd))
            .await?
            .ok_or("the server closed the connection before its SETTINGS")?;
        if f.kind == h2::SETTINGS && f.flags & h2::ACK == 0 {
            for c in f.payload.chunks(6).filter(|c| c.len() == 6) {
                if u16::from_be_bytes([c[0], c[1]]) == h2::SETTINGS_MAX_CONCURRENT_STREAMS {
                    cap = Some(h2::u32_at(c, 2));
                }
            }
            wr.write_all(&h2::frame(h2::SETTINGS, h2::ACK, 0, &[]))
                .await?;
            break;
        }
    }
    let cap = cap.unwrap_or(u32::MAX);
    tally.note(format!("the server announced {cap} concurrent streams"));
    let n = ctx.args.half_sent_streams;
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let stop = Instant::now() + Duration::from_secs(ctx.args.default_deadline_secs + 20);
    let pong = tx.clone();
    let reader = tokio::spawn(async move {
        let mut ends = StreamEnds::default();
        loop {
            let left = stop.saturating_duration_since(Instant::now());
            let Ok(frame) = tokio::time::timeout(left, h2::read_frame(&mut rd)).await else {
                return ends;
            };
            let Some(f) = frame else {
                ends.closed = true;
                return ends;
            };
            match f.kind {
                h2::RST_STREAM => match h2::u32_at(&f.payload, 0) {
                    h2::REFUSED_STREAM => ends.end(f.stream, StreamEnd::Refused),
                    code => ends.end(f.stream, StreamEnd::Reset(code)),
                },
                h2::HEADERS if f.flags & h2::END_STREAM != 0 => {
                    ends.end(f.stream, StreamEnd::Answered)
                }
                h2::GOAWAY => {
                    ends.goaway = Some((h2::u32_at(&f.payload, 0), h2::u32_at(&f.payload, 4)))
                }
                h2::PING if f.flags & h2::ACK == 0 => {
                    let _ = pong.send(h2::frame(h2::PING, h2::ACK, 0, &f.payload));
                }
                _ => {}
            }
            if ends.by_stream.len() >= n as usize {
                return ends;
            }
        }
    });
    // The start of a 4 MB TrainStep message: its 5-byte prefix and 11 bytes of body.
    let mut partial = vec![0u8];
    partial.extend_from_slice(&4_000_000u32.to_be_bytes());
    partial.extend_from_slice(&[
        0x0a, 0x20, b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'0',
    ]);
    let headers = h2::grpc_headers("/backprop.v1.Trainer/TrainStep");
    let mut out = Vec::new();
    for i in 0..n {
        let id = 1 + 2 * i;
        out.extend(h2::frame(h2::HEADERS, h2::END_HEADERS, id, &headers));
        // Data only on the streams the server takes: data on a refused stream would still
        // count against the connection's flow-control window.
        if i < cap {
            out.extend(h2::frame(h2::DATA, 0, id, &partial));
        }
        tally.sent += 1;
        if out.len() > 64 * 1024 || i + 1 == n {
            if tx.send(std::mem::take(&mut out)).is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    let sent_at = Instant::now();
    tally.probe_during = Some(ctx.probe_after(Duration::from_secs(1)).await?);
    let ends = reader.await?;
    drop(tx);
    writer.abort();
    let mut how: BTreeMap<StreamEnd, u64> = BTreeMap::new();
    for end in ends.by_stream.values() {
        *how.entry(*end).or_default() += 1;
    }
    for (end, k) in how {
        tally.add(
            match end {
                StreamEnd::Refused => "refused (RST_STREAM REFUSED_STREAM)".to_string(),
                StreamEnd::Answered => "ended by the server (trailers)".to_string(),
                StreamEnd::Reset(code) => format!("reset by the server (RST_STREAM {code})"),
            },
            k,
        );
    }
    let open = (n as u64).saturating_sub(ends.by_stream.len() as u64);
    let left = if ends.closed {
        "closed with the connection"
    } else {
        "still open"
    };
    tally.add(left, open);
    if let Some((last, code)) = ends.goaway {
        tally.note(format!(
            "GOAWAY (error code {code}, last stream {last}) from the server"
        ));
    }
    tally.note(format!(
        "the last stream ended {:.1} s after the last was opened{}",
        sent_at.elapsed().as_secs_f64(),
        if ends.closed {
            "; the server closed the connection"
        } else {
            ""
        }
    ));
    tally.allow(&[
        "refused (RST_STREAM REFUSED_STREAM)",
        "ended by the server (trailers)",
        "closed with the connection",
    ]);
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Clients that never read

/// Raw connections asking for a model's values (8 MB each) on every stream they may open,
/// that never read a byte nor open their flow-control window: the server must close each
/// at its send timeout, and its memory must come back down.
async fn never_read_get_model(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    // 1000 → 1000 → 10 in f64: 1,011,010 parameters, an 8.1 MB answer.
    let id = create(
        &mut c,
        pb::ModelSpec {
            dtype: pb::Dtype::F64 as i32,
            ..spec(1000, vec![relu(1000)], 10)
        },
    )
    .await?;
    let body = h2::grpc_message(&pb::GetModelRequest {
        model_id: id.clone(),
        include_values: true,
        ..Default::default()
    });
    let headers = h2::grpc_headers("/backprop.v1.Trainer/GetModel");
    let mut request = h2::PREFACE.to_vec();
    request.extend(h2::frame(h2::SETTINGS, 0, 0, &[]));
    for i in 0..ctx.args.never_read_streams {
        let id = 1 + 2 * i;
        request.extend(h2::frame(h2::HEADERS, h2::END_HEADERS, id, &headers));
        request.extend(h2::frame(h2::DATA, h2::END_STREAM, id, &body));
    }
    let mut tally = Tally::new("connections");
    let mut sockets = Vec::new();
    for _ in 0..ctx.args.never_read_connections {
        let mut s = TcpStream::connect(&ctx.address).await?;
        s.write_all(&request).await?;
        tally.sent += 1;
        sockets.push(s);
    }
    let during = ctx.probe_after(Duration::from_secs(3));
    tally.note(format!(
        "{} streams per connection, {:.0} MB of answers asked for in all",
        ctx.args.never_read_streams,
        ctx.args.never_read_connections as f64 * ctx.args.never_read_streams as f64 * 8.09
    ));
    // The send timeout is checked about once per timeout: closed by 2× it. Not a byte
    // is read until then; then the socket is drained to see whether it is closed.
    let quiet = Duration::from_secs(2 * ctx.args.send_timeout_secs + 5);
    let closes: Vec<_> = sockets
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                tokio::time::sleep(quiet).await;
                closed_within(&mut s, Duration::from_secs(20), 64 * 1024).await
            })
        })
        .collect();
    for c in closes {
        match c.await? {
            Some(_) => tally.count("closed by the server"),
            None => tally.count("still open"),
        }
    }
    tally.probe_during = Some(during.await?);
    tally.allow(&["closed by the server"]);
    delete(&mut c, &id).await;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Many callers on one session

async fn waiters_on_one_session(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let id = create(&mut c, spec(1000, vec![relu(256)], 10)).await?;
    let (x, labels) = batch(&mut Rng(4), 1000, 1000, 10);
    let mut tally = Tally::new("calls");
    let calls: Vec<_> = (0..ctx.args.waiters)
        .map(|_| {
            let mut c = c.clone();
            let req = pb::TrainStepRequest {
                model_id: id.clone(),
                x: Some(x.clone()),
                labels: labels.clone(),
                learning_rate: None,
            };
            tokio::spawn(async move { c.train_step(req).await.map(drop) })
        })
        .collect();
    for call in calls {
        let r = call.await?;
        tally.sent += 1;
        tally.call("", &r);
    }
    tally.allow(&["OK", "RESOURCE_EXHAUSTED"]);
    let ok = tally.outcomes.get("OK").copied().unwrap_or(0);
    let step = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await?
        .into_inner()
        .step;
    // A call past its deadline may still have been applied (gRPC's DEADLINE_EXCEEDED
    // says nothing either way); a refused one never.
    let late = tally
        .outcomes
        .get("DEADLINE_EXCEEDED")
        .copied()
        .unwrap_or(0);
    if step < ok || step > ok + late {
        tally.flag(format!(
            "step {step} after {ok} accepted steps ({late} past their deadline)"
        ));
    } else if step > ok {
        tally.note(format!(
            "step {step}: the {ok} accepted steps, and {} of those past their deadline",
            step - ok
        ));
    } else {
        tally.note(format!("step {step}: every accepted step applied once"));
    }
    delete(&mut c, &id).await;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Stalled uploads

/// Concurrent ImportModel uploads that each declare `--upload-declared-bytes`, send
/// `--upload-sent-bytes` and stall. The server must refuse those its uploads' share of the
/// memory budget cannot hold and end the others (no chunk for `--upload-stall-secs`, or
/// at the latest its default deadline), creating nothing.
async fn stalled_imports(ctx: &Ctx) -> Result<Tally, Error> {
    use tokio::sync::mpsc;
    let mut tally = Tally::new("calls");
    let piece = Bytes::from(vec![0u8; 4 << 20]);
    let declared = ctx.args.upload_declared_bytes;
    if declared == 0 {
        return Err("--upload-declared-bytes must be at least 1: a stalled upload declares more than it sends".into());
    }
    let to_send = ctx.args.upload_sent_bytes.min(declared - 1);
    let wait = Duration::from_secs(ctx.args.default_deadline_secs + 20);
    let before = ctx
        .client()
        .await?
        .list_models(pb::ListModelsRequest::default())
        .await?;
    let models_before = before.into_inner().models.len();
    let uploads: Vec<_> = (0..ctx.args.uploads)
        .map(|_| {
            let piece = piece.clone();
            let client = connect(ctx.uri.clone());
            tokio::spawn(async move {
                let mut c = client.await?;
                let (tx, rx) = mpsc::channel::<pb::CheckpointChunk>(2);
                // Ends when the call does: tonic drops the request stream then.
                let sender = tokio::spawn(async move {
                    let mut sent = 0u64;
                    while sent < to_send {
                        let n = (to_send - sent).min(piece.len() as u64) as usize;
                        let chunk = pb::CheckpointChunk {
                            data: piece.slice(..n),
                            offset: sent,
                            total_bytes: declared,
                            sha256: "0".repeat(64),
                        };
                        if tx.send(chunk).await.is_err() {
                            return sent;
                        }
                        sent += n as u64;
                    }
                    // Stalled: the stream stays open until the call ends.
                    tx.closed().await;
                    sent
                });
                let call = tokio::time::timeout(
                    wait,
                    c.import_model(tokio_stream::wrappers::ReceiverStream::new(rx)),
                )
                .await;
                let sent = sender.await.unwrap_or(0);
                Ok::<_, Error>((call.map(|r| r.map(drop)), sent))
            })
        })
        .collect();
    tally.probe_during = Some(ctx.probe_after(Duration::from_secs(5)).await?);
    let mut sent_bytes = Vec::new();
    for u in uploads {
        let (r, sent) = u.await??;
        tally.sent += 1;
        sent_bytes.push(sent);
        match r {
            Ok(r) => {
                tally.call("", &r);
            }
            Err(_) => tally.count("still held after the wait"),
        }
    }
    tally.note(format!(
        "each declared {declared} bytes and was to send {to_send}; {:.0} MB sent in all",
        sent_bytes.iter().sum::<u64>() as f64 / 1e6
    ));
    let after = ctx
        .client()
        .await?
        .list_models(pb::ListModelsRequest::default())
        .await?;
    let models_after = after.into_inner().models.len();
    if models_after != models_before {
        tally.flag(format!(
            "{models_before} sessions before, {models_after} after"
        ));
    }
    tally.allow(&["RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"]);
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Answers over the message limit

async fn answers_over_message_limit(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    // 4096 → 4200 → 10 in f32: 17,249,410 parameters, 69 MB of values or gradients,
    // over the 64 MiB message limit.
    let id = create(&mut c, spec(4096, vec![relu(4200)], 10)).await?;
    let mut tally = Tally::new("calls");
    tally.sent = 4;
    let r = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: true,
            ..Default::default()
        })
        .await;
    tally.expect("GetModel(values)", &r, "INVALID_ARGUMENT");
    let (x, labels) = batch(&mut Rng(5), 4, 4096, 10);
    let r = c
        .backward(pb::BackwardRequest {
            model_id: id.clone(),
            x: Some(x),
            labels,
            upstream: None,
            return_input_grad: false,
        })
        .await;
    tally.expect("Backward", &r, "INVALID_ARGUMENT");
    let r = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await;
    tally.expect("GetModel(shapes)", &r, "OK");
    // The way out the refusal names: the chunked export.
    let file = export(&mut c, &id).await;
    let r: Result<(), Status> = match &file {
        Ok(f) => {
            tally.note(format!("ExportModel sent the whole {}-byte file", f.len()));
            Ok(())
        }
        Err(e) => Err(Status::unknown(e.to_string())),
    };
    tally.expect("ExportModel", &r, "OK");
    delete(&mut c, &id).await;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Model ids

/// A refusal must not echo the id whole.
fn short_message<T>(tally: &mut Tally, label: &str, r: &Result<T, Status>) {
    if let Err(s) = r
        && s.message().len() > 200
    {
        tally.flag(format!(
            "{label}: a {}-byte message echoes the id",
            s.message().len()
        ));
    }
}

async fn long_model_ids(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let long = "x".repeat(10_000);
    let mut tally = Tally::new("calls");
    tally.sent = 4;
    let (x, _) = batch(&mut Rng(6), 2, 4, 3);
    let r = c
        .forward(pb::ForwardRequest {
            model_id: long.clone(),
            x: Some(x),
            labels: vec![],
            ..Default::default()
        })
        .await;
    short_message(&mut tally, "Forward", &r);
    tally.expect("Forward", &r, "INVALID_ARGUMENT");
    let r = c
        .get_model(pb::GetModelRequest {
            model_id: long.clone(),
            include_values: false,
            ..Default::default()
        })
        .await;
    short_message(&mut tally, "GetModel", &r);
    tally.expect("GetModel", &r, "INVALID_ARGUMENT");
    let r = c
        .delete_model(pb::DeleteModelRequest {
            model_id: long.clone(),
        })
        .await;
    short_message(&mut tally, "DeleteModel", &r);
    tally.expect("DeleteModel", &r, "INVALID_ARGUMENT");
    let r = c
        .export_model(pb::ExportModelRequest {
            model_id: long,
            chunk_bytes: 0,
        })
        .await;
    short_message(&mut tally, "ExportModel", &r);
    tally.expect("ExportModel", &r, "INVALID_ARGUMENT");
    Ok(tally)
}

/// The longest line in the server's log from byte `from` on.
fn longest_log_line(path: &PathBuf, from: u64) -> Option<usize> {
    let text = std::fs::read(path).ok()?;
    let new = text.get(from as usize..)?;
    new.split(|&b| b == b'\n').map(<[u8]>::len).max()
}

async fn huge_model_id(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let log_from = ctx
        .args
        .server_log
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let huge = "y".repeat(20 << 20);
    let mut tally = Tally::new("calls");
    tally.sent = 2;
    let r = c
        .get_model(pb::GetModelRequest {
            model_id: huge.clone(),
            include_values: false,
            ..Default::default()
        })
        .await;
    short_message(&mut tally, "GetModel", &r);
    tally.expect("GetModel", &r, "INVALID_ARGUMENT");
    let (x, _) = batch(&mut Rng(6), 2, 4, 3);
    let r = c
        .forward(pb::ForwardRequest {
            model_id: huge,
            x: Some(x),
            labels: vec![],
            ..Default::default()
        })
        .await;
    short_message(&mut tally, "Forward", &r);
    tally.expect("Forward", &r, "INVALID_ARGUMENT");
    if let Some(log) = &ctx.args.server_log {
        // The log is written as the calls are refused; give it a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let longest = longest_log_line(log, log_from).unwrap_or(0);
        let written = std::fs::metadata(log).map_or(0, |m| m.len()) - log_from;
        tally.note(format!(
            "server log meanwhile: {written} bytes, longest line {longest} bytes"
        ));
        if longest > 64 * 1024 {
            tally.flag(format!("a {longest}-byte line in the server's log"));
        }
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Crafted checkpoints

/// A small model's checkpoint: its header as JSON, and the tensor bytes after it.
async fn small_checkpoint(
    c: &mut Client,
    spec: pb::ModelSpec,
) -> Result<(serde_json::Value, Vec<u8>), Error> {
    let id = create(c, spec).await?;
    let (x, labels) = batch(&mut Rng(8), 8, 4, 3);
    c.train_step(pb::TrainStepRequest {
        model_id: id.clone(),
        x: Some(x),
        labels,
        learning_rate: None,
    })
    .await?;
    let file = export(c, &id).await?;
    delete(c, &id).await;
    let n = u64::from_le_bytes(file.get(..8).ok_or("short file")?.try_into()?) as usize;
    let header = serde_json::from_slice(file.get(8..8 + n).ok_or("short header")?)?;
    Ok((header, file[8 + n..].to_vec()))
}

fn safetensors_file(header: &serde_json::Value, data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut json = serde_json::to_vec(header)?;
    // The data starts 8-byte aligned, as the format asks.
    while (8 + json.len()) % 8 != 0 {
        json.push(b' ');
    }
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&json);
    file.extend_from_slice(data);
    Ok(file)
}

/// The spec in a checkpoint's `__metadata__` with its hidden layer repeated a million
/// times: a 50+ MB header. It must be refused from its size, not parsed.
async fn import_million_layer_spec(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let (mut header, data) = small_checkpoint(&mut c, spec(4, vec![relu(8)], 3)).await?;
    let meta = header
        .get_mut("__metadata__")
        .and_then(|m| m.as_object_mut())
        .ok_or("no __metadata__")?;
    let mut spec: serde_json::Value =
        serde_json::from_str(meta.get("spec").and_then(|s| s.as_str()).ok_or("no spec")?)?;
    let hidden = spec
        .get_mut("hidden")
        .and_then(|h| h.as_array_mut())
        .ok_or("no hidden layers")?;
    // Written as text: a million `serde_json::Value`s would cost the client far more.
    let one = serde_json::to_string(hidden.first().ok_or("no hidden layer")?)?;
    hidden.clear();
    let layers = vec![one.as_str(); 1_000_000].join(",");
    let text = serde_json::to_string(&spec)?.replacen(
        "\"hidden\":[]",
        &format!("\"hidden\":[{layers}]"),
        1,
    );
    drop(layers);
    meta.insert("spec".into(), text.into());
    let file = safetensors_file(&header, &data)?;
    drop(header);
    let mut tally = Tally::new("calls");
    tally.sent = 1;
    tally.note(format!("a {:.0} MB file", file.len() as f64 / 1e6));
    let r = import(&mut c, file).await;
    tally.expect("ImportModel", &r, "INVALID_ARGUMENT");
    Ok(tally)
}

/// An Adam checkpoint whose first `adam_v` element is −1 (a second moment is a mean of
/// squares). The unmodified file must import; the modified one must be refused.
async fn import_negative_adam_v(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let adam = pb::ModelSpec {
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            ..Default::default()
        }),
        ..spec(4, vec![relu(8)], 3)
    };
    let (header, mut data) = small_checkpoint(&mut c, adam).await?;
    let mut tally = Tally::new("calls");
    tally.sent = 2;
    let control = import(&mut c, safetensors_file(&header, &data)?).await;
    if let Ok(r) = &control {
        delete(&mut c, &r.model_id).await;
    }
    tally.expect("ImportModel(as exported)", &control, "OK");
    let start = header
        .get("layers.0.weight.adam_v")
        .and_then(|t| t.get("data_offsets"))
        .and_then(|o| o.get(0))
        .and_then(|o| o.as_u64())
        .ok_or("no layers.0.weight.adam_v")? as usize;
    // The offset comes from the server's header: a wrong one is the server's bug, named
    // here, not the harness's panic.
    let len = data.len();
    data.get_mut(start..start.saturating_add(4))
        .ok_or(format!(
            "layers.0.weight.adam_v starts at {start}, past the {len} data bytes"
        ))?
        .copy_from_slice(&(-1.0f32).to_le_bytes());
    let r = import(&mut c, safetensors_file(&header, &data)?).await;
    tally.expect("ImportModel(adam_v < 0)", &r, "INVALID_ARGUMENT");
    if let Ok(r) = &r {
        delete(&mut c, &r.model_id).await;
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// NaN and malformed inputs

/// An SVM net: NaN in x is refused; finite x so large that the scores overflow to NaN
/// must report a NaN loss, never a data loss of 0.
async fn svm_nan(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let id = create(
        &mut c,
        pb::ModelSpec {
            loss: pb::LossKind::Svm as i32,
            ..spec(4, vec![relu(8), relu(8)], 3)
        },
    )
    .await?;
    let mut tally = Tally::new("calls");
    tally.sent = 3;
    let (mut x, labels) = batch(&mut Rng(9), 8, 4, 3);
    x.values[5] = f32::NAN;
    let r = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(x.clone()),
            labels: labels.clone(),
            ..Default::default()
        })
        .await;
    tally.expect("Forward(NaN x)", &r, "INVALID_ARGUMENT");
    x.values.iter_mut().for_each(|v| *v = 3e38);
    let r = c
        .forward(pb::ForwardRequest {
            model_id: id.clone(),
            x: Some(x.clone()),
            labels: labels.clone(),
            ..Default::default()
        })
        .await;
    tally.call("Forward(overflowing x)", &r);
    match &r {
        Ok(resp) => {
            let loss = resp.get_ref().losses.as_ref().and_then(|l| l.data_loss);
            tally.note(format!("overflowing x: data_loss {loss:?}"));
            if loss == Some(0.0) {
                tally.flag("NaN scores gave data_loss 0");
            }
        }
        Err(s) if s.code() != tonic::Code::InvalidArgument => {
            tally.flag(format!("Forward(overflowing x): {}", code_name(s.code())));
        }
        Err(_) => {}
    }
    let r = c
        .train_step(pb::TrainStepRequest {
            model_id: id.clone(),
            x: Some(x),
            labels,
            learning_rate: None,
        })
        .await;
    tally.call("TrainStep(overflowing x)", &r);
    let step = c
        .get_model(pb::GetModelRequest {
            model_id: id.clone(),
            include_values: false,
            ..Default::default()
        })
        .await?
        .into_inner()
        .step;
    tally.note(format!("step after the overflowing TrainStep: {step}"));
    delete(&mut c, &id).await;
    Ok(tally)
}

/// Shapes that cannot match the values sent: the caller's mistake (INVALID_ARGUMENT),
/// not a retryable RESOURCE_EXHAUSTED.
async fn malformed_shapes(ctx: &Ctx) -> Result<Tally, Error> {
    let mut c = ctx.client().await?;
    let id = create(&mut c, spec(2, vec![], 3)).await?;
    let mut tally = Tally::new("calls");
    for (label, shape) in [
        ("Forward([100000000, 2], 4 values)", vec![100_000_000, 2]),
        ("Forward([u32::MAX; 3], 4 values)", vec![u32::MAX; 3]),
    ] {
        tally.sent += 1;
        let r = c
            .forward(pb::ForwardRequest {
                model_id: id.clone(),
                x: Some(pb::Tensor {
                    shape,
                    values: vec![0.5; 4],
                    values_f64: vec![],
                    ..Default::default()
                }),
                probabilities: false,
                labels: vec![],
            })
            .await;
        tally.expect(label, &r, "INVALID_ARGUMENT");
    }
    delete(&mut c, &id).await;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// The run and its report

#[derive(Serialize)]
struct Row {
    attack: Attack,
    what: &'static str,
    #[serde(flatten)]
    tally: Tally,
    probe_after: Option<Probe>,
    server_alive: bool,
    rss_before_mib: Option<f64>,
    rss_peak_mib: Option<f64>,
    rss_after_mib: Option<f64>,
    secs: f64,
    failed: bool,
}

#[derive(Serialize)]
struct Report {
    args: Args,
    rows: Vec<Row>,
    failed: bool,
}

async fn run_one(ctx: &Ctx, attack: Attack) -> Row {
    let rss_before_mib = ctx.rss.now_mib();
    ctx.rss.reset_peak();
    let start = Instant::now();
    let bound = attack.time_bound(&ctx.args);
    let mut tally = match tokio::time::timeout(bound, attack.run(ctx)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let mut t = Tally::new("calls");
            t.flag(format!("the attack could not run: {e}"));
            t
        }
        Err(_) => {
            let mut t = Tally::new("calls");
            t.flag(format!("did not end within {bound:?}"));
            t
        }
    };
    let secs = start.elapsed().as_secs_f64();
    // Let the server drop what the attack left before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_peak_mib = ctx.rss.peak_mib();
    let rss_after_mib = ctx.rss.now_mib();
    let probe_after = probe(ctx.uri.clone()).await;
    let server_alive = ctx.args.server_pid.is_none_or(alive);
    if !server_alive {
        tally.flag("the server is gone");
    }
    let failed = tally.failed() || !probe_after.ok || !server_alive;
    Row {
        attack,
        what: attack.what(),
        tally,
        probe_after: Some(probe_after),
        server_alive,
        rss_before_mib,
        rss_peak_mib,
        rss_after_mib,
        secs,
        failed,
    }
}

fn opt_mib(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0}"))
}

fn probe_cell(p: &Option<Probe>) -> String {
    match p {
        None => "-".to_string(),
        Some(p) if p.ok => format!("ok {:.0} ms", p.ms),
        Some(p) => format!("FAILED ({})", p.error.as_deref().unwrap_or("?")),
    }
}

/// The report as a Markdown table, then each attack's messages and notes.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| attack | sent | outcomes | probe during | probe after | alive | RSS MiB before → peak → after | s |\n\
         |---|---:|---|---|---|---|---|---:|\n",
    );
    for r in rows {
        let outcomes: Vec<String> = r
            .tally
            .outcomes
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect();
        out += &format!(
            "| {}{} | {} {} | {} | {} | {} | {} | {} → {} → {} | {:.1} |\n",
            r.attack.name(),
            if r.failed { " **FAILED**" } else { "" },
            r.tally.sent,
            r.tally.unit,
            outcomes.join(", "),
            probe_cell(&r.tally.probe_during),
            probe_cell(&r.probe_after),
            if r.server_alive { "yes" } else { "**no**" },
            opt_mib(r.rss_before_mib),
            opt_mib(r.rss_peak_mib),
            opt_mib(r.rss_after_mib),
            r.secs,
        );
    }
    out.push('\n');
    for r in rows {
        out += &format!("{}: {}\n", r.attack.name(), r.what);
        for n in &r.tally.notes {
            out += &format!("  - {n}\n");
        }
        for (k, m) in &r.tally.messages {
            out += &format!("  - {k}: \"{m}\"\n");
        }
        for u in &r.tally.unexpected {
            out += &format!("  - UNEXPECTED: {u}\n");
        }
    }
    out
}

async fn attacks(args: Args) -> Result<bool, Error> {
    let address = args.address.clone().ok_or("--address is required")?;
    let ctx = Ctx {
        uri: format!("http://{address}"),
        address,
        rss: Rss::start(args.server_pid),
        args,
    };
    let chosen: Vec<Attack> = if ctx.args.only.is_empty() {
        Attack::value_variants().to_vec()
    } else {
        ctx.args.only.clone()
    };
    let first = probe(ctx.uri.clone()).await;
    if !first.ok {
        return Err(format!("the server is not serving: {first:?}").into());
    }
    let mut rows = Vec::new();
    let mut not_run = Vec::new();
    for attack in chosen {
        if ctx.args.server_pid.is_some_and(|pid| !alive(pid)) {
            println!("{}: not run, the server is gone", attack.name());
            not_run.push(attack.name());
            continue;
        }
        println!("== {}: {}", attack.name(), attack.what());
        let row = run_one(&ctx, attack).await;
        println!(
            "   {} {}: {:?}; probe during {}, after {}; RSS {} → {} → {} MiB; {:.1} s{}",
            row.tally.sent,
            row.tally.unit,
            row.tally.outcomes,
            probe_cell(&row.tally.probe_during),
            probe_cell(&row.probe_after),
            opt_mib(row.rss_before_mib),
            opt_mib(row.rss_peak_mib),
            opt_mib(row.rss_after_mib),
            row.secs,
            if row.failed { "  FAILED" } else { "" }
        );
        for u in &row.tally.unexpected {
            println!("   UNEXPECTED: {u}");
        }
        rows.push(row);
    }
    println!("\n{}", table(&rows));
    if let Some(path) = &ctx.args.not_run {
        std::fs::write(path, not_run.join(","))?;
    }
    let failed = rows.iter().any(|r| r.failed)
        || ctx.args.server_pid.is_some_and(|pid| !alive(pid))
        || rows.is_empty();
    if let Some(path) = &ctx.args.json {
        let report = Report {
            args: ctx.args.clone(),
            rows,
            failed,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if failed {
        println!("FAILED: the server died, a probe failed, or an attack got an unexpected outcome");
    }
    Ok(!failed)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for a in Attack::value_variants() {
            println!("{:<28} {}", a.name(), a.what());
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("attacks: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(attacks(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("attacks: {e}");
            ExitCode::from(2)
        }
    }
}
