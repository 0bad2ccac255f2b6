"""Train a two-layer net on scikit-learn's handwritten digits, server-side, over gRPC.

The data (1,797 8×8 images, 10 classes) ships inside scikit-learn. The network lives in
the backprop server: by default this client uploads the training and held-out splits once
(UploadDataset) and has the server train on them (Fit: shuffled epochs of minibatches,
validation on the held-out split at each epoch's end); with `--loop trainstep` it sends
every minibatch itself (TrainStep), as before Fit existed. Either way Evaluate gives the
held-out accuracy at the end. It prints one JSON line with the results.

    examples/python/setup.sh          # venv + stubs, once
    examples/python/.venv/bin/python examples/python/digits.py --loss softmax

Everything random is seeded (the split, the minibatch order, and the server's
initialization through spec.init.seed), so the same arguments give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from backprop_client import DEFAULT_ADDRESS, connect, fit, pb, tensor, upload_dataset

LOSSES = {"svm": pb.LOSS_KIND_SVM, "softmax": pb.LOSS_KIND_SOFTMAX}
# The server's optimizer names, from the proto enum: OPTIMIZER_KIND_ADAMW is `adamw`.
OPTIMIZERS = {
    name.removeprefix("OPTIMIZER_KIND_").lower(): value
    for name, value in pb.OptimizerKind.items()
    if value != pb.OPTIMIZER_KIND_UNSPECIFIED
}
# The hidden layer's activation: (enum, GELU form or None).
ACTIVATIONS = {
    "relu": (pb.ACTIVATION_RELU, None),
    "tanh": (pb.ACTIVATION_TANH, None),
    "elu": (pb.ACTIVATION_ELU, None),
    "gelu": (pb.ACTIVATION_GELU, pb.GELU_APPROXIMATE_NONE),
    "gelu-tanh": (pb.ACTIVATION_GELU, pb.GELU_APPROXIMATE_TANH),
}


def load(test_fraction: float, split_seed: int):
    """Pixels scaled from 0..16 to 0..1, then centred on the training mean."""
    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    y = digits.target.astype(np.uint32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=split_seed, stratify=y
    )
    mean = x_train.mean(axis=0)
    return x_train - mean, x_test - mean, y_train, y_test


def model_spec(args, input_dim: int, num_classes: int) -> pb.ModelSpec:
    activation, gelu_form = ACTIVATIONS[args.activation]
    layer = pb.HiddenLayer(units=args.hidden, activation=activation)
    if gelu_form is not None:
        layer.gelu_approximate = gelu_form
    return pb.ModelSpec(
        input_dim=input_dim,
        hidden=[layer],
        num_classes=num_classes,
        loss=LOSSES[args.loss],
        l2=args.l2,
        optimizer=optimizer(args),
        init=pb.Init(seed=args.seed),
    )


def optimizer(args) -> pb.Optimizer:
    """The update rule; unset fields take the server's defaults (AdamW's weight decay
    0.01, as PyTorch's)."""
    o = pb.Optimizer(kind=OPTIMIZERS[args.optimizer], learning_rate=args.lr)
    if args.weight_decay is not None:
        o.weight_decay = args.weight_decay
    return o


def train_by_fit(stub, model_id: str, args, x_train, y_train, x_test, y_test) -> dict:
    """Uploads both splits, then one Fit over the training split, validated on the
    held-out one at each epoch's end. The batches are the server's documented sampling
    (SAMPLING_SHUFFLE seeded with --seed), so a rerun takes the very same steps."""
    datasets = []  # those uploaded so far, deleted at the end
    try:
        started = time.perf_counter()
        for x, y, name in ((x_train, y_train, "digits-train"), (x_test, y_test, "digits-test")):
            datasets.append(upload_dataset(stub, x, y, name=name, next_to=model_id))
        train_set, test_set = datasets
        uploaded = time.perf_counter()
        last_epoch = finished = progress = None
        for event in fit(
            stub, model_id, train_set.dataset_id,
            validation_dataset_id=test_set.dataset_id,
            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        ):
            kind = event.WhichOneof("event")
            if kind == "progress":
                progress = event.progress
            elif kind == "epoch_end":
                last_epoch = event.epoch_end
            elif kind == "finished":
                finished = event.finished
        done = time.perf_counter()
    finally:
        if not args.keep:
            for d in datasets:
                stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=d.dataset_id))
    if finished is None or finished.reason != pb.FIT_END_COMPLETED:
        raise RuntimeError(f"the fit did not complete: {finished}")
    return {
        "final_loss": last_epoch.mean_loss,
        "steps": finished.steps,
        "train_seconds": done - uploaded,
        "upload_seconds": uploaded - started,
        # The server's own rate at its last progress event (each epoch's end has one).
        "server_steps_per_second": progress.steps_per_second,
    }


def train_by_trainstep(stub, model_id: str, args, x_train, y_train, x_test, y_test) -> dict:
    """The client-side loop: a numpy permutation each epoch, one TrainStep per batch."""
    rng = np.random.default_rng(args.seed)
    steps, last_epoch_losses = 0, []
    started = time.perf_counter()
    for _ in range(args.epochs):
        order = rng.permutation(len(x_train))
        last_epoch_losses = []
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            reply = stub.TrainStep(
                pb.TrainStepRequest(
                    model_id=model_id,
                    x=tensor(x_train[batch]),
                    labels=y_train[batch].tolist(),
                )
            )
            last_epoch_losses.append(reply.losses.total_loss)
            steps += 1
    return {
        "final_loss": float(np.mean(last_epoch_losses)),
        "steps": steps,
        "train_seconds": time.perf_counter() - started,
    }


LOOPS = {"fit": train_by_fit, "trainstep": train_by_trainstep}


def train(args) -> dict:
    x_train, x_test, y_train, y_test = load(args.test_fraction, args.split_seed)
    channel, stub = connect(
        args.address, token=args.token, tls_ca=args.tls_ca,
        tls_cert=args.tls_cert, tls_key=args.tls_key,
    )
    with channel:
        created = stub.CreateModel(
            pb.CreateModelRequest(spec=model_spec(args, x_train.shape[1], 10))
        )
        model_id = created.model_id
        try:
            trained = LOOPS[args.loop](
                stub, model_id, args, x_train, y_train, x_test, y_test
            )

            def evaluate(x, y):
                return stub.Evaluate(
                    pb.EvaluateRequest(model_id=model_id, x=tensor(x), labels=y.tolist())
                )

            on_train, on_test = evaluate(x_train, y_train), evaluate(x_test, y_test)
        finally:
            if not args.keep:
                stub.DeleteModel(pb.DeleteModelRequest(model_id=model_id))

    return {
        "loop": args.loop,
        "loss": args.loss,
        "activation": args.activation,
        "optimizer": args.optimizer,
        # As the server filled it in (AdamW's weight decay; absent for other kinds).
        "weight_decay": (
            created.spec.optimizer.weight_decay
            if created.spec.optimizer.HasField("weight_decay") else None
        ),
        "train_accuracy": on_train.accuracy,
        "test_accuracy": on_test.accuracy,
        # The mean loss (data + L2) over the last epoch's batches (each before its
        # update), and the held-out loss; the L2 term R = λ·Σ W² at the end apart too.
        "final_loss": trained["final_loss"],
        "test_loss": on_test.losses.total_loss,
        # The data loss alone on the whole training split after training: what a
        # stronger weight decay raises (while it lowers the L2 term).
        "train_data_loss": on_train.losses.data_loss,
        "reg_loss": on_test.losses.reg_loss,
        "steps": trained["steps"],
        # Training alone: the uploads (Fit) are timed apart.
        "steps_per_second": trained["steps"] / trained["train_seconds"],
        "train_seconds": trained["train_seconds"],
        "upload_seconds": trained.get("upload_seconds"),
        "server_steps_per_second": trained.get("server_steps_per_second"),
        "train_examples": len(x_train),
        "test_examples": int(on_test.num_examples),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "lr": args.lr,
        "seed": args.seed,
        "parameter_count": created.parameter_count,
        "model_id": model_id,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default=DEFAULT_ADDRESS, help="server host:port")
    p.add_argument("--token", default=os.environ.get("BACKPROP_TOKEN"),
                   help="bearer token (default: $BACKPROP_TOKEN)")
    p.add_argument("--tls-ca", help="connect with TLS, trusting this CA (PEM)")
    p.add_argument("--tls-cert", help="client certificate (PEM), for mutual TLS")
    p.add_argument("--tls-key", help="the client certificate's key (PEM)")
    p.add_argument("--loop", choices=list(LOOPS), default="fit",
                   help="fit: the server trains on uploaded datasets (Fit); trainstep: "
                        "one TrainStep call per minibatch from this client")
    p.add_argument("--loss", choices=sorted(LOSSES), default="softmax")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128, help="units in the hidden layer")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                   help="the hidden layer's activation")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam",
                   help="the update rule")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    p.add_argument("--weight-decay", type=float,
                   help="AdamW's decoupled weight decay λ (default: the server's, 0.01)")
    p.add_argument("--l2", type=float, default=1e-3, help="λ in R = λ·Σ W²")
    p.add_argument("--seed", type=int, default=0, help="server init and minibatch order")
    p.add_argument("--split-seed", type=int, default=0, help="train/test split")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--keep", action="store_true",
                   help="don't delete the model (nor, with Fit, the datasets) at the end")
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(train(parse_args())))
