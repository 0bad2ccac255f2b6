"""Client: the Trainer's RPCs as blocking calls (the methods are in api.py)."""

from __future__ import annotations

import itertools
import time
from typing import Optional, Sequence

import grpc

from ._proto import backprop_pb2_grpc as pb_grpc
from .api import CHANNEL_OPTIONS, TrainerMethods, credentials
from .errors import from_rpc_error


class Client(TrainerMethods):
    """A connection to a backprop server with numpy in and out.

        client = Client("127.0.0.1:50051", token=None, tls_ca=None, timeout=60)
        model = client.create_model(input_dim=64, num_classes=10, hidden=[100],
                                    loss="softmax", optimizer="adam")
        step = client.train_step(model.model_id, X[:64], y[:64])

    `token` is sent as `authorization: Bearer <token>`; `tls=True`, `tls_ca`
    (`tls_cert`, `tls_key`) or a grpc.ChannelCredentials turn TLS on. `timeout` is every
    call's default deadline in seconds (None = none); each method takes `timeout=` too.
    Streams that run as long as training does (fit, watch_fit, train_stream) have no
    default deadline. Read-only calls are retried `retries` times on UNAVAILABLE with
    exponential backoff from `backoff` seconds; calls that change state never are.
    Every call that names a model or dataset carries `x-backprop-model`, so a proxy in
    front of several replicas routes it to the one that holds it. Errors raise
    backprop_client.errors.BackpropError subclasses. The channel connects lazily; close
    it with close() or a `with` block.
    """

    def __init__(
        self,
        address: str,
        token: Optional[str] = None,
        *,
        tls=None,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        timeout: Optional[float] = 60.0,
        retries: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        interceptors: Sequence = (),
        options: Sequence = (),
    ):
        self.address = address
        creds = credentials(tls, tls_ca, tls_cert, tls_key)
        opts = CHANNEL_OPTIONS + list(options)
        channel = (grpc.secure_channel(address, creds, options=opts) if creds
                   else grpc.insecure_channel(address, options=opts))
        self._raw_channel = channel
        if interceptors:
            channel = grpc.intercept_channel(channel, *interceptors)
        self._setup(channel, pb_grpc.TrainerStub(channel), token=token, timeout=timeout,
                    retries=retries, backoff=backoff, max_backoff=max_backoff)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the transport hooks of TrainerMethods ------------------------------------------

    def _unary(self, name, request, parse, *, route=None, explicit=False, timeout, long=False):
        call, metadata = self._calls[name], self._metadata(route, explicit)
        deadline = self._deadline(timeout, long)
        for attempt in itertools.count():
            try:
                answer = call(request, metadata=metadata, timeout=deadline)
            except grpc.RpcError as error:
                delay = self._retry_delay(name, attempt, error)
                if delay is None:
                    raise from_rpc_error(error) from None
                time.sleep(delay)
            else:
                return parse(answer)

    def _unary_stream(self, name, request, parse, *, route=None, timeout, long=False,
                      collect=None):
        call = self._calls[name](request, metadata=self._metadata(route),
                                 timeout=self._deadline(timeout, long))
        answers = self._iterate(call, parse)
        return collect(list(answers)) if collect else answers

    def _stream_unary(self, name, requests, parse, *, route=None, explicit=False, timeout):
        try:
            answer = self._calls[name](iter(requests), metadata=self._metadata(route, explicit),
                                       timeout=self._deadline(timeout))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return parse(answer)

    def _stream_stream(self, name, requests, parse, *, route=None, timeout, long=False):
        call = self._calls[name](requests, metadata=self._metadata(route),
                                 timeout=self._deadline(timeout, long))
        return self._iterate(call, parse)

    @staticmethod
    def _map_requests(items, make):
        return (make(item, i) for i, item in enumerate(items))

    @staticmethod
    def _iterate(call, parse):
        """The answers of a streaming call; leaving early (break, close(), an error,
        garbage collection) cancels the call, which is how a fit is stopped."""
        try:
            for message in call:
                yield parse(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # a no-op once the stream has ended
