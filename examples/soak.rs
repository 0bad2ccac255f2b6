//! Soak: many concurrent callers mixing CreateModel, TrainStep, Forward, Evaluate, GetModel
//! and DeleteModel against a running server for a set time (issue 7; not in CI). Reports
//! calls and errors by code over time, the server's resident memory (with `--server-pid`)
//! and live sessions, and fails (exit 1) on any INTERNAL, UNKNOWN, UNAVAILABLE, a call
//! without an answer within `--call-timeout`, or a wrong answer.
//!
//! Run: `cargo run --release --example soak -- --address 127.0.0.1:PORT --callers 200
//! --duration 300s` (`bench/soak/run.sh` starts a server and does this for you).
//!
//! Each caller holds at most `--held` models. In a loop it either creates a small model
//! (random dims, activations, loss, optimizer and dtype) or picks one of its own and runs
//! a few TrainSteps, a Forward, sometimes an Evaluate or GetModel; then it deletes the
//! model with probability `--delete-prob` and keeps it otherwise. A caller that holds
//! `--held` models deletes one before creating another, so live sessions stay at most
//! callers × held. One call in a hundred is a deliberately malformed Forward, which must
//! be answered INVALID_ARGUMENT: the error path is soaked too. Every TrainStep must report
//! the model's previous step + 1 (each model has one caller).
//!
//! Beside the callers, clients that misbehave at the transport level (they must not
//! disturb the callers, nor grow the server's memory): `--idle-connections` sockets that
//! connect and send nothing, and `--slow-readers` HTTP/2 connections that ask for a
//! model's values (`GetModel` with `include_values`, ~0.8 MB each, on
//! `--slow-reader-streams` streams) and never open their flow-control window. Each
//! reconnects as soon as the server closes it; the report counts those closes and how
//! long the server took.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backprop::pb;
use backprop::pb::trainer_client::TrainerClient;
use clap::Parser;
use serde::Serialize;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Parser, Debug, Clone, Serialize)]
#[command(about = "Soak a backprop server with a mixed workload")]
struct Args {
    /// Server address, host:port.
    #[arg(long)]
    address: String,
    /// Concurrent callers.
    #[arg(long, default_value_t = 200)]
    callers: usize,
    /// How long to run: `300s`, `5m`, `1h` or seconds.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    duration: Duration,
    /// Models one caller holds at most.
    #[arg(long, default_value_t = 3)]
    held: usize,
    /// Chance that a caller deletes the model it just used.
    #[arg(long, default_value_t = 0.15)]
    delete_prob: f64,
    /// HTTP/2 connections the callers share, round robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// A call without an answer after this long counts as a hang (a failure).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    call_timeout: Duration,
    /// Seconds between report lines.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "secs")]
    every: Duration,
    /// The server's process id: its VmRSS is read from /proc at every report line.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write `soak.json` and `soak.txt` into this directory.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Seed of the callers' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client runtime threads.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Sockets that connect and send nothing (the server closes them at its handshake
    /// timeout; each reconnects).
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// HTTP/2 connections that request a model's values and never read the answers (the
    /// server closes them at its send timeout; each reconnects).
    #[arg(long, default_value_t = 0)]
    slow_readers: usize,
    /// Streams each slow reader opens.
    #[arg(long, default_value_t = 16)]
    slow_reader_streams: u32,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let scale = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(n * scale))
}

/// SplitMix64: a caller's choices, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi].
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % (hi - lo + 1) as u64) as u32
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
    }
}

/// A small random model: 2-32 inputs, up to two hidden layers of 4-64 units, 2-10 classes.
fn random_spec(r: &mut Rng) -> pb::ModelSpec {
    let hidden = (0..r.range(0, 2))
        .map(|_| {
            let activation = r.range(1, 6) as i32;
            pb::HiddenLayer {
                units: r.range(4, 64),
                activation,
                maxout_pieces: (activation == pb::Activation::Maxout as i32).then(|| r.range(2, 3)),
                ..Default::default()
            }
        })
        .collect();
    pb::ModelSpec {
        input_dim: r.range(2, 32),
        hidden,
        num_classes: r.range(2, 10),
        loss: r.range(1, 2) as i32,
        l2: if r.chance(0.5) { 0.0 } else { 1e-4 },
        optimizer: Some(pb::Optimizer {
            kind: r.range(1, 4) as i32,
            ..Default::default()
        }),
        init: Some(pb::Init {
            seed: r.next(),
            ..Default::default()
        }),
        dtype: r.range(1, 2) as i32,
        ..Default::default()
    }
}

/// A model a caller holds: its id, dims and the step it must be at.
struct Held {
    id: String,
    d: u32,
    c: u32,
    step: u64,
}

fn batch(r: &mut Rng, m: &Held) -> (pb::Tensor, Vec<u32>) {
    let n = r.range(8, 64);
    let x = pb::Tensor {
        shape: vec![n, m.d],
        values: (0..n * m.d).map(|_| r.unit()).collect(),
        ..Default::default()
    };
    let labels = (0..n).map(|_| r.range(0, m.c - 1)).collect();
    (x, labels)
}

/// Latency buckets: bucket i holds calls that took [2^(i/4), 2^((i+1)/4)) µs.
const BUCKETS: usize = 128;

fn bucket(d: Duration) -> usize {
    let us = d.as_micros().max(1) as f64;
    ((us.log2() * 4.0) as usize).min(BUCKETS - 1)
}

fn bucket_ms(i: usize) -> f64 {
    2f64.powf((i + 1) as f64 / 4.0) / 1000.0
}

#[derive(Default)]
struct MethodStats {
    calls: u64,
    /// By code name ("OK", "INVALID_ARGUMENT", ..., "TIMEOUT").
    codes: BTreeMap<String, u64>,
    latency: Vec<u64>,
}

#[derive(Default)]
struct Stats {
    by_method: BTreeMap<&'static str, MethodStats>,
    /// Answers that came with the right code but the wrong content.
    wrong: Vec<String>,
}

impl Stats {
    fn record(&mut self, method: &'static str, code: &str, took: Duration) {
        let m = self.by_method.entry(method).or_default();
        m.calls += 1;
        *m.codes.entry(code.to_string()).or_default() += 1;
        if m.latency.is_empty() {
            m.latency = vec![0; BUCKETS];
        }
        m.latency[bucket(took)] += 1;
    }

    fn totals(&self) -> (u64, BTreeMap<String, u64>) {
        let mut codes = BTreeMap::new();
        let mut calls = 0;
        for m in self.by_method.values() {
            calls += m.calls;
            for (c, n) in &m.codes {
                *codes.entry(c.clone()).or_default() += n;
            }
        }
        (calls, codes)
    }
}

fn code_name(c: Code) -> String {
    format!("{c:?}")
        .chars()
        .fold(String::new(), |mut s, ch| {
            if ch.is_uppercase() && !s.is_empty() {
                s.push('_');
            }
            s.push(ch.to_ascii_uppercase());
            s
        })
        .replace("O_K", "OK")
}

/// Codes that mean the server failed, not the caller.
fn is_failure(code: &str) -> bool {
    matches!(code, "INTERNAL" | "UNKNOWN" | "UNAVAILABLE" | "TIMEOUT")
}

type Shared = Arc<Mutex<Stats>>;

/// Runs one call with the timeout and records its outcome; returns the answer if OK.
async fn timed<T>(
    stats: &Shared,
    timeout: Duration,
    method: &'static str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    let start = Instant::now();
    let outcome = tokio::time::timeout(timeout, call).await;
    let took = start.elapsed();
    let (code, result) = match outcome {
        Ok(Ok(r)) => ("OK".to_string(), Ok(r.into_inner())),
        Ok(Err(s)) => (code_name(s.code()), Err(s.message().to_string())),
        Err(_) => ("TIMEOUT".to_string(), Err("no answer".to_string())),
    };
    stats.lock().expect("stats").record(method, &code, took);
    result.map_err(|m| format!("{code}: {m}"))
}

async fn caller(
    mut c: TrainerClient<Channel>,
    args: Arc<Args>,
    seed: u64,
    stop: Instant,
    stats: Shared,
) {
    let mut r = Rng(seed);
    let mut held: Vec<Held> = Vec::new();
    let t = args.call_timeout;
    let wrong = |stats: &Shared, what: String| stats.lock().expect("stats").wrong.push(what);
    while Instant::now() < stop {
        if held.is_empty() || (held.len() < args.held && r.chance(0.3)) {
            let spec = random_spec(&mut r);
            let (d, k) = (spec.input_dim, spec.num_classes);
            let req = pb::CreateModelRequest {
                spec: Some(spec),
                ..Default::default()
            };
            if let Ok(resp) = timed(&stats, t, "CreateModel", c.create_model(req)).await {
                held.push(Held {
                    id: resp.model_id,
                    d,
                    c: k,
                    step: 0,
                });
            }
            continue;
        }
        if held.len() >= args.held && r.chance(0.5) {
            let m = held.swap_remove(r.range(0, held.len() as u32 - 1) as usize);
            let req = pb::DeleteModelRequest { model_id: m.id };
            let _ = timed(&stats, t, "DeleteModel", c.delete_model(req)).await;
            continue;
        }
        let i = r.range(0, held.len() as u32 - 1) as usize;
        for _ in 0..r.range(1, 5) {
            let (x, labels) = batch(&mut r, &held[i]);
            let m = &mut held[i];
            let req = pb::TrainStepRequest {
                model_id: m.id.clone(),
                x: Some(x),
                labels,
                learning_rate: None,
            };
            if let Ok(resp) = timed(&stats, t, "TrainStep", c.train_step(req)).await {
                if resp.step != m.step + 1 {
                    wrong(
                        &stats,
                        format!("TrainStep on {}: step {} after {}", m.id, resp.step, m.step),
                    );
                }
                m.step = resp.step;
            }
        }
        let (x, _) = batch(&mut r, &held[i]);
        let n = x.shape[0];
        let m = &held[i];
        let req = pb::ForwardRequest {
            model_id: m.id.clone(),
            x: Some(x),
            labels: vec![],
            ..Default::default()
        };
        if let Ok(resp) = timed(&stats, t, "Forward", c.forward(req)).await {
            let shape = resp.scores.map(|s| s.shape).unwrap_or_default();
            if shape != [n, m.c] || resp.predictions.len() != n as usize {
                wrong(
                    &stats,
                    format!("Forward on {}: scores {shape:?} for {n} rows", m.id),
                );
            }
        }
        if r.chance(0.2) {
            let (x, labels) = batch(&mut r, m);
            let req = pb::EvaluateRequest {
                model_id: m.id.clone(),
                x: Some(x),
                labels,
            };
            let _ = timed(&stats, t, "Evaluate", c.evaluate(req)).await;
        }
        if r.chance(0.1) {
            let req = pb::GetModelRequest {
                model_id: m.id.clone(),
                include_values: r.chance(0.5),
                ..Default::default()
            };
            if let Ok(resp) = timed(&stats, t, "GetModel", c.get_model(req)).await
                && resp.step != m.step
            {
                let what = format!("GetModel on {}: step {} not {}", m.id, resp.step, m.step);
                wrong(&stats, what);
            }
        }
        if r.chance(0.01) {
            // Malformed on purpose: one column too many.
            let req = pb::ForwardRequest {
                probabilities: false,
                model_id: m.id.clone(),
                x: Some(pb::Tensor {
                    shape: vec![1, m.d + 1],
                    values: vec![0.5; m.d as usize + 1],
                    values_f64: vec![],
                    ..Default::default()
                }),
                labels: vec![],
            };
            match timed(&stats, t, "Forward(malformed)", c.forward(req)).await {
                Err(e) if e.starts_with("INVALID_ARGUMENT") => {}
                other => wrong(&stats, format!("a malformed Forward answered {other:?}")),
            }
        }
        if r.chance(args.delete_prob) {
            let m = held.swap_remove(i);
            let req = pb::DeleteModelRequest { model_id: m.id };
            let _ = timed(&stats, t, "DeleteModel", c.delete_model(req)).await;
        }
    }
    for m in held {
        let req = pb::DeleteModelRequest { model_id: m.id };
        let _ = timed(&stats, t, "DeleteModel", c.delete_model(req)).await;
    }
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One report line.
#[derive(Serialize, Clone)]
struct Sample {
    t_s: f64,
    rss_mib: Option<f64>,
    sessions: Option<usize>,
    calls: u64,
    calls_per_s: f64,
    codes: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct MethodSummary {
    calls: u64,
    codes: BTreeMap<String, u64>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct Report {
    args: Args,
    started_utc: String,
    wall_s: f64,
    samples: Vec<Sample>,
    methods: BTreeMap<String, MethodSummary>,
    calls: u64,
    codes: BTreeMap<String, u64>,
    wrong_answers: Vec<String>,
    failed: bool,
    /// The misbehaving clients, closed by the server.
    closes: Closes,
}

fn quantile(hist: &[u64], q: f64) -> f64 {
    let total: u64 = hist.iter().sum();
    let mut seen = 0;
    for (i, &n) in hist.iter().enumerate() {
        seen += n;
        if total > 0 && seen as f64 >= q * total as f64 {
            return bucket_ms(i);
        }
    }
    0.0
}

fn table(samples: &[Sample]) -> String {
    let mut codes: Vec<String> = samples
        .iter()
        .flat_map(|s| s.codes.keys().cloned())
        .filter(|c| c != "OK")
        .collect();
    codes.sort();
    codes.dedup();
    let mut out = format!(
        "{:>7} {:>8} {:>8} {:>10} {:>8}",
        "t_s", "rss_MiB", "sessions", "calls", "calls/s"
    );
    for c in &codes {
        out += &format!(" {c:>18}");
    }
    out.push('\n');
    for s in samples {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        out += &format!(
            "{:>7.0} {:>8} {:>8} {:>10} {:>8.0}",
            s.t_s,
            opt(s.rss_mib),
            s.sessions.map_or("-".to_string(), |n| n.to_string()),
            s.calls,
            s.calls_per_s
        );
        for c in &codes {
            out += &format!(" {:>18}", s.codes.get(c).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    out
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------
// Clients that misbehave at the transport level

/// How often the server closed the misbehaving clients, and after how long.
#[derive(Default, Serialize, Clone)]
struct Closes {
    idle_closed: u64,
    idle_held_max_s: f64,
    slow_closed: u64,
    slow_held_max_s: f64,
}

type SharedCloses = Arc<Mutex<Closes>>;

/// Reads and discards until the server closes the socket (reading drains the socket but
/// sends no WINDOW_UPDATE: the server still cannot send more than the initial window);
/// `false` if `stop` came first.
async fn until_closed(s: &mut tokio::net::TcpStream, stop: Instant) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = stop.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn idle_connection(address: String, stop: Instant, closes: SharedCloses) {
    while Instant::now() < stop {
        let Ok(mut s) = tokio::net::TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let opened = Instant::now();
        if !until_closed(&mut s, stop).await {
            return;
        }
        let mut c = closes.lock().expect("closes");
        c.idle_closed += 1;
        c.idle_held_max_s = c.idle_held_max_s.max(opened.elapsed().as_secs_f64());
    }
}

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// GetModel(include_values) on `streams` streams, written once; the connection's
/// preface and an empty SETTINGS first. Headers are HPACK literals without indexing.
fn slow_reader_bytes(model_id: &str, streams: u32) -> Vec<u8> {
    use prost::Message as _;
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/backprop.v1.Trainer/GetModel"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        // Names and values here are under 127 bytes: a one-byte length.
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let body = pb::GetModelRequest {
        model_id: model_id.to_string(),
        include_values: true,
        ..Default::default()
    }
    .encode_to_vec();
    let mut message = vec![0u8];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes());
    message.extend_from_slice(&body);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    for i in 0..streams {
        let id = 1 + 2 * i;
        out.extend(h2_frame(0x1, 0x4, id, &block)); // HEADERS, END_HEADERS
        out.extend(h2_frame(0x0, 0x1, id, &message)); // DATA, END_STREAM
    }
    out
}

async fn slow_reader(
    address: String,
    model_id: String,
    streams: u32,
    stop: Instant,
    closes: SharedCloses,
) {
    use tokio::io::AsyncWriteExt;
    let request = slow_reader_bytes(&model_id, streams);
    while Instant::now() < stop {
        let Ok(mut s) = tokio::net::TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let opened = Instant::now();
        if s.write_all(&request).await.is_err() {
            continue;
        }
        if !until_closed(&mut s, stop).await {
            return;
        }
        let mut c = closes.lock().expect("closes");
        c.slow_closed += 1;
        c.slow_held_max_s = c.slow_held_max_s.max(opened.elapsed().as_secs_f64());
    }
}

/// The model the slow readers ask for: 784 inputs, 128 hidden, 10 classes, f64
/// (101,770 parameters, ~0.8 MB of values).
async fn slow_reader_model(c: &mut TrainerClient<Channel>) -> Result<String, tonic::Status> {
    let spec = pb::ModelSpec {
        input_dim: 784,
        hidden: vec![pb::HiddenLayer {
            units: 128,
            activation: pb::Activation::Relu as i32,
            ..Default::default()
        }],
        num_classes: 10,
        dtype: pb::Dtype::F64 as i32,
        ..Default::default()
    };
    Ok(c.create_model(pb::CreateModelRequest {
        spec: Some(spec),
        ..Default::default()
    })
    .await?
    .into_inner()
    .model_id)
}

async fn soak(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let args = Arc::new(args);
    let uri = format!("http://{}", args.address);
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(Channel::from_shared(uri.clone())?.connect().await?);
    }
    let client = |i: usize| {
        TrainerClient::new(channels[i % channels.len()].clone()).max_decoding_message_size(64 << 20)
    };
    let stats: Shared = Arc::default();
    let started_utc = utc_now();
    let start = Instant::now();
    let stop = start + args.duration;
    let closes: SharedCloses = Arc::default();
    let mut misbehaving = Vec::new();
    for _ in 0..args.idle_connections {
        misbehaving.push(tokio::spawn(idle_connection(
            args.address.clone(),
            stop,
            closes.clone(),
        )));
    }
    let slow_model = if args.slow_readers > 0 {
        Some(slow_reader_model(&mut client(0)).await?)
    } else {
        None
    };
    for _ in 0..args.slow_readers {
        misbehaving.push(tokio::spawn(slow_reader(
            args.address.clone(),
            slow_model.clone().unwrap_or_default(),
            args.slow_reader_streams,
            stop,
            closes.clone(),
        )));
    }
    let mut tasks = Vec::new();
    for i in 0..args.callers {
        let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        tasks.push(tokio::spawn(caller(
            client(i),
            args.clone(),
            seed,
            stop,
            stats.clone(),
        )));
    }
    let mut lister = client(0);
    let mut samples = Vec::new();
    let mut last = (0.0, 0u64);
    let mut sample = |samples: &mut Vec<Sample>, sessions: Option<usize>| {
        let t = start.elapsed().as_secs_f64();
        let (calls, codes) = stats.lock().expect("stats").totals();
        let s = Sample {
            t_s: t,
            rss_mib: args.server_pid.and_then(rss_kib).map(|k| k as f64 / 1024.0),
            sessions,
            calls,
            calls_per_s: (calls - last.1) as f64 / (t - last.0).max(1e-9),
            codes,
        };
        last = (t, calls);
        let errors: BTreeMap<_, _> = s.codes.iter().filter(|(c, _)| *c != "OK").collect();
        println!(
            "{:>7.0} {:>8} {:>8} {:>10} {:>8.0}  {errors:?}",
            s.t_s,
            s.rss_mib.map_or("-".to_string(), |v| format!("{v:.1}")),
            s.sessions.map_or("-".to_string(), |n| n.to_string()),
            s.calls,
            s.calls_per_s
        );
        samples.push(s);
    };
    println!(
        "{:>7} {:>8} {:>8} {:>10} {:>8}  errors so far",
        "t_s", "rss_MiB", "sessions", "calls", "calls/s"
    );
    let sessions = |l: &mut TrainerClient<Channel>| {
        let mut l = l.clone();
        async move {
            l.list_models(pb::ListModelsRequest::default())
                .await
                .ok()
                .map(|r| r.into_inner().models.len())
        }
    };
    sample(&mut samples, sessions(&mut lister).await);
    while Instant::now() < stop {
        tokio::time::sleep(
            args.every
                .min(stop.saturating_duration_since(Instant::now())),
        )
        .await;
        sample(&mut samples, sessions(&mut lister).await);
    }
    for t in tasks {
        t.await?;
    }
    for t in misbehaving {
        t.await?;
    }
    if let Some(id) = slow_model {
        client(0)
            .delete_model(pb::DeleteModelRequest { model_id: id })
            .await?;
    }
    sample(&mut samples, sessions(&mut lister).await);
    let wall_s = start.elapsed().as_secs_f64();

    let stats = stats.lock().expect("stats");
    let (calls, codes) = stats.totals();
    let methods: BTreeMap<String, MethodSummary> = stats
        .by_method
        .iter()
        .map(|(name, m)| {
            let max = m
                .latency
                .iter()
                .rposition(|&n| n > 0)
                .map_or(0.0, bucket_ms);
            let summary = MethodSummary {
                calls: m.calls,
                codes: m.codes.clone(),
                p50_ms: quantile(&m.latency, 0.5),
                p99_ms: quantile(&m.latency, 0.99),
                max_ms: max,
            };
            (name.to_string(), summary)
        })
        .collect();
    let failed = codes.keys().any(|c| is_failure(c)) || !stats.wrong.is_empty();
    println!(
        "\n{:<20} {:>9} {:>9} {:>9} {:>9}  codes",
        "method", "calls", "p50_ms", "p99_ms", "max_ms"
    );
    for (name, m) in &methods {
        println!(
            "{name:<20} {:>9} {:>9.2} {:>9.2} {:>9.2}  {:?}",
            m.calls, m.p50_ms, m.p99_ms, m.max_ms, m.codes
        );
    }
    println!("\ntotal: {calls} calls in {wall_s:.0} s; by code: {codes:?}");
    let closes = closes.lock().expect("closes").clone();
    if args.idle_connections + args.slow_readers > 0 {
        println!(
            "closed by the server: {} idle connections (held at most {:.1} s), {} slow readers (held at most {:.1} s)",
            closes.idle_closed, closes.idle_held_max_s, closes.slow_closed, closes.slow_held_max_s
        );
    }
    for w in stats.wrong.iter().take(20) {
        println!("wrong answer: {w}");
    }
    let report = Report {
        args: (*args).clone(),
        started_utc,
        wall_s,
        methods,
        calls,
        codes,
        wrong_answers: stats.wrong.clone(),
        failed,
        samples: samples.clone(),
        closes,
    };
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("soak.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        std::fs::write(dir.join("soak.txt"), table(&samples))?;
    }
    if failed {
        println!(
            "FAILED: server-side errors (INTERNAL, UNKNOWN, UNAVAILABLE), hangs or wrong answers"
        );
    }
    Ok(!failed)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}
