"""AsyncClient: the same methods as Client, through grpc.aio, with the same answers."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import numpy as np
import pytest

from backprop_client import AsyncClient, errors, pb
from test_errors import _dead_address

SPEC = dict(input_dim=6, num_classes=3, hidden=[5], loss="softmax", optimizer="adam",
            learning_rate=1e-2, seed=3)


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def run(coroutine):
    return asyncio.run(coroutine)


def test_async_answers_equal_the_sync_ones(client, address):
    sync_model = client.create_model(SPEC).model_id
    X, y = batch()

    async def main():
        async with AsyncClient(address) as c:
            model = (await c.create_model(SPEC)).model_id
            step = await c.train_step(model, X, y)
            fwd = await c.forward(model, X, y)
            info = await c.get_model(model)
            data = await c.export_model(model)
            copy = await c.import_model(data)
            models = await c.list_models()
            health = await c.health()
            await c.delete_model(copy.model_id)
            return step, fwd, info, copy, models, health

    step, fwd, info, copy, models, health = run(main())
    assert step == client.train_step(sync_model, X, y)
    sync_fwd = client.forward(sync_model, X, y)
    assert fwd.scores.tobytes() == sync_fwd.scores.tobytes() and fwd.losses == sync_fwd.losses
    for name, value in client.get_model(sync_model).parameters.items():
        assert info.parameters[name].tobytes() == value.tobytes()
    assert copy.step == 1 and info.model_id in {m.model_id for m in models} and health


def test_async_streams(address):
    batches = [batch(seed=s) for s in range(3)]

    async def agen():
        for item in batches:
            yield item

    async def main():
        async with AsyncClient(address) as c:
            a = (await c.create_model(SPEC)).model_id
            b = (await c.create_model(SPEC)).model_id
            from_async = [r async for r in c.train_stream(a, agen())]
            from_list = [r async for r in c.train_stream(b, batches)]
            X, y = batch(120, seed=9)
            dataset = (await c.upload_dataset(X, y, next_to=a)).dataset_id
            events = [e async for e in c.fit(a, dataset, epochs=2, batch_size=30)]
            history = await c.get_history(a)
            # Leaving an `async for` early cancels the fit.
            stream = c.fit(b, dataset, epochs=100000, batch_size=1)
            async for event in stream:
                break
            await stream.aclose()
            last = [e async for e in c.watch_fit(b)][-1]
            await c.delete_dataset(dataset)
            return from_async, from_list, events, history, last

    from_async, from_list, events, history, last = run(main())
    assert from_async == from_list and [r.step for r in from_async] == [1, 2, 3]
    assert events[-1].finished.reason == pb.FIT_END_COMPLETED
    assert len(history.steps) == 3 + 8 and len(history.epochs) == 2
    assert last.finished.reason == pb.FIT_END_CANCELLED


def test_async_errors_and_retries():
    class Count(grpc.aio.UnaryUnaryClientInterceptor):
        def __init__(self):
            self.methods = []

        async def intercept_unary_unary(self, continuation, details, request):
            method = details.method  # bytes in grpc.aio
            self.methods.append((method.decode() if isinstance(method, bytes) else method).rsplit("/", 1)[-1])
            return await continuation(details, request)

    counter = Count()

    async def main():
        async with AsyncClient(_dead_address(), retries=2, backoff=0.01,
                               interceptors=[counter]) as c:
            with pytest.raises(errors.Unavailable):
                await c.get_model("0" * 32)
            with pytest.raises(errors.Unavailable):
                await c.train_step("0" * 32, np.zeros((1, 6)), [0])

    run(main())
    assert counter.methods == ["GetModel"] * 3 + ["TrainStep"]


def test_async_error_fields(address):
    async def main():
        async with AsyncClient(address) as c:
            model = (await c.create_model(SPEC)).model_id
            with pytest.raises(errors.InvalidArgument) as bad:
                await c.train_step(model, np.zeros((2, 5)), [0, 1])
            with pytest.raises(errors.ModelNotFound):
                await c.get_model("0" * 32)
            answers = [a async for a in c.train_stream(
                model, [(np.zeros((2, 5)), [0, 1])], raise_errors=False)]
            return bad.value, answers

    bad, answers = run(main())
    assert bad.field == "x" and bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(answers[0], errors.InvalidArgument) and answers[0].field == "x"
