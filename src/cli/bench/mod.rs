//! `backprop bench`: a load generator for a running server, like ghz or redis-benchmark,
//! for the workloads of `bench/README.md`. It creates the sessions a workload needs,
//! warms up, drives the calls from `--concurrency` tokio tasks over `--connections`
//! HTTP/2 connections for `--total` calls or `--duration` seconds, prints requests/s,
//! p50/p90/p99/max latency and errors by gRPC code, writes the same figures as JSON
//! (`--json`), and deletes its sessions (unless `--keep`).
//!
//! | workload | call | sessions (default) | callers (default) |
//! |---|---|---|---|
//! | `w1` | TrainStep, N=200, D=3072, H=100, C=10 | one per caller | 1 |
//! | `w2-forward` | Forward, N=8, D=4, H=16, C=3 | 1 | 50 |
//! | `w2-train` | TrainStep, the W2 model and batch | one per caller | 50 |
//! | `w3` | CreateModel of the W2 model, `--sessions` times (10,000) | — | 1 |
//! | `health` | `grpc.health.v1.Health/Check` | — | 50 |
//!
//! W2 runs are followed by the same number of seconds (or calls) of health Checks, same
//! callers and connections: the bare-RPC ceiling of the server's gRPC stack, and the
//! report gives workload rps / health rps. W3 reads the server's resident memory
//! (`/proc/PID/status`, `--server-pid`) before and after creating the sessions.
//!
//! Caller i uses connection i mod K and session i mod S. Latency is per call, from
//! sending to the decoded answer, failed calls included.
mod load;
mod training;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use self::load::{Call, Callers, Stop, Tally};
use self::workload::{w1, w2};
use crate::cli::client::{self, CONNECT_TIMEOUT, Connection, ServerArgs};
use crate::cli::describe::table;
use crate::cli::error::CliError;
use crate::pb;
use crate::service::route::routed;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to run (bench/README.md): W1 TrainStep, W2 Forward or TrainStep (each
    /// followed by health Checks for the ratio), W3 session creation, or health Checks.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Concurrent callers. Default: 50 for w2-forward, w2-train and health; 1 for w1, w3.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub concurrency: Option<u32>,
    /// HTTP/2 connections the callers are spread over, round-robin. Default: the
    /// concurrency, at most 2. On 2 cores, 50 callers got the most health Checks/s on 2
    /// connections; 1 gave ~30% fewer (one connection is one reader task in the server),
    /// 4 and 8 a few % fewer.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "K")]
    pub connections: Option<u32>,
    /// Stop after this many measured calls (all callers together).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "N", conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Measure for this many seconds (calls in flight at the end still count). Default 10
    /// when --total is not given.
    #[arg(long, value_parser = positive_seconds, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Seconds of the same calls before measuring, not counted (none for w3).
    #[arg(long, value_parser = seconds, default_value = "1", value_name = "SECS")]
    pub warmup: f64,
    /// Sessions. w3: how many to create (default 10,000); w1, w2-train: default one per
    /// caller; w2-forward: default 1. Caller i uses session i mod S.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "S")]
    pub sessions: Option<u32>,
    /// w3: the server's process id, to read its resident memory (VmRSS in
    /// /proc/PID/status) before and after; the server must run on this machine.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Leave the sessions the run created on the server.
    #[arg(long)]
    pub keep: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    W1,
    W2Forward,
    W2Train,
    W3,
    Health,
    /// Datasets and Fit: a 123 MB upload against raw TCP, W1 by Fit against the step in
    /// process, W2 Forward's p99 beside a running fit.
    W5Fit,
    /// TrainStream: W2 by one stream against 50 callers' health Checks, W1 by stream
    /// against the step in process.
    W6Stream,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2Forward => "w2-forward",
            Workload::W2Train => "w2-train",
            Workload::W3 => "w3",
            Workload::Health => "health",
            Workload::W5Fit => "w5-fit",
            Workload::W6Stream => "w6-stream",
        }
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match seconds(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be more than 0 seconds".into()),
    }
}

/// The flags with every default filled in.
struct Plan {
    workload: Workload,
    concurrency: usize,
    connections: usize,
    sessions: usize,
    stop: Stop,
    warmup: Duration,
}

/// Batches W6's W2 stream sends unless --total says otherwise.
const W6_STEPS: u64 = 20_000;

/// Sessions W3 creates unless told otherwise.
const W3_SESSIONS: u32 = 10_000;

impl Plan {
    fn new(args: &BenchArgs) -> Result<Self, CliError> {
        use Workload::*;
        let w = args.workload;
        let concurrency = args.concurrency.unwrap_or(match w {
            W1 | W3 => 1,
            W2Forward | W2Train | Health | W5Fit | W6Stream => 50,
        });
        let connections = args.connections.unwrap_or(concurrency.min(2));
        let sessions = match w {
            W3 => args.sessions.unwrap_or(W3_SESSIONS),
            W1 | W2Train => args.sessions.unwrap_or(concurrency),
            W2Forward => args.sessions.unwrap_or(1),
            Health | W5Fit | W6Stream => 0,
        };
        let usage = |m: &str| Err(CliError::Usage(m.into()));
        if w == Health && args.sessions.is_some() {
            return usage("--sessions does not apply to --workload health");
        }
        if w == W3 && (args.total.is_some() || args.duration.is_some()) {
            return usage(
                "--workload w3 creates --sessions sessions; --total and --duration do not apply",
            );
        }
        if w != W3 && args.server_pid.is_some() {
            return usage("--server-pid is for --workload w3 (memory per session)");
        }
        let stop = match (args.total, args.duration) {
            (Some(n), _) => Stop::Total(n),
            (None, d) => Stop::Duration(Duration::from_secs_f64(d.unwrap_or(10.0))),
        };
        Ok(Plan {
            workload: w,
            concurrency: concurrency as usize,
            connections: connections as usize,
            sessions: sessions as usize,
            stop,
            warmup: Duration::from_secs_f64(args.warmup),
        })
    }
}

pub async fn bench(args: BenchArgs) -> Result<(), CliError> {
    let plan = Plan::new(&args)?;
    let mut channels = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        channels.push(client::connect(&args.server, CONNECT_TIMEOUT).await?);
    }
    let callers = Callers {
        channels: &channels,
        concurrency: plan.concurrency,
    };
    if matches!(plan.workload, Workload::W5Fit | Workload::W6Stream) {
        let figures = match plan.workload {
            Workload::W6Stream => {
                let steps = args.total.unwrap_or(W6_STEPS);
                training::w6(&channels, measure_health(&callers, &plan), steps).await?
            }
            _ => training::w5(&channels, &callers, plan.stop).await?,
        };
        print!("{}", figures.text());
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&figures.json()).unwrap_or_default() + "\n";
            std::fs::write(path, text).map_err(|source| CliError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
        return Ok(());
    }
    let mut report = Report::new(&args, &plan);
    match plan.workload {
        Workload::Health => report.main = Some(measure_health(&callers, &plan).await),
        Workload::W3 => w3(&callers, &plan, &args, &mut report).await?,
        w => {
            let (spec, batch) = match w {
                Workload::W1 => (workload::w1_spec(), workload::w1_batch()),
                _ => (workload::w2_spec(), workload::w2_batch()),
            };
            let ids = create_sessions(&channels[0], &spec, plan.sessions).await?;
            report.main = Some(if w == Workload::W2Forward {
                let call = forward_call(&ids, batch);
                measure::<pb::ForwardResponse>(&callers, &call, &plan).await
            } else {
                let call = train_step_call(&ids, batch);
                measure::<pb::TrainStepResponse>(&callers, &call, &plan).await
            });
            if matches!(w, Workload::W2Forward | Workload::W2Train) {
                report.health = Some(measure_health(&callers, &plan).await);
            }
            if w == Workload::W1 {
                report.floor = Some(measure_w1_floor(&callers, &plan).await);
            }
            if !args.keep {
                report.deleted = Some(delete_sessions(&channels, &ids, plan.concurrency).await);
            }
        }
    }
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json()).unwrap_or_default() + "\n";
        std::fs::write(path, text).map_err(|source| CliError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    report.verdict()
}

/// Warm-up (not counted), then the measured phase; answers are decoded as `U`.
async fn measure<U>(callers: &Callers<'_>, call: &Call, plan: &Plan) -> Tally
where
    U: prost::Message + Default + Send + 'static,
{
    if !plan.warmup.is_zero() {
        load::run::<U>(callers, call, Stop::Duration(plan.warmup), |_| None).await;
    }
    load::run::<U>(callers, call, plan.stop, |_| None).await
}

async fn measure_health(callers: &Callers<'_>, plan: &Plan) -> Tally {
    // The Trainer's name, as `backprop health` and bench/ghz/configs/w2_health.json ask.
    let request = HealthCheckRequest {
        service: "backprop.v1.Trainer".into(),
    };
    let call = Call::new("/grpc.health.v1.Health/Check", [request]);
    measure::<HealthCheckResponse>(callers, &call, plan).await
}

/// The id no session has: 128 bits of zeros is never drawn (ids come from the OS RNG).
const UNKNOWN_ID: &str = "00000000000000000000000000000000";

/// W1's transport floor: the same 2.5 MB TrainStep sent to an id no session has. The
/// server receives and decodes the whole request (tonic decodes before the handler runs)
/// and answers NOT_FOUND without any math, so this is what the call costs apart from the
/// step: client send, loopback, HTTP/2, decoding, and the answer.
async fn measure_w1_floor(callers: &Callers<'_>, plan: &Plan) -> Tally {
    let call = train_step_call(&[UNKNOWN_ID.to_string()], workload::w1_batch());
    measure::<pb::TrainStepResponse>(callers, &call, plan).await
}

fn forward_call(ids: &[String], batch: workload::Batch) -> Call {
    let requests = ids.iter().map(|id| pb::ForwardRequest {
        model_id: id.clone(),
        x: Some(batch.x.clone()),
        labels: Vec::new(),
        ..Default::default()
    });
    Call::routed("/backprop.v1.Trainer/Forward", requests)
}

fn train_step_call(ids: &[String], batch: workload::Batch) -> Call {
    let requests = ids.iter().map(|id| pb::TrainStepRequest {
        model_id: id.clone(),
        x: Some(batch.x.clone()),
        labels: batch.labels.clone(),
        learning_rate: None,
    });
    Call::routed("/backprop.v1.Trainer/TrainStep", requests)
}

/// Creates `n` sessions of `spec` one after another; on a failure deletes the ones made.
async fn create_sessions(
    channel: &Connection,
    spec: &pb::ModelSpec,
    n: usize,
) -> Result<Vec<String>, CliError> {
    let mut trainer = client::trainer(channel.clone());
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let request = pb::CreateModelRequest {
            spec: Some(spec.clone()),
            ..Default::default()
        };
        match trainer.create_model(request).await {
            Ok(r) => ids.push(r.into_inner().model_id),
            Err(status) => {
                delete_sessions(std::slice::from_ref(channel), &ids, 1).await;
                return Err(CliError::rpc("CreateModel")(status));
            }
        }
    }
    Ok(ids)
}

/// What deleting the run's sessions came to.
struct Deleted {
    deleted: usize,
    failed: usize,
}

/// Deletes `ids` from `tasks` callers at once, spread over the connections.
async fn delete_sessions(channels: &[Connection], ids: &[String], tasks: usize) -> Deleted {
    let tasks = tasks.clamp(1, ids.len().max(1));
    let chunk = ids.len().div_ceil(tasks).max(1);
    let mut handles = Vec::new();
    for (i, part) in ids.chunks(chunk).enumerate() {
        let mut trainer = client::trainer(channels[i % channels.len()].clone());
        let part = part.to_vec();
        handles.push(tokio::spawn(async move {
            let mut deleted = 0;
            for model_id in part {
                let request = pb::DeleteModelRequest { model_id };
                if trainer.delete_model(routed(request)).await.is_ok() {
                    deleted += 1;
                }
            }
            deleted
        }));
    }
    let mut deleted = 0;
    for h in handles {
        deleted += h.await.unwrap_or(0);
    }
    Deleted {
        deleted,
        failed: ids.len() - deleted,
    }
}

/// W3: `--sessions` CreateModel calls (their latency is the figure), the server's
/// resident memory around them, then the sessions deleted again.
async fn w3(
    callers: &Callers<'_>,
    plan: &Plan,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), CliError> {
    let rss = |pid: Option<u32>| pid.map(resident_bytes).transpose();
    let before = rss(args.server_pid)?;
    let request = pb::CreateModelRequest {
        spec: Some(workload::w2_spec()),
        ..Default::default()
    };
    let call = Call::new("/backprop.v1.Trainer/CreateModel", [request]);
    let stop = Stop::Total(plan.sessions as u64);
    let tally =
        load::run::<pb::CreateModelResponse>(callers, &call, stop, |r| Some(r.model_id)).await;
    // Read before deleting, but fail only after: a vanished server must not leave the
    // sessions behind (if it vanished, deleting fails too, and says so).
    let after = rss(args.server_pid);
    if let (Some(pid), Some(before), Ok(Some(after))) = (args.server_pid, before, &after) {
        let after = *after;
        report.memory = Some(Memory {
            pid,
            before,
            after,
            sessions: tally.kept.len() as u64,
            after_delete: None,
        });
    }
    if !args.keep {
        report.deleted =
            Some(delete_sessions(callers.channels, &tally.kept, plan.concurrency.max(8)).await);
        if let (Some(memory), Some(pid)) = (&mut report.memory, args.server_pid) {
            memory.after_delete = Some(resident_bytes(pid)?);
        }
    }
    report.main = Some(tally);
    after.map(drop)
}

/// VmRSS of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> Result<u64, CliError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{path} has no VmRSS line (is {pid} a live process?)"
            ))
        })
}

/// The server's resident memory around W3's session creation.
struct Memory {
    pid: u32,
    before: u64,
    after: u64,
    sessions: u64,
    after_delete: Option<u64>,
}

impl Memory {
    /// Growth per session created (negative if the server shrank meanwhile).
    fn per_session(&self) -> f64 {
        (self.after as f64 - self.before as f64) / self.sessions.max(1) as f64
    }
}

/// `1 caller`, `2 callers`.
fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

struct Report {
    workload: Workload,
    address: String,
    concurrency: usize,
    connections: usize,
    sessions: usize,
    stop: Stop,
    warmup: Duration,
    main: Option<Tally>,
    health: Option<Tally>,
    /// W1: the same call to an unknown id (every answer NOT_FOUND, as intended).
    floor: Option<Tally>,
    memory: Option<Memory>,
    deleted: Option<Deleted>,
}

impl Report {
    fn new(args: &BenchArgs, plan: &Plan) -> Self {
        Report {
            workload: plan.workload,
            address: args.server.address.clone(),
            concurrency: plan.concurrency,
            connections: plan.connections,
            sessions: plan.sessions,
            stop: plan.stop,
            warmup: if plan.workload == Workload::W3 {
                Duration::ZERO
            } else {
                plan.warmup
            },
            main: None,
            health: None,
            floor: None,
            memory: None,
            deleted: None,
        }
    }

    fn call_name(&self) -> &'static str {
        match self.workload {
            Workload::W1 | Workload::W2Train => "Trainer/TrainStep",
            Workload::W2Forward => "Trainer/Forward",
            Workload::W3 => "Trainer/CreateModel",
            Workload::Health => "Health/Check",
            Workload::W5Fit => "Trainer/Fit",
            Workload::W6Stream => "Trainer/TrainStream",
        }
    }

    /// workload rps / health rps, for W2.
    fn ratio(&self) -> Option<f64> {
        let (main, health) = (self.main.as_ref()?, self.health.as_ref()?);
        (health.rps() > 0.0).then(|| main.rps() / health.rps())
    }

    /// W1: GFLOP/s of one step at the median latency, and of all callers together.
    fn w1_gflops(&self) -> Option<(f64, f64)> {
        let main = self
            .main
            .as_ref()
            .filter(|_| self.workload == Workload::W1)?;
        let flop = w1::TRAIN_STEP_FLOP as f64;
        let p50 = main.percentile(0.5).as_secs_f64();
        let per_step = if p50 > 0.0 { flop / p50 / 1e9 } else { 0.0 };
        Some((per_step, flop * main.rps() / 1e9))
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let mode = match self.stop {
            _ if self.workload == Workload::W3 => format!("{} CreateModel calls", self.sessions),
            Stop::Total(n) => format!("{n} calls"),
            Stop::Duration(d) => format!("{} s", d.as_secs_f64()),
        };
        let sessions = match self.workload {
            Workload::W3 | Workload::Health => String::new(),
            _ => format!(", {}", plural(self.sessions, "session")),
        };
        out.push_str(&format!(
            "backprop bench {} against {}: {} on {}{sessions}, {mode}, {} s warm-up\n\n",
            self.workload.name(),
            self.address,
            plural(self.concurrency, "caller"),
            plural(self.connections, "connection"),
            self.warmup.as_secs_f64(),
        ));
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        let rows: Vec<Vec<String>> = [
            (self.call_name(), self.main.as_ref()),
            ("Health/Check", self.health.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, t)| t.map(|t| (name, t)))
        .map(|(name, t)| {
            vec![
                name.to_string(),
                t.requests.to_string(),
                format!("{:.2}", t.elapsed.as_secs_f64()),
                format!("{:.1}", t.rps()),
                ms(t.percentile(0.5)),
                ms(t.percentile(0.9)),
                ms(t.percentile(0.99)),
                ms(t.max()),
                t.failed().to_string(),
            ]
        })
        .collect();
        out.push_str(&table(
            &[
                "CALL", "REQUESTS", "SECONDS", "REQ/S", "P50 MS", "P90 MS", "P99 MS", "MAX MS",
                "ERRORS",
            ],
            &rows,
        ));
        for (name, t) in [("", self.main.as_ref()), ("health: ", self.health.as_ref())] {
            let Some(t) = t.filter(|t| t.failed() > 0) else {
                continue;
            };
            let codes: Vec<String> = t.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
            out.push_str(&format!("{name}errors: {}\n", codes.join(", ")));
            if let Some((_, message)) = &t.first_error {
                out.push_str(&format!("{name}first error: {message}\n"));
            }
        }
        if let Some(ratio) = self.ratio() {
            out.push_str(&format!(
                "\n{} / Health/Check requests/s: {ratio:.3}\n",
                self.call_name()
            ));
        }
        if let (Some(main), Some(floor)) = (&self.main, &self.floor) {
            let (step, bare) = (main.percentile(0.5), floor.percentile(0.5));
            out.push_str(&format!(
                "\nW1 transport floor (the same request to an unknown id: received, decoded, NOT_FOUND; {} calls, {} not NOT_FOUND): p50 {} ms, p90 {} ms\nTrainStep p50 minus the floor: {} ms (the step itself, server side)\n",
                floor.requests,
                floor.requests - floor.errors.get("NOT_FOUND").copied().unwrap_or(0),
                ms(bare),
                ms(floor.percentile(0.9)),
                ms(step.saturating_sub(bare)),
            ));
        }
        if let Some((per_step, total)) = self.w1_gflops() {
            out.push_str(&format!(
                "\nW1: {:.2} MFLOP per step; {per_step:.1} GFLOP/s at the p50 step, {total:.1} GFLOP/s for all callers together\n",
                w1::TRAIN_STEP_FLOP as f64 / 1e6
            ));
        }
        if let Some(m) = &self.memory {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let per = m.per_session();
            out.push_str(&format!(
                "\nserver {} resident memory: {:.1} MiB before, {:.1} MiB after {} sessions: {per:.0} B per session, {} B of it parameters, {:.0} B beyond\n",
                m.pid,
                mib(m.before),
                mib(m.after),
                m.sessions,
                w2::PARAMETER_BYTES,
                per - w2::PARAMETER_BYTES as f64,
            ));
            if let Some(a) = m.after_delete {
                out.push_str(&format!("after deleting them: {:.1} MiB\n", mib(a)));
            }
        }
        if let Some(d) = &self.deleted {
            out.push_str(&format!("\ndeleted {}", plural(d.deleted, "session")));
            if d.failed > 0 {
                out.push_str(&format!(" ({} could not be deleted)", d.failed));
            }
            out.push('\n');
        }
        out
    }

    fn json(&self) -> Value {
        let tally = |t: &Tally| {
            let ms = |d: Duration| (d.as_secs_f64() * 1e3 * 1e4).round() / 1e4;
            json!({
                "requests": t.requests,
                "ok": t.ok,
                "errors": t.errors,
                "first_error": t.first_error.as_ref().map(|(_, m)| m),
                "elapsed_s": t.elapsed.as_secs_f64(),
                "rps": t.rps(),
                "latency_ms": {
                    "p50": ms(t.percentile(0.5)),
                    "p90": ms(t.percentile(0.9)),
                    "p99": ms(t.percentile(0.99)),
                    "max": ms(t.max()),
                    "mean": ms(t.mean()),
                },
            })
        };
        let (total, duration) = match self.stop {
            _ if self.workload == Workload::W3 => (None, None),
            Stop::Total(n) => (Some(n), None),
            Stop::Duration(d) => (None, Some(d.as_secs_f64())),
        };
        let mut out = json!({
            "workload": self.workload.name(),
            "call": self.call_name(),
            "address": self.address,
            "concurrency": self.concurrency,
            "connections": self.connections,
            "sessions": self.sessions,
            "total": total,
            "duration_s": duration,
            "warmup_s": self.warmup.as_secs_f64(),
        });
        if let Some(t) = &self.main {
            out["result"] = tally(t);
        }
        if let Some(t) = &self.health {
            out["health"] = tally(t);
            out["ratio_to_health"] = json!(self.ratio());
        }
        if let Some(t) = &self.floor {
            out["w1_transport_floor"] = tally(t);
        }
        if let Some((per_step, total)) = self.w1_gflops() {
            out["w1"] = json!({
                "flop_per_step": w1::TRAIN_STEP_FLOP,
                "gflops_at_p50": per_step,
                "gflops_all_callers": total,
            });
        }
        if let Some(m) = &self.memory {
            let per = m.per_session();
            out["memory"] = json!({
                "server_pid": m.pid,
                "rss_before_bytes": m.before,
                "rss_after_bytes": m.after,
                "rss_after_delete_bytes": m.after_delete,
                "sessions": m.sessions,
                "bytes_per_session": per,
                "parameter_bytes_per_session": w2::PARAMETER_BYTES,
                "bytes_per_session_beyond_parameters": per - w2::PARAMETER_BYTES as f64,
            });
        }
        if let Some(d) = &self.deleted {
            out["deleted_sessions"] = json!(d.deleted);
            out["undeleted_sessions"] = json!(d.failed);
        }
        out
    }

    /// A run with failed calls exits 1 (after its report), so scripts notice.
    fn verdict(&self) -> Result<(), CliError> {
        let calls = [
            (self.call_name(), self.main.as_ref()),
            ("Health/Check", self.health.as_ref()),
        ];
        for (call, t) in calls {
            let Some(t) = t else { continue };
            if t.failed() > 0 {
                let (code, first) = t
                    .first_error
                    .clone()
                    .unwrap_or((tonic::Code::Unknown, String::new()));
                return Err(CliError::Rpc {
                    call,
                    code,
                    message: format!(
                        "{} of {} calls failed; the first: {first}",
                        t.failed(),
                        t.requests
                    ),
                });
            }
        }
        Ok(())
    }
}
