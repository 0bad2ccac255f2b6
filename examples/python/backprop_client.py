"""The few helpers every Python caller of backprop needs: a channel, the stubs, tensors,
and the server-side training path: datasets, Fit, the history and a plot of it.

The stubs are generated from proto/ by setup.sh into gen/ (never committed); importing
this module puts gen/ on sys.path, so `from backprop_client import pb, pb_grpc` works
from any working directory.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import sys
from pathlib import Path
from typing import Iterator, NamedTuple
from xml.sax.saxutils import escape

import grpc
import numpy as np

_GEN = Path(__file__).resolve().parent / "gen"
if not (_GEN / "backprop" / "v1" / "backprop_pb2.py").exists():
    raise SystemExit(
        f"gRPC stubs not found in {_GEN}: run examples/python/setup.sh first"
    )
sys.path.insert(0, str(_GEN))

from backprop.v1 import backprop_pb2 as pb  # noqa: E402
from backprop.v1 import backprop_pb2_grpc as pb_grpc  # noqa: E402

DEFAULT_ADDRESS = "127.0.0.1:50051"

# The server accepts messages up to 64 MiB by default (a CIFAR batch is 2.5 MB); the
# Python client must not be the one to refuse them (gRPC's receive default is 4 MiB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def connect(
    address: str,
    timeout: float = 10.0,
    *,
    token: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> tuple[grpc.Channel, pb_grpc.TrainerStub]:
    """A channel to `address` (host:port), ready to use, and a Trainer stub.

    `tls_ca` (a PEM file: the CA that signed the server's certificate) turns TLS on;
    `tls_cert`/`tls_key` add a client certificate for a server run with
    --tls-client-ca. `token` is sent as `authorization: Bearer <token>` on every call,
    for a server run with --auth-tokens.
    """
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    if tls_ca:
        read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(tls_ca),
            private_key=read(tls_key),
            certificate_chain=read(tls_cert),
        )
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    grpc.channel_ready_future(channel).result(timeout=timeout)
    interceptors = [_Route()] + ([_Bearer(token)] if token else [])
    channel = grpc.intercept_channel(channel, *interceptors)
    return channel, pb_grpc.TrainerStub(channel)


# The metadata a proxy in front of several replicas routes on (docs/DEPLOY.md): the model
# or dataset id a call names, or a replica name.
ROUTE_HEADER = "x-backprop-model"
_ID = re.compile(r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\.)?[0-9a-fA-F]{32}$")


def _route_of(request) -> str | None:
    """The id a request names (model_id, else dataset_id), if it has an id's shape: a
    malformed id gets no header, so the server's answer names the body's field."""
    for field in ("model_id", "dataset_id"):
        value = getattr(request, field, "")
        if value and _ID.match(value):
            return value
    return None


def route(to: str) -> list[tuple[str, str]]:
    """Metadata routing a call that names no model to the replica of `to` (a model id or
    a replica name), e.g. `stub.UploadDataset(chunks, metadata=route(model_id))` puts a
    dataset next to the model a fit will train. Empty for ""."""
    return [(ROUTE_HEADER, to)] if to else []


class _Route(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `x-backprop-model: <id>` to every call that names a model or dataset (the
    first message of TrainStream), unless the caller set it, so calls through a proxy
    reach the replica that holds the session. UploadDataset and ImportModel name
    nothing: pass `metadata=route(...)` to choose their replica."""

    @staticmethod
    def _details(details, to):
        metadata = list(details.metadata or [])
        if to and all(key != ROUTE_HEADER for key, _ in metadata):
            metadata.append((ROUTE_HEADER, to))
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details, _route_of(request)), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details, _route_of(request)), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(details, request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        # The first message names the model: read it, then send it and the rest.
        messages = iter(request_iterator)
        first = next(messages, None)
        if first is None:
            return continuation(details, iter(()))
        to = _route_of(first)
        return continuation(self._details(details, to), itertools.chain([first], messages))


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call (over TLS or not), streaming
    ones included: UploadDataset, Fit, WatchFit, ExportModel, ImportModel, TrainStream."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        return details._replace(metadata=list(details.metadata or []) + [self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def tensor(a: np.ndarray) -> pb.Tensor:
    """A row-major f32 Tensor message from a numpy array."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return pb.Tensor(shape=list(a.shape), values=a.ravel().tolist())


# The wire dtype of a dataset's values, by numpy dtype: f32 and f64 go as they are.
_DATASET_DTYPES = {
    np.dtype(np.float32): ("<f4", pb.DTYPE_F32),
    np.dtype(np.float64): ("<f8", pb.DTYPE_F64),
}


def upload_dataset(
    stub: pb_grpc.TrainerStub,
    X: np.ndarray,
    y: np.ndarray,
    name: str = "",
    chunk_bytes: int = 1 << 20,
    next_to: str = "",
) -> pb.DatasetInfo:
    """Uploads N rows `X` (N×D, float32 or float64, sent in that dtype) and their N
    labels `y` as a dataset held by the server, and returns its DatasetInfo.

    Behind a proxy in front of several replicas, `next_to` (the id of the model a fit
    will train, or a replica name) puts the dataset on that model's replica, where the
    fit can read it; without it any replica takes it.

    The rows go in chunks of whole rows of about `chunk_bytes` (at least one row each);
    the first chunk's header declares the shape, dtype and the SHA-256 the proto
    defines, sha256(X as little-endian bytes + y as 4-byte little-endian integers), so
    a corrupted upload is refused by the server. Any other dtype of `X` is a TypeError:
    convert it first (`X.astype(np.float32)`), so no precision is lost or invented
    without the caller saying so.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be N×D with N, D ≥ 1, got shape {X.shape}")
    if X.dtype not in _DATASET_DTYPES:
        raise TypeError(f"X must be float32 or float64, got {X.dtype}")
    wire, dtype = _DATASET_DTYPES[X.dtype]
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must hold one label per row of X, got shape {y.shape}")
    if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= 1 << 32)):
        raise ValueError("y must be integer labels in [0, 2³²)")
    x_bytes = np.ascontiguousarray(X, dtype=wire).tobytes()
    labels = y.astype("<u4")
    header = pb.DatasetHeader(
        rows=X.shape[0],
        dim=X.shape[1],
        dtype=dtype,
        sha256=hashlib.sha256(x_bytes + labels.tobytes()).hexdigest(),
        name=name,
    )
    row_bytes = X.shape[1] * X.dtype.itemsize
    rows_per_chunk = max(1, chunk_bytes // row_bytes)

    def chunks() -> Iterator[pb.DatasetChunk]:
        for first in range(0, X.shape[0], rows_per_chunk):
            last = min(first + rows_per_chunk, X.shape[0])
            yield pb.DatasetChunk(
                header=header if first == 0 else None,
                first_row=first,
                x=x_bytes[first * row_bytes : last * row_bytes],
                labels=labels[first:last].tolist(),
            )

    return stub.UploadDataset(chunks(), metadata=route(next_to))


def fit(
    stub: pb_grpc.TrainerStub, model_id: str, dataset_id: str, **fields
) -> Iterator[pb.FitEvent]:
    """Trains `model_id` on the server's `dataset_id` and yields the fit's FitEvents as
    they come: started, progress, epoch_end, ..., finished.

    `fields` are FitRequest's other fields by name (`epochs=30, batch_size=64, seed=0,
    validation_dataset_id=...`; a message field as its message or as a dict, e.g.
    `schedule={"kind": pb.SCHEDULE_KIND_EPOCH_DECAY, "decay": 0.95}`).

    Closing the generator before the `finished` event (`close()`, a `break` out of a
    for loop, or dropping it) cancels the call, and the server then stops a fit that is
    not `detach=True` at its next step boundary (FIT_END_CANCELLED; the model keeps the
    steps taken). A detached fit keeps running: follow it with WatchFit and stop it with
    CancelFit.
    """
    call = stub.Fit(pb.FitRequest(model_id=model_id, dataset_id=dataset_id, **fields))
    try:
        yield from call
    finally:
        call.cancel()  # a no-op once the stream has ended


class History(NamedTuple):
    """A model's history (GetHistory) as numpy structured arrays, one row per point.

    `steps` has fields step, data_loss, reg_loss, accuracy, learning_rate, time (NaN
    losses and accuracy for ApplyGradients, which sees no batch); `epochs` has step,
    epoch, mean_loss, train_accuracy, validation_loss, validation_accuracy (NaN without
    validation), learning_rate, time. The server keeps every `stride`-th step.
    """

    steps: np.ndarray
    epochs: np.ndarray
    stride: int


_STEP_FIELDS = [
    ("step", np.uint64), ("data_loss", np.float64), ("reg_loss", np.float64),
    ("accuracy", np.float64), ("learning_rate", np.float64), ("time", np.float64),
]
_EPOCH_FIELDS = [
    ("step", np.uint64), ("epoch", np.uint32), ("mean_loss", np.float64),
    ("train_accuracy", np.float64), ("validation_loss", np.float64),
    ("validation_accuracy", np.float64), ("learning_rate", np.float64),
    ("time", np.float64),
]


def history(stub: pb_grpc.TrainerStub, model_id: str) -> History:
    """GetHistory of `model_id` as numpy arrays (see History)."""
    reply = stub.GetHistory(pb.GetHistoryRequest(model_id=model_id))

    def field(point, name):
        # Optional fields (an epoch's validation) that are absent read as NaN.
        if point.DESCRIPTOR.fields_by_name[name].has_presence and not point.HasField(name):
            return math.nan
        return getattr(point, name)

    def table(points, fields):
        rows = [tuple(field(p, name) for name, _ in fields) for p in points]
        return np.array(rows, dtype=fields)

    return History(
        steps=table(reply.steps, _STEP_FIELDS),
        epochs=table(reply.epochs, _EPOCH_FIELDS),
        stride=reply.stride,
    )


# plot_history's geometry, in SVG user units: two panels side by side.
_PANEL_W, _PANEL_H, _MARGIN = 320, 200, 44


def plot_history(h: History, path) -> None:
    """Writes `h` as a small SVG file at `path`: on the left the loss (data + L2) of
    every recorded step and the validation loss at each epoch's end, on the right each
    step's batch accuracy and each epoch's train and validation accuracy, against the
    step. Points that are not finite (ApplyGradients' losses) are left out.

    Each curve is one <polyline> whose class names it (step-loss, validation-loss,
    step-accuracy, train-accuracy, validation-accuracy), so the file can be read back.
    """
    steps, epochs = h.steps, h.epochs
    every = np.concatenate([steps["step"], epochs["step"]]).astype(np.float64)
    x_range = (float(every.min()), float(every.max())) if every.size else (0.0, 1.0)
    step_loss = steps["data_loss"] + steps["reg_loss"]
    losses = np.concatenate([step_loss, epochs["validation_loss"]])
    losses = losses[np.isfinite(losses)]
    loss_range = (0.0, float(losses.max()) if losses.size and losses.max() > 0 else 1.0)

    width, height = 2 * (_PANEL_W + _MARGIN) + _MARGIN // 2, _PANEL_H + 2 * _MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    left, right = _MARGIN, 2 * _MARGIN + _PANEL_W
    parts += _panel(left, "loss (data + L2)", x_range, loss_range, [
        ("step-loss", "#1f77b4", steps["step"], step_loss),
        ("validation-loss", "#d62728", epochs["step"], epochs["validation_loss"]),
    ])
    parts += _panel(right, "accuracy", x_range, (0.0, 1.0), [
        ("step-accuracy", "#1f77b4", steps["step"], steps["accuracy"]),
        ("train-accuracy", "#2ca02c", epochs["step"], epochs["train_accuracy"]),
        ("validation-accuracy", "#d62728", epochs["step"], epochs["validation_accuracy"]),
    ])
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")


def _panel(x0, title, x_range, y_range, curves) -> list[str]:
    """One panel's frame, labels and curves: x maps x_range onto [x0, x0 + _PANEL_W],
    y maps y_range onto [_MARGIN + _PANEL_H, _MARGIN] (up is larger)."""
    (xa, xb), (ya, yb) = x_range, y_range
    y0 = _MARGIN
    sx = lambda v: x0 + (v - xa) / ((xb - xa) or 1.0) * _PANEL_W  # noqa: E731
    sy = lambda v: y0 + _PANEL_H - (v - ya) / ((yb - ya) or 1.0) * _PANEL_H  # noqa: E731
    out = [
        f'<rect x="{x0}" y="{y0}" width="{_PANEL_W}" height="{_PANEL_H}" '
        'fill="none" stroke="#888"/>',
        f'<text x="{x0}" y="{y0 - 8}">{escape(title)}</text>',
        f'<text x="{x0 - 4}" y="{y0 + 4}" text-anchor="end">{yb:.3g}</text>',
        f'<text x="{x0 - 4}" y="{y0 + _PANEL_H}" text-anchor="end">{ya:.3g}</text>',
        f'<text x="{x0}" y="{y0 + _PANEL_H + 14}">step {xa:.0f}</text>',
        f'<text x="{x0 + _PANEL_W}" y="{y0 + _PANEL_H + 14}" text-anchor="end">'
        f"{xb:.0f}</text>",
    ]
    legend = []
    for name, colour, xs, ys in curves:
        keep = np.isfinite(ys)
        points = " ".join(
            f"{sx(float(x)):.2f},{sy(float(y)):.2f}" for x, y in zip(xs[keep], ys[keep])
        )
        if points:
            out.append(
                f'<polyline class="{name}" points="{points}" fill="none" '
                f'stroke="{colour}" stroke-width="1"/>'
            )
            # "step-loss" is labelled "step", "validation-accuracy" "validation".
            legend.append(f'<tspan fill="{colour}">{name.split("-")[0]}</tspan>')
    if legend:
        out.append(
            f'<text x="{x0 + _PANEL_W}" y="{y0 - 8}" text-anchor="end">'
            + " ".join(legend) + "</text>"
        )
    return out
