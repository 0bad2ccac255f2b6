"""Turns the ghz configs in bench/ghz/configs/ into ones ghz can run, and sums up results.

ghz sends one call over and over and cannot chain calls, so whatever a config needs first
is done here, and the ids it made replace the placeholders in the config's data:

- "MODEL_ID": a session is created (CreateModel with the spec in models/<w>.json, where
  <w> is the config name's prefix, e.g. w2_forward → models/w2.json; W5 trains W1's
  model);
- "DATASET_ID": a dataset is uploaded (seeded blobs: W5's 10,000 × 3072 rows, or 256
  W2-shaped ones);
- some workloads need more before their call makes sense (SETUP): GetHistory a model
  with steps recorded, WatchFit a finished fit;
- a payload too large to commit (W1's 2.5 MB batch) is generated.

The configs stay templates; the runnable copies go to a run folder.

    prepare.py prepare --host 127.0.0.1:50051 --out DIR [--w5-rows N] [NAME ...]
        prints the path of each runnable config, one per line
    prepare.py summarize DIR
        reads the ghz JSON reports in DIR, prints a table and writes DIR/summary.json

Run with examples/python/.venv/bin/python (examples/python/setup.sh makes it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from google.protobuf import json_format

GHZ_DIR = Path(__file__).resolve().parent
REPO = GHZ_DIR.parent.parent
CONFIGS = GHZ_DIR / "configs"
MODELS = GHZ_DIR / "models"
MODEL_ID, DATASET_ID = "MODEL_ID", "DATASET_ID"
# A workload whose session is another one's model: W5 trains W1's (bench/README.md).
MODEL_OF = {"w5": "w1"}
# Rows of W5's dataset (bench/README.md); `--w5-rows` makes a smaller one for tests.
W5_ROWS = 10_000
# Rows of the W2-shaped dataset GetDataset reads and WatchFit's fit trained on.
W2_DATASET_ROWS = 256
# TrainSteps a model has taken before GetHistory is called on it.
HISTORY_STEPS = 100
# The fit whose events WatchFit replays (FitRequest fields): 8 steps per epoch.
WATCHED_FIT = {"epochs": 5, "batch_size": 32, "seed": 0, "progress_every": 4}
# bench/README.md: ≈ 247 MFLOP per W1 step (N=200, 3072-100-10).
W1_FLOP_PER_STEP = 246.96e6

sys.path.insert(0, str(REPO / "examples" / "python"))
from backprop_client import connect, pb, upload_dataset  # noqa: E402


def blobs(rows: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded Gaussian blobs, one per class (the recipe of bench/numpy_w1.py): row i is
    class i mod `classes`, its class centre plus N(0, 1) noise, f32."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim), dtype=np.float32)
    y = np.arange(rows) % classes
    return centers[y] + rng.standard_normal((rows, dim), dtype=np.float32), y


def w1_trainstep_payload(seed: int = 0) -> dict:
    """W1's batch (bench/README.md): N=200 rows of D=3072 blobs, values rounded to 4 decimals
    to keep the JSON small."""
    x, y = blobs(200, 3072, 10, seed)
    return {
        "model_id": MODEL_ID,
        # Rounded in f64, so the JSON holds "0.1234" rather than f32 noise like
        # "0.12340000271797180".
        "x": {"shape": list(x.shape),
              "values": np.round(x.astype(np.float64), 4).ravel().tolist()},
        "labels": y.tolist(),
    }


# Payloads made rather than committed, by the file name a config's "data-file" gives.
GENERATED = {"w1_trainstep.data.json": w1_trainstep_payload}


def names() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.json"))


def load_config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def payload(config: dict):
    """The data a config sends, placeholders still in: its inline "data" (one message,
    or for a client stream the list of messages each stream sends), or the generated
    payload its "data-file" names."""
    if "data" in config:
        return config["data"]
    return GENERATED[config["data-file"]]()


def placeholders(data) -> set[str]:
    """The placeholders (MODEL_ID, DATASET_ID) anywhere in `data`."""
    if isinstance(data, dict):
        return set().union(*map(placeholders, data.values()))
    if isinstance(data, list):
        return set().union(*map(placeholders, data))
    return {data} & {MODEL_ID, DATASET_ID}


def fill(data, ids: dict[str, str]):
    """`data` with every placeholder string replaced by its id from `ids`."""
    if isinstance(data, dict):
        return {key: fill(value, ids) for key, value in data.items()}
    if isinstance(data, list):
        return [fill(value, ids) for value in data]
    return ids.get(data, data) if isinstance(data, str) else data


def model_request(name: str) -> dict:
    """The CreateModelRequest (proto JSON) for the session a config's calls go to."""
    prefix = name.split("_")[0]
    return json.loads((MODELS / f"{MODEL_OF.get(prefix, prefix)}.json").read_text())


def create_model(stub, request_json: dict) -> str:
    request = json_format.ParseDict(request_json, pb.CreateModelRequest())
    return stub.CreateModel(request).model_id


def dataset(name: str, w5_rows: int = W5_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The dataset a config's calls read: for W5 `w5_rows` CIFAR-shaped blobs (W1's
    D=3072, C=10), else W2-shaped ones (D=4, C=3)."""
    if name.startswith("w5_"):
        return blobs(w5_rows, 3072, 10, seed=5)
    return blobs(W2_DATASET_ROWS, 4, 3, seed=2)


def record_steps(stub, ids: dict, name: str) -> None:
    """HISTORY_STEPS TrainSteps of W2's batch (w2_trainstep's), so GetHistory has points."""
    batch = load_config("w2_trainstep")["data"]
    request = json_format.ParseDict(fill(batch, ids), pb.TrainStepRequest())
    for _ in range(HISTORY_STEPS):
        stub.TrainStep(request)


def finish_a_fit(stub, ids: dict, name: str) -> None:
    """A fit of the model on W2-shaped blobs, run to its end, so WatchFit replays it."""
    x, y = dataset(name)
    info = upload_dataset(stub, x, y, name=f"ghz {name}")
    request = pb.FitRequest(model_id=ids[MODEL_ID], dataset_id=info.dataset_id, **WATCHED_FIT)
    last = list(stub.Fit(request))[-1]
    if last.finished.reason != pb.FIT_END_COMPLETED:
        raise RuntimeError(f"{name}: the fit WatchFit replays ended {last.finished}")


# What a workload needs beyond its placeholders' ids, by config name.
SETUP = {"w2_gethistory": record_steps, "w2_watchfit": finish_a_fit}


def prepare(stub, name: str, host: str, out: Path, w5_rows: int = W5_ROWS) -> Path:
    """Writes out/<name>.config.json (and its data file, if any) ready for
    `ghz --config`; ghz will write its JSON report to out/<name>.json."""
    config = load_config(name)
    data = payload(config)
    # The routing header (x-backprop-model) names the same session as the data, so the
    # calls reach its replica through a proxy (docs/DEPLOY.md).
    needs = placeholders(data) | placeholders(config.get("metadata", {}))
    ids = {}
    if MODEL_ID in needs:
        ids[MODEL_ID] = create_model(stub, model_request(name))
    if DATASET_ID in needs:
        x, y = dataset(name, w5_rows)
        ids[DATASET_ID] = upload_dataset(stub, x, y, name=f"ghz {name}").dataset_id
    if name in SETUP:
        SETUP[name](stub, ids, name)
    data = fill(data, ids)
    if "metadata" in config:
        config["metadata"] = fill(config["metadata"], ids)
    if "data" in config:
        config["data"] = data
    else:
        data_file = out / config["data-file"]
        data_file.write_text(json.dumps(data, separators=(",", ":")))
        config["data-file"] = str(data_file)
    config.update(host=host, output=str(out / f"{name}.json"), format="json")
    path = out / f"{name}.config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def steps_per_call(config: dict) -> int | None:
    """The training steps one call of `config` takes, where a call is many of them: a
    stream sends stream-call-count messages (TrainStream: one batch, one step each), a
    Fit takes max_steps (its epochs are unbounded). None for one step or none per call
    (a generated data-file is one TrainStep's batch)."""
    if "stream-call-count" in config:
        return int(config["stream-call-count"])
    data = config.get("data")
    if isinstance(data, dict) and "max_steps" in data and not data.get("epochs"):
        return int(data["max_steps"])
    return None


def _ms(nanoseconds) -> float | None:
    return None if nanoseconds is None else nanoseconds / 1e6


def summarize(out: Path) -> dict:
    """The figures the workloads (bench/README.md) ask for, from ghz's JSON reports (durations in ns).

    ghz counts one latency per call, and a streaming call is one stream: for the
    configs whose calls take many steps (steps_per_call), the per-step figures are
    derived from the run folder's config (else the template): steps/s = count × steps
    per call / total time, and ms per step = the call's latency / steps per call.
    """
    rows = {}
    for report_path in sorted(out.glob("*.json")):
        name = report_path.name
        if name.endswith((".config.json", ".data.json")) or name == "summary.json":
            continue  # our own files, not ghz reports
        report = json.loads(report_path.read_text())
        percentiles = {
            p["percentage"]: p["latency"] for p in report.get("latencyDistribution") or []
        }
        codes = report.get("statusCodeDistribution") or {}
        row = rows[report_path.stem] = {
            "count": report.get("count"),
            "ok": codes.get("OK", 0),
            "errors": sum(n for code, n in codes.items() if code != "OK"),
            "rps": report.get("rps"),
            "p50_ms": _ms(percentiles.get(50)),
            "p99_ms": _ms(percentiles.get(99)),
            "average_ms": _ms(report.get("average")),
        }
        # The config that ran (the run folder's), else its template.
        paths = [out / f"{report_path.stem}.config.json", CONFIGS / f"{report_path.stem}.json"]
        config_path = next((path for path in paths if path.exists()), None)
        steps = steps_per_call(json.loads(config_path.read_text())) if config_path else None
        if steps and row["count"] and report.get("total"):
            # ghz's "total" is the whole run's wall time in ns.
            row["steps_per_call"] = steps
            row["steps_per_s"] = row["count"] * steps / (report["total"] / 1e9)
            for key in ("p50_ms", "average_ms"):
                if row[key] is not None:
                    row[f"step_{key}"] = row[key] / steps
    health = rows.get("w2_health", {}).get("rps")
    for name, row in rows.items():
        if not (name.startswith("w2_") and name != "w2_health" and health):
            continue
        # A streaming call's rps counts streams; its steps are the comparable figure.
        if "steps_per_s" in row:
            row["steps_ratio_to_health"] = row["steps_per_s"] / health
        elif row["rps"]:
            row["rps_ratio_to_health"] = row["rps"] / health
    # W1's model: GFLOP/s at the median step (for W1 the latency includes the 2.5 MB
    # transfer; for W5's Fit it is a fit's step on the server).
    for name, p50_step_ms in (("w1_trainstep", "p50_ms"), ("w5_fit", "step_p50_ms")):
        row = rows.get(name)
        if row and row.get(p50_step_ms):
            row["gflops_at_p50"] = W1_FLOP_PER_STEP / (row[p50_step_ms] / 1e3) / 1e9
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="create sessions and datasets, write runnable configs")
    prep.add_argument("--host", required=True, help="server host:port")
    prep.add_argument("--out", required=True, type=Path, help="run folder")
    prep.add_argument("--w5-rows", type=int, default=W5_ROWS,
                      help=f"rows of W5's uploaded dataset (default {W5_ROWS:,}; at least "
                           "the Fit's batch_size, 200)")
    prep.add_argument("names", nargs="*", help=f"configs (default: all of {names()})")
    summ = sub.add_parser("summarize", help="sum up the ghz reports in a run folder")
    summ.add_argument("out", type=Path)
    args = p.parse_args(argv)

    if args.command == "summarize":
        rows = summarize(args.out)
        for name, row in rows.items():
            print(name, json.dumps(row))
        return 0

    unknown = sorted(set(args.names) - set(names()))
    if unknown:
        p.error(f"unknown config(s) {unknown}; known: {names()}")
    args.out.mkdir(parents=True, exist_ok=True)
    channel, stub = connect(args.host)
    with channel:
        for name in args.names or names():
            print(prepare(stub, name, args.host, args.out, w5_rows=args.w5_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
