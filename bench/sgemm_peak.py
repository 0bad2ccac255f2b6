"""The machine's single-precision GEMM peak as the BLAS libraries reach it: C = A·B with
A, B 2048×2048 f32, best of a few runs, in GFLOP/s (2·n³ per product).

Why: issue "engine at the hardware's limit" sets the W1 target as a share of this peak
measured in the same run (best of OpenBLAS through numpy and MKL through PyTorch), so the
figure follows the machine instead of a number from elsewhere. Runs numpy always and
PyTorch when it is importable (under .venv-torch).

    .venv/bin/python bench/sgemm_peak.py --threads 1 --json out.json
"""
import argparse
import json
import os
import sys
import time

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--threads", type=int, default=1)
p.add_argument("--n", type=int, default=2048)
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--json", metavar="PATH")
args = p.parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


def best(f):
    f()  # warm: pages, kernel dispatch
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


flop = 2 * args.n ** 3
rng = np.random.default_rng(0)
a = rng.standard_normal((args.n, args.n), dtype=np.float32)
b = rng.standard_normal((args.n, args.n), dtype=np.float32)
rows = []
with threadpool_limits(limits=args.threads, user_api="blas"):
    rows.append({"impl": "numpy", "gflops": round(flop / best(lambda: a @ b) / 1e9, 1)})
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    torch.set_num_threads(args.threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    rows.append({"impl": "torch", "gflops": round(flop / best(lambda: ta @ tb) / 1e9, 1)})
out = {"what": "sgemm", "n": args.n, "threads": args.threads, "rows": rows}
line = json.dumps(out)
print(line)
if args.json:
    with open(args.json, "w") as f:
        f.write(line + "\n")
