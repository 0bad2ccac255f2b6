"""The ghz configs in bench/ghz/ cannot rot: every payload they send is accepted by the
real server, and the runner script works up to the point where it hands over to ghz.

ghz itself is not installable on the build machines, so each payload is sent the way
ghz would send it: the call is resolved through server reflection, the JSON is decoded
with the proto's JSON mapping into the reflected request type, and the call must be OK.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

REPO = Path(__file__).resolve().parents[3]
RUN_SH = REPO / "bench" / "ghz" / "run.sh"


def load_prepare():
    """bench/ghz/prepare.py, the runner's helper, as a module (it is a script)."""
    spec = importlib.util.spec_from_file_location(
        "ghz_prepare", REPO / "bench" / "ghz" / "prepare.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PREPARE = load_prepare()

# The keys of ghz's config file: the json tags of runner.Config in ghz's source
# (runner/config.go), which are its long command-line option names.
GHZ_KEYS = {
    "proto", "protoset", "call", "cacert", "cert", "key", "count-errors", "skipTLS",
    "skipFirst", "cname", "authority", "insecure", "total", "async", "concurrency",
    "concurrency-schedule", "concurrency-start", "concurrency-end", "concurrency-step",
    "concurrency-step-duration", "concurrency-max-duration", "connections", "rps",
    "duration", "duration-stop", "max-duration", "timeout", "data", "data-file",
    "binary-file", "metadata", "metadata-file", "stream-interval", "stream-call-duration",
    "stream-call-count", "stream-dynamic-messages", "output", "format", "connect-timeout",
    "keepalive", "cpus", "import-paths", "name", "tags", "reflect-metadata", "debug",
    "host", "enable-compression", "load-schedule", "load-start", "load-end", "load-step",
    "load-step-duration", "load-max-duration", "lb-strategy", "max-recv-message-size",
    "max-send-message-size", "disable-template-functions", "disable-template-data",
}
UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
         "KB": 10**3, "MB": 10**6, "GB": 10**9}


def size_bytes(text: str) -> int:
    """ghz reads message sizes with go-humanize's ParseBytes: "64MiB", "67108864"."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B|B|)\s*", text)
    assert m, f"not a byte size ghz reads: {text!r}"
    return int(m.group(1)) * UNITS[m.group(2)]


def test_every_workload_has_a_config():
    assert PREPARE.names() == ["w1_trainstep", "w2_forward", "w2_health", "w2_trainstep"]


@pytest.mark.parametrize("name", PREPARE.names())
def test_config_uses_only_ghz_options(name):
    config = PREPARE.load_config(name)
    assert set(config) <= GHZ_KEYS, f"not ghz options: {set(config) - GHZ_KEYS}"
    for key in ("call", "host", "insecure", "total", "concurrency"):
        assert key in config, key
    assert "proto" not in config and "protoset" not in config  # reflection only
    assert ("data" in config) != ("data-file" in config)
    if "data-file" in config:
        assert config["data-file"] in PREPARE.GENERATED


def test_w1_message_size_options_cover_its_request():
    config = PREPARE.load_config("w1_trainstep")
    # 200·3072 f32 values ≈ 2.46 MB on the wire, plus the tags.
    assert size_bytes(config["max-send-message-size"]) >= 4 * 200 * 3072 + 1024
    assert size_bytes(config["max-recv-message-size"]) >= 4 * 200 * 3072 + 1024


@pytest.fixture(scope="module")
def reflection(channel_and_stub):
    channel, _ = channel_and_stub
    return DescriptorPool(ProtoReflectionDescriptorDatabase(channel))


@pytest.mark.parametrize("name", PREPARE.names())
def test_payload_is_accepted(name, server_address, channel_and_stub, reflection, tmp_path):
    channel, stub = channel_and_stub
    # The very code run.sh uses: creates the session, fills in its id, writes the config.
    runnable = json.loads(PREPARE.prepare(stub, name, server_address, tmp_path).read_text())
    assert runnable["host"] == server_address
    data = (runnable["data"] if "data" in runnable
            else json.loads(Path(runnable["data-file"]).read_text()))
    assert data.get("model_id") != PREPARE.PLACEHOLDER

    service, method_name = re.split(r"[./](?=[^./]+$)", runnable["call"])
    method = reflection.FindMethodByName(f"{service}.{method_name}")
    request = json_format.ParseDict(data, GetMessageClass(method.input_type)())
    call = channel.unary_unary(
        f"/{service}/{method_name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=GetMessageClass(method.output_type).FromString,
    )
    reply = call(request, timeout=60)  # raises (and fails the test) unless OK

    if method_name == "Forward":
        assert len(reply.predictions) == request.x.shape[0]
    elif method_name == "TrainStep":
        assert reply.step == 1 and math.isfinite(reply.losses.total_loss)
    elif method_name == "Check":
        assert reply.status == 1  # SERVING
    if name == "w1_trainstep":
        assert 2_400_000 < request.ByteSize() < 2_600_000  # the 2.5 MB request
        # Gaussian init with weight_scale 1e-2: scores ≈ 0, so the SVM loss ≈ C−1 = 9.
        assert 8.0 < reply.losses.data_loss < 10.0


def test_run_sh_dry_run_prepares_every_workload(server_address, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        ["bash", str(RUN_SH), "--dry-run", "--host", server_address, "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in PREPARE.names():
        config_path = out / f"{name}.config.json"
        assert f"ghz --config {config_path}" in result.stdout
        config = json.loads(config_path.read_text())
        assert config["host"] == server_address
        assert config["output"] == str(out / f"{name}.json")


def test_run_sh_fails_clearly_without_ghz(tmp_path):
    if shutil.which("ghz"):
        pytest.skip("ghz is installed here")
    result = subprocess.run(
        ["bash", str(RUN_SH), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, GHZ="ghz-not-installed"),
    )
    assert result.returncode == 127
    assert "ghz is not installed" in result.stderr
    assert "--dry-run" in result.stderr


def test_summarize_reads_ghz_json_reports(tmp_path):
    """summarize on reports shaped like ghz's (runner/reporter.go; durations in ns)."""
    def report(rps, p50_ns, p99_ns, ok=1000, errors=None):
        codes = {"OK": ok, **(errors or {})}
        return {"count": sum(codes.values()), "rps": rps, "average": p50_ns,
                "latencyDistribution": [{"percentage": 50, "latency": p50_ns},
                                        {"percentage": 99, "latency": p99_ns}],
                "statusCodeDistribution": codes}

    (tmp_path / "w2_health.json").write_text(json.dumps(report(40000.0, 1_000_000, 3_000_000)))
    (tmp_path / "w2_forward.json").write_text(
        json.dumps(report(20000.0, 2_000_000, 5_000_000, errors={"Unavailable": 2})))
    (tmp_path / "w1_trainstep.json").write_text(json.dumps(report(200.0, 5_000_000, 9_000_000)))
    (tmp_path / "w2_forward.config.json").write_text("{}")  # not a report: skipped

    rows = PREPARE.summarize(tmp_path)
    assert set(rows) == {"w2_health", "w2_forward", "w1_trainstep"}
    assert rows["w2_forward"]["rps_ratio_to_health"] == 0.5
    assert rows["w2_forward"]["errors"] == 2 and rows["w2_forward"]["ok"] == 1000
    assert rows["w2_forward"]["p99_ms"] == 5.0
    assert rows["w1_trainstep"]["gflops_at_p50"] == pytest.approx(246.96e6 / 5e-3 / 1e9)
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
