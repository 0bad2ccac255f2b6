//! Admission by cost: the one place that says what a call will cost before anything is
//! allocated for it, and whether the server takes it.
//!
//! From the spec and the batch rows alone, [`estimate`] gives a call's peak memory (the
//! tape's values, maxout pieces included; the backward pass's gradients and transient
//! buffers; optimizer scratch; the answer it will send, encoded), its work in
//! multiply-adds, and its answer's encoded size. [`Admission::admit`] then refuses:
//!
//! - an answer over the message limit, or a peak over the per-call cap, with
//!   INVALID_ARGUMENT: such a call can never succeed on this server, whatever the load,
//!   and the message says how to get under (fewer rows, `shapes_only`, `include_values`
//!   off, ExportModel's chunks);
//! - a peak that does not fit in what the memory budget has left now, with
//!   RESOURCE_EXHAUSTED (retry later), through the store's reservation, which the call
//!   then holds until it returns (waiting for the session lock and the compute pool
//!   included).
//!
//! Also here: the request limits that are not about sessions, the spec's size limits
//! (checked before anything multiplies dimensions), TraceStep's and GradientCheck's
//! budgets, the inline-vs-pool rule, and the shape of a model id.
use std::time::Duration;

use tonic::Status;

use super::status::{Reason, invalid, invalid_because};
use crate::model::{ActivationSpec, DType, ModelSpec};
use crate::session::{Reservation, SessionId, SessionStore};

/// Per-request limits that are not about sessions.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Elements in one tensor of a request, at most.
    pub max_batch_elements: usize,
    /// Numeric-gradient evaluations (elements checked × batch rows × parameters) one
    /// GradientCheck may cost, at most.
    pub max_gradcheck_work: u64,
    /// An upload (ImportModel) whose next chunk takes longer than this is cut off.
    pub upload_stall: Duration,
}

/// How long an upload may go without a chunk by default: slack for a 1 MiB chunk over
/// a slow link (8 s at 1 Mbit/s), short enough that stalled uploads give back what they
/// hold well before a client's deadline would.
pub const DEFAULT_UPLOAD_STALL: Duration = Duration::from_secs(30);

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_batch_elements: 16 * 1024 * 1024,
            max_gradcheck_work: 20_000_000_000,
            upload_stall: DEFAULT_UPLOAD_STALL,
        }
    }
}

/// Work (multiply-adds, see [`Cost::work`]) at or below which a call computes on the
/// async worker that received it instead of the compute pool. Such calls take
/// microseconds, less than the hand-off to a pool thread and back would cost them.
pub const DEFAULT_INLINE_MAX_WORK: u64 = 100_000;

/// The one inline-vs-pool rule: tiny calls compute where they arrived (0 = never).
pub fn runs_inline(work: u64, inline_max_work: u64) -> bool {
    work <= inline_max_work
}

/// Multiply-adds one random draw costs, as [`Cost::work`] counts them: a seeded normal
/// sample (a few uniform draws and a logarithm) takes about as long as 16 of them.
const WORK_PER_DRAW: u64 = 16;
/// Multiply-adds one byte of checkpoint costs to encode or decode and hash (SHA-256 runs
/// at roughly a byte per multiply-add's time, and the copy beside it).
const WORK_PER_CHECKPOINT_BYTE: u64 = 2;

/// The work of drawing a new model's initial parameters.
pub fn init_work(spec: &ModelSpec) -> u64 {
    spec.parameter_count()
        .unwrap_or(u64::MAX)
        .saturating_mul(WORK_PER_DRAW)
}

/// The work of encoding (or decoding) and hashing a checkpoint of `bytes` bytes.
pub fn checkpoint_work(bytes: u64) -> u64 {
    bytes.saturating_mul(WORK_PER_CHECKPOINT_BYTE)
}

pub use crate::model::spec::MAX_DIM;
/// Hidden layers at most.
pub const MAX_DEPTH: usize = crate::model::spec::MAX_HIDDEN_LAYERS;

/// Rows a TraceStep with values may have, at most: a picture beyond that is unreadable.
pub const TRACE_MAX_ROWS: usize = 64;
/// Elements one node value of a TraceStep with values may have, at most.
pub const TRACE_MAX_NODE_ELEMENTS: usize = 4096;

/// Bytes every call is given on top of its estimate: the matrix kernels' packing
/// buffers, the small vectors (labels, predictions, names) and allocator rounding. The
/// kernels size their buffers from the CPU's cache sizes, not from the product: a
/// compute thread's first product allocated about 1 MiB of them on one machine and
/// about 2.2 MB on another (AVX-512, larger caches), both measured by
/// tests/limits_estimate.rs; this leaves room for more.
const CALL_OVERHEAD: u64 = 4 << 20;
/// Encoded bytes of an answer besides its tensors' values and entries (field tags and
/// lengths, shapes, the losses): kept tight, since an answer just under the message
/// limit must still be taken.
const ANSWER_OVERHEAD: u64 = 128;
/// Encoded bytes per traced node besides its tensors (kind, shape, ids, flags) and per
/// tensor or edge (tags, shape, rule).
const TRACE_NODE_BYTES: u64 = 128;
const TRACE_EDGE_BYTES: u64 = 48;
/// Bytes per parameter entry of an answer besides its values (name, shape).
const PARAM_ENTRY_BYTES: u64 = 96;

/// What a call does, as far as its cost goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call {
    /// Scores (and losses with labels), the scores sent back (and their softmax
    /// probabilities when asked).
    Forward { labels: bool, probabilities: bool },
    /// Losses and accuracy only.
    Evaluate,
    /// Every parameter's gradient sent back (and dL/dX when asked).
    Backward { upstream: bool, input_grad: bool },
    /// Backward and one update.
    TrainStep,
    /// Numeric gradients of `checks` elements, each two forward passes, in f64.
    GradientCheck { checks: u64 },
    /// The whole graph as data, with values or as structure only.
    Trace { values: bool },
    /// The spec, with every parameter's values when asked.
    GetModel { values: bool },
    /// One update from gradients the caller sent.
    ApplyGradients,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Forward { .. } => "Forward",
            Call::Evaluate => "Evaluate",
            Call::Backward { .. } => "Backward",
            Call::TrainStep => "TrainStep",
            Call::GradientCheck { .. } => "GradientCheck",
            Call::Trace { .. } => "TraceStep",
            Call::GetModel { .. } => "GetModel",
            Call::ApplyGradients => "ApplyGradients",
        }
    }

    /// Whether the cost grows with the batch (so fewer rows is the way under a limit).
    fn has_rows(self) -> bool {
        !matches!(self, Call::GetModel { .. } | Call::ApplyGradients)
    }
}

/// A call's estimated cost, from the spec and the batch rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Bytes the call allocates at its peak, its answer included; at least the real peak.
    pub peak_bytes: u64,
    /// Multiply-adds: a product of an N×D and a D×H matrix is N·D·H, an elementwise gate
    /// over N×H values is N·H.
    pub work: u64,
    /// The encoded size of the answer.
    pub answer_bytes: u64,
}

/// One layer of the net: `pieces` affine maps `fan_in → units`, then an activation
/// unless it is maxout or the output layer.
struct Layer {
    fan_in: u64,
    units: u64,
    pieces: u64,
    activation: bool,
}

fn layers(spec: &ModelSpec) -> Vec<Layer> {
    let mut fan_in = spec.input_dim as u64;
    let mut out = Vec::with_capacity(spec.hidden.len() + 1);
    for h in &spec.hidden {
        let (pieces, activation) = match h.activation {
            ActivationSpec::Maxout { pieces } => (pieces as u64, false),
            _ => (1, true),
        };
        out.push(Layer {
            fan_in,
            units: h.units as u64,
            pieces,
            activation,
        });
        fan_in = h.units as u64;
    }
    out.push(Layer {
        fan_in,
        units: spec.num_classes as u64,
        pieces: 1,
        activation: false,
    });
    out
}

/// One node of the tape `Net::pass` records, in elements: its value, and per input edge
/// the input's size (the downstream gradient a trace reports) and the local gradient's.
struct TapeNode {
    value: u64,
    edges: Vec<(u64, u64)>,
}

/// The nodes `Net::pass` pushes for `rows` rows, in order (mirrors `model::net`).
fn tape(spec: &ModelSpec, rows: u64, labels: bool, param_grads: bool) -> Vec<TapeNode> {
    let leaf = |value| TapeNode {
        value,
        edges: Vec::new(),
    };
    let gate = |value, edges| TapeNode { value, edges };
    let mut nodes = vec![leaf(rows * spec.input_dim as u64)];
    let mut h = rows * spec.input_dim as u64;
    let mut weights = Vec::new();
    for l in layers(spec) {
        let (w, out) = (l.fan_in * l.units, rows * l.units);
        for p in 0..l.pieces {
            weights.push(w);
            nodes.push(leaf(w));
            // S = X·W: the local gradient of X is W, of W is X.
            nodes.push(gate(out, vec![(h, w), (w, h)]));
            if spec.bias {
                nodes.push(leaf(l.units));
                // ∂S/∂A is ones like A; ∂S/∂b is a column of N ones.
                nodes.push(gate(out, vec![(out, out), (l.units, rows)]));
            }
            if p > 0 {
                nodes.push(gate(out, vec![(out, out), (out, out)]));
            }
        }
        if l.activation {
            nodes.push(gate(out, vec![(out, out)]));
        }
        h = out;
    }
    let scores = h;
    let reg = spec.l2 != 0.0 && (labels || param_grads);
    if reg {
        for (k, &w) in weights.iter().enumerate() {
            nodes.push(gate(1, vec![(w, w)]));
            if k > 0 {
                nodes.push(gate(1, vec![(1, 1), (1, 1)]));
            }
        }
    }
    if labels {
        nodes.push(gate(1, vec![(scores, scores)]));
        if reg {
            nodes.push(gate(1, vec![(1, 1), (1, 1)]));
        }
    }
    nodes
}

fn scalar_bytes(spec: &ModelSpec) -> u64 {
    match spec.dtype {
        DType::F32 => 4,
        DType::F64 => 8,
    }
}

/// Optimizer state slots per parameter (the rule's, `OptimizerSpec::slots`).
fn state_slots(spec: &ModelSpec) -> u64 {
    spec.optimizer.slots().len() as u64
}

/// The estimated cost of `call` on a model of `spec` with a batch of `rows` rows
/// (ignored by calls without a batch). Saturates rather than overflows: an absurd
/// request gets an absurd estimate, and is refused.
pub fn estimate(spec: &ModelSpec, rows: usize, call: Call) -> Cost {
    let e = Estimator::new(spec, rows as u64, call);
    Cost {
        peak_bytes: e.peak().saturating_add(CALL_OVERHEAD),
        work: e.work(),
        answer_bytes: e.answer(),
    }
}

/// The quantities one estimate is made of, in elements unless named `_bytes`; computed
/// in u128 so that nothing a u32 wire field can say overflows.
struct Estimator<'s> {
    spec: &'s ModelSpec,
    call: Call,
    n: u128,
    /// Bytes per scalar of the model's dtype.
    s: u128,
    params: u128,
    /// The widest value a layer produces per row, or the input's.
    widest: u128,
    classes: u128,
    input: u128,
    /// Multiply-adds of the forward matrix products, and elementwise gate outputs.
    matmul_work: u128,
    gate_values: u128,
}

impl<'s> Estimator<'s> {
    fn new(spec: &'s ModelSpec, rows: u64, call: Call) -> Self {
        let n = if call.has_rows() { rows as u128 } else { 0 };
        let mut matmul_work = 0u128;
        let mut gate_values = 0u128;
        let mut widest = spec.input_dim as u128;
        for l in layers(spec) {
            let (fan_in, units, pieces) = (l.fan_in as u128, l.units as u128, l.pieces as u128);
            matmul_work += n * fan_in * units * pieces;
            // matmul, bias_add per piece, max between pieces, the activation.
            let per_piece = if spec.bias { 2 } else { 1 };
            gate_values += n * units * (per_piece * pieces + (pieces - 1) + l.activation as u128);
            widest = widest.max(units);
        }
        Estimator {
            spec,
            call,
            n,
            s: scalar_bytes(spec) as u128,
            params: spec.parameter_count().unwrap_or(u64::MAX) as u128,
            widest,
            classes: spec.num_classes as u128,
            input: spec.input_dim as u128,
            matmul_work,
            gate_values,
        }
    }

    fn max_pieces(&self) -> u128 {
        layers(self.spec)
            .iter()
            .map(|l| l.pieces as u128)
            .max()
            .unwrap_or(1)
    }

    /// Bytes of a forward pass: the batch in the model's dtype, every gate's value on the
    /// tape (leaves are borrowed), the loss's N×C scratch (SVM margins, softmax
    /// probabilities), the scores copied out.
    fn forward_bytes(&self, labels: bool) -> u128 {
        let nc = self.n * self.classes;
        let loss = if labels { nc } else { 0 };
        (self.n * self.input + self.gate_values + loss + nc) * self.s + self.n * 8
    }

    /// Bytes backward adds: every parameter's gradient, and the gradients in flight (the
    /// upstream buffer, the one being made, a fan-out's accumulator, and one pending per
    /// maxout piece), at most the widest layer each.
    fn backward_bytes(&self, upstream: bool, input_grad: bool) -> u128 {
        let nc = self.n * self.classes;
        let in_flight = (self.max_pieces() + 3) * self.n * self.widest;
        let up = if upstream { nc } else { 0 };
        let dx = if input_grad { self.n * self.input } else { 0 };
        (self.params + in_flight + up + dx + nc) * self.s
    }

    /// Bytes an update allocates: fresh values and state, checked before the swap.
    fn update_bytes(&self) -> u128 {
        (1 + state_slots(self.spec) as u128) * self.params * self.s
    }

    /// Elements of a trace's answer with values: per node its value and gradient, per
    /// edge its local and downstream gradients.
    fn trace_elements(&self) -> (u128, u128, u128) {
        let nodes = tape(self.spec, self.n as u64, true, true);
        let (mut elements, mut edges) = (0u128, 0u128);
        for node in &nodes {
            elements += 2 * node.value as u128;
            for &(input, local) in &node.edges {
                elements += input as u128 + local as u128;
                edges += 1;
            }
        }
        (elements, nodes.len() as u128, edges)
    }

    fn trace_answer(&self, values: bool) -> u128 {
        let (elements, nodes, edges) = self.trace_elements();
        let tensors = if values { elements * self.s } else { 0 };
        let per_tensor = if values {
            6 * TRACE_EDGE_BYTES as u128
        } else {
            0
        };
        tensors + nodes * (TRACE_NODE_BYTES as u128 + per_tensor) + edges * TRACE_EDGE_BYTES as u128
    }

    fn param_entries(&self) -> u128 {
        self.spec.parameter_shapes().len() as u128 * PARAM_ENTRY_BYTES as u128
    }

    fn answer_u128(&self) -> u128 {
        let overhead = ANSWER_OVERHEAD as u128;
        overhead
            + match self.call {
                // Scores (and probabilities), one prediction varint per row.
                Call::Forward { probabilities, .. } => {
                    let tensors = if probabilities { 2 } else { 1 };
                    tensors * self.n * self.classes * self.s + self.n * varint_len(self.classes - 1)
                }
                Call::Backward { input_grad, .. } => {
                    let dx = if input_grad { self.n * self.input } else { 0 };
                    (self.params + dx) * self.s + self.param_entries()
                }
                Call::GetModel { values } => {
                    self.param_entries() + if values { self.params * self.s } else { 0 }
                }
                Call::GradientCheck { .. } => self.param_entries(),
                Call::Trace { values } => self.trace_answer(values),
                Call::Evaluate | Call::TrainStep | Call::ApplyGradients => 0,
            }
    }

    fn answer(&self) -> u64 {
        clamp(self.answer_u128())
    }

    fn peak(&self) -> u64 {
        let answer = self.answer_u128();
        let bytes = match self.call {
            Call::Forward {
                labels,
                probabilities,
            } => {
                let probs = if probabilities {
                    self.n * self.classes * self.s
                } else {
                    0
                };
                self.forward_bytes(labels) + probs
            }
            Call::Evaluate => self.forward_bytes(true),
            Call::Backward {
                upstream,
                input_grad,
            } => self.forward_bytes(!upstream) + self.backward_bytes(upstream, input_grad),
            Call::TrainStep => {
                self.forward_bytes(true) + self.backward_bytes(false, false) + self.update_bytes()
            }
            Call::GradientCheck { .. } => {
                // In f64: a copy of the net and the batch, the analytic gradients kept,
                // then one backward pass (a forward pass costs less).
                let f64_scale = 8 / self.s;
                (self.forward_bytes(true) + self.backward_bytes(false, false)) * f64_scale
                    + self.params * 8 * 2
                    + self.n * self.input * 8
            }
            Call::Trace { values } => {
                let retained = if values {
                    // backward(retain_all): a gradient for every node, up to its size.
                    let (elements, _, _) = self.trace_elements();
                    (self.params + elements) * self.s
                } else {
                    0
                };
                self.forward_bytes(true) + retained + self.trace_answer(values)
            }
            Call::GetModel { values } => {
                if values {
                    self.params * self.s
                } else {
                    0
                }
            }
            Call::ApplyGradients => self.params * self.s + self.update_bytes(),
        };
        clamp(bytes + answer)
    }

    fn work(&self) -> u64 {
        let forward = self.matmul_work + self.gate_values;
        let backward = 2 * self.matmul_work + self.gate_values + self.params;
        clamp(match self.call {
            Call::Forward { .. } | Call::Evaluate => forward,
            Call::Backward { .. } => forward + backward,
            Call::TrainStep => forward + backward + 4 * self.params,
            // Two forward passes per checked element, after one backward pass.
            Call::GradientCheck { checks } => forward + backward + 2 * checks as u128 * forward,
            // Backward once, then each edge's gate again on its own: about twice.
            Call::Trace { .. } => forward + 2 * backward,
            Call::GetModel { .. } => self.params,
            Call::ApplyGradients => 4 * self.params,
        })
    }
}

/// Bytes of `v` as a protobuf varint.
fn varint_len(v: u128) -> u128 {
    let bits = 128 - v.leading_zeros().min(127) as u128;
    bits.div_ceil(7)
}

fn clamp(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Decides whether a call is taken, with the server's limits.
#[derive(Debug, Clone)]
pub struct Admission {
    pub limits: RequestLimits,
    /// The largest message the server sends.
    pub max_message_bytes: usize,
}

impl Admission {
    /// The per-call cap and the flag that sets it: the configured one, else the memory
    /// budget (the smaller of the two when both are set); `None` = none.
    pub fn call_cap(&self, store: &SessionStore) -> Option<(u64, &'static str)> {
        let limits = store.limits();
        let call = limits.max_call_memory.map(|c| (c, "--max-call-memory"));
        let budget = limits.max_memory.map(|b| (b, "--max-memory"));
        match (call, budget) {
            (Some(c), Some(b)) => Some(if c.0 <= b.0 { c } else { b }),
            (c, b) => c.or(b),
        }
    }

    /// Estimates `call` and takes it: refuses it if it can never succeed here, else
    /// reserves its peak plus `request_bytes` (the request held while it waits) against
    /// the memory budget. The reservation is the call's to hold until it returns.
    pub fn admit(
        &self,
        store: &SessionStore,
        spec: &ModelSpec,
        rows: usize,
        call: Call,
        request_bytes: u64,
    ) -> Result<(Cost, Reservation), Status> {
        let cost = estimate(spec, rows, call);
        // The request grows with its rows too (the batch, the labels, an upstream).
        let request_per_row = request_bytes / rows.max(1) as u64;
        let need_at = |r: u64| {
            estimate(spec, r as usize, call)
                .peak_bytes
                .saturating_add(request_per_row.saturating_mul(r))
        };
        let answer_at = |r: u64| estimate(spec, r as usize, call).answer_bytes;
        let rows_fitting = |budget: u64, of: &dyn Fn(u64) -> u64| {
            call.has_rows().then(|| most_rows(budget, of)).flatten()
        };
        let limit = self.max_message_bytes as u64;
        if cost.answer_bytes > limit {
            let how = match call {
                Call::GetModel { .. } => {
                    "set include_values false and fetch the values with ExportModel, which \
                     streams them in chunks"
                        .to_string()
                }
                Call::Backward { input_grad, .. } if rows_fitting(limit, &answer_at).is_none() => {
                    format!(
                        "the gradients alone do not fit{}; train with TrainStep, or fetch \
                         the values with ExportModel (chunked)",
                        if input_grad {
                            " even without return_input_grad"
                        } else {
                            ""
                        }
                    )
                }
                Call::Trace { values: true } => match rows_fitting(limit, &answer_at) {
                    Some(r) => format!("send at most {r} rows, or set shapes_only"),
                    None => "set shapes_only for the structure alone".into(),
                },
                _ => match rows_fitting(limit, &answer_at) {
                    Some(r) => format!("send at most {r} rows"),
                    None => "no batch is small enough for this model".into(),
                },
            };
            return Err(invalid_because(
                Reason::AnswerTooLarge,
                field_of(call),
                format!(
                    "the {} answer would be about {} bytes, more than this server's message \
                     limit of {limit} bytes, so it can never be sent; {how}",
                    call.name(),
                    cost.answer_bytes
                ),
            )
            .limit(
                "--max-message-mib",
                format!(
                    "an answer of about {} bytes, more than the {limit}-byte message limit",
                    cost.answer_bytes
                ),
            )
            .into());
        }
        let need = cost.peak_bytes.saturating_add(request_bytes);
        if let Some((cap, flag)) = self.call_cap(store)
            && need > cap
        {
            let how = match rows_fitting(cap, &need_at) {
                Some(r) => format!("send at most {r} rows"),
                None if call.has_rows() => "no batch is small enough for this model".into(),
                None => "use a smaller model".into(),
            };
            return Err(invalid_because(
                Reason::CallMemory,
                field_of(call),
                format!(
                    "this {} needs about {need} bytes at its peak, more than this server \
                     allows one call ({cap} bytes, --max-call-memory or --max-memory), so \
                     it can never succeed here; {how}",
                    call.name()
                ),
            )
            .limit(
                flag,
                format!(
                    "a peak of about {need} bytes, more than the {cap} bytes one call may take"
                ),
            )
            .into());
        }
        let reservation = store.reserve(need)?;
        Ok((cost, reservation))
    }
}

/// The field a refusal names: the batch for calls with one.
fn field_of(call: Call) -> &'static str {
    match call {
        Call::GetModel { .. } => "include_values",
        Call::ApplyGradients => "gradients",
        _ => "x",
    }
}

/// The most rows for which `of(rows)` stays within `budget`, if one row does: the
/// estimates are affine in the rows, so two points give the line.
fn most_rows(budget: u64, of: &dyn Fn(u64) -> u64) -> Option<u64> {
    let one = of(1) as u128;
    if one > budget as u128 {
        return None;
    }
    let per_row = (of(2) as u128).saturating_sub(one).max(1);
    Some(clamp(1 + (budget as u128 - one) / per_row))
}

/// Refuses absurd dimensions before validation multiplies them.
pub fn check_spec_size(spec: &ModelSpec) -> Result<(), Status> {
    for (field, d) in [
        ("spec.input_dim", spec.input_dim),
        ("spec.num_classes", spec.num_classes),
    ]
    .into_iter()
    .chain(spec.hidden.iter().map(|h| ("spec.hidden[].units", h.units)))
    {
        if d > MAX_DIM {
            return Err(invalid(
                field,
                format!("{d} is beyond the largest dimension, {MAX_DIM}"),
            ));
        }
    }
    if spec.hidden.len() > MAX_DEPTH {
        return Err(invalid(
            "spec.hidden",
            format!("at most {MAX_DEPTH} hidden layers"),
        ));
    }
    Ok(())
}

/// The largest checkpoint header a model within [`MAX_DEPTH`] layers can have: per
/// parameter tensor and optimizer slot (at most 16 maxout pieces of weight and bias per
/// layer, three slots) an entry of under 200 bytes, plus the spec (with its
/// standardization and class names, `checkpoint::MAX_SPEC_BYTES`). A header beyond this
/// is refused before it is parsed: parsing a million-layer spec costs gigabytes.
pub const MAX_CHECKPOINT_HEADER: u64 = crate::checkpoint::MAX_HEADER_BYTES;

/// Checks a checkpoint's header length (its first 8 bytes, little-endian, as in every
/// safetensors file) before anything decodes it.
pub fn check_checkpoint_header(file: &[u8]) -> Result<(), Status> {
    let Some(len) = file.get(..8) else {
        return Ok(()); // too short: the decoder says what is wrong
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len);
    let n = u64::from_le_bytes(n);
    // A length past the file's end is no safetensors file at all: the decoder says so.
    if n > MAX_CHECKPOINT_HEADER && n <= file.len() as u64 - 8 {
        return Err(invalid(
            "checkpoint",
            format!(
                "the header is {n} bytes, more than any model within this server's limits \
                 has ({MAX_CHECKPOINT_HEADER} bytes: at most {MAX_DEPTH} hidden layers of \
                 {} maxout pieces)",
                crate::model::spec::MAX_PIECES
            ),
        ));
    }
    Ok(())
}

/// The limits of a trace with values, from the spec alone (before any lock or math).
/// The whole answer's size is checked by [`Admission::admit`].
pub fn check_trace_size(spec: &ModelSpec, rows: usize) -> Result<(), Status> {
    if rows > TRACE_MAX_ROWS {
        return Err(invalid(
            "x",
            format!(
                "a trace with values takes at most {TRACE_MAX_ROWS} rows, got {rows}; \
                 send fewer rows or set shapes_only"
            ),
        ));
    }
    let (what, n) = crate::model::trace::largest_value(spec, rows);
    if n > TRACE_MAX_NODE_ELEMENTS {
        return Err(invalid(
            "shapes_only",
            format!(
                "{what} has {n} elements, more than the {TRACE_MAX_NODE_ELEMENTS} a trace \
                 with values allows per node; set shapes_only for the structure alone"
            ),
        ));
    }
    Ok(())
}

/// Numeric-gradient evaluations a GradientCheck costs (elements checked × rows ×
/// parameters), refused over `max_gradcheck_work`; returns the elements checked.
pub fn check_gradcheck(
    limits: &RequestLimits,
    spec: &ModelSpec,
    rows: usize,
    per_parameter: u64,
) -> Result<u64, Status> {
    let checks: u64 = spec
        .parameter_shapes()
        .iter()
        .map(|p| {
            let n = p.shape.iter().product::<usize>() as u64;
            if per_parameter == 0 {
                n
            } else {
                n.min(per_parameter)
            }
        })
        .sum();
    let work = checks
        .saturating_mul(rows as u64)
        .saturating_mul(spec.parameter_count().unwrap_or(u64::MAX));
    if work > limits.max_gradcheck_work {
        return Err(invalid(
            "max_elements_per_parameter",
            format!(
                "checking {checks} elements on {rows} rows is too much work for one call; \
                 set max_elements_per_parameter lower or send fewer rows"
            ),
        ));
    }
    Ok(checks)
}

/// Characters of a client's string quoted back in a message or a log line, at most.
const ECHO_CHARS: usize = 40;

/// `s` as it may be echoed: whole if short, else its first characters and its length.
pub fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        None => format!("{s:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &s[..end], s.len()),
    }
}

/// Refuses a model id that is not of the shape CreateModel hands out, before it is
/// looked up, logged or echoed.
pub fn check_model_id(id: &str) -> Result<(), Status> {
    if SessionId::parse(id).is_none() {
        return Err(invalid(
            "model_id",
            format!(
                "{} is not a model id (32 hex digits, or REPLICA.32 hex digits, as \
                 CreateModel and ImportModel return)",
                echo(id)
            ),
        ));
    }
    Ok(())
}

/// Refuses a dataset id (in `field`) that is not of the shape UploadDataset hands out.
pub fn check_dataset_id(field: &str, id: &str) -> Result<(), Status> {
    if SessionId::parse(id).is_none() {
        return Err(invalid(
            field,
            format!(
                "{} is not a dataset id (32 hex digits, or REPLICA.32 hex digits, as \
                 UploadDataset returns)",
                echo(id)
            ),
        ));
    }
    Ok(())
}
