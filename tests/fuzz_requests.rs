//! Fuzzing the request-to-engine path (issue 7): any panic, hang, unbounded allocation or
//! server-side error code from a client's request is a bug.
//!
//! - `session_calls_*`: proptest strategies build every Trainer request that names a model
//!   (random shapes, value counts, dims, NaN/Inf and overflowing numbers, values vs
//!   values_f64, labels out of range or miscounted, live/deleted/random ids) and send them
//!   to a real server over TCP, so decode → validate → engine → encode all run. Each answer
//!   comes within [`CALL_TIMEOUT`]; its code is OK or a client-error code with a message
//!   (INVALID_ARGUMENT also names its field in a BadRequest detail); an oracle built from
//!   the `.proto`'s contract says which requests must succeed and which must be refused;
//!   a successful answer has the documented shapes, and every number in it is finite when
//!   the inputs were tame; a refused or read-only call leaves the model's whole state
//!   bit-identical (its ExportModel checkpoint, with every optimizer slot and Adam's t,
//!   before and after), and after an accepted update the state equals a mirror: the state
//!   before, updated by the engine alone. Tensors range up to the batch limit and just
//!   over it.
//! - `create_model_*`: random specs (dims 0 to 2³², unknown enum values, NaN, negative and
//!   huge hyper-parameters, options that do not apply), checked against the documented
//!   rules; every created model answers GetModel and Forward, then is deleted.
//! - `raw_bodies_*`: random bytes and mutated valid encodings (truncated, bit flips,
//!   inserted bytes, hostile tensors: huge length prefixes, packed fields claiming 2³¹
//!   elements, wrong wire types, deep groups) as the whole message of every method
//!   (the streaming ones too), plus a message over the size limit and zero or several
//!   messages on a unary method. The server must agree with prost about whether the
//!   bytes decode (an undecodable body is INTERNAL, as gRPC specifies and tonic does; a
//!   decodable one never is).
//! - `tensor_codec_*`: the hand-written `backprop::pb::Tensor` decoder against prost's
//!   derived one on the same bytes, contiguous and split across chunks; the decoder never
//!   allocates much more than the message's own size.
//! - `import_model_*`: exported checkpoints, damaged (bit flips, truncation, hostile header
//!   lengths, metadata, spec JSON and tensor entries, random bytes) and uploaded in
//!   damaged ways (offsets, sizes, checksums, extra, swapped or no chunks). A sound
//!   upload of an unchanged file must restore the fixture's whole state; a refused one
//!   creates no session (ListModels counts, here and for raw CreateModel/ImportModel
//!   bodies); anything imported must hold finite values and train as the engine does or
//!   refuse cleanly. ExportModel is part
//!   of the session calls (chunk sizes, contiguity, checksum, the step in the file).
//!
//! Regression tests pin the bugs found here (each with its input and where it came from).
//!
//! Bounded: a fixed number of cases per property; a new seed every run (printed), so each
//! CI run explores other inputs; no failure-persistence files. Each property asserts its
//! outcome mix (least shares of accepted calls and of each refusal, decodable bodies), so
//! a strategy that stops reaching an outcome fails. The whole file runs in about 15 s in
//! a dev build: `cargo test --test fuzz_requests`. A longer run:
//! `BACKPROP_FUZZ_CASES=20000 cargo test --release --test fuzz_requests`; the same run
//! again: `BACKPROP_FUZZ_SEED=<the printed seed>`. A failure prints the seed and the
//! minimal failing input.
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use backprop::checkpoint;
use backprop::engine::scalar::Scalar;
use backprop::model::{AnyModel, Model};
use backprop::pb;
use backprop::server::Config;
use backprop::service::RequestLimits;
use backprop::session::Limits;
use backprop::with_model;
use common::{Client, TestServer, test_config};
use ndarray::{Array2, ArrayD, IxDyn};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, RngSeed, TestCaseError, TestError, TestRunner,
};
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

// ---------------------------------------------------------------------------------------
// Bounds

/// An answer slower than this is a hang. Every call here takes milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// No single allocation in this process may be this large: the fuzz server's limits keep
/// every legitimate buffer far below it (4 MiB messages, 20k-parameter models), so a bigger
/// one means something reserved room for what a message only claimed to hold.
const MAX_ALLOCATION: usize = 64 << 20;

/// Limits of the fuzz server: small, so that "too big" is reachable by random specs and
/// shapes without spending memory, and every path (accept, refuse) is cheap.
const MAX_PARAMETERS: u64 = 20_000;
const MAX_BATCH_ELEMENTS: usize = 100_000;
const MAX_GRADCHECK_WORK: u64 = 20_000;
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Not configurable: see `service::trainer` (MAX_DIM, MAX_DEPTH) and `model::spec`.
const MAX_DIM: u64 = 1 << 24;
const MAX_DEPTH: usize = 128;
const MAX_PIECES: u32 = 16;

fn fuzz_config() -> Config {
    Config {
        limits: Limits {
            max_parameters: MAX_PARAMETERS,
            ..Limits::default()
        },
        request_limits: RequestLimits {
            max_batch_elements: MAX_BATCH_ELEMENTS,
            max_gradcheck_work: MAX_GRADCHECK_WORK,
        },
        max_message_bytes: MAX_MESSAGE_BYTES,
        ..test_config()
    }
}

/// Codes a client's mistake may get. OUT_OF_RANGE is not among them: the server answers
/// RESOURCE_EXHAUSTED for its size limit and never returns OUT_OF_RANGE itself.
const CLIENT_CODES: [Code; 4] = [
    Code::InvalidArgument,
    Code::NotFound,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
];

// ---------------------------------------------------------------------------------------
// Allocation and panic watch

/// Records the largest allocation requested, process-wide and per thread.
struct Watching;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Set while a test measures an allocation that would be huge if its bug came back
/// (`import_model_does_not_reserve_the_declared_size_up_front`); the process-wide check is
/// off meanwhile, so that the failure is reported there and not in a property running in
/// parallel.
static HUGE_ON_PURPOSE: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD_LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    LARGEST.fetch_max(size, Ordering::Relaxed);
    let _ = THREAD_LARGEST.try_with(|c| c.set(c.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping
// touches only atomics and a const-initialized thread-local `Cell` (no allocation).
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// Panics on the server's threads (its runtime workers and compute pool), which the
/// server may turn into INTERNAL or a reset stream; recorded so the failure says where.
/// Each harness names its runtime's threads `fuzz-server-{n}`; the compute pool's threads
/// (`backprop-compute-*`) cannot be told apart, so their panics go to whichever harness
/// looks first (the INTERNAL they cause fails the right test anyway).
static SERVER_PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
const SERVER_THREAD: &str = "fuzz-server";
/// Panics whose report is printed; the rest are only recorded (shrinking repeats them).
static PRINTED_PANICS: AtomicUsize = AtomicUsize::new(0);

fn watch_server_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            let server = name.starts_with(SERVER_THREAD) || name.starts_with("backprop-compute");
            if server && let Ok(mut p) = SERVER_PANICS.lock() {
                p.push((name.to_string(), info.to_string()));
            }
            if !server || PRINTED_PANICS.fetch_add(1, Ordering::Relaxed) < 3 {
                previous(info);
            }
        }));
    });
}

/// Fails if the harness's server (threads named `threads`) panicked since the last look,
/// or anything allocated absurdly since the start.
fn process_is_sane(threads: &str, what: &str) -> Result<(), TestCaseError> {
    let panics: Vec<String> = match SERVER_PANICS.lock() {
        Ok(mut p) => {
            let (mine, others) = std::mem::take(&mut *p)
                .into_iter()
                .partition(|(name, _)| name == threads || name.starts_with("backprop-compute"));
            *p = others;
            mine.into_iter()
                .map(|(n, info)| format!("{n}: {info}"))
                .collect()
        }
        Err(_) => vec!["the panic record is poisoned".into()],
    };
    prop_assert!(panics.is_empty(), "{what}: the server panicked: {panics:?}");
    let largest = LARGEST.load(Ordering::Relaxed);
    prop_assert!(
        largest <= MAX_ALLOCATION || HUGE_ON_PURPOSE.load(Ordering::Relaxed) > 0,
        "{what}: an allocation of {largest} bytes (limit {MAX_ALLOCATION})"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Runner

/// Outcomes by property, method and code, printed after each property.
static OUTCOMES: Mutex<std::collections::BTreeMap<String, u64>> =
    Mutex::new(std::collections::BTreeMap::new());

fn tally(property: &str, what: &str, outcome: &str) {
    if let Ok(mut o) = OUTCOMES.lock() {
        *o.entry(format!("{property}: {what} {outcome}"))
            .or_default() += 1;
    }
}

fn code_of<T>(r: &Result<T, Status>) -> String {
    r.as_ref()
        .map_or_else(|s| format!("{:?}", s.code()), |_| "Ok".into())
}

/// A number, in decimal or `0x` hex.
fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The run's seed: BACKPROP_FUZZ_SEED if set (to repeat a run), else a new one each run
/// (from the clock), so that every CI run explores other inputs. Printed by [`check`].
fn fuzz_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        env_u64("BACKPROP_FUZZ_SEED").unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            // One splitmix64 round, so that close clock readings give unrelated seeds.
            let mut z = now ^ u64::from(std::process::id()).rotate_left(32);
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    })
}

/// The least share of a property's cases that must end in an outcome: `key` is a tally
/// key without the property's name (e.g. `"any Ok"`), `share` a fraction of the cases.
/// A strategy that stops reaching an outcome (every body undecodable, no update
/// accepted) fails its property instead of passing quietly.
type Share = (&'static str, f64);

/// Below this many cases the shares are not asserted (a quick run with
/// BACKPROP_FUZZ_CASES is too small for them to be stable).
const SHARES_FROM_CASES: u32 = 1000;

/// Runs `test` on `cases` generated values (BACKPROP_FUZZ_CASES overrides) from the run's
/// seed ([`fuzz_seed`]), no persistence files; panics with the minimal input and the seed;
/// then asserts the outcome mix (`shares`).
fn check<S>(
    name: &str,
    cases: u32,
    strategy: S,
    shares: &[Share],
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = env_u64("BACKPROP_FUZZ_CASES").map_or(cases, |n| n as u32);
    let seed = fuzz_seed();
    eprintln!("{name}: seed {seed} (BACKPROP_FUZZ_SEED={seed} repeats this run)");
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let start = std::time::Instant::now();
    match runner.run(&strategy, test) {
        Ok(()) => {
            // Shown with --nocapture: how the cases split, so a strategy that stopped
            // reaching some outcome is noticed.
            let outcomes = OUTCOMES.lock().map(|o| o.clone()).unwrap_or_default();
            let mine: Vec<_> = outcomes
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{name}: ")))
                .collect();
            eprintln!("{name}: {cases} cases in {:.1?}; {mine:?}", start.elapsed());
            if cases >= SHARES_FROM_CASES {
                for &(key, share) in shares {
                    let got = outcomes
                        .get(&format!("{name}: {key}"))
                        .copied()
                        .unwrap_or(0);
                    assert!(
                        got as f64 >= share * cases as f64,
                        "{name}: {key} in {got} of {cases} cases, expected at least {:.1}% \
                         (BACKPROP_FUZZ_SEED={seed})",
                        share * 100.0
                    );
                }
            }
        }
        Err(TestError::Fail(why, input)) => panic!(
            "{name}: {why}\nBACKPROP_FUZZ_SEED={seed} repeats this run; \
             minimal failing input:\n{input:#?}"
        ),
        Err(TestError::Abort(why)) => panic!("{name}: aborted: {why} (BACKPROP_FUZZ_SEED={seed})"),
    }
}

/// A server on its own runtime (named threads, so panics there are attributed), with
/// fixture models.
struct Harness {
    rt: tokio::runtime::Runtime,
    /// Name of the runtime's threads, unique to this harness.
    threads: String,
    srv: Option<TestServer>,
    lives: Arc<Vec<Live>>,
    /// Each fixture's current id: a fixture whose parameters left the tame range is
    /// replaced by a fresh one (see [`Harness::check_model`]).
    ids: Vec<Mutex<String>>,
    /// Each live fixture's whole state as last seen.
    snapshots: Vec<Mutex<Snapshot>>,
    deleted: String,
}

/// A fixture's whole state: its checkpoint file as ExportModel sends it (parameters,
/// every optimizer slot — momentum, RMSProp cache, Adam's m and v —, Adam's t, the step,
/// the id and owner) and the model decoded from it. GetModel shows only parameters and
/// step, so a refused call that moved Adam's t would pass a GetModel comparison.
#[derive(Clone)]
struct Snapshot {
    file: Vec<u8>,
    model: AnyModel,
}

impl Snapshot {
    fn step(&self) -> u64 {
        self.model.step()
    }
}

/// A fixture session: its spec, dims, dtype and parameters (name and shape, in order).
#[derive(Debug, Clone)]
struct Live {
    spec: pb::ModelSpec,
    /// The spec as the server echoes it, every default filled in.
    filled: pb::ModelSpec,
    d: u32,
    c: u32,
    f64: bool,
    params: Vec<(String, Vec<u32>)>,
}

fn hidden(units: u32, activation: pb::Activation) -> pb::HiddenLayer {
    pb::HiddenLayer {
        units,
        activation: activation as i32,
        ..Default::default()
    }
}

/// Four small models covering both dtypes, every optimizer, both losses, biases on and
/// off, and maxout (several parameters per layer).
fn fixture_specs() -> Vec<pb::ModelSpec> {
    let opt = |kind: pb::OptimizerKind, lr: f64| {
        Some(pb::Optimizer {
            kind: kind as i32,
            learning_rate: Some(lr),
            ..Default::default()
        })
    };
    let init = |seed| {
        Some(pb::Init {
            seed,
            ..Default::default()
        })
    };
    vec![
        pb::ModelSpec {
            input_dim: 3,
            hidden: vec![hidden(4, pb::Activation::Relu)],
            num_classes: 3,
            l2: 0.01,
            optimizer: opt(pb::OptimizerKind::Momentum, 0.1),
            init: init(5),
            ..Default::default()
        },
        pb::ModelSpec {
            input_dim: 2,
            hidden: vec![
                pb::HiddenLayer {
                    maxout_pieces: Some(3),
                    ..hidden(3, pb::Activation::Maxout)
                },
                hidden(2, pb::Activation::Tanh),
            ],
            num_classes: 4,
            loss: pb::LossKind::Softmax as i32,
            optimizer: opt(pb::OptimizerKind::Adam, 1e-3),
            init: init(6),
            dtype: pb::Dtype::F64 as i32,
            ..Default::default()
        },
        pb::ModelSpec {
            input_dim: 5,
            num_classes: 2,
            no_bias: true,
            optimizer: opt(pb::OptimizerKind::Rmsprop, 1e-2),
            init: init(7),
            ..Default::default()
        },
        pb::ModelSpec {
            input_dim: 4,
            hidden: vec![
                pb::HiddenLayer {
                    leaky_slope: Some(0.2),
                    ..hidden(2, pb::Activation::LeakyRelu)
                },
                hidden(3, pb::Activation::Elu),
            ],
            num_classes: 2,
            l2: 1e-3,
            optimizer: opt(pb::OptimizerKind::Sgd, 0.05),
            init: init(8),
            dtype: pb::Dtype::F64 as i32,
            ..Default::default()
        },
    ]
}

impl Harness {
    fn start() -> Self {
        Self::start_with(fuzz_config())
    }

    fn start_with(config: Config) -> Self {
        static HARNESSES: AtomicUsize = AtomicUsize::new(0);
        watch_server_panics();
        let threads = format!(
            "{SERVER_THREAD}-{}",
            HARNESSES.fetch_add(1, Ordering::Relaxed)
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(threads.clone())
            .enable_all()
            .build()
            .expect("runtime");
        let (srv, lives, ids, snapshots, deleted) = rt.block_on(async {
            let srv = TestServer::with_config(config).await;
            let mut c = srv.trainer();
            let mut lives = Vec::new();
            let mut ids = Vec::new();
            let mut snapshots = Vec::new();
            for spec in fixture_specs() {
                let (d, k, f64) = (spec.input_dim, spec.num_classes, spec.dtype == 2);
                let (id, created) = common::create(&mut c, spec.clone()).await;
                let snap = common::get_values(&mut c, &id).await;
                let params = snap
                    .parameters
                    .iter()
                    .map(|p| (p.name.clone(), p.shape.clone()))
                    .collect();
                let file = export_of(&mut c, &id)
                    .await
                    .expect("export a fixture")
                    .into_inner();
                let state = snapshot_of(file, "a fixture").expect("a fixture's file");
                ids.push(Mutex::new(id));
                lives.push(Live {
                    spec,
                    filled: created.spec.expect("the echoed spec"),
                    d,
                    c: k,
                    f64,
                    params,
                });
                snapshots.push(Mutex::new(state));
            }
            let (deleted, _) = common::create(&mut c, fixture_specs().remove(0)).await;
            c.delete_model(pb::DeleteModelRequest {
                model_id: deleted.clone(),
            })
            .await
            .expect("DeleteModel");
            (srv, lives, ids, snapshots, deleted)
        });
        Harness {
            rt,
            threads,
            srv: Some(srv),
            lives: Arc::new(lives),
            ids,
            snapshots,
            deleted,
        }
    }

    /// Runs one case; a server panic during it fails it first, whatever else went wrong
    /// (a panic resets the stream, which the body sees as an odd status).
    fn case(
        &self,
        body: impl Future<Output = Result<(), TestCaseError>>,
    ) -> Result<(), TestCaseError> {
        let _ = process_is_sane(&self.threads, "earlier"); // reported by the earlier case
        let result = self.rt.block_on(body);
        process_is_sane(&self.threads, "this case")?;
        result
    }

    /// Fixture `i`'s current id.
    fn id(&self, i: usize) -> String {
        self.ids[i].lock().expect("ids").clone()
    }

    fn ids(&self) -> Vec<String> {
        (0..self.ids.len()).map(|i| self.id(i)).collect()
    }

    fn client(&self) -> Client {
        self.srv.as_ref().expect("server").trainer()
    }

    fn channel(&self) -> tonic::transport::Channel {
        self.srv.as_ref().expect("server").channel.clone()
    }

    /// Health still answers SERVING.
    async fn healthy(&self, what: &str) -> Result<(), TestCaseError> {
        let mut h = self.srv.as_ref().expect("server").health();
        let r = within(
            &format!("{what}: health"),
            h.check(HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await?;
        match r {
            Ok(r) => prop_assert_eq!(r.status, ServingStatus::Serving as i32),
            Err(s) => return Err(fail(format!("{what}: health check failed: {s:?}"))),
        }
        process_is_sane(&self.threads, what)
    }

    /// The fixture's whole state (its exported file, bit for bit) is exactly as last
    /// seen, or (`update`) what the engine gives when it applies the same update to the
    /// state last seen (a mirror: parameters, optimizer slots, Adam's t and the step, all
    /// compared); it holds finite values (the file decodes); remembers it. A fixture whose
    /// parameters have grown beyond [`TAME_PARAMETERS`] (accepted updates with huge
    /// gradients do that) is replaced by a fresh one, so that the oracle's "must accept"
    /// stays true of tame requests.
    async fn check_model(
        &self,
        i: usize,
        update: Option<&Call>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        let mut c = self.client();
        let id = self.id(i);
        let file = within(what, export_of(&mut c, &id))
            .await?
            .map_err(|s| fail(format!("{what}: ExportModel of the fixture failed: {s:?}")))?;
        let now = snapshot_of(file, what)?;
        let before = std::mem::replace(
            &mut *self.snapshots[i].lock().expect("snapshot"),
            now.clone(),
        );
        // The snapshot is now what the server holds, even if the checks below fail: the
        // shrinking that follows a failure then fails only on calls that change it again.
        match update {
            None => prop_assert!(
                now.file == before.file,
                "{what}: the model's state changed (its checkpoint differs)\n{}",
                differences(&before.model, &now.model)
            ),
            Some(call) => {
                let mut mirror = before.model.clone();
                with_model!(&mut mirror, m => mirror_update(m, call)).map_err(|e| {
                    fail(format!("{what}: accepted, but the engine refuses it: {e}"))
                })?;
                prop_assert!(
                    now.model == mirror,
                    "{what}: the accepted update is not the engine's\n{}",
                    differences(&mirror, &now.model)
                );
            }
        }
        let tame = with_model!(&now.model, m => m.net().params().iter().all(|p| {
            p.value.iter().all(|v| v.as_f64().abs() <= TAME_PARAMETERS)
        }));
        if !tame {
            tally("session calls", "fixture", "replaced");
            self.replace(i).await?;
        }
        Ok(())
    }

    /// Deletes fixture `i` and creates it again, under a new id.
    async fn replace(&self, i: usize) -> Result<(), TestCaseError> {
        let mut c = self.client();
        let old = self.id(i);
        within(
            "DeleteModel",
            c.delete_model(pb::DeleteModelRequest { model_id: old }),
        )
        .await?
        .map_err(|s| fail(format!("DeleteModel of a fixture: {s:?}")))?;
        let spec = Some(self.lives[i].spec.clone());
        let new = within(
            "CreateModel",
            c.create_model(pb::CreateModelRequest { spec }),
        )
        .await?
        .map_err(|s| fail(format!("CreateModel of a fixture: {s:?}")))?
        .model_id;
        let file = within("ExportModel", export_of(&mut c, &new))
            .await?
            .map_err(|s| fail(format!("ExportModel of a new fixture: {s:?}")))?;
        *self.snapshots[i].lock().expect("snapshot") = snapshot_of(file, "a new fixture")?;
        *self.ids[i].lock().expect("ids") = new;
        Ok(())
    }

    /// Stops the server; it must stop cleanly.
    fn finish(mut self) {
        let srv = self.srv.take().expect("server");
        self.rt.block_on(async {
            srv.stop_within(Duration::from_secs(10)).await;
        });
        if let Err(e) = process_is_sane(&self.threads, "end") {
            panic!("{e}");
        }
    }
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

/// GetModel with values; a refusal fails the case.
async fn values(
    c: &mut Client,
    id: &str,
    what: &str,
) -> Result<pb::GetModelResponse, TestCaseError> {
    let req = pb::GetModelRequest {
        model_id: id.to_string(),
        include_values: true,
    };
    within(&format!("{what}: GetModel"), c.get_model(req))
        .await?
        .map_err(|s| fail(format!("{what}: GetModel failed: {s:?}")))
}

/// The first parameter holding a NaN or an infinity, if any.
fn non_finite(m: &pb::GetModelResponse) -> Option<&pb::ParameterInfo> {
    m.parameters.iter().find(|p| {
        p.value.as_ref().is_some_and(|v| {
            v.values.iter().any(|x| !x.is_finite()) || v.values_f64.iter().any(|x| !x.is_finite())
        })
    })
}

/// A model's checkpoint file, by ExportModel (default chunks).
async fn export_of(c: &mut Client, id: &str) -> Result<tonic::Response<Vec<u8>>, Status> {
    let req = pb::ExportModelRequest {
        model_id: id.to_string(),
        chunk_bytes: 0,
    };
    let mut stream = c.export_model(req).await?.into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = stream.message().await? {
        file.extend_from_slice(&chunk.data);
    }
    Ok(tonic::Response::new(file))
}

/// How many sessions ListModels shows.
async fn model_count(c: &mut Client) -> Result<usize, TestCaseError> {
    Ok(
        within("ListModels", c.list_models(pb::ListModelsRequest {}))
            .await?
            .map_err(|s| fail(format!("ListModels failed: {s:?}")))?
            .models
            .len(),
    )
}

/// A file and its decoded model; a file that does not decode (e.g. a non-finite value,
/// which the decoder refuses) fails the case.
fn snapshot_of(file: Vec<u8>, what: &str) -> Result<Snapshot, TestCaseError> {
    let model = checkpoint::decode(&file)
        .map_err(|e| {
            fail(format!(
                "{what}: the exported checkpoint does not decode: {e}"
            ))
        })?
        .model;
    Ok(Snapshot { file, model })
}

/// What differs between two states, for a failure report.
fn differences(want: &AnyModel, got: &AnyModel) -> String {
    format!("expected (or before): {want:?}\ngot: {got:?}")
}

/// A wire tensor's values in the model's dtype, as the contract says they are read:
/// f32 values widened exactly, f64 values rounded to nearest for an f32 model.
fn wire_values<T: Scalar>(t: &pb::Tensor) -> Vec<T> {
    if t.values_f64.is_empty() {
        t.values.iter().map(|&v| T::of(f64::from(v))).collect()
    } else {
        t.values_f64.iter().map(|&v| T::of(v)).collect()
    }
}

/// Applies an accepted update to the mirror with the engine alone.
fn mirror_update<T: Scalar>(m: &mut Model<T>, call: &Call) -> Result<(), String> {
    match call {
        Call::TrainStep(r) => {
            let x = r.x.as_ref().ok_or("no x")?;
            let &[n, d] = &x.shape[..] else {
                return Err(format!("x of shape {:?}", x.shape));
            };
            let x = Array2::from_shape_vec((n as usize, d as usize), wire_values::<T>(x))
                .map_err(|e| e.to_string())?;
            let labels: Vec<usize> = r.labels.iter().map(|&l| l as usize).collect();
            m.train_step(x.view(), &labels)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Call::ApplyGradients(r) => {
            let named = r
                .gradients
                .iter()
                .map(|g| {
                    let t = g.tensor.as_ref().ok_or("a gradient without a tensor")?;
                    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                    ArrayD::from_shape_vec(IxDyn(&shape), wire_values::<T>(t))
                        .map(|a| (g.name.clone(), a))
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, String>>()?;
            m.apply_gradients(named)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        other => Err(format!("{} is not an update", other.name())),
    }
}

/// Awaits a call; no answer within [`CALL_TIMEOUT`] fails the case as a hang.
async fn within<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<Result<T, Status>, TestCaseError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => Ok(r.map(tonic::Response::into_inner)),
        Err(_) => Err(fail(format!(
            "{what}: no answer within {CALL_TIMEOUT:?} (a hang)"
        ))),
    }
}

/// A refusal: a client-error code with a message; INVALID_ARGUMENT names its field in the
/// message and in a BadRequest field violation with a description.
fn check_refusal(what: &str, s: &Status) -> Result<(), TestCaseError> {
    prop_assert!(
        CLIENT_CODES.contains(&s.code()),
        "{what}: {:?} is not a client-error code: {s:?}",
        s.code()
    );
    prop_assert!(!s.message().is_empty(), "{what}: no message: {s:?}");
    if s.code() == Code::InvalidArgument {
        let bad = s
            .get_details_bad_request()
            .ok_or_else(|| fail(format!("{what}: no BadRequest detail in {s:?}")))?;
        prop_assert!(
            !bad.field_violations.is_empty(),
            "{what}: no violation: {s:?}"
        );
        for v in &bad.field_violations {
            prop_assert!(
                !v.field.is_empty() && !v.description.is_empty(),
                "{what}: an empty field violation: {v:?}"
            );
            prop_assert!(
                s.message().contains(&v.field),
                "{what}: message {:?} does not name {:?}",
                s.message(),
                v.field
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Strategies: numbers, tensors, labels

/// Mostly ordinary numbers, sometimes the nasty ones: NaN, ±Inf, ±0, subnormals, values
/// that are finite in f64 but not in f32, the extremes, and any bit pattern.
fn number() -> BoxedStrategy<f64> {
    prop_oneof![
        12 => -3.0f64..3.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(1e39),
        1 => Just(-3.0e38),
        1 => Just(f64::MAX),
        1 => Just(1e-320),
        1 => Just(1e-42),
        1 => any::<f64>(),
    ]
    .boxed()
}

/// A dimension: usually small or the expected one, sometimes 0, 2¹⁶, u32::MAX or any.
fn dim(expected: u32) -> BoxedStrategy<u32> {
    prop_oneof![
        6 => 0u32..=6,
        3 => Just(expected),
        1 => Just(1 << 16),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
    .boxed()
}

/// Which field carries the numbers.
#[derive(Debug, Clone, Copy)]
enum Carrier {
    F32,
    F64,
    Both,
}

/// A tensor meant to be `rows × cols`: usually that shape with the right number of
/// values, sometimes 0 rows, a random shape, a count off by a little or a lot, both
/// value fields, or nasty numbers.
fn tensor(rows: Option<u32>, cols: u32) -> BoxedStrategy<pb::Tensor> {
    // Up to the batch limit, and just over it, with as many values as the shape says: the
    // size-dependent paths (the limit's RESOURCE_EXHAUSTED, TraceStep's 64 rows, the
    // numeric-gradient budget, big buffers through the codec) are reachable.
    let most = (MAX_BATCH_ELEMENTS / cols.max(1) as usize) as u32;
    let rows = match rows {
        Some(n) => Just(n).boxed(),
        None => prop_oneof![
            60 => 1u32..=12,
            6 => 13u32..=200,
            1 => 201u32..=most.max(201),
            1 => Just(most),
            1 => Just(most + 1),
        ]
        .boxed(),
    };
    let shape = prop_oneof![
        8 => rows.prop_map(move |n| vec![n, cols]),
        1 => Just(vec![0, cols]),
        2 => vec(dim(cols), 0..=4),
    ];
    shape
        .prop_flat_map(|shape| {
            let product = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let exact = product
                .filter(|&n| n <= 2 * MAX_BATCH_ELEMENTS as u64)
                .map(|n| n as usize);
            let count = match exact {
                Some(n) => prop_oneof![
                    10 => Just(n),
                    1 => Just(n + 1),
                    1 => Just(n.saturating_sub(1)),
                    1 => 0usize..=40,
                ]
                .boxed(),
                None => (0usize..=40).boxed(),
            };
            let carrier = prop_oneof![
                6 => Just(Carrier::F32),
                6 => Just(Carrier::F64),
                1 => Just(Carrier::Both),
            ];
            (Just(shape), count, carrier)
        })
        .prop_flat_map(|(shape, count, carrier)| {
            let values = if count <= SMALL {
                prop_oneof![
                    4 => vec(-3.0f64..3.0, count),
                    1 => vec(number(), count),
                ]
                .boxed()
            } else {
                (any::<u64>(), any::<bool>())
                    .prop_map(move |(seed, nasty)| many_values(count, seed, nasty))
                    .boxed()
            };
            (Just(shape), Just(carrier), values)
        })
        .prop_map(|(shape, carrier, v)| {
            let f32s = || v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let (values, values_f64) = match carrier {
                Carrier::F32 => (f32s(), vec![]),
                Carrier::F64 => (vec![], v.clone()),
                Carrier::Both => (f32s(), v.clone()),
            };
            pb::Tensor {
                shape,
                values,
                values_f64,
            }
        })
        .boxed()
}

/// Above this many elements a vector is drawn from one seed (see [`many_values`]):
/// proptest's per-element value trees would take hundreds of bytes per element.
const SMALL: usize = 256;

/// splitmix64: the generator behind the big vectors.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` values in [-3, 3) from `seed`; `nasty` puts a NaN, an infinity or an f32
/// overflow at a few places.
fn many_values(count: usize, seed: u64, nasty: bool) -> Vec<f64> {
    let mut state = seed;
    let mut v: Vec<f64> = (0..count)
        .map(|_| (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0)
        .collect();
    if nasty {
        for bad in [f64::NAN, f64::INFINITY, 1e39] {
            let at = (splitmix(&mut state) % count as u64) as usize;
            v[at] = bad;
        }
    }
    v
}

/// Rows of a batch tensor, if it is a matrix.
fn rows_of(x: &Option<pb::Tensor>) -> u32 {
    x.as_ref()
        .filter(|t| t.shape.len() == 2)
        .map_or(2, |t| t.shape[0])
}

/// Labels for `rows` rows of `c` classes: usually right, sometimes out of range, the wrong
/// count, or none.
fn labels(rows: u32, c: u32) -> BoxedStrategy<Vec<u32>> {
    let label = prop_oneof![
        12 => 0..c,
        1 => Just(c),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ];
    let n = rows.min(2 * MAX_BATCH_ELEMENTS as u32) as usize;
    if n > SMALL {
        // Drawn from one seed; sometimes one label out of range, or one short.
        return (any::<u64>(), 0u8..8)
            .prop_map(move |(seed, how)| {
                let mut state = seed;
                let mut l: Vec<u32> = (0..n)
                    .map(|_| (splitmix(&mut state) % c as u64) as u32)
                    .collect();
                match how {
                    0 => l[n / 2] = c,
                    1 => {
                        l.pop();
                    }
                    _ => {}
                }
                l
            })
            .boxed();
    }
    prop_oneof![
        12 => vec(0..c, n),
        2 => vec(label, n),
        1 => vec(0..c, 0..=8),
        1 => Just(vec![]),
    ]
    .boxed()
}

/// A batch X (usually present) and labels to go with it.
fn batch(d: u32, c: u32) -> BoxedStrategy<(Option<pb::Tensor>, Vec<u32>)> {
    prop_oneof![
        14 => tensor(None, d).prop_map(Some),
        1 => Just(None),
    ]
    .prop_flat_map(move |x| {
        let rows = rows_of(&x);
        (Just(x), labels(rows, c))
    })
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Strategies: session calls

/// Whose id a call carries.
#[derive(Debug, Clone)]
enum Target {
    /// A fixture's id.
    Live(usize),
    /// A fixture's id in upper case (the same 128 bits; the server may take it or not).
    Upper(usize),
    /// A model that was deleted.
    Deleted,
    /// Random text or random hex.
    Other(String),
}

impl Target {
    fn fixture(&self) -> Option<usize> {
        match *self {
            Target::Live(i) | Target::Upper(i) => Some(i),
            Target::Deleted | Target::Other(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Call {
    Forward(pb::ForwardRequest),
    Backward(pb::BackwardRequest),
    TrainStep(pb::TrainStepRequest),
    ApplyGradients(pb::ApplyGradientsRequest),
    Evaluate(pb::EvaluateRequest),
    GradientCheck(pb::GradientCheckRequest),
    TraceStep(pb::TraceStepRequest),
    GetModel(pb::GetModelRequest),
    ExportModel(pb::ExportModelRequest),
    /// Only ever with a non-fixture id (deleting a fixture would end the run).
    DeleteModel(pb::DeleteModelRequest),
    ListModels,
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Forward(_) => "Forward",
            Call::Backward(_) => "Backward",
            Call::TrainStep(_) => "TrainStep",
            Call::ApplyGradients(_) => "ApplyGradients",
            Call::Evaluate(_) => "Evaluate",
            Call::GradientCheck(_) => "GradientCheck",
            Call::TraceStep(_) => "TraceStep",
            Call::GetModel(_) => "GetModel",
            Call::ExportModel(_) => "ExportModel",
            Call::DeleteModel(_) => "DeleteModel",
            Call::ListModels => "ListModels",
        }
    }

    fn updates(&self) -> bool {
        matches!(self, Call::TrainStep(_) | Call::ApplyGradients(_))
    }

    /// The id the call names (`None` for ListModels).
    fn model_id(&self) -> Option<&str> {
        Some(match self {
            Call::Forward(r) => &r.model_id,
            Call::Backward(r) => &r.model_id,
            Call::TrainStep(r) => &r.model_id,
            Call::ApplyGradients(r) => &r.model_id,
            Call::Evaluate(r) => &r.model_id,
            Call::GradientCheck(r) => &r.model_id,
            Call::TraceStep(r) => &r.model_id,
            Call::GetModel(r) => &r.model_id,
            Call::ExportModel(r) => &r.model_id,
            Call::DeleteModel(r) => &r.model_id,
            Call::ListModels => return None,
        })
    }

    fn set_id(&mut self, id: String) {
        match self {
            Call::Forward(r) => r.model_id = id,
            Call::Backward(r) => r.model_id = id,
            Call::TrainStep(r) => r.model_id = id,
            Call::ApplyGradients(r) => r.model_id = id,
            Call::Evaluate(r) => r.model_id = id,
            Call::GradientCheck(r) => r.model_id = id,
            Call::TraceStep(r) => r.model_id = id,
            Call::GetModel(r) => r.model_id = id,
            Call::ExportModel(r) => r.model_id = id,
            Call::DeleteModel(r) => r.model_id = id,
            Call::ListModels => {}
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    target: Target,
    call: Call,
}

impl Case {
    /// Puts the target's id into the call: fixture `i` is `ids[i]`.
    fn fill(mut self, ids: &[String], deleted: &str) -> Call {
        let id = match &self.target {
            Target::Live(i) => ids[*i].clone(),
            Target::Upper(i) => ids[*i].to_uppercase(),
            Target::Deleted => deleted.to_string(),
            Target::Other(id) => id.clone(),
        };
        self.call.set_id(id);
        self.call
    }
}

/// Gradients for ApplyGradients: usually one per parameter with its shape; sometimes one
/// missing, repeated, renamed, reshaped, without a tensor, or with nasty numbers.
fn gradients(params: Vec<(String, Vec<u32>)>) -> BoxedStrategy<Vec<pb::NamedTensor>> {
    let names: Vec<String> = params.iter().map(|p| p.0.clone()).collect();
    let one = move |(name, shape): (String, Vec<u32>)| {
        let n = shape.iter().product::<u32>() as usize;
        let other_names = names.clone();
        let name = prop_oneof![
            20 => Just(name),
            1 => proptest::sample::select(other_names),
            1 => "\\PC{0,12}",
        ];
        let tensor = prop_oneof![
            20 => vec(-1.0f64..1.0, n).prop_map({
                let shape = shape.clone();
                move |v| pb::Tensor { shape: shape.clone(), values_f64: v, values: vec![] }
            }),
            20 => vec(-1.0f32..1.0, n).prop_map({
                let shape = shape.clone();
                move |v| pb::Tensor { shape: shape.clone(), values: v, values_f64: vec![] }
            }),
            2 => tensor(shape.first().copied(), shape.get(1).copied().unwrap_or(1)),
            2 => vec(number(), n).prop_map({
                let shape = shape.clone();
                move |v| pb::Tensor { shape: shape.clone(), values_f64: v, values: vec![] }
            }),
        ];
        (
            name,
            prop_oneof![20 => tensor.prop_map(Some), 1 => Just(None)],
        )
            .prop_map(|(name, tensor)| pb::NamedTensor { name, tensor })
    };
    let all: Vec<_> = params.into_iter().map(one).collect();
    (all, any::<u8>(), any::<usize>())
        .prop_map(|(mut g, how, at): (Vec<pb::NamedTensor>, u8, usize)| {
            let k = at % g.len().max(1);
            match how % 16 {
                0 if !g.is_empty() => {
                    g.remove(k);
                }
                1 if !g.is_empty() => {
                    let again = g[k].clone();
                    g.push(again);
                }
                2 => g.reverse(),
                3 => g.clear(),
                _ => {}
            }
            g
        })
        .boxed()
}

/// ExportModel's chunk size: usually the default or small (many chunks), sometimes at
/// or just over what fits in a message, or anything.
fn chunk_bytes() -> BoxedStrategy<u32> {
    let most = (MAX_MESSAGE_BYTES - 1024) as u32;
    prop_oneof![
        4 => Just(0u32),
        2 => 64u32..=2048,
        1 => 1u32..=63,
        1 => Just(most),
        1 => Just(most + 1),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
    .boxed()
}

/// A call on a fixture (by index: its id is filled in when the call is made, see
/// [`Case::fill`]), on a deleted model, or on a random id.
fn case_strategy(lives: Arc<Vec<Live>>) -> BoxedStrategy<Case> {
    let n = lives.len();
    let other_id = prop_oneof![
        Just(String::new()),
        "[0-9a-f]{32}",
        "[0-9a-fA-F ]{30,34}",
        "\\PC{0,40}",
    ];
    let target = prop_oneof![
        16 => (0..n).prop_map(Target::Live),
        1 => (0..n).prop_map(Target::Upper),
        1 => Just(Target::Deleted),
        1 => other_id.prop_map(Target::Other),
    ];
    target
        .prop_flat_map(move |target| {
            let l = lives[target.fixture().unwrap_or(0)].clone();
            let (d, c) = (l.d, l.c);
            let calls = prop_oneof![
                3 => batch(d, c).prop_map(|(x, labels)| Call::Forward(pb::ForwardRequest {
                    model_id: String::new(), x, labels,
                })),
                3 => batch(d, c)
                    .prop_flat_map(move |(x, labels)| {
                        let rows = rows_of(&x);
                        let upstream = prop_oneof![
                            3 => Just(None),
                            2 => tensor(Some(rows), c).prop_map(Some),
                        ];
                        let labels = prop_oneof![2 => Just(labels), 1 => Just(vec![])];
                        (Just(x), labels, upstream, any::<bool>())
                    })
                    .prop_map(|(x, labels, upstream, return_input_grad)| {
                        Call::Backward(pb::BackwardRequest {
                            model_id: String::new(), x, labels, upstream, return_input_grad,
                        })
                    }),
                4 => batch(d, c).prop_map(|(x, labels)| Call::TrainStep(pb::TrainStepRequest {
                    model_id: String::new(), x, labels,
                })),
                3 => gradients(l.params.clone()).prop_map(|gradients| {
                    Call::ApplyGradients(pb::ApplyGradientsRequest { model_id: String::new(), gradients })
                }),
                2 => batch(d, c).prop_map(|(x, labels)| Call::Evaluate(pb::EvaluateRequest {
                    model_id: String::new(), x, labels,
                })),
                2 => (batch(d, c), prop_oneof![Just(0u32), 1u32..=4, Just(u32::MAX), any::<u32>()])
                    .prop_map(|((x, labels), max)| Call::GradientCheck(pb::GradientCheckRequest {
                        model_id: String::new(), x, labels, max_elements_per_parameter: max,
                    })),
                2 => (batch(d, c), any::<bool>()).prop_map(|((x, labels), shapes_only)| {
                    Call::TraceStep(pb::TraceStepRequest { model_id: String::new(), x, labels, shapes_only })
                }),
                1 => chunk_bytes().prop_map(|chunk_bytes| Call::ExportModel(pb::ExportModelRequest {
                    model_id: String::new(), chunk_bytes,
                })),
                1 => any::<bool>().prop_map(|include_values| Call::GetModel(pb::GetModelRequest {
                    model_id: String::new(), include_values,
                })),
                // Deleting a fixture would end the run: ListModels there instead.
                1 => Just(if target.fixture().is_some() {
                    Call::ListModels
                } else {
                    Call::DeleteModel(pb::DeleteModelRequest::default())
                }),
            ];
            (Just(target), calls)
        })
        .prop_map(|(target, call)| Case { target, call })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// The oracle: what the contract says about a request to a live fixture

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Well-formed: must succeed.
    Accept,
    /// Breaks a documented rule: must be refused (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED
    /// when a tensor claims more elements than the server takes).
    Refuse,
    /// Finite but huge numbers, which may overflow in the math: either.
    Either,
}

impl Expect {
    fn and(self, other: Expect) -> Expect {
        match (self, other) {
            (Expect::Refuse, _) | (_, Expect::Refuse) => Expect::Refuse,
            (Expect::Either, _) | (_, Expect::Either) => Expect::Either,
            _ => Expect::Accept,
        }
    }
}

/// Inputs below this in magnitude cannot overflow anything in the fixtures' math, as
/// long as their parameters stay below [`TAME_PARAMETERS`].
const TAME: f64 = 1e3;
const TAME_PARAMETERS: f64 = 1e2;

/// A tensor against its expected shape (`None` = any) and the server's limit on its
/// elements, in the model's dtype.
fn tensor_expect(t: &pb::Tensor, want: &[Option<u32>], f64_model: bool, max: u64) -> Expect {
    if !t.values.is_empty() && !t.values_f64.is_empty() {
        return Expect::Refuse;
    }
    let count = t.values.len().max(t.values_f64.len()) as u128;
    let product: u128 = t.shape.iter().map(|&d| d as u128).product();
    if product != count
        || product > max as u128
        || t.shape.len() != want.len()
        || t.shape
            .iter()
            .zip(want)
            .any(|(&d, w)| d == 0 || w.is_some_and(|w| w != d))
    {
        return Expect::Refuse;
    }
    // The values as the model sees them.
    let converted: Vec<f64> = if f64_model {
        t.values
            .iter()
            .map(|&v| v as f64)
            .chain(t.values_f64.iter().copied())
            .collect()
    } else {
        t.values
            .iter()
            .copied()
            .chain(t.values_f64.iter().map(|&v| v as f32))
            .map(f64::from)
            .collect()
    };
    if converted.iter().any(|v| !v.is_finite()) {
        Expect::Refuse
    } else if converted.iter().any(|v| v.abs() > TAME) {
        Expect::Either
    } else {
        Expect::Accept
    }
}

fn labels_expect(l: &[u32], rows: u32, c: u32) -> Expect {
    if l.len() == rows as usize && l.iter().all(|&v| v < c) {
        Expect::Accept
    } else {
        Expect::Refuse
    }
}

fn x_expect(x: &Option<pb::Tensor>, l: &Live) -> Expect {
    x.as_ref().map_or(Expect::Refuse, |x| {
        tensor_expect(x, &[None, Some(l.d)], l.f64, MAX_BATCH_ELEMENTS as u64)
    })
}

/// Numeric-gradient work as the server estimates it (see `RequestLimits`).
fn gradcheck_work(l: &Live, rows: u32, per: u32) -> u64 {
    let sizes: Vec<u64> = l
        .params
        .iter()
        .map(|p| p.1.iter().map(|&d| d as u64).product())
        .collect();
    let total: u64 = sizes.iter().sum();
    let checks: u64 = sizes
        .iter()
        .map(|&n| if per == 0 { n } else { n.min(per as u64) })
        .sum();
    checks.saturating_mul(rows as u64).saturating_mul(total)
}

fn expect(call: &Call, l: &Live) -> Expect {
    match call {
        Call::Forward(r) => {
            let x = x_expect(&r.x, l);
            if r.labels.is_empty() {
                x
            } else {
                x.and(labels_expect(&r.labels, rows_of(&r.x), l.c))
            }
        }
        Call::Backward(r) => {
            let rows = rows_of(&r.x);
            let target = match (r.labels.is_empty(), &r.upstream) {
                (false, None) => labels_expect(&r.labels, rows, l.c),
                (true, Some(up)) => tensor_expect(
                    up,
                    &[Some(rows), Some(l.c)],
                    l.f64,
                    MAX_BATCH_ELEMENTS as u64,
                ),
                _ => Expect::Refuse,
            };
            x_expect(&r.x, l).and(target)
        }
        Call::TrainStep(r) => x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c)),
        Call::Evaluate(r) => x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c)),
        Call::GradientCheck(r) => {
            let e = x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c));
            if e != Expect::Refuse
                && gradcheck_work(l, rows_of(&r.x), r.max_elements_per_parameter)
                    > MAX_GRADCHECK_WORK
            {
                Expect::Refuse
            } else {
                e
            }
        }
        // With values a trace takes at most 64 rows; the fixtures are small, so every
        // node of such a trace fits the with-values limit on elements.
        Call::TraceStep(r) => {
            let e = x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c));
            if !r.shapes_only && rows_of(&r.x) > 64 {
                Expect::Refuse
            } else {
                e
            }
        }
        Call::ApplyGradients(r) => {
            let mut seen = vec![false; l.params.len()];
            let mut e = Expect::Accept;
            for g in &r.gradients {
                let Some(i) = l.params.iter().position(|p| p.0 == g.name) else {
                    return Expect::Refuse;
                };
                if std::mem::replace(&mut seen[i], true) {
                    return Expect::Refuse;
                }
                let want: Vec<Option<u32>> = l.params[i].1.iter().map(|&d| Some(d)).collect();
                e = e.and(g.tensor.as_ref().map_or(Expect::Refuse, |t| {
                    tensor_expect(t, &want, l.f64, MAX_PARAMETERS)
                }));
            }
            if seen.iter().all(|&s| s) {
                e
            } else {
                Expect::Refuse
            }
        }
        Call::GetModel(_) | Call::ListModels => Expect::Accept,
        Call::ExportModel(r) if r.chunk_bytes as usize <= MAX_MESSAGE_BYTES - 1024 => {
            Expect::Accept
        }
        Call::ExportModel(_) => Expect::Refuse,
        Call::DeleteModel(_) => Expect::Refuse,
    }
}

/// Whether some tensor of the request claims more elements than the server takes for it
/// (a batch: the batch limit; a gradient: the parameter limit).
fn claims_too_much(call: &Call) -> bool {
    let over = |t: &Option<pb::Tensor>, max: usize| {
        t.as_ref()
            .is_some_and(|t| t.shape.iter().map(|&d| d as u128).product::<u128>() > max as u128)
    };
    let big = |t: &Option<pb::Tensor>| over(t, MAX_BATCH_ELEMENTS);
    match call {
        Call::Forward(r) => big(&r.x),
        Call::Backward(r) => big(&r.x) || big(&r.upstream),
        Call::TrainStep(r) => big(&r.x),
        Call::Evaluate(r) => big(&r.x),
        Call::GradientCheck(r) => big(&r.x),
        Call::TraceStep(r) => big(&r.x),
        Call::ApplyGradients(r) => r
            .gradients
            .iter()
            .any(|g| over(&g.tensor, MAX_PARAMETERS as usize)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Sending a call and checking what came back

#[derive(Debug)]
enum Reply {
    Forward(pb::ForwardResponse),
    Backward(pb::BackwardResponse),
    TrainStep(pb::TrainStepResponse),
    ApplyGradients(pb::ApplyGradientsResponse),
    Evaluate(pb::EvaluateResponse),
    GradientCheck(pb::GradientCheckResponse),
    TraceStep(pb::TraceStepResponse),
    GetModel(pb::GetModelResponse),
    ExportModel(Vec<pb::CheckpointChunk>),
    DeleteModel,
    ListModels(pb::ListModelsResponse),
}

async fn send(c: &mut Client, call: &Call) -> Result<Result<Reply, Status>, TestCaseError> {
    let what = call.name();
    Ok(match call.clone() {
        Call::Forward(r) => within(what, c.forward(r)).await?.map(Reply::Forward),
        Call::Backward(r) => within(what, c.backward(r)).await?.map(Reply::Backward),
        Call::TrainStep(r) => within(what, c.train_step(r)).await?.map(Reply::TrainStep),
        Call::ApplyGradients(r) => within(what, c.apply_gradients(r))
            .await?
            .map(Reply::ApplyGradients),
        Call::Evaluate(r) => within(what, c.evaluate(r)).await?.map(Reply::Evaluate),
        Call::GradientCheck(r) => within(what, c.gradient_check(r))
            .await?
            .map(Reply::GradientCheck),
        Call::TraceStep(r) => within(what, c.trace_step(r)).await?.map(Reply::TraceStep),
        Call::GetModel(r) => within(what, c.get_model(r)).await?.map(Reply::GetModel),
        Call::DeleteModel(r) => within(what, c.delete_model(r))
            .await?
            .map(|_| Reply::DeleteModel),
        Call::ExportModel(r) => export(c, r).await?.map(Reply::ExportModel),
        Call::ListModels => within(what, c.list_models(pb::ListModelsRequest {}))
            .await?
            .map(Reply::ListModels),
    })
}

/// A tensor the server sent for the fixture: the model's dtype field only, `shape`, and
/// as many values as the shape says.
fn check_out_tensor(
    what: &str,
    t: &Option<pb::Tensor>,
    shape: &[u32],
    l: &Live,
) -> Result<(), TestCaseError> {
    let t = t.as_ref().ok_or_else(|| fail(format!("{what}: missing")))?;
    prop_assert_eq!(&t.shape[..], shape, "{}: shape", what);
    let n: usize = shape.iter().map(|&d| d as usize).product();
    if l.f64 {
        prop_assert!(
            t.values.is_empty() && t.values_f64.len() == n,
            "{what}: {t:?}"
        );
    } else {
        prop_assert!(
            t.values_f64.is_empty() && t.values.len() == n,
            "{what}: {t:?}"
        );
    }
    Ok(())
}

fn check_losses(what: &str, l: &Option<pb::Losses>, with_data: bool) -> Result<(), TestCaseError> {
    let l = l
        .as_ref()
        .ok_or_else(|| fail(format!("{what}: no losses")))?;
    prop_assert_eq!(
        l.data_loss.is_some(),
        with_data,
        "{}: data_loss {:?}",
        what,
        l
    );
    // The total is data + reg: absent with the data loss (an upstream gradient).
    prop_assert_eq!(
        l.total_loss.is_some(),
        with_data,
        "{}: total_loss {:?}",
        what,
        l
    );
    Ok(())
}

fn in_unit(what: &str, a: f64) -> Result<(), TestCaseError> {
    prop_assert!((0.0..=1.0).contains(&a), "{what}: accuracy {a}");
    Ok(())
}

/// Every number in the answer is finite: for tame inputs (what the oracle accepts), a
/// NaN or an infinity in an OK answer is a bug, not a result.
fn finite_reply(reply: &Reply) -> Result<(), TestCaseError> {
    fn tensor(what: &str, t: &Option<pb::Tensor>) -> Result<(), TestCaseError> {
        if let Some(t) = t {
            let bad = t
                .values
                .iter()
                .map(|&v| f64::from(v))
                .chain(t.values_f64.iter().copied());
            if let Some((k, v)) = bad.enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(fail(format!(
                    "{what}[{k}] = {v} in an OK answer to tame inputs"
                )));
            }
        }
        Ok(())
    }
    fn number(what: &str, v: f64) -> Result<(), TestCaseError> {
        prop_assert!(v.is_finite(), "{what} = {v} in an OK answer to tame inputs");
        Ok(())
    }
    fn losses(what: &str, l: &Option<pb::Losses>) -> Result<(), TestCaseError> {
        if let Some(l) = l {
            for v in [l.data_loss, Some(l.reg_loss), l.total_loss]
                .into_iter()
                .flatten()
            {
                number(&format!("{what} losses"), v)?;
            }
        }
        Ok(())
    }
    match reply {
        Reply::Forward(r) => {
            tensor("Forward scores", &r.scores)?;
            losses("Forward", &r.losses)?;
            r.accuracy
                .map_or(Ok(()), |a| number("Forward accuracy", a))?;
        }
        Reply::Backward(r) => {
            losses("Backward", &r.losses)?;
            for g in &r.gradients {
                tensor(&format!("Backward {}", g.name), &g.tensor)?;
            }
            tensor("Backward dX", &r.input_grad)?;
        }
        Reply::TrainStep(r) => {
            losses("TrainStep", &r.losses)?;
            number("TrainStep accuracy", r.accuracy)?;
        }
        Reply::Evaluate(r) => {
            losses("Evaluate", &r.losses)?;
            number("Evaluate accuracy", r.accuracy)?;
        }
        Reply::GradientCheck(r) => {
            number("GradientCheck max_relative_error", r.max_relative_error)?;
            for e in &r.errors {
                number(&format!("GradientCheck {}", e.name), e.max_relative_error)?;
            }
        }
        Reply::TraceStep(r) => {
            losses("TraceStep", &r.losses)?;
            for n in &r.nodes {
                tensor(&format!("TraceStep node {} value", n.id), &n.value)?;
                tensor(&format!("TraceStep node {} grad", n.id), &n.grad)?;
                for e in &n.edges {
                    tensor(
                        &format!("TraceStep node {} local_grad", n.id),
                        &e.local_grad,
                    )?;
                    tensor(
                        &format!("TraceStep node {} downstream", n.id),
                        &e.downstream,
                    )?;
                }
            }
        }
        Reply::GetModel(r) => {
            for p in &r.parameters {
                tensor(&format!("GetModel {}", p.name), &p.value)?;
            }
        }
        Reply::ApplyGradients(_)
        | Reply::ExportModel(_)
        | Reply::DeleteModel
        | Reply::ListModels(_) => {}
    }
    Ok(())
}

/// What a successful answer must hold, for the fixture `l` and the request that asked.
fn check_success(
    call: &Call,
    reply: &Reply,
    l: &Live,
    id: &str,
    step_before: u64,
) -> Result<(), TestCaseError> {
    let what = call.name();
    let names: Vec<&str> = l.params.iter().map(|p| p.0.as_str()).collect();
    match (call, reply) {
        (Call::Forward(q), Reply::Forward(r)) => {
            let n = rows_of(&q.x);
            check_out_tensor("Forward scores", &r.scores, &[n, l.c], l)?;
            prop_assert_eq!(r.predictions.len(), n as usize);
            let scores = r.scores.as_ref().expect("checked");
            let row = |i: usize| -> Vec<f64> {
                let c = l.c as usize;
                if l.f64 {
                    scores.values_f64[i * c..(i + 1) * c].to_vec()
                } else {
                    scores.values[i * c..(i + 1) * c]
                        .iter()
                        .map(|&v| v as f64)
                        .collect()
                }
            };
            for (i, &p) in r.predictions.iter().enumerate() {
                prop_assert!(p < l.c, "prediction {p} of {} classes", l.c);
                let s = row(i);
                // The first index of the largest score (NaN never wins).
                let best = s
                    .iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(bi, bv), (j, &v)| {
                        if v > bv { (j, v) } else { (bi, bv) }
                    })
                    .0;
                prop_assert_eq!(p as usize, best, "Forward prediction of row {} {:?}", i, s);
            }
            if q.labels.is_empty() {
                prop_assert!(r.losses.is_none() && r.accuracy.is_none(), "{what}: {r:?}");
            } else {
                check_losses(what, &r.losses, true)?;
                in_unit(
                    what,
                    r.accuracy.ok_or_else(|| fail("Forward: no accuracy"))?,
                )?;
            }
        }
        (Call::Backward(q), Reply::Backward(r)) => {
            check_losses(what, &r.losses, !q.labels.is_empty())?;
            let got: Vec<&str> = r.gradients.iter().map(|g| g.name.as_str()).collect();
            prop_assert_eq!(&got, &names, "Backward gradient names");
            for (g, p) in r.gradients.iter().zip(&l.params) {
                check_out_tensor(&format!("Backward {}", p.0), &g.tensor, &p.1, l)?;
            }
            if q.return_input_grad {
                check_out_tensor("Backward dX", &r.input_grad, &[rows_of(&q.x), l.d], l)?;
            } else {
                prop_assert!(r.input_grad.is_none(), "dX was not asked for");
            }
        }
        (Call::TrainStep(_), Reply::TrainStep(r)) => {
            check_losses(what, &r.losses, true)?;
            in_unit(what, r.accuracy)?;
            prop_assert_eq!(r.step, step_before + 1, "TrainStep step");
        }
        (Call::ApplyGradients(_), Reply::ApplyGradients(r)) => {
            prop_assert_eq!(r.step, step_before + 1, "ApplyGradients step");
        }
        (Call::Evaluate(q), Reply::Evaluate(r)) => {
            check_losses(what, &r.losses, true)?;
            in_unit(what, r.accuracy)?;
            prop_assert_eq!(r.num_examples, rows_of(&q.x) as u64);
        }
        (Call::GradientCheck(q), Reply::GradientCheck(r)) => {
            let got: Vec<&str> = r.errors.iter().map(|e| e.name.as_str()).collect();
            prop_assert_eq!(&got, &names, "GradientCheck names");
            let per = q.max_elements_per_parameter as u64;
            for (e, p) in r.errors.iter().zip(&l.params) {
                let n: u64 = p.1.iter().map(|&d| d as u64).product();
                let want = if per == 0 { n } else { n.min(per) };
                prop_assert_eq!(e.elements_checked, want, "{} elements checked", p.0);
                prop_assert!(
                    e.worst_element.is_some_and(|k| k < n),
                    "{}: worst element {:?} of {}",
                    p.0,
                    e.worst_element,
                    n
                );
            }
        }
        (Call::TraceStep(q), Reply::TraceStep(r)) => {
            prop_assert!(!r.nodes.is_empty(), "an empty trace");
            prop_assert_eq!(r.with_values, !q.shapes_only);
            for (i, node) in r.nodes.iter().enumerate() {
                prop_assert_eq!(node.id as usize, i, "node order");
                prop_assert!(
                    node.inputs.iter().all(|&j| j < node.id),
                    "{node:?}: not topological"
                );
                prop_assert_eq!(node.value.is_some(), r.with_values, "node {} value", i);
            }
            prop_assert!(
                (r.loss_node as usize) < r.nodes.len() && (r.scores_node as usize) < r.nodes.len()
            );
        }
        (Call::ExportModel(q), Reply::ExportModel(chunks)) => {
            // Below the floor the server raises the chunk size to it.
            let most = match q.chunk_bytes {
                0 => 1 << 20,
                n => (n as usize).max(backprop::service::checkpoint::MIN_CHUNK_BYTES),
            };
            let first = chunks
                .first()
                .ok_or_else(|| fail("ExportModel sent no chunk"))?;
            let mut file = Vec::new();
            for c in chunks {
                prop_assert_eq!(c.offset, file.len() as u64, "ExportModel chunk offsets");
                prop_assert!(
                    c.data.len() <= most && !c.data.is_empty(),
                    "a chunk of {} bytes",
                    c.data.len()
                );
                prop_assert!(c.total_bytes == 0 || c.total_bytes == first.total_bytes);
                file.extend_from_slice(&c.data);
            }
            prop_assert_eq!(
                file.len() as u64,
                first.total_bytes,
                "ExportModel total_bytes"
            );
            prop_assert_eq!(&first.sha256, &sha256_hex(&file), "ExportModel sha256");
            let (header, _) = split_file(&file);
            let meta = &header["__metadata__"];
            let step = step_before.to_string();
            prop_assert_eq!(meta["step"].as_str(), Some(step.as_str()));
            prop_assert_eq!(meta["format"].as_str(), Some("backprop.checkpoint.v1"));
        }
        (Call::GetModel(q), Reply::GetModel(r)) => {
            prop_assert_eq!(&r.model_id, id);
            let got: Vec<&str> = r.parameters.iter().map(|p| p.name.as_str()).collect();
            prop_assert_eq!(&got, &names, "GetModel names");
            for p in &r.parameters {
                prop_assert_eq!(p.value.is_some(), q.include_values, "{} value", p.name);
            }
        }
        (Call::ListModels, Reply::ListModels(r)) => {
            let me = r
                .models
                .iter()
                .find(|m| m.model_id == id)
                .ok_or_else(|| fail("ListModels does not list a live fixture"))?;
            // The session's mirrored step and count agree with the model's own.
            prop_assert_eq!(me.step, step_before, "ListModels step");
            let n: u64 = l
                .params
                .iter()
                .map(|p| p.1.iter().map(|&d| d as u64).product::<u64>())
                .sum();
            prop_assert_eq!(me.parameter_count, n, "ListModels parameter_count");
            prop_assert_eq!(me.spec.as_ref(), Some(&l.filled), "ListModels spec");
        }
        (call, reply) => return Err(fail(format!("{call:?} answered {reply:?}"))),
    }
    Ok(())
}

fn session_case(h: &Harness, case: Case) -> Result<(), TestCaseError> {
    h.case(async {
        let mut c = h.client();
        let call = case.clone().fill(&h.ids(), &h.deleted);
        let what = call.name();
        let reply = send(&mut c, &call).await?;
        tally("session calls", what, &code_of(&reply));
        tally("session calls", "any", &code_of(&reply));
        match (case.target.fixture(), &reply) {
            // Not a fixture's id: the model cannot be found (ListModels names none).
            (None, Ok(Reply::ListModels(_))) => {}
            (None, Ok(r)) => return Err(fail(format!("{what} on an unknown id answered {r:?}"))),
            (None, Err(s)) => {
                check_refusal(what, s)?;
                // An id of the server's shape (32 hex digits) is looked up and not found;
                // anything else is refused as malformed before any lookup.
                let id = call.model_id().unwrap_or_default();
                let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
                prop_assert_eq!(
                    s.code(),
                    if well_formed {
                        Code::NotFound
                    } else {
                        Code::InvalidArgument
                    },
                    "{} on an unknown id {:?}: {:?}",
                    what,
                    id,
                    s
                );
                prop_assert!(s.message().contains("model_id"), "{what}: {s:?}");
            }
            // The fixture's id in upper case may be refused as unknown.
            (Some(i), Err(s))
                if matches!(case.target, Target::Upper(_)) && s.code() == Code::NotFound =>
            {
                check_refusal(what, s)?;
                h.check_model(i, None, what).await?;
            }
            (Some(i), _) => {
                let l = &h.lives[i];
                let step_before = h.snapshots[i].lock().expect("snapshot").step();
                let expected = expect(&call, l);
                tally(
                    "session calls",
                    &format!("expected {expected:?}, got"),
                    &code_of(&reply),
                );
                match &reply {
                    Ok(r) => {
                        prop_assert!(
                            expected != Expect::Refuse,
                            "{what}: accepted, but the contract says refuse"
                        );
                        check_success(&call, r, l, &h.id(i), step_before)?;
                        if expected == Expect::Accept {
                            finite_reply(r)?;
                        }
                    }
                    Err(s) => {
                        check_refusal(what, s)?;
                        prop_assert!(
                            expected != Expect::Accept,
                            "{what}: a well-formed request refused: {s:?}"
                        );
                        prop_assert!(
                            matches!(s.code(), Code::InvalidArgument | Code::ResourceExhausted),
                            "{what}: {s:?}"
                        );
                        if s.code() == Code::ResourceExhausted {
                            prop_assert!(
                                claims_too_much(&call),
                                "{what}: RESOURCE_EXHAUSTED for a small request: {s:?}"
                            );
                        }
                    }
                }
                let update = (reply.is_ok() && call.updates()).then_some(&call);
                h.check_model(i, update, what).await?;
            }
        }
        h.healthy(what).await
    })
}

#[test]
fn session_calls_answer_with_client_codes_and_leave_models_intact() {
    let h = Harness::start();
    let strategy = case_strategy(h.lives.clone());
    let shares = [
        ("any Ok", 0.2),
        ("expected Accept, got Ok", 0.2),
        ("TrainStep Ok", 0.025),
        ("ApplyGradients Ok", 0.02),
        ("any InvalidArgument", 0.3),
        ("any NotFound", 0.05),
        // Malformed shapes are INVALID_ARGUMENT since admission by cost; what remains is
        // tensors over the size limit (about 0.6% of cases).
        ("any ResourceExhausted", 0.002),
    ];
    check("session calls", 6000, strategy, &shares, |case| {
        session_case(&h, case)
    });
    h.finish();
}

// ---------------------------------------------------------------------------------------
// CreateModel

/// Sometimes set.
fn maybe<T: Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![2 => Just(None), 3 => s.prop_map(Some)].boxed()
}

/// Rarely set (an option that does not apply where it is).
fn rarely<T: Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![15 => Just(None), 1 => s.prop_map(Some)].boxed()
}

/// An enum's wire value: usually one of `0..=max`, sometimes unknown.
fn enum_value(max: i32) -> BoxedStrategy<i32> {
    prop_oneof![
        14 => 0..=max,
        1 => Just(max + 1),
        1 => Just(-1),
        1 => any::<i32>(),
    ]
    .boxed()
}

/// A value meant for [0, 1): usually inside, sometimes 1, ±0 or anything nasty.
fn ratio() -> BoxedStrategy<f64> {
    prop_oneof![8 => 0.0f64..0.999, 1 => Just(1.0), 1 => Just(-0.0), 1 => number()].boxed()
}

/// A value meant to be > 0: usually a sane one, sometimes 0, negative, NaN, subnormal,
/// beyond f32 or beyond everything.
fn positive() -> BoxedStrategy<f64> {
    prop_oneof![
        8 => 1e-4f64..1.0,
        1 => Just(0.0),
        1 => Just(-1.0),
        1 => Just(1e39),
        1 => Just(1e300),
        1 => number(),
    ]
    .boxed()
}

fn units() -> BoxedStrategy<u32> {
    prop_oneof![
        10 => 1u32..=6,
        1 => Just(0),
        1 => Just(1 << 24),
        1 => Just((1 << 24) + 1),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
    .boxed()
}

fn hidden_layer() -> BoxedStrategy<pb::HiddenLayer> {
    (units(), enum_value(7))
        .prop_flat_map(|(units, activation)| {
            let pieces = prop_oneof![
                6 => 2u32..=4,
                1 => Just(0),
                1 => Just(1),
                1 => Just(MAX_PIECES),
                1 => Just(MAX_PIECES + 1),
                1 => Just(u32::MAX),
            ];
            let a = pb::Activation::try_from(activation).ok();
            let leaky_slope = if a == Some(pb::Activation::LeakyRelu) {
                maybe(ratio())
            } else {
                rarely(ratio())
            };
            let elu_alpha = if a == Some(pb::Activation::Elu) {
                maybe(positive())
            } else {
                rarely(positive())
            };
            let maxout_pieces = if a == Some(pb::Activation::Maxout) {
                maybe(pieces)
            } else {
                rarely(pieces)
            };
            (
                Just(units),
                Just(activation),
                leaky_slope,
                elu_alpha,
                maxout_pieces,
            )
        })
        .prop_map(
            |(units, activation, leaky_slope, elu_alpha, maxout_pieces)| pb::HiddenLayer {
                units,
                activation,
                leaky_slope,
                elu_alpha,
                maxout_pieces,
                gelu_approximate: None,
            },
        )
        .boxed()
}

fn optimizer() -> BoxedStrategy<pb::Optimizer> {
    (enum_value(5), any::<bool>())
        .prop_flat_map(|(kind, nesterov)| {
            use pb::OptimizerKind as K;
            let k = K::try_from(kind).ok();
            let pick =
                |applies: bool, s: BoxedStrategy<f64>| if applies { maybe(s) } else { rarely(s) };
            let is = |x: K| k == Some(x);
            (
                Just(kind),
                maybe(positive()),
                pick(is(K::Momentum), ratio()),
                Just(nesterov && (is(K::Momentum) || kind % 7 == 3)),
                pick(is(K::Rmsprop), ratio()),
                pick(is(K::Adam) || is(K::Adamw), ratio()),
                pick(is(K::Adam) || is(K::Adamw), ratio()),
                pick(is(K::Adam) || is(K::Adamw) || is(K::Rmsprop), positive()),
                pick(is(K::Adamw), positive()),
            )
        })
        .prop_map(
            |(
                kind,
                learning_rate,
                momentum,
                nesterov,
                decay_rate,
                beta1,
                beta2,
                epsilon,
                weight_decay,
            )| {
                pb::Optimizer {
                    kind,
                    learning_rate,
                    momentum,
                    nesterov,
                    decay_rate,
                    beta1,
                    beta2,
                    epsilon,
                    weight_decay,
                }
            },
        )
        .boxed()
}

fn init() -> BoxedStrategy<pb::Init> {
    (enum_value(3), any::<u64>())
        .prop_flat_map(|(scheme, seed)| {
            let weight_scale = if scheme == pb::InitScheme::Gaussian as i32 {
                maybe(positive())
            } else {
                rarely(positive())
            };
            (Just(scheme), weight_scale, Just(seed))
        })
        .prop_map(|(scheme, weight_scale, seed)| pb::Init {
            scheme,
            weight_scale,
            seed,
        })
        .boxed()
}

fn model_spec() -> BoxedStrategy<Option<pb::ModelSpec>> {
    let input_dim = prop_oneof![
        10 => 1u32..=8,
        1 => Just(0),
        1 => Just(1 << 24),
        1 => Just((1 << 24) + 1),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ];
    let num_classes = prop_oneof![
        10 => 2u32..=6,
        1 => Just(0),
        1 => Just(1),
        1 => Just(1 << 24),
        1 => any::<u32>(),
    ];
    // Around the depth limit: many one-unit layers.
    let deep =
        (MAX_DEPTH - 1..=MAX_DEPTH + 2).prop_map(|n| vec![hidden(1, pb::Activation::Tanh); n]);
    let hidden_layers = prop_oneof![12 => vec(hidden_layer(), 0..=3), 1 => deep];
    let l2 = prop_oneof![6 => Just(0.0), 3 => 0.0f64..0.1, 1 => number()];
    let spec = (
        (input_dim, hidden_layers, num_classes, any::<bool>()),
        enum_value(2).prop_flat_map(|loss| {
            let margin = if loss == pb::LossKind::Softmax as i32 {
                rarely(positive())
            } else {
                maybe(positive())
            };
            (Just(loss), margin)
        }),
        l2,
        maybe(optimizer()),
        maybe(init()),
        enum_value(2),
    )
        .prop_map(
            |(
                (input_dim, hidden, num_classes, no_bias),
                (loss, svm_margin),
                l2,
                optimizer,
                init,
                dtype,
            )| {
                pb::ModelSpec {
                    input_dim,
                    hidden,
                    num_classes,
                    no_bias,
                    loss,
                    svm_margin,
                    l2,
                    optimizer,
                    init,
                    dtype,
                }
            },
        );
    prop_oneof![30 => spec.prop_map(Some), 1 => Just(None)].boxed()
}

/// The same spec with every rule obeyed: small dims, known enum values, options only where
/// they apply, hyper-parameters in range. What is left random (activations, losses,
/// optimizers, dtypes, which options are set, seeds) must then always be accepted.
fn sanitized(s: Option<pb::ModelSpec>) -> Option<pb::ModelSpec> {
    use pb::{Activation as A, OptimizerKind as K};
    let mut s = s?;
    let pos = |v: &mut Option<f64>| {
        if let Some(x) = v
            && !(*x > 0.0 && *x <= 1e3)
        {
            *x = 0.5;
        }
    };
    let unit = |v: &mut Option<f64>| {
        if let Some(x) = v
            && !(0.0..1.0).contains(x)
        {
            *x = 0.5;
        }
    };
    s.input_dim = 1 + s.input_dim % 8;
    s.num_classes = 2 + s.num_classes % 5;
    s.hidden.truncate(3);
    for h in &mut s.hidden {
        h.units = 1 + h.units % 6;
        h.activation = h.activation.rem_euclid(8);
        let a = A::try_from(h.activation).ok();
        unit(&mut h.leaky_slope);
        pos(&mut h.elu_alpha);
        h.maxout_pieces = h.maxout_pieces.map(|p| 2 + p % 3);
        if a != Some(A::LeakyRelu) {
            h.leaky_slope = None;
        }
        if a != Some(A::Elu) {
            h.elu_alpha = None;
        }
        if a != Some(A::Maxout) {
            h.maxout_pieces = None;
        }
    }
    s.loss = s.loss.rem_euclid(3);
    pos(&mut s.svm_margin);
    if s.loss == pb::LossKind::Softmax as i32 {
        s.svm_margin = None;
    }
    if !(s.l2 >= 0.0 && s.l2 <= 1.0) {
        s.l2 = 0.0;
    }
    if let Some(o) = &mut s.optimizer {
        o.kind = o.kind.rem_euclid(6);
        let k = K::try_from(o.kind).ok();
        pos(&mut o.learning_rate);
        pos(&mut o.epsilon);
        pos(&mut o.weight_decay);
        for v in [
            &mut o.momentum,
            &mut o.decay_rate,
            &mut o.beta1,
            &mut o.beta2,
        ] {
            unit(v);
        }
        if k != Some(K::Momentum) {
            (o.momentum, o.nesterov) = (None, false);
        }
        if k != Some(K::Rmsprop) {
            o.decay_rate = None;
        }
        if !matches!(k, Some(K::Adam | K::Adamw)) {
            (o.beta1, o.beta2) = (None, None);
        }
        if !matches!(k, Some(K::Adam | K::Adamw | K::Rmsprop)) {
            o.epsilon = None;
        }
        if k != Some(K::Adamw) {
            o.weight_decay = None;
        }
    }
    if let Some(i) = &mut s.init {
        i.scheme = i.scheme.rem_euclid(4);
        pos(&mut i.weight_scale);
        if i.scheme != pb::InitScheme::Gaussian as i32 {
            i.weight_scale = None;
        }
    }
    s.dtype = s.dtype.rem_euclid(3);
    Some(s)
}

/// What the contract (the `.proto`'s comments, plus the server's fixed bounds on dims,
/// depth and maxout pieces) says about a spec.
#[derive(Debug, PartialEq)]
enum SpecVerdict {
    /// Valid, with this many parameters (within the fuzz server's limit).
    Valid(u64),
    /// Valid, but more parameters than the server takes: RESOURCE_EXHAUSTED.
    TooBig,
    /// Breaks a rule: INVALID_ARGUMENT.
    Invalid,
}

fn spec_verdict(spec: &Option<pb::ModelSpec>) -> SpecVerdict {
    use pb::{Activation as A, OptimizerKind as K};
    let Some(s) = spec else {
        return SpecVerdict::Invalid;
    };
    let pos = |v: f64| v > 0.0 && v.is_finite();
    let unit = |v: f64| (0.0..1.0).contains(&v);
    let mut ok = s.input_dim >= 1 && s.num_classes >= 2 && s.hidden.len() <= MAX_DEPTH;
    ok &= (s.input_dim as u64) <= MAX_DIM && (s.num_classes as u64) <= MAX_DIM;
    for h in &s.hidden {
        let a = A::try_from(h.activation).ok();
        ok &= a.is_some() && h.units >= 1 && (h.units as u64) <= MAX_DIM;
        ok &= h
            .leaky_slope
            .is_none_or(|v| a == Some(A::LeakyRelu) && unit(v));
        ok &= h.elu_alpha.is_none_or(|v| a == Some(A::Elu) && pos(v));
        ok &= h
            .maxout_pieces
            .is_none_or(|p| a == Some(A::Maxout) && (2..=MAX_PIECES).contains(&p));
    }
    let softmax = s.loss == pb::LossKind::Softmax as i32;
    ok &= (0..=2).contains(&s.loss);
    ok &= s.svm_margin.is_none_or(|m| !softmax && pos(m));
    ok &= s.l2 >= 0.0 && s.l2.is_finite();
    if let Some(o) = &s.optimizer {
        let k = K::try_from(o.kind).ok();
        ok &= k.is_some();
        ok &= o.learning_rate.is_none_or(pos);
        ok &= o.momentum.is_none_or(|v| k == Some(K::Momentum) && unit(v));
        ok &= !o.nesterov || k == Some(K::Momentum);
        ok &= o
            .decay_rate
            .is_none_or(|v| k == Some(K::Rmsprop) && unit(v));
        let adam = matches!(k, Some(K::Adam | K::Adamw));
        ok &= o.beta1.is_none_or(|v| adam && unit(v));
        ok &= o.beta2.is_none_or(|v| adam && unit(v));
        ok &= o
            .epsilon
            .is_none_or(|v| matches!(k, Some(K::Adam | K::Adamw | K::Rmsprop)) && pos(v));
        ok &= o
            .weight_decay
            .is_none_or(|v| k == Some(K::Adamw) && v >= 0.0 && v.is_finite());
    }
    if let Some(i) = &s.init {
        let gaussian = i.scheme == pb::InitScheme::Gaussian as i32;
        ok &= (0..=3).contains(&i.scheme);
        ok &= i.weight_scale.is_none_or(|v| gaussian && pos(v));
    }
    ok &= (0..=2).contains(&s.dtype);
    if !ok {
        return SpecVerdict::Invalid;
    }
    // Parameters: per layer (fan_in·units + units if biased) × pieces.
    let mut fan_in = s.input_dim as u128;
    let mut total = 0u128;
    let layers = s
        .hidden
        .iter()
        .map(|h| {
            (
                h.units as u128,
                if h.activation == A::Maxout as i32 {
                    h.maxout_pieces.unwrap_or(2) as u128
                } else {
                    1
                },
            )
        })
        .chain([(s.num_classes as u128, 1)]);
    for (units, pieces) in layers {
        total += (fan_in * units + if s.no_bias { 0 } else { units }) * pieces;
        fan_in = units;
    }
    if total > u64::MAX as u128 {
        SpecVerdict::Invalid
    } else if total > MAX_PARAMETERS as u128 {
        SpecVerdict::TooBig
    } else {
        SpecVerdict::Valid(total as u64)
    }
}

/// Whether the spec asks for Gaussian weights with a scale so large that some draws may
/// overflow the dtype: then the server may refuse it (INVALID_ARGUMENT on
/// spec.init.weight_scale), depending on the draws; see
/// `create_model_refuses_a_weight_scale_whose_weights_overflow`.
fn huge_scale(s: &pb::ModelSpec) -> bool {
    let limit = if s.dtype == pb::Dtype::F64 as i32 {
        1e300
    } else {
        1e36
    };
    s.init
        .as_ref()
        .and_then(|i| i.weight_scale)
        .is_some_and(|w| w > limit)
}

fn create_case(h: &Harness, spec: Option<pb::ModelSpec>) -> Result<(), TestCaseError> {
    h.case(async {
        let mut c = h.client();
        let verdict = spec_verdict(&spec);
        let r = within(
            "CreateModel",
            c.create_model(pb::CreateModelRequest { spec: spec.clone() }),
        )
        .await?;
        let kind = match verdict {
            SpecVerdict::Valid(_) => "valid",
            SpecVerdict::TooBig => "too big",
            SpecVerdict::Invalid => "invalid",
        };
        tally("CreateModel specs", kind, &code_of(&r));
        tally("CreateModel specs", "any", &code_of(&r));
        let created = match (r, verdict) {
            (Err(s), v) => {
                check_refusal("CreateModel", &s)?;
                let overflowed = matches!(v, SpecVerdict::Valid(_))
                    && spec.as_ref().is_some_and(huge_scale)
                    && s.code() == Code::InvalidArgument
                    && s.message().starts_with("spec.init.weight_scale");
                let want = match v {
                    _ if overflowed => Code::InvalidArgument,
                    SpecVerdict::Valid(_) => Code::Ok,
                    SpecVerdict::TooBig => Code::ResourceExhausted,
                    SpecVerdict::Invalid => Code::InvalidArgument,
                };
                prop_assert_eq!(s.code(), want, "CreateModel: {:?}", s);
                None
            }
            (Ok(r), SpecVerdict::Valid(n)) => Some((r, n)),
            (Ok(r), v) => {
                return Err(fail(format!(
                    "CreateModel: created {r:?}, but the spec is {v:?}"
                )));
            }
        };
        if let Some((r, n)) = created {
            let spec = spec.expect("valid specs are present");
            prop_assert_eq!(r.parameter_count, n, "parameter_count");
            let filled = r.spec.clone().expect("the echoed spec");
            prop_assert!(
                filled.optimizer.is_some()
                    && filled.init.is_some()
                    && filled.loss != 0
                    && filled.dtype != 0,
                "defaults not filled in: {filled:?}"
            );
            prop_assert_eq!(
                (
                    filled.input_dim,
                    filled.num_classes,
                    filled.hidden.len(),
                    filled.no_bias,
                    // -0.0 is proto3's default and never goes on the wire: compare values.
                    filled.l2 + 0.0
                ),
                (
                    spec.input_dim,
                    spec.num_classes,
                    spec.hidden.len(),
                    spec.no_bias,
                    spec.l2 + 0.0
                )
            );
            let id = r.model_id.clone();
            let got = values(&mut c, &id, "a new model").await?;
            prop_assert_eq!(
                got.spec.as_ref(),
                Some(&filled),
                "GetModel spec vs the echoed one"
            );
            prop_assert_eq!(got.step, 0);
            let sizes: u64 = got
                .parameters
                .iter()
                .map(|p| p.shape.iter().map(|&d| d as u64).product::<u64>())
                .sum();
            prop_assert_eq!(sizes, n, "the parameters' sizes");
            let f64 = filled.dtype == pb::Dtype::F64 as i32;
            for p in &got.parameters {
                let v = p.value.as_ref().expect("values");
                prop_assert_eq!(v.values_f64.is_empty(), !f64, "{} dtype field", &p.name);
            }
            if let Some(p) = non_finite(&got) {
                return Err(fail(format!(
                    "{}: a new model holds a non-finite value",
                    p.name
                )));
            }
            // It computes: a 2-row batch gives 2×C scores.
            let d = spec.input_dim as usize;
            let x = pb::Tensor {
                shape: vec![2, spec.input_dim],
                values: (0..2 * d).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect(),
                values_f64: vec![],
            };
            let f = within(
                "Forward",
                c.forward(pb::ForwardRequest {
                    model_id: id.clone(),
                    x: Some(x),
                    labels: vec![],
                }),
            )
            .await?
            .map_err(|s| fail(format!("Forward on a new model: {s:?}")))?;
            let scores = f.scores.expect("scores");
            prop_assert_eq!(scores.shape, vec![2, spec.num_classes]);
            prop_assert_eq!(
                scores.values.len() + scores.values_f64.len(),
                2 * spec.num_classes as usize
            );
            // Deleted once, then gone.
            within(
                "DeleteModel",
                c.delete_model(pb::DeleteModelRequest {
                    model_id: id.clone(),
                }),
            )
            .await?
            .map_err(|s| fail(format!("DeleteModel: {s:?}")))?;
            let again = within(
                "DeleteModel",
                c.delete_model(pb::DeleteModelRequest {
                    model_id: id.clone(),
                }),
            )
            .await?;
            prop_assert_eq!(again.map(|_| ()).map_err(|s| s.code()), Err(Code::NotFound));
            let gone = within(
                "GetModel",
                c.get_model(pb::GetModelRequest {
                    model_id: id,
                    include_values: false,
                }),
            )
            .await?;
            prop_assert_eq!(gone.map(|_| ()).map_err(|s| s.code()), Err(Code::NotFound));
        }
        h.healthy("CreateModel").await
    })
}

#[test]
fn create_model_answers_every_spec_by_the_documented_rules() {
    let h = Harness::start();
    let specs = prop_oneof![2 => model_spec(), 1 => model_spec().prop_map(sanitized)];
    let shares = [("any Ok", 0.2), ("any InvalidArgument", 0.2)];
    check("CreateModel specs", 5000, specs, &shares, |spec| {
        create_case(&h, spec)
    });
    h.finish();
}

// ---------------------------------------------------------------------------------------
// Raw bodies: any bytes as the whole message

/// Sends and receives message bodies as they are, so any bytes reach the server's decoder.
#[derive(Clone, Copy)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("/backprop.v1.Trainer/{method}")).expect("path")
}

/// One unary call with `body` as the whole message.
/// One call with `body` as the whole (single) request message; the answer's messages
/// (one, or ExportModel's chunks).
async fn raw_call(
    h: &Harness,
    method: &str,
    body: Vec<u8>,
) -> Result<Result<Vec<Vec<u8>>, Status>, TestCaseError> {
    let mut g = tonic::client::Grpc::new(h.channel())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let call = async {
        g.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let one = tonic::Request::new(body);
        match method {
            "ExportModel" => {
                let mut stream = g
                    .server_streaming(one, path(method), RawCodec)
                    .await?
                    .into_inner();
                let mut messages = Vec::new();
                while let Some(m) = stream.message().await? {
                    messages.push(m);
                }
                Ok(tonic::Response::new(messages))
            }
            "ImportModel" => {
                let stream = tonic::codegen::tokio_stream::iter(vec![one.into_inner()]);
                let r = g
                    .client_streaming(tonic::Request::new(stream), path(method), RawCodec)
                    .await?;
                Ok(r.map(|m| vec![m]))
            }
            _ => Ok(g.unary(one, path(method), RawCodec).await?.map(|m| vec![m])),
        }
    };
    within(method, call).await
}

/// Bytes, shown as hex in a failing case.
#[derive(Clone, PartialEq)]
struct Hex(Vec<u8>);

impl Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes: ", self.0.len())?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn key(field: u32, wire: u8) -> Vec<u8> {
    varint(((field as u64) << 3) | wire as u64)
}

/// A length-delimited field holding `inner`.
fn ld(field: u32, inner: &[u8]) -> Vec<u8> {
    [key(field, 2), varint(inner.len() as u64), inner.to_vec()].concat()
}

/// What prost derives for the messages that hold a `Tensor`, so the hand-written codec
/// inside `backprop::pb` has an independent oracle.
mod reference {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(uint32, repeated, tag = "1")]
        pub shape: Vec<u32>,
        #[prost(float, repeated, tag = "2")]
        pub values: Vec<f32>,
        #[prost(double, repeated, tag = "3")]
        pub values_f64: Vec<f64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub tensor: Option<Tensor>,
    }
    /// Forward, TrainStep and Evaluate requests (the same three fields).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Batch {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, optional, tag = "2")]
        pub x: Option<Tensor>,
        #[prost(uint32, repeated, tag = "3")]
        pub labels: Vec<u32>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Backward {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, optional, tag = "2")]
        pub x: Option<Tensor>,
        #[prost(uint32, repeated, tag = "3")]
        pub labels: Vec<u32>,
        #[prost(message, optional, tag = "4")]
        pub upstream: Option<Tensor>,
        #[prost(bool, tag = "5")]
        pub return_input_grad: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ApplyGradients {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, repeated, tag = "2")]
        pub gradients: Vec<NamedTensor>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GradientCheck {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, optional, tag = "2")]
        pub x: Option<Tensor>,
        #[prost(uint32, repeated, tag = "3")]
        pub labels: Vec<u32>,
        #[prost(uint32, tag = "4")]
        pub max_elements_per_parameter: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TraceStep {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, optional, tag = "2")]
        pub x: Option<Tensor>,
        #[prost(uint32, repeated, tag = "3")]
        pub labels: Vec<u32>,
        #[prost(bool, tag = "4")]
        pub shapes_only: bool,
    }
}

/// Decodes a body as `method`'s request with `backprop::pb` (hand-written Tensor codec)
/// and with the reference types (prost's derived codec); returns each side's re-encoding
/// (equal inputs encode equally) and the decoded model id.
type Decoded = Result<(Vec<u8>, String), prost::DecodeError>;

fn decode_both(method: &str, b: &[u8]) -> (Decoded, Decoded) {
    fn one<M: Message + Default>(b: &[u8], id: impl Fn(&M) -> String) -> Decoded {
        M::decode(b).map(|m| (m.encode_to_vec(), id(&m)))
    }
    macro_rules! both {
        ($ours:ty, $theirs:ty) => {
            (
                one::<$ours>(b, |m| m.model_id.clone()),
                one::<$theirs>(b, |m| m.model_id.clone()),
            )
        };
    }
    match method {
        "Forward" => both!(pb::ForwardRequest, reference::Batch),
        "TrainStep" => both!(pb::TrainStepRequest, reference::Batch),
        "Evaluate" => both!(pb::EvaluateRequest, reference::Batch),
        "Backward" => both!(pb::BackwardRequest, reference::Backward),
        "ApplyGradients" => both!(pb::ApplyGradientsRequest, reference::ApplyGradients),
        "GradientCheck" => both!(pb::GradientCheckRequest, reference::GradientCheck),
        "TraceStep" => both!(pb::TraceStepRequest, reference::TraceStep),
        // No tensors: the generated type is prost's own on both sides.
        "GetModel" => both!(pb::GetModelRequest, pb::GetModelRequest),
        "ExportModel" => both!(pb::ExportModelRequest, pb::ExportModelRequest),
        "ImportModel" => {
            let d = one::<pb::CheckpointChunk>(b, |_| String::new());
            (d.clone(), d)
        }
        "DeleteModel" => both!(pb::DeleteModelRequest, pb::DeleteModelRequest),
        "CreateModel" => {
            let d = one::<pb::CreateModelRequest>(b, |_| String::new());
            (d.clone(), d)
        }
        "ListModels" => {
            let d = one::<pb::ListModelsRequest>(b, |_| String::new());
            (d.clone(), d)
        }
        other => unreachable!("no method {other}"),
    }
}

/// Whether the response bytes decode as `method`'s response; the created model's id for
/// CreateModel.
fn decode_response(method: &str, b: &[u8]) -> Result<Option<String>, prost::DecodeError> {
    fn ok<M: Message + Default>(b: &[u8]) -> Result<Option<String>, prost::DecodeError> {
        M::decode(b).map(|_| None)
    }
    match method {
        "CreateModel" => pb::CreateModelResponse::decode(b).map(|r| Some(r.model_id)),
        "Forward" => ok::<pb::ForwardResponse>(b),
        "Backward" => ok::<pb::BackwardResponse>(b),
        "TrainStep" => ok::<pb::TrainStepResponse>(b),
        "ApplyGradients" => ok::<pb::ApplyGradientsResponse>(b),
        "Evaluate" => ok::<pb::EvaluateResponse>(b),
        "GetModel" => ok::<pb::GetModelResponse>(b),
        "ListModels" => ok::<pb::ListModelsResponse>(b),
        "DeleteModel" => ok::<pb::DeleteModelResponse>(b),
        "GradientCheck" => ok::<pb::GradientCheckResponse>(b),
        "TraceStep" => ok::<pb::TraceStepResponse>(b),
        "ExportModel" => ok::<pb::CheckpointChunk>(b),
        "ImportModel" => pb::ImportModelResponse::decode(b).map(|r| Some(r.model_id)),
        other => unreachable!("no method {other}"),
    }
}

/// A valid request, encoded, and its method.
fn encoded(call: &Call) -> Vec<u8> {
    match call {
        Call::Forward(r) => r.encode_to_vec(),
        Call::Backward(r) => r.encode_to_vec(),
        Call::TrainStep(r) => r.encode_to_vec(),
        Call::ApplyGradients(r) => r.encode_to_vec(),
        Call::Evaluate(r) => r.encode_to_vec(),
        Call::GradientCheck(r) => r.encode_to_vec(),
        Call::TraceStep(r) => r.encode_to_vec(),
        Call::GetModel(r) => r.encode_to_vec(),
        Call::DeleteModel(r) => r.encode_to_vec(),
        Call::ExportModel(r) => r.encode_to_vec(),
        Call::ListModels => vec![],
    }
}

/// Tensor encodings meant to hurt: packed fields claiming 2³¹ elements or more, overlong
/// varints, lengths that are not whole elements, unpacked elements, wrong and invalid
/// wire types, tag 0 and the largest tag, deep and unbalanced groups, random bytes, and
/// valid encodings; several glued together.
fn hostile_tensor() -> BoxedStrategy<Vec<u8>> {
    let field = prop_oneof![Just(1u32), Just(2), Just(3)];
    let claim = prop_oneof![
        Just(1u64 << 31),
        Just(4u64 << 31),
        Just(1u64 << 33),
        Just(i64::MAX as u64),
        Just(u64::MAX),
        0u64..80,
    ];
    let one = prop_oneof![
        3 => (field.clone(), claim, vec(any::<u8>(), 0..24))
            .prop_map(|(f, c, tail)| [key(f, 2), varint(c), tail].concat()),
        1 => field.clone().prop_map(|f| [key(f, 2), vec![0xff; 10], vec![0x01]].concat()),
        2 => (prop_oneof![Just(2u32), Just(3)], 1usize..=15, any::<u8>())
            .prop_map(|(f, n, b)| [key(f, 2), varint(n as u64), vec![b; n]].concat()),
        2 => (field.clone(), 0usize..20, any::<u64>()).prop_map(|(f, n, v)| {
            let (wire, payload) = match f {
                1 => (0u8, varint(v)),
                2 => (5, (v as u32).to_le_bytes().to_vec()),
                _ => (1, v.to_le_bytes().to_vec()),
            };
            [key(f, wire), payload].concat().repeat(n)
        }),
        2 => (field, 0u8..=7, vec(any::<u8>(), 0..16))
            .prop_map(|(f, w, payload)| [key(f, w), payload].concat()),
        1 => vec(any::<u8>(), 0..4).prop_map(|tail| [vec![0x00], tail].concat()),
        1 => any::<u64>().prop_map(|v| [key((1 << 29) - 1, 0), varint(v)].concat()),
        1 => (4u32..=9, 1usize..=120, any::<bool>()).prop_map(|(f, depth, balanced)| {
            let open = key(f, 3).repeat(depth);
            let close = key(f, 4).repeat(if balanced { depth } else { depth / 2 });
            [open, close].concat()
        }),
        2 => vec(any::<u8>(), 0..48),
        3 => (vec(0u32..6, 0..4), vec(any::<f32>(), 0..12), vec(any::<f64>(), 0..6)).prop_map(
            |(shape, values, values_f64)| {
                reference::Tensor { shape, values, values_f64 }.encode_to_vec()
            }
        ),
    ];
    vec(one, 1..=3).prop_map(|parts| parts.concat()).boxed()
}

/// A change to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipBit(usize, u8),
    Insert(usize, Hex),
    Remove(usize, usize),
    /// A field with any number and wire type, then bytes.
    Append(Hex),
    /// A hostile tensor as the request's tensor (or gradient); merges into the one there.
    HostileTensor(Hex),
    /// A well-formed field appended: still decodable, but with other contents (an unknown
    /// field, skipped; or a valid tensor, merged into the one there, so shape and value
    /// counts change).
    WellFormed(Hex),
}

/// A field that decodes: unknown fields of every wire type (skipped by the decoder), or a
/// valid tensor as field 2 (merged: shapes and values appended).
fn well_formed_field() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => (16u32..2000, any::<u64>()).prop_map(|(f, v)| [key(f, 0), varint(v)].concat()),
        1 => (16u32..2000, any::<u64>()).prop_map(|(f, v)| [key(f, 1), v.to_le_bytes().to_vec()].concat()),
        1 => (16u32..2000, any::<u32>()).prop_map(|(f, v)| [key(f, 5), v.to_le_bytes().to_vec()].concat()),
        2 => (16u32..2000, vec(any::<u8>(), 0..24)).prop_map(|(f, b)| ld(f, &b)),
        3 => (vec(0u32..6, 0..4), vec(-3.0f32..3.0, 0..12), vec(-3.0f64..3.0, 0..6)).prop_map(
            |(shape, values, values_f64)| {
                ld(2, &reference::Tensor { shape, values, values_f64 }.encode_to_vec())
            }
        ),
    ]
    .boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        2 => any::<usize>().prop_map(Mutation::Truncate),
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        1 => (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Mutation::Insert(at, Hex(b))),
        1 => (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Remove(at, n)),
        2 => (1u32..=6, 0u8..=7, prop_oneof![Just(u64::MAX), Just(1u64 << 31), 0u64..300], vec(any::<u8>(), 0..12))
            .prop_map(|(f, w, v, tail)| Mutation::Append(Hex([key(f, w), varint(v), tail].concat()))),
        3 => hostile_tensor().prop_map(|t| Mutation::HostileTensor(Hex(t))),
        14 => well_formed_field().prop_map(|f| Mutation::WellFormed(Hex(f))),
    ]
    .boxed()
}

fn mutate(method: &str, mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Truncate(i) => b.truncate(at(*i, b.len())),
        Mutation::FlipBit(i, bit) => {
            if !b.is_empty() {
                let i = i % b.len();
                b[i] ^= 1 << bit;
            }
        }
        Mutation::Insert(i, bytes) => {
            let i = at(*i, b.len());
            b.splice(i..i, bytes.0.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = at(*i, b.len());
            let end = (i + n).min(b.len());
            b.drain(i..end);
        }
        Mutation::Append(bytes) | Mutation::WellFormed(bytes) => b.extend(&bytes.0),
        Mutation::HostileTensor(t) => match method {
            "ApplyGradients" => b.extend(ld(2, &[ld(1, b"layers.0.weight"), ld(2, &t.0)].concat())),
            "Backward" if t.0.len() % 2 == 1 => b.extend(ld(4, &t.0)),
            _ => b.extend(ld(2, &t.0)),
        },
    }
    b
}

const METHODS: [&str; 13] = [
    "CreateModel",
    "Forward",
    "Backward",
    "TrainStep",
    "ApplyGradients",
    "Evaluate",
    "GetModel",
    "ListModels",
    "DeleteModel",
    "GradientCheck",
    "TraceStep",
    "ExportModel",
    "ImportModel",
];

#[derive(Debug, Clone)]
struct RawCase {
    method: &'static str,
    /// What the body was made from (read by `Debug`, in a failure report).
    #[allow(dead_code)]
    made_from: String,
    body: Hex,
}

fn raw_strategy(
    lives: Arc<Vec<Live>>,
    ids: Vec<String>,
    deleted: String,
    files: Vec<Vec<u8>>,
) -> BoxedStrategy<RawCase> {
    // A whole checkpoint in one chunk, as ImportModel's single message.
    let chunk = proptest::sample::select(files)
        .prop_map(|f| ("ImportModel", upload(&f, f.len())[0].encode_to_vec()));
    let valid = prop_oneof![
        1 => chunk,
        6 => case_strategy(lives).prop_map(move |c| {
            let call = c.fill(&ids, &deleted);
            (call.name(), encoded(&call))
        }),
        1 => model_spec().prop_map(|spec| ("CreateModel", pb::CreateModelRequest { spec }.encode_to_vec())),
    ];
    let mutated = (valid.clone(), vec(mutation(), 1..=3)).prop_map(|((method, base), ms)| {
        let body = ms.iter().fold(base.clone(), |b, m| mutate(method, b, m));
        RawCase {
            method,
            made_from: format!("{} valid bytes, then {ms:?}", base.len()),
            body: Hex(body),
        }
    });
    let random = (
        proptest::sample::select(METHODS.to_vec()),
        vec(any::<u8>(), 0..160),
    )
        .prop_map(|(method, b)| RawCase {
            method,
            made_from: "random bytes".into(),
            body: Hex(b),
        });
    let unchanged = valid.prop_map(|(method, b)| RawCase {
        method,
        made_from: "a valid request".into(),
        body: Hex(b),
    });
    // Mutations mostly keep the body decodable (well-formed fields appended), so most
    // cases reach the server's validation and not only its decoder.
    prop_oneof![6 => mutated, 1 => random, 2 => unchanged].boxed()
}

fn raw_case(h: &Harness, case: RawCase) -> Result<(), TestCaseError> {
    let (ours, theirs) = decode_both(case.method, &case.body.0);
    prop_assert_eq!(
        ours.as_ref().map(|d| &d.0).map_err(|_| ()),
        theirs.as_ref().map(|d| &d.0).map_err(|_| ()),
        "backprop::pb and prost's derived codec disagree: ours {:?}, prost's {:?}",
        &ours,
        &theirs
    );
    let fixture = ours
        .as_ref()
        .ok()
        .and_then(|(_, id)| h.ids().iter().position(|f| f.eq_ignore_ascii_case(id)));
    h.case(async {
        let what = case.method;
        let creates = matches!(what, "CreateModel" | "ImportModel");
        let sessions = if creates {
            model_count(&mut h.client()).await?
        } else {
            0
        };
        let answer = raw_call(h, what, case.body.0.clone()).await?;
        tally("raw bodies", what, &code_of(&answer));
        tally("raw bodies", "any", &code_of(&answer));
        tally(
            "raw bodies",
            "body",
            if ours.is_ok() {
                "decodable"
            } else {
                "undecodable"
            },
        );
        if creates && answer.is_err() {
            prop_assert_eq!(
                model_count(&mut h.client()).await?,
                sessions,
                "{}: refused, yet a session was created",
                what
            );
        }
        match (&ours, &answer) {
            (Err(e), Err(s)) => {
                // gRPC (and tonic) answer an undecodable request with INTERNAL.
                prop_assert!(
                    s.code() == Code::Internal && s.message().contains("decode"),
                    "{what}: undecodable ({e}) but answered {s:?}"
                );
            }
            (Err(e), Ok(r)) => {
                return Err(fail(format!(
                    "{what}: undecodable ({e}) but answered OK: {:?}",
                    r.iter().map(|m| Hex(m.clone())).collect::<Vec<_>>()
                )));
            }
            (Ok(_), Err(s)) => check_refusal(what, s)?,
            (Ok(_), Ok(r)) => {
                let mut created = None;
                for m in r {
                    created = decode_response(what, m)
                        .map_err(|e| fail(format!("{what}: the answer does not decode: {e}")))?;
                }
                if let Some(id) = created {
                    let mut c = h.client();
                    within(
                        "DeleteModel",
                        c.delete_model(pb::DeleteModelRequest { model_id: id }),
                    )
                    .await?
                    .map_err(|s| fail(format!("DeleteModel of a created model: {s:?}")))?;
                }
            }
        }
        if let Some(i) = fixture {
            // An accepted update, as the typed request the server decoded.
            let body = &case.body.0[..];
            let update = match (what, &answer) {
                ("TrainStep", Ok(_)) => {
                    pb::TrainStepRequest::decode(body).ok().map(Call::TrainStep)
                }
                ("ApplyGradients", Ok(_)) => pb::ApplyGradientsRequest::decode(body)
                    .ok()
                    .map(Call::ApplyGradients),
                _ => None,
            };
            h.check_model(i, update.as_ref(), what).await?;
        }
        h.healthy(what).await
    })
}

#[test]
fn raw_bodies_for_every_method_are_decoded_or_refused() {
    let h = Harness::start();
    let files = (0..h.lives.len())
        .map(|i| h.rt.block_on(export_file(&h, i)).expect("export"))
        .collect();
    let strategy = raw_strategy(h.lives.clone(), h.ids(), h.deleted.clone(), files);
    let shares = [
        ("body decodable", 0.45),
        ("body undecodable", 0.2),
        ("any Ok", 0.1),
        ("any InvalidArgument", 0.15),
        ("any NotFound", 0.02),
        // Tensors over the size limit only (about 0.2% of cases).
        ("any ResourceExhausted", 0.0005),
    ];
    check("raw bodies", 6000, strategy, &shares, |case| {
        raw_case(&h, case)
    });

    // Beyond the message limit: RESOURCE_EXHAUSTED before anything is decoded.
    h.rt.block_on(async {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        let s = raw_call(&h, "Forward", big.clone())
            .await
            .expect("answered")
            .expect_err("refused");
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        // Zero or several messages on a unary method.
        for n in [0, 2, 3] {
            let mut g = tonic::client::Grpc::new(h.channel());
            let body = encoded(&Call::GetModel(pb::GetModelRequest {
                model_id: h.id(0),
                include_values: false,
            }));
            let messages = tonic::codegen::tokio_stream::iter(vec![body; n]);
            let call = async {
                g.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                g.client_streaming(tonic::Request::new(messages), path("GetModel"), RawCodec)
                    .await
            };
            let r = within("GetModel", call).await.expect("answered");
            match (n, r) {
                // No message at all: tonic's "Missing request message.", INTERNAL as gRPC says
                // for a cardinality violation.
                (0, Err(s)) => assert_eq!(s.code(), Code::Internal, "{s:?}"),
                // More than one: tonic answers the first and drops the rest (or, should it
                // start enforcing cardinality, INTERNAL); never a hang or a crash.
                (_, Ok(b)) if n > 1 => {
                    let got = pb::GetModelResponse::decode(&b[..]).expect("a GetModel answer");
                    assert_eq!(got.model_id, h.id(0));
                }
                (_, Err(s)) if n > 1 => assert_eq!(s.code(), Code::Internal, "{s:?}"),
                (n, r) => panic!("{n} messages on a unary method answered {r:?}"),
            }
        }
        h.healthy("after protocol errors").await.expect("healthy");
    });
    h.finish();
}

// ---------------------------------------------------------------------------------------
// The Tensor codec, in-process

/// A buffer in several pieces, as the network may hand it over; the hand-written decoder
/// takes its one-pass path only within a piece.
struct Pieces(std::collections::VecDeque<Bytes>);

impl Buf for Pieces {
    fn remaining(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }
    fn chunk(&self) -> &[u8] {
        self.0.front().map_or(&[], |b| b.as_ref())
    }
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let front = self.0.front_mut().expect("advance past the end");
            let k = n.min(front.len());
            front.advance(k);
            n -= k;
            if front.is_empty() {
                self.0.pop_front();
            }
        }
    }
}

fn split(b: &[u8], cuts: &[usize]) -> Pieces {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| if b.is_empty() { 0 } else { c % b.len() })
        .collect();
    at.push(0);
    at.push(b.len());
    at.sort_unstable();
    at.dedup();
    Pieces(
        at.windows(2)
            .map(|w| Bytes::copy_from_slice(&b[w[0]..w[1]]))
            .collect(),
    )
}

fn same_tensor(ours: &pb::Tensor, theirs: &reference::Tensor) -> bool {
    ours.shape == theirs.shape
        && ours
            .values
            .iter()
            .map(|v| v.to_bits())
            .eq(theirs.values.iter().map(|v| v.to_bits()))
        && ours
            .values_f64
            .iter()
            .map(|v| v.to_bits())
            .eq(theirs.values_f64.iter().map(|v| v.to_bits()))
}

fn agree(
    what: &str,
    ours: &Result<pb::Tensor, prost::DecodeError>,
    theirs: &Result<reference::Tensor, prost::DecodeError>,
) -> Result<(), TestCaseError> {
    match (ours, theirs) {
        (Ok(o), Ok(t)) => prop_assert!(same_tensor(o, t), "{what}: ours {o:?}, prost's {t:?}"),
        (Err(_), Err(_)) => {}
        _ => return Err(fail(format!("{what}: ours {ours:?}, prost's {theirs:?}"))),
    }
    Ok(())
}

#[test]
fn tensor_codec_agrees_with_prost_on_any_bytes() {
    // A valid tensor with well-formed fields glued on (decodable, merged or skipped),
    // as often as the hostile kinds.
    let valid = (
        vec(0u32..6, 0..4),
        vec(any::<f32>(), 0..12),
        vec(any::<f64>(), 0..6),
    )
        .prop_map(|(shape, values, values_f64)| {
            reference::Tensor {
                shape,
                values,
                values_f64,
            }
            .encode_to_vec()
        });
    let bytes = prop_oneof![
        3 => hostile_tensor(),
        1 => vec(any::<u8>(), 0..96),
        1 => (hostile_tensor(), vec(mutation(), 1..=2))
            .prop_map(|(t, ms)| ms.iter().fold(t, |b, m| mutate("Tensor", b, m))),
        6 => (valid, vec(well_formed_field(), 0..=3)).prop_map(|(t, fields)| {
            // A tensor's own fields: an unknown one is skipped, field 2 (a tensor inside)
            // is read as packed f32 values, which may or may not be whole.
            [t, fields.concat()].concat()
        }),
    ];
    let strategy = (
        bytes.prop_map(Hex),
        vec(any::<usize>(), 0..4),
        any::<bool>(),
    );
    let shares = [("decode Ok", 0.35), ("decode Err", 0.3)];
    check(
        "Tensor codec",
        20000,
        strategy,
        &shares,
        |(b, cuts, prefilled)| {
            let b = &b.0;
            // Decoding from one piece: the same answer as prost, and no allocation much larger
            // than the message (a Vec holds at most 4 bytes per input byte, doubled by growth).
            THREAD_LARGEST.with(|c| c.set(0));
            let ours = pb::Tensor::decode(&b[..]);
            let largest = THREAD_LARGEST.with(Cell::get);
            let theirs = reference::Tensor::decode(&b[..]);
            agree("contiguous", &ours, &theirs)?;
            tally(
                "Tensor codec",
                "decode",
                if ours.is_ok() { "Ok" } else { "Err" },
            );
            prop_assert!(
                largest <= 8 * b.len() + 256,
                "decoding {} bytes allocated {largest} bytes at once",
                b.len()
            );
            // In pieces (the fallback path): the same.
            agree("split", &pb::Tensor::decode(split(b, &cuts)), &theirs)?;
            // Merged into a tensor that already holds values: appended, as prost appends.
            if prefilled {
                let mut o = pb::Tensor {
                    shape: vec![1],
                    values: vec![0.5],
                    values_f64: vec![-0.5],
                };
                let mut t = reference::Tensor {
                    shape: vec![1],
                    values: vec![0.5],
                    values_f64: vec![-0.5],
                };
                let (ro, rt) = (o.merge(split(b, &cuts)), t.merge(&b[..]));
                prop_assert_eq!(
                    ro.is_ok(),
                    rt.is_ok(),
                    "merge: ours {:?}, prost's {:?}",
                    ro,
                    rt
                );
                if ro.is_ok() {
                    prop_assert!(same_tensor(&o, &t), "merge: ours {o:?}, prost's {t:?}");
                }
            }
            Ok(())
        },
    );
}

/// Regression (found by this file, fixed in 14fcb1c): `weight_scale` was only checked to be
/// finite and > 0, but the weights are `scale·N(0, 1)` rounded to the dtype, so an f32
/// model with weight_scale 1e39 (or an f64 one with f64::MAX) was created holding ±inf
/// weights, every TrainStep refused and Forward answering inf. Such a spec must be refused
/// (INVALID_ARGUMENT on spec.init.weight_scale) or create finite weights.
#[test]
fn create_model_refuses_a_weight_scale_whose_weights_overflow() {
    let h = Harness::start();
    h.rt.block_on(async {
        let mut c = h.client();
        for (scale, dtype) in [(1e39, pb::Dtype::F32), (f64::MAX, pb::Dtype::F64)] {
            let spec = pb::ModelSpec {
                input_dim: 2,
                num_classes: 2,
                init: Some(pb::Init {
                    scheme: pb::InitScheme::Gaussian as i32,
                    weight_scale: Some(scale),
                    seed: 1,
                }),
                dtype: dtype as i32,
                ..Default::default()
            };
            match c
                .create_model(pb::CreateModelRequest { spec: Some(spec) })
                .await
            {
                Err(s) => common::assert_invalid(&s, "spec.init.weight_scale"),
                Ok(r) => {
                    let id = r.into_inner().model_id;
                    let got = common::get_values(&mut c, &id).await;
                    if let Some(p) = non_finite(&got) {
                        panic!(
                            "weight_scale {scale:e} ({dtype:?}): {} = {:?}",
                            p.name, p.value
                        );
                    }
                }
            }
        }
    });
    h.finish();
}

// ---------------------------------------------------------------------------------------
// Checkpoints: ExportModel and ImportModel

/// ExportModel's chunks, collected; a status mid-stream ends it.
async fn export(
    c: &mut Client,
    req: pb::ExportModelRequest,
) -> Result<Result<Vec<pb::CheckpointChunk>, Status>, TestCaseError> {
    let call = async {
        let mut stream = c.export_model(req).await?.into_inner();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.message().await? {
            chunks.push(chunk);
        }
        Ok(tonic::Response::new(chunks))
    };
    within("ExportModel", call).await
}

async fn import(
    c: &mut Client,
    chunks: Vec<pb::CheckpointChunk>,
) -> Result<Result<pb::ImportModelResponse, Status>, TestCaseError> {
    let stream = tonic::codegen::tokio_stream::iter(chunks);
    within("ImportModel", c.import_model(stream)).await
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A file as an upload: `size`-byte chunks, the first declaring the size and checksum.
fn upload(file: &[u8], size: usize) -> Vec<pb::CheckpointChunk> {
    let sha = sha256_hex(file);
    file.chunks(size.max(1))
        .enumerate()
        .map(|(i, data)| pb::CheckpointChunk {
            data: Bytes::copy_from_slice(data),
            offset: (i * size.max(1)) as u64,
            total_bytes: file.len() as u64,
            sha256: if i == 0 { sha.clone() } else { String::new() },
        })
        .collect()
}

/// A safetensors file's JSON header and the data after it.
fn split_file(file: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    let header = serde_json::from_slice(&file[8..8 + n]).expect("a JSON header");
    (header, file[8 + n..].to_vec())
}

fn join_file(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("JSON");
    [
        (json.len() as u64).to_le_bytes().to_vec(),
        json,
        data.to_vec(),
    ]
    .concat()
}

// The checkpoints the harness's fixtures export.

/// A fixture's checkpoint file, as ExportModel sends it.
async fn export_file(h: &Harness, i: usize) -> Result<Vec<u8>, TestCaseError> {
    let mut c = h.client();
    let req = pb::ExportModelRequest {
        model_id: h.id(i),
        chunk_bytes: 0,
    };
    let chunks = export(&mut c, req)
        .await?
        .map_err(|s| fail(format!("ExportModel of a fixture: {s:?}")))?;
    Ok(chunks.iter().flat_map(|c| c.data.to_vec()).collect())
}

/// A change to a valid checkpoint file.
#[derive(Debug, Clone)]
enum FileEdit {
    None,
    FlipBit(usize, u8),
    Truncate(usize),
    Insert(usize, Hex),
    /// The 8-byte header length replaced.
    HeaderLength(u64),
    /// A metadata key set (or, with `None`, removed).
    Meta(&'static str, Option<String>),
    /// A field of the spec's JSON (in the metadata) set to a JSON value.
    Spec(&'static str, String),
    /// The `k`-th tensor entry of the header: a field set to a JSON value, or removed.
    Tensor(usize, &'static str, Option<String>),
    /// Random bytes instead of the file.
    Random(Hex),
}

/// How the file is cut into chunks, and what the chunks declare.
#[derive(Debug, Clone)]
enum Chunking {
    /// `size`-byte chunks, correct offsets, size and checksum.
    Size(usize),
    /// Chunk `k`'s offset moved by `delta`.
    Offset(usize, i64),
    /// The first chunk declares this total size.
    Total(u64),
    /// A later chunk declares a different total size.
    LaterTotal(u64),
    /// The checksum in upper case (the server takes any case).
    UpperSha,
    /// A wrong, short, missing or non-hex checksum.
    Sha(String),
    /// Bytes beyond the declared size.
    Extra(Hex),
    /// The first two chunks swapped.
    Swapped,
    /// No chunk at all.
    Nothing,
}

impl Chunking {
    /// Whether the upload itself is well-formed (the file may still be bad).
    fn sound(&self, len: usize) -> bool {
        // An empty file cannot be declared (total_bytes 0 means "missing").
        len > 0
            && match self {
                Chunking::Size(_) | Chunking::UpperSha => true,
                Chunking::Offset(_, d) => *d == 0,
                Chunking::Total(t) | Chunking::LaterTotal(t) => *t == len as u64,
                Chunking::Swapped => false,
                Chunking::Sha(_) | Chunking::Extra(_) | Chunking::Nothing => false,
            }
    }

    fn chunks(&self, file: &[u8]) -> Vec<pb::CheckpointChunk> {
        let size = match self {
            Chunking::Size(n) => *n,
            _ => 97,
        };
        let mut chunks = upload(file, size);
        if chunks.is_empty() {
            // An empty file: one empty chunk (which declares total_bytes 0).
            chunks.push(pb::CheckpointChunk {
                sha256: sha256_hex(file),
                ..Default::default()
            });
        }
        let n = chunks.len();
        match self {
            Chunking::Size(_) => {}
            Chunking::Offset(k, d) => {
                let c = &mut chunks[k % n];
                c.offset = c.offset.wrapping_add_signed(*d);
            }
            Chunking::Total(t) => chunks[0].total_bytes = *t,
            Chunking::LaterTotal(t) => chunks[n - 1].total_bytes = *t,
            Chunking::UpperSha => chunks[0].sha256 = chunks[0].sha256.to_uppercase(),
            Chunking::Sha(s) => chunks[0].sha256 = s.clone(),
            Chunking::Extra(b) => chunks.push(pb::CheckpointChunk {
                data: Bytes::from(b.0.clone()),
                offset: file.len() as u64,
                ..Default::default()
            }),
            Chunking::Swapped if n > 1 => chunks.swap(0, 1),
            Chunking::Nothing => chunks.clear(),
            Chunking::Swapped => chunks[0].offset = 1,
        }
        chunks
    }
}

fn json_value() -> BoxedStrategy<String> {
    prop_oneof![
        Just("null".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e300".to_string()),
        Just("18446744073709551616".to_string()),
        Just("4294967296".to_string()),
        Just("16777217".to_string()),
        Just("\"x\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[4294967296, 4294967296]".to_string()),
        Just("[0, 18446744073709551615]".to_string()),
        Just("\"F16\"".to_string()),
        Just("\"I64\"".to_string()),
        (0u32..8).prop_map(|n| n.to_string()),
        (vec(0u32..6, 0..4)).prop_map(|v| format!("{v:?}")),
    ]
    .boxed()
}

fn file_edit() -> BoxedStrategy<FileEdit> {
    let number = prop_oneof![
        Just(u64::MAX.to_string()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551614".to_string()),
        Just("18446744073709551616".to_string()),
        Just(" 7".to_string()),
        Just(String::new()),
        "[0-9a-z.]{0,8}",
    ];
    let meta = prop_oneof![
        (
            prop_oneof![Just("step"), Just("optimizer_t")],
            prop_oneof![4 => number.prop_map(Some), 1 => Just(None)]
        ),
        (
            prop_oneof![Just("format"), Just("spec"), Just("owner")],
            prop_oneof![
                Just(None),
                Just(Some(String::new())),
                Just(Some("{}".to_string())),
                Just(Some("backprop.checkpoint.v2".to_string())),
                "\\PC{0,16}".prop_map(Some),
            ]
        ),
    ];
    let spec_field = prop_oneof![
        Just("input_dim"),
        Just("num_classes"),
        Just("hidden"),
        Just("bias"),
        Just("l2"),
        Just("seed"),
        Just("dtype"),
        Just("loss"),
        Just("optimizer"),
        Just("init"),
    ];
    let tensor_field = prop_oneof![Just("shape"), Just("dtype"), Just("data_offsets")];
    prop_oneof![
        3 => Just(FileEdit::None),
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| FileEdit::FlipBit(at, bit)),
        1 => any::<usize>().prop_map(FileEdit::Truncate),
        1 => (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(at, b)| FileEdit::Insert(at, Hex(b))),
        1 => prop_oneof![Just(u64::MAX), Just(1u64 << 32), Just(0), 0u64..4096].prop_map(FileEdit::HeaderLength),
        3 => meta.prop_map(|(k, v)| FileEdit::Meta(k, v)),
        3 => (spec_field, json_value()).prop_map(|(f, v)| FileEdit::Spec(f, v)),
        3 => (any::<usize>(), tensor_field, prop_oneof![4 => json_value().prop_map(Some), 1 => Just(None)])
            .prop_map(|(k, f, v)| FileEdit::Tensor(k, f, v)),
        1 => vec(any::<u8>(), 0..64).prop_map(|b| FileEdit::Random(Hex(b))),
    ]
    .boxed()
}

fn chunking() -> BoxedStrategy<Chunking> {
    prop_oneof![
        8 => prop_oneof![Just(1usize << 20), 1usize..=64, 100usize..=5000].prop_map(Chunking::Size),
        1 => (any::<usize>(), prop_oneof![Just(0i64), Just(1), Just(-1), any::<i64>()])
            .prop_map(|(k, d)| Chunking::Offset(k, d)),
        1 => prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(1u64 << 40), 1u64..100_000].prop_map(Chunking::Total),
        1 => prop_oneof![Just(1u64), Just(u64::MAX), 1u64..100_000].prop_map(Chunking::LaterTotal),
        1 => Just(Chunking::UpperSha),
        1 => prop_oneof![Just(String::new()), "[0-9a-f]{64}", "[0-9a-f]{63}", "\\PC{64}"].prop_map(Chunking::Sha),
        1 => vec(any::<u8>(), 1..16).prop_map(|b| Chunking::Extra(Hex(b))),
        1 => Just(Chunking::Swapped),
        1 => Just(Chunking::Nothing),
    ]
    .boxed()
}

/// Applies an edit; `None` if it does not apply to this file (e.g. no such tensor).
fn edit_file(file: &[u8], e: &FileEdit) -> Vec<u8> {
    let at = |i: usize| i % (file.len() + 1);
    let set = |v: &mut serde_json::Value, key: &str, json: &Option<String>| match json {
        Some(j) => v[key] = serde_json::from_str(j).unwrap_or(serde_json::Value::Null),
        None => {
            if let Some(m) = v.as_object_mut() {
                m.remove(key);
            }
        }
    };
    match e {
        FileEdit::None => file.to_vec(),
        FileEdit::FlipBit(i, bit) => {
            let mut f = file.to_vec();
            let i = i % f.len();
            f[i] ^= 1 << bit;
            f
        }
        FileEdit::Truncate(i) => file[..at(*i)].to_vec(),
        FileEdit::Insert(i, b) => [&file[..at(*i)], &b.0, &file[at(*i)..]].concat(),
        FileEdit::HeaderLength(n) => [&n.to_le_bytes()[..], &file[8..]].concat(),
        FileEdit::Meta(key, value) => {
            let (mut header, data) = split_file(file);
            let value = value
                .as_ref()
                .map(|v| serde_json::Value::String(v.clone()).to_string());
            set(&mut header["__metadata__"], key, &value);
            join_file(&header, &data)
        }
        FileEdit::Spec(field, json) => {
            let (mut header, data) = split_file(file);
            let text = header["__metadata__"]["spec"]
                .as_str()
                .unwrap_or("{}")
                .to_string();
            let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            set(&mut spec, field, &Some(json.clone()));
            header["__metadata__"]["spec"] = serde_json::Value::String(spec.to_string());
            join_file(&header, &data)
        }
        FileEdit::Tensor(k, field, json) => {
            let (mut header, data) = split_file(file);
            let names: Vec<String> = header
                .as_object()
                .map(|m| m.keys().filter(|k| *k != "__metadata__").cloned().collect())
                .unwrap_or_default();
            if !names.is_empty() {
                let name = &names[k % names.len()];
                set(&mut header[name.as_str()], field, json);
            }
            join_file(&header, &data)
        }
        FileEdit::Random(b) => b.0.clone(),
    }
}

#[derive(Debug, Clone)]
struct ImportCase {
    fixture: usize,
    edit: FileEdit,
    chunking: Chunking,
}

fn import_case(h: &Harness, case: ImportCase) -> Result<(), TestCaseError> {
    h.case(async {
        let i = case.fixture;
        let original = export_file(h, i).await?;
        let file = edit_file(&original, &case.edit);
        let chunks = case.chunking.chunks(&file);
        let first_total = chunks.first().map_or(0, |c| c.total_bytes);
        let mut c = h.client();
        let sessions = model_count(&mut c).await?;
        let r = import(&mut c, chunks).await?;
        let edit = format!("{:?}", case.edit);
        let edit = edit.split(['(', ' ']).next().unwrap_or("");
        tally("ImportModel", edit, &code_of(&r));
        tally("ImportModel", "any", &code_of(&r));
        let sound = case.chunking.sound(file.len());
        let unchanged = file == original;
        match r {
            Err(s) => {
                check_refusal("ImportModel", &s)?;
                prop_assert!(
                    !(sound && unchanged),
                    "ImportModel refused an exported file: {s:?}"
                );
                prop_assert_eq!(
                    model_count(&mut c).await?,
                    sessions,
                    "a refused ImportModel created a session: {:?}",
                    s
                );
                let limit = MAX_PARAMETERS * 24 + (16 << 20);
                if s.code() == Code::ResourceExhausted {
                    prop_assert!(
                        first_total > limit,
                        "RESOURCE_EXHAUSTED for a small upload: {s:?}"
                    );
                }
            }
            Ok(r) => {
                prop_assert!(sound, "ImportModel took an unsound upload: {r:?}");
                let got = values(&mut c, &r.model_id, "an imported model").await?;
                prop_assert_eq!(got.step, r.step);
                if let Some(p) = non_finite(&got) {
                    return Err(fail(format!(
                        "an imported model holds a non-finite {}",
                        p.name
                    )));
                }
                let imported = within("ExportModel", export_of(&mut c, &r.model_id))
                    .await?
                    .map_err(|s| fail(format!("ExportModel of an imported model: {s:?}")))?;
                let imported = snapshot_of(imported, "an imported model")?;
                if unchanged {
                    // The same model: values, optimizer state, step and spec.
                    let fixture = h.snapshots[i].lock().expect("snapshot").clone();
                    prop_assert!(
                        imported.model == fixture.model,
                        "an unchanged file imported as another state\n{}",
                        differences(&fixture.model, &imported.model)
                    );
                }
                // It trains, or refuses to with a client error and stays as it was.
                let spec = got.spec.clone().expect("spec");
                let n = 3u32;
                let x = pb::Tensor {
                    shape: vec![n, spec.input_dim],
                    values: (0..n * spec.input_dim)
                        .map(|k| (k % 5) as f32 * 0.3 - 0.6)
                        .collect(),
                    values_f64: vec![],
                };
                let train = pb::TrainStepRequest {
                    model_id: r.model_id.clone(),
                    x: Some(x),
                    labels: (0..n).map(|k| k % spec.num_classes).collect(),
                };
                let step = within("TrainStep", c.train_step(train.clone())).await?;
                let after = within("ExportModel", export_of(&mut c, &r.model_id))
                    .await?
                    .map_err(|s| fail(format!("ExportModel of an imported model: {s:?}")))?;
                let after = snapshot_of(after, "an imported model after TrainStep")?;
                match step {
                    Ok(t) => {
                        prop_assert_eq!((t.step, after.step()), (got.step + 1, got.step + 1));
                        let mut mirror = imported.model.clone();
                        with_model!(&mut mirror, m => mirror_update(m, &Call::TrainStep(train)))
                            .map_err(|e| {
                                fail(format!(
                                    "an imported model trained, the engine refuses: {e}"
                                ))
                            })?;
                        prop_assert!(
                            after.model == mirror,
                            "TrainStep on an imported model is not the engine's\n{}",
                            differences(&mirror, &after.model)
                        );
                    }
                    Err(s) => {
                        check_refusal("TrainStep on an imported model", &s)?;
                        prop_assert!(!unchanged, "a re-imported fixture cannot train: {s:?}");
                        prop_assert!(
                            after.file == imported.file,
                            "a refused step changed the model\n{}",
                            differences(&imported.model, &after.model)
                        );
                    }
                }
                within(
                    "DeleteModel",
                    c.delete_model(pb::DeleteModelRequest {
                        model_id: r.model_id,
                    }),
                )
                .await?
                .map_err(|s| fail(format!("DeleteModel of an imported model: {s:?}")))?;
            }
        }
        h.healthy("ImportModel").await
    })
}

#[test]
fn import_model_takes_exported_files_and_refuses_damaged_ones() {
    let h = Harness::start();
    let n = h.lives.len();
    let strategy =
        (0..n, file_edit(), chunking()).prop_map(|(fixture, edit, chunking)| ImportCase {
            fixture,
            edit,
            chunking,
        });
    let shares = [
        ("any Ok", 0.07),
        ("any InvalidArgument", 0.4),
        ("any ResourceExhausted", 0.005),
        ("None Ok", 0.05),
    ];
    check("ImportModel", 3000, strategy, &shares, |case| {
        import_case(&h, case)
    });
    h.finish();
}

/// Regression (found by this file, fixed in 14fcb1c): ImportModel took a checkpoint whose
/// `step` (or `optimizer_t`) is u64::MAX and the next TrainStep overflowed (model/mod.rs
/// `self.step += 1`, model/optim.rs `self.t + 1`): with overflow checks a panic (INTERNAL),
/// for `step` only after the optimizer had applied the update, so the refused call changed
/// the model; without them (release) the counter silently wrapped to 0. The import must
/// refuse such a counter, or the step refuse cleanly (a client error, model unchanged).
#[test]
fn import_model_at_the_largest_step_then_train_refuses_cleanly() {
    let h = Harness::start();
    h.rt.block_on(async {
        let mut c = h.client();
        let file = export_file(&h, 1).await.expect("export");
        for key in ["step", "optimizer_t"] {
            let edit = FileEdit::Meta(key, Some(u64::MAX.to_string()));
            let r = import(&mut c, upload(&edit_file(&file, &edit), 1 << 20))
                .await
                .expect("answered");
            let id = match r {
                Err(s) => {
                    assert_eq!(s.code(), Code::InvalidArgument, "{key}: {s:?}");
                    continue;
                }
                Ok(r) => r.model_id,
            };
            let before = common::get_values(&mut c, &id).await;
            let x = pb::Tensor {
                shape: vec![1, 2],
                values: vec![0.5, -0.5],
                values_f64: vec![],
            };
            let r = c
                .train_step(pb::TrainStepRequest {
                    model_id: id.clone(),
                    x: Some(x),
                    labels: vec![1],
                })
                .await;
            let after = common::get_values(&mut c, &id).await;
            match r {
                Ok(r) => panic!(
                    "{key} = u64::MAX: TrainStep answered step {}",
                    r.into_inner().step
                ),
                Err(s) => {
                    check_refusal("TrainStep", &s).unwrap_or_else(|e| panic!("{key}: {e}"));
                    common::assert_same_snapshot(&before, &after);
                }
            }
        }
    });
    h.finish();
}

/// Regression (found by this file, fixed in 14fcb1c): service/checkpoint.rs `receive`
/// reserved the first chunk's declared `total_bytes` before any data arrived, up to
/// `max_parameters × 24 + 16 MiB` (1.2 GB with the default limits): an 8-byte upload that
/// declared that much made the server allocate it, and keep it while the stream stayed
/// open. Runs with the default limits, where that size is not bounded by the fuzz config.
#[test]
fn import_model_does_not_reserve_the_declared_size_up_front() {
    let h = Harness::start_with(test_config());
    h.rt.block_on(async {
        let mut c = h.client();
        let declared = Limits::default().max_parameters * 24 + (16 << 20);
        let one = vec![pb::CheckpointChunk {
            data: Bytes::from_static(b"12345678"),
            offset: 0,
            total_bytes: declared,
            sha256: "0".repeat(64),
        }];
        HUGE_ON_PURPOSE.fetch_add(1, Ordering::Relaxed);
        let before = LARGEST.swap(0, Ordering::Relaxed);
        let r = import(&mut c, one).await.expect("answered");
        let largest = LARGEST.swap(before, Ordering::Relaxed);
        HUGE_ON_PURPOSE.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(
            r.map(|_| ()).map_err(|s| s.code()),
            Err(Code::InvalidArgument)
        );
        assert!(
            largest <= MAX_ALLOCATION,
            "8 bytes declaring {declared}: an allocation of {largest} bytes"
        );
    });
    h.finish();
}
