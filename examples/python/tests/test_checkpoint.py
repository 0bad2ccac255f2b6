"""ExportModel's file is a plain safetensors file: `safetensors.numpy.load_file` reads it
with the API's tensor names and the model's values, the spec and step are in its
metadata, and ImportModel takes it back to continue training (the history too: the
same steps with the same losses, at other times)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from backprop_client import pb, tensor


def export(stub, model_id: str, chunk_bytes: int = 0) -> bytes:
    chunks = list(stub.ExportModel(pb.ExportModelRequest(model_id=model_id, chunk_bytes=chunk_bytes)))
    data = b"".join(c.data for c in chunks)
    assert chunks[0].total_bytes == len(data)
    assert chunks[0].sha256 == hashlib.sha256(data).hexdigest()
    return data


def upload(data: bytes, chunk: int = 4096):
    sha = hashlib.sha256(data).hexdigest()
    for i, start in enumerate(range(0, len(data), chunk)):
        yield pb.CheckpointChunk(
            data=data[start:start + chunk], offset=start, total_bytes=len(data),
            sha256=sha if i == 0 else "",
        )


def values(t: pb.Tensor) -> np.ndarray:
    v = np.array(t.values_f64, dtype=np.float64) if len(t.values_f64) else np.array(t.values, dtype=np.float32)
    return v.reshape(tuple(t.shape))


@pytest.mark.parametrize("dtype,np_dtype", [(pb.DTYPE_F32, np.float32), (pb.DTYPE_F64, np.float64)])
def test_export_loads_in_numpy_and_imports_back(channel_and_stub, tmp_path, dtype, np_dtype):
    _, stub = channel_and_stub
    spec = pb.ModelSpec(
        input_dim=5, num_classes=3, dtype=dtype,
        hidden=[pb.HiddenLayer(units=8, activation=pb.ACTIVATION_RELU)],
        optimizer=pb.Optimizer(kind=pb.OPTIMIZER_KIND_ADAM),
    )
    model_id = stub.CreateModel(pb.CreateModelRequest(spec=spec)).model_id
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.normal(size=(10, 5))
        y = rng.integers(0, 3, size=10)
        stub.TrainStep(pb.TrainStepRequest(model_id=model_id, x=tensor(x), labels=y.tolist()))

    path = tmp_path / "model.safetensors"
    path.write_bytes(export(stub, model_id, chunk_bytes=256))
    arrays = load_file(str(path))
    model = stub.GetModel(pb.GetModelRequest(model_id=model_id, include_values=True))
    names = [p.name for p in model.parameters]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    expected = set(names) | {f"{n}.adam_m" for n in names} | {f"{n}.adam_v" for n in names}
    assert set(arrays) == expected
    for p in model.parameters:
        a = arrays[p.name]
        assert a.dtype == np_dtype
        np.testing.assert_array_equal(a, values(p.value))
        # Adam's second moment is a mean of squares: non-negative, and moved by training.
        assert (arrays[f"{p.name}.adam_v"] >= 0).all() and arrays[f"{p.name}.adam_v"].any()

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "backprop.checkpoint.v1"
    assert meta["step"] == "3" and meta["optimizer_t"] == "3"
    stored = json.loads(meta["spec"])
    assert stored["input_dim"] == 5 and stored["num_classes"] == 3
    assert stored["optimizer"]["kind"] == "adam"

    imported = stub.ImportModel(upload(path.read_bytes()))
    assert imported.step == 3 and imported.model_id != model_id
    x = rng.normal(size=(10, 5))
    y = rng.integers(0, 3, size=10).tolist()
    a = stub.TrainStep(pb.TrainStepRequest(model_id=model_id, x=tensor(x), labels=y))
    b = stub.TrainStep(pb.TrainStepRequest(model_id=imported.model_id, x=tensor(x), labels=y))
    assert a.step == b.step == 4
    assert a.losses.total_loss == b.losses.total_loss
    # One state: the same tensors and metadata, and the same history but for its time
    # stamps (the import's steps happened at other moments).
    fa, fb = (tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    fa.write_bytes(export(stub, model_id))
    fb.write_bytes(export(stub, imported.model_id))
    a_arrays, b_arrays = load_file(str(fa)), load_file(str(fb))
    assert a_arrays.keys() == b_arrays.keys()
    for name in a_arrays:
        np.testing.assert_array_equal(a_arrays[name], b_arrays[name])
    (a_meta, a_history), (b_meta, b_history) = (metadata_and_history(f) for f in (fa, fb))
    assert a_meta == b_meta
    assert [p["step"] for p in a_history["steps"]] == [1, 2, 3, 4]
    assert [p["step"] for p in b_history["steps"]] == [1, 2, 3, 4]
    # The same losses, bit for bit.
    assert [p["data_loss"] for p in a_history["steps"]] == [
        p["data_loss"] for p in b_history["steps"]
    ]


def metadata_and_history(path) -> tuple[dict, dict]:
    """A checkpoint's metadata without its `history`, and that history (JSON) apart."""
    with safe_open(str(path), framework="np") as f:
        meta = dict(f.metadata())
    return meta, json.loads(meta.pop("history"))


def test_imported_history_keeps_losses_bit_for_bit(channel_and_stub):
    _, stub = channel_and_stub
    spec = pb.ModelSpec(
        input_dim=5, num_classes=3, dtype=pb.DTYPE_F64,
        hidden=[pb.HiddenLayer(units=8, activation=pb.ACTIVATION_RELU)],
        optimizer=pb.Optimizer(kind=pb.OPTIMIZER_KIND_ADAM),
    )
    model_id = stub.CreateModel(pb.CreateModelRequest(spec=spec)).model_id
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(3):
        x = rng.normal(size=(10, 5))
        y = rng.integers(0, 3, size=10)
        request = pb.TrainStepRequest(model_id=model_id, x=tensor(x), labels=y.tolist())
        losses.append(stub.TrainStep(request).losses.data_loss)

    def recorded(mid):
        steps = stub.GetHistory(pb.GetHistoryRequest(model_id=mid)).steps
        return [p.data_loss for p in steps]

    assert recorded(model_id) == losses  # the live history holds the steps' losses exactly
    imported = stub.ImportModel(upload(export(stub, model_id))).model_id
    assert recorded(imported) == losses
