//! The load loop of `backprop bench`: callers as tokio tasks, each sending one call over
//! and over on its HTTP/2 connection until a shared count or a deadline runs out, timing
//! every call; then the tally (requests/s, latency percentiles, errors by gRPC code).
//!
//! Requests are encoded once, before the clock starts ([`PreEncoded`]): each call then
//! costs the client a reference-count bump and a copy into the frame buffer, not a prost
//! clone and encode per call. That matters on a 2-core machine where the client shares
//! the CPUs with the server: a W1 request is 2.5 MB.
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cli::client::Connection;
use prost::Message;
use prost::bytes::BufMut;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::Bytes;
use tonic::codegen::http::uri::PathAndQuery;

use crate::cli::error::{causes, code_name};
use crate::service::route::{Routed, routed_to};

/// One kind of call: the gRPC method and its request bodies, already encoded. Caller i
/// sends `bodies[i % bodies.len()]` (e.g. one body per session).
#[derive(Clone)]
pub struct Call {
    pub path: PathAndQuery,
    pub bodies: Vec<Bytes>,
    /// The routing header of each body (see `service::route`; empty: none).
    pub routes: Vec<String>,
}

impl Call {
    /// Calls that name no session (health, CreateModel): no routing header.
    pub fn new<M: Message>(path: &'static str, requests: impl IntoIterator<Item = M>) -> Self {
        let bodies: Vec<Bytes> = requests
            .into_iter()
            .map(|m| Bytes::from(m.encode_to_vec()))
            .collect();
        Call {
            path: PathAndQuery::from_static(path),
            routes: vec![String::new(); bodies.len()],
            bodies,
        }
    }

    /// Calls on sessions, each routed on the id its body names, so that a run through a
    /// proxy in front of several replicas reaches each session's replica.
    pub fn routed<M: Message + Routed>(
        path: &'static str,
        requests: impl IntoIterator<Item = M>,
    ) -> Self {
        let (bodies, routes) = requests
            .into_iter()
            .map(|m| {
                let route = m
                    .routed_id()
                    .map_or_else(String::new, |(_, id)| id.to_owned());
                (Bytes::from(m.encode_to_vec()), route)
            })
            .unzip();
        Call {
            path: PathAndQuery::from_static(path),
            bodies,
            routes,
        }
    }
}

/// When a phase ends: after this many calls (all callers together), or at a deadline
/// (calls in flight then still finish and count).
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    Total(u64),
    Duration(Duration),
}

/// Where the callers go: `concurrency` tasks spread round-robin over `channels` (each its
/// own HTTP/2 connection).
pub struct Callers<'a> {
    pub channels: &'a [Connection],
    pub concurrency: usize,
}

/// The outcome of one phase.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    /// Failed calls by gRPC code name (`UNAVAILABLE`, …).
    pub errors: BTreeMap<&'static str, u64>,
    /// The first failure's code and message, to show what went wrong.
    pub first_error: Option<(tonic::Code, String)>,
    /// From the first call sent to the last answer received.
    pub elapsed: Duration,
    /// Every call's latency (failed ones too), sorted.
    pub latencies: Vec<Duration>,
    /// What `keep` picked out of the successful answers (e.g. created model ids).
    pub kept: Vec<String>,
}

impl Tally {
    pub fn failed(&self) -> u64 {
        self.requests - self.ok
    }

    pub fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }

    /// The nearest-rank percentile: the smallest latency with at least fraction `q` of
    /// the calls at or below it. Zero when there were no calls.
    pub fn percentile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = (q * n as f64).ceil() as usize;
        self.latencies[rank.clamp(1, n) - 1]
    }

    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    pub fn mean(&self) -> Duration {
        let n = self.latencies.len() as u32;
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies.iter().sum::<Duration>() / n
    }

    fn merge(&mut self, other: CallerTally) {
        self.requests += other.latencies.len() as u64;
        self.ok += other.ok;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
        self.kept.extend(other.kept);
    }
}

#[derive(Default)]
struct CallerTally {
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    first_error: Option<(tonic::Code, String)>,
    latencies: Vec<Duration>,
    kept: Vec<String>,
}

/// Hands out permission for the next call: a shared ticket counter, or a deadline.
struct Gate {
    stop: Stop,
    issued: AtomicU64,
    deadline: Instant,
}

impl Gate {
    fn next(&self) -> bool {
        match self.stop {
            Stop::Total(total) => self.issued.fetch_add(1, Ordering::Relaxed) < total,
            Stop::Duration(_) => Instant::now() < self.deadline,
        }
    }
}

/// Runs one phase: every caller sends `call` until `stop`, answers decoded as `U`;
/// `keep` picks a string out of each successful answer for [`Tally::kept`].
pub async fn run<U>(
    callers: &Callers<'_>,
    call: &Call,
    stop: Stop,
    keep: fn(U) -> Option<String>,
) -> Tally
where
    U: Message + Default + Send + 'static,
{
    let start = Instant::now();
    let gate = Arc::new(Gate {
        stop,
        issued: AtomicU64::new(0),
        deadline: match stop {
            Stop::Duration(d) => start + d,
            Stop::Total(_) => start,
        },
    });
    // Enough room for the expected calls up front, so pushing a sample never reallocates
    // in the timed loop (a guess for deadline phases; a Vec grows fine past it).
    let reserve = match stop {
        Stop::Total(n) => (n as usize).div_ceil(callers.concurrency.max(1)),
        Stop::Duration(_) => 4096,
    };
    let mut tasks = Vec::with_capacity(callers.concurrency);
    for i in 0..callers.concurrency {
        let channel = callers.channels[i % callers.channels.len()].clone();
        let grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let n = i % call.bodies.len();
        let body = (call.bodies[n].clone(), call.routes[n].clone());
        let path = call.path.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(caller(grpc, path, body, gate, reserve, keep)));
    }
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => tally.merge(t),
            // A caller only panics on a bug here; count it rather than lose the run.
            Err(e) => {
                *tally.errors.entry("CLIENT_PANIC").or_default() += 1;
                tally.requests += 1;
                tally
                    .first_error
                    .get_or_insert((tonic::Code::Internal, e.to_string()));
            }
        }
    }
    tally.elapsed = start.elapsed();
    tally.latencies.sort_unstable();
    tally
}

async fn caller<U>(
    mut grpc: tonic::client::Grpc<Connection>,
    path: PathAndQuery,
    (body, route): (Bytes, String),
    gate: Arc<Gate>,
    reserve: usize,
    keep: fn(U) -> Option<String>,
) -> CallerTally
where
    U: Message + Default + Send + 'static,
{
    let mut t = CallerTally {
        latencies: Vec::with_capacity(reserve),
        ..CallerTally::default()
    };
    while gate.next() {
        let t0 = Instant::now();
        let answer = unary::<U>(&mut grpc, path.clone(), body.clone(), &route).await;
        t.latencies.push(t0.elapsed());
        match answer {
            Ok(answer) => {
                t.ok += 1;
                if let Some(kept) = keep(answer) {
                    t.kept.push(kept);
                }
            }
            Err(status) => {
                *t.errors.entry(code_name(status.code())).or_default() += 1;
                if t.first_error.is_none() {
                    let mut message = status.message().to_string();
                    if let Some(source) = std::error::Error::source(&status) {
                        message = format!("{message}: {}", causes(source));
                    }
                    t.first_error = Some((status.code(), message));
                }
            }
        }
    }
    t
}

async fn unary<U>(
    grpc: &mut tonic::client::Grpc<Connection>,
    path: PathAndQuery,
    body: Bytes,
    route: &str,
) -> Result<U, Status>
where
    U: Message + Default + Send + 'static,
{
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
    let codec = PreEncoded::<U>(PhantomData);
    grpc.unary(routed_to(body, route), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// A codec that sends bytes already encoded as protobuf and decodes the answer with prost.
struct PreEncoded<U>(PhantomData<U>);

impl<U: Message + Default + Send + 'static> Codec for PreEncoded<U> {
    type Encode = Bytes;
    type Decode = U;
    type Encoder = BytesEncoder;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(ms: &[u64]) -> Tally {
        Tally {
            latencies: ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            ..Tally::default()
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let t = tally(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let ms = |q| t.percentile(q).as_millis();
        assert_eq!((ms(0.5), ms(0.9), ms(0.99), ms(1.0)), (5, 9, 10, 10));
        assert_eq!(ms(0.0), 1);
        assert_eq!(t.max().as_millis(), 10);
        assert_eq!(tally(&[]).percentile(0.5), Duration::ZERO);
    }
}
