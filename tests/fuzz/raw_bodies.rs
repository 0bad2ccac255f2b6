//! `raw_bodies_*`: any bytes as the whole message of every method; the server must agree with prost about whether they decode.
use super::*;

/// Sends and receives message bodies as they are, so any bytes reach the server's decoder.
#[derive(Clone, Copy)]
pub(crate) struct RawCodec;
pub(crate) struct RawEncoder;
pub(crate) struct RawDecoder;

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

pub(crate) fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("/backprop.v1.Trainer/{method}")).expect("path")
}

/// One unary call with `body` as the whole message.
/// One call with `body` as the whole (single) request message; the answer's messages
/// (one, or ExportModel's chunks).
pub(crate) async fn raw_call(
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
            "ExportModel" | "Fit" | "WatchFit" => {
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
            "ImportModel" | "UploadDataset" => {
                let stream = tonic::codegen::tokio_stream::iter(vec![one.into_inner()]);
                let r = g
                    .client_streaming(tonic::Request::new(stream), path(method), RawCodec)
                    .await?;
                Ok(r.map(|m| vec![m]))
            }
            "TrainStream" => {
                let stream = tonic::codegen::tokio_stream::iter(vec![one.into_inner()]);
                let mut answers = g
                    .streaming(tonic::Request::new(stream), path(method), RawCodec)
                    .await?
                    .into_inner();
                let mut messages = Vec::new();
                while let Some(m) = answers.message().await? {
                    messages.push(m);
                }
                Ok(tonic::Response::new(messages))
            }
            _ => Ok(g.unary(one, path(method), RawCodec).await?.map(|m| vec![m])),
        }
    };
    within(method, call).await
}

/// Bytes, shown as hex in a failing case.
#[derive(Clone, PartialEq)]
pub(crate) struct Hex(pub(crate) Vec<u8>);

impl Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes: ", self.0.len())?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

pub(crate) fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

pub(crate) fn key(field: u32, wire: u8) -> Vec<u8> {
    varint(((field as u64) << 3) | wire as u64)
}

/// A length-delimited field holding `inner`.
pub(crate) fn ld(field: u32, inner: &[u8]) -> Vec<u8> {
    [key(field, 2), varint(inner.len() as u64), inner.to_vec()].concat()
}

/// What prost derives for the messages that hold a `Tensor`, so the hand-written codec
/// inside `backprop::pb` has an independent oracle.
pub(crate) mod reference {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(uint32, repeated, tag = "1")]
        pub shape: Vec<u32>,
        #[prost(float, repeated, tag = "2")]
        pub values: Vec<f32>,
        #[prost(double, repeated, tag = "3")]
        pub values_f64: Vec<f64>,
        #[prost(bytes = "vec", tag = "4")]
        pub raw: Vec<u8>,
        #[prost(int32, tag = "5")]
        pub raw_dtype: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub tensor: Option<Tensor>,
    }
    /// Forward's request: Evaluate's three fields and `probabilities`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Forward {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, optional, tag = "2")]
        pub x: Option<Tensor>,
        #[prost(uint32, repeated, tag = "3")]
        pub labels: Vec<u32>,
        #[prost(bool, tag = "4")]
        pub probabilities: bool,
    }
    /// Evaluate's request.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Batch {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, optional, tag = "2")]
        pub x: Option<Tensor>,
        #[prost(uint32, repeated, tag = "3")]
        pub labels: Vec<u32>,
    }
    /// A TrainStep request: a batch and the step's own learning rate.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TrainStep {
        #[prost(string, tag = "1")]
        pub model_id: String,
        #[prost(message, optional, tag = "2")]
        pub x: Option<Tensor>,
        #[prost(uint32, repeated, tag = "3")]
        pub labels: Vec<u32>,
        #[prost(double, optional, tag = "4")]
        pub learning_rate: Option<f64>,
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
pub(crate) type Decoded = Result<(Vec<u8>, String), prost::DecodeError>;

pub(crate) fn decode_both(method: &str, b: &[u8]) -> (Decoded, Decoded) {
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
        "Forward" => both!(pb::ForwardRequest, reference::Forward),
        "TrainStep" => both!(pb::TrainStepRequest, reference::TrainStep),
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
        "UpdateModel" => both!(pb::UpdateModelRequest, pb::UpdateModelRequest),
        "CreateModel" => {
            let d = one::<pb::CreateModelRequest>(b, |_| String::new());
            (d.clone(), d)
        }
        "ListModels" => {
            let d = one::<pb::ListModelsRequest>(b, |_| String::new());
            (d.clone(), d)
        }
        // The streams, datasets, fits and history: prost's own types on both sides but
        // TrainStream's, whose Tensor is the hand codec on ours.
        "TrainStream" => both!(pb::TrainStreamRequest, pb::TrainStreamRequest),
        "Fit" => both!(pb::FitRequest, pb::FitRequest),
        "WatchFit" => both!(pb::WatchFitRequest, pb::WatchFitRequest),
        "CancelFit" => both!(pb::CancelFitRequest, pb::CancelFitRequest),
        "GetHistory" => both!(pb::GetHistoryRequest, pb::GetHistoryRequest),
        "UploadDataset" => {
            let d = one::<pb::DatasetChunk>(b, |_| String::new());
            (d.clone(), d)
        }
        "GetDataset" => {
            let d = one::<pb::GetDatasetRequest>(b, |_| String::new());
            (d.clone(), d)
        }
        "ListDatasets" => {
            let d = one::<pb::ListDatasetsRequest>(b, |_| String::new());
            (d.clone(), d)
        }
        "DeleteDataset" => {
            let d = one::<pb::DeleteDatasetRequest>(b, |_| String::new());
            (d.clone(), d)
        }
        other => unreachable!("no method {other}"),
    }
}

/// Whether the response bytes decode as `method`'s response; the created model's id for
/// CreateModel.
pub(crate) fn decode_response(
    method: &str,
    b: &[u8],
) -> Result<Option<String>, prost::DecodeError> {
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
        "UpdateModel" => ok::<pb::ModelMetadata>(b),
        "GradientCheck" => ok::<pb::GradientCheckResponse>(b),
        "TraceStep" => ok::<pb::TraceStepResponse>(b),
        "ExportModel" => ok::<pb::CheckpointChunk>(b),
        "ImportModel" => pb::ImportModelResponse::decode(b).map(|r| Some(r.model_id)),
        "TrainStream" => ok::<pb::TrainStreamResponse>(b),
        "Fit" | "WatchFit" => ok::<pb::FitEvent>(b),
        "CancelFit" => ok::<pb::CancelFitResponse>(b),
        "GetHistory" => ok::<pb::GetHistoryResponse>(b),
        "UploadDataset" | "GetDataset" => ok::<pb::DatasetInfo>(b),
        "ListDatasets" => ok::<pb::ListDatasetsResponse>(b),
        "DeleteDataset" => ok::<pb::DeleteDatasetResponse>(b),
        other => unreachable!("no method {other}"),
    }
}

/// A valid request, encoded, and its method.
pub(crate) fn encoded(call: &Call) -> Vec<u8> {
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
pub(crate) fn hostile_tensor() -> BoxedStrategy<Vec<u8>> {
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
                reference::Tensor { shape, values, values_f64, ..Default::default() }.encode_to_vec()
            }
        ),
    ];
    vec(one, 1..=3).prop_map(|parts| parts.concat()).boxed()
}

/// A change to a valid encoding.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
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
pub(crate) fn well_formed_field() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => (16u32..2000, any::<u64>()).prop_map(|(f, v)| [key(f, 0), varint(v)].concat()),
        1 => (16u32..2000, any::<u64>()).prop_map(|(f, v)| [key(f, 1), v.to_le_bytes().to_vec()].concat()),
        1 => (16u32..2000, any::<u32>()).prop_map(|(f, v)| [key(f, 5), v.to_le_bytes().to_vec()].concat()),
        2 => (16u32..2000, vec(any::<u8>(), 0..24)).prop_map(|(f, b)| ld(f, &b)),
        3 => (vec(0u32..6, 0..4), vec(-3.0f32..3.0, 0..12), vec(-3.0f64..3.0, 0..6)).prop_map(
            |(shape, values, values_f64)| {
                ld(2, &reference::Tensor { shape, values, values_f64, ..Default::default() }.encode_to_vec())
            }
        ),
    ]
    .boxed()
}

pub(crate) fn mutation() -> BoxedStrategy<Mutation> {
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

pub(crate) fn mutate(method: &str, mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
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

/// Every Trainer method (a test below checks the list against the descriptor set).
pub(crate) const METHODS: [&str; 23] = [
    "TrainStream",
    "UploadDataset",
    "GetDataset",
    "ListDatasets",
    "DeleteDataset",
    "Fit",
    "WatchFit",
    "CancelFit",
    "GetHistory",
    "CreateModel",
    "Forward",
    "Backward",
    "TrainStep",
    "ApplyGradients",
    "Evaluate",
    "GetModel",
    "ListModels",
    "DeleteModel",
    "UpdateModel",
    "GradientCheck",
    "TraceStep",
    "ExportModel",
    "ImportModel",
];

#[derive(Debug, Clone)]
pub(crate) struct RawCase {
    pub(crate) method: &'static str,
    /// What the body was made from (read by `Debug`, in a failure report).
    #[allow(dead_code)]
    pub(crate) made_from: String,
    pub(crate) body: Hex,
}

pub(crate) fn raw_strategy(
    lives: Arc<Vec<Live>>,
    ids: Vec<String>,
    deleted: String,
    files: Vec<Vec<u8>>,
) -> BoxedStrategy<RawCase> {
    // A whole checkpoint in one chunk, as ImportModel's single message.
    let chunk = proptest::sample::select(files)
        .prop_map(|f| ("ImportModel", upload(&f, f.len())[0].encode_to_vec()));
    let updates = update_model(ids.clone());
    let valid = prop_oneof![
        1 => chunk,
        1 => updates,
        6 => case_strategy(lives).prop_map(move |c| {
            let call = c.fill(&ids, &deleted);
            (call.name(), encoded(&call))
        }),
        1 => model_spec().prop_map(|spec| ("CreateModel", pb::CreateModelRequest { spec, ..Default::default() }.encode_to_vec())),
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

/// UpdateModel bodies for the fixtures, with names and labels good and bad: an accepted
/// one may change only the metadata, a refused one nothing.
fn update_model(ids: Vec<String>) -> impl Strategy<Value = (&'static str, Vec<u8>)> + Clone {
    let text = prop_oneof![
        Just(String::new()),
        "[a-z ]{1,12}",
        Just("x".repeat(129)),
        Just("bell\u{7}".to_string()),
    ];
    let key = prop_oneof![
        "[a-z][a-z0-9._-]{0,8}[a-z0-9]",
        Just("-bad".to_string()),
        Just("a b".to_string()),
        Just(String::new()),
    ];
    (
        proptest::sample::select(ids),
        proptest::option::of(text.clone()),
        vec((key.clone(), text), 0..4),
        vec(key, 0..3),
    )
        .prop_map(|(model_id, name, set, remove)| {
            let request = pb::UpdateModelRequest {
                model_id,
                name,
                set_labels: set.into_iter().collect(),
                remove_labels: remove,
            };
            ("UpdateModel", request.encode_to_vec())
        })
}

pub(crate) fn raw_case(h: &Harness, case: RawCase) -> Result<(), TestCaseError> {
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
        let datasets = dataset_count(&mut h.client()).await?;
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
        if answer.is_err() {
            prop_assert_eq!(
                dataset_count(&mut h.client()).await?,
                datasets,
                "{}: refused, yet a dataset was created",
                what
            );
        }
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
                check_error_info(what, s)?;
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
            // An accepted UpdateModel may change the file's metadata (checked apart).
            let checked = if what == "UpdateModel" && answer.is_ok() {
                "UpdateModel accepted"
            } else {
                what
            };
            h.check_model(i, update.as_ref(), checked).await?;
        }
        h.healthy(what).await
    })
}

async fn dataset_count(c: &mut Client) -> Result<usize, TestCaseError> {
    Ok(within(
        "ListDatasets",
        c.list_datasets(pb::ListDatasetsRequest::default()),
    )
    .await?
    .map_err(|s| fail(format!("ListDatasets failed: {s:?}")))?
    .datasets
    .len())
}

#[test]
pub(crate) fn the_raw_bodies_cover_every_trainer_method() {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut all: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| f.service.iter())
        .filter(|s| s.name() == "Trainer")
        .flat_map(|s| s.method.iter().map(|m| m.name().to_string()))
        .collect();
    all.sort();
    let mut ours: Vec<String> = METHODS.iter().map(|m| m.to_string()).collect();
    ours.sort();
    assert_eq!(
        ours, all,
        "a Trainer method the raw-bodies fuzz never calls"
    );
}

#[test]
pub(crate) fn raw_bodies_for_every_method_are_decoded_or_refused() {
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
                ..Default::default()
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
