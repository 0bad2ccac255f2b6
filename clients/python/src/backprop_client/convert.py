"""numpy ↔ protobuf: tensors, model specs, datasets, checkpoints and the answers.

Shared by Client and AsyncClient (and nothing here does I/O), so both speak the same
types. Tensors always travel as `Tensor.raw` (little-endian bytes plus `raw_dtype`):
one copy of the whole array each way, no per-element Python work, and since a request
whose `x` is raw gets its answer's tensors raw too, the answers decode with
np.frombuffer. Decoded arrays are read-only views of the message's bytes; copy one
(`a.copy()`) before changing it in place.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

from ._proto import backprop_pb2 as pb

ArrayLike = Any

# Arrays in f64 go as f64 (the server converts to the model's dtype, so nothing is lost
# before it); everything else as f32, the model dtype most use.
_WIRE = {np.dtype(np.float64): ("<f8", pb.DTYPE_F64)}
_F32 = ("<f4", pb.DTYPE_F32)
_DECODE = {pb.DTYPE_UNSPECIFIED: "<f4", pb.DTYPE_F32: "<f4", pb.DTYPE_F64: "<f8"}

# The routing header a proxy in front of several replicas routes on (docs/DEPLOY.md).
ROUTE_HEADER = "x-backprop-model"
# A model or dataset id: 32 hex digits, optionally after a replica name and a dot. An
# id of another shape gets no header, so the server's answer names the body's field.
_ID = re.compile(r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\.)?[0-9a-fA-F]{32}$")


def route_metadata(to: Optional[str], explicit: bool = False) -> list:
    """`[(x-backprop-model, to)]` for an id (or, when `explicit`, any replica name)."""
    if to and (explicit or _ID.match(to)):
        return [(ROUTE_HEADER, to)]
    return []


# ---------------------------------------------------------------------------- tensors

def tensor_fields(a: ArrayLike) -> dict:
    """A raw Tensor's fields for an array: its shape and its values as little-endian
    bytes. The request builders pass this dict as the message field (`x=...`): protobuf
    then builds the Tensor in place, where a Tensor message would be copied into the
    request once more (measured: half the encoding time of a W1 batch, 2.4 MB)."""
    a = np.asarray(a)
    wire, dtype = _WIRE.get(a.dtype, _F32)
    a = np.ascontiguousarray(a, dtype=wire)
    return {"shape": a.shape, "raw": a.tobytes(), "raw_dtype": dtype}


def to_tensor(a: ArrayLike) -> pb.Tensor:
    """A raw Tensor message from an array (see tensor_fields)."""
    return pb.Tensor(**tensor_fields(a))


def from_tensor(t: pb.Tensor) -> np.ndarray:
    """The array a Tensor holds, whichever of raw, values, values_f64 carries it."""
    shape = tuple(t.shape)
    if t.raw:
        return np.frombuffer(t.raw, dtype=_DECODE[t.raw_dtype]).reshape(shape)
    if len(t.values_f64):
        return np.array(t.values_f64, dtype=np.float64).reshape(shape)
    return np.array(t.values, dtype=np.float32).reshape(shape)


def to_labels(y: ArrayLike) -> list:
    """Labels as the uint32 list a repeated field takes (one C-level conversion)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    if y.size and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= 1 << 32):
        raise ValueError("labels must be integers in [0, 2³²)")
    return y.astype(np.uint32).tolist()


def named_tensors(arrays: Mapping[str, ArrayLike]) -> list:
    return [{"name": k, "tensor": tensor_fields(v)} for k, v in arrays.items()]


# ------------------------------------------------------------------------------ specs

def _enum(enum, prefix: str, value) -> int:
    """An enum value from its number, its full name or its short name ("relu")."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    name = str(value).upper().replace("-", "_")
    return enum.Value(name if name.startswith(prefix) else prefix + name)


def _optimizer(value, learning_rate) -> pb.Optimizer:
    if isinstance(value, pb.Optimizer):
        opt = pb.Optimizer()
        opt.CopyFrom(value)
    elif isinstance(value, Mapping):
        fields = dict(value)
        kind = fields.pop("kind", "sgd")
        opt = pb.Optimizer(kind=_enum(pb.OptimizerKind, "OPTIMIZER_KIND_", kind), **fields)
    else:
        opt = pb.Optimizer(kind=_enum(pb.OptimizerKind, "OPTIMIZER_KIND_", value or "sgd"))
    if learning_rate is not None:
        opt.learning_rate = float(learning_rate)
    return opt


def _hidden(layer, activation) -> pb.HiddenLayer:
    if isinstance(layer, pb.HiddenLayer):
        return layer
    if isinstance(layer, Mapping):
        fields = dict(layer)
        act = fields.pop("activation", activation)
        if "gelu_approximate" in fields:
            fields["gelu_approximate"] = _enum(
                pb.GeluApproximate, "GELU_APPROXIMATE_", fields["gelu_approximate"])
        return pb.HiddenLayer(activation=_enum(pb.Activation, "ACTIVATION_", act), **fields)
    return pb.HiddenLayer(units=int(layer), activation=_enum(pb.Activation, "ACTIVATION_", activation))


_DTYPES = {"float32": pb.DTYPE_F32, "f32": pb.DTYPE_F32, "float64": pb.DTYPE_F64, "f64": pb.DTYPE_F64}


def model_spec(spec: Union[None, Mapping, pb.ModelSpec] = None, **kwargs) -> pb.ModelSpec:
    """A ModelSpec from a ModelSpec, a dict, or keyword arguments (which win over the dict):

        input_dim, num_classes, hidden=[100, {"units": 50, "activation": "tanh"}],
        activation="relu" (for hidden layers given as numbers), loss="svm"|"softmax",
        svm_margin, l2, optimizer="adam" or {"kind": "momentum", "momentum": 0.9},
        learning_rate (the optimizer's), init="he" or {"scheme": ..., "weight_scale": ...},
        weight_scale, seed, dtype="float32"|"float64", no_bias.

    Enums take their short names ("relu", "softmax", "adamw", "xavier") or numbers;
    unset fields keep the server's documented defaults.
    """
    if isinstance(spec, pb.ModelSpec):
        if kwargs:
            raise TypeError("pass either a ModelSpec or keyword arguments, not both")
        return spec
    fields = {**(dict(spec) if spec else {}), **kwargs}
    activation = fields.pop("activation", "relu")
    out = pb.ModelSpec(
        input_dim=int(fields.pop("input_dim")),
        num_classes=int(fields.pop("num_classes")),
        hidden=[_hidden(h, activation) for h in fields.pop("hidden", ())],
        no_bias=bool(fields.pop("no_bias", False)),
        loss=_enum(pb.LossKind, "LOSS_KIND_", fields.pop("loss", "svm")),
        l2=float(fields.pop("l2", 0.0)),
        optimizer=_optimizer(fields.pop("optimizer", None), fields.pop("learning_rate", None)),
        dtype=_DTYPES[str(np.dtype(fields.pop("dtype", "float32")))],
    )
    if "svm_margin" in fields:
        out.svm_margin = float(fields.pop("svm_margin"))
    init = fields.pop("init", None)
    if isinstance(init, Mapping):
        init = dict(init)
        scheme = init.pop("scheme", 0)
        out.init.CopyFrom(pb.Init(scheme=_enum(pb.InitScheme, "INIT_SCHEME_", scheme), **init))
    elif init is not None:
        out.init.scheme = _enum(pb.InitScheme, "INIT_SCHEME_", init)
    if "weight_scale" in fields:
        out.init.weight_scale = float(fields.pop("weight_scale"))
    if "seed" in fields:
        out.init.seed = int(fields.pop("seed"))
    # Any other ModelSpec field goes as given (e.g. a newer one), as protobuf takes it.
    unknown = sorted(set(fields) - set(pb.ModelSpec.DESCRIPTOR.fields_by_name))
    if unknown:
        raise TypeError(f"unknown model spec fields: {unknown}")
    if fields:
        out.MergeFrom(pb.ModelSpec(**fields))
    return out


# ---------------------------------------------------------------------------- answers

class Losses(NamedTuple):
    """Data loss (None when an upstream gradient was given), L2 term, their sum."""

    data_loss: Optional[float]
    reg_loss: float
    total_loss: Optional[float]


def losses(m: pb.Losses) -> Losses:
    return Losses(
        m.data_loss if m.HasField("data_loss") else None,
        m.reg_loss,
        m.total_loss if m.HasField("total_loss") else None,
    )


class CreatedModel(NamedTuple):
    model_id: str
    parameter_count: int
    spec: pb.ModelSpec  # with every default filled in


class ForwardResult(NamedTuple):
    scores: np.ndarray  # N×C in the model's dtype
    predictions: np.ndarray  # argmax of each row, uint32
    losses: Optional[Losses]  # with labels
    accuracy: Optional[float]  # with labels
    probabilities: Optional[np.ndarray] = None  # N×C softmax, when asked for


class BackwardResult(NamedTuple):
    losses: Losses
    gradients: dict  # parameter name → ndarray, in parameter order
    input_grad: Optional[np.ndarray]  # dX, when asked for


class TrainStepResult(NamedTuple):
    losses: Losses  # before the update
    accuracy: float
    step: int  # the model's step after the update


class EvaluateResult(NamedTuple):
    losses: Losses
    accuracy: float
    num_examples: int


class ModelMetadata(NamedTuple):
    """What people call a model (ModelMetadata): never read by the math."""

    name: str  # "" = none
    labels: dict  # key → value
    created_time: float  # seconds since the Unix epoch; 0 = saved before it was kept
    dataset_id: str  # the training dataset of the model's last fit; "" = none yet


class HistoryStep(NamedTuple):
    """One step as GetHistory records it; None for what the step did not measure
    (ApplyGradients sees no batch, so it has no data loss, regularization or accuracy)."""

    step: int
    data_loss: Optional[float]
    reg_loss: Optional[float]
    accuracy: Optional[float]
    learning_rate: float
    time: float  # seconds since the Unix epoch


class HistoryEpoch(NamedTuple):
    """One fit epoch's end as GetHistory records it; validation_* are None for a fit
    without validation."""

    step: int
    epoch: int
    mean_loss: Optional[float]
    train_accuracy: Optional[float]
    validation_loss: Optional[float]
    validation_accuracy: Optional[float]
    learning_rate: float
    time: float


class ModelInfo(NamedTuple):
    model_id: str
    spec: pb.ModelSpec
    step: int
    parameter_count: int
    shapes: dict  # name → shape tuple
    parameters: Optional[dict]  # name → ndarray, with values=True
    # The three below are None from a server older than GetModelResponse.metadata; the
    # last two also before the model's first step (or first fit epoch).
    metadata: Optional[ModelMetadata] = None
    last_step: Optional[HistoryStep] = None
    last_epoch: Optional[HistoryEpoch] = None


class ModelSummary(NamedTuple):
    model_id: str
    spec: pb.ModelSpec
    step: int
    parameter_count: int
    idle_seconds: float
    metadata: Optional[ModelMetadata] = None  # as ModelInfo's
    last_step: Optional[HistoryStep] = None
    last_epoch: Optional[HistoryEpoch] = None


class GradientCheckResult(NamedTuple):
    errors: dict  # name → max relative error
    max_relative_error: float
    details: list  # the ParameterError messages (elements checked, worst element)


class TraceEdge(NamedTuple):
    input: int
    rule: str  # LocalRule's name, e.g. "LOCAL_RULE_MATMUL_LEFT"
    local_grad: Optional[np.ndarray]
    downstream: Optional[np.ndarray]


class TraceNode(NamedTuple):
    id: int
    kind: str
    inputs: tuple
    shape: tuple
    leaf_name: str
    data_path: bool
    reg_path: bool
    value: Optional[np.ndarray]
    grad: Optional[np.ndarray]
    edges: list


class TraceResult(NamedTuple):
    nodes: list
    losses: Losses
    scores_node: int
    data_loss_node: Optional[int]
    reg_loss_node: Optional[int]
    loss_node: int
    with_values: bool


def created(m: pb.CreateModelResponse) -> CreatedModel:
    return CreatedModel(m.model_id, m.parameter_count, m.spec)


def forward(m: pb.ForwardResponse) -> ForwardResult:
    labelled = m.HasField("losses")
    return ForwardResult(
        from_tensor(m.scores),
        np.array(m.predictions, dtype=np.uint32),
        losses(m.losses) if labelled else None,
        m.accuracy if m.HasField("accuracy") else None,
        _maybe(m, "probabilities"),
    )


def backward(m: pb.BackwardResponse) -> BackwardResult:
    return BackwardResult(
        losses(m.losses),
        {g.name: from_tensor(g.tensor) for g in m.gradients},
        from_tensor(m.input_grad) if m.HasField("input_grad") else None,
    )


def train_step(m: pb.TrainStepResponse) -> TrainStepResult:
    return TrainStepResult(losses(m.losses), m.accuracy, m.step)


def evaluate(m: pb.EvaluateResponse) -> EvaluateResult:
    return EvaluateResult(losses(m.losses), m.accuracy, m.num_examples)


def model_metadata(m: pb.ModelMetadata) -> ModelMetadata:
    return ModelMetadata(m.name, dict(m.labels), m.created_time, m.dataset_id)


def _measured(x: float) -> Optional[float]:
    # The history's points carry NaN for a metric the step did not measure (the proto's
    # HistoryStep: ApplyGradients sees no batch); None says so without a NaN to test for.
    return None if math.isnan(x) else x


def history_step(m: pb.HistoryStep) -> HistoryStep:
    return HistoryStep(m.step, _measured(m.data_loss), _measured(m.reg_loss),
                       _measured(m.accuracy), m.learning_rate, m.time)


def history_epoch(m: pb.HistoryEpoch) -> HistoryEpoch:
    return HistoryEpoch(
        m.step, m.epoch, _measured(m.mean_loss), _measured(m.train_accuracy),
        m.validation_loss if m.HasField("validation_loss") else None,
        m.validation_accuracy if m.HasField("validation_accuracy") else None,
        m.learning_rate, m.time)


def _about(m) -> tuple:
    """GetModelResponse's and ModelSummary's metadata, last_step, last_epoch."""
    return (model_metadata(m.metadata) if m.HasField("metadata") else None,
            history_step(m.last_step) if m.HasField("last_step") else None,
            history_epoch(m.last_epoch) if m.HasField("last_epoch") else None)


def model_info(m: pb.GetModelResponse) -> ModelInfo:
    with_values = any(p.HasField("value") for p in m.parameters)
    return ModelInfo(
        m.model_id, m.spec, m.step, m.parameter_count,
        {p.name: tuple(p.shape) for p in m.parameters},
        {p.name: from_tensor(p.value) for p in m.parameters} if with_values else None,
        *_about(m),
    )


def model_summary(m: pb.ModelSummary) -> ModelSummary:
    return ModelSummary(m.model_id, m.spec, m.step, m.parameter_count, m.idle_seconds,
                        *_about(m))


def gradient_check(m: pb.GradientCheckResponse) -> GradientCheckResult:
    return GradientCheckResult(
        {e.name: e.max_relative_error for e in m.errors}, m.max_relative_error, list(m.errors))


def _maybe(m, name):
    return from_tensor(getattr(m, name)) if m.HasField(name) else None


def trace(m: pb.TraceStepResponse) -> TraceResult:
    nodes = [
        TraceNode(
            n.id, n.kind, tuple(n.inputs), tuple(n.shape), n.leaf_name, n.data_path,
            n.reg_path, _maybe(n, "value"), _maybe(n, "grad"),
            [TraceEdge(e.input, pb.LocalRule.Name(e.rule), _maybe(e, "local_grad"),
                       _maybe(e, "downstream")) for e in n.edges],
        )
        for n in m.nodes
    ]
    return TraceResult(
        nodes, losses(m.losses), m.scores_node,
        m.data_loss_node if m.HasField("data_loss_node") else None,
        m.reg_loss_node if m.HasField("reg_loss_node") else None,
        m.loss_node, m.with_values,
    )


def identity(m):
    return m


# ------------------------------------------------------------------------ TrainStream

def stream_request(item, index: int, model_id: str) -> pb.TrainStreamRequest:
    """One TrainStream batch from `(x, y)` or `(x, y, learning_rate)`; the model id on
    the first only, the batch's index as its sequence."""
    x, y, *rest = item
    req = pb.TrainStreamRequest(
        model_id=model_id if index == 0 else "", sequence=index, x=tensor_fields(x),
        labels=to_labels(y))
    if rest and rest[0] is not None:
        req.learning_rate = float(rest[0])
    return req


# ---------------------------------------------------------------------------- datasets

# The wire dtype of a dataset's values, by numpy dtype: f32 and f64 go as they are.
_DATASET_DTYPES = {np.dtype(np.float32): ("<f4", pb.DTYPE_F32), np.dtype(np.float64): ("<f8", pb.DTYPE_F64)}


def dataset_chunks(X: ArrayLike, y: ArrayLike, name: str = "", chunk_bytes: int = 1 << 20) -> list:
    """UploadDataset's chunks for rows X (N×D) and labels y: whole rows of about
    `chunk_bytes` each, the header (shape, dtype, SHA-256 as the proto defines:
    sha256(X bytes + y as <u4 bytes)) in the first. X in float64 goes as f64, anything
    else as f32. A list, so an async upload can send it as it is."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be N×D with N, D ≥ 1, got shape {X.shape}")
    wire, dtype = _DATASET_DTYPES.get(X.dtype, _DATASET_DTYPES[np.dtype(np.float32)])
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must hold one label per row of X, got shape {y.shape}")
    labels = np.asarray(to_labels(y), dtype="<u4")
    x_bytes = np.ascontiguousarray(X, dtype=wire).tobytes()
    header = pb.DatasetHeader(
        rows=X.shape[0], dim=X.shape[1], dtype=dtype, name=name,
        sha256=hashlib.sha256(x_bytes + labels.tobytes()).hexdigest(),
    )
    row_bytes = X.shape[1] * np.dtype(wire).itemsize
    per_chunk = max(1, chunk_bytes // row_bytes)
    return [
        pb.DatasetChunk(
            header=header if first == 0 else None, first_row=first,
            x=x_bytes[first * row_bytes:min(first + per_chunk, X.shape[0]) * row_bytes],
            labels=labels[first:first + per_chunk].tolist(),
        )
        for first in range(0, X.shape[0], per_chunk)
    ]


# ------------------------------------------------------------------------- checkpoints

def checkpoint_chunks(data: bytes, chunk_bytes: int = 1 << 20) -> list:
    """ImportModel's chunks for a checkpoint file: size and SHA-256 in the first."""
    if not data:
        raise ValueError("an empty checkpoint")
    digest = hashlib.sha256(data).hexdigest()
    return [
        pb.CheckpointChunk(data=data[o:o + chunk_bytes], offset=o,
                           total_bytes=len(data) if o == 0 else 0, sha256=digest if o == 0 else "")
        for o in range(0, len(data), chunk_bytes)
    ]


def join_checkpoint(chunks: Sequence[pb.CheckpointChunk]) -> bytes:
    """The file ExportModel streamed, checked against the size and SHA-256 it declared."""
    data = b"".join(c.data for c in chunks)
    if chunks and (len(data) != chunks[0].total_bytes
                   or hashlib.sha256(data).hexdigest() != chunks[0].sha256):
        raise ValueError("the exported checkpoint does not match its declared size or SHA-256")
    return data


# ----------------------------------------------------------------------------- history

class History(NamedTuple):
    """GetHistory as numpy structured arrays, one row per point.

    `steps`: step, data_loss, reg_loss, accuracy, learning_rate, time (NaN losses for
    ApplyGradients). `epochs`: step, epoch, mean_loss, train_accuracy, validation_loss,
    validation_accuracy (NaN without validation), learning_rate, time. Every `stride`-th
    step is kept.
    """

    steps: np.ndarray
    epochs: np.ndarray
    stride: int


STEP_DTYPE = np.dtype([
    ("step", np.uint64), ("data_loss", np.float64), ("reg_loss", np.float64),
    ("accuracy", np.float64), ("learning_rate", np.float64), ("time", np.float64),
])
EPOCH_DTYPE = np.dtype([
    ("step", np.uint64), ("epoch", np.uint32), ("mean_loss", np.float64),
    ("train_accuracy", np.float64), ("validation_loss", np.float64),
    ("validation_accuracy", np.float64), ("learning_rate", np.float64), ("time", np.float64),
])


def _row(point, dtype: np.dtype) -> tuple:
    # Optional fields that are absent (an epoch without validation) read as NaN.
    return tuple(
        getattr(point, name)
        if not point.DESCRIPTOR.fields_by_name[name].has_presence or point.HasField(name)
        else math.nan
        for name in dtype.names
    )


def history(m: pb.GetHistoryResponse) -> History:
    return History(
        np.array([_row(p, STEP_DTYPE) for p in m.steps], dtype=STEP_DTYPE),
        np.array([_row(p, EPOCH_DTYPE) for p in m.epochs], dtype=EPOCH_DTYPE),
        m.stride,
    )


def fit_request(model_id: str, dataset_id: str, fields: Mapping) -> pb.FitRequest:
    """A FitRequest; `sampling` and a schedule's `kind`, an early stopping's `monitor`
    may be short names ("with_replacement", "cosine", "validation_accuracy")."""
    fields = dict(fields)
    if "sampling" in fields:
        fields["sampling"] = _enum(pb.Sampling, "SAMPLING_", fields["sampling"])
    if isinstance(fields.get("schedule"), Mapping):
        s = dict(fields["schedule"])
        if "kind" in s:
            s["kind"] = _enum(pb.ScheduleKind, "SCHEDULE_KIND_", s["kind"])
        fields["schedule"] = pb.Schedule(**s)
    if isinstance(fields.get("early_stopping"), Mapping):
        e = dict(fields["early_stopping"])
        if "monitor" in e:
            e["monitor"] = _enum(pb.Monitor, "MONITOR_", e["monitor"])
        fields["early_stopping"] = pb.EarlyStopping(**e)
    return pb.FitRequest(model_id=model_id, dataset_id=dataset_id, **fields)

