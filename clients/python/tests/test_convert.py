"""convert.py without a server: specs from keywords and dicts, tensors, chunks."""

import hashlib

import numpy as np
import pytest

from backprop_client import convert, pb


def test_model_spec_from_keywords_dicts_and_short_names():
    spec = convert.model_spec(
        {"input_dim": 4, "num_classes": 3, "loss": "softmax"},
        hidden=[8, {"units": 5, "activation": "gelu", "gelu_approximate": "tanh"}],
        activation="leaky_relu", optimizer={"kind": "momentum", "momentum": 0.5},
        learning_rate=0.01, init="xavier", seed=9, dtype="float64", svm_margin=2.0)
    assert spec.loss == pb.LOSS_KIND_SOFTMAX and spec.dtype == pb.DTYPE_F64
    assert [h.units for h in spec.hidden] == [8, 5]
    assert spec.hidden[0].activation == pb.ACTIVATION_LEAKY_RELU
    assert spec.hidden[1].activation == pb.ACTIVATION_GELU
    assert spec.hidden[1].gelu_approximate == pb.GELU_APPROXIMATE_TANH
    assert spec.optimizer.kind == pb.OPTIMIZER_KIND_MOMENTUM and spec.optimizer.momentum == 0.5
    assert spec.optimizer.learning_rate == 0.01 and spec.svm_margin == 2.0
    assert spec.init.scheme == pb.INIT_SCHEME_XAVIER and spec.init.seed == 9
    assert convert.model_spec(spec) is spec
    with pytest.raises(TypeError, match="unknown model spec fields"):
        convert.model_spec(input_dim=1, num_classes=2, hiden=[3])
    with pytest.raises(ValueError):
        convert.model_spec(input_dim=1, num_classes=2, loss="hinge")


def test_tensors_and_labels():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = convert.to_tensor(a)
    assert t.raw_dtype == pb.DTYPE_F64 and t.raw == a.astype("<f8").tobytes()
    assert convert.from_tensor(t).dtype == np.float64
    numbers = pb.Tensor(shape=[2, 3], values=a.ravel().tolist())
    np.testing.assert_array_equal(convert.from_tensor(numbers), a.astype(np.float32))
    assert convert.to_labels(np.array([0, 2, 1], dtype=np.int64)) == [0, 2, 1]
    with pytest.raises(ValueError):
        convert.to_labels([-1])
    with pytest.raises(ValueError):
        convert.to_labels([0.5])


def test_dataset_and_checkpoint_chunks():
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.arange(10) % 3
    chunks = convert.dataset_chunks(X, y, chunk_bytes=48)  # 3 rows of 16 bytes a chunk
    assert [c.first_row for c in chunks] == [0, 3, 6, 9]
    assert chunks[0].HasField("header") and not chunks[1].HasField("header")
    assert b"".join(c.x for c in chunks) == X.tobytes()
    assert chunks[0].header.sha256 == hashlib.sha256(
        X.tobytes() + y.astype("<u4").tobytes()).hexdigest()
    data = bytes(range(256)) * 10
    parts = convert.checkpoint_chunks(data, 1000)
    assert parts[0].total_bytes == len(data) and parts[1].sha256 == ""
    assert convert.join_checkpoint(parts) == data
    parts[1].data = b"x" + parts[1].data[1:]
    with pytest.raises(ValueError, match="SHA-256"):
        convert.join_checkpoint(parts)


def test_route_metadata():
    hexid = "0123456789abcdef" * 2
    assert convert.route_metadata(hexid) == [("x-backprop-model", hexid)]
    assert convert.route_metadata(f"backprop-2.{hexid}") == [("x-backprop-model", f"backprop-2.{hexid}")]
    assert convert.route_metadata("not-an-id") == []
    assert convert.route_metadata("backprop-2", explicit=True) == [("x-backprop-model", "backprop-2")]
    assert convert.route_metadata(None, explicit=True) == []


def test_metadata_and_final_metrics_from_messages():
    step = pb.HistoryStep(step=4, data_loss=float("nan"), reg_loss=float("nan"),
                          accuracy=float("nan"), learning_rate=0.1, time=5.0)
    assert convert.history_step(step) == convert.HistoryStep(4, None, None, None, 0.1, 5.0)
    epoch = pb.HistoryEpoch(step=9, epoch=2, mean_loss=0.5, train_accuracy=0.75,
                            validation_accuracy=0.0, learning_rate=0.01, time=6.0)
    # Absent validation_loss is None; a present 0.0 accuracy stays 0.0.
    assert convert.history_epoch(epoch) == convert.HistoryEpoch(
        9, 2, 0.5, 0.75, None, 0.0, 0.01, 6.0)
    reply = pb.GetModelResponse(
        model_id="m", step=9, last_epoch=epoch,
        metadata=pb.ModelMetadata(name="n", labels={"k": "v"}, created_time=1.5, dataset_id="d"))
    info = convert.model_info(reply)
    assert info.metadata == convert.ModelMetadata("n", {"k": "v"}, 1.5, "d")
    assert info.last_step is None and info.last_epoch.epoch == 2
    # A server older than the fields sends none of them.
    old = convert.model_summary(pb.ModelSummary(model_id="m", step=1))
    assert (old.metadata, old.last_step, old.last_epoch) == (None, None, None)
