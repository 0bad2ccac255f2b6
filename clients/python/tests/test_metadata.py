"""A model's metadata through the package, on the real server: name and labels at
creation, get_model's and list_models' metadata and final metrics, list_models'
filters, update_model (and a refused one changing nothing), the async twin.

The suite's server is shared by every test module, so each test tags its models with a
label of its own and filters on it, and deletes what it made.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import grpc
import numpy as np
import pytest

from backprop_client import AsyncClient, Client, ModelMetadata, errors
from test_errors import _dead_address

SPEC = dict(input_dim=4, num_classes=3, hidden=[6], loss="softmax", optimizer="sgd",
            learning_rate=0.1, l2=1e-3, seed=5)


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


@pytest.fixture
def tag(client):
    """A label value no other test uses; the models carrying it are deleted after."""
    value = uuid.uuid4().hex[:16]
    yield value
    for m in client.list_models(labels={"suite": value}):
        client.delete_model(m.model_id)


def test_create_with_name_and_labels_then_get_model(client, tag):
    before = time.time()
    model = client.create_model(SPEC, name="digits", labels={"suite": tag, "team": "vision"})
    after = time.time()
    info = client.get_model(model.model_id, values=False)
    meta = info.metadata
    assert meta == ModelMetadata("digits", {"suite": tag, "team": "vision"},
                                 meta.created_time, "")
    assert math.floor(before) <= meta.created_time <= math.ceil(after)
    assert info.last_step is None and info.last_epoch is None  # nothing trained yet
    plain = client.create_model(SPEC, labels={"suite": tag})  # no name
    assert client.get_model(plain.model_id).metadata.name == ""


def test_list_models_filters_by_name_and_labels(client, tag):
    name = f"digits-{tag}"
    a = client.create_model(SPEC, name=name, labels={"suite": tag, "team": "vision"}).model_id
    b = client.create_model(SPEC, name=name, labels={"suite": tag, "team": "nlp"}).model_id
    c = client.create_model(SPEC, labels={"suite": tag}).model_id

    def ids(**filters):
        return {m.model_id for m in client.list_models(**filters)}

    assert ids(name=name) == {a, b}
    assert ids(labels={"suite": tag}) == {a, b, c}
    assert ids(labels={"suite": tag, "team": "vision"}) == {a}  # every label must match
    assert ids(name=name, labels={"team": "nlp"}) == {b}
    assert ids(name=name, labels={"team": "ops"}) == set()
    assert ids(name=name[:-1]) == set()  # the name matches exactly, not as a prefix
    assert {a, b, c} <= ids()  # no filter: all of them
    summary, = client.list_models(labels={"suite": tag, "team": "vision"})
    assert summary.metadata == client.get_model(a, values=False).metadata
    assert summary.metadata.name == name and summary.last_step is None


def test_update_model_renames_sets_and_removes(client, tag):
    model = client.create_model(SPEC, name="digits",
                                labels={"suite": tag, "team": "vision", "run": "1"}).model_id
    created = client.get_model(model, values=False).metadata.created_time
    changed = client.update_model(model, name="digits v2",
                                  set_labels={"run": "2", "stage": "prod"},
                                  remove_labels=["team", "never-set"])
    assert changed == ModelMetadata("digits v2", {"suite": tag, "run": "2", "stage": "prod"},
                                    created, "")
    assert client.get_model(model, values=False).metadata == changed
    # No name: left as it is; one key as a str; "" removes the name.
    assert client.update_model(model) == changed
    assert client.update_model(model, remove_labels="stage").labels == {"suite": tag, "run": "2"}
    unnamed = client.update_model(model, name="")
    assert unnamed == ModelMetadata("", {"suite": tag, "run": "2"}, created, "")
    assert [m.model_id for m in client.list_models(labels={"suite": tag, "run": "2"})] == [model]


@pytest.mark.parametrize("change, field", [
    (dict(name="new", set_labels={"b": "2", "bad key": "3"}), 'set_labels["bad key"]'),
    (dict(name="x" * 129, set_labels={"b": "2"}), "name"),
    (dict(name=" padded"), "name"),
    (dict(set_labels={"k": "v" * 257}), 'set_labels["k"]'),
    (dict(set_labels={"a": "2"}, remove_labels=["a"]), 'remove_labels["a"]'),
    (dict(remove_labels=["team=ml"]), "remove_labels[0]"),
    (dict(set_labels={f"k{i}": "v" for i in range(64)}), "set_labels"),  # 66 with a, suite
])
def test_a_refused_update_names_its_field_and_changes_nothing(client, tag, change, field):
    model = client.create_model(SPEC, name="kept", labels={"a": "1", "suite": tag}).model_id
    before = client.get_model(model, values=False).metadata
    with pytest.raises(errors.InvalidArgument) as refused:
        client.update_model(model, **change)
    assert refused.value.field == field, refused.value.message
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.get_model(model, values=False).metadata == before


def test_a_refused_create_names_its_field(client):
    for kwargs, field in [(dict(name="tab\tname"), "name"),
                          (dict(labels={"-bad": "x"}), 'labels["-bad"]'),
                          (dict(labels={"a/b": "x"}), 'labels["a/b"]')]:
        with pytest.raises(errors.InvalidArgument) as refused:
            client.create_model(SPEC, **kwargs)
        assert refused.value.field == field, refused.value.message
    with pytest.raises(errors.ModelNotFound):
        client.update_model("0" * 32, name="x")


def test_last_step_is_the_latest_steps_losses(client, tag):
    model = client.create_model(SPEC, labels={"suite": tag}).model_id
    steps = [client.train_step(model, *batch(seed=s)) for s in range(3)]
    last = steps[-1]
    info = client.get_model(model, values=False)
    point = info.last_step
    assert point.step == last.step == 3
    assert point.data_loss == last.losses.data_loss and point.reg_loss == last.losses.reg_loss
    assert point.accuracy == last.accuracy and point.learning_rate == pytest.approx(0.1)
    assert info.last_epoch is None  # steps without a fit have no epoch
    history = client.get_history(model).steps[-1]
    assert point.time == history["time"] and point.data_loss == history["data_loss"]
    summary, = client.list_models(labels={"suite": tag})
    assert summary.last_step == point
    # ApplyGradients sees no batch: NaN on the wire, None here.
    client.apply_gradients(model, client.backward(model, *batch(seed=9)).gradients)
    after = client.get_model(model, values=False).last_step
    assert after.step == 4 and after.learning_rate == point.learning_rate
    assert (after.data_loss, after.reg_loss, after.accuracy) == (None, None, None)


def test_fit_records_its_dataset_and_last_epoch(client, tag):
    model = client.create_model(SPEC, labels={"suite": tag}).model_id
    X, y = batch(60, seed=3)
    dataset = client.upload_dataset(X, y, next_to=model).dataset_id
    try:
        events = list(client.fit(model, dataset, epochs=3, batch_size=9, seed=4,
                                 validation_fraction=0.25))
        ends = [e.epoch_end for e in events if e.WhichOneof("event") == "epoch_end"]
        info = client.get_model(model, values=False)
        end, epoch = ends[-1], info.last_epoch
        assert len(ends) == 3 and info.metadata.dataset_id == dataset
        assert (epoch.epoch, epoch.step) == (end.epoch, end.step)
        assert end.epoch == ends[0].epoch + 2 and end.step == info.step
        assert epoch.validation_accuracy == end.validation_accuracy
        assert epoch.validation_loss == end.validation_loss
        assert epoch.mean_loss == end.mean_loss and epoch.train_accuracy == end.train_accuracy
        assert info.last_step.step == info.step
        # A fit without validation: its epochs have none.
        list(client.fit(model, dataset, epochs=1, batch_size=60))
        again = client.get_model(model, values=False)
        assert again.last_epoch.step == again.step == info.step + 1
        assert again.last_epoch.validation_loss is None
        assert again.last_epoch.validation_accuracy is None
    finally:
        client.delete_dataset(dataset)


class Requests(grpc.UnaryUnaryClientInterceptor):
    """Records each attempt's method, metadata and request."""

    def __init__(self):
        self.calls = []

    def intercept_unary_unary(self, continuation, details, request):
        self.calls.append((details.method.rsplit("/", 1)[-1], dict(details.metadata or ()),
                           request))
        return continuation(details, request)


def test_update_model_is_routed_and_never_retried():
    recorder = Requests()
    model = "0123456789abcdef" * 2
    with Client(_dead_address(), retries=2, backoff=0.01, timeout=5,
                interceptors=[recorder]) as c:
        with pytest.raises(errors.Unavailable):
            c.update_model(model, set_labels={"a": "1"})
        with pytest.raises(errors.Unavailable):
            c.update_model(model, name="")
        with pytest.raises(errors.Unavailable):
            c.list_models(name="n", labels={"a": "1"})
    methods = [m for m, _, _ in recorder.calls]
    assert methods == ["UpdateModel", "UpdateModel"] + ["ListModels"] * 3
    (_, headers, first), (_, _, second) = recorder.calls[:2]
    assert headers.get("x-backprop-model") == model
    assert not first.HasField("name") and dict(first.set_labels) == {"a": "1"}
    assert second.HasField("name") and second.name == ""  # "" removes, so it is sent
    listed = recorder.calls[2][2]
    assert listed.name == "n" and dict(listed.labels) == {"a": "1"} and listed.page_size == 0


def test_async_metadata(address, client, tag):
    X, y = batch(seed=1)

    async def main():
        async with AsyncClient(address) as c:
            model = (await c.create_model(SPEC, name="async", labels={"suite": tag})).model_id
            step = await c.train_step(model, X, y)
            changed = await c.update_model(model, set_labels={"stage": "dev"})
            listed = await c.list_models(name="async", labels={"suite": tag})
            info = await c.get_model(model, values=False)
            with pytest.raises(errors.InvalidArgument) as refused:
                await c.update_model(model, set_labels={"bad key": "x"})
            after = await c.get_model(model, values=False)
            return model, step, changed, listed, info, refused.value, after

    model, step, changed, listed, info, refused, after = asyncio.run(main())
    assert changed.name == "async" and changed.labels == {"suite": tag, "stage": "dev"}
    assert [m.model_id for m in listed] == [model] and listed[0].metadata == changed
    assert info.metadata == changed == after.metadata
    assert info.last_step.data_loss == step.losses.data_loss and info.last_step.step == 1
    assert refused.field == 'set_labels["bad key"]'
    assert client.get_model(model, values=False).metadata == changed  # the sync view agrees
