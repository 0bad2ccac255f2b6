"""Client against the real server: every RPC with numpy in and out, compared with the
same calls made as plain protobuf with tensors as numbers (`values`, `values_f64`)."""

from __future__ import annotations

import hashlib

import grpc
import numpy as np
import pytest

from backprop_client import convert, errors, pb, pb_grpc

SPEC = dict(input_dim=6, num_classes=3, hidden=[5], loss="softmax", l2=1e-3,
            optimizer="sgd", learning_rate=0.1, seed=7)


@pytest.fixture(scope="module")
def stub(address):
    """A bare Trainer stub: the protobuf path the package is checked against."""
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.TrainerStub(channel)


def batch(n=8, d=6, c=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, c, n)


def numbers(a: np.ndarray) -> pb.Tensor:
    """A tensor sent as numbers, as the example helper sends it."""
    if a.dtype == np.float64:
        return pb.Tensor(shape=a.shape, values_f64=a.ravel().tolist())
    return pb.Tensor(shape=a.shape, values=a.astype(np.float32).ravel().tolist())


def test_train_step_equals_the_raw_protobuf_step(client, stub):
    ours = client.create_model(**SPEC).model_id
    theirs = stub.CreateModel(pb.CreateModelRequest(spec=convert.model_spec(SPEC))).model_id
    for step in range(3):
        X, y = batch(seed=step)
        a = client.train_step(ours, X, y)
        b = stub.TrainStep(pb.TrainStepRequest(model_id=theirs, x=numbers(X), labels=y.tolist()))
        assert a.losses == convert.losses(b.losses) and a.losses.reg_loss > 0
        assert a.accuracy == b.accuracy and a.step == b.step == step + 1
    mine = client.get_model(ours).parameters
    other = stub.GetModel(pb.GetModelRequest(model_id=theirs, include_values=True))
    for p in other.parameters:
        np.testing.assert_array_equal(mine[p.name], np.array(p.value.values, np.float32).reshape(p.shape))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_raw_tensors_round_trip_bit_exactly(client, stub, dtype):
    model = client.create_model(SPEC, dtype=dtype).model_id
    X, y = batch(dtype=np.dtype(dtype))
    raw = client.forward(model, X, y)
    plain = stub.Forward(pb.ForwardRequest(model_id=model, x=numbers(X), labels=y.tolist()))
    want = convert.from_tensor(plain.scores)
    assert not plain.scores.raw and raw.scores.dtype == np.dtype(dtype)
    assert raw.scores.tobytes() == want.tobytes()  # bit for bit, not approximately
    np.testing.assert_array_equal(raw.predictions, plain.predictions)
    assert raw.losses == convert.losses(plain.losses) and raw.accuracy == plain.accuracy
    # GetModel's raw_values against its numbers.
    info = client.get_model(model)
    numbers_reply = stub.GetModel(pb.GetModelRequest(model_id=model, include_values=True))
    for p in numbers_reply.parameters:
        assert info.parameters[p.name].tobytes() == convert.from_tensor(p.value).tobytes()
        assert info.shapes[p.name] == tuple(p.shape)
    # A tensor sent raw is the same numbers the server gets as values: Backward agrees.
    g_raw = client.backward(model, X, y).gradients
    g_num = stub.Backward(pb.BackwardRequest(model_id=model, x=numbers(X), labels=y.tolist()))
    for g in g_num.gradients:
        assert g_raw[g.name].tobytes() == convert.from_tensor(g.tensor).tobytes()


def test_to_tensor_is_one_copy_of_the_bytes():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    t = convert.to_tensor(a)
    assert t.raw == np.ascontiguousarray(a).astype("<f4").tobytes() and list(t.shape) == [3, 2]
    assert t.raw_dtype == pb.DTYPE_F32 and not t.values
    assert convert.to_tensor(a.astype(np.float64)).raw_dtype == pb.DTYPE_F64
    np.testing.assert_array_equal(convert.from_tensor(t), a)


def test_backward_apply_gradients_and_sgd(client):
    model = client.create_model(SPEC).model_id
    X, y = batch()
    before = client.get_model(model).parameters
    back = client.backward(model, X, y, return_input_grad=True)
    assert set(back.gradients) == {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                   "layers.1.bias"}
    assert back.input_grad.shape == X.shape
    assert client.apply_gradients(model, back.gradients) == 1
    after = client.get_model(model).parameters
    for name, g in back.gradients.items():  # SGD: w − lr·g
        np.testing.assert_allclose(after[name], before[name] - 0.1 * g, rtol=1e-6, atol=1e-7)
    upstream = client.backward(model, X, upstream=np.ones((8, 3), np.float32))
    assert upstream.losses.data_loss is None


def test_forward_probabilities_are_the_softmax_of_the_scores(client):
    model = client.create_model(SPEC).model_id
    X, _ = batch(20)
    answer = client.forward(model, X, probabilities=True)
    if answer.probabilities is None:
        pytest.skip("this server predates ForwardRequest.probabilities")
    s = answer.scores.astype(np.float64)
    want = np.exp(s - s.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    assert answer.probabilities.dtype == answer.scores.dtype
    np.testing.assert_allclose(answer.probabilities, want, rtol=1e-5, atol=1e-7)
    assert client.forward(model, X).probabilities is None


def test_evaluate_predict_scores_agree_with_forward(client):
    model = client.create_model(SPEC).model_id
    X, y = batch(20)
    fwd = client.forward(model, X, y)
    ev = client.evaluate(model, X, y)
    assert ev.losses == fwd.losses and ev.accuracy == fwd.accuracy and ev.num_examples == 20
    np.testing.assert_array_equal(client.predict(model, X), np.argmax(fwd.scores, axis=1))
    np.testing.assert_array_equal(client.scores(model, X), fwd.scores)
    assert client.forward(model, X).losses is None


def test_models_listed_exported_imported_deleted(client):
    model = client.create_model(SPEC)
    assert model.parameter_count == 6 * 5 + 5 + 5 * 3 + 3
    X, y = batch()
    client.train_step(model.model_id, X, y)
    data = client.export_model(model.model_id, chunk_bytes=1)  # raised to 64 KiB by the server
    assert data[8:9] == b"{"  # safetensors: 8-byte header length, then JSON
    copy = client.import_model(data, chunk_bytes=100)  # many chunks
    assert copy.step == 1 and copy.model_id != model.model_id
    # The copy continues bit-identically.
    X2, y2 = batch(seed=5)
    assert client.train_step(model.model_id, X2, y2) == client.train_step(copy.model_id, X2, y2)
    ids = {m.model_id for m in client.list_models()}
    assert {model.model_id, copy.model_id} <= ids
    client.delete_model(copy.model_id)
    assert copy.model_id not in {m.model_id for m in client.list_models()}
    with pytest.raises(errors.ModelNotFound):
        client.get_model(copy.model_id)


def test_train_stream_equals_train_steps_and_reports_bad_batches(client):
    a, b = client.create_model(SPEC).model_id, client.create_model(SPEC).model_id
    batches = [batch(seed=s) for s in range(4)]
    streamed = list(client.train_stream(a, iter(batches)))
    stepped = [client.train_step(b, X, y) for X, y in batches]
    assert streamed == stepped
    bad = [batches[0], (np.zeros((2, 5), np.float32), [0, 1]), (*batches[1], 0.05)]
    answers = list(client.train_stream(a, bad, raise_errors=False))
    assert isinstance(answers[1], errors.InvalidArgument) and answers[1].field == "x"
    assert answers[0].step == 5 and answers[2].step == 6  # the bad batch changed nothing
    with pytest.raises(errors.InvalidArgument) as info:
        list(client.train_stream(a, bad))
    assert info.value.reason == "INVALID_ARGUMENT"


def test_gradient_check_and_trace(client):
    model = client.create_model(SPEC).model_id
    X, y = batch(4)
    check = client.gradient_check(model, X, y)
    assert set(check.errors) == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}
    assert check.max_relative_error < 1e-4
    trace = client.trace_step(model, X, y)
    scores = trace.nodes[trace.scores_node]
    np.testing.assert_allclose(scores.value, client.scores(model, X), rtol=1e-6)
    assert trace.nodes[trace.loss_node].grad.item() == 1.0 and trace.with_values
    shapes = client.trace_step(model, X, y, shapes_only=True)
    assert shapes.nodes[shapes.scores_node].value is None and shapes.nodes[0].kind == "leaf"


def test_datasets_fit_and_history(client):
    X, y = batch(100, seed=3)
    model = client.create_model(SPEC).model_id
    info = client.upload_dataset(X, y, name="t", next_to=model, chunk_bytes=200)
    want = hashlib.sha256(X.astype("<f4").tobytes() + y.astype("<u4").tobytes()).hexdigest()
    assert info.sha256 == want and info.rows == 100 and info.dim == 6
    assert client.get_dataset(info.dataset_id).label_classes == 3
    assert info.dataset_id in {d.dataset_id for d in client.list_datasets()}
    events = list(client.fit(model, info.dataset_id, epochs=3, batch_size=25, seed=1,
                             validation_fraction=0.2, schedule={"kind": "epoch_decay"}))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("epoch_end") == 3
    assert events[-1].finished.reason == pb.FIT_END_COMPLETED and events[-1].finished.steps == 12  # 80 rows: 3 batches of 25, one of 5
    history = client.get_history(model)
    assert history.steps.dtype == convert.STEP_DTYPE and len(history.steps) == 12
    np.testing.assert_array_equal(history.steps["step"], np.arange(1, 13))
    assert len(history.epochs) == 3 and np.all(np.isfinite(history.epochs["validation_loss"]))
    assert history.epochs["learning_rate"][1] == pytest.approx(0.1 * 0.95 ** 2)
    replay = list(client.watch_fit(model, from_event=2))
    assert replay == events[2:]
    client.delete_dataset(info.dataset_id)
    with pytest.raises(errors.DatasetNotFound):
        client.get_dataset(info.dataset_id)


def test_closing_the_fit_iterator_cancels_the_fit(client):
    X, y = batch(200, seed=4)
    model = client.create_model(SPEC).model_id
    dataset = client.upload_dataset(X, y, next_to=model).dataset_id
    events = client.fit(model, dataset, epochs=100000, batch_size=1)
    assert next(events).WhichOneof("event") == "started"
    events.close()
    last = list(client.watch_fit(model))[-1]
    assert last.finished.reason == pb.FIT_END_CANCELLED
    assert 0 < last.finished.steps < 100000 * 200
    client.delete_dataset(dataset)


def test_fit_running_then_cancel_fit(client):
    X, y = batch(200, seed=4)
    model = client.create_model(SPEC).model_id
    dataset = client.upload_dataset(X, y, next_to=model).dataset_id
    first = next(iter(client.fit(model, dataset, epochs=100000, batch_size=1, detach=True)))
    assert first.WhichOneof("event") == "started"  # the detached fit goes on
    with pytest.raises(errors.FitRunning) as info:
        client.train_step(model, X[:4], y[:4])
    assert info.value.reason == "FIT_RUNNING" and info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    client.get_model(model)  # reads still work
    cancelled = client.cancel_fit(model)
    assert cancelled.cancelled and cancelled.step > 0
    client.train_step(model, X[:4], y[:4])
    client.delete_dataset(dataset)


def test_health(client):
    assert client.health() is True
    assert client.health("backprop.v1.Trainer") is True
