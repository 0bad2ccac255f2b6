"""Datasets and Fit from Python, on the real server: an upload round trip keeps numpy's
SHA-256; a fit is bit for bit the TrainSteps that the proto's documented sampling gives,
recomputed here from the proto's text (SplitMix64, Fisher–Yates, draws `(z·n) >> 64`);
its history has one point per step; CancelFit stops a detached fit and closing `fit()`
stops an attached one, and WatchFit replays either from event 0; plot_history writes an
SVG with a point per step; and the streaming calls carry a bearer token."""

from __future__ import annotations

import hashlib
import math
import time
import xml.etree.ElementTree as ET

import grpc
import numpy as np
import pytest

from backprop_client import connect, fit, history, pb, plot_history, tensor, upload_dataset
from conftest import AUTH_TOKEN
from test_digits import run_digits

MASK64 = (1 << 64) - 1


class SplitMix64:
    """The proto's generator (see `enum Sampling`), in Python's unbounded integers."""

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """The high 64 bits of the 128-bit product output · n (no rejection)."""
        return (self.next() * n) >> 64


def fisher_yates(rng: SplitMix64, a: list[int]) -> None:
    """In place: for i from len−1 down to 1, swap a[i] with a[draw below i+1]."""
    for i in range(len(a) - 1, 0, -1):
        j = rng.below(i + 1)
        a[i], a[j] = a[j], a[i]


def planned_batches(n, *, seed, epochs, batch_size, sampling,
                    validation_fraction=0.0, drop_last=False):
    """The validation rows and [(epoch, rows of the batch)] of a fit over n rows, as the
    proto's `enum Sampling` text describes them."""
    rng = SplitMix64(seed)
    rows = list(range(n))
    validation = []
    if validation_fraction > 0:
        fisher_yates(rng, rows)
        # round(N·fraction), halves away from zero (no half occurs in these cases).
        held = math.floor(n * validation_fraction + 0.5)
        validation, rows = rows[:held], rows[held:]
    m, batches = len(rows), []
    for epoch in range(epochs):
        if sampling == pb.SAMPLING_WITH_REPLACEMENT:
            for _ in range(max(m // batch_size, 1)):
                batches.append((epoch, [rows[rng.below(m)] for _ in range(batch_size)]))
        else:
            fisher_yates(rng, rows)  # T in place, from the previous epoch's order
            for start in range(0, m, batch_size):
                batch = rows[start:start + batch_size]
                if drop_last and len(batch) < batch_size:
                    break
                batches.append((epoch, batch))
    return validation, batches


def scheduled_rate(schedule: pb.Schedule, lr0: float, epoch: int) -> float:
    """The proto's EPOCH_DECAY and STEP rates, multiplications in the order written."""
    times = {
        pb.SCHEDULE_KIND_CONSTANT: 0,
        pb.SCHEDULE_KIND_EPOCH_DECAY: epoch,
        pb.SCHEDULE_KIND_STEP: epoch // max(schedule.step_epochs, 1),
    }[schedule.kind]
    lr = lr0
    for _ in range(times):
        lr *= schedule.decay
    return lr


def parameters(stub, model_id: str) -> dict[str, np.ndarray]:
    reply = stub.GetModel(pb.GetModelRequest(model_id=model_id, include_values=True))
    return {
        p.name: np.array(p.value.values, dtype=np.float32).reshape(tuple(p.value.shape))
        for p in reply.parameters
    }


def small_problem(seed: int, n: int = 50, dim: int = 6, classes: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=n).astype(np.uint32)
    return x, y


def small_spec(dim: int = 6, classes: int = 3) -> pb.ModelSpec:
    return pb.ModelSpec(
        input_dim=dim, num_classes=classes, loss=pb.LOSS_KIND_SOFTMAX, l2=1e-3,
        hidden=[pb.HiddenLayer(units=8, activation=pb.ACTIVATION_RELU)],
        optimizer=pb.Optimizer(kind=pb.OPTIMIZER_KIND_ADAM, learning_rate=1e-2),
        init=pb.Init(seed=5),
    )


def kinds(events) -> list[str]:
    return [e.WhichOneof("event") for e in events]


@pytest.mark.parametrize(
    "np_dtype,dtype", [(np.float32, pb.DTYPE_F32), (np.float64, pb.DTYPE_F64)]
)
def test_upload_round_trip(channel_and_stub, np_dtype, dtype):
    _, stub = channel_and_stub
    rng = np.random.default_rng(1)
    x = rng.normal(size=(37, 5)).astype(np_dtype)
    y = rng.integers(0, 4, size=37).astype(np.uint32)
    y[0] = 6  # label_classes = 1 + the largest label
    wire = "<f4" if np_dtype is np.float32 else "<f8"
    expected_sha = hashlib.sha256(
        x.astype(wire).tobytes() + y.astype("<u4").tobytes()
    ).hexdigest()

    # 64-byte chunks: 3 rows of f32 or 1 of f64 each, so many chunks either way.
    info = upload_dataset(stub, x, y, name="round-trip", chunk_bytes=64)
    assert (info.rows, info.dim, info.dtype, info.name) == (37, 5, dtype, "round-trip")
    assert info.sha256 == expected_sha
    assert info.label_classes == 7
    got = stub.GetDataset(pb.GetDatasetRequest(dataset_id=info.dataset_id))
    assert got.sha256 == expected_sha
    assert (got.rows, got.dim, got.dtype) == (37, 5, dtype)
    listed = [d.dataset_id for d in stub.ListDatasets(pb.ListDatasetsRequest()).datasets]
    assert info.dataset_id in listed

    stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=info.dataset_id))
    with pytest.raises(grpc.RpcError) as e:
        stub.GetDataset(pb.GetDatasetRequest(dataset_id=info.dataset_id))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_upload_refuses_other_dtypes_before_sending(channel_and_stub):
    _, stub = channel_and_stub
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        upload_dataset(stub, np.zeros((3, 2), dtype=np.int64), np.zeros(3, dtype=np.uint32))


FIT_CASES = {
    # A validation split, a shorter last batch, a rate decayed at each epoch's end.
    "shuffle-split-decay": dict(
        sampling=pb.SAMPLING_SHUFFLE, validation_fraction=0.2, epochs=3, batch_size=16,
        schedule=pb.Schedule(kind=pb.SCHEDULE_KIND_EPOCH_DECAY, decay=0.9),
    ),
    "shuffle-drop-last-step": dict(
        sampling=pb.SAMPLING_SHUFFLE, drop_last=True, epochs=4, batch_size=12,
        schedule=pb.Schedule(kind=pb.SCHEDULE_KIND_STEP, decay=0.5, step_epochs=2),
    ),
    "with-replacement-split": dict(
        sampling=pb.SAMPLING_WITH_REPLACEMENT, validation_fraction=0.3, epochs=2,
        batch_size=8, schedule=pb.Schedule(kind=pb.SCHEDULE_KIND_CONSTANT),
    ),
}


@pytest.mark.parametrize("case", sorted(FIT_CASES))
def test_fit_equals_the_documented_trainsteps(channel_and_stub, case):
    _, stub = channel_and_stub
    request = FIT_CASES[case]
    seed = 11
    x, y = small_problem(seed=2)
    dataset = upload_dataset(stub, x, y)
    fitted = stub.CreateModel(pb.CreateModelRequest(spec=small_spec())).model_id
    stepped = stub.CreateModel(pb.CreateModelRequest(spec=small_spec())).model_id
    assert parameters(stub, fitted).keys() == parameters(stub, stepped).keys()

    events = list(fit(stub, fitted, dataset.dataset_id, seed=seed, **request))
    assert kinds(events)[0] == "started" and kinds(events)[-1] == "finished"
    assert [e.index for e in events] == list(range(len(events)))
    finished = events[-1].finished
    assert finished.reason == pb.FIT_END_COMPLETED

    validation, batches = planned_batches(
        len(x), seed=seed, epochs=request["epochs"], batch_size=request["batch_size"],
        sampling=request["sampling"],
        validation_fraction=request.get("validation_fraction", 0.0),
        drop_last=request.get("drop_last", False),
    )
    started = events[0].started
    assert started.validation_rows == len(validation)
    assert started.train_rows == len(x) - len(validation)
    assert started.planned_steps == len(batches) == finished.steps

    # The same batches as TrainSteps, with the schedule's rate, and the validation rows
    # evaluated at each epoch's end as the fit does.
    lr0 = small_spec().optimizer.learning_rate
    losses, rates, epoch_ends = [], [], []
    for k, (epoch, rows) in enumerate(batches):
        rate = scheduled_rate(request["schedule"], lr0, epoch)
        reply = stub.TrainStep(pb.TrainStepRequest(
            model_id=stepped, x=tensor(x[rows]), labels=y[rows].tolist(),
            learning_rate=rate,
        ))
        assert reply.step == k + 1
        losses.append(reply.losses.data_loss)
        rates.append(rate)
        if validation and (k + 1 == len(batches) or batches[k + 1][0] != epoch):
            epoch_ends.append(stub.Evaluate(pb.EvaluateRequest(
                model_id=stepped, x=tensor(x[validation]), labels=y[validation].tolist(),
            )))

    a, b = parameters(stub, fitted), parameters(stub, stepped)
    for name in a:
        assert a[name].dtype == np.float32
        assert np.array_equal(a[name], b[name]), name

    h = history(stub, fitted)
    assert len(h.steps) == len(batches)
    assert h.steps["step"].tolist() == list(range(1, len(batches) + 1))
    assert h.steps["data_loss"].tolist() == losses
    assert h.steps["learning_rate"].tolist() == rates
    assert len(h.epochs) == request["epochs"]
    if validation:
        fit_ends = [e.epoch_end for e in events if e.WhichOneof("event") == "epoch_end"]
        assert [e.validation_accuracy for e in fit_ends] == [r.accuracy for r in epoch_ends]
        assert [e.validation_loss for e in fit_ends] == [
            r.losses.total_loss for r in epoch_ends
        ]
        assert h.epochs["validation_accuracy"].tolist() == [r.accuracy for r in epoch_ends]
    else:
        assert np.isnan(h.epochs["validation_loss"]).all()

    # The oracle can tell orders apart: T in plain order gives other parameters.
    plain = stub.CreateModel(pb.CreateModelRequest(spec=small_spec())).model_id
    for epoch, rows in batches:
        rows = sorted(rows)
        stub.TrainStep(pb.TrainStepRequest(
            model_id=plain, x=tensor(x[rows]), labels=y[rows].tolist(),
            learning_rate=scheduled_rate(request["schedule"], lr0, epoch),
        ))
    plain_weight = parameters(stub, plain)["layers.0.weight"]
    assert not np.array_equal(plain_weight, a["layers.0.weight"])

    for model_id in (fitted, stepped, plain):
        stub.DeleteModel(pb.DeleteModelRequest(model_id=model_id))
    stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=dataset.dataset_id))


def long_fit_setup(stub):
    """A dataset and a model for a fit that would run for hours: 4,096 rows, batches of 8
    (512 steps an epoch), a billion steps planned."""
    x, y = small_problem(seed=3, n=4096)
    dataset = upload_dataset(stub, x, y)
    model_id = stub.CreateModel(pb.CreateModelRequest(spec=small_spec())).model_id
    request = dict(max_steps=10**9, batch_size=8, seed=1, progress_every=1000)
    return dataset, model_id, request


def watch_all(stub, model_id: str) -> list[pb.FitEvent]:
    """Every kept event of the model's last fit, from 0 to its end (30 s at most, so a fit
    that does not stop fails the test instead of hanging it)."""
    request = pb.WatchFitRequest(model_id=model_id, from_event=0)
    return list(stub.WatchFit(request, timeout=30))


def model_step(stub, model_id: str) -> int:
    return stub.GetModel(pb.GetModelRequest(model_id=model_id)).step


def wait_for_steps(stub, model_id: str, at_least: int) -> int:
    deadline = time.monotonic() + 30
    while (step := model_step(stub, model_id)) < at_least:
        assert time.monotonic() < deadline, f"the fit is stuck at step {step}"
        time.sleep(0.01)
    return step


def test_cancel_stops_a_detached_fit_and_watch_replays_it(channel_and_stub):
    _, stub = channel_and_stub
    dataset, model_id, request = long_fit_setup(stub)
    events = fit(stub, model_id, dataset.dataset_id, detach=True, **request)
    first = next(events)
    assert first.index == 0 and first.started.planned_steps == 10**9
    events.close()  # detached: the fit goes on without this call
    before = wait_for_steps(stub, model_id, 100)

    cancelled = stub.CancelFit(pb.CancelFitRequest(model_id=model_id))
    assert cancelled.cancelled
    assert cancelled.step >= before
    time.sleep(0.2)
    assert model_step(stub, model_id) == cancelled.step, "the fit went on after CancelFit"

    replay = watch_all(stub, model_id)
    assert replay[0].index == 0 and replay[0].WhichOneof("event") == "started"
    assert [e.index for e in replay] == list(range(len(replay)))
    assert kinds(replay).count("finished") == 1 and kinds(replay)[-1] == "finished"
    end = replay[-1].finished
    assert end.reason == pb.FIT_END_CANCELLED
    assert end.step == end.steps == cancelled.step
    assert len(history(stub, model_id).steps) > 0

    again = stub.CancelFit(pb.CancelFitRequest(model_id=model_id))
    assert not again.cancelled and again.step == cancelled.step
    stub.DeleteModel(pb.DeleteModelRequest(model_id=model_id))
    stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=dataset.dataset_id))


def test_closing_fit_stops_an_attached_fit(channel_and_stub):
    _, stub = channel_and_stub
    dataset, model_id, request = long_fit_setup(stub)
    events = fit(stub, model_id, dataset.dataset_id, **request)
    assert next(events).WhichOneof("event") == "started"
    wait_for_steps(stub, model_id, 100)
    events.close()

    end = watch_all(stub, model_id)[-1].finished
    assert end.reason == pb.FIT_END_CANCELLED
    assert model_step(stub, model_id) == end.step == end.steps
    # Nothing runs any more: CancelFit finds no fit, and a new fit may start.
    assert not stub.CancelFit(pb.CancelFitRequest(model_id=model_id)).cancelled
    short = list(fit(stub, model_id, dataset.dataset_id, max_steps=5, batch_size=8))
    assert short[-1].finished.reason == pb.FIT_END_MAX_STEPS
    assert short[-1].finished.step == end.step + 5
    stub.DeleteModel(pb.DeleteModelRequest(model_id=model_id))
    stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=dataset.dataset_id))


def test_plot_history_writes_an_svg_with_every_step(channel_and_stub, tmp_path):
    _, stub = channel_and_stub
    x, y = small_problem(seed=4, n=200)
    dataset = upload_dataset(stub, x, y)
    model_id = stub.CreateModel(pb.CreateModelRequest(spec=small_spec())).model_id
    list(fit(stub, model_id, dataset.dataset_id, epochs=5, batch_size=20,
             validation_fraction=0.25))
    h = history(stub, model_id)
    assert len(h.steps) == 5 * 8 and len(h.epochs) == 5

    path = tmp_path / "history.svg"
    plot_history(h, path)
    root = ET.parse(path).getroot()
    svg = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{svg}svg"
    width, height = float(root.get("width")), float(root.get("height"))
    lines = {p.get("class"): p for p in root.iter(f"{svg}polyline")}
    assert set(lines) == {"step-loss", "validation-loss", "step-accuracy",
                          "train-accuracy", "validation-accuracy"}

    def points(name):
        pairs = [p.split(",") for p in lines[name].get("points").split()]
        return np.array(pairs, dtype=float)

    loss = points("step-loss")
    assert len(loss) == len(h.steps)
    assert len(points("validation-accuracy")) == len(h.epochs)
    assert (np.diff(loss[:, 0]) > 0).all(), "x follows the step"
    assert ((loss >= 0) & (loss <= [width, height])).all()
    # Up is larger: the highest loss is drawn highest (smallest y), the lowest lowest.
    total = h.steps["data_loss"] + h.steps["reg_loss"]
    assert loss[np.argmax(total), 1] == loss[:, 1].min()
    assert loss[np.argmin(total), 1] == loss[:, 1].max()
    stub.DeleteModel(pb.DeleteModelRequest(model_id=model_id))
    stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=dataset.dataset_id))


def test_streaming_calls_carry_the_token(auth_server):
    x, y = small_problem(seed=5)
    channel, stub = connect(auth_server)
    with channel, pytest.raises(grpc.RpcError) as e:
        upload_dataset(stub, x, y)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    channel, stub = connect(auth_server, token=AUTH_TOKEN)
    with channel:
        dataset = upload_dataset(stub, x, y)
        model_id = stub.CreateModel(pb.CreateModelRequest(spec=small_spec())).model_id
        events = list(fit(stub, model_id, dataset.dataset_id, epochs=2, batch_size=10))
        assert events[-1].finished.reason == pb.FIT_END_COMPLETED
        assert events[-1].finished.steps == 10
        assert kinds(watch_all(stub, model_id)) == kinds(events)

    # digits.py through Fit, token from the command line.
    r = run_digits(auth_server, "--token", AUTH_TOKEN, "--epochs", "1")
    assert r["loop"] == "fit" and r["steps"] == 22
