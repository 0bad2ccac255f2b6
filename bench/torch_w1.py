"""PyTorch reference for workload W1 (see bench/README.md, Workloads): one training step
of the two-layer net as a PyTorch user writes it: forward, loss, autograd backward,
torch.optim.SGD.

Why it exists: issue "engine at the hardware's limit" asks the engine to beat the user's
own PyTorch loop, measured in the same run on the same machine as numpy and our engine.
Shapes, data, initial weights and loss are those of bench/numpy_w1.py (same seed, same
numpy generator), so the three compute the same step: N=200, D=3072, H=100 (ReLU), C=10,
f32, multiclass SVM with margin 1 averaged over N, R = reg * sum(W**2) over the weights,
SGD with lr. The SVM is written with tensor ops (torch's multi_margin_loss divides by C,
which is another loss): max(0, s - s_y + 1) summed over all classes counts exactly 1 for
the correct class, with zero gradient, so N is subtracted from the sum.

With --rows R (workload W5's PyTorch loop), the step trains on a dataset of R rows of the
same blobs instead of one batch: every epoch a fresh permutation (numpy, seeded), batches
of N rows gathered by indexing, as a PyTorch loop over an in-memory dataset does.

Run (after bash bench/setup_venv.sh --torch):
    .venv-torch/bin/python bench/torch_w1.py --threads 1 [--rows 10000]
Prints one JSON line with the fields of numpy_w1.py (impl "torch").
"""
import argparse
import os
import sys
import time

N, D, H, C = 200, 3072, 100, 10
REG, LR, WEIGHT_STD = 1e-3, 1e-3, 1e-2
FLOP = (2 * N * D * H + 2 * N * H * C) * 2 + 2 * N * H * C


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--iters", type=int, default=200, help="timed steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=0,
                   help="train over a dataset of this many rows (0: the one batch)")
    p.add_argument("--json", metavar="PATH", help="also write the JSON line here")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_w1 import init_params, make_data, report  # noqa: E402  (same data, weights, output)


def main(args):
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    X_np, y_np = make_data(rng)
    p_np = init_params(rng)
    params = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in p_np.items()}
    X_all, y_all = torch.from_numpy(X_np), torch.from_numpy(y_np.astype(np.int64))
    if args.rows:
        # The same blobs, R rows: class centres ~ N(0, I), row i of class i mod C.
        centers = rng.standard_normal((C, D), dtype=np.float32)
        labels = np.arange(args.rows) % C
        rows = centers[labels] + rng.standard_normal((args.rows, D), dtype=np.float32)
        X_all, y_all = torch.from_numpy(rows), torch.from_numpy(labels.astype(np.int64))
    order, at = [], 0

    def next_batch():
        nonlocal order, at
        if not args.rows:
            return X_all, y_all
        if at + N > len(order):
            order, at = torch.from_numpy(rng.permutation(args.rows)), 0
        idx = order[at:at + N]
        at += N
        return X_all[idx], y_all[idx]
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    opt = torch.optim.SGD(params.values(), lr=LR)

    def step():
        X, y = next_batch()
        opt.zero_grad(set_to_none=True)
        h = torch.relu(torch.addmm(b1, X, W1))
        s = torch.addmm(b2, h, W2)
        margins = (s - s.gather(1, y[:, None]) + 1).clamp_min(0)
        loss = (margins.sum() - N) / N + REG * ((W1 * W1).sum() + (W2 * W2).sum())
        loss.backward()
        opt.step()
        return float(loss.detach())

    loss_first = loss = step()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    assert all(t.dtype == torch.float32 for t in params.values())
    ms = np.array(times) * 1e3
    median = float(np.median(ms))
    out = {
        "impl": "torch",
        "workload": "W1",
        "threads": torch.get_num_threads(),
        "rows": args.rows or N,
        "iters": args.iters,
        "median_ms": round(median, 4),
        "p10_ms": round(float(np.percentile(ms, 10)), 4),
        "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "flop_per_step": FLOP,
        "gflops": round(FLOP / (median * 1e-3) / 1e9, 2),
        "torch": torch.__version__,
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
