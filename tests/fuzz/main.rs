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
//! a strategy that stops reaching an outcome fails. The whole binary runs in about 15 s in
//! a dev build: `cargo test --test fuzz`. A longer run:
//! `BACKPROP_FUZZ_CASES=20000 cargo test --release --test fuzz`; the same run
//! again: `BACKPROP_FUZZ_SEED=<the printed seed>`. A failure prints the seed and the
//! minimal failing input.

mod create_model;
mod import_model;
mod raw_bodies;
mod session_calls;
mod strategies;
mod tensor_codec;

// Every family sees the shared harness below and what the others define (the raw bodies
// mutate the session calls' encodings, the imports reuse the strategies).
#[allow(unused_imports)]
use {
    create_model::*, import_model::*, raw_bodies::*, session_calls::*, strategies::*,
    tensor_codec::*,
};

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
use ndarray::{Array2, ArrayD, IxDyn};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, RngSeed, TestCaseError, TestError, TestRunner,
};
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use support::{Client, TestServer, test_config};
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
/// Not configurable: see `service::limits` (MAX_DIM, MAX_DEPTH) and `model::spec`.
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
            ..RequestLimits::default()
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
                let (id, created) = support::create(&mut c, spec.clone()).await;
                let snap = support::get_values(&mut c, &id).await;
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
            let (deleted, _) = support::create(&mut c, fixture_specs().remove(0)).await;
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
            // An accepted UpdateModel changes the file's metadata, never the model.
            None if what == "UpdateModel accepted" => prop_assert!(
                now.model == before.model,
                "{what}: the model's state changed\n{}",
                differences(&before.model, &now.model)
            ),
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
            c.create_model(pb::CreateModelRequest {
                spec,
                ..Default::default()
            }),
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
        ..Default::default()
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
    Ok(within(
        "ListModels",
        c.list_models(pb::ListModelsRequest::default()),
    )
    .await?
    .map_err(|s| fail(format!("ListModels failed: {s:?}")))?
    .models
    .len())
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

/// Every error the server answers carries a `google.rpc.ErrorInfo` from `backprop` with an
/// UPPER_SNAKE reason, whoever made the status (the service, or the gRPC layer for an
/// undecodable body).
fn check_error_info(what: &str, s: &Status) -> Result<(), TestCaseError> {
    support::errors::checked_reason(s)
        .map(drop)
        .map_err(|e| fail(format!("{what}: {e}")))
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

/// A refusal: a client-error code with a message and an ErrorInfo (see
/// [`check_error_info`]); INVALID_ARGUMENT names its field in the message and in a
/// BadRequest field violation with a description.
fn check_refusal(what: &str, s: &Status) -> Result<(), TestCaseError> {
    prop_assert!(
        CLIENT_CODES.contains(&s.code()),
        "{what}: {:?} is not a client-error code: {s:?}",
        s.code()
    );
    prop_assert!(!s.message().is_empty(), "{what}: no message: {s:?}");
    check_error_info(what, s)?;
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
