"""Status codes → exceptions with the details' fields; retries only for read-only calls;
deadlines; the routing header; bearer tokens."""

from __future__ import annotations

import socket
import threading
import time

import grpc
import numpy as np
import pytest

from backprop_client import Client, errors
from backprop_client.errors import _RPC
from conftest import AUTH_TOKEN, serve

SPEC = dict(input_dim=4, num_classes=3, hidden=[3])


def test_invalid_argument_names_the_field(client):
    model = client.create_model(SPEC).model_id
    with pytest.raises(errors.InvalidArgument) as bad_x:
        client.train_step(model, np.zeros((2, 5)), [0, 1])
    assert bad_x.value.field == "x" and bad_x.value.reason == "INVALID_ARGUMENT"
    assert bad_x.value.code == grpc.StatusCode.INVALID_ARGUMENT and "x" in bad_x.value.message
    with pytest.raises(errors.InvalidArgument) as bad_labels:
        client.forward(model, np.zeros((2, 4)), [0, 7])
    assert bad_labels.value.field.startswith("labels")
    with pytest.raises(errors.InvalidArgument) as bad_spec:
        client.create_model(input_dim=4, num_classes=1)
    assert bad_spec.value.field == "spec.num_classes"
    with pytest.raises(errors.InvalidArgument) as nan:
        client.train_step(model, np.full((2, 4), np.nan), [0, 1])
    assert nan.value.field == "x"
    with pytest.raises(errors.InvalidArgument) as malformed:
        client.get_model("not-an-id")  # no routing header for it: the body's field is named
    assert malformed.value.field == "model_id"


def test_not_found(client):
    with pytest.raises(errors.ModelNotFound) as model:
        client.train_step("0" * 32, np.zeros((1, 4)), [0])
    assert isinstance(model.value, errors.NotFound) and model.value.reason == "MODEL_NOT_FOUND"
    with pytest.raises(errors.DatasetNotFound):
        client.delete_dataset("f" * 32)
    with pytest.raises(errors.NoFit):
        list(client.watch_fit(client.create_model(SPEC).model_id))


def test_resource_exhausted_names_its_limit(limited_server):
    with Client(limited_server) as c:
        c.create_model(SPEC)
        with pytest.raises(errors.ResourceExhausted) as full:
            c.create_model(SPEC)
    assert full.value.reason == "SESSION_LIMIT" and full.value.limit == "--max-sessions"
    assert full.value.quota and full.value.quota[0][0] == "--max-sessions"
    assert full.value.retry_delay is None  # waiting does not free a session


def test_retry_info_and_bad_request_details_are_read():
    def any_of(kind, message):
        # Status's own Any (from the private pool), given as a dict.
        return {"type_url": f"type.googleapis.com/google.rpc.{kind}",
                "value": message.SerializeToString()}

    retry = _RPC["RetryInfo"]()
    retry.retry_delay.seconds, retry.retry_delay.nanos = 0, 200_000_000
    info = _RPC["ErrorInfo"](reason="QUEUE_FULL", domain="backprop",
                             metadata={"limit": "--queue-depth"})
    status = _RPC["Status"](code=8, message="queue full", details=[any_of("ErrorInfo", info),
                                                                    any_of("RetryInfo", retry)])
    exc = errors.from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full",
                             status.SerializeToString())
    assert type(exc) is errors.ResourceExhausted and exc.retry_delay == pytest.approx(0.2)
    assert exc.limit == "--queue-depth" and exc.reason == "QUEUE_FULL"
    bad = _RPC["BadRequest"]()
    bad.field_violations.add(field="x", description="shape")
    exc = errors.from_status(grpc.StatusCode.INVALID_ARGUMENT, "m",
                             _RPC["Status"](details=[any_of("BadRequest", bad)]).SerializeToString())
    assert exc.field == "x" and exc.reason == "INVALID_ARGUMENT"
    assert type(errors.from_status(grpc.StatusCode.UNAVAILABLE, "", b"junk")) is errors.Unavailable


def test_wrong_replica_gives_the_owner(replica_server):
    with Client(replica_server) as c:
        model = c.create_model(SPEC).model_id
        assert model.startswith("backprop-1.")
        elsewhere = "backprop-2." + model.split(".", 1)[1]
        with pytest.raises(errors.WrongReplica) as info:
            c.get_model(elsewhere)
    assert info.value.owner == "backprop-2" and info.value.replica == "backprop-1"
    assert isinstance(info.value, errors.FailedPrecondition)


def test_bearer_token(auth_server):
    with Client(auth_server) as anonymous:
        with pytest.raises(errors.Unauthenticated):
            anonymous.list_models()
    with Client(auth_server, token=AUTH_TOKEN) as c:
        model = c.create_model(SPEC).model_id
        assert [m.model_id for m in c.list_models()] == [model]
        c.upload_dataset(np.zeros((2, 4)), [0, 1])  # streams carry the token too
        assert len(c.export_model(model)) > 0


def test_deadline_exceeded(client):
    model = client.create_model(input_dim=1000, num_classes=10, hidden=[1000]).model_id
    with pytest.raises(errors.DeadlineExceeded):
        client.train_step(model, np.zeros((1000, 1000), np.float32), np.zeros(1000, int),
                          timeout=0.001)


class Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
               grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Records each attempt's method and metadata."""

    def __init__(self):
        self.calls = []

    def _record(self, continuation, details, request):
        self.calls.append((details.method.rsplit("/", 1)[-1], dict(details.metadata or ())))
        return continuation(details, request)

    intercept_unary_unary = intercept_unary_stream = _record
    intercept_stream_unary = intercept_stream_stream = _record

    def count(self, method):
        return sum(1 for m, _ in self.calls if m == method)


def test_every_call_naming_a_model_carries_the_routing_header(replica_server):
    # The replica checks each header against the body and its own name, too.
    recorder = Recorder()
    with Client(replica_server, interceptors=[recorder]) as c:
        model = c.create_model(SPEC, replica="backprop-1").model_id
        X, y = np.zeros((2, 4)), [0, 1]
        c.train_step(model, X, y)
        c.forward(model, X)
        c.get_model(model)
        list(c.train_stream(model, [(X, y)]))
        dataset = c.upload_dataset(X, y, next_to=model).dataset_id
        list(c.fit(model, dataset, epochs=1, batch_size=2))
        c.get_history(model)
        data = c.export_model(model)
        c.get_dataset(dataset)
        c.delete_dataset(dataset)
        c.import_model(data, replica=model)
        c.delete_model(model)
    headers = {m: md.get("x-backprop-model") for m, md in recorder.calls}
    assert headers.pop("CreateModel") == "backprop-1"
    assert headers.pop("GetDataset") == headers.pop("DeleteDataset") == dataset
    assert set(headers.values()) == {model}, headers


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_retries_only_read_only_calls():
    recorder = Recorder()
    with Client(_dead_address(), retries=2, backoff=0.01, timeout=5,
                interceptors=[recorder]) as c:
        model = "0" * 32
        for read in (lambda: c.get_model(model), c.list_models, lambda: c.get_history(model),
                     lambda: c.forward(model, np.zeros((1, 4))), c.health):
            with pytest.raises(errors.Unavailable):
                read()
        for write in (lambda: c.train_step(model, np.zeros((1, 4)), [0]),
                      lambda: c.create_model(SPEC), lambda: c.delete_model(model),
                      lambda: c.apply_gradients(model, {})):
            with pytest.raises(errors.Unavailable):
                write()
    counts = {m: recorder.count(m) for m, _ in recorder.calls}
    assert counts == {"GetModel": 3, "ListModels": 3, "GetHistory": 3, "Forward": 3, "Check": 3,
                      "TrainStep": 1, "CreateModel": 1, "DeleteModel": 1, "ApplyGradients": 1}


def test_a_read_retried_until_the_server_comes_up(workdir):
    # The port is free now; a server starts on it after the first attempts failed.
    address = _dead_address()
    up, done = threading.Event(), threading.Event()

    def start_later():
        time.sleep(0.5)
        with serve(workdir / "later", listen=address):
            up.set()
            done.wait(10)

    thread = threading.Thread(target=start_later, daemon=True)
    thread.start()
    recorder = Recorder()
    with Client(address, retries=12, backoff=0.1, max_backoff=0.5,
                interceptors=[recorder]) as c:
        assert c.list_models() == []
    done.set()
    assert up.is_set() and recorder.count("ListModels") >= 2
    thread.join()
