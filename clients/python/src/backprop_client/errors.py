"""Exceptions for the server's status codes, with the machine-readable details it sends.

Every backprop error carries a google.rpc.Status in the `grpc-status-details-bin`
trailer: an ErrorInfo (domain "backprop", a stable `reason`, metadata `field`, `limit`,
`owner`, `replica`), a BadRequest naming the field at fault, a RetryInfo on refusals
that may succeed later, a QuotaFailure naming the limit's flag. Callers branch on the
exception class and `.reason`, never on the message (it is for people).

The google.rpc messages are built here from a few lines of descriptor rather than taken
from googleapis-common-protos: four small messages do not justify a dependency, and a
private descriptor pool cannot clash with that package when both are loaded.
"""

from __future__ import annotations

from typing import Any, Optional

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "BackpropError", "InvalidArgument", "NotFound", "ModelNotFound", "DatasetNotFound",
    "ResourceExhausted", "FailedPrecondition", "FitRunning", "NoFit", "WrongReplica",
    "Unavailable", "DeadlineExceeded", "Unauthenticated", "PermissionDenied", "Cancelled",
    "Internal", "Unimplemented", "from_rpc_error", "from_batch_error",
]


class BackpropError(Exception):
    """A call the server (or the gRPC layer) refused.

    `code` is the grpc.StatusCode, `message` the status message, `reason` the ErrorInfo
    reason (e.g. "MODEL_NOT_FOUND"; the code's name when the gRPC layer made the status),
    `field` the request field at fault (or None), `metadata` the ErrorInfo metadata,
    `retry_delay` the least seconds to wait before retrying (RetryInfo) or None,
    `quota` a list of (subject, description) from QuotaFailure.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        field: Optional[str] = None,
        metadata: Optional[dict] = None,
        retry_delay: Optional[float] = None,
        quota: Optional[list] = None,
    ):
        super().__init__(f"{code.name}: {message}" + (f" [{reason}]" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason or code.name
        self.field = field
        self.metadata = dict(metadata or {})
        self.retry_delay = retry_delay
        self.quota = list(quota or [])


class InvalidArgument(BackpropError):
    """INVALID_ARGUMENT: `.field` names the request field at fault ("x", "labels",
    "spec.hidden[0].units", "x-backprop-model", ...)."""


class NotFound(BackpropError):
    """NOT_FOUND: no such model or dataset (or another tenant's)."""


class ModelNotFound(NotFound):
    """NOT_FOUND with reason MODEL_NOT_FOUND."""


class DatasetNotFound(NotFound):
    """NOT_FOUND with reason DATASET_NOT_FOUND."""


class ResourceExhausted(BackpropError):
    """RESOURCE_EXHAUSTED: a server limit. `.retry_delay` (seconds) is set when waiting
    may help (a full queue, the memory budget full for now); `.limit` is the flag."""

    @property
    def limit(self) -> Optional[str]:
        return self.metadata.get("limit")


class FailedPrecondition(BackpropError):
    """FAILED_PRECONDITION: the model's state does not allow the call now."""


class FitRunning(FailedPrecondition):
    """A fit is training the model: calls that change it wait for its end."""


class NoFit(FailedPrecondition):
    """WatchFit on a model that never had a fit."""


class WrongReplica(FailedPrecondition):
    """The call reached a replica that does not hold the id: `.owner` holds it, this
    one is `.replica`. Through a proxy it means the routing header was missing."""

    @property
    def owner(self) -> Optional[str]:
        return self.metadata.get("owner")

    @property
    def replica(self) -> Optional[str]:
        return self.metadata.get("replica")


class Unavailable(BackpropError):
    """UNAVAILABLE: no server answered (or it is shutting down, or not durable now)."""


class DeadlineExceeded(BackpropError):
    """DEADLINE_EXCEEDED: the call's deadline passed (a queued TrainStep is then not
    applied)."""


class Unauthenticated(BackpropError):
    """UNAUTHENTICATED: a missing or unknown bearer token."""


class PermissionDenied(BackpropError):
    """PERMISSION_DENIED."""


class Cancelled(BackpropError):
    """CANCELLED: the call was cancelled (by this client or a shutdown)."""


class Internal(BackpropError):
    """INTERNAL: a server bug or an undecodable message."""


class Unimplemented(BackpropError):
    """UNIMPLEMENTED: the server does not know the method (an older server)."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}
_BY_REASON = {
    "MODEL_NOT_FOUND": ModelNotFound,
    "DATASET_NOT_FOUND": DatasetNotFound,
    "FIT_RUNNING": FitRunning,
    "NO_FIT": NoFit,
    "WRONG_REPLICA": WrongReplica,
}
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _rpc_messages() -> dict:
    """google.rpc.Status, ErrorInfo, BadRequest, RetryInfo and QuotaFailure classes,
    built from their field numbers (google/rpc/*.proto) in a private pool."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="backprop_client/google_rpc_subset.proto", package="google.rpc", syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )

    def message(name, *fields, nested=None):
        m = file.message_type.add(name=name) if nested is None else nested
        for number, fname, ftype, label, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
        return m

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("Status", (1, "code", f.TYPE_INT32, one, ""), (2, "message", f.TYPE_STRING, one, ""),
            (3, "details", f.TYPE_MESSAGE, many, ".google.protobuf.Any"))
    info = message("ErrorInfo", (1, "reason", f.TYPE_STRING, one, ""),
                   (2, "domain", f.TYPE_STRING, one, ""),
                   (3, "metadata", f.TYPE_MESSAGE, many, ".google.rpc.ErrorInfo.MetadataEntry"))
    entry = info.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    message("", (1, "key", f.TYPE_STRING, one, ""), (2, "value", f.TYPE_STRING, one, ""),
            nested=entry)
    bad = message("BadRequest", (1, "field_violations", f.TYPE_MESSAGE, many,
                                 ".google.rpc.BadRequest.FieldViolation"))
    message("", (1, "field", f.TYPE_STRING, one, ""), (2, "description", f.TYPE_STRING, one, ""),
            nested=bad.nested_type.add(name="FieldViolation"))
    message("RetryInfo", (1, "retry_delay", f.TYPE_MESSAGE, one, ".google.protobuf.Duration"))
    quota = message("QuotaFailure", (1, "violations", f.TYPE_MESSAGE, many,
                                     ".google.rpc.QuotaFailure.Violation"))
    message("", (1, "subject", f.TYPE_STRING, one, ""), (2, "description", f.TYPE_STRING, one, ""),
            nested=quota.nested_type.add(name="Violation"))

    pool = descriptor_pool.DescriptorPool()
    for dep in ("any", "duration"):
        module = __import__(f"google.protobuf.{dep}_pb2", fromlist=["DESCRIPTOR"])
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(file.SerializeToString())
    names = ("Status", "ErrorInfo", "BadRequest", "RetryInfo", "QuotaFailure")
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"google.rpc.{n}"))
            for n in names}


_RPC = _rpc_messages()


def _trailer(metadata, key: str) -> Optional[bytes]:
    for k, v in metadata or ():
        if k == key:
            return v
    return None


def from_status(code: grpc.StatusCode, message: str, details_bin: Optional[bytes]) -> BackpropError:
    """The exception for a status `code`/`message` and its `grpc-status-details-bin`."""
    fields: dict[str, Any] = {}
    if details_bin:
        status = _RPC["Status"]()
        try:
            status.ParseFromString(details_bin)
        except Exception:  # a proxy's own status: keep the code and message
            status = _RPC["Status"]()
        for detail in status.details:
            kind = detail.type_url.rsplit("/", 1)[-1].removeprefix("google.rpc.")
            if kind not in _RPC:
                continue
            value = _RPC[kind]()
            value.ParseFromString(detail.value)
            if kind == "ErrorInfo":
                fields["reason"] = value.reason
                fields["metadata"] = dict(value.metadata)
                fields.setdefault("field", value.metadata.get("field") or None)
            elif kind == "BadRequest" and value.field_violations:
                # BadRequest is the authoritative field; ErrorInfo's metadata repeats it.
                fields["field"] = value.field_violations[0].field
            elif kind == "RetryInfo":
                d = value.retry_delay
                fields["retry_delay"] = d.seconds + d.nanos / 1e9
            elif kind == "QuotaFailure":
                fields["quota"] = [(v.subject, v.description) for v in value.violations]
    cls = _BY_REASON.get(fields.get("reason", ""), _BY_CODE.get(code, BackpropError))
    return cls(code, message, **fields)


def from_rpc_error(error: grpc.RpcError) -> BackpropError:
    """The exception for a grpc.RpcError (sync) or grpc.aio.AioRpcError: both have
    code(), details() and trailing_metadata()."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    message = error.details() if callable(getattr(error, "details", None)) else str(error)
    trailers = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else ()
    exc = from_status(code or grpc.StatusCode.UNKNOWN, message or "",
                      _trailer(trailers, "grpc-status-details-bin"))
    exc.__cause__ = error
    return exc


def from_batch_error(error) -> BackpropError:
    """The exception a TrainStream batch's BatchError stands for (what TrainStep's status
    would have said)."""
    code = _CODE_BY_NUMBER.get(error.code, grpc.StatusCode.UNKNOWN)
    cls = _BY_REASON.get(error.reason, _BY_CODE.get(code, BackpropError))
    return cls(code, error.message, reason=error.reason, field=error.field or None)
