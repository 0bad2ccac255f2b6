"""The Python client through nginx in front of three replicas: every call it makes
carries the routing header by itself (x-backprop-model from the id the request names,
the first message for TrainStream, `next_to` for an upload), so a model created through
the proxy is trained, fitted on a dataset uploaded next to it, exported and deleted
without one WRONG_REPLICA, whichever replica it landed on."""

from __future__ import annotations

import numpy as np

from backprop_client import connect, fit, history, pb, tensor, upload_dataset


def spec():
    return pb.ModelSpec(
        input_dim=4,
        hidden=[pb.HiddenLayer(units=8, activation=pb.ACTIVATION_RELU)],
        num_classes=3,
        loss=pb.LOSS_KIND_SOFTMAX,
        init=pb.Init(seed=3),
    )


def test_every_call_through_the_proxy_reaches_the_models_replica(nginx_replicas):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.uint32) + (x[:, 1] > 0).astype(np.uint32)
    channel, stub = connect(nginx_replicas)
    with channel:
        placed = {}
        for _ in range(6):
            model_id = stub.CreateModel(pb.CreateModelRequest(spec=spec())).model_id
            replica, _, hex_part = model_id.partition(".")
            assert replica.startswith("backprop-") and len(hex_part) == 32, model_id
            placed.setdefault(replica, []).append(model_id)

            step = stub.TrainStep(
                pb.TrainStepRequest(model_id=model_id, x=tensor(x[:8]), labels=y[:8].tolist())
            )
            assert step.step == 1

            batches = (
                pb.TrainStreamRequest(
                    model_id=model_id if i == 0 else "", sequence=i,
                    x=tensor(x[8 * i : 8 * i + 8]), labels=y[8 * i : 8 * i + 8].tolist(),
                )
                for i in range(4)
            )
            answers = list(stub.TrainStream(batches))
            assert [a.step.step for a in answers] == [2, 3, 4, 5]

            dataset = upload_dataset(stub, x, y, name="near", next_to=model_id)
            assert dataset.dataset_id.startswith(replica + ".")
            assert stub.GetDataset(pb.GetDatasetRequest(dataset_id=dataset.dataset_id)).rows == 48
            events = list(fit(stub, model_id, dataset.dataset_id, epochs=2, batch_size=16, seed=1))
            assert events[-1].finished.reason == pb.FIT_END_COMPLETED
            assert events[-1].finished.step == 5 + 6
            assert len(history(stub, model_id).steps) == 11

            exported = b"".join(
                c.data for c in stub.ExportModel(pb.ExportModelRequest(model_id=model_id))
            )
            assert len(exported) > 0
            got = stub.GetModel(pb.GetModelRequest(model_id=model_id))
            assert got.step == 11
            stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=dataset.dataset_id))
            stub.DeleteModel(pb.DeleteModelRequest(model_id=model_id))
        assert len(placed) >= 2, f"six models all landed on one replica: {placed}"
