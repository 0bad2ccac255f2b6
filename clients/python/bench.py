#!/usr/bin/env python3
"""What the Python package adds over the server's own figures (not a test).

(a) W1 TrainStep (bench/README.md: N=200, D=3072, H=100 ReLU, C=10, SVM, l2 1e-3, SGD
    lr 1e-3, f32), called sequentially through backprop_client.Client with the batch as
    numpy: the median ms per call, against the same step's in-process engine time
    (`backprop-server bench --workload w6-stream` prints it: "in process X ms") and
    against the Rust client's TrainStep p50 (`bench --workload w1`), and against the bare
    generated stub sending a prebuilt request (what grpcio itself costs). Target ≤ 1.3×
    the in-process step.
(b) BackpropClassifier.fit on digits (30 epochs, batch 64) against the same work done
    directly through the client (create_model, upload_dataset, fit, delete_dataset),
    each timed end to end, medians over --repeats runs. Target ≤ 1.2×.

Without --address it starts $BACKPROP_BIN (default target/release/backprop) on
127.0.0.1 on a free port and stops it at the end. Run:

    clients/python/.venv/bin/python clients/python/bench.py [--address HOST:PORT]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backprop_client import Client, convert, pb

W1 = dict(input_dim=3072, num_classes=10, hidden=[100], activation="relu", loss="svm",
          l2=1e-3, optimizer="sgd", learning_rate=1e-3, dtype="float32")


def binary() -> str:
    repo = Path(__file__).resolve().parents[2]
    return os.environ.get("BACKPROP_BIN", str(repo / "target" / "release" / "backprop"))


@contextlib.contextmanager
def server():
    with tempfile.TemporaryDirectory() as tmp:
        address_file = Path(tmp) / "address"
        proc = subprocess.Popen([binary(), "serve", "--listen", "127.0.0.1:0", "--address-file",
                                 str(address_file)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not (address_file.exists() and address_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the server did not start")
                time.sleep(0.02)
            yield address_file.read_text().strip()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def server_bench(address: str, workload: str, seconds: int) -> str:
    out = subprocess.run([binary(), "bench", "--workload", workload, "--address", address,
                          "--duration", str(seconds)], capture_output=True, text=True, check=True)
    return out.stdout + out.stderr


def bench_w1(client: Client, calls: int) -> tuple[float, float, float]:
    """Medians (ms) of Client.train_step with the batch as numpy, and of the bare
    generated stub sending one prebuilt request (grpcio's own floor for this call),
    interleaved call by call so the machine's load hits both alike; and the package's
    own encoding and decoding per call."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3072)).astype(np.float32)
    y = rng.integers(0, 10, 200)
    model = client.create_model(W1).model_id
    request = pb.TrainStepRequest(model_id=model, x=convert.to_tensor(X), labels=y.tolist())
    stub = client._calls["TrainStep"]
    try:
        for _ in range(10):  # warm-up: connection, allocator, caches
            client.train_step(model, X, y)
            stub(request)
        ours, bare = [], []
        for _ in range(calls):
            start = time.perf_counter()
            client.train_step(model, X, y)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            stub(request)
            bare.append(time.perf_counter() - start)
        # The package's own work per call, which load on the machine barely moves: the
        # request built from numpy (as train_step builds it) and the answer decoded.
        answer = stub(request)
        own = []
        for _ in range(calls):
            start = time.perf_counter()
            pb.TrainStepRequest(model_id=model, x=convert.tensor_fields(X),
                                labels=convert.to_labels(y))
            convert.train_step(answer)
            own.append(time.perf_counter() - start)
    finally:
        client.delete_model(model)
    return tuple(statistics.median(t) * 1e3 for t in (ours, bare, own))


def bench_fit(client: Client, repeats: int) -> tuple[float, float, float]:
    from sklearn.datasets import load_digits

    from backprop_client.sklearn import BackpropClassifier

    X, y = load_digits(return_X_y=True)
    X32 = X.astype(np.float32)

    def direct():
        model = client.create_model(input_dim=64, num_classes=10, hidden=[100], loss="softmax",
                                    l2=1e-4, optimizer="adam", learning_rate=1e-3, seed=0).model_id
        dataset = client.upload_dataset(X32, y, next_to=model).dataset_id
        # The request BackpropClassifier.fit sends (progress at epoch ends only).
        events = list(client.fit(model, dataset, epochs=30, batch_size=64, seed=0,
                                 progress_every=(1 << 32) - 1))
        client.delete_dataset(dataset)
        client.delete_model(model)
        return events[-1].finished.steps

    def estimator():
        clf = BackpropClassifier(epochs=30, batch_size=64, address=client.address).fit(X, y)
        accuracy = clf.score(X, y)
        clf.close()
        return accuracy

    direct(), estimator()  # warm-up
    d, e = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
        start = time.perf_counter()
        direct()
        d.append(time.perf_counter() - start)
        start = time.perf_counter()
        accuracy = estimator()
        e.append(time.perf_counter() - start)
    return statistics.median(e) * 1e3, statistics.median(d) * 1e3, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", help="a running server (default: start one)")
    parser.add_argument("--calls", type=int, default=200, help="W1 TrainSteps measured")
    parser.add_argument("--repeats", type=int, default=7, help="fits of each kind measured")
    parser.add_argument("--server-seconds", type=int, default=5,
                        help="--duration of the server's own bench runs")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
          " (the figures move with it: the step shares the cores)")
    with contextlib.ExitStack() as stack:
        address = args.address or stack.enter_context(server())
        client = stack.enter_context(Client(address, timeout=120))
        ours, bare, own = bench_w1(client, args.calls)
        w6 = server_bench(address, "w6-stream", args.server_seconds)
        w1 = server_bench(address, "w1", args.server_seconds)
        in_process = float(re.search(r"in process ([0-9.]+) ms", w6).group(1))
        rust_p50 = float(re.search(r"Trainer/TrainStep\s+\d+\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)", w1).group(1))
        step = float(re.search(r"minus the floor: ([0-9.]+) ms", w1).group(1))
        fit_est, fit_direct, accuracy = bench_fit(client, args.repeats)

    print("(a) W1 TrainStep, sequential, batch as numpy (raw tensors)")
    print(f"    backprop_client.Client.train_step  median {ours:8.3f} ms  ({args.calls} calls)")
    print(f"    bare grpcio stub, prebuilt request median {bare:8.3f} ms"
          f"  -> the package adds {ours - bare:+.3f} ms")
    print(f"    the package's own encode + decode  median {own:8.3f} ms")
    print(f"    in-process step (bench w6-stream)  median {in_process:8.3f} ms"
          f"  -> {ours / in_process:.2f}x (target <= 1.3x)")
    print(f"    Rust client TrainStep (bench w1)   p50    {rust_p50:8.3f} ms"
          f"  -> {ours / rust_p50:.2f}x; server-side step (p50 minus the floor) {step:.3f} ms")
    print("(b) digits, 30 epochs, batch 64, end to end (create, upload, Fit, delete)")
    print(f"    BackpropClassifier.fit + score     median {fit_est:8.1f} ms  (train accuracy {accuracy:.3f})")
    print(f"    Client: create/upload/fit/delete   median {fit_direct:8.1f} ms"
          f"  -> {fit_est / fit_direct:.2f}x (target <= 1.2x)")
    print("reproduce: clients/python/.venv/bin/python clients/python/bench.py"
          + (f" --address {args.address}" if args.address else "")
          + f" --calls {args.calls} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
