"""numpy reference for workload W1 (see bench/README.md, Workloads): one TrainStep of a two-layer net.

Why it exists: the workloads (bench/README.md) ask for W1 figures as a ratio to a CS231n-style numpy
implementation measured in the same run on the same machine. This is that reference,
written for this project: forward, multiclass SVM loss, L2, analytic backward, SGD.

Shapes and conventions match the engine: N=200, D=3072, H=100 (ReLU), C=10, f32,
scores = relu(X @ W1 + b1) @ W2 + b2, W1 [D,H], W2 [H,C]; SVM margin 1 averaged over N;
R = reg * sum(W**2) over weights only (gradient 2*reg*W); SGD with lr.

Run (after bash bench/setup_venv.sh):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/numpy_w1.py --threads 1
On some processors this workplace sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (older
OpenBLAS builds need them); they slow a current numpy, so unset both in the benchmark
command only (never in tests or CI). The JSON reports whether they were still set and
which BLAS kernel actually ran (threadpoolctl), so a slow figure can be explained.

Prints one JSON line: impl, workload, threads, median/p10/p90 step ms, GFLOP/s, BLAS info,
loss_first (before any update; ~C-1 = 9 for tiny weights) and loss_last (must be lower).
"""
import argparse
import json
import os
import sys
import time

N, D, H, C = 200, 3072, 100, 10
REG, LR, WEIGHT_STD = 1e-3, 1e-3, 1e-2
# FLOP per step, counted as in bench/README.md: forward of both layers, dW of both layers,
# dX of layer 2 only (layer 1's input gradient is not needed). 246.96e6 for W1.
FLOP = (2 * N * D * H + 2 * N * H * C) * 2 + 2 * N * H * C


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS threads")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--iters", type=int, default=200, help="timed steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("f32", "f64"), default="f32",
                   help="the data, weights and arithmetic (f64 as gradient checks use)")
    p.add_argument("--json", metavar="PATH", help="also write the JSON line here")
    return p.parse_args(argv)


# Args are parsed before numpy is imported so the thread count reaches OpenBLAS/OpenMP
# through the environment at load time; threadpool_limits below enforces it again.
ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

FLOAT = np.float64 if ARGS is not None and ARGS.dtype == "f64" else np.float32


def make_data(rng):
    """Seeded Gaussian blobs, one per class: X [N,D] f32, y [N] in [0,C)."""
    centers = rng.standard_normal((C, D), dtype=FLOAT)
    y = np.arange(N) % C
    X = centers[y] + rng.standard_normal((N, D), dtype=FLOAT)
    return X, y


def init_params(rng):
    return {
        "W1": (WEIGHT_STD * rng.standard_normal((D, H), dtype=FLOAT)),
        "b1": np.zeros(H, dtype=FLOAT),
        "W2": (WEIGHT_STD * rng.standard_normal((H, C), dtype=FLOAT)),
        "b2": np.zeros(C, dtype=FLOAT),
    }


def loss_and_grads(p, X, y):
    """Forward, SVM loss + L2, analytic backward. Returns (loss, grads)."""
    W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
    rows = np.arange(X.shape[0])
    # forward
    h = np.maximum(X @ W1 + b1, 0)
    scores = h @ W2 + b2
    # multiclass SVM, margin 1, averaged over N; the correct class contributes nothing
    margins = np.maximum(scores - scores[rows, y][:, None] + 1, 0)
    margins[rows, y] = 0
    loss = margins.sum() / N + REG * (np.sum(W1 * W1) + np.sum(W2 * W2))
    # backward: each positive margin pushes its score up and the correct score down
    dS = (margins > 0).astype(FLOAT)
    dS[rows, y] = -dS.sum(axis=1)
    dS /= N
    dW2 = h.T @ dS + 2 * REG * W2
    db2 = dS.sum(axis=0)
    dh = dS @ W2.T
    dh[h <= 0] = 0  # ReLU mask
    dW1 = X.T @ dh + 2 * REG * W1
    db1 = dh.sum(axis=0)
    return float(loss), {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def report(out, path):
    """Prints the run's JSON line (and writes it to `path`): one format for every side."""
    line = json.dumps(out)
    print(line)
    if path:
        with open(path, "w") as f:
            f.write(line + "\n")


def train_step(p, X, y):
    """One W1 TrainStep: loss, gradients, in-place SGD update."""
    loss, g = loss_and_grads(p, X, y)
    for k in p:
        p[k] -= LR * g[k]
    return loss


def main(args):
    rng = np.random.default_rng(args.seed)
    X, y = make_data(rng)
    p = init_params(rng)
    times = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        loss_first = loss = train_step(p, X, y)
        for _ in range(args.warmup):
            train_step(p, X, y)
        for _ in range(args.iters):
            t0 = time.perf_counter()
            loss = train_step(p, X, y)
            times.append(time.perf_counter() - t0)
        blas = [
            {k: lib.get(k) for k in ("internal_api", "version", "architecture",
                                     "threading_layer", "num_threads")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"
        ]
    assert all(p[k].dtype == FLOAT for k in p), f"parameters left {FLOAT.__name__}"
    ms = np.array(times) * 1e3
    median = float(np.median(ms))
    out = {
        "impl": "numpy",
        "workload": "W1",
        "dtype": args.dtype,
        "threads": args.threads,
        "iters": args.iters,
        "median_ms": round(median, 4),
        "p10_ms": round(float(np.percentile(ms, 10)), 4),
        "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "flop_per_step": FLOP,
        "gflops": round(FLOP / (median * 1e-3) / 1e9, 2),
        "blas": blas[0] if len(blas) == 1 else blas,
        "numpy": np.__version__,
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
        "openblas_l2_size_env": os.environ.get("OPENBLAS_L2_SIZE"),
        "loss_first": round(loss_first, 6),
        "loss_last": round(loss, 6),
    }
    report(out, args.json)
    if not loss < loss_first:
        print(f"loss did not decrease: {loss_first} -> {loss}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
