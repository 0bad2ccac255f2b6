"""AsyncClient: the Trainer's RPCs over grpc.aio (the methods are in api.py).

The same methods as Client, with the same arguments and answers: unary calls and
export_model/import_model/upload_dataset return awaitables; fit, watch_fit and
train_stream return async iterators (`async for event in client.fit(...)`), whose
`aclose()` (or leaving the `async for` through break) cancels the call.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Optional, Sequence

import grpc
import grpc.aio

from ._proto import backprop_pb2_grpc as pb_grpc
from .api import CHANNEL_OPTIONS, TrainerMethods, credentials
from .errors import from_rpc_error


class AsyncClient(TrainerMethods):
    """Client for asyncio: `async with AsyncClient(address) as client: ...`; every
    argument is Client's (see there), `interceptors` being grpc.aio interceptors."""

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
        extra = {"interceptors": list(interceptors)} if interceptors else {}
        channel = (grpc.aio.secure_channel(address, creds, options=opts, **extra) if creds
                   else grpc.aio.insecure_channel(address, options=opts, **extra))
        self._setup(channel, pb_grpc.TrainerStub(channel), token=token, timeout=timeout,
                    retries=retries, backoff=backoff, max_backoff=max_backoff)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- the transport hooks of TrainerMethods ------------------------------------------

    async def _unary(self, name, request, parse, *, route=None, explicit=False, timeout,
                     long=False):
        call, metadata = self._calls[name], self._metadata(route, explicit)
        deadline = self._deadline(timeout, long)
        for attempt in itertools.count():
            try:
                answer = await call(request, metadata=metadata, timeout=deadline)
            except grpc.aio.AioRpcError as error:
                delay = self._retry_delay(name, attempt, error)
                if delay is None:
                    raise from_rpc_error(error) from None
                await asyncio.sleep(delay)
            else:
                return parse(answer)

    def _unary_stream(self, name, request, parse, *, route=None, timeout, long=False,
                      collect=None):
        call = self._calls[name](request, metadata=self._metadata(route),
                                 timeout=self._deadline(timeout, long))
        answers = self._iterate(call, parse)
        return self._collect(answers, collect) if collect else answers

    async def _stream_unary(self, name, requests, parse, *, route=None, explicit=False,
                            timeout):
        try:
            answer = await self._calls[name](iter(requests),
                                             metadata=self._metadata(route, explicit),
                                             timeout=self._deadline(timeout))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return parse(answer)

    def _stream_stream(self, name, requests, parse, *, route=None, timeout, long=False):
        call = self._calls[name](requests, metadata=self._metadata(route),
                                 timeout=self._deadline(timeout, long))
        return self._iterate(call, parse)

    @staticmethod
    def _map_requests(items, make):
        """Batches from an async iterable are read as they come; a plain iterable too."""
        if hasattr(items, "__aiter__"):
            async def mapped():
                i = 0
                async for item in items:
                    yield make(item, i)
                    i += 1
            return mapped()
        return (make(item, i) for i, item in enumerate(items))

    @staticmethod
    async def _collect(answers, collect):
        return collect([a async for a in answers])

    @staticmethod
    async def _iterate(call, parse):
        """The answers of a streaming call; aclose() or an error cancels the call."""
        try:
            async for message in call:
                yield parse(message)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
