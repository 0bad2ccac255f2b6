"""The ghz configs in bench/ghz/ cannot rot: every payload they send is accepted by the
real server, and the runner script works up to the point where it hands over to ghz.

The suite does not need ghz itself: each payload is sent the way ghz would send it: the call is resolved through server reflection, the messages one ghz
call sends (a client stream: its data's messages, cycled to stream-call-count) are
decoded with the proto's JSON mapping into the reflected request type, the call is made
as the method's kind (unary, server stream, client stream, bidi), and it must be OK.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from backprop_client import pb

REPO = Path(__file__).resolve().parents[3]
RUN_SH = REPO / "bench" / "ghz" / "run.sh"
# W5's dataset here: enough rows for its batch of 200 (a real run uploads 10,000).
TEST_W5_ROWS = 400


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
    assert PREPARE.names() == [
        "w1_trainstep", "w2_forward", "w2_getdataset", "w2_gethistory", "w2_health",
        "w2_trainstep", "w2_trainstream", "w2_uploaddataset", "w2_watchfit", "w5_fit",
    ]


@pytest.mark.parametrize("name", PREPARE.names())
def test_config_uses_only_ghz_options(name):
    config = PREPARE.load_config(name)
    assert set(config) <= GHZ_KEYS, f"not ghz options: {set(config) - GHZ_KEYS}"
    for key in ("call", "host", "insecure", "total", "concurrency"):
        assert key in config, key
    assert "proto" not in config and "protoset" not in config  # reflection only
    # ghz 0.121 with a duration beside `total` runs for the whole duration (every call
    # it cuts off counted as an error) instead of stopping after `total` calls: a config
    # promises a number of calls, so it sets no duration at all.
    assert not {"duration", "max-duration"} & set(config), name
    assert ("data" in config) != ("data-file" in config)
    if "data-file" in config:
        assert config["data-file"] in PREPARE.GENERATED


def test_many_step_calls_run_alone_and_are_all_counted():
    """summarize's steps/s = count × steps per call / total time is exact only when the
    report counts every call in the total (no skipFirst: ghz's count leaves the skipped
    out, its total does not) and calls do not overlap (concurrency 1: a second Fit on
    the same model would be FAILED_PRECONDITION)."""
    steps = {name: PREPARE.steps_per_call(PREPARE.load_config(name)) for name in PREPARE.names()}
    assert {name: n for name, n in steps.items() if n} == {"w2_trainstream": 2000, "w5_fit": 50}
    for name in ("w2_trainstream", "w5_fit"):
        config = PREPARE.load_config(name)
        assert config["concurrency"] == 1 and config["connections"] == 1
        assert "skipFirst" not in config
    # A TrainStream call is one stream: the W2 batch, sent stream-call-count times.
    stream = PREPARE.load_config("w2_trainstream")
    assert stream["data"]["x"] == PREPARE.load_config("w2_trainstep")["data"]["x"]
    # A Fit call is max_steps steps of W1's batch size (epochs unbounded).
    fit = PREPARE.load_config("w5_fit")["data"]
    assert fit["batch_size"] == 200 and "epochs" not in fit


def test_upload_payload_is_w2_batch_with_its_checksum():
    """The committed UploadDataset chunks: whole rows in order, the proto's SHA-256 of
    them, W2's batch. Without stream-call-count ghz sends the chunks once per stream
    (with it, it would cycle them into a reordered upload)."""
    config = PREPARE.load_config("w2_uploaddataset")
    assert "stream-call-count" not in config
    first, *rest = chunks = config["data"]
    header = first["header"]
    assert all("header" not in c for c in rest)
    x = b"".join(base64.b64decode(c["x"], validate=True) for c in chunks)
    labels = [label for c in chunks for label in c["labels"]]
    assert [c["first_row"] for c in chunks] == [0, 4]
    assert len(x) == header["rows"] * header["dim"] * 4 and len(labels) == header["rows"]
    expected = hashlib.sha256(x + np.array(labels, dtype="<u4").tobytes()).hexdigest()
    assert header["sha256"] == expected
    batch = PREPARE.load_config("w2_trainstep")["data"]
    values = np.frombuffer(x, dtype="<f4")
    assert values.tolist() == np.array(batch["x"]["values"], dtype=np.float32).tolist()
    assert labels == batch["labels"]


def test_w1_message_size_options_cover_its_request():
    config = PREPARE.load_config("w1_trainstep")
    # 200·3072 f32 values ≈ 2.46 MB on the wire, plus the tags.
    assert size_bytes(config["max-send-message-size"]) >= 4 * 200 * 3072 + 1024
    assert size_bytes(config["max-recv-message-size"]) >= 4 * 200 * 3072 + 1024


@pytest.fixture(scope="module")
def reflection(channel_and_stub):
    channel, _ = channel_and_stub
    return DescriptorPool(ProtoReflectionDescriptorDatabase(channel))


def ghz_messages(config: dict, method) -> list:
    """The request messages (proto JSON) one ghz call of `config` sends, as ghz's
    runner makes them: a client stream sends its data's messages (a list, or the one
    message) in order, cycled until stream-call-count when that is set, else each
    once; any other call sends its one message (a list would be spread over calls)."""
    if "data" in config:
        data = config["data"]
    else:
        data = json.loads(Path(config["data-file"]).read_text())
    if method.client_streaming:
        messages = data if isinstance(data, list) else [data]
        count = config.get("stream-call-count")
        return [messages[i % len(messages)] for i in range(count)] if count else messages
    assert isinstance(data, dict), "one message per call"
    return [data]


def ghz_call(channel, method, requests: list, metadata: dict | None = None) -> list:
    """Makes one call of `method` as ghz would for its kind, with the config's
    `metadata`, and returns every answer (one for a unary or client-streaming call).
    Raises unless the call ends OK."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    kinds = {
        (False, False): channel.unary_unary, (False, True): channel.unary_stream,
        (True, False): channel.stream_unary, (True, True): channel.stream_stream,
    }
    call = kinds[method.client_streaming, method.server_streaming](
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=GetMessageClass(method.output_type).FromString,
    )
    sent = iter(requests) if method.client_streaming else requests[0]
    answer = call(sent, timeout=120, metadata=list((metadata or {}).items()))
    return list(answer) if method.server_streaming else [answer]


@pytest.mark.parametrize("name", PREPARE.names())
def test_payload_is_accepted(name, server_address, channel_and_stub, reflection, tmp_path):
    channel, stub = channel_and_stub
    # The very code run.sh uses: creates what the call needs, fills in the ids, writes
    # the config.
    runnable = json.loads(
        PREPARE.prepare(stub, name, server_address, tmp_path, w5_rows=TEST_W5_ROWS).read_text()
    )
    assert runnable["host"] == server_address
    service, method_name = re.split(r"[./](?=[^./]+$)", runnable["call"])
    method = reflection.FindMethodByName(f"{service}.{method_name}")
    messages = ghz_messages(runnable, method)
    assert not any(PREPARE.placeholders(m) for m in messages)
    request_class = GetMessageClass(method.input_type)
    requests = [json_format.ParseDict(m, request_class()) for m in messages]
    metadata = runnable.get("metadata")
    # Every call on a session routes on its id, the one the data names.
    named = requests[0].model_id if hasattr(requests[0], "model_id") else getattr(
        requests[0], "dataset_id", "")
    assert (metadata or {}).get("x-backprop-model", "") == named, (name, metadata)
    replies = ghz_call(channel, method, requests, metadata)  # raises unless OK
    reply, request = replies[-1], requests[0]

    if method_name == "Forward":
        assert len(reply.predictions) == request.x.shape[0]
    elif method_name == "TrainStep":
        assert reply.step == 1 and math.isfinite(reply.losses.total_loss)
    elif method_name == "Check":
        assert reply.status == 1  # SERVING
    elif method_name == "TrainStream":
        # One answer per message ghz sends: stream-call-count batches, each one step,
        # in order, none refused; the model took exactly those steps.
        count = runnable["stream-call-count"]
        assert len(requests) == len(replies) == count == 2000
        assert [r.WhichOneof("result") for r in replies] == ["step"] * count
        assert [r.step.step for r in replies] == list(range(1, count + 1))
        assert all(math.isfinite(r.step.losses.total_loss) for r in replies)
        assert stub.GetModel(pb.GetModelRequest(model_id=request.model_id)).step == count
    elif method_name == "Fit":
        # ghz's next call (concurrency 1) starts once this one ended: the same fit
        # again, continuing from the model's step.
        again = ghz_call(channel, method, requests, metadata)
        steps = request.max_steps
        for events, start in ((replies, 0), (again, steps)):
            assert [events[0].WhichOneof("event"), events[-1].WhichOneof("event")] == [
                "started", "finished"]
            assert events[0].started.start_step == start
            assert events[0].started.planned_steps == steps
            finished = events[-1].finished
            assert finished.reason == pb.FIT_END_MAX_STEPS
            assert (finished.steps, finished.step) == (steps, start + steps)
    elif method_name == "WatchFit":
        # The finished fit's events from the first on (prepare's WATCHED_FIT: 5 epochs
        # of 256 rows in batches of 32), the same for every caller.
        assert [e.index for e in replies] == list(range(17))
        assert [e.WhichOneof("event") for e in replies] == (
            ["started"] + ["progress", "progress", "epoch_end"] * 5 + ["finished"])
        # A progress event every 4 steps (progress_every), 8 steps per epoch.
        assert [e.progress.step for e in replies if e.HasField("progress")] == list(
            range(4, 41, 4))
        assert [e.epoch_end.epoch for e in replies if e.HasField("epoch_end")] == [0, 1, 2, 3, 4]
        assert reply.finished.reason == pb.FIT_END_COMPLETED
        assert (reply.finished.steps, reply.finished.epochs) == (40, 5)
        assert ghz_call(channel, method, requests, metadata) == replies
    elif method_name == "GetHistory":
        assert [s.step for s in reply.steps] == list(range(1, PREPARE.HISTORY_STEPS + 1))
        assert all(math.isfinite(s.data_loss) and 0 <= s.accuracy <= 1 for s in reply.steps)
    elif method_name == "GetDataset":
        x, y = PREPARE.dataset(name)
        sha = hashlib.sha256(x.astype("<f4").tobytes() + y.astype("<u4").tobytes()).hexdigest()
        assert (reply.rows, reply.dim, reply.label_classes) == (256, 4, 3)
        assert reply.sha256 == sha
    elif method_name == "UploadDataset":
        header = request.header
        assert (reply.rows, reply.dim, reply.label_classes) == (8, 4, 3)
        assert reply.bytes == 8 * 4 * 4 + 8 * 4  # f32 values and u32 labels
        assert reply.sha256 == header.sha256 and reply.name == header.name
        # Every ghz call uploads again: another dataset.
        assert ghz_call(channel, method, requests, metadata)[0].dataset_id != reply.dataset_id
    else:
        pytest.fail(f"no check for {method_name}: add one")
    if name == "w1_trainstep":
        assert 2_400_000 < request.ByteSize() < 2_600_000  # the 2.5 MB request
        # Gaussian init with weight_scale 1e-2: scores ≈ 0, so the SVM loss ≈ C−1 = 9.
        assert 8.0 < reply.losses.data_loss < 10.0


def test_run_sh_dry_run_prepares_every_workload(server_address, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        ["bash", str(RUN_SH), "--dry-run", "--host", server_address, "--out", str(out),
         "--w5-rows", str(TEST_W5_ROWS)],
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
    def report(rps, p50_ns, p99_ns, ok=1000, errors=None, total_ns=None, average_ns=None):
        codes = {"OK": ok, **(errors or {})}
        return {"count": sum(codes.values()), "rps": rps, "total": total_ns,
                "average": average_ns or p50_ns,
                "latencyDistribution": [{"percentage": 50, "latency": p50_ns},
                                        {"percentage": 99, "latency": p99_ns}],
                "statusCodeDistribution": codes}

    (tmp_path / "w2_health.json").write_text(json.dumps(report(40000.0, 1_000_000, 3_000_000)))
    (tmp_path / "w2_forward.json").write_text(
        json.dumps(report(20000.0, 2_000_000, 5_000_000, errors={"Unavailable": 2})))
    (tmp_path / "w1_trainstep.json").write_text(json.dumps(report(200.0, 5_000_000, 9_000_000)))
    (tmp_path / "w2_forward.config.json").write_text("{}")  # not a report: skipped
    # 20 streams in 0.125 s (ghz's rps: streams/s), each 48 ms at the median, 50 ms on
    # average; the run folder's config (stream-call-count 500) wins over the template's.
    (tmp_path / "w2_trainstream.json").write_text(json.dumps(report(
        160.0, 48_000_000, 60_000_000, ok=20, total_ns=125_000_000, average_ns=50_000_000)))
    runnable = dict(PREPARE.load_config("w2_trainstream"), **{"stream-call-count": 500})
    (tmp_path / "w2_trainstream.config.json").write_text(json.dumps(runnable))
    # 40 fits of the template's 50 steps in 10 s, 250 ms at the median.
    (tmp_path / "w5_fit.json").write_text(json.dumps(report(
        4.0, 250_000_000, 300_000_000, ok=40, total_ns=10_000_000_000)))

    rows = PREPARE.summarize(tmp_path)
    assert set(rows) == {"w2_health", "w2_forward", "w1_trainstep", "w2_trainstream", "w5_fit"}
    assert rows["w2_forward"]["rps_ratio_to_health"] == 0.5
    assert rows["w2_forward"]["errors"] == 2 and rows["w2_forward"]["ok"] == 1000
    assert rows["w2_forward"]["p99_ms"] == 5.0
    assert "steps_per_s" not in rows["w2_forward"]
    assert rows["w1_trainstep"]["gflops_at_p50"] == pytest.approx(246.96e6 / 5e-3 / 1e9)

    stream = rows["w2_trainstream"]
    # ghz counts one latency per stream: 20 streams × 500 batches / 0.125 s.
    assert stream["steps_per_call"] == 500
    assert stream["steps_per_s"] == 80000.0
    assert stream["steps_ratio_to_health"] == 2.0  # the target is ≥ 3
    assert "rps_ratio_to_health" not in stream  # streams/s against calls/s says nothing
    assert (stream["step_p50_ms"], stream["step_average_ms"]) == (0.096, 0.1)
    assert stream["rps"] == 160.0 and stream["p50_ms"] == 48.0

    fit = rows["w5_fit"]
    assert (fit["steps_per_call"], fit["steps_per_s"], fit["step_p50_ms"]) == (50, 200.0, 5.0)
    assert fit["gflops_at_p50"] == pytest.approx(246.96e6 / 5e-3 / 1e9)
    assert "steps_ratio_to_health" not in fit  # W5 is not a W2 workload
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
