"""Turns the ghz configs in bench/ghz/configs/ into ones ghz can run, and sums up results.

ghz sends one call over and over and cannot chain calls, so whatever a config needs first
is done here: the session is created (CreateModel with the spec in models/<w>.json, where
<w> is the config name's prefix, e.g. w2_forward → models/w2.json), its id replaces the
"MODEL_ID" placeholder in the data, and a payload too large to commit (W1's 2.5 MB
batch) is generated. The configs stay templates; the runnable copies go to a run folder.

    prepare.py prepare --host 127.0.0.1:50051 --out DIR [NAME ...]
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
PLACEHOLDER = "MODEL_ID"

sys.path.insert(0, str(REPO / "examples" / "python"))
from backprop_client import connect, pb  # noqa: E402


def w1_trainstep_payload(seed: int = 0) -> dict:
    """W1's batch (BENCH.md): N=200 rows of D=3072, seeded Gaussian blobs, one per class
    (the recipe of bench/numpy_w1.py), values rounded to 4 decimals to keep the JSON small.
    """
    n, d, c = 200, 3072, 10
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d), dtype=np.float32)
    y = np.arange(n) % c
    x = centers[y] + rng.standard_normal((n, d), dtype=np.float32)
    return {
        "model_id": PLACEHOLDER,
        # Rounded in f64, so the JSON holds "0.1234" rather than f32 noise like
        # "0.12340000271797180".
        "x": {"shape": [n, d], "values": np.round(x.astype(np.float64), 4).ravel().tolist()},
        "labels": y.tolist(),
    }


# Payloads made rather than committed, by the file name a config's "data-file" gives.
GENERATED = {"w1_trainstep.data.json": w1_trainstep_payload}


def names() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.json"))


def load_config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def payload(config: dict) -> dict:
    """The request a config sends, still with the placeholder id: its inline "data", or
    the generated payload its "data-file" names."""
    if "data" in config:
        return config["data"]
    return GENERATED[config["data-file"]]()


def model_request(name: str) -> dict:
    """The CreateModelRequest (proto JSON) for the session a config's calls go to."""
    return json.loads((MODELS / f"{name.split('_')[0]}.json").read_text())


def create_model(stub, request_json: dict) -> str:
    request = json_format.ParseDict(request_json, pb.CreateModelRequest())
    return stub.CreateModel(request).model_id


def prepare(stub, name: str, host: str, out: Path) -> Path:
    """Writes out/<name>.config.json (and its data file, if any) ready for
    `ghz --config`; ghz will write its JSON report to out/<name>.json."""
    config = load_config(name)
    data = payload(config)
    if "model_id" in data:
        data = dict(data, model_id=create_model(stub, model_request(name)))
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


def _ms(nanoseconds) -> float | None:
    return None if nanoseconds is None else nanoseconds / 1e6


def summarize(out: Path) -> dict:
    """The figures BENCH.md asks for, from ghz's JSON reports (durations in ns)."""
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
        rows[report_path.stem] = {
            "count": report.get("count"),
            "ok": codes.get("OK", 0),
            "errors": sum(n for code, n in codes.items() if code != "OK"),
            "rps": report.get("rps"),
            "p50_ms": _ms(percentiles.get(50)),
            "p99_ms": _ms(percentiles.get(99)),
            "average_ms": _ms(report.get("average")),
        }
    health = rows.get("w2_health", {}).get("rps")
    for name, row in rows.items():
        if name.startswith("w2_") and name != "w2_health" and health and row["rps"]:
            row["rps_ratio_to_health"] = row["rps"] / health
    w1 = rows.get("w1_trainstep")
    if w1 and w1["p50_ms"]:
        # BENCH.md: ≈ 247 MFLOP per W1 step; the latency includes the 2.5 MB transfer.
        w1["gflops_at_p50"] = 246.96e6 / (w1["p50_ms"] / 1e3) / 1e9
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="create sessions, write runnable configs")
    prep.add_argument("--host", required=True, help="server host:port")
    prep.add_argument("--out", required=True, type=Path, help="run folder")
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
            print(prepare(stub, name, args.host, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
