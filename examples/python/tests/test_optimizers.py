"""AdamW from Python, on the real server: the digits client trains with it (PyTorch's
default weight decay 0.01, filled in by the server), a stronger decay costs training
loss as shrinking the weights should, and weight_decay is refused for a kind that does
not use it."""

from __future__ import annotations

import grpc
import pytest

from backprop_client import pb
from test_digits import run_digits


def test_adamw_trains_digits(server_address):
    adam = run_digits(server_address, "--optimizer", "adam", "--epochs", "10")
    adamw = run_digits(server_address, "--optimizer", "adamw", "--epochs", "10")
    strong = run_digits(
        server_address, "--optimizer", "adamw", "--weight-decay", "0.5", "--epochs", "10"
    )
    assert adam["weight_decay"] is None
    assert adamw["optimizer"] == "adamw" and adamw["weight_decay"] == 0.01
    assert strong["weight_decay"] == 0.5
    for r in (adamw, strong):
        assert r["steps"] == 10 * 22
        assert r["test_accuracy"] >= 0.93, r
    # λ = 0.01 barely moves Adam's run; λ = 0.5 shrinks every weight by 0.05% a step,
    # which shows in the data loss on the training split (the total would not say it:
    # smaller weights also lower the L2 term that the total includes).
    assert adamw["final_loss"] != adam["final_loss"]
    assert abs(adamw["train_data_loss"] - adam["train_data_loss"]) < 0.01, (adam, adamw)
    assert strong["train_data_loss"] > adamw["train_data_loss"] + 0.01, (adamw, strong)


def test_weight_decay_applies_to_adamw_only(channel_and_stub):
    _, stub = channel_and_stub
    spec = pb.ModelSpec(
        input_dim=4, num_classes=3,
        optimizer=pb.Optimizer(kind=pb.OPTIMIZER_KIND_ADAM, weight_decay=0.01),
    )
    with pytest.raises(grpc.RpcError) as e:
        stub.CreateModel(pb.CreateModelRequest(spec=spec))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == (
        "spec.optimizer.weight_decay: does not apply to OPTIMIZER_KIND_ADAM"
    )
