"""backprop_client: a Python client for the backprop training service.

    from backprop_client import Client
    client = Client("127.0.0.1:50051")

Client (blocking) and AsyncClient (asyncio) have the same methods, one per Trainer RPC
(api.py), numpy arrays in and out (convert.py); errors are BackpropError subclasses
(errors.py); backprop_client.sklearn has BackpropClassifier (needs the [sklearn] extra).
The generated stubs are backprop_client.pb (messages) and backprop_client.pb_grpc.
"""

from . import errors
from ._proto import backprop_pb2 as pb
from ._proto import backprop_pb2_grpc as pb_grpc
from .aio import AsyncClient
from .api import ImportedModel, CancelFitResult
from .client import Client
from .convert import (ROUTE_HEADER, History, HistoryEpoch, HistoryStep, Losses, ModelMetadata,
                      model_spec)
from .errors import BackpropError

__all__ = [
    "AsyncClient", "BackpropError", "CancelFitResult", "Client", "History", "HistoryEpoch",
    "HistoryStep", "ImportedModel", "Losses", "ModelMetadata", "ROUTE_HEADER", "errors",
    "model_spec", "pb", "pb_grpc",
]
__version__ = "0.1.0"
