//! The training-over-the-network workloads of bench/README.md, each measured side by
//! side with its reference in one run (ratios, not absolute times, are the figures):
//!
//! - `w6-stream`: W2's model trained by one client over one TrainStream, its steps/s
//!   against the same server's health Check rps at 50 callers; then W1's model by
//!   TrainStream, pipelined, its time per step against the W1 step in this process.
//! - `w5-fit`: a 10,000 × 3072 f32 dataset (123 MB of blobs) uploaded once, its
//!   throughput against raw loopback TCP moving the same bytes; W1 by Fit (batch 200)
//!   against the same steps in this process; W2 Forward's p99 at 50 callers without and
//!   with a W1 fit running on the server.
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

use super::load::{self, Call, Callers, Stop, Tally};
use super::workload::{self, w1, w2};
use crate::cli::client::{self, Connection};
use crate::cli::error::CliError;
use crate::engine::rng::Rng;
use crate::model::{
    ActivationSpec, DType, HiddenSpec, InitSpec, LossSpec, Model, ModelSpec, OptimizerSpec, Sgd,
};
use crate::pb;
use crate::pb::dataset::{DEFAULT_CHUNK_BYTES, Rows, upload_chunks};
use crate::service::route::{routed, routed_to};

/// Rows of W5's dataset.
pub const W5_ROWS: usize = 10_000;
/// Steps each in-process reference takes (after one warm-up step).
const REFERENCE_STEPS: usize = 30;

/// The figures of one run, as text lines and JSON.
#[derive(Default)]
pub struct Figures {
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
}

impl Figures {
    fn put(&mut self, key: &str, value: Value, line: String) {
        self.json.insert(key.into(), value);
        self.lines.push(line);
    }

    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }

    pub fn json(&self) -> Value {
        Value::Object(self.json.clone())
    }
}

fn trainer(c: &Connection) -> pb::trainer_client::TrainerClient<Connection> {
    client::trainer(c.clone())
}

async fn create(c: &Connection, spec: pb::ModelSpec) -> Result<String, CliError> {
    Ok(trainer(c)
        .create_model(pb::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .map_err(CliError::rpc("CreateModel"))?
        .into_inner()
        .model_id)
}

async fn delete(c: &Connection, id: String) {
    let _ = trainer(c)
        .delete_model(routed(pb::DeleteModelRequest { model_id: id }))
        .await;
}

/// Sends `n` copies of `batch` on one TrainStream without waiting; the time from the
/// first send to the last answer, and the answers that were errors.
async fn stream_steps(
    c: &Connection,
    id: &str,
    batch: &workload::Batch,
    n: u64,
) -> Result<(Duration, u64), CliError> {
    let first = pb::TrainStreamRequest {
        model_id: id.to_string(),
        sequence: 0,
        x: Some(batch.x.clone()),
        labels: batch.labels.clone(),
        learning_rate: None,
    };
    let rest = first.clone();
    let route = first.model_id.clone();
    let requests = tokio_stream::iter((0..n).map(move |i| {
        let mut m = if i == 0 { first.clone() } else { rest.clone() };
        if i > 0 {
            m.model_id.clear();
        }
        m.sequence = i;
        m
    }));
    let start = Instant::now();
    let mut answers = trainer(c)
        .train_stream(routed_to(requests, &route))
        .await
        .map_err(CliError::rpc("TrainStream"))?
        .into_inner();
    let (mut got, mut errors) = (0u64, 0u64);
    while let Some(a) = answers.next().await {
        let a = a.map_err(CliError::rpc("TrainStream"))?;
        if matches!(a.result, Some(pb::train_stream_response::Result::Error(_))) {
            errors += 1;
        }
        got += 1;
    }
    if got != n {
        return Err(CliError::Usage(format!(
            "TrainStream answered {got} of {n} batches"
        )));
    }
    Ok((start.elapsed(), errors))
}

/// The median time of W1's step in this process, on `batches` in turn.
fn in_process_w1(batches: &[(ndarray::Array2<f32>, Vec<usize>)]) -> Result<Duration, CliError> {
    let mut m = Model::<f32>::new(w1_engine_spec()).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut times = Vec::with_capacity(REFERENCE_STEPS);
    for i in 0..=REFERENCE_STEPS {
        let (x, y) = &batches[i % batches.len()];
        let t = Instant::now();
        m.train_step(x.view(), y)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// [`workload::w1_spec`] as the engine takes it (the same model in this process).
fn w1_engine_spec() -> ModelSpec {
    let relu = HiddenSpec {
        units: w1::H,
        activation: ActivationSpec::Relu,
    };
    ModelSpec {
        loss: LossSpec::Svm { margin: 1.0 },
        l2: 1e-3,
        optimizer: OptimizerSpec::Sgd(Sgd { lr: 1e-3 }),
        init: InitSpec::Gaussian { scale: 1e-2 },
        seed: 0,
        dtype: DType::F32,
        ..ModelSpec::new(w1::D, vec![relu], w1::C)
    }
}

fn w1_batch_arrays() -> Vec<(ndarray::Array2<f32>, Vec<usize>)> {
    let b = workload::w1_batch();
    let x = ndarray::Array2::from_shape_vec((w1::N, w1::D), b.x.values).expect("W1 shape");
    vec![(x, b.labels.iter().map(|&l| l as usize).collect())]
}

pub async fn w6(
    channels: &[Connection],
    health: impl std::future::Future<Output = Tally>,
    steps: u64,
) -> Result<Figures, CliError> {
    let c = &channels[0];
    let mut f = Figures::default();
    // W2 by one stream (a warm-up stream first).
    let id = create(c, workload::w2_spec()).await?;
    let batch = workload::w2_batch();
    stream_steps(c, &id, &batch, steps / 10 + 1).await?;
    let (took, errors) = stream_steps(c, &id, &batch, steps).await?;
    delete(c, id).await;
    let stream_rate = steps as f64 / took.as_secs_f64();
    let health = health.await;
    let ratio = stream_rate / health.rps().max(1e-9);
    f.put(
        "w2_stream",
        json!({"steps": steps, "errors": errors, "seconds": took.as_secs_f64(),
               "steps_per_second": stream_rate}),
        format!("W2 by one TrainStream: {steps} steps in {:.3} s, {stream_rate:.0} steps/s ({errors} refused)", took.as_secs_f64()),
    );
    f.put(
        "w2_health",
        json!({"requests": health.requests, "ok": health.ok, "rps": health.rps()}),
        format!(
            "health Check, 50 callers: {:.0} calls/s ({} of {} OK)",
            health.rps(),
            health.ok,
            health.requests
        ),
    );
    f.put(
        "w2_stream_vs_health",
        json!(ratio),
        format!("ratio: one stream's steps/s = {ratio:.2}× the health Check rps at 50 callers (target ≥ 3)"),
    );

    // W1 by stream, pipelined, against the step in this process.
    let reference = in_process_w1(&w1_batch_arrays())?;
    let id = create(c, workload::w1_spec()).await?;
    let b = workload::w1_batch();
    stream_steps(c, &id, &b, 3).await?;
    let n = REFERENCE_STEPS as u64;
    let (took, errors) = stream_steps(c, &id, &b, n).await?;
    delete(c, id).await;
    let per_step = took / n as u32;
    let ratio = per_step.as_secs_f64() / reference.as_secs_f64();
    f.put(
        "w1_stream",
        json!({"steps": n, "errors": errors, "ms_per_step": per_step.as_secs_f64() * 1e3,
               "in_process_ms": reference.as_secs_f64() * 1e3, "ratio": ratio}),
        format!(
            "W1 by TrainStream: {:.3} ms per step, in process {:.3} ms (median): {ratio:.3}× (target ≤ 1.15)",
            per_step.as_secs_f64() * 1e3,
            reference.as_secs_f64() * 1e3
        ),
    );
    Ok(f)
}

/// W5's dataset: seeded blobs as W1's batches are made, `rows` of them.
fn w5_data(rows: usize) -> (Vec<f32>, Vec<u32>) {
    let b = workload::blobs(rows, w1::D, w1::C, 5);
    (b.x.values, b.labels)
}

/// Moves `bytes` bytes over a loopback TCP connection in 1 MiB writes; the time.
async fn raw_tcp(bytes: usize) -> Result<Duration, CliError> {
    let io = |e: std::io::Error| CliError::Usage(format!("loopback TCP: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        while got < bytes {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<usize, std::io::Error>(got)
    });
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        s.write_all(&chunk[..n]).await.map_err(io)?;
        sent += n;
    }
    s.shutdown().await.map_err(io)?;
    let got = reader
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?
        .map_err(io)?;
    if got != bytes {
        return Err(CliError::Usage(format!(
            "loopback TCP moved {got} of {bytes} bytes"
        )));
    }
    Ok(start.elapsed())
}

/// Runs a fit and reads its events to the end; the wall time from its first progress
/// event's step to its finish, and the steps in it.
async fn run_fit(c: &Connection, req: pb::FitRequest) -> Result<(Duration, u64), CliError> {
    use pb::fit_event::Event;
    let mut events = trainer(c)
        .fit(routed(req))
        .await
        .map_err(CliError::rpc("Fit"))?
        .into_inner();
    let mut first: Option<(Instant, u64)> = None;
    while let Some(e) = events.next().await {
        match e.map_err(CliError::rpc("Fit"))?.event {
            Some(Event::Progress(p)) if first.is_none() => first = Some((Instant::now(), p.step)),
            Some(Event::Finished(f)) => {
                let (t, s) = first.unwrap_or((Instant::now(), f.step));
                if f.reason != pb::FitEnd::Completed as i32
                    && f.reason != pb::FitEnd::MaxSteps as i32
                {
                    return Err(CliError::Usage(format!(
                        "the fit ended {:?}: {:?}",
                        f.reason, f.error
                    )));
                }
                return Ok((t.elapsed(), f.step - s));
            }
            _ => {}
        }
    }
    Err(CliError::Usage("the fit's events ended early".into()))
}

pub async fn w5(
    channels: &[Connection],
    callers: &Callers<'_>,
    measure: Stop,
) -> Result<Figures, CliError> {
    let c = &channels[0];
    let mut f = Figures::default();
    let (x, y) = w5_data(W5_ROWS);
    let bytes = x.len() * 4 + y.len() * 4;

    // Upload throughput against raw loopback TCP of the same bytes.
    let chunks = upload_chunks(Rows::F32(&x), w1::D, &y, "w5", DEFAULT_CHUNK_BYTES);
    let start = Instant::now();
    let info = trainer(c)
        .upload_dataset(tokio_stream::iter(chunks))
        .await
        .map_err(CliError::rpc("UploadDataset"))?
        .into_inner();
    let upload = start.elapsed();
    let tcp = raw_tcp(bytes).await?;
    let mb = bytes as f64 / 1e6;
    let ratio = (mb / upload.as_secs_f64()) / (mb / tcp.as_secs_f64());
    f.put(
        "upload",
        json!({"bytes": bytes, "seconds": upload.as_secs_f64(), "mb_per_second": mb / upload.as_secs_f64(),
               "tcp_seconds": tcp.as_secs_f64(), "tcp_mb_per_second": mb / tcp.as_secs_f64(), "ratio": ratio}),
        format!(
            "upload of {mb:.0} MB: {:.0} MB/s; raw loopback TCP {:.0} MB/s: {ratio:.2}× (target ≥ 0.5)",
            mb / upload.as_secs_f64(),
            mb / tcp.as_secs_f64()
        ),
    );

    // W1 by Fit against the same kind of steps in this process (rows gathered the same
    // way, batch 200).
    let batches: Vec<(ndarray::Array2<f32>, Vec<usize>)> = {
        let mut rng = Rng::new(1);
        (0..4)
            .map(|_| {
                let rows: Vec<usize> = (0..w1::N).map(|_| rng.below(W5_ROWS)).collect();
                let values: Vec<f32> = rows
                    .iter()
                    .flat_map(|&r| x[r * w1::D..(r + 1) * w1::D].to_vec())
                    .collect();
                let xa = ndarray::Array2::from_shape_vec((w1::N, w1::D), values).expect("shape");
                (xa, rows.iter().map(|&r| y[r] as usize).collect())
            })
            .collect()
    };
    let reference = in_process_w1(&batches)?;
    let id = create(c, workload::w1_spec()).await?;
    let fit = |max_steps, detach| pb::FitRequest {
        model_id: id.clone(),
        dataset_id: info.dataset_id.clone(),
        batch_size: w1::N as u32,
        epochs: 0,
        max_steps,
        seed: 1,
        progress_every: 1,
        train_sample: 1,
        detach,
        ..Default::default()
    };
    let (took, steps) = run_fit(c, fit(REFERENCE_STEPS as u64 + 1, false)).await?;
    let per_step = took / steps.max(1) as u32;
    let ratio = per_step.as_secs_f64() / reference.as_secs_f64();
    f.put(
        "w1_fit",
        json!({"steps": steps, "ms_per_step": per_step.as_secs_f64() * 1e3,
               "in_process_ms": reference.as_secs_f64() * 1e3, "ratio": ratio}),
        format!(
            "W1 by Fit: {:.3} ms per step, in process {:.3} ms (median): {ratio:.3}× (target ≤ 1.05)",
            per_step.as_secs_f64() * 1e3,
            reference.as_secs_f64() * 1e3
        ),
    );

    // W2 Forward's p99 at 50 callers, alone and beside a running W1 fit.
    let w2_id = create(c, workload::w2_spec()).await?;
    let b = workload::w2_batch();
    let call = Call::new(
        "/backprop.v1.Trainer/Forward",
        [pb::ForwardRequest {
            model_id: w2_id.clone(),
            x: Some(b.x),
            labels: Vec::new(),
            ..Default::default()
        }],
    );
    load::run::<pb::ForwardResponse>(
        callers,
        &call,
        Stop::Duration(Duration::from_secs(1)),
        |_| None,
    )
    .await;
    let alone = load::run::<pb::ForwardResponse>(callers, &call, measure, |_| None).await;
    let mut events = trainer(c)
        .fit(routed(fit(1_000_000, true)))
        .await
        .map_err(CliError::rpc("Fit"))?
        .into_inner();
    // Measured once the fit is stepping.
    while let Some(e) = events.next().await {
        if matches!(
            e.map_err(CliError::rpc("Fit"))?.event,
            Some(pb::fit_event::Event::Progress(_))
        ) {
            break;
        }
    }
    drop(events);
    let beside = load::run::<pb::ForwardResponse>(callers, &call, measure, |_| None).await;
    let cancelled = trainer(c)
        .cancel_fit(routed(pb::CancelFitRequest {
            model_id: id.clone(),
        }))
        .await
        .map_err(CliError::rpc("CancelFit"))?
        .into_inner();
    let p99 = |t: &Tally| t.percentile(0.99).as_secs_f64() * 1e3;
    let ratio = p99(&beside) / p99(&alone).max(1e-9);
    f.put(
        "w2_forward_beside_fit",
        json!({"alone_p99_ms": p99(&alone), "beside_fit_p99_ms": p99(&beside), "ratio": ratio,
               "alone_rps": alone.rps(), "beside_rps": beside.rps(),
               "fit_steps_meanwhile": cancelled.step, "errors": alone.failed() + beside.failed()}),
        format!(
            "W2 Forward p99, 50 callers: {:.3} ms alone, {:.3} ms beside a W1 fit ({} steps): {ratio:.2}× (target ≤ 2)",
            p99(&alone),
            p99(&beside),
            cancelled.step
        ),
    );
    delete(c, id).await;
    delete(c, w2_id).await;
    let _ = trainer(c)
        .delete_dataset(routed(pb::DeleteDatasetRequest {
            dataset_id: info.dataset_id,
        }))
        .await;
    let _ = w2::N;
    Ok(f)
}
