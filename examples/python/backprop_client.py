"""The few helpers every Python caller of backprop needs: a channel, the stubs, tensors.

The stubs are generated from proto/ by setup.sh into gen/ (never committed); importing
this module puts gen/ on sys.path, so `from backprop_client import pb, pb_grpc` works
from any working directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    if token:
        channel = grpc.intercept_channel(channel, _Bearer(token))
    return channel, pb_grpc.TrainerStub(channel)


class _Bearer(grpc.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every unary call (over TLS or not)."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or []) + [self._header]
        return continuation(details._replace(metadata=metadata), request)


def tensor(a: np.ndarray) -> pb.Tensor:
    """A row-major f32 Tensor message from a numpy array."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return pb.Tensor(shape=list(a.shape), values=a.ravel().tolist())
