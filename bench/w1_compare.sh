#!/usr/bin/env bash
# Workload W1 (bench/README.md), our engine against the numpy reference and (with
# TORCH=1) a PyTorch training step, in one run on one machine, at the same thread count,
# beside the machine's SGEMM peak measured in the same run: prints a table and writes JSON
# under bench/results/<UTC time>/.
#
#   bash bench/w1_compare.sh                 # threads 1 and 2, 200 timed steps each
#   TORCH=1 bash bench/w1_compare.sh         # also PyTorch (installs .venv-torch, ~5 GB)
#   THREADS="1" ITERS=500 ROUNDS=3 bash bench/w1_compare.sh
#   DTYPES="f32 f64" bash bench/w1_compare.sh    # also the f64 step (numpy and ours)
#
# Why one command: bench/README.md reports W1 as a ratio to numpy measured in the same run, since
# absolute figures move from machine to machine (and from minute to minute on shared ones).
# For each round and each K the two sides run back to back, numpy first:
#   numpy: bench/numpy_w1.py --threads K, with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset
#          (they slow a current numpy; see the header of numpy_w1.py);
#   torch: bench/torch_w1.py --threads K (torch.set_num_threads), with TORCH=1;
#   rust:  examples/w1_step.rs with BACKPROP_MATMUL_THREADS=K, the threads of one product
#          (the `gemm` crate's kernels; see src/engine/matmul_kernel.rs).
# Then bench/sgemm_peak.py --threads K: a 2048³ f32 product through OpenBLAS (numpy) and
# MKL (PyTorch, with TORCH=1); the best is the peak each row is a percentage of.
# The Rust side is built with default features (pure-Rust GEMM, no system BLAS).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THREADS="${THREADS:-1 2}"
ITERS="${ITERS:-200}"
WARMUP="${WARMUP:-20}"
ROUNDS="${ROUNDS:-1}"
TORCH="${TORCH:-0}"
DTYPES="${DTYPES:-f32}"
OUT="$REPO/bench/results/w1-$(date -u +%Y%m%dT%H%M%SZ)"
cd "$REPO"

bash bench/setup_venv.sh
PEAK_PY=.venv/bin/python
if [[ "$TORCH" == 1 ]]; then
    bash bench/setup_venv.sh --torch
    PEAK_PY=.venv-torch/bin/python
fi
cargo build --quiet --release --example w1_step
RUST_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/examples/w1_step"
mkdir -p "$OUT"

# Percent of all CPUs that were busy over the next second (from /proc/stat). Other
# processes share the cores, and a 2-thread BLAS loses far more than its share to them, so
# a busy machine is called out: its figures, even its ratios, are not comparable.
cpu_busy() {
    local a b
    read -ra a < /proc/stat
    sleep 1
    read -ra b < /proc/stat
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
BUSY_BEFORE="$(cpu_busy)"

for round in $(seq 1 "$ROUNDS"); do
    for k in $THREADS; do
        echo "round $round, threads $k: numpy, torch, rust, sgemm peak" >&2
        for dt in $DTYPES; do
            env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/numpy_w1.py \
                --threads "$k" --iters "$ITERS" --warmup "$WARMUP" --dtype "$dt" \
                --json "$OUT/numpy-$dt-t$k-r$round.json" > /dev/null
            # The PyTorch step is the f32 one (what a PyTorch user trains in).
            if [[ "$TORCH" == 1 && "$dt" == f32 ]]; then
                env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv-torch/bin/python \
                    bench/torch_w1.py --threads "$k" --iters "$ITERS" --warmup "$WARMUP" \
                    --json "$OUT/torch-$dt-t$k-r$round.json" > /dev/null
            fi
            BACKPROP_MATMUL_THREADS="$k" "$RUST_BIN" --iters "$ITERS" --warmup "$WARMUP" \
                --dtype "$dt" --json "$OUT/rust-$dt-t$k-r$round.json" > /dev/null
        done
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PEAK_PY" bench/sgemm_peak.py \
            --threads "$k" --json "$OUT/peak-t$k-r$round.json" > /dev/null
    done
done
BUSY_AFTER="$(cpu_busy)"

# The table, and one summary.json holding every run plus where it ran.
.venv/bin/python - "$OUT" "$(git rev-parse --short HEAD)" "$BUSY_BEFORE" "$BUSY_AFTER" <<'PY'
import glob, json, os, platform, sys

out, rev = sys.argv[1], sys.argv[2]
busy = {"before": int(sys.argv[3]), "after": int(sys.argv[4])}
runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "*-t*-r*.json")))
        if not os.path.basename(p).startswith("peak-")]
peaks = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "peak-t*-r*.json")))]
IMPLS = ("numpy", "torch", "rust")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = []
for dt, k in sorted({(r.get("dtype", "f32"), r["threads"]) for r in runs}):
    by = {i: sorted(r["median_ms"] for r in runs
                    if r["threads"] == k and r["impl"] == i and r.get("dtype", "f32") == dt)
          for i in IMPLS}
    # With several rounds, the median of the per-round medians.
    med = {i: v[len(v) // 2] for i, v in by.items() if v}
    # The peak: the best of every library's best product over the rounds.
    peak = max((row["gflops"] for p in peaks if p["threads"] == k for row in p["rows"]),
               default=None) if dt == "f32" else None
    for i in IMPLS:
        if i in med:
            gflops = round(runs[0]["flop_per_step"] / med[i] / 1e6, 2)
            ratio = lambda other: (round(med["rust"] / med[other], 3)
                                   if i == "rust" and other in med else None)
            rows.append({"impl": i, "dtype": dt, "threads": k, "median_ms": med[i],
                         "gflops": gflops,
                         "percent_of_peak": round(100 * gflops / peak, 1) if peak else None,
                         "sgemm_peak_gflops": peak,
                         "rust_over_numpy": ratio("numpy"), "rust_over_torch": ratio("torch")})
print(f"W1 TrainStep, {runs[0]['flop_per_step'] / 1e6:.2f} MFLOP/step, {cpu}, {os.cpu_count()} CPUs, rev {rev}")
print(f"{'impl':<6} {'dtype':>5} {'threads':>7} {'median ms':>10} {'GFLOP/s':>8} {'% peak':>7} {'rust/numpy':>11} {'rust/torch':>11}")
x = lambda v: "" if v is None else f"{v:.2f}x"
for r in rows:
    pct = "" if r["percent_of_peak"] is None else f"{r['percent_of_peak']:.0f}%"
    print(f"{r['impl']:<6} {r['dtype']:>5} {r['threads']:>7} {r['median_ms']:>10.3f} {r['gflops']:>8.1f} {pct:>7} "
          f"{x(r['rust_over_numpy']):>11} {x(r['rust_over_torch']):>11}")
for k in sorted({p["threads"] for p in peaks}):
    libs = ", ".join(f"{row['impl']} {max(q['gflops'] for p in peaks if p['threads'] == k for q in p['rows'] if q['impl'] == row['impl']):.0f}"
                     for row in next(p for p in peaks if p["threads"] == k)["rows"])
    print(f"SGEMM 2048³ f32, {k} thread(s): {libs} GFLOP/s (the peak is the best)")
print("(rust/numpy and rust/torch are time ratios: above 1 means the engine is slower)")
if max(busy.values()) > 10:
    print(f"warning: other processes kept {busy['before']}% of the CPUs busy just before the "
          f"runs and {busy['after']}% just after: these figures are noisy, run again when idle")
summary = {"workload": "W1", "rev": rev, "cpu": cpu, "cpus": os.cpu_count(),
           "cpu_busy_percent_outside_runs": busy,
           "python": platform.python_version(), "rows": rows, "runs": runs, "sgemm": peaks}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(f"results: {os.path.relpath(out)}/")
PY
