"""Every RPC of the Trainer, written once for Client (blocking) and AsyncClient (asyncio).

Each method here builds its request (convert.py), says how to read the answer, which
replica to route to, whether the call is read-only (retried on UNAVAILABLE) and whether
it is a long stream (no default deadline), and hands that to one of four transport
hooks by call shape: `_unary`, `_unary_stream`, `_stream_unary`, `_stream_stream`.
Client implements the hooks with blocking calls, so its methods return values;
AsyncClient with grpc.aio, so the same methods return awaitables (or async iterators
for streams). Nothing about a method is written twice.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Union

import grpc

from . import convert
from ._proto import backprop_pb2 as pb
from ._proto import backprop_pb2_grpc as pb_grpc
from .errors import from_batch_error

# The server takes messages up to 64 MiB by default (a CIFAR batch is 2.5 MB); the
# client must not be the one to refuse them (gRPC's receive default is 4 MiB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# "Use the client's default deadline" (None means no deadline at all).
DEFAULT = object()

_HEALTH = "/grpc.health.v1.Health/Check"


def _health_request(service: str) -> bytes:
    # grpc.health.v1.HealthCheckRequest{service = 1}: hand-encoded, so the package needs
    # no grpcio-health-checking for one string field.
    data = service.encode()
    length, prefix = len(data), bytearray()
    while True:
        prefix.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
        length >>= 7
        if not length:
            break
    return (b"\x0a" + bytes(prefix) + data) if data else b""


def _health_status(data: bytes) -> int:
    # HealthCheckResponse{status = 1 (enum)}: SERVING = 1. Absent field = UNKNOWN (0).
    return data[1] if len(data) >= 2 and data[0] == 0x08 else 0


def credentials(tls=None, tls_ca=None, tls_cert=None, tls_key=None) -> Optional[grpc.ChannelCredentials]:
    """Channel credentials, or None for plaintext. `tls` is True (the system's roots),
    a grpc.ChannelCredentials, or None; `tls_ca` (PEM path: the CA that signed the
    server's certificate) turns TLS on too, `tls_cert`/`tls_key` add a client
    certificate for a server run with --tls-client-ca."""
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    if not (tls or tls_ca or tls_cert):
        return None
    read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
    return grpc.ssl_channel_credentials(
        root_certificates=read(tls_ca), private_key=read(tls_key), certificate_chain=read(tls_cert))


class ImportedModel(NamedTuple):
    model_id: str
    parameter_count: int
    spec: pb.ModelSpec
    step: int  # the step the model continues from


class CancelFitResult(NamedTuple):
    cancelled: bool  # a fit was running (it has stopped now)
    step: int


# The calls retried on UNAVAILABLE: those that change nothing, so a second attempt after
# a first that may have reached the server cannot apply anything twice.
READ_ONLY = frozenset({
    "Forward", "Backward", "Evaluate", "GetModel", "ListModels", "GradientCheck",
    "TraceStep", "GetDataset", "ListDatasets", "GetHistory", "Health",
})


class TrainerMethods:
    """The Trainer's RPCs with numpy in and out (see Client for the blocking form and
    AsyncClient for asyncio). Subclasses call `_setup` with their channel and stub."""

    def _setup(self, channel, stub: pb_grpc.TrainerStub, *, token, timeout, retries, backoff,
               max_backoff):
        self._channel = channel
        self._calls = {name: getattr(stub, name) for name in pb.DESCRIPTOR.services_by_name[
            "Trainer"].methods_by_name}
        self._calls["Health"] = channel.unary_unary(
            _HEALTH, request_serializer=_health_request, response_deserializer=_health_status)
        self._auth = [("authorization", f"Bearer {token}")] if token else []
        self.timeout = timeout
        self.retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff

    # -- what the transports share ----------------------------------------------------

    def _metadata(self, route: Optional[str], explicit: bool = False) -> list:
        return self._auth + convert.route_metadata(route, explicit)

    def _deadline(self, timeout, long: bool = False) -> Optional[float]:
        if timeout is DEFAULT:
            return None if long else self.timeout
        return timeout

    def _retry_delay(self, name: str, attempt: int, error) -> Optional[float]:
        """Seconds to wait before attempt `attempt + 1`, or None to give up: only
        read-only calls, only on UNAVAILABLE, `retries` times at most, exponential
        backoff with full jitter (so many clients do not come back in step)."""
        if name not in READ_ONLY or attempt >= self.retries:
            return None
        if not callable(getattr(error, "code", None)) or error.code() != grpc.StatusCode.UNAVAILABLE:
            return None
        return random.uniform(0.5, 1.0) * min(self._max_backoff, self._backoff * 2 ** attempt)

    # -- models ------------------------------------------------------------------------

    def create_model(self, spec: Union[None, Mapping, pb.ModelSpec] = None, *,
                     name: Optional[str] = None, labels: Optional[Mapping[str, str]] = None,
                     replica: Optional[str] = None, timeout=DEFAULT, **fields):
        """Creates a model from a spec dict, a ModelSpec or keyword arguments (see
        convert.model_spec: input_dim=, num_classes=, hidden=[100], loss="softmax",
        optimizer="adam", learning_rate=, l2=, seed=, dtype=...) → CreatedModel.
        `name` and `labels` ({key: value}) are its metadata (ModelMetadata says what
        they may hold; the server refuses the rest, naming the field). `replica` (a
        replica name, or any id on it) chooses the replica behind a proxy."""
        request = pb.CreateModelRequest(spec=convert.model_spec(spec, **fields),
                                        name=name or "", labels=dict(labels or {}))
        return self._unary("CreateModel", request, convert.created, route=replica,
                           explicit=True, timeout=timeout)

    def forward(self, model_id: str, x, labels=None, *, probabilities: bool = False,
                timeout=DEFAULT):
        """Scores (N×C ndarray), predictions; with labels also losses and accuracy; with
        `probabilities` each row's softmax as the server computes it (None from a server
        older than ForwardRequest.probabilities, which ignores the field)."""
        request = pb.ForwardRequest(model_id=model_id, x=convert.tensor_fields(x),
                                    labels=() if labels is None else convert.to_labels(labels),
                                    probabilities=probabilities)
        return self._unary("Forward", request, convert.forward, route=model_id, timeout=timeout)

    def scores(self, model_id: str, x, *, timeout=DEFAULT):
        """Forward's N×C scores alone."""
        request = pb.ForwardRequest(model_id=model_id, x=convert.tensor_fields(x))
        return self._unary("Forward", request, lambda m: convert.from_tensor(m.scores),
                           route=model_id, timeout=timeout)

    def predict(self, model_id: str, x, *, timeout=DEFAULT):
        """The predicted class of each row (argmax of the scores), as uint32."""
        request = pb.ForwardRequest(model_id=model_id, x=convert.tensor_fields(x))
        return self._unary("Forward", request, lambda m: convert.forward(m).predictions,
                           route=model_id, timeout=timeout)

    def backward(self, model_id: str, x, labels=None, *, upstream=None,
                 return_input_grad: bool = False, timeout=DEFAULT):
        """Losses and every parameter's gradient (dict name → ndarray), dX on request;
        from labels, or from an N×C `upstream` gradient on the scores."""
        request = pb.BackwardRequest(
            model_id=model_id, x=convert.tensor_fields(x), return_input_grad=return_input_grad,
            labels=() if labels is None else convert.to_labels(labels),
            upstream=None if upstream is None else convert.tensor_fields(upstream))
        return self._unary("Backward", request, convert.backward, route=model_id, timeout=timeout)

    def train_step(self, model_id: str, x, y, *, learning_rate: Optional[float] = None,
                   timeout=DEFAULT):
        """Forward, backward and one update → TrainStepResult (losses before it)."""
        request = pb.TrainStepRequest(model_id=model_id, x=convert.tensor_fields(x),
                                      labels=convert.to_labels(y))
        if learning_rate is not None:
            request.learning_rate = float(learning_rate)
        return self._unary("TrainStep", request, convert.train_step, route=model_id,
                           timeout=timeout)

    def apply_gradients(self, model_id: str, gradients: Mapping[str, Any], *, timeout=DEFAULT):
        """One update from named gradients (every parameter once) → the new step."""
        request = pb.ApplyGradientsRequest(model_id=model_id,
                                           gradients=convert.named_tensors(gradients))
        return self._unary("ApplyGradients", request, lambda m: m.step, route=model_id,
                           timeout=timeout)

    def evaluate(self, model_id: str, x, y, *, timeout=DEFAULT):
        """Loss and accuracy on a labelled batch, no update → EvaluateResult."""
        request = pb.EvaluateRequest(model_id=model_id, x=convert.tensor_fields(x),
                                     labels=convert.to_labels(y))
        return self._unary("Evaluate", request, convert.evaluate, route=model_id, timeout=timeout)

    def get_model(self, model_id: str, *, values: bool = True, timeout=DEFAULT):
        """Spec, step, shapes and (with `values`) parameters as ndarrays → ModelInfo.
        Values come raw (GetModelRequest.raw_values): bit-exact, one copy."""
        request = pb.GetModelRequest(model_id=model_id, include_values=values, raw_values=values)
        return self._unary("GetModel", request, convert.model_info, route=model_id,
                           timeout=timeout)

    def list_models(self, *, name: Optional[str] = None,
                    labels: Optional[Mapping[str, str]] = None,
                    replica: Optional[str] = None, timeout=DEFAULT):
        """The caller's models (of one replica behind a proxy) → [ModelSummary]; only
        those named exactly `name`, and carrying every label of `labels` with its
        value, when given. All in one answer (page_size 0), as before paging."""
        request = pb.ListModelsRequest(name=name or "", labels=dict(labels or {}))
        return self._unary("ListModels", request,
                           lambda m: [convert.model_summary(s) for s in m.models],
                           route=replica, explicit=True, timeout=timeout)

    def update_model(self, model_id: str, *, name: Optional[str] = None,
                     set_labels: Optional[Mapping[str, str]] = None,
                     remove_labels: Iterable[str] = (), timeout=DEFAULT):
        """Renames the model (`name`; "" removes its name, None leaves it) and adds or
        changes labels (`set_labels`) or removes them (`remove_labels`: keys, or one
        key as a str; a key it does not carry is ignored) → convert.ModelMetadata after
        the change. A refused change (InvalidArgument naming the field, e.g.
        'set_labels["bad key"]') changes nothing. Not retried on UNAVAILABLE: it changes
        the model, and only READ_ONLY calls are."""
        keys = [remove_labels] if isinstance(remove_labels, str) else list(remove_labels or ())
        request = pb.UpdateModelRequest(model_id=model_id, set_labels=dict(set_labels or {}),
                                        remove_labels=keys)
        if name is not None:
            request.name = name  # `optional` on the wire: absent leaves the name alone
        return self._unary("UpdateModel", request, convert.model_metadata, route=model_id,
                           timeout=timeout)

    def delete_model(self, model_id: str, *, timeout=DEFAULT):
        """Drops the model (a fit on it stops, ending CANCELLED)."""
        return self._unary("DeleteModel", pb.DeleteModelRequest(model_id=model_id),
                           lambda m: None, route=model_id, timeout=timeout)

    def gradient_check(self, model_id: str, x, y, *, max_elements: int = 0, timeout=DEFAULT):
        """Numeric vs analytic gradients → GradientCheckResult (errors by parameter)."""
        request = pb.GradientCheckRequest(model_id=model_id, x=convert.tensor_fields(x),
                                          labels=convert.to_labels(y),
                                          max_elements_per_parameter=max_elements)
        return self._unary("GradientCheck", request, convert.gradient_check, route=model_id,
                           timeout=timeout)

    def trace_step(self, model_id: str, x, y, *, shapes_only: bool = False, timeout=DEFAULT):
        """The loss's computational graph, node by node, values as ndarrays → TraceResult."""
        request = pb.TraceStepRequest(model_id=model_id, x=convert.tensor_fields(x),
                                      labels=convert.to_labels(y), shapes_only=shapes_only)
        return self._unary("TraceStep", request, convert.trace, route=model_id, timeout=timeout)

    def export_model(self, model_id: str, *, chunk_bytes: int = 0, timeout=DEFAULT):
        """The model's whole state as one safetensors file (bytes), checked against the
        size and SHA-256 the server declared."""
        request = pb.ExportModelRequest(model_id=model_id, chunk_bytes=chunk_bytes)
        return self._unary_stream("ExportModel", request, convert.identity, route=model_id,
                                  timeout=timeout, collect=convert.join_checkpoint)

    def import_model(self, data: bytes, *, replica: Optional[str] = None,
                     chunk_bytes: int = 1 << 20, timeout=DEFAULT):
        """A new model from ExportModel's bytes → ImportedModel; it continues
        bit-identically. `replica` chooses where behind a proxy."""
        return self._stream_unary(
            "ImportModel", convert.checkpoint_chunks(bytes(data), chunk_bytes),
            lambda m: ImportedModel(m.model_id, m.parameter_count, m.spec, m.step),
            route=replica, explicit=True, timeout=timeout)

    def train_stream(self, model_id: str, batches: Iterable, *, raise_errors: bool = True,
                     timeout=DEFAULT):
        """Many TrainSteps over one stream: `batches` yields (x, y) or (x, y,
        learning_rate) and is read as the stream goes; the answers come in order, one
        TrainStepResult per batch. A refused batch changes nothing: it raises its error
        (the stream is then cancelled), or with raise_errors=False is yielded as the
        BackpropError instance and the stream goes on. No default deadline."""

        def answer(m: pb.TrainStreamResponse):
            if m.WhichOneof("result") == "error":
                error = from_batch_error(m.error)
                if raise_errors:
                    raise error
                return error
            return convert.train_step(m.step)

        requests = self._map_requests(
            batches, lambda item, i: convert.stream_request(item, i, model_id))
        return self._stream_stream("TrainStream", requests, answer, route=model_id,
                                   timeout=timeout, long=True)

    # -- datasets ----------------------------------------------------------------------

    def upload_dataset(self, X, y, *, name: str = "", next_to: Optional[str] = None,
                       chunk_bytes: int = 1 << 20, timeout=DEFAULT):
        """Uploads rows X (N×D; float64 goes as f64, anything else as f32) and labels y
        → DatasetInfo. `next_to` (the model a fit will train, or a replica name) puts
        it on that replica behind a proxy, where the fit can read it."""
        return self._stream_unary("UploadDataset", convert.dataset_chunks(X, y, name, chunk_bytes),
                                  convert.identity, route=next_to, explicit=True, timeout=timeout)

    def get_dataset(self, dataset_id: str, *, timeout=DEFAULT):
        return self._unary("GetDataset", pb.GetDatasetRequest(dataset_id=dataset_id),
                           convert.identity, route=dataset_id, timeout=timeout)

    def list_datasets(self, *, replica: Optional[str] = None, timeout=DEFAULT):
        return self._unary("ListDatasets", pb.ListDatasetsRequest(),
                           lambda m: list(m.datasets), route=replica, explicit=True,
                           timeout=timeout)

    def delete_dataset(self, dataset_id: str, *, timeout=DEFAULT):
        return self._unary("DeleteDataset", pb.DeleteDatasetRequest(dataset_id=dataset_id),
                           lambda m: None, route=dataset_id, timeout=timeout)

    # -- fits --------------------------------------------------------------------------

    def fit(self, model_id: str, dataset_id: str, *, timeout=DEFAULT, **fields):
        """Trains on a server-held dataset; yields the FitEvent messages as they come
        (started, progress, epoch_end, ..., finished). `fields` are FitRequest's
        (epochs=, batch_size=, seed=, validation_fraction=, schedule={"kind": "cosine"},
        early_stopping={"patience": 3}, detach=...). Closing the iterator early (break,
        close(), dropping it) cancels the call, which stops a fit that is not detached.
        No default deadline."""
        request = convert.fit_request(model_id, dataset_id, fields)
        return self._unary_stream("Fit", request, convert.identity, route=model_id,
                                  timeout=timeout, long=True)

    def watch_fit(self, model_id: str, *, from_event: int = 0, timeout=DEFAULT):
        """The model's fit's events from `from_event` on, then live (FitEvent messages)."""
        request = pb.WatchFitRequest(model_id=model_id, from_event=from_event)
        return self._unary_stream("WatchFit", request, convert.identity, route=model_id,
                                  timeout=timeout, long=True)

    def cancel_fit(self, model_id: str, *, timeout=DEFAULT):
        """Stops the running fit at its next step boundary → CancelFitResult."""
        return self._unary("CancelFit", pb.CancelFitRequest(model_id=model_id),
                           lambda m: CancelFitResult(m.cancelled, m.step), route=model_id,
                           timeout=timeout)

    def get_history(self, model_id: str, *, timeout=DEFAULT):
        """Steps and epochs as numpy structured arrays → convert.History."""
        return self._unary("GetHistory", pb.GetHistoryRequest(model_id=model_id),
                           convert.history, route=model_id, timeout=timeout)

    def health(self, service: str = "", *, timeout=DEFAULT):
        """Whether grpc.health.v1 says SERVING for `service` ("" = the server)."""
        return self._unary("Health", service, lambda status: status == 1, timeout=timeout)

