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


def connect(address: str, timeout: float = 10.0) -> tuple[grpc.Channel, pb_grpc.TrainerStub]:
    """An insecure channel to `address` (host:port), ready to use, and a Trainer stub."""
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    grpc.channel_ready_future(channel).result(timeout=timeout)
    return channel, pb_grpc.TrainerStub(channel)


def tensor(a: np.ndarray) -> pb.Tensor:
    """A row-major f32 Tensor message from a numpy array."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return pb.Tensor(shape=list(a.shape), values=a.ravel().tolist())
