//! A model's whole state as one safetensors file: what ExportModel sends, ImportModel
//! takes, and `--state-dir` keeps on disk.
//!
//! Tensors carry the API's names: the parameters (`layers.0.weight`, `layers.1.bias`,
//! `layers.0.pieces.1.weight`, …) and, per parameter, the optimizer's state slots under
//! their rule's names (`layers.0.weight.momentum`, `.rmsprop_cache`, `.adam_m`,
//! `.adam_v`, …; see [`Slot`](crate::model::optim::Slot)), all in the model's dtype (F32
//! or F64). `__metadata__` holds the spec as JSON (the same fields as [`ModelSpec`]'s
//! serde form), the step, Adam's t and the format name; callers may add keys of their
//! own (the session store adds the id and the owner).
//!
//! Decoding is strict: every tensor the spec implies must be present with its shape,
//! dtype and finite values (second moments ≥ 0), and nothing else may be, so a file
//! either restores a model that continues bit-identically or is refused with the first
//! thing wrong. The header and the spec are size-checked before they are parsed.
pub mod file;

use std::borrow::Cow;
use std::collections::HashMap;

use ndarray::ArrayD;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, View};

use crate::engine::error::EngineError;
use crate::engine::scalar::Scalar;
use crate::model::optim::Optimizer;
use crate::model::spec::MAX_HIDDEN_LAYERS;
use crate::model::{AnyModel, DType, Model, ModelSpec};
use crate::with_model;

/// The value of the `format` metadata key; bumped if the layout ever changes.
pub const FORMAT: &str = "backprop.checkpoint.v1";

/// Metadata keys this module owns; others are the caller's.
const KEY_FORMAT: &str = "format";
const KEY_SPEC: &str = "spec";
const KEY_STEP: &str = "step";
const KEY_T: &str = "optimizer_t";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a readable safetensors file at all.
    #[error("not a safetensors file: {0}")]
    Format(String),
    /// A `__metadata__` entry is missing or wrong.
    #[error("__metadata__.{key}: {reason}")]
    Metadata { key: String, reason: String },
    /// A tensor is missing, unexpected, or of the wrong dtype.
    #[error("tensor {name:?}: {reason}")]
    Tensor { name: String, reason: String },
    /// The tensors are there but do not make a valid model (shape, non-finite value).
    #[error(transparent)]
    Model(#[from] EngineError),
}

impl CheckpointError {
    fn meta(key: &str, reason: impl Into<String>) -> Self {
        CheckpointError::Metadata {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A decoded checkpoint: the model and the metadata keys this module does not own.
#[derive(Debug)]
pub struct Decoded {
    pub model: AnyModel,
    pub extra: HashMap<String, String>,
}

/// Encodes the model's whole state, with `extra` metadata beside the module's own keys.
pub fn encode(model: &AnyModel, extra: &[(&str, &str)]) -> Result<Vec<u8>, CheckpointError> {
    with_model!(model, m => encode_typed(m, extra))
}

/// The largest JSON header a checkpoint may have. The largest model a spec allows
/// ([`MAX_HIDDEN_LAYERS`] + 1 layers of [`MAX_PIECES`](crate::model::spec::MAX_PIECES) pieces, a weight and a bias each,
/// with two optimizer slots) has about 12,400 tensors of under 160 bytes of header each:
/// 2 MiB, plus the spec (at most [`MAX_SPEC_BYTES`]), plus room for callers' own metadata.
pub const MAX_HEADER_BYTES: u64 = 10 << 20;
/// The largest spec JSON: one of [`MAX_HIDDEN_LAYERS`] layers with every field at its
/// longest takes about 12 KiB; a standardization of
/// [`MAX_STANDARDIZED_DIM`](crate::model::spec::MAX_STANDARDIZED_DIM) columns about 3 MiB
/// (two f64 of up to 24 characters each per column), and
/// [`MAX_NAMED_CLASSES`](crate::model::spec::MAX_NAMED_CLASSES) names of 128 bytes (JSON
/// escapes can double them) about 2.5 MiB.
pub const MAX_SPEC_BYTES: usize = 6 << 20;

/// Decodes and validates a checkpoint (see the module doc for what is checked). The
/// header's size is checked before it is parsed, and the spec's size and depth before
/// anything is built from it, so a hostile file costs at most a few MiB to refuse.
pub fn decode(bytes: &[u8]) -> Result<Decoded, CheckpointError> {
    if let Some(prefix) = bytes.get(..8) {
        let n = u64::from_le_bytes(prefix.try_into().unwrap_or_default());
        if n > MAX_HEADER_BYTES {
            return Err(CheckpointError::Format(format!(
                "the JSON header is {n} bytes, more than the {MAX_HEADER_BYTES} any model \
                 this server can hold needs"
            )));
        }
    }
    // One parse of the header; it also checks that every tensor's byte range lies in the
    // buffer and that the buffer ends where the last one does.
    let (n, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
    let file = Tensors {
        header: &header,
        data: &bytes[8 + n..],
    };
    let mut meta = header.metadata().clone().unwrap_or_default();
    let mut take = |key: &str| {
        meta.remove(key)
            .ok_or_else(|| CheckpointError::meta(key, "missing"))
    };
    let format = take(KEY_FORMAT)?;
    if format != FORMAT {
        return Err(CheckpointError::meta(
            KEY_FORMAT,
            format!("{format:?} is not {FORMAT:?}"),
        ));
    }
    let spec = decode_spec(&take(KEY_SPEC)?)?;
    let number = |key: &str, text: String| {
        text.parse::<u64>()
            .map_err(|_| CheckpointError::meta(key, format!("{text:?} is not a whole number")))
    };
    let step = number(KEY_STEP, take(KEY_STEP)?)?;
    let t = number(KEY_T, take(KEY_T)?)?;
    spec.validate()?;
    let model = match spec.dtype {
        DType::F32 => AnyModel::F32(decode_typed(&file, spec, t, step)?),
        DType::F64 => AnyModel::F64(decode_typed(&file, spec, t, step)?),
    };
    Ok(Decoded { model, extra: meta })
}

/// The spec from its JSON, within [`MAX_SPEC_BYTES`] and [`MAX_HIDDEN_LAYERS`] (the
/// size bounds what deserializing may build; the depth is checked before the spec is
/// validated or any shape computed from it).
fn decode_spec(json: &str) -> Result<ModelSpec, CheckpointError> {
    if json.len() > MAX_SPEC_BYTES {
        return Err(CheckpointError::meta(
            KEY_SPEC,
            format!(
                "{} bytes of JSON, more than the {MAX_SPEC_BYTES} a spec of at most \
                 {MAX_HIDDEN_LAYERS} hidden layers needs",
                json.len()
            ),
        ));
    }
    let spec: ModelSpec = serde_json::from_str(json)
        .map_err(|e| CheckpointError::meta(KEY_SPEC, format!("not a model spec: {e}")))?;
    if spec.hidden.len() > MAX_HIDDEN_LAYERS {
        return Err(CheckpointError::meta(
            KEY_SPEC,
            format!(
                "{} hidden layers; at most {MAX_HIDDEN_LAYERS}",
                spec.hidden.len()
            ),
        ));
    }
    Ok(spec)
}

/// The scalars a checkpoint stores, with their safetensors dtype and byte order.
trait Stored: Scalar {
    const DTYPE: Dtype;
    const BYTES: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

impl Stored for f32 {
    const DTYPE: Dtype = Dtype::F32;
    const BYTES: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        f32::from_le_bytes(bytes.try_into().unwrap_or_default())
    }
}

impl Stored for f64 {
    const DTYPE: Dtype = Dtype::F64;
    const BYTES: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        f64::from_le_bytes(bytes.try_into().unwrap_or_default())
    }
}

/// One tensor's little-endian bytes, as safetensors wants to write them.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Bytes {
    fn of<T: Stored>(a: &ArrayD<T>) -> Self {
        let mut data = Vec::with_capacity(a.len() * T::BYTES);
        // `iter` walks in logical (row-major) order whatever the memory layout.
        a.iter().for_each(|&v| v.put(&mut data));
        Bytes {
            dtype: T::DTYPE,
            shape: a.shape().to_vec(),
            data,
        }
    }
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn encode_typed<T: Stored>(
    m: &Model<T>,
    extra: &[(&str, &str)],
) -> Result<Vec<u8>, CheckpointError> {
    let params = m.net().params();
    let (slots, t) = m.optimizer().state();
    let names = Optimizer::<T>::slot_names(&m.net().spec().optimizer);
    let mut tensors: Vec<(String, Bytes)> = Vec::with_capacity(params.len() * (1 + slots.len()));
    for (i, p) in params.iter().enumerate() {
        tensors.push((p.name.clone(), Bytes::of(&p.value)));
        for (slot, name) in slots.iter().zip(&names) {
            tensors.push((format!("{}.{name}", p.name), Bytes::of(&slot[i])));
        }
    }
    let spec = serde_json::to_string(m.net().spec())
        .map_err(|e| CheckpointError::meta(KEY_SPEC, e.to_string()))?;
    let mut meta: HashMap<String, String> = extra
        .iter()
        .map(|&(k, v)| (k.to_string(), v.to_string()))
        .collect();
    meta.insert(KEY_FORMAT.into(), FORMAT.into());
    meta.insert(KEY_SPEC.into(), spec);
    meta.insert(KEY_STEP.into(), m.step().to_string());
    meta.insert(KEY_T.into(), t.to_string());
    let mut file = safetensors::serialize(tensors.iter().map(|(n, b)| (n.as_str(), b)), Some(meta))
        .map_err(|e| CheckpointError::Format(e.to_string()))?;
    sort_header(&mut file)?;
    Ok(file)
}

/// Rewrites the JSON header with its keys sorted (the crate writes `__metadata__` from a
/// hash map, in random order), so one state always gives the same bytes and the same
/// SHA-256. Same keys and values, so the same length: the tensor data does not move.
fn sort_header(file: &mut [u8]) -> Result<(), CheckpointError> {
    let bad = |e: String| CheckpointError::Format(format!("sorting the header: {e}"));
    let n = u64::from_le_bytes(file[..8].try_into().map_err(|_| bad("short".into()))?) as usize;
    let header = file.get_mut(8..8 + n).ok_or_else(|| bad("short".into()))?;
    // serde_json's map is a BTreeMap (no preserve_order), so this sorts every object.
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    let sorted = serde_json::to_vec(&value).map_err(|e| bad(e.to_string()))?;
    if sorted.len() > n {
        return Err(bad(format!("{} bytes where {n} were", sorted.len())));
    }
    header[..sorted.len()].copy_from_slice(&sorted);
    header[sorted.len()..].fill(b' ');
    Ok(())
}

/// The tensors of a checkpoint: its parsed header and the bytes after it.
struct Tensors<'a> {
    header: &'a Metadata,
    data: &'a [u8],
}

fn decode_typed<T: Stored>(
    file: &Tensors<'_>,
    spec: ModelSpec,
    t: u64,
    step: u64,
) -> Result<Model<T>, CheckpointError> {
    let shapes = spec.parameter_shapes();
    let slot_names = Optimizer::<T>::slot_names(&spec.optimizer);
    let expected = shapes.len() * (1 + slot_names.len());
    let names = file.header.tensors();
    if names.len() != expected {
        let known: std::collections::HashSet<String> = shapes
            .iter()
            .flat_map(|s| {
                std::iter::once(s.name.clone())
                    .chain(slot_names.iter().map(move |n| format!("{}.{n}", s.name)))
            })
            .collect();
        if let Some(name) = names.keys().find(|n| !known.contains(*n)) {
            return Err(CheckpointError::Tensor {
                name: name.to_string(),
                reason: "not a parameter or optimizer state of this spec".into(),
            });
        }
    }
    let read = |name: &str| -> Result<ArrayD<T>, CheckpointError> {
        let bad = |reason: String| CheckpointError::Tensor {
            name: name.to_string(),
            reason,
        };
        let info = file
            .header
            .info(name)
            .ok_or_else(|| bad("missing".to_string()))?;
        if info.dtype != T::DTYPE {
            return Err(bad(format!(
                "dtype {:?}, but the spec's dtype is {:?}",
                info.dtype,
                T::DTYPE
            )));
        }
        let (start, end) = info.data_offsets;
        let raw = file
            .data
            .get(start..end)
            .ok_or_else(|| bad(format!("bytes {start}..{end} lie outside the file")))?;
        let values: Vec<T> = raw.chunks_exact(T::BYTES).map(T::get).collect();
        ArrayD::from_shape_vec(info.shape.clone(), values).map_err(|e| bad(e.to_string()))
    };
    let values = shapes
        .iter()
        .map(|s| read(&s.name))
        .collect::<Result<Vec<_>, _>>()?;
    let slots = slot_names
        .iter()
        .map(|n| {
            shapes
                .iter()
                .map(|s| read(&format!("{}.{n}", s.name)))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Model::from_state(spec, values, slots, t, step)?)
}
